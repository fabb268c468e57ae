//! A durable FIFO of writes waiting for the database: one JSON line per entry in a
//! journal in the data directory, fsync'd before the caller is told "kept", and written
//! to the database in order once it answers. The work-order outbox
//! ([`super::outbox::OrderOutbox`]) and the call-record outbox
//! ([`crate::server::call_outbox::CallRecordOutbox`]) are two of these.
//!
//! # Journal
//! `{"op":"create", …}` per entry, `{"op":"done","id":…}` once that entry is in the
//! database. Loading keeps the entries without a `done`, in file order; a torn last line
//! (the process died mid-write, before the fsync, so the entry was never acknowledged)
//! is skipped. An entry the journal cannot take (disk full) is refused to the caller
//! ([`DurableQueue::push`]), or for records nobody can be refused to, held in memory
//! ([`DurableQueue::hold`]) until the database or the journal takes it. When nothing is
//! left waiting the file is truncated, and after
//! [`COMPACT_AFTER`] `done` lines it is rewritten with only the waiting entries.
//!
//! # Replay
//! [`replay_loop`] takes the oldest entry and hands it to a writer. Writers must be
//! idempotent (an upsert, or "already there" counts as written): a crash between the
//! commit and the `done` line replays the entry. While the database is unavailable the
//! loop waits with a backoff; an entry the database refuses for another reason is moved
//! to a `*.rejected.jsonl` file and logged, so nothing vanishes silently.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::metrics::{Metrics, OutboxKind};
use crate::shutdown::Shutdown;

/// Why a journal could not take or give back an entry.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot write the outbox journal {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a queued entry cannot be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("the outbox is unusable (a writer panicked)")]
    Poisoned,
}

/// An entry of a [`DurableQueue`]: its id is what the `done` line names.
pub trait Queued: Serialize + DeserializeOwned + Clone + Send + 'static {
    fn queue_id(&self) -> &str;
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[serde(bound(deserialize = "T: DeserializeOwned"))]
enum Line<T> {
    Create(Box<T>),
    Done { id: String },
}

/// Rewrite the journal once this many `done` lines have piled up behind waiting entries.
pub const COMPACT_AFTER: usize = 1024;

/// The file and the entries still waiting (see the module docs). Not synchronised: the
/// owner keeps it behind a mutex and calls it from blocking code (every write fsyncs).
pub struct DurableQueue<T> {
    path: PathBuf,
    rejected: PathBuf,
    file: File,
    /// Bytes of complete lines; a failed append is cut back to this.
    len: u64,
    pending: VecDeque<T>,
    /// `done` lines since the file was last rewritten.
    done_lines: usize,
    /// Entries are waiting in memory only ([`DurableQueue::hold`]): the next append
    /// rewrites the whole journal to take them in.
    held: bool,
}

