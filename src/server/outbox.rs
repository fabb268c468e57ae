//! The work-order outbox: creates that arrive while the database is unavailable are
//! appended to a journal in the data directory (`outbox.jsonl`, fsync'd before the API
//! answers 202 Accepted) and written to the database, in order, once it is back.
//!
//! # Journal
//! One JSON object per line: `{"op":"create", …}` (the order as decided by the pure
//! core, its events, the actor and the idempotency key) or `{"op":"done","id":…}` once
//! that create is in the database. Loading keeps the creates without a `done`, in file
//! order; a torn last line (the process died mid-write, so it was never acknowledged) is
//! skipped. When nothing is left waiting the file is truncated.
//!
//! # Replay
//! [`OrderOutbox::replay_loop`] takes the oldest create and appends its events with
//! [`Store::append_order_events`]. Replays are safe to repeat: an order id already
//! stored ([`AppendError::Conflict`]) or an idempotency key already used
//! ([`AppendError::IdempotencyKeyTaken`]) means the write happened (a crash between the
//! commit and the `done` line) and the entry is marked done. While the database is
//! unavailable the loop waits and retries; a create the database refuses for another
//! reason is moved to `outbox.rejected.jsonl` and logged, so nothing vanishes silently.
//!
//! While creates wait, new creates join the queue without trying the database first:
//! the order of acknowledgement is the order of the ledger.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::server::metrics::Metrics;
use crate::server::sip::Shutdown;
use crate::store::Store;
use crate::store::orders::{AppendError, IdempotencyRecord};
use crate::ticket::{Event, Order};

/// A work-order create waiting for the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedCreate {
    /// The order as the core decided it (created and submitted).
    pub order: Order,
    /// Its events, appended as they are.
    pub events: Vec<Event>,
    /// The user who created it (idempotency keys are per user).
    pub actor: String,
    /// `Idempotency-Key` and the SHA-256 of the request body, when sent.
    pub idempotency: Option<QueuedKey>,
    /// When the API accepted it (unix milliseconds; the projection's `created_ms`).
    pub at_ms: i64,
}

/// An idempotency key of a queued create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedKey {
    pub key: String,
    pub body_hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Create(Box<QueuedCreate>),
    Done { id: String },
}

/// Why the outbox could not take a create.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot write the outbox journal {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a queued create cannot be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("the outbox is unusable (a writer panicked)")]
    Poisoned,
}

struct Journal {
    file: File,
    /// Bytes of complete lines; a failed append is cut back to this.
    len: u64,
    pending: VecDeque<QueuedCreate>,
    /// `(actor, key)` → order id of the pending creates.
    keys: HashMap<(String, String), String>,
    /// `done` lines since the file was last rewritten.
    done_lines: usize,
}

