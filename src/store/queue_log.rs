//! The ACD's `queue_log` table (append-only; migration 0004).

use super::TxConnection;
use super::{Pool, Store, StoreError};
use crate::queue::{AgentId, QueueLogEntry};

impl Store {
    /// Append one `queue_log` row.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_queue_log(&self, entry: &QueueLogEntry) -> Result<(), StoreError> {
        self.insert_queue_log_batch(std::slice::from_ref(entry))
            .await
    }

    /// Append `queue_log` rows in their order, in one transaction (one commit, one
    /// fsync, for however many rows).
    ///
    /// # Errors
    /// Database errors; then none of the rows is stored.
    pub async fn insert_queue_log_batch(
        &self,
        entries: &[QueueLogEntry],
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO queue_log (at_ms, at, queue, call_id, agent, event, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)";
        if entries.is_empty() {
            return Ok(());
        }
        on_pool!(self, |p| {
            let mut conn = TxConnection::acquire(p, &self.writes).await?;
            let mut tx = sqlx::Connection::begin(conn.raw()).await?;
            for entry in entries {
                let detail = serde_json::to_string(entry).unwrap_or_default();
                let event = serde_json::to_value(&entry.event)
                    .ok()
                    .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
                    .unwrap_or_default();
                sqlx::query(SQL)
                    .bind(entry.at.timestamp_millis())
                    .bind(entry.at.to_rfc3339())
                    .bind(entry.queue.as_str())
                    .bind(entry.call.as_ref().map(|c| c.0.clone()))
                    .bind(entry.agent.as_ref().map(|a| a.0.clone()))
                    .bind(event)
                    .bind(detail)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            conn.committed();
        });
        Ok(())
    }

    /// An agent's `queue_log` rows, oldest first (for the sign-in rate).
    ///
    /// # Errors
    /// Database errors.
    pub async fn agent_queue_log(&self, agent: &AgentId) -> Result<Vec<QueueLogEntry>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT detail FROM queue_log WHERE agent = $1 ORDER BY at_ms, id"
        )
        .bind(agent.as_str())
        .fetch_all(p)
        .await?);
        Ok(rows
            .into_iter()
            .filter_map(|(d,)| serde_json::from_str(&d).ok())
            .collect())
    }
}

impl Store {
    /// An agent's last row of one presence kind: what the ACD restores at start-up,
    /// so a restart or a crash signs nobody out.
    ///
    /// # Errors
    /// Database errors.
    pub async fn agent_last_presence(
        &self,
        agent: &AgentId,
        kind: PresenceRow,
    ) -> Result<Option<QueueLogEntry>, StoreError> {
        let sql = match kind {
            PresenceRow::SignInOut => {
                "SELECT detail FROM queue_log WHERE agent = $1 \
                 AND event IN ('sign_in', 'sign_out') ORDER BY at_ms DESC, id DESC LIMIT 1"
            }
            PresenceRow::Pause => {
                "SELECT detail FROM queue_log WHERE agent = $1 \
                 AND event IN ('pause', 'unpause') ORDER BY at_ms DESC, id DESC LIMIT 1"
            }
        };
        let row: Option<(String,)> = on_pool!(self, |p| sqlx::query_as(sql)
            .bind(agent.as_str())
            .fetch_optional(p)
            .await?);
        Ok(row.and_then(|(d,)| serde_json::from_str(&d).ok()))
    }

    /// An agent's `sign_in`, `sign_out` and `absent` rows up to `until_ms` (inclusive),
    /// oldest first: what the sign-in rate by shift needs (`AS-METRICS`).
    ///
    /// # Errors
    /// Database errors.
    pub async fn agent_attendance_log(
        &self,
        agent: &AgentId,
        until_ms: i64,
    ) -> Result<Vec<QueueLogEntry>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT detail FROM queue_log WHERE agent = $1 AND at_ms <= $2 \
             AND event IN ('sign_in', 'sign_out', 'absent') ORDER BY at_ms, id"
        )
        .bind(agent.as_str())
        .bind(until_ms)
        .fetch_all(p)
        .await?);
        Ok(rows
            .into_iter()
            .filter_map(|(d,)| serde_json::from_str(&d).ok())
            .collect())
    }
}

/// Which presence rows [`Store::agent_last_presence`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceRow {
    /// `sign_in` / `sign_out`.
    SignInOut,
    /// `pause` / `unpause`.
    Pause,
}