impl<T: Queued> DurableQueue<T> {
    /// Open `path` (created when missing) and load what a previous run left waiting;
    /// refused entries will go to `rejected`.
    ///
    /// # Errors
    /// The journal cannot be created, read or repaired.
    pub fn open(path: PathBuf, rejected: PathBuf) -> Result<DurableQueue<T>, OutboxError> {
        let io = |source| OutboxError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut pending: Vec<T> = Vec::new();
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(io)?;
                match serde_json::from_str::<Line<T>>(&line) {
                    Ok(Line::Create(entry)) => pending.push(*entry),
                    Ok(Line::Done { id }) => pending.retain(|e| e.queue_id() != id),
                    Err(_) if line.trim().is_empty() => {}
                    // A torn write: never acknowledged.
                    Err(e) => warn!(%e, path = %path.display(), "unreadable outbox line skipped"),
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut queue = DurableQueue {
            path,
            rejected,
            file,
            len: 0,
            pending: pending.into(),
            done_lines: 0,
            held: false,
        };
        // Start from a clean file holding exactly the waiting entries.
        queue.rewrite()?;
        Ok(queue)
    }

    /// The entries waiting, oldest first.
    #[must_use]
    pub fn pending(&self) -> &VecDeque<T> {
        &self.pending
    }

    /// Append an entry and fsync it: once this returns `Ok` it survives a crash.
    ///
    /// # Errors
    /// The journal cannot be written (disk full …); nothing was queued then.
    pub fn push(&mut self, entry: T) -> Result<(), OutboxError> {
        let line = serde_json::to_string(&Line::Create(Box::new(entry.clone())))
            .map_err(OutboxError::Encode)?;
        if self.held {
            // Take the held entries in with this one, in order.
            self.pending.push_back(entry);
            if let Err(e) = self.rewrite() {
                self.pending.pop_back();
                return Err(e);
            }
            self.held = false;
            return Ok(());
        }
        self.write_line(&line)?;
        self.pending.push_back(entry);
        Ok(())
    }

    /// Keep an entry the journal could not take ([`DurableQueue::push`] failed) in memory,
    /// in order with the others: it is replayed like them, and journaled by the next
    /// append that succeeds, but lost if the process stops before either. For records
    /// with nobody to refuse them to (a finished call's record); a create a client can
    /// retry is refused instead.
    pub fn hold(&mut self, entry: T) {
        self.pending.push_back(entry);
        self.held = true;
    }

    /// The oldest entry is in the database: drop it and say so durably. Returns it, or
    /// `None` when `id` is not the oldest (nothing changes then).
    ///
    /// # Errors
    /// The `done` line (or the compacted journal) cannot be written; the entry is gone
    /// from memory but a restart replays it (a no-op for an idempotent writer).
    pub fn mark_done(&mut self, id: &str) -> Result<Option<T>, OutboxError> {
        if self.pending.front().is_none_or(|e| e.queue_id() != id) {
            return Ok(None);
        }
        let done = self.pending.pop_front();
        if self.pending.is_empty() || self.done_lines >= COMPACT_AFTER {
            self.rewrite()?;
        } else {
            let line = serde_json::to_string(&Line::<T>::Done { id: id.to_owned() })
                .map_err(OutboxError::Encode)?;
            self.write_line(&line)?;
            self.done_lines += 1;
        }
        Ok(done)
    }

    /// Keep an entry the database refused for good, for an operator to look at.
    pub fn reject(&self, entry: &T, why: &str) {
        let line = serde_json::json!({ "reason": why, "entry": entry }).to_string();
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
            error!(%e, id = entry.queue_id(), path = %self.rejected.display(), "cannot keep a refused queued entry");
        }
    }

    fn io_error(&self, source: std::io::Error) -> OutboxError {
        OutboxError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn write_line(&mut self, line: &str) -> Result<(), OutboxError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut a partial line off so that the next append starts clean.
                let _ = self.file.set_len(self.len);
                Err(self.io_error(e))
            }
        }
    }

    /// The journal rewritten with exactly the waiting entries (atomic rename).
    fn rewrite(&mut self) -> Result<(), OutboxError> {
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut text = String::new();
        for entry in &self.pending {
            let line = serde_json::to_string(&Line::Create(Box::new(entry.clone())))
                .map_err(OutboxError::Encode)?;
            text.push_str(&line);
            text.push('\n');
        }
        {
            let mut file = File::create(&tmp).map_err(|e| self.io_error(e))?;
            file.write_all(text.as_bytes())
                .map_err(|e| self.io_error(e))?;
            file.sync_all().map_err(|e| self.io_error(e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io_error(e))?;
        sync_dir(&self.path).map_err(|e| self.io_error(e))?;
        let mut file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io_error(e))?;
        self.len = file
            .seek(std::io::SeekFrom::End(0))
            .map_err(|e| self.io_error(e))?;
        self.file = file;
        self.done_lines = 0;
        self.held = false;
        Ok(())
    }
}

