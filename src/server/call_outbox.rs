//! The call-record outbox: a call that ends while the database is unavailable keeps its
//! record (and its voice message, which must become a callback order) in a journal in
//! the data directory (`call-records.outbox.jsonl`, fsync'd), written once the database
//! answers. Writing a record is an upsert by call id, so a replay repeated after a crash
//! is harmless, and the journal and replay are [`crate::orders::journal`]'s.
//!
//! A record found open at start-up ([`crate::store::Store::close_open_calls`]) whose end
//! waits here is closed as a crash first and then overwritten by the real end on replay.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::ivr::cdr::CallDetailRecord;
use crate::metrics::{Metrics, OutboxKind};
use crate::orders::journal::{
    DurableQueue, OutboxError, Queued, Replayed, SharedQueue, replay_loop,
};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::store::calls::VoiceMessage;

/// A finished call's record waiting for the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedCallRecord {
    pub record: CallDetailRecord,
    pub voice_message: Option<VoiceMessage>,
}

impl Queued for QueuedCallRecord {
    fn queue_id(&self) -> &str {
        &self.record.call_id
    }
}

/// The durable queue of call records (see the module docs).
pub struct CallRecordOutbox {
    shared: Arc<SharedQueue<QueuedCallRecord>>,
}

impl std::fmt::Debug for CallRecordOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecordOutbox")
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

impl CallRecordOutbox {
    /// Open `call-records.outbox.jsonl` in `data_dir` and load what an earlier run left.
    ///
    /// # Errors
    /// The journal cannot be created, read or repaired.
    pub fn open(
        data_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<CallRecordOutbox>, OutboxError> {
        let queue: DurableQueue<QueuedCallRecord> = DurableQueue::open(
            data_dir.join("call-records.outbox.jsonl"),
            data_dir.join("call-records.outbox.rejected.jsonl"),
        )?;
        if !queue.pending().is_empty() {
            warn!(
                waiting = queue.pending().len(),
                "call records queued by an earlier run will be written once the database answers"
            );
        }
        Ok(Arc::new(CallRecordOutbox {
            shared: Arc::new(SharedQueue::new(queue, OutboxKind::CallRecords, metrics)),
        }))
    }

    /// Records waiting for the database.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.shared.depth()
    }

    /// Queue a record (fsync'd); blocking file IO, so from `spawn_blocking`. When the
    /// journal cannot take it either (the disk the database is on is full, and so is the
    /// data directory), the record is held in memory and written by the replay loop once
    /// the database answers — lost only if the process stops before that (logged).
    ///
    /// # Errors
    /// The record cannot be encoded, or the outbox is unusable.
    pub fn append(&self, queued: QueuedCallRecord) -> Result<(), OutboxError> {
        let call_id = queued.record.call_id.clone();
        match self.shared.push_or_hold(queued)? {
            None => {
                info!(%call_id, waiting = self.depth(), "database unavailable: call record queued")
            }
            Some(journal) => error!(
                %call_id,
                %journal,
                waiting = self.depth(),
                "database and outbox journal unavailable: call record held in memory until the database takes it (lost if the process stops first)"
            ),
        }
        Ok(())
    }

    /// Write the waiting records to the database, oldest first, until `shutdown`.
    pub async fn replay_loop(self: Arc<Self>, store: Store, shutdown: Shutdown) {
        let write = |queued: QueuedCallRecord| {
            let store = store.clone();
            async move {
                match store
                    .insert_call(&queued.record, queued.voice_message.as_ref())
                    .await
                {
                    Ok(()) => Replayed::Written,
                    Err(e) if e.is_unavailable() => Replayed::Unavailable,
                    Err(e) => Replayed::Refused(e.to_string()),
                }
            }
        };
        replay_loop(self.shared.clone(), shutdown, write, |_| {}).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivr::cdr::CdrBuilder;
    use crate::store::test_support::sqlite;
    use chrono::DateTime;
    use std::time::Duration;

    fn queued(call_id: &str) -> QueuedCallRecord {
        let at = |s| DateTime::parse_from_rfc3339(s).expect("time");
        let cdr = CdrBuilder::new(
            call_id,
            "13812345678",
            "12348",
            at("2026-02-14T20:00:00+08:00"),
        );
        QueuedCallRecord {
            record: cdr.finish(at("2026-02-14T20:01:00+08:00")),
            voice_message: Some(VoiceMessage {
                call_id: call_id.into(),
                caller: "13812345678".into(),
                city: Some("jinan".into()),
                category: "consultation".into(),
                urgency: "normal".into(),
                recording: format!("recordings/{call_id}-message.wav"),
                duration_ms: 5_000,
                received_at: "2026-02-14T20:00:40+08:00".into(),
                callback_due: "2026-02-25T00:00:00+08:00".into(),
                provisional: false,
                work_order: None,
            }),
        }
    }

    async fn replay_until_empty(outbox: &Arc<CallRecordOutbox>, store: &Store) {
        let shutdown = Shutdown::default();
        let task = tokio::spawn(outbox.clone().replay_loop(store.clone(), shutdown.clone()));
        for _ in 0..200 {
            if outbox.depth() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        task.await.expect("replay task");
    }

    #[tokio::test]
    async fn queued_records_and_voice_messages_survive_a_restart_and_land_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let metrics = Arc::new(Metrics::default());
        let outbox = CallRecordOutbox::open(dir.path(), metrics.clone()).expect("open");
        outbox.append(queued("c-1")).expect("queue");
        outbox.append(queued("c-2")).expect("queue");
        drop(outbox);
        // As after kill -9 during the outage: both are still there.
        let outbox = CallRecordOutbox::open(dir.path(), metrics.clone()).expect("reopen");
        assert_eq!(outbox.depth(), 2);

        let (store, _db) = sqlite().await;
        // c-1 was written before the crash but its `done` line was not: the replay must
        // not duplicate or fail on it.
        let first = queued("c-1");
        store
            .insert_call(&first.record, first.voice_message.as_ref())
            .await
            .expect("earlier write");
        replay_until_empty(&outbox, &store).await;
        assert_eq!(outbox.depth(), 0);
        for id in ["c-1", "c-2"] {
            let record = store.call_record(id).await.expect("read").expect("record");
            assert_eq!(record, queued(id).record);
            let message = store
                .voice_message(id)
                .await
                .expect("read")
                .expect("message");
            assert_eq!(Some(message), queued(id).voice_message, "{id}");
        }
        let text = metrics.render();
        assert!(
            text.contains("hotline_call_records_queued_total 2"),
            "{text}"
        );
        assert!(
            text.contains("hotline_call_records_replayed_total 2"),
            "{text}"
        );
        assert!(
            text.contains("hotline_call_records_outbox_depth 0"),
            "{text}"
        );
        // Nothing is left for the next start.
        let outbox = CallRecordOutbox::open(dir.path(), metrics).expect("reopen");
        assert_eq!(outbox.depth(), 0);
    }
}
