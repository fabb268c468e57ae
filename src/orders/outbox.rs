//! The work-order outbox: creates that arrive while the database is unavailable are
//! appended to a journal in the data directory (`outbox.jsonl`, fsync'd before the API
//! answers 202 Accepted) and written to the database, in order, once it is back. The
//! journal and its replay are [`super::journal`]'s.
//!
//! Replays are safe to repeat: an order id already stored ([`AppendError::Conflict`])
//! or an idempotency key already used ([`AppendError::IdempotencyKeyTaken`]) means the
//! write happened (a crash between the commit and the `done` line) and the entry is
//! marked done. A create the database refuses for another reason is moved to
//! `outbox.rejected.jsonl` and logged.
//!
//! While creates wait, new creates join the queue without trying the database first:
//! the order of acknowledgement is the order of the ledger.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use super::journal::OutboxError;
use super::journal::{DurableQueue, Queued, Replayed, SharedQueue, replay_loop};
use crate::metrics::{Metrics, OutboxKind};
use crate::shutdown::Shutdown;
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

impl Queued for QueuedCreate {
    fn queue_id(&self) -> &str {
        &self.order.id.0
    }
}

/// An idempotency key of a queued create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedKey {
    pub key: String,
    pub body_hash: String,
}

/// The durable queue of work-order creates (see the module docs).
pub struct OrderOutbox {
    shared: Arc<SharedQueue<QueuedCreate>>,
    /// `(actor, key)` → order id of the waiting creates.
    keys: Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for OrderOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderOutbox")
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

impl OrderOutbox {
    /// Open the journal `outbox.jsonl` in `data_dir` (created when missing) and load the
    /// creates a previous run left waiting.
    ///
    /// # Errors
    /// The journal cannot be created, read or repaired.
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> Result<Arc<OrderOutbox>, OutboxError> {
        let queue: DurableQueue<QueuedCreate> = DurableQueue::open(
            data_dir.join("outbox.jsonl"),
            data_dir.join("outbox.rejected.jsonl"),
        )?;
        let mut keys = HashMap::new();
        for create in queue.pending() {
            remember_key(&mut keys, create);
        }
        if !queue.pending().is_empty() {
            warn!(
                waiting = queue.pending().len(),
                "work-order creates queued by an earlier run will be written once the database answers"
            );
        }
        Ok(Arc::new(OrderOutbox {
            shared: Arc::new(SharedQueue::new(queue, OutboxKind::Orders, metrics)),
            keys: Mutex::new(keys),
        }))
    }

    /// Creates waiting for the database.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.shared.depth()
    }

    /// The waiting create `actor` sent with this idempotency key.
    #[must_use]
    pub fn queued_key(&self, actor: &str, key: &str) -> Option<QueuedCreate> {
        let id = self
            .keys
            .lock()
            .ok()?
            .get(&(actor.to_owned(), key.to_owned()))?
            .clone();
        let queue = self.shared.queue.lock().ok()?;
        queue.pending().iter().find(|c| c.order.id.0 == id).cloned()
    }

    /// Append a create and fsync it: once this returns `Ok` the create survives a crash.
    /// Blocking file IO: call it from `spawn_blocking`.
    ///
    /// # Errors
    /// The journal cannot be written (disk full …); nothing was queued then.
    pub fn append(&self, create: QueuedCreate) -> Result<(), OutboxError> {
        let id = create.order.id.0.clone();
        // The key first: a replay that wins the race must find it to forget it.
        if let Ok(mut keys) = self.keys.lock() {
            remember_key(&mut keys, &create);
        }
        let key = create
            .idempotency
            .as_ref()
            .map(|k| (create.actor.clone(), k.key.clone()));
        match self.shared.push(create) {
            Ok(waiting) => {
                info!(order = %id, waiting, "database unavailable: order create queued");
                Ok(())
            }
            Err(e) => {
                if let (Some(key), Ok(mut keys)) = (key, self.keys.lock()) {
                    keys.remove(&key);
                }
                Err(e)
            }
        }
    }

    #[cfg(test)]
    fn mark_done(&self, id: &str) -> Result<(), OutboxError> {
        let done = self
            .shared
            .queue
            .lock()
            .map_err(|_| OutboxError::Poisoned)?
            .mark_done(id)?;
        if let Some(done) = done {
            self.forget_key(&done);
        }
        Ok(())
    }

    fn forget_key(&self, done: &QueuedCreate) {
        if let (Some(k), Ok(mut keys)) = (done.idempotency.as_ref(), self.keys.lock()) {
            keys.remove(&(done.actor.clone(), k.key.clone()));
        }
    }

    /// Write the waiting creates to the database, oldest first, until `shutdown`.
    pub async fn replay_loop(self: Arc<Self>, store: Store, shutdown: Shutdown) {
        let write = |create: QueuedCreate| {
            let store = store.clone();
            async move {
                let record = create.idempotency.as_ref().map(|k| IdempotencyRecord {
                    actor: &create.actor,
                    key: &k.key,
                    body_hash: &k.body_hash,
                });
                match store
                    .append_order_events(&create.order, 0, &create.events, record, create.at_ms)
                    .await
                {
                    Ok(()) => Replayed::Written,
                    Err(AppendError::Conflict) => Replayed::AlreadyThere("already written"),
                    Err(AppendError::IdempotencyKeyTaken) => {
                        Replayed::AlreadyThere("duplicate idempotency key")
                    }
                    Err(AppendError::Store(e)) if e.is_unavailable() => Replayed::Unavailable,
                    Err(AppendError::Store(e)) => Replayed::Refused(e.to_string()),
                }
            }
        };
        let outbox = self.clone();
        replay_loop(self.shared.clone(), shutdown, write, move |done| {
            outbox.forget_key(done);
        })
        .await;
    }
}

fn remember_key(keys: &mut HashMap<(String, String), String>, create: &QueuedCreate) {
    if let Some(k) = create.idempotency.as_ref() {
        keys.insert(
            (create.actor.clone(), k.key.clone()),
            create.order.id.0.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::OrderId;
    use std::fs::OpenOptions;
    use std::io::Write;

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
            .shared
            .queue
            .lock()
            .expect("lock")
            .pending()
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
