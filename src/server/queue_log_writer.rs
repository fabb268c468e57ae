//! The ACD's `queue_log` rows go to the database through one task, in the order the ACD
//! decided them, several rows per transaction.
//!
//! Why: a row per spawned task meant one commit (and, with SQLite's `synchronous =
//! FULL`, one fsync) per row, several rows per call, each task racing the others for a
//! pooled connection, so rows of one call could land out of order and, at a few dozen
//! calls per second, the pool's waits reached seconds (bench/call-setup.sh full path).
//! Here a row waits only for the batch before it: whatever arrived meanwhile (up to
//! [`MAX_BATCH`]) is written in one transaction.
//!
//! Bounded: while the database is slow or away, up to [`CAPACITY`] rows wait; beyond
//! that new rows are dropped and counted in the log, never blocking a call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tracing::warn;

use crate::queue::QueueLogEntry;
use crate::store::Store;

/// Rows written in one transaction at most.
pub const MAX_BATCH: usize = 256;
/// Rows waiting at most.
pub const CAPACITY: usize = 65_536;

/// The sending side; cheap to call from the ACD's lock-free paths.
#[derive(Debug)]
pub struct QueueLogWriter {
    tx: mpsc::Sender<Item>,
    dropped: Arc<AtomicU64>,
}

/// What goes down the channel: rows, and a marker answered once every row before it is
/// written (at shutdown: nothing decided is left in memory).
#[derive(Debug)]
enum Item {
    Row(QueueLogEntry),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl QueueLogWriter {
    /// Start the writer task on the current tokio runtime.
    #[must_use]
    pub fn start(store: Store) -> QueueLogWriter {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(write_loop(store, rx));
        QueueLogWriter {
            tx,
            dropped: Arc::default(),
        }
    }

    /// Queue a row for writing (never waits).
    pub fn log(&self, entry: QueueLogEntry) {
        if self.tx.try_send(Item::Row(entry)).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped == 1 || dropped % 1000 == 0 {
                warn!(
                    dropped,
                    "queue_log rows dropped: the database is not keeping up"
                );
            }
        }
    }

    /// Wait until every row logged before this call is written (or failed).
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.tx.send(Item::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Item>) {
    let mut items = Vec::with_capacity(MAX_BATCH);
    let mut rows = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        let mut flushed = Vec::new();
        for item in items.drain(..) {
            match item {
                Item::Row(row) => rows.push(row),
                Item::Flush(done) => flushed.push(done),
            }
        }
        if !rows.is_empty()
            && let Err(e) = store.insert_queue_log_batch(&rows).await
        {
            warn!(%e, rows = rows.len(), "queue_log rows not stored");
        }
        rows.clear();
        for done in flushed {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivr::city::CityId;
    use crate::queue::{AgentId, QueueLogEvent};
    use crate::store::test_support::sqlite;
    use crate::ticket::model::CallId;
    use chrono::DateTime;
    use std::time::Duration;

    #[tokio::test]
    async fn rows_logged_together_land_in_order() {
        let (store, _db) = sqlite().await;
        let writer = QueueLogWriter::start(store.clone());
        let at = DateTime::parse_from_rfc3339("2026-03-02T10:00:00+08:00").expect("time");
        let agent = AgentId("1001".into());
        for i in 0..1000 {
            writer.log(QueueLogEntry {
                // One instant for all: the read orders by time, then by insertion.
                at,
                queue: CityId::new("jinan"),
                call: Some(CallId(format!("c-{i}"))),
                agent: Some(agent.clone()),
                event: QueueLogEvent::Connect {
                    wait_ms: i,
                    ring_ms: 0,
                },
            });
        }
        let mut rows = Vec::new();
        for _ in 0..200 {
            rows = store.agent_queue_log(&agent).await.expect("read");
            if rows.len() == 1000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let calls: Vec<String> = rows
            .iter()
            .filter_map(|r| r.call.as_ref().map(|c| c.0.clone()))
            .collect();
        let expected: Vec<String> = (0..1000).map(|i| format!("c-{i}")).collect();
        assert_eq!(calls, expected);
    }
}
