//! The call → order links ([`Store::append_order_events`] writes one when an order is
//! created with a `call_id`) that the survey task follows to append the post-call
//! survey answer to the orders of that call (`src/server/survey.rs`).

use super::{Pool, Store, StoreError};

/// An order opened from a call whose survey answer is not on the order yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsettledCallOrder {
    /// The call.
    pub call_id: String,
    /// The order opened from it.
    pub order_id: String,
    /// When the order was created (unix ms).
    pub created_ms: i64,
    /// The call's stored CDR (JSON), once the call has ended (a record written at the
    /// answer and still in progress reads as none).
    pub call_record: Option<String>,
}

impl Store {
    /// Up to `limit` unsettled call → order links, oldest first, with the call's CDR.
    ///
    /// # Errors
    /// Database errors.
    pub async fn unsettled_call_orders(
        &self,
        limit: i64,
    ) -> Result<Vec<UnsettledCallOrder>, StoreError> {
        const SQL: &str = "SELECT oc.call_id, oc.order_id, oc.created_ms, c.record \
            FROM order_calls oc LEFT JOIN calls c ON c.call_id = oc.call_id \
            AND c.in_progress = $2 WHERE oc.settled = 0 ORDER BY oc.created_ms LIMIT $1";
        let rows: Vec<(String, String, i64, Option<String>)> = on_pool!(self, |p| {
            sqlx::query_as(SQL)
                .bind(limit)
                .bind(false)
                .fetch_all(p)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(call_id, order_id, created_ms, call_record)| UnsettledCallOrder {
                    call_id,
                    order_id,
                    created_ms,
                    call_record,
                },
            )
            .collect())
    }

    /// Marks one link settled: its order has the survey, or the call had none.
    ///
    /// # Errors
    /// Database errors.
    pub async fn settle_call_order(&self, call_id: &str, order_id: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE order_calls SET settled = 1 WHERE call_id = $1 AND order_id = $2";
        on_pool!(self, |p| {
            sqlx::query(SQL)
                .bind(call_id)
                .bind(order_id)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Test hook: a pass that died between appending and settling.
    #[cfg(test)]
    pub(crate) async fn unsettle_call_order(
        &self,
        call_id: &str,
        order_id: &str,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE order_calls SET settled = 0 WHERE call_id = $1 AND order_id = $2";
        on_pool!(self, |p| {
            sqlx::query(SQL)
                .bind(call_id)
                .bind(order_id)
                .execute(p)
                .await?;
        });
        Ok(())
    }
}