/// Make a rename durable: fsync the directory that holds `path`. Checked like the
/// journal's own fsync: a rewrite is not done until its rename is on disk.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// What a replay writer made of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Written now.
    Written,
    /// Already there (an earlier replay committed before its `done` line): says why.
    AlreadyThere(&'static str),
    /// The database is still unavailable: keep it and try again later.
    Unavailable,
    /// Refused for good: moved to the rejected file with this reason.
    Refused(String),
}

/// The mutex-guarded queue an outbox owns, with its wake-up for the replay loop.
pub struct SharedQueue<T> {
    pub queue: Mutex<DurableQueue<T>>,
    pub wake: tokio::sync::Notify,
    pub kind: OutboxKind,
    pub metrics: Arc<Metrics>,
}

impl<T: Queued> SharedQueue<T> {
    #[must_use]
    pub fn new(queue: DurableQueue<T>, kind: OutboxKind, metrics: Arc<Metrics>) -> Self {
        metrics.set_outbox_depth(kind, queue.pending().len());
        SharedQueue {
            queue: Mutex::new(queue),
            wake: tokio::sync::Notify::new(),
            kind,
            metrics,
        }
    }

    /// Entries waiting for the database.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.pending().len())
    }

    /// Append (fsync'd) and wake the replay loop. Blocking file IO: call it from
    /// `spawn_blocking`.
    ///
    /// # Errors
    /// See [`DurableQueue::push`].
    pub fn push(&self, entry: T) -> Result<usize, OutboxError> {
        let mut queue = self.queue.lock().map_err(|_| OutboxError::Poisoned)?;
        queue.push(entry)?;
        let depth = queue.pending().len();
        drop(queue);
        self.metrics.outbox_queued(self.kind);
        self.metrics.set_outbox_depth(self.kind, depth);
        self.wake.notify_one();
        Ok(depth)
    }

    /// [`SharedQueue::push`], or when the journal cannot take the entry, hold it in memory
    /// ([`DurableQueue::hold`]) and wake the replay loop all the same. `Ok(None)`: journaled;
    /// `Ok(Some(error))`: held in memory only, because of `error`.
    ///
    /// # Errors
    /// The entry cannot be encoded, or the queue is unusable.
    pub fn push_or_hold(&self, entry: T) -> Result<Option<OutboxError>, OutboxError> {
        let mut queue = self.queue.lock().map_err(|_| OutboxError::Poisoned)?;
        let held = match queue.push(entry.clone()) {
            Ok(()) => None,
            Err(e @ OutboxError::Io { .. }) => {
                queue.hold(entry);
                Some(e)
            }
            Err(e) => return Err(e),
        };
        let depth = queue.pending().len();
        drop(queue);
        self.metrics.outbox_queued(self.kind);
        self.metrics.set_outbox_depth(self.kind, depth);
        self.wake.notify_one();
        Ok(held)
    }

    fn front(&self) -> Option<T> {
        self.queue.lock().ok()?.pending().front().cloned()
    }

    fn mark_done(&self, id: &str) -> Result<Option<T>, OutboxError> {
        let mut queue = self.queue.lock().map_err(|_| OutboxError::Poisoned)?;
        let done = queue.mark_done(id)?;
        self.metrics
            .set_outbox_depth(self.kind, queue.pending().len());
        Ok(done)
    }

    fn reject(&self, entry: &T, why: &str) {
        if let Ok(queue) = self.queue.lock() {
            queue.reject(entry, why);
        }
    }
}

