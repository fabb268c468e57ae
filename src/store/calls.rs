//! Call detail records and voice messages (`migrations/*/0003_calls.sql`).

use serde::{Deserialize, Serialize};

use super::{Pool, Store, StoreError};
use crate::ivr::cdr::CallDetailRecord;

/// A voice message left after hours, waiting for its callback work order.
///
/// This is the hand-over point to the ticket store: it opens a callback order from each
/// row without a `work_order` and fills that column in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct VoiceMessage {
    pub call_id: String,
    pub caller: String,
    pub city: Option<String>,
    pub category: String,
    pub urgency: String,
    /// Path of the mono WAV.
    pub recording: String,
    pub duration_ms: i64,
    /// RFC 3339 in Asia/Shanghai.
    pub received_at: String,
    /// RFC 3339; "24:00 of D" is stored as 00:00 of D+1.
    pub callback_due: String,
    pub provisional: bool,
    pub work_order: Option<String>,
}

/// Filters of `GET /api/calls` (all optional, combined with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallFilter {
    pub city: Option<String>,
    pub category: Option<String>,
    pub caller: Option<String>,
    /// One stage of the path, e.g. `queue` or `voice_message`.
    pub path: Option<String>,
    /// Arrival at or after, unix milliseconds.
    pub from_ms: Option<i64>,
    /// Arrival before, unix milliseconds.
    pub to_ms: Option<i64>,
    pub limit: Option<i64>,
}

/// One listed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredCall {
    pub record: CallDetailRecord,
    pub voice_message: Option<VoiceMessage>,
}

fn snake<T: Serialize>(value: &T) -> Option<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => None,
    }
}

impl Store {
    /// Store a finished call's record (and its voice message), replacing an earlier
    /// version of the same call.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_call(
        &self,
        record: &CallDetailRecord,
        voice_message: Option<&VoiceMessage>,
    ) -> Result<(), StoreError> {
        const CALL: &str = "INSERT INTO calls (call_id, arrival_ms, caller, dialled, city, \
            category, urgency, path, hung_up_first, record) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
            ON CONFLICT (call_id) DO UPDATE SET city = excluded.city, \
            category = excluded.category, urgency = excluded.urgency, path = excluded.path, \
            hung_up_first = excluded.hung_up_first, record = excluded.record";
        const MESSAGE: &str = "INSERT INTO voice_messages (call_id, caller, city, category, \
            urgency, recording, duration_ms, received_at, callback_due, provisional, work_order) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (call_id) DO NOTHING";
        let json = serde_json::to_string(record).unwrap_or_default();
        let path: Vec<String> = record.path.iter().filter_map(snake).collect();
        let path = path.join(",");
        let city = record.city.as_ref().map(|c| c.as_str().to_string());
        let category = record.category.as_ref().and_then(snake);
        let urgency = record.urgency.as_ref().and_then(snake);
        let hung_up = record.hung_up_first.as_ref().and_then(snake);
        let arrival_ms = record.arrival.timestamp_millis();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            sqlx::query(CALL)
                .bind(&record.call_id)
                .bind(arrival_ms)
                .bind(&record.caller)
                .bind(&record.dialled)
                .bind(&city)
                .bind(&category)
                .bind(&urgency)
                .bind(&path)
                .bind(&hung_up)
                .bind(&json)
                .execute(&mut *tx)
                .await?;
            if let Some(m) = voice_message {
                sqlx::query(MESSAGE)
                    .bind(&m.call_id)
                    .bind(&m.caller)
                    .bind(&m.city)
                    .bind(&m.category)
                    .bind(&m.urgency)
                    .bind(&m.recording)
                    .bind(m.duration_ms)
                    .bind(&m.received_at)
                    .bind(&m.callback_due)
                    .bind(m.provisional)
                    .bind(&m.work_order)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Calls matching `filter`, newest first (at most `limit`, default 100, max 1000).
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_calls(&self, filter: &CallFilter) -> Result<Vec<StoredCall>, StoreError> {
        const SQL: &str = "SELECT record FROM calls WHERE \
            ($1 IS NULL OR city = $1) AND ($2 IS NULL OR category = $2) \
            AND ($3 IS NULL OR caller = $3) \
            AND ($4 IS NULL OR (',' || path || ',') LIKE ('%,' || $4 || ',%')) \
            AND ($5 IS NULL OR arrival_ms >= $5) AND ($6 IS NULL OR arrival_ms < $6) \
            ORDER BY arrival_ms DESC LIMIT $7";
        const MESSAGES: &str = "SELECT call_id, caller, city, category, urgency, recording, \
            duration_ms, received_at, callback_due, provisional, work_order \
            FROM voice_messages WHERE call_id = $1";
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(SQL)
            .bind(&filter.city)
            .bind(&filter.category)
            .bind(&filter.caller)
            .bind(&filter.path)
            .bind(filter.from_ms)
            .bind(filter.to_ms)
            .bind(limit)
            .fetch_all(p)
            .await?);
        let mut out = Vec::with_capacity(rows.len());
        for (json,) in rows {
            let Ok(record) = serde_json::from_str::<CallDetailRecord>(&json) else {
                continue;
            };
            let voice_message = on_pool!(self, |p| sqlx::query_as::<_, VoiceMessage>(MESSAGES)
                .bind(&record.call_id)
                .fetch_optional(p)
                .await?);
            out.push(StoredCall {
                record,
                voice_message,
            });
        }
        Ok(out)
    }
}

