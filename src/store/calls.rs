//! Call detail records and voice messages (`migrations/*/0003_calls.sql`).

use serde::{Deserialize, Serialize};

use super::TxConnection;
use super::{Pool, Store, StoreError};
use crate::ivr::cdr::{CallDetailRecord, SystemEnd};

/// A voice message left after hours, waiting for its callback work order.
///
/// This is the hand-over point to the ticket store: it opens a callback order from each
/// row without a `work_order` and fills that column in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
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
    /// Read scope: calls whose city is one of these units; `None` = every call (also
    /// those whose city is unknown). Applied in the query, before the limit, so a page
    /// holds the newest `limit` calls of the scope.
    #[serde(skip)]
    pub cities: Option<Vec<String>>,
}

/// One listed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoredCall {
    pub record: CallDetailRecord,
    pub voice_message: Option<VoiceMessage>,
    /// The call is up now (its record was written at the answer and is completed at
    /// the end).
    pub in_progress: bool,
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
            category, urgency, path, hung_up_first, record, in_progress) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
            ON CONFLICT (call_id) DO UPDATE SET city = excluded.city, \
            category = excluded.category, urgency = excluded.urgency, path = excluded.path, \
            hung_up_first = excluded.hung_up_first, record = excluded.record, \
            in_progress = excluded.in_progress";
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
            let mut conn = TxConnection::acquire(p, &self.writes).await?;
            let mut tx = sqlx::Connection::begin(conn.raw()).await?;
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
                .bind(false)
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
            conn.committed();
        });
        Ok(())
    }

    /// Write the record of a call that has just been answered, marked in progress, so
    /// that a crash cannot lose it; [`Store::insert_call`] completes it at the end. A
    /// record already there (the end was written first) is left alone.
    ///
    /// # Errors
    /// Database errors.
    pub async fn open_call(&self, record: &CallDetailRecord) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO calls (call_id, arrival_ms, caller, dialled, city, \
            category, urgency, path, hung_up_first, record, in_progress) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10) \
            ON CONFLICT (call_id) DO NOTHING";
        let json = serde_json::to_string(record).unwrap_or_default();
        let path: Vec<String> = record.path.iter().filter_map(snake).collect();
        let city = record.city.as_ref().map(|c| c.as_str().to_string());
        on_pool!(self, |p| sqlx::query(SQL)
            .bind(&record.call_id)
            .bind(record.arrival.timestamp_millis())
            .bind(&record.caller)
            .bind(&record.dialled)
            .bind(&city)
            .bind(record.category.as_ref().and_then(snake))
            .bind(record.urgency.as_ref().and_then(snake))
            .bind(path.join(","))
            .bind(&json)
            .bind(true)
            .execute(p)
            .await
            .map(|_| ())?);
        Ok(())
    }

    /// Close every record still in progress: the process stopped while those calls
    /// were up. Each ends at `last_known` (never before its arrival), hung up by the
    /// system, with `reason`. Returns the closed records.
    ///
    /// # Errors
    /// Database errors (records closed before the error stay closed).
    pub async fn close_open_calls(
        &self,
        last_known: chrono::DateTime<chrono::FixedOffset>,
        reason: SystemEnd,
    ) -> Result<Vec<CallDetailRecord>, StoreError> {
        const OPEN: &str = "SELECT record FROM calls WHERE in_progress = $1 ORDER BY arrival_ms";
        const CLOSE: &str = "UPDATE calls SET in_progress = $1, hung_up_first = $2, \
            record = $3 WHERE call_id = $4";
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(OPEN)
            .bind(true)
            .fetch_all(p)
            .await?);
        let mut closed = Vec::with_capacity(rows.len());
        for (json,) in rows {
            let Ok(mut record) = serde_json::from_str::<CallDetailRecord>(&json) else {
                continue;
            };
            record.close_after_stop(last_known, reason);
            let json = serde_json::to_string(&record).unwrap_or_default();
            let hung_up = record.hung_up_first.as_ref().and_then(snake);
            on_pool!(self, |p| sqlx::query(CLOSE)
                .bind(false)
                .bind(&hung_up)
                .bind(&json)
                .bind(&record.call_id)
                .execute(p)
                .await
                .map(|_| ())?);
            closed.push(record);
        }
        Ok(closed)
    }

    /// Calls matching `filter`, newest first (at most `limit`, default 100, max 1000).
    ///
    /// # Errors
    /// Database errors.
    pub async fn list_calls(&self, filter: &CallFilter) -> Result<Vec<StoredCall>, StoreError> {
        const SELECT: &str = "SELECT record, in_progress FROM calls WHERE \
            ($1 IS NULL OR city = $1) AND ($2 IS NULL OR category = $2) \
            AND ($3 IS NULL OR caller = $3) \
            AND ($4 IS NULL OR (',' || path || ',') LIKE ('%,' || $4 || ',%')) \
            AND ($5 IS NULL OR arrival_ms >= $5) AND ($6 IS NULL OR arrival_ms < $6)";
        const MESSAGES: &str = "SELECT call_id, caller, city, category, urgency, recording, \
            duration_ms, received_at, callback_due, provisional, work_order \
            FROM voice_messages WHERE call_id = $1";
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        // Placeholders numbered in the order they appear (SQLite numbers `$n` by first
        // appearance); only fixed fragments and placeholders are concatenated.
        let mut next = 7;
        let scope_sql = match &filter.cities {
            None => String::new(),
            Some(cities) if cities.is_empty() => " AND 1 = 0".to_owned(),
            Some(cities) => {
                let placeholders: Vec<String> = (0..cities.len())
                    .map(|i| format!("${}", next + i))
                    .collect();
                next += cities.len();
                format!(" AND city IN ({})", placeholders.join(", "))
            }
        };
        let sql = format!("{SELECT}{scope_sql} ORDER BY arrival_ms DESC LIMIT ${next}");
        let scope = filter.cities.as_deref().unwrap_or_default();
        let rows: Vec<(String, bool)> = on_pool!(self, |p| {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&filter.city)
                .bind(&filter.category)
                .bind(&filter.caller)
                .bind(&filter.path)
                .bind(filter.from_ms)
                .bind(filter.to_ms);
            for city in scope {
                query = query.bind(city);
            }
            query.bind(limit).fetch_all(p).await?
        });
        let mut out = Vec::with_capacity(rows.len());
        for (json, in_progress) in rows {
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
                in_progress,
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

    /// How many voice messages are still without a work order (the wallboard's
    /// "voice messages pending").
    ///
    /// # Errors
    /// Database errors.
    pub async fn count_voice_messages_without_order(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM voice_messages WHERE work_order IS NULL";
        let (n,): (i64,) = on_pool!(self, |p| sqlx::query_as(SQL).fetch_one(p).await?);
        Ok(n)
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
    use crate::domain::{CallCategory, Urgency};
    use crate::ivr::cdr::{CallPath, CdrBuilder};

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
        let store = crate::store::test_support::postgres().await;
        exercise(&store).await;
    }

    #[tokio::test]
    async fn calls_open_at_a_crash_are_closed_with_the_reason_sqlite() {
        let (store, _dir) = crate::store::test_support::sqlite().await;
        open_and_close(&store).await;
    }

    #[tokio::test]
    async fn calls_open_at_a_crash_are_closed_with_the_reason_postgres() {
        let store = crate::store::test_support::postgres().await;
        open_and_close(&store).await;
    }

    async fn open_and_close(store: &Store) {
        let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("time");
        let arrival = at("2026-02-14T20:00:00+08:00");
        let mut up = CdrBuilder::new("up", "053188886666", "12348", arrival);
        up.ivr_answered(arrival);
        store.open_call(up.record()).await.expect("open");
        // A call that ended normally: its end replaces the open record.
        let mut done = CdrBuilder::new("done", "053188886666", "12348", arrival);
        done.ivr_answered(arrival);
        store.open_call(done.record()).await.expect("open");
        store
            .insert_call(&done.clone().finish(at("2026-02-14T20:01:00+08:00")), None)
            .await
            .expect("end");
        // The end written before the open (a race) is not undone by it.
        let mut raced = CdrBuilder::new("raced", "053188886666", "12348", arrival);
        raced.ivr_answered(arrival);
        store
            .insert_call(&raced.clone().finish(at("2026-02-14T20:00:30+08:00")), None)
            .await
            .expect("end");
        store.open_call(raced.record()).await.expect("open");

        let listed = store
            .list_calls(&CallFilter::default())
            .await
            .expect("list");
        let in_progress: Vec<&str> = listed
            .iter()
            .filter(|c| c.in_progress)
            .map(|c| c.record.call_id.as_str())
            .collect();
        assert_eq!(in_progress, ["up"]);

        let closed = store
            .close_open_calls(at("2026-02-14T20:02:00+08:00"), SystemEnd::Crash)
            .await
            .expect("close");
        assert_eq!(closed.len(), 1);
        let listed = store
            .list_calls(&CallFilter::default())
            .await
            .expect("list");
        assert!(listed.iter().all(|c| !c.in_progress));
        let up = listed
            .iter()
            .find(|c| c.record.call_id == "up")
            .expect("up listed");
        assert_eq!(up.record.end_reason, Some(SystemEnd::Crash));
        assert_eq!(up.record.end, Some(at("2026-02-14T20:02:00+08:00")));
        assert_eq!(
            up.record.hung_up_first,
            Some(crate::ivr::cdr::HangupParty::System)
        );
        let done = listed
            .iter()
            .find(|c| c.record.call_id == "done")
            .expect("done listed");
        assert_eq!(done.record.end_reason, None);
        assert!(
            store
                .close_open_calls(at("2026-02-14T20:03:00+08:00"), SystemEnd::Crash)
                .await
                .expect("close")
                .is_empty()
        );
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
