//! Partner hotlines' orders (issue 17, H-6): which orders are a partner's (its
//! idempotency keys name them) and the ledger events its status callbacks follow, after
//! its cursor.

use super::{Pool, Store, StoreError};

/// An event of a partner's order that changed its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerEvent {
    pub global_seq: i64,
    pub order_id: String,
    pub seq: i64,
    /// RFC 3339, as recorded.
    pub at: String,
    pub state_after: String,
}

type Row = (i64, String, i64, String, String);

impl Store {
    /// Whether the order is one `actor` (`partner:<id>`) handed over.
    ///
    /// # Errors
    /// Database errors.
    pub async fn partner_owns(&self, actor: &str, order_id: &str) -> Result<bool, StoreError> {
        const SQL: &str =
            "SELECT COUNT(*) FROM idempotency_keys WHERE actor = $1 AND order_id = $2";
        let (n,): (i64,) = on_pool!(self, |p| {
            sqlx::query_as(SQL)
                .bind(actor)
                .bind(order_id)
                .fetch_one(p)
                .await?
        });
        Ok(n > 0)
    }

    /// Up to `limit` state-changing events of `actor`'s orders after its cursor, in
    /// ledger order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn partner_events_after(
        &self,
        actor: &str,
        limit: i64,
    ) -> Result<Vec<PartnerEvent>, StoreError> {
        const SQL: &str = "SELECT e.global_seq, e.order_id, e.seq, e.at, e.state_after \
            FROM idempotency_keys k JOIN order_events e ON e.order_id = k.order_id \
            WHERE k.actor = $1 AND e.state_after <> e.state_before \
            AND e.global_seq > COALESCE((SELECT last_seq FROM partner_cursors WHERE partner = $1), 0) \
            ORDER BY e.global_seq LIMIT $2";
        let rows: Vec<Row> = on_pool!(self, |p| {
            sqlx::query_as(SQL)
                .bind(actor)
                .bind(limit)
                .fetch_all(p)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(global_seq, order_id, seq, at, state_after)| PartnerEvent {
                    global_seq,
                    order_id,
                    seq,
                    at,
                    state_after,
                },
            )
            .collect())
    }

    /// The partner has the callbacks up to `global_seq`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_partner_cursor(&self, actor: &str, global_seq: i64) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO partner_cursors (partner, last_seq) VALUES ($1, $2) \
            ON CONFLICT (partner) DO UPDATE SET last_seq = excluded.last_seq";
        on_pool!(self, |p| {
            sqlx::query(SQL)
                .bind(actor)
                .bind(global_seq)
                .execute(p)
                .await?;
        });
        Ok(())
    }
}