/// Write the waiting entries with `write`, oldest first, until `shutdown`. `on_done` runs
/// (under no lock) for each entry taken off the queue.
pub async fn replay_loop<T, W, Fut, D>(
    shared: Arc<SharedQueue<T>>,
    shutdown: Shutdown,
    write: W,
    on_done: D,
) where
    T: Queued,
    W: Fn(T) -> Fut,
    Fut: Future<Output = Replayed>,
    D: Fn(&T),
{
    const FIRST_BACKOFF: Duration = Duration::from_millis(500);
    let what = shared.kind.what();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(entry) = shared.front() else {
            tokio::select! {
                _ = shared.wake.notified() => continue,
                _ = shutdown.cancelled() => return,
            }
        };
        let id = entry.queue_id().to_owned();
        let outcome = match write(entry.clone()).await {
            Replayed::Unavailable => {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Replayed::Written => "written",
            Replayed::AlreadyThere(why) => why,
            Replayed::Refused(reason) => {
                error!(%reason, %id, "the database refused a queued {what}; kept in the rejected journal");
                let blocking = shared.clone();
                let kept = entry.clone();
                let _ = tokio::task::spawn_blocking(move || blocking.reject(&kept, &reason)).await;
                shared.metrics.outbox_refused(shared.kind);
                "refused"
            }
        };
        backoff = FIRST_BACKOFF;
        if outcome != "refused" {
            shared.metrics.outbox_replayed(shared.kind);
        }
        let blocking = shared.clone();
        let done_id = id.clone();
        match tokio::task::spawn_blocking(move || blocking.mark_done(&done_id)).await {
            Ok(Ok(done)) => {
                if let Some(done) = done {
                    on_done(&done);
                }
                info!(%id, outcome, waiting = shared.depth(), "queued {what} replayed");
            }
            Ok(Err(e)) => {
                // Gone from memory; a restart replays it (a no-op for an idempotent writer).
                error!(%e, %id, "cannot mark a replayed {what} done");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => error!(%e, "outbox task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Entry {
        id: String,
    }
    impl Queued for Entry {
        fn queue_id(&self) -> &str {
            &self.id
        }
    }

    fn entry(id: &str) -> Entry {
        Entry { id: id.into() }
    }

    fn ids(q: &DurableQueue<Entry>) -> Vec<String> {
        q.pending().iter().map(|e| e.id.clone()).collect()
    }

    #[test]
    fn only_the_oldest_is_marked_done_and_compaction_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("q.jsonl");
        let mut q: DurableQueue<Entry> =
            DurableQueue::open(path.clone(), dir.path().join("r.jsonl")).expect("open");
        for i in 0..=COMPACT_AFTER + 2 {
            q.push(entry(&format!("e{i}"))).expect("push");
        }
        assert_eq!(q.mark_done("e1").expect("not oldest"), None);
        for i in 0..=COMPACT_AFTER {
            assert_eq!(
                q.mark_done(&format!("e{i}")).expect("done"),
                Some(entry(&format!("e{i}")))
            );
        }
        // The 1025th `done` compacted the file to the two entries left.
        let lines = std::fs::read_to_string(&path).expect("read");
        assert_eq!(lines.lines().count(), 2, "{lines}");
        drop(q);
        let q: DurableQueue<Entry> =
            DurableQueue::open(path, dir.path().join("r.jsonl")).expect("reopen");
        assert_eq!(
            ids(&q),
            [
                format!("e{}", COMPACT_AFTER + 1),
                format!("e{}", COMPACT_AFTER + 2)
            ]
        );
    }

    #[test]
    fn a_refused_entry_is_kept_with_its_reason() {
        let dir = tempfile::tempdir().expect("tmp");
        let q: DurableQueue<Entry> = DurableQueue::open(
            dir.path().join("q.jsonl"),
            dir.path().join("q.rejected.jsonl"),
        )
        .expect("open");
        q.reject(&entry("x"), "check constraint");
        let kept = std::fs::read_to_string(dir.path().join("q.rejected.jsonl")).expect("kept");
        let kept: serde_json::Value = serde_json::from_str(kept.trim()).expect("json");
        assert_eq!(kept["reason"], "check constraint");
        assert_eq!(kept["entry"]["id"], "x");
    }
}