/// The durable queue of work-order creates (see the module docs).
pub struct OrderOutbox {
    path: PathBuf,
    rejected: PathBuf,
    journal: Mutex<Journal>,
    wake: tokio::sync::Notify,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for OrderOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderOutbox")
            .field("path", &self.path)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

/// Rewrite the journal once this many `done` lines have piled up behind waiting creates.
const COMPACT_AFTER: usize = 1024;

impl OrderOutbox {
    /// Open the journal `outbox.jsonl` in `data_dir` (created when missing) and load the
    /// creates a previous run left waiting.
    ///
    /// # Errors
    /// The journal cannot be created, read or repaired.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> Result<Arc<OrderOutbox>, OutboxError> {
        let path = data_dir.join("outbox.jsonl");
        let io = |source| OutboxError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let mut pending: Vec<QueuedCreate> = Vec::new();
        let mut done_lines = 0;
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(io)?;
                match serde_json::from_str::<Line>(&line) {
                    Ok(Line::Create(create)) => pending.push(*create),
                    Ok(Line::Done { id }) => {
                        done_lines += 1;
                        pending.retain(|c| c.order.id.0 != id);
                    }
                    Err(_) if line.trim().is_empty() => {}
                    // A torn write: the process died before the fsync, so this create
                    // was never acknowledged.
                    Err(e) => warn!(%e, path = %path.display(), "unreadable outbox line skipped"),
                }
            }
        }
        let outbox = OrderOutbox {
            rejected: data_dir.join("outbox.rejected.jsonl"),
            journal: Mutex::new(Journal {
                file: OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io)?,
                len: 0,
                pending: VecDeque::new(),
                keys: HashMap::new(),
                done_lines,
            }),
            path: path.clone(),
            wake: tokio::sync::Notify::new(),
            metrics,
        };
        {
            let mut journal = outbox.journal.lock().map_err(|_| OutboxError::Poisoned)?;
            for create in pending {
                journal.remember(create);
            }
            // Start from a clean file holding exactly the waiting creates.
            outbox.rewrite(&mut journal)?;
            outbox.metrics.set_outbox_depth(journal.pending.len());
            if !journal.pending.is_empty() {
                warn!(
                    waiting = journal.pending.len(),
                    "work-order creates queued by an earlier run will be written once the database answers"
                );
            }
        }
        Ok(Arc::new(outbox))
    }

    /// Creates waiting for the database.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.journal.lock().map_or(0, |j| j.pending.len())
    }

    /// The waiting create `actor` sent with this idempotency key.
    #[must_use]
    pub fn queued_key(&self, actor: &str, key: &str) -> Option<QueuedCreate> {
        let journal = self.journal.lock().ok()?;
        let id = journal.keys.get(&(actor.to_owned(), key.to_owned()))?;
        journal
            .pending
            .iter()
            .find(|c| &c.order.id.0 == id)
            .cloned()
    }

    /// Append a create and fsync it: once this returns `Ok` the create survives a crash.
    /// Blocking file IO: call it from `spawn_blocking`.
    ///
    /// # Errors
    /// The journal cannot be written (disk full …); nothing was queued then.
    pub fn append(&self, create: QueuedCreate) -> Result<(), OutboxError> {
        let line = serde_json::to_string(&Line::Create(Box::new(create.clone())))
            .map_err(OutboxError::Encode)?;
        let mut journal = self.journal.lock().map_err(|_| OutboxError::Poisoned)?;
        self.write_line(&mut journal, &line)?;
        let id = create.order.id.0.clone();
        journal.remember(create);
        self.metrics.order_queued();
        self.metrics.set_outbox_depth(journal.pending.len());
        info!(order = %id, waiting = journal.pending.len(), "database unavailable: order create queued");
        drop(journal);
        self.wake.notify_one();
        Ok(())
    }

    fn write_line(&self, journal: &mut Journal, line: &str) -> Result<(), OutboxError> {
        let io = |source| OutboxError::Io {
            path: self.path.clone(),
            source,
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let written = journal
            .file
            .write_all(&bytes)
            .and_then(|()| journal.file.sync_data());
        match written {
            Ok(()) => {
                journal.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut a partial line off so that the next append starts clean.
                let _ = journal.file.set_len(journal.len);
                Err(io(e))
            }
        }
    }

    /// The journal rewritten with exactly the waiting creates (atomic rename).
    fn rewrite(&self, journal: &mut Journal) -> Result<(), OutboxError> {
        let io = |source| OutboxError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut text = String::new();
        for create in &journal.pending {
            let line = serde_json::to_string(&Line::Create(Box::new(create.clone())))
                .map_err(OutboxError::Encode)?;
            text.push_str(&line);
            text.push('\n');
        }
        {
            let mut file = File::create(&tmp).map_err(io)?;
            file.write_all(text.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent()
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        journal.len = file.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        journal.file = file;
        journal.done_lines = 0;
        Ok(())
    }

    /// The oldest create is in the database: mark it done (durably) and drop it.
    fn mark_done(&self, id: &str) -> Result<(), OutboxError> {
        let mut journal = self.journal.lock().map_err(|_| OutboxError::Poisoned)?;
        if journal.pending.front().is_some_and(|c| c.order.id.0 == id)
            && let Some(done) = journal.pending.pop_front()
            && let Some(k) = done.idempotency.as_ref()
        {
            journal.keys.remove(&(done.actor.clone(), k.key.clone()));
        }
        if journal.pending.is_empty() || journal.done_lines >= COMPACT_AFTER {
            self.rewrite(&mut journal)?;
        } else {
            let line = serde_json::to_string(&Line::Done { id: id.to_owned() })
                .map_err(OutboxError::Encode)?;
            self.write_line(&mut journal, &line)?;
            journal.done_lines += 1;
        }
        self.metrics.set_outbox_depth(journal.pending.len());
        Ok(())
    }

    fn front(&self) -> Option<QueuedCreate> {
        self.journal.lock().ok()?.pending.front().cloned()
    }

    /// Keep a create the database refused for good, for an operator to look at.
    fn reject(&self, create: &QueuedCreate, why: &str) {
        let line = serde_json::json!({ "reason": why, "create": create }).to_string();
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.rejected)
            .and_then(|mut f| {
                f.write_all(line.as_bytes())?;
                f.write_all(b"\n")?;
                f.sync_data()
            });
        if let Err(e) = written {
            error!(%e, order = %create.order.id, "cannot keep a refused queued create");
        }
    }

    /// Write the waiting creates to the database, oldest first, until `shutdown`.
    pub async fn replay_loop(self: Arc<Self>, store: Store, shutdown: Shutdown) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let Some(create) = self.front() else {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = shutdown.cancelled() => return,
                }
            };
            let id = create.order.id.0.clone();
            let record = create.idempotency.as_ref().map(|k| IdempotencyRecord {
                actor: &create.actor,
                key: &k.key,
                body_hash: &k.body_hash,
            });
            let written = store
                .append_order_events(&create.order, 0, &create.events, record, create.at_ms)
                .await;
            let outcome = match written {
                Ok(()) => Some("written"),
                // The id is there already: an earlier replay committed before its `done`.
                Err(AppendError::Conflict) => Some("already written"),
                Err(AppendError::IdempotencyKeyTaken) => Some("duplicate idempotency key"),
                Err(AppendError::Store(e)) if e.is_unavailable() => None,
                Err(AppendError::Store(e)) => {
                    error!(%e, order = %id, "the database refused a queued order create; kept in outbox.rejected.jsonl");
                    let reason = e.to_string();
                    let blocking = self.clone();
                    let kept = create.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || blocking.reject(&kept, &reason)).await;
                    self.metrics.order_replay_failed();
                    Some("refused")
                }
            };
            match outcome {
                Some(what) => {
                    backoff = Duration::from_millis(500);
                    if what != "refused" {
                        self.metrics.order_replayed();
                    }
                    let blocking = self.clone();
                    let done_id = id.clone();
                    let marked =
                        tokio::task::spawn_blocking(move || blocking.mark_done(&done_id)).await;
                    match marked {
                        Ok(Ok(())) => {
                            info!(order = %id, outcome = what, waiting = self.depth(), "queued order create replayed")
                        }
                        Ok(Err(e)) => {
                            // The entry stays first and is replayed again (a no-op then).
                            error!(%e, order = %id, "cannot mark a replayed create done");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => error!(%e, "outbox task failed"),
                    }
                }
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

impl Journal {
    fn remember(&mut self, create: QueuedCreate) {
        if let Some(k) = create.idempotency.as_ref() {
            self.keys.insert(
                (create.actor.clone(), k.key.clone()),
                create.order.id.0.clone(),
            );
        }
        self.pending.push_back(create);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::OrderId;

    fn create(id: &str, key: Option<&str>) -> QueuedCreate {
        QueuedCreate {
            order: Order {
                id: OrderId(id.to_owned()),
                ..Order::default()
            },
            events: Vec::new(),
            actor: "9001".into(),
            idempotency: key.map(|k| QueuedKey {
                key: k.into(),
                body_hash: "h".into(),
            }),
            at_ms: 1,
        }
    }

    #[test]
    fn creates_survive_a_reopen_until_marked_done_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let metrics = Arc::new(Metrics::default());
        let outbox = OrderOutbox::open(dir.path(), metrics.clone()).expect("open");
        assert_eq!(outbox.depth(), 0);
        for (id, key) in [("A", Some("k1")), ("B", None), ("C", Some("k3"))] {
            outbox.append(create(id, key)).expect("append");
        }
        assert_eq!(
            outbox.queued_key("9001", "k3").map(|c| c.order.id.0),
            Some("C".into())
        );
        outbox.mark_done("A").expect("done");
        drop(outbox);
        // As after kill -9: what was appended is there, what was done is not.
        let outbox = OrderOutbox::open(dir.path(), metrics.clone()).expect("reopen");
        let ids: Vec<String> = outbox
            .journal
            .lock()
            .expect("lock")
            .pending
            .iter()
            .map(|c| c.order.id.0.clone())
            .collect();
        assert_eq!(ids, ["B", "C"]);
        assert_eq!(outbox.queued_key("9001", "k1"), None);
        assert!(outbox.queued_key("9001", "k3").is_some());
        outbox.mark_done("B").expect("done");
        outbox.mark_done("C").expect("done");
        assert_eq!(outbox.depth(), 0);
        let len = std::fs::metadata(dir.path().join("outbox.jsonl"))
            .expect("journal")
            .len();
        assert_eq!(len, 0, "an empty queue leaves an empty journal");
        assert!(metrics.render().contains("hotline_orders_queued_total 3"));
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().expect("tmp");
        let metrics = Arc::new(Metrics::default());
        let outbox = OrderOutbox::open(dir.path(), metrics.clone()).expect("open");
        outbox.append(create("A", None)).expect("append");
        drop(outbox);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("outbox.jsonl"))
            .expect("journal");
        file.write_all(b"{\"op\":\"create\",\"order\":{\"id\"")
            .expect("torn");
        drop(file);
        let outbox = OrderOutbox::open(dir.path(), metrics).expect("reopen");
        assert_eq!(outbox.depth(), 1);
        outbox
            .append(create("B", None))
            .expect("append after repair");
        assert_eq!(outbox.depth(), 2);
    }
}