impl Store {
    /// One call's record by call id (`None` when unknown or unreadable).
    ///
    /// # Errors
    /// Database errors.
    pub async fn call_record(&self, call_id: &str) -> Result<Option<CallDetailRecord>, StoreError> {
        const SQL: &str = "SELECT record FROM calls WHERE call_id = $1";
        let row: Option<(String,)> = on_pool!(self, |p| sqlx::query_as(SQL)
            .bind(call_id)
            .fetch_optional(p)
            .await?);
        Ok(row.and_then(|(json,)| serde_json::from_str(&json).ok()))
    }

    /// Voice messages still without a work order, oldest first (at most `limit`).
    ///
    /// # Errors
    /// Database errors.
    pub async fn voice_messages_without_order(
        &self,
        limit: i64,
    ) -> Result<Vec<VoiceMessage>, StoreError> {
        const SQL: &str = "SELECT call_id, caller, city, category, urgency, recording, \
            duration_ms, received_at, callback_due, provisional, work_order \
            FROM voice_messages WHERE work_order IS NULL ORDER BY received_at, call_id LIMIT $1";
        let rows = on_pool!(self, |p| sqlx::query_as::<_, VoiceMessage>(SQL)
            .bind(limit)
            .fetch_all(p)
            .await?);
        Ok(rows)
    }

    /// Record the work order opened for a voice message. Returns `false` when the
    /// message already has one (the first link wins) or does not exist.
    ///
    /// # Errors
    /// Database errors.
    pub async fn link_voice_message(
        &self,
        call_id: &str,
        order_id: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE voice_messages SET work_order = $1 \
            WHERE call_id = $2 AND work_order IS NULL";
        let done = on_pool!(self, |p| sqlx::query(SQL)
            .bind(order_id)
            .bind(call_id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// One voice message by call id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn voice_message(&self, call_id: &str) -> Result<Option<VoiceMessage>, StoreError> {
        const SQL: &str = "SELECT call_id, caller, city, category, urgency, recording, \
            duration_ms, received_at, callback_due, provisional, work_order \
            FROM voice_messages WHERE call_id = $1";
        let row = on_pool!(self, |p| sqlx::query_as::<_, VoiceMessage>(SQL)
            .bind(call_id)
            .fetch_optional(p)
            .await?);
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivr::cdr::{CallPath, CdrBuilder};
    use crate::ivr::flow::{CallCategory, Urgency};

    fn record(call_id: &str, at: &str) -> CallDetailRecord {
        let arrival = chrono::DateTime::parse_from_rfc3339(at).expect("time");
        let mut cdr = CdrBuilder::new(call_id, "053188886666", "12348", arrival);
        cdr.category(CallCategory::Complaint, Urgency::Normal)
            .queued(arrival);
        cdr.finish(arrival)
    }

    #[tokio::test]
    async fn calls_are_listed_newest_first_with_filters_and_voice_messages_sqlite() {
        let (store, _dir) = crate::store::test_support::sqlite().await;
        exercise(&store).await;
    }

    #[tokio::test]
    async fn calls_are_listed_newest_first_with_filters_and_voice_messages_postgres() {
        let Some(store) = crate::store::test_support::postgres().await else {
            return;
        };
        exercise(&store).await;
    }

    async fn exercise(store: &Store) {
        let first = record("a", "2026-02-14T10:00:00+08:00");
        let second = record("b", "2026-02-14T11:00:00+08:00");
        assert!(first.path.contains(&CallPath::Queue));
        store.insert_call(&first, None).await.expect("insert");
        let message = VoiceMessage {
            call_id: "b".into(),
            caller: "053188886666".into(),
            city: Some("jinan".into()),
            category: "complaint".into(),
            urgency: "normal".into(),
            recording: "recordings/x.wav".into(),
            duration_ms: 5000,
            received_at: "2026-02-14T11:00:00+08:00".into(),
            callback_due: "2026-02-17T00:00:00+08:00".into(),
            provisional: false,
            work_order: None,
        };
        store
            .insert_call(&second, Some(&message))
            .await
            .expect("insert");
        let all = store
            .list_calls(&CallFilter::default())
            .await
            .expect("list");
        let ids: Vec<&str> = all.iter().map(|c| c.record.call_id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(all[0].voice_message.as_ref(), Some(&message));
        let queue = CallFilter {
            path: Some("queue".into()),
            category: Some("complaint".into()),
            ..CallFilter::default()
        };
        assert_eq!(store.list_calls(&queue).await.expect("list").len(), 2);
        let none = CallFilter {
            path: Some("voice".into()),
            ..CallFilter::default()
        };
        assert!(store.list_calls(&none).await.expect("list").is_empty());
        let later = CallFilter {
            from_ms: Some(second.arrival.timestamp_millis()),
            ..CallFilter::default()
        };
        assert_eq!(store.list_calls(&later).await.expect("list").len(), 1);
    }
}
