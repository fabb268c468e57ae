//! Work-order persistence: the append-only, hash-chained event ledger (TK-LEDGER) and
//! the `orders` projection, written in one transaction.
//!
//! # Chain
//! One global chain over every order's events in commit order (`global_seq`):
//! `hash = SHA-256(prev_hash || Event::canonical_bytes)`, hex, the first `prev_hash`
//! being 64 zeros. `ledger_head` holds the last link. Each commit reads the head
//! under a lock held to the commit (`FOR UPDATE` on PostgreSQL; on SQLite the
//! transaction holds the database's write lock from its first statement), so commits
//! are serialized and the chain has no forks. The head is taken last, after the
//! projection and scope rows are written, so the serialized part is short. [`Store::verify_ledger`] walks
//! the chain: an edited row breaks its hash (or its derived `reason` column no longer
//! matches the hashed event), a deleted row leaves a gap in `global_seq` or a
//! `prev_hash` that does not match, a deleted tail no longer reaches the head.
//!
//! # Concurrency
//! The projection's `version` must equal the version the command was decided on
//! (`UPDATE … WHERE version = $expected`); otherwise the transaction is rolled back
//! and [`AppendError::Conflict`] returned (HTTP 409).

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::TxConnection;
use super::{Pool, Store, StoreError};
use crate::ticket::deadlines::{scheduler_due, watched_deadlines};
use crate::ticket::{Event, EventKind, Order, OrderId, Role, State, UnitTree};

/// Hash of "nothing before": the first event's `prev_hash`.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why events could not be appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another command changed the order first (or the order id exists already).
    #[error("the order changed since it was read")]
    Conflict,
    /// The idempotency key was taken by a concurrent request.
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    /// Database failure.
    #[error("database error")]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AppendError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(e))
    }
}

/// An idempotency key recorded with an order creation.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyRecord<'a> {
    /// The user who sent it (keys are per user).
    pub actor: &'a str,
    /// The key.
    pub key: &'a str,
    /// SHA-256 hex of the request body.
    pub body_hash: &'a str,
}

/// One ledger row as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEvent {
    pub global_seq: i64,
    pub order_id: String,
    pub seq: i64,
    pub at: String,
    pub at_ms: i64,
    pub actor: String,
    pub role: String,
    pub unit: String,
    pub kind: String,
    pub state_before: String,
    pub state_after: String,
    pub reason: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct BrokenLink {
    /// Global position of the first bad row (or where a row is missing).
    pub global_seq: i64,
    /// Order of that row, when there is one.
    pub order_id: Option<String>,
    /// Its position in the order.
    pub seq: Option<i64>,
    /// What is wrong.
    pub problem: String,
}

/// Result of [`Store::verify_ledger`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LedgerReport {
    /// No break found.
    pub ok: bool,
    /// Events checked.
    pub checked: i64,
    /// First break.
    pub broken_at: Option<BrokenLink>,
    /// Hash of the head (anchor it outside the database to detect a rewrite).
    pub head_hash: String,
}

/// An order whose projection row differs from the replay of its ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProjectionMismatch {
    pub order_id: String,
    pub problem: String,
}

/// Filters of the order list, pushed down to SQL. Every value is bound.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub state: Option<State>,
    pub city: Option<String>,
    pub category: Option<String>,
    pub area: Option<String>,
    pub urgency: Option<String>,
    /// Orders this unit ever had a part in.
    pub unit: Option<String>,
    /// Overdue as of `now_ms` (or done late).
    pub overdue: Option<bool>,
    pub phone: Option<String>,
    pub special_flag: Option<bool>,
    /// Received at or after this instant (ms since the epoch).
    pub received_from_ms: Option<i64>,
    /// Received before this instant (ms since the epoch).
    pub received_until_ms: Option<i64>,
    /// Read scope: orders involving one of these units; `None` = everything.
    pub scope: Option<Vec<String>>,
    /// The unit whose subtree `scope` is (the user's unit): with the unit tree
    /// installed ([`Store::install_unit_tree`]) the scope is read as that unit's
    /// `order_scope` rows, one index range, instead of a probe per order.
    pub scope_unit: Option<String>,
    pub now_ms: i64,
    pub sort: OrderSort,
    /// Zero-based offset.
    pub offset: i64,
    pub limit: i64,
}

/// List order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrderSort {
    /// Newest first.
    #[default]
    Created,
    /// Running deadline, soonest first; orders without one last.
    Deadline,
}

enum Bind {
    Text(String),
    Int(i64),
}

fn millis(at: chrono::DateTime<chrono::FixedOffset>) -> i64 {
    at.timestamp_millis()
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

/// SHA-256 of `prev_hash || canonical_bytes`, hex.
#[must_use]
pub fn chain_hash(prev_hash: &str, event: &Event) -> String {
    sha256_hex(&[prev_hash.as_bytes(), &event.canonical_bytes()])
}

/// The human reason / note carried by an event, for the `reason` column.
#[must_use]
pub fn event_reason(kind: &EventKind) -> String {
    let value = serde_json::to_value(kind).unwrap_or_default();
    ["reason", "note", "answer", "text"]
        .iter()
        .find_map(|key| value.get(key).and_then(|v| v.as_str()))
        .unwrap_or_default()
        .to_owned()
}

fn enum_str<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn at_text(event: &Event) -> String {
    enum_str(&event.at)
}

/// Every unit that has a part in the order (read scope).
#[must_use]
pub fn involved_units(order: &Order) -> Vec<String> {
    let mut units: Vec<String> = std::iter::once(&order.fields.city)
        .chain(order.dispatch_unit.iter())
        .chain(order.active_units())
        .chain(order.lead_unit.iter())
        .chain(order.returned_by.iter())
        .chain(order.second_callback_unit.iter())
        .map(|u| u.as_str().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    units.sort();
    units.dedup();
    units
}

fn bool_int(b: bool) -> i64 {
    i64::from(b)
}

fn u64_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Rebuild the typed event from a row (for hashing).
fn event_from_row(row: &StoredEvent) -> Result<Event, String> {
    let text = |s: &str| serde_json::Value::String(s.to_owned());
    let parse = |what: &str, v: serde_json::Value| -> Result<serde_json::Value, String> {
        if v.is_null() {
            Err(format!("{what} missing"))
        } else {
            Ok(v)
        }
    };
    let at = serde_json::from_value(parse("at", text(&row.at))?)
        .map_err(|_| "unreadable time".to_owned())?;
    let role: Role =
        serde_json::from_value(text(&row.role)).map_err(|_| "unknown role".to_owned())?;
    let state_before: State = serde_json::from_value(text(&row.state_before))
        .map_err(|_| "unknown state_before".to_owned())?;
    let state_after: State = serde_json::from_value(text(&row.state_after))
        .map_err(|_| "unknown state_after".to_owned())?;
    let kind: EventKind =
        serde_json::from_str(&row.kind).map_err(|_| "unreadable event kind".to_owned())?;
    Ok(Event {
        order_id: OrderId(row.order_id.clone()),
        seq: u64::try_from(row.seq).map_err(|_| "negative seq".to_owned())?,
        at,
        actor: crate::ticket::UserId(row.actor.clone()),
        role,
        unit: crate::ticket::UnitId::new(row.unit.clone()),
        state_before,
        state_after,
        kind,
    })
}

const EVENT_COLUMNS: &str = "global_seq, order_id, seq, at, at_ms, actor, role, unit, kind, \
    state_before, state_after, reason, prev_hash, hash";

/// Values of the projection row of an order.
struct Projection {
    state: String,
    category: String,
    urgency: String,
    area: String,
    units: String,
    transfer_due: Option<i64>,
    feedback_due: Option<i64>,
    callback_due: Option<i64>,
    next_due: Option<i64>,
    scheduler_due: Option<i64>,
    /// First dispatch after the transfer limit (`None`: not dispatched).
    transfer_late: Option<i64>,
    /// The scheduler recorded the missed transfer limit.
    transfer_missed: i64,
    completed: Option<i64>,
    overdue_done: i64,
    snapshot: String,
}

/// The order and its events with `number` set on the order and its Created event.
fn with_number(order: &Order, events: &[Event], number: String) -> (Order, Vec<Event>) {
    let mut order = order.clone();
    let mut events = events.to_vec();
    for event in &mut events {
        if let EventKind::Created { number: slot, .. } = &mut event.kind {
            *slot = Some(number.clone());
        }
    }
    order.number = Some(number);
    (order, events)
}

/// The rows of `events` to insert, before the chain links are known.
fn event_rows(events: &[Event]) -> Result<Vec<EventRow>, StoreError> {
    events
        .iter()
        .map(|event| {
            Ok(EventRow {
                global_seq: 0,
                order_id: event.order_id.0.clone(),
                seq: u64_i64(event.seq),
                at: at_text(event),
                at_ms: millis(event.at),
                actor: event.actor.0.clone(),
                role: enum_str(&event.role),
                unit: event.unit.as_str().to_owned(),
                kind: serde_json::to_string(&event.kind).map_err(|_| StoreError::Snapshot)?,
                state_before: event.state_before.as_str().to_owned(),
                state_after: event.state_after.as_str().to_owned(),
                reason: event_reason(&event.kind),
                prev_hash: String::new(),
                hash: String::new(),
            })
        })
        .collect()
}

fn projection(order: &Order) -> Result<Projection, StoreError> {
    let deadlines = order.deadlines;
    let feedback_due = deadlines.map(|d| millis(d.feedback.due.at));
    let completed = order.completed_at.map(millis);
    // Finished (completed, or withdrawn) after the limit: the closed half of
    // `ticket::is_overdue`, so `/api/stats/orders` and the rankings agree.
    let finished = order.finished_at().map(millis);
    let overdue_done = matches!((finished, feedback_due), (Some(c), Some(f)) if c > f);
    Ok(Projection {
        state: order.state.as_str().to_owned(),
        category: enum_str(&order.fields.category),
        urgency: enum_str(&order.fields.urgency),
        area: enum_str(&order.fields.area),
        units: order
            .active_units()
            .map(|u| u.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        transfer_due: deadlines.map(|d| millis(d.transfer.due.at)),
        feedback_due,
        callback_due: deadlines.and_then(|d| d.callback.map(|c| millis(c.due.at))),
        next_due: watched_deadlines(order)
            .into_iter()
            .map(|(_, w)| millis(w.due.at))
            .min(),
        scheduler_due: scheduler_due(order).map(millis),
        // The dispatched half of `ticket::transfer_on_time` (the open half needs `now`).
        transfer_late: order
            .dispatched_at
            .zip(deadlines)
            .map(|(at, d)| bool_int(at > d.transfer.due.at)),
        transfer_missed: bool_int(
            order
                .missed_limits
                .iter()
                .any(|m| m.deadline == crate::ticket::DeadlineKind::Transfer),
        ),
        completed,
        overdue_done: bool_int(overdue_done),
        snapshot: serde_json::to_string(order).map_err(|_| StoreError::Snapshot)?,
    })
}

/// For each unit of the configured tree, the units whose users see an order that unit
/// has a part in: the unit itself and its ancestors, the root excepted (the root's
/// users see every order). Written to `order_scope` with each order (migration 0007).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeTree {
    /// Unit → the unit and its strict ancestors below the root.
    closure: BTreeMap<String, Vec<String>>,
    root: Option<String>,
    fingerprint: String,
}

impl ScopeTree {
    /// From the unit tree.
    #[must_use]
    pub fn from_units(tree: &UnitTree) -> Self {
        let root = tree
            .units()
            .find(|u| u.parent.is_none())
            .map(|u| u.id.as_str().to_owned());
        let mut closure = BTreeMap::new();
        for unit in tree.units() {
            let chain: Vec<String> = tree
                .units()
                .filter(|a| tree.covers(&a.id, &unit.id) && a.parent.is_some())
                .map(|a| a.id.as_str().to_owned())
                .collect();
            closure.insert(unit.id.as_str().to_owned(), chain);
        }
        let mut text = format!("root={}\n", root.as_deref().unwrap_or_default());
        for (unit, chain) in &closure {
            text.push_str(&format!("{unit}:{}\n", chain.join(",")));
        }
        let fingerprint = sha256_hex(&[text.as_bytes()]);
        Self {
            closure,
            root,
            fingerprint,
        }
    }

    /// Whether `unit` is a unit of the tree other than the root (its users' scope is
    /// the `order_scope` rows of that unit).
    #[must_use]
    pub fn scopes(&self, unit: &str) -> bool {
        self.closure.contains_key(unit) && self.root.as_deref() != Some(unit)
    }

    /// The `order_scope` units of an order whose involved units are `involved`.
    #[must_use]
    pub fn scope_units(&self, involved: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for unit in involved {
            match self.closure.get(unit) {
                Some(chain) => out.extend(chain.iter().cloned()),
                // Not in the tree (any more): the unit itself.
                None if self.root.as_deref() != Some(unit.as_str()) => out.push(unit.clone()),
                None => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Strict descendants of each non-root unit that has any, for rebuilding.
    fn descendants(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (unit, chain) in &self.closure {
            for ancestor in chain.iter().filter(|a| *a != unit) {
                out.entry(ancestor.as_str())
                    .or_default()
                    .push(unit.as_str());
            }
        }
        out
    }
}

/// `($s+1, …, $s+cols), (…)` for `rows` rows.
fn values_rows(rows: usize, cols: usize, start: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (1..=cols)
                .map(|c| format!("${}", start + r * cols + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const INSERT_EVENTS: &str = "INSERT INTO order_events (global_seq, order_id, seq, at, at_ms, \
    actor, role, unit, kind, state_before, state_after, reason, prev_hash, hash) VALUES ";

/// One ledger row to insert.
struct EventRow {
    global_seq: i64,
    order_id: String,
    seq: i64,
    at: String,
    at_ms: i64,
    actor: String,
    role: String,
    unit: String,
    kind: String,
    state_before: String,
    state_after: String,
    reason: String,
    prev_hash: String,
    hash: String,
}

impl Store {
    /// Number every order created from now on `{prefix}-{YYYYMMDD}-{NNNN}`: the day of
    /// receipt in Asia/Shanghai and a sequence per prefix and day, starting at 0001,
    /// taken in the creating transaction (so numbers are unique under concurrency and
    /// a failed create leaves no gap). Call it at start-up, before serving; `None`
    /// turns numbering off (new orders get none, as before numbers existed).
    pub fn set_order_numbering(&self, prefix: Option<&str>) {
        if let Ok(mut numbering) = self.numbering.write() {
            *numbering = prefix.map(str::to_owned);
        }
    }

    fn order_number_prefix(&self) -> Option<String> {
        self.numbering.read().ok().and_then(|n| n.clone())
    }

    /// The id of the order numbered `number`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn order_id_by_number(&self, number: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT id FROM orders WHERE number = $1"
        )
        .bind(number)
        .fetch_optional(p)
        .await?);
        Ok(row.map(|(id,)| id))
    }

    fn installed_scope_tree(&self) -> Option<Arc<ScopeTree>> {
        self.scope_tree.read().ok().and_then(|t| t.clone())
    }

    /// Make the order read scope follow `tree` (the configured units): every later
    /// append writes `order_scope` rows for the units of the order and their
    /// ancestors, and the unit-scoped list reads them. When the rows stored were built
    /// with another tree (or none: a new database, or appends made without a tree),
    /// they are rebuilt from `order_units` first. Returns whether they were rebuilt.
    /// Call it at start-up, before serving.
    ///
    /// # Errors
    /// Database errors (nothing is changed then).
    pub async fn install_unit_tree(&self, tree: &UnitTree) -> Result<bool, StoreError> {
        let scope = ScopeTree::from_units(tree);
        let (stored,): (String,) = on_pool!(self, |p| sqlx::query_as(
            "SELECT fingerprint FROM order_scope_tree WHERE id = 1"
        )
        .fetch_one(p)
        .await?);
        let rebuild = stored != scope.fingerprint;
        if rebuild {
            self.rebuild_order_scope(&scope).await?;
        }
        if let Ok(mut installed) = self.scope_tree.write() {
            *installed = Some(Arc::new(scope));
        }
        Ok(rebuild)
    }

    async fn rebuild_order_scope(&self, scope: &ScopeTree) -> Result<(), StoreError> {
        const SELECT_ROWS: &str = "o.state, o.due_sort, o.created_ms FROM order_units ou \
            JOIN orders o ON o.id = ou.order_id";
        let started = std::time::Instant::now();
        let root = scope.root.clone().unwrap_or_default();
        let descendants = scope.descendants();
        on_pool!(self, |p| {
            let mut conn = TxConnection::acquire(p, &self.writes).await?;
            let mut tx = sqlx::Connection::begin(conn.raw()).await?;
            sqlx::query("DELETE FROM order_scope")
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO order_scope (order_id, unit, state, due_sort, created_ms) \
                 SELECT ou.order_id, ou.unit, {SELECT_ROWS} WHERE ou.unit <> $1"
            )))
            .bind(&root)
            .execute(&mut *tx)
            .await?;
            for (ancestor, below) in &descendants {
                let list: Vec<String> = (0..below.len()).map(|i| format!("${}", i + 2)).collect();
                let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO order_scope (order_id, unit, state, due_sort, created_ms) \
                     SELECT ou.order_id, $1, {SELECT_ROWS} WHERE ou.unit IN ({}) \
                     ON CONFLICT (order_id, unit) DO NOTHING",
                    list.join(", ")
                )))
                .bind(*ancestor);
                for unit in below {
                    q = q.bind(*unit);
                }
                q.execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE order_scope_tree SET fingerprint = $1 WHERE id = 1")
                .bind(&scope.fingerprint)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            conn.committed();
        });
        tracing::info!(
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "order read scope rebuilt for the configured unit tree"
        );
        Ok(())
    }

    /// Append `events` (produced by `apply` on the order at `expected_version`) and
    /// write `order` (the folded result) to the projection, in one transaction.
    /// `expected_version == 0` creates the order. Nothing is written on error.
    ///
    /// The ledger head is locked last, so the part of the transaction that every
    /// commit waits for is two statements and the commit: the head read (`FOR UPDATE`
    /// on PostgreSQL) and the events' insert with the head's update (one statement on
    /// PostgreSQL). Orders commands used to hold the head for every statement of the
    /// transaction: PostgreSQL ran 1.5x faster with this order (bench/RESULTS-orders.md).
    ///
    /// # Errors
    /// [`AppendError::Conflict`] when the stored version differs (or the id exists),
    /// [`AppendError::IdempotencyKeyTaken`] when a concurrent create took the key,
    /// database errors.
    pub async fn append_order_events(
        &self,
        order: &Order,
        expected_version: u64,
        events: &[Event],
        idempotency: Option<IdempotencyRecord<'_>>,
        now_ms: i64,
    ) -> Result<(), AppendError> {
        self.append_order_events_numbered(order, expected_version, events, idempotency, now_ms)
            .await
            .map(|_| ())
    }

    /// [`Store::append_order_events`], answering the order's number (the one it was
    /// given when this append created it; `None` without numbering).
    ///
    /// # Errors
    /// As [`Store::append_order_events`].
    pub async fn append_order_events_numbered(
        &self,
        order: &Order,
        expected_version: u64,
        events: &[Event],
        idempotency: Option<IdempotencyRecord<'_>>,
        now_ms: i64,
    ) -> Result<Option<String>, AppendError> {
        let number: Option<String>;
        let involved = involved_units(order);
        let scope = self
            .installed_scope_tree()
            .map(|tree| tree.scope_units(&involved));
        let order_id = order.id.0.as_str();
        let created = expected_version == 0;
        // A new order is numbered in its own transaction (below) when numbering is on
        // and its Created event has no number yet.
        let numbering = self.order_number_prefix().filter(|_| {
            created
                && events.iter().any(
                    |e| matches!(&e.kind, EventKind::Created { number, .. } if number.is_none()),
                )
        });
        let numbered_day = numbering.as_ref().map(|prefix| {
            let day = order
                .fields
                .received_at
                .with_timezone(&crate::calendar::shanghai())
                .format("%Y%m%d")
                .to_string();
            (prefix.clone(), day)
        });
        let postgres = self.backend() == super::Backend::Postgres;
        let events_sql = format!(
            "{INSERT_EVENTS}{}",
            values_rows(events.len(), 14, if postgres { 3 } else { 0 })
        );
        const HEAD_UPDATE: &str =
            "UPDATE ledger_head SET global_seq = $1, hash = $2, touched_at = $3 WHERE id = 1";
        let events_sql = if postgres {
            // One round trip while the head is locked.
            format!("WITH appended AS ({events_sql}) {HEAD_UPDATE}")
        } else {
            events_sql
        };
        // PostgreSQL: lock the head row without writing a new version of it (one
        // update per commit instead of two). SQLite: the transaction already holds the
        // database's write lock (its first statement wrote the projection).
        let head_sql = if postgres {
            "SELECT global_seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE"
        } else {
            "SELECT global_seq, hash FROM ledger_head WHERE id = 1"
        };
        on_pool!(self, |pool| {
            let mut conn = TxConnection::acquire(pool, &self.writes).await?;
            let mut tx = sqlx::Connection::begin(conn.raw()).await?;
            if let Some(record) = idempotency {
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (actor, key, body_hash, order_id, created_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (actor, key) DO NOTHING",
                )
                .bind(record.actor)
                .bind(record.key)
                .bind(record.body_hash)
                .bind(order_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    tx.rollback().await?;
                    conn.rolled_back();
                    return Err(AppendError::IdempotencyKeyTaken);
                }
            }
            // The number, when one is due: the day's counter row, bumped in this
            // transaction (PostgreSQL holds its row lock to the commit; SQLite holds the
            // write lock), so two creates never share a number and a rollback gives it
            // back.
            let numbered;
            let (order, events) = match &numbered_day {
                Some((prefix, day)) => {
                    let (last,): (i64,) = sqlx::query_as(
                        "INSERT INTO order_number_counters (prefix, day, last_seq) \
                         VALUES ($1, $2, 1) ON CONFLICT (prefix, day) DO UPDATE \
                         SET last_seq = order_number_counters.last_seq + 1 RETURNING last_seq",
                    )
                    .bind(prefix)
                    .bind(day)
                    .fetch_one(&mut *tx)
                    .await?;
                    numbered = with_number(order, events, format!("{prefix}-{day}-{last:04}"));
                    (&numbered.0, numbered.1.as_slice())
                }
                None => (order, events),
            };
            let p = projection(order)?;
            let due_sort = p.next_due.unwrap_or(i64::MAX);
            let mut rows = event_rows(events)?;
            // The projection first (after a new order's counter): takes the write lock
            // (SQLite) / the order's row lock (PostgreSQL), and checks the version.
            let written: Option<(i64,)> = if created {
                sqlx::query_as(
                    "INSERT INTO orders (id, version, state, city, category, urgency, area, \
                     units, lead_unit, contact_phone, received_ms, transfer_due_ms, \
                     feedback_due_ms, callback_due_ms, next_due_ms, completed_ms, overdue_done, \
                     special_flag, created_ms, updated_ms, snapshot, due_sort, scheduler_due_ms, \
                     dispatch_unit, dispatched_by, transfer_late, transfer_missed, number) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18, $19, $19, $20, $21, $22, $23, $24, $25, $26, $27) \
                     ON CONFLICT (id) DO NOTHING RETURNING created_ms",
                )
                .bind(order_id)
                .bind(u64_i64(order.version))
                .bind(&p.state)
                .bind(order.fields.city.as_str())
                .bind(&p.category)
                .bind(&p.urgency)
                .bind(&p.area)
                .bind(&p.units)
                .bind(order.lead_unit.as_ref().map(|u| u.as_str()))
                .bind(order.fields.contact.phone.as_str())
                .bind(millis(order.fields.received_at))
                .bind(p.transfer_due)
                .bind(p.feedback_due)
                .bind(p.callback_due)
                .bind(p.next_due)
                .bind(p.completed)
                .bind(p.overdue_done)
                .bind(bool_int(order.special_flag))
                .bind(now_ms)
                .bind(&p.snapshot)
                .bind(due_sort)
                .bind(p.scheduler_due)
                .bind(order.dispatch_unit.as_ref().map(|u| u.as_str()))
                .bind(order.dispatched_by.as_ref().map(|u| u.0.as_str()))
                .bind(p.transfer_late)
                .bind(p.transfer_missed)
                .bind(order.number.as_deref())
                .fetch_optional(&mut *tx)
                .await?
            } else {
                sqlx::query_as(
                    "UPDATE orders SET version = $1, state = $2, category = $3, urgency = $4, \
                     area = $5, units = $6, lead_unit = $7, transfer_due_ms = $8, \
                     feedback_due_ms = $9, callback_due_ms = $10, next_due_ms = $11, \
                     completed_ms = $12, overdue_done = $13, special_flag = $14, \
                     updated_ms = $15, snapshot = $16, due_sort = $19, contact_phone = $20, \
                     scheduler_due_ms = $21, dispatch_unit = $22, \
                     dispatched_by = COALESCE($23, dispatched_by), transfer_late = $24, \
                     transfer_missed = $25 WHERE id = $17 AND version = $18 RETURNING created_ms",
                )
                .bind(u64_i64(order.version))
                .bind(&p.state)
                .bind(&p.category)
                .bind(&p.urgency)
                .bind(&p.area)
                .bind(&p.units)
                .bind(order.lead_unit.as_ref().map(|u| u.as_str()))
                .bind(p.transfer_due)
                .bind(p.feedback_due)
                .bind(p.callback_due)
                .bind(p.next_due)
                .bind(p.completed)
                .bind(p.overdue_done)
                .bind(bool_int(order.special_flag))
                .bind(now_ms)
                .bind(&p.snapshot)
                .bind(order_id)
                .bind(u64_i64(expected_version))
                .bind(due_sort)
                // Dispatch may correct it (H-13-1): the phone filter finds the order.
                .bind(order.fields.contact.phone.as_str())
                .bind(p.scheduler_due)
                .bind(order.dispatch_unit.as_ref().map(|u| u.as_str()))
                .bind(order.dispatched_by.as_ref().map(|u| u.0.as_str()))
                .bind(p.transfer_late)
                .bind(p.transfer_missed)
                .fetch_optional(&mut *tx)
                .await?
            };
            let Some((created_ms,)) = written else {
                tx.rollback().await?;
                conn.rolled_back();
                return Err(AppendError::Conflict);
            };
            if created && let Some(call) = order.fields.call_id.as_ref() {
                // The call → order link the survey loop follows (src/store/surveys.rs).
                sqlx::query(
                    "INSERT INTO order_calls (call_id, order_id, created_ms, settled) \
                     VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
                )
                .bind(call.0.as_str())
                .bind(order_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            if !involved.is_empty() {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO order_units (order_id, unit) VALUES {} \
                     ON CONFLICT (order_id, unit) DO NOTHING",
                    values_rows(involved.len(), 2, 0)
                )));
                for unit in &involved {
                    q = q.bind(order_id).bind(unit);
                }
                q.execute(&mut *tx).await?;
            }
            match &scope {
                Some(units) => {
                    if !created {
                        sqlx::query(
                            "UPDATE order_scope SET state = $1, due_sort = $2 WHERE order_id = $3",
                        )
                        .bind(&p.state)
                        .bind(due_sort)
                        .bind(order_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    if !units.is_empty() {
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "INSERT INTO order_scope (order_id, unit, state, due_sort, \
                             created_ms) VALUES {} ON CONFLICT (order_id, unit) DO NOTHING",
                            values_rows(units.len(), 5, 0)
                        )));
                        for unit in units {
                            q = q
                                .bind(order_id)
                                .bind(unit)
                                .bind(&p.state)
                                .bind(due_sort)
                                .bind(created_ms);
                        }
                        q.execute(&mut *tx).await?;
                    }
                }
                None => {
                    // Written without the unit tree: the stored scope is incomplete
                    // from now on; the next install_unit_tree rebuilds it.
                    sqlx::query(
                        "UPDATE order_scope_tree SET fingerprint = '' WHERE id = 1 \
                         AND fingerprint <> ''",
                    )
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if !rows.is_empty() {
                // Last: the head, which serializes every commit (the chain has no forks).
                let (mut global_seq, mut prev_hash): (i64, String) =
                    sqlx::query_as(head_sql).fetch_one(&mut *tx).await?;
                for (row, event) in rows.iter_mut().zip(events) {
                    global_seq += 1;
                    row.global_seq = global_seq;
                    row.hash = chain_hash(&prev_hash, event);
                    row.prev_hash = std::mem::replace(&mut prev_hash, row.hash.clone());
                }
                let mut q = sqlx::query(sqlx::AssertSqlSafe(events_sql));
                if postgres {
                    q = q.bind(global_seq).bind(&prev_hash).bind(now_ms);
                }
                for row in &rows {
                    q = q
                        .bind(row.global_seq)
                        .bind(&row.order_id)
                        .bind(row.seq)
                        .bind(&row.at)
                        .bind(row.at_ms)
                        .bind(&row.actor)
                        .bind(&row.role)
                        .bind(&row.unit)
                        .bind(&row.kind)
                        .bind(&row.state_before)
                        .bind(&row.state_after)
                        .bind(&row.reason)
                        .bind(&row.prev_hash)
                        .bind(&row.hash);
                }
                q.execute(&mut *tx).await?;
                if !postgres {
                    sqlx::query(HEAD_UPDATE)
                        .bind(global_seq)
                        .bind(&prev_hash)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            conn.committed();
            number = order.number.clone();
        });
        Ok(number)
    }

    /// The order's projection (latest snapshot).
    ///
    /// # Errors
    /// Database errors; an unreadable snapshot.
    pub async fn load_order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT snapshot FROM orders WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await?);
        row.map(|(s,)| serde_json::from_str(&s).map_err(|_| StoreError::Snapshot))
            .transpose()
    }

    /// Units that ever had a part in the order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn order_units(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT unit FROM order_units WHERE order_id = $1 ORDER BY unit"
        )
        .bind(id)
        .fetch_all(p)
        .await?);
        Ok(rows.into_iter().map(|(u,)| u).collect())
    }

    /// The order's ledger rows in order.
    ///
    /// # Errors
    /// Database errors.
    pub async fn order_events(&self, id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM order_events WHERE order_id = $1 ORDER BY seq"
        ));
        let rows = on_pool!(self, |p| sqlx::query_as::<_, StoredEvent>(sql)
            .bind(id)
            .fetch_all(p)
            .await?);
        Ok(rows)
    }

    /// Ledger rows of every order `unit` ever had a part in, by order and seq.
    ///
    /// # Errors
    /// Database errors.
    pub async fn unit_ledger(&self, unit: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM order_events WHERE order_id IN \
             (SELECT order_id FROM order_units WHERE unit = $1) ORDER BY order_id, seq"
        ));
        let rows = on_pool!(self, |p| sqlx::query_as::<_, StoredEvent>(sql)
            .bind(unit)
            .fetch_all(p)
            .await?);
        Ok(rows)
    }

    /// The order created earlier with this idempotency key by this user:
    /// `(body_hash, order_id)`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn idempotent_order(
        &self,
        actor: &str,
        key: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = on_pool!(self, |p| sqlx::query_as(
            "SELECT body_hash, order_id FROM idempotency_keys WHERE actor = $1 AND key = $2"
        )
        .bind(actor)
        .bind(key)
        .fetch_optional(p)
        .await?);
        Ok(row)
    }

    /// One page of orders matching `filter`, and the total count.
    ///
    /// # Errors
    /// Database errors; an unreadable snapshot.
    pub async fn list_orders(&self, filter: &OrderFilter) -> Result<(Vec<Order>, i64), StoreError> {
        let mut clauses: Vec<String> = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let next = |binds: &mut Vec<Bind>, value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        // The scope as one range of `order_scope` (the user's unit) when the unit tree
        // is installed and knows the unit, and no caller number narrows the list
        // further (that one walks the phone index).
        let scope_unit = match (&filter.scope, &filter.scope_unit, filter.phone.is_none()) {
            (Some(scope), Some(unit), true) if !scope.is_empty() => self
                .installed_scope_tree()
                .filter(|tree| tree.scopes(unit))
                .map(|_| unit.clone()),
            _ => None,
        };
        // Clauses on order_scope `s` (then the count needs no join) and on orders `o`.
        let mut scope_clauses: Vec<String> = Vec::new();
        if let Some(unit) = &scope_unit {
            let n = next(&mut binds, Bind::Text(unit.clone()));
            scope_clauses.push(format!("s.unit = {n}"));
            if let Some(state) = filter.state {
                let n = next(&mut binds, Bind::Text(state.as_str().to_owned()));
                scope_clauses.push(format!("s.state = {n}"));
            }
        }
        let text_filters = [
            (
                "o.state",
                filter
                    .state
                    .filter(|_| scope_unit.is_none())
                    .map(|s| s.as_str().to_owned()),
            ),
            ("o.city", filter.city.clone()),
            ("o.category", filter.category.clone()),
            ("o.area", filter.area.clone()),
            ("o.urgency", filter.urgency.clone()),
            ("o.contact_phone", filter.phone.clone()),
        ];
        for (column, value) in text_filters {
            if let Some(value) = value {
                let n = next(&mut binds, Bind::Text(value));
                clauses.push(format!("{column} = {n}"));
            }
        }
        if let Some(unit) = &filter.unit {
            let n = next(&mut binds, Bind::Text(unit.clone()));
            clauses.push(format!(
                "EXISTS (SELECT 1 FROM order_units ou WHERE ou.order_id = o.id \
                 AND ou.unit = {n})"
            ));
        }
        if let Some(flag) = filter.special_flag {
            let n = next(&mut binds, Bind::Int(bool_int(flag)));
            clauses.push(format!("o.special_flag = {n}"));
        }
        if let Some(from) = filter.received_from_ms {
            let n = next(&mut binds, Bind::Int(from));
            clauses.push(format!("o.received_ms >= {n}"));
        }
        if let Some(until) = filter.received_until_ms {
            let n = next(&mut binds, Bind::Int(until));
            clauses.push(format!("o.received_ms < {n}"));
        }
        if let Some(overdue) = filter.overdue {
            let n = next(&mut binds, Bind::Int(filter.now_ms));
            let condition = format!(
                "(o.overdue_done = 1 OR (o.completed_ms IS NULL AND o.state <> 'closed' \
                 AND o.feedback_due_ms < {n}))"
            );
            clauses.push(if overdue {
                condition
            } else {
                format!("NOT {condition}")
            });
        }
        match (&filter.scope, &scope_unit) {
            (_, Some(_)) | (None, None) => {}
            (Some(scope), None) if scope.is_empty() => clauses.push("1 = 0".to_owned()),
            (Some(scope), None) => {
                let placeholders: Vec<String> = scope
                    .iter()
                    .map(|u| next(&mut binds, Bind::Text(u.clone())))
                    .collect();
                // EXISTS lets the planner walk the sort index and stop at the page.
                clauses.push(format!(
                    "EXISTS (SELECT 1 FROM order_units ou WHERE ou.order_id = o.id \
                     AND ou.unit IN ({}))",
                    placeholders.join(", ")
                ));
            }
        }
        let (from_sql, count_from, order_sql) = if scope_unit.is_some() {
            // CROSS JOIN: SQLite keeps order_scope outside (walking its index in list
            // order); PostgreSQL plans it as an ordinary join.
            let where_all = scope_clauses
                .iter()
                .chain(clauses.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join(" AND ");
            let count = if clauses.is_empty() {
                format!("order_scope s WHERE {}", scope_clauses.join(" AND "))
            } else {
                format!("order_scope s CROSS JOIN orders o WHERE o.id = s.order_id AND {where_all}")
            };
            (
                format!(
                    "order_scope s CROSS JOIN orders o WHERE o.id = s.order_id AND {where_all}"
                ),
                count,
                match filter.sort {
                    OrderSort::Created => " ORDER BY s.created_ms DESC, s.order_id DESC",
                    OrderSort::Deadline => " ORDER BY s.due_sort, s.order_id",
                },
            )
        } else {
            let where_sql = if clauses.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", clauses.join(" AND "))
            };
            (
                format!("orders o{where_sql}"),
                format!("orders o{where_sql}"),
                match filter.sort {
                    OrderSort::Created => " ORDER BY o.created_ms DESC, o.id DESC",
                    OrderSort::Deadline => " ORDER BY o.due_sort, o.id",
                },
            )
        };
        let limit = next(&mut binds, Bind::Int(filter.limit));
        let offset = next(&mut binds, Bind::Int(filter.offset));
        let count_binds = binds.len() - 2;
        // Only fixed fragments and numbered placeholders are concatenated; every
        // value is bound.
        let page_sql =
            format!("SELECT o.snapshot FROM {from_sql}{order_sql} LIMIT {limit} OFFSET {offset}");
        let count_sql = format!("SELECT COUNT(*) FROM {count_from}");
        let (rows, total): (Vec<(String,)>, (i64,)) = on_pool!(self, |p| {
            let mut page = sqlx::query_as(sqlx::AssertSqlSafe(page_sql));
            for b in &binds {
                page = match b {
                    Bind::Text(s) => page.bind(s.clone()),
                    Bind::Int(i) => page.bind(*i),
                };
            }
            let mut count = sqlx::query_as(sqlx::AssertSqlSafe(count_sql));
            for b in binds.iter().take(count_binds) {
                count = match b {
                    Bind::Text(s) => count.bind(s.clone()),
                    Bind::Int(i) => count.bind(*i),
                };
            }
            (page.fetch_all(p).await?, count.fetch_one(p).await?)
        });
        let orders = rows
            .into_iter()
            .map(|(s,)| serde_json::from_str(&s).map_err(|_| StoreError::Snapshot))
            .collect::<Result<Vec<Order>, _>>()?;
        Ok((orders, total.0))
    }

    /// Orders received in `[from_ms, to_ms)` (assessment).
    ///
    /// # Errors
    /// Database errors; an unreadable snapshot.
    pub async fn orders_received_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Order>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT snapshot FROM orders WHERE received_ms >= $1 AND received_ms < $2"
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(p)
        .await?);
        rows.into_iter()
            .map(|(s,)| serde_json::from_str(&s).map_err(|_| StoreError::Snapshot))
            .collect()
    }

    /// Orders not closed whose snapshot has a deadline marked provisional (for the
    /// start-up pass recomputing them after calendar data was added). The text match
    /// is a cheap superset; callers check the deadlines themselves. (Reading every open
    /// order instead took 2 s and all their snapshots in memory with 200 000 orders.)
    ///
    /// # Errors
    /// Database errors, or a snapshot that no longer parses.
    pub async fn open_orders_with_provisional_deadlines(&self) -> Result<Vec<Order>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT snapshot FROM orders WHERE state <> 'closed' \
             AND snapshot LIKE '%\"provisional\":true%' ORDER BY id"
        )
        .fetch_all(p)
        .await?);
        rows.into_iter()
            .map(|(s,)| serde_json::from_str(&s).map_err(|_| StoreError::Snapshot))
            .collect()
    }

    /// Open orders whose running limit is within a day of `now_ms` or past it: the
    /// reminder candidates (the pure core decides what is actually due).
    ///
    /// # Errors
    /// Database errors; an unreadable snapshot.
    pub async fn reminder_candidates(&self, now_ms: i64) -> Result<Vec<Order>, StoreError> {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT snapshot FROM orders WHERE state <> 'closed' AND ((next_due_ms IS NOT NULL \
             AND due_sort <= $1) OR scheduler_due_ms <= $2) ORDER BY due_sort"
        )
        .bind(now_ms.saturating_add(DAY_MS))
        .bind(now_ms)
        .fetch_all(p)
        .await?);
        rows.into_iter()
            .map(|(s,)| serde_json::from_str(&s).map_err(|_| StoreError::Snapshot))
            .collect()
    }

    /// Recompute the whole chain; report the first broken link.
    ///
    /// # Errors
    /// Database errors.
    pub async fn verify_ledger(&self) -> Result<LedgerReport, StoreError> {
        const BATCH: i64 = 5000;
        // The head first: events committed while we read lie beyond it and are left
        // for the next run (a commit moves head and events together).
        let head: (i64, String) = on_pool!(self, |p| sqlx::query_as(
            "SELECT global_seq, hash FROM ledger_head WHERE id = 1"
        )
        .fetch_one(p)
        .await?);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM order_events WHERE global_seq > $1 \
             AND global_seq <= $2 ORDER BY global_seq LIMIT $3"
        );
        let mut verifier = ChainVerifier::default();
        let mut last = 0_i64;
        loop {
            let rows = on_pool!(self, |p| sqlx::query_as::<_, StoredEvent>(
                sqlx::AssertSqlSafe(sql.clone())
            )
            .bind(last)
            .bind(head.0)
            .bind(BATCH)
            .fetch_all(p)
            .await?);
            let Some(end) = rows.last().map(|r| r.global_seq) else {
                break;
            };
            for row in &rows {
                if let Err(broken) = verifier.feed(row) {
                    return Ok(verifier.report(&head, Some(broken)));
                }
            }
            last = end;
        }
        Ok(verifier.finish(&head))
    }
}

/// Whether `stored` is `replayed` as a snapshot written before the fold derived
/// `dispatched_by` and `dissatisfaction_report` from events it already had (the first
/// dispatch, the escalation for a second callback): such snapshots lack them, and keep
/// lacking them as later events are applied to the snapshot. Everything else must match.
fn written_before_upgrade(stored: &Order, replayed: &Order) -> bool {
    let mut upgraded = replayed.clone();
    if stored.dispatched_by.is_none() {
        upgraded.dispatched_by = None;
    }
    if stored.dissatisfaction_report.is_none() {
        upgraded.dissatisfaction_report = None;
    }
    upgraded == *stored
}

impl Store {
    /// Replays every order's events and compares with its projection row, so an
    /// order hidden or altered in `orders` alone is found. Returns the first
    /// mismatch (orders by id).
    ///
    /// # Errors
    /// Database errors.
    pub async fn verify_projection(&self) -> Result<Option<ProjectionMismatch>, StoreError> {
        const BATCH: i64 = 500;
        let mut after = String::new();
        loop {
            let rows: Vec<(String, String, i64, String)> = on_pool!(self, |p| {
                sqlx::query_as(
                "SELECT id, snapshot, version, state FROM orders WHERE id > $1 ORDER BY id LIMIT $2"
            )
            .bind(&after)
            .bind(BATCH)
            .fetch_all(p)
            .await?
            });
            let Some(last) = rows.last().map(|r| r.0.clone()) else {
                break;
            };
            for (id, snapshot, version, state) in rows {
                let mismatch = |problem: &str| {
                    Ok(Some(ProjectionMismatch {
                        order_id: id.clone(),
                        problem: problem.to_owned(),
                    }))
                };
                let events: Result<Vec<Event>, String> = self
                    .order_events(&id)
                    .await?
                    .iter()
                    .map(event_from_row)
                    .collect();
                let Ok(events) = events else {
                    return mismatch("an event cannot be read");
                };
                let replayed = Order::replay(&events);
                let Ok(stored) = serde_json::from_str::<Order>(&snapshot) else {
                    return mismatch("snapshot unreadable");
                };
                if stored != replayed && !written_before_upgrade(&stored, &replayed) {
                    return mismatch("snapshot differs from the replayed events");
                }
                if u64::try_from(version).ok() != Some(replayed.version)
                    || state != replayed.state.as_str()
                {
                    return mismatch("version or state column differs from the replayed events");
                }
            }
            after = last;
        }
        // Events of an order whose projection row was deleted.
        let orphan: Option<(String,)> = on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT order_id FROM order_events WHERE order_id NOT IN (SELECT id FROM orders) LIMIT 1"
        )
        .fetch_optional(p)
        .await?
        });
        Ok(orphan.map(|(order_id,)| ProjectionMismatch {
            order_id,
            problem: "the order's projection row is missing".to_owned(),
        }))
    }
}

/// Walks the chain row by row in `global_seq` order.
#[derive(Debug)]
pub struct ChainVerifier {
    prev_hash: String,
    checked: i64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
        }
    }
}

impl ChainVerifier {
    /// Check the next row.
    ///
    /// # Errors
    /// The row breaks the chain (missing predecessor, edited content or column).
    pub fn feed(&mut self, row: &StoredEvent) -> Result<(), BrokenLink> {
        let expected_seq = self.checked + 1;
        let broken = |problem: &str| BrokenLink {
            global_seq: row.global_seq,
            order_id: Some(row.order_id.clone()),
            seq: Some(row.seq),
            problem: problem.to_owned(),
        };
        if row.global_seq != expected_seq {
            return Err(BrokenLink {
                global_seq: expected_seq,
                order_id: None,
                seq: None,
                problem: format!(
                    "event {expected_seq} is missing (next stored is {})",
                    row.global_seq
                ),
            });
        }
        if row.prev_hash != self.prev_hash {
            return Err(broken("prev_hash does not match the previous event"));
        }
        let event = event_from_row(row).map_err(|problem| broken(&problem))?;
        let hash = chain_hash(&self.prev_hash, &event);
        if hash != row.hash {
            return Err(broken("hash does not match the event's content"));
        }
        if event_reason(&event.kind) != row.reason {
            return Err(broken("reason column differs from the hashed event"));
        }
        if event.at.timestamp_millis() != row.at_ms {
            return Err(broken("at_ms column differs from the hashed event"));
        }
        self.prev_hash = hash;
        self.checked += 1;
        Ok(())
    }

    fn report(&self, head: &(i64, String), broken: Option<BrokenLink>) -> LedgerReport {
        LedgerReport {
            ok: broken.is_none(),
            checked: self.checked,
            broken_at: broken,
            head_hash: head.1.clone(),
        }
    }

    /// After the last row: the chain must end exactly at the head.
    #[must_use]
    pub fn finish(self, head: &(i64, String)) -> LedgerReport {
        if head.0 != self.checked || head.1 != self.prev_hash {
            let broken = BrokenLink {
                global_seq: self.checked + 1,
                order_id: None,
                seq: None,
                problem: format!(
                    "the chain ends at event {} but the head says {}",
                    self.checked, head.0
                ),
            };
            return self.report(head, Some(broken));
        }
        self.report(head, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Calendar;
    use crate::store::test_support;
    use crate::ticket::{
        Actor, Category, Command, Contact, Context, OrderFields, RoutingRules, UnitId, UnitTree,
        UserId, apply,
    };
    use chrono::DateTime;

    struct World {
        calendar: Calendar,
        units: UnitTree,
        routing: RoutingRules,
    }

    fn world() -> World {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/calendar/cn-workdays.toml");
        World {
            calendar: Calendar::load(path).expect("calendar"),
            units: UnitTree::shandong_default(),
            routing: RoutingRules::default(),
        }
    }

    fn at(s: &str) -> DateTime<chrono::FixedOffset> {
        DateTime::parse_from_rfc3339(s).expect("time")
    }

    fn agent() -> Actor {
        agent_of("jinan")
    }

    fn agent_of(city: &str) -> Actor {
        Actor {
            user_id: UserId("agent".into()),
            roles: vec![Role::Agent, Role::Dispatcher],
            unit: UnitId::new(city),
        }
    }

    /// A submitted order and its events.
    fn submitted(w: &World, id: &str, phone: &str) -> (Order, Vec<Event>) {
        submitted_in(w, id, phone, "jinan")
    }

    fn submitted_in(w: &World, id: &str, phone: &str, city: &str) -> (Order, Vec<Event>) {
        let ctx = Context {
            calendar: &w.calendar,
            units: &w.units,
            routing: &w.routing,
        };
        let now = at("2025-09-30T16:00:00+08:00");
        let fields = OrderFields {
            contact: Contact {
                name: "张三".into(),
                phone: phone.into(),
            },
            category: Category::Complaint,
            description: "律师不回电话".into(),
            city: UnitId::new(city),
            received_at: now,
            ..OrderFields::default()
        };
        let (o, mut events) = apply(
            &Order::new(OrderId(id.into())),
            Command::Create { fields },
            &agent_of(city),
            now,
            &ctx,
        )
        .expect("create");
        let (o, more) = apply(&o, Command::Submit, &agent_of(city), now, &ctx).expect("submit");
        events.extend(more);
        (o, events)
    }

    fn dispatched(w: &World, order: &Order) -> (Order, Vec<Event>) {
        let ctx = Context {
            calendar: &w.calendar,
            units: &w.units,
            routing: &w.routing,
        };
        apply(
            order,
            Command::Dispatch {
                units: vec![UnitId::new("jinan")],
                category: None,
                area: None,
                urgency: None,
                contact_name: None,
                contact_phone: None,
            },
            &agent(),
            at("2025-09-30T17:00:00+08:00"),
            &ctx,
        )
        .expect("dispatch")
    }

    async fn round_trip_and_conflict(store: Store) {
        let w = world();
        let (order, events) = submitted(&w, "GD1", "13812345678");
        store
            .append_order_events(&order, 0, &events, None, 1)
            .await
            .unwrap();
        assert_eq!(store.load_order("GD1").await.unwrap(), Some(order.clone()));
        let stored = store.order_events("GD1").await.unwrap();
        assert_eq!(stored.len(), events.len());
        assert_eq!(stored[0].prev_hash, GENESIS_HASH);
        // The stored history replays to the projection.
        let replayed: Vec<Event> = stored.iter().map(|r| event_from_row(r).unwrap()).collect();
        assert_eq!(Order::replay(&replayed), order);

        // Creating the same id again is a conflict, nothing written.
        assert!(matches!(
            store.append_order_events(&order, 0, &events, None, 2).await,
            Err(AppendError::Conflict)
        ));
        let (next, more) = dispatched(&w, &order);
        store
            .append_order_events(&next, order.version, &more, None, 3)
            .await
            .unwrap();
        // A second command decided on the old version loses.
        assert!(matches!(
            store
                .append_order_events(&next, order.version, &more, None, 4)
                .await,
            Err(AppendError::Conflict)
        ));
        let report = store.verify_ledger().await.unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(
            report.checked,
            i64::try_from(events.len() + more.len()).unwrap()
        );
        assert_eq!(store.order_units("GD1").await.unwrap(), vec!["jinan"]);
    }

    async fn idempotency_and_filters(store: Store) {
        let w = world();
        let (a, ea) = submitted(&w, "GD-A", "13800000001");
        let (b, eb) = submitted(&w, "GD-B", "13800000002");
        let key = IdempotencyRecord {
            actor: "agent",
            key: "k1",
            body_hash: "h1",
        };
        store
            .append_order_events(&a, 0, &ea, Some(key), 1)
            .await
            .unwrap();
        assert_eq!(
            store.idempotent_order("agent", "k1").await.unwrap(),
            Some(("h1".into(), "GD-A".into()))
        );
        assert!(
            store
                .idempotent_order("other", "k1")
                .await
                .unwrap()
                .is_none()
        );
        // The key taken: the second create rolls back entirely.
        assert!(matches!(
            store.append_order_events(&b, 0, &eb, Some(key), 2).await,
            Err(AppendError::IdempotencyKeyTaken)
        ));
        assert!(store.load_order("GD-B").await.unwrap().is_none());
        store
            .append_order_events(&b, 0, &eb, None, 3)
            .await
            .unwrap();

        let mut filter = OrderFilter {
            limit: 10,
            ..OrderFilter::default()
        };
        assert_eq!(store.list_orders(&filter).await.unwrap().1, 2);
        filter.phone = Some("13800000002".into());
        let (orders, total) = store.list_orders(&filter).await.unwrap();
        assert_eq!((total, orders[0].id.0.as_str()), (1, "GD-B"));
        // Metacharacters are data.
        filter.phone = Some("' OR '1'='1".into());
        assert_eq!(store.list_orders(&filter).await.unwrap().1, 0);
        filter.phone = None;
        filter.scope = Some(vec!["qingdao".into()]);
        assert_eq!(store.list_orders(&filter).await.unwrap().1, 0);
        filter.scope = Some(vec!["qingdao".into(), "jinan".into()]);
        filter.state = Some(State::PendingDispatch);
        filter.sort = OrderSort::Deadline;
        assert_eq!(store.list_orders(&filter).await.unwrap().1, 2);
        // Received 2025-09-30 with feedback due 2025-10-15: overdue now.
        filter.overdue = Some(true);
        filter.now_ms = at("2026-01-01T00:00:00+08:00").timestamp_millis();
        assert_eq!(store.list_orders(&filter).await.unwrap().1, 2);
        filter.now_ms = at("2025-10-01T00:00:00+08:00").timestamp_millis();
        assert_eq!(store.list_orders(&filter).await.unwrap().1, 0);
        let candidates = store
            .reminder_candidates(at("2025-10-09T01:00:00+08:00").timestamp_millis())
            .await
            .unwrap();
        assert_eq!(
            candidates.len(),
            2,
            "transfer limit 2025-10-09 24:00 within a day"
        );
    }

    #[tokio::test]
    async fn sqlite_order_round_trip_and_conflict() {
        let (store, _dir) = test_support::sqlite().await;
        round_trip_and_conflict(store).await;
    }

    #[tokio::test]
    async fn postgres_order_round_trip_and_conflict() {
        let store = test_support::postgres().await;
        round_trip_and_conflict(store).await;
    }

    #[tokio::test]
    async fn sqlite_idempotency_and_filters() {
        let (store, _dir) = test_support::sqlite().await;
        idempotency_and_filters(store).await;
    }

    #[tokio::test]
    async fn postgres_idempotency_and_filters() {
        let store = test_support::postgres().await;
        idempotency_and_filters(store).await;
    }

    async fn tampered(store: &Store, sql: &'static str) -> LedgerReport {
        on_pool!(store, |p| sqlx::query(sql).execute(p).await.map(|_| ())).expect("tamper");
        store.verify_ledger().await.expect("verify")
    }

    async fn ledger_detects_edits_and_deletions(fresh: impl AsyncFn() -> Store) {
        let w = world();
        for (sql, at_seq) in [
            (
                "UPDATE order_events SET reason = 'nothing happened' WHERE global_seq = 3",
                3,
            ),
            (
                "UPDATE order_events SET kind = replace(kind, '13812345678', '13900000000') WHERE global_seq = 1",
                1,
            ),
            (
                "UPDATE order_events SET at = '2025-09-29T16:00:00+08:00' WHERE global_seq = 2",
                2,
            ),
            (
                "UPDATE order_events SET at_ms = at_ms - 86400000 WHERE global_seq = 2",
                2,
            ),
            (
                "UPDATE order_events SET hash = prev_hash WHERE global_seq = 1",
                1,
            ),
            ("DELETE FROM order_events WHERE global_seq = 2", 2),
            ("DELETE FROM order_events WHERE global_seq = 3", 3),
        ] {
            let store = fresh().await;
            let (order, events) = submitted(&w, "GD1", "13812345678");
            store
                .append_order_events(&order, 0, &events, None, 1)
                .await
                .unwrap();
            let (next, more) = dispatched(&w, &order);
            store
                .append_order_events(&next, order.version, &more, None, 2)
                .await
                .unwrap();
            assert!(store.verify_ledger().await.unwrap().ok);
            let report = tampered(&store, sql).await;
            assert!(!report.ok, "{sql}: {report:?}");
            assert_eq!(
                report.broken_at.as_ref().map(|b| b.global_seq),
                Some(at_seq),
                "{sql}: {report:?}"
            );
        }
    }

    #[tokio::test]
    async fn sqlite_ledger_detects_edits_and_deletions() {
        let dirs = std::sync::Mutex::new(Vec::new());
        ledger_detects_edits_and_deletions(async || {
            let (store, dir) = test_support::sqlite().await;
            dirs.lock().unwrap().push(dir);
            store
        })
        .await;
    }

    #[tokio::test]
    async fn postgres_ledger_detects_edits_and_deletions() {
        ledger_detects_edits_and_deletions(async || test_support::postgres().await).await;
    }

    /// Migration 0015's backfill: rows written before it get the first dispatcher and
    /// whether that dispatch was late from the ledger.
    async fn transfer_columns_are_backfilled_from_the_ledger(store: Store, migration: &str) {
        let w = world();
        let (order, mut events) = submitted(&w, "GD-BF", "13812345678");
        let (order, more) = dispatched(&w, &order);
        events.extend(more);
        store
            .append_order_events(&order, 0, &events, None, 1)
            .await
            .unwrap();
        on_pool!(store, |p| sqlx::query(
            "UPDATE orders SET dispatched_by = NULL, transfer_late = NULL"
        )
        .execute(p)
        .await
        .map(|_| ()))
        .unwrap();
        let backfill = &migration[migration.find("UPDATE orders").expect("backfill")..];
        on_pool!(store, |p| sqlx::query(sqlx::AssertSqlSafe(
            backfill.to_owned()
        ))
        .execute(p)
        .await
        .map(|_| ()))
        .unwrap();
        let row: (Option<String>, Option<i64>) = on_pool!(store, |p| sqlx::query_as(
            "SELECT dispatched_by, transfer_late FROM orders WHERE id = 'GD-BF'"
        )
        .fetch_one(p)
        .await)
        .unwrap();
        // Received 2025-09-30 16:00, dispatched 17:00 the same day: within the working day.
        assert_eq!(row, (Some("agent".to_owned()), Some(0)));
    }

    #[tokio::test]
    async fn sqlite_transfer_columns_are_backfilled_from_the_ledger() {
        let (store, _dir) = test_support::sqlite().await;
        let migration = include_str!("../../migrations/sqlite/0015_transfer_timeliness.sql");
        transfer_columns_are_backfilled_from_the_ledger(store, migration).await;
    }

    #[tokio::test]
    async fn postgres_transfer_columns_are_backfilled_from_the_ledger() {
        let migration = include_str!("../../migrations/postgres/0015_transfer_timeliness.sql");
        transfer_columns_are_backfilled_from_the_ledger(test_support::postgres().await, migration)
            .await;
    }

    /// A snapshot written before the fold derived `dispatched_by` (it lacks the field)
    /// still verifies; any other difference is still found.
    async fn snapshots_from_before_dispatched_by_verify(store: Store) {
        let w = world();
        let (order, mut events) = submitted(&w, "GD-OLD", "13812345678");
        let (order, more) = dispatched(&w, &order);
        events.extend(more);
        assert!(order.dispatched_by.is_some());
        store
            .append_order_events(&order, 0, &events, None, 1)
            .await
            .unwrap();
        let old = format!(
            ",\"dispatched_by\":{}",
            serde_json::to_string(&order.dispatched_by).unwrap()
        );
        on_pool!(store, |p| sqlx::query(
            "UPDATE orders SET snapshot = replace(snapshot, $1, '')"
        )
        .bind(&old)
        .execute(p)
        .await
        .map(|_| ()))
        .unwrap();
        let stored = store.load_order("GD-OLD").await.unwrap().expect("order");
        assert_eq!(stored.dispatched_by, None, "the field is gone: {old}");
        assert_eq!(store.verify_projection().await.unwrap(), None);
        on_pool!(store, |p| sqlx::query(
            "UPDATE orders SET snapshot = replace(snapshot, '律师不回电话', '已处理')"
        )
        .execute(p)
        .await
        .map(|_| ()))
        .unwrap();
        assert!(store.verify_projection().await.unwrap().is_some());
    }

    #[tokio::test]
    async fn sqlite_snapshots_from_before_dispatched_by_verify() {
        let (store, _dir) = test_support::sqlite().await;
        snapshots_from_before_dispatched_by_verify(store).await;
    }

    #[tokio::test]
    async fn postgres_snapshots_from_before_dispatched_by_verify() {
        snapshots_from_before_dispatched_by_verify(test_support::postgres().await).await;
    }

    async fn projection_edits_are_found(store: Store) {
        let w = world();
        let (order, events) = submitted(&w, "GD1", "13812345678");
        store
            .append_order_events(&order, 0, &events, None, 1)
            .await
            .unwrap();
        assert_eq!(store.verify_projection().await.unwrap(), None);
        on_pool!(store, |p| sqlx::query(
            "UPDATE orders SET state = 'closed', snapshot = replace(snapshot, 'pending_dispatch', 'closed')"
        )
        .execute(p)
        .await
        .map(|_| ()))
        .unwrap();
        let found = store.verify_projection().await.unwrap().expect("mismatch");
        assert_eq!(found.order_id, "GD1");
        on_pool!(store, |p| sqlx::query("DELETE FROM orders")
            .execute(p)
            .await
            .map(|_| ()))
        .unwrap();
        let found = store
            .verify_projection()
            .await
            .unwrap()
            .expect("missing row");
        assert!(found.problem.contains("missing"), "{found:?}");
    }

    #[tokio::test]
    async fn sqlite_projection_edits_are_found() {
        let (store, _dir) = test_support::sqlite().await;
        projection_edits_are_found(store).await;
    }

    #[tokio::test]
    async fn postgres_projection_edits_are_found() {
        projection_edits_are_found(test_support::postgres().await).await;
    }

    /// Shandong's default tree plus a county, a township under it and an institution
    /// (optionally the township under Qingdao instead: a changed configuration).
    fn scoped_tree(township_parent: &str) -> UnitTree {
        use crate::ticket::{Unit, UnitKind};
        let mut tree = UnitTree::shandong_default();
        for (id, kind, parent) in [
            ("jinan-lixia", UnitKind::County, "jinan"),
            ("jinan-legal-aid", UnitKind::Institution, "jinan"),
            ("town", UnitKind::Township, township_parent),
        ] {
            tree.add(Unit {
                id: UnitId::new(id),
                name: id.to_owned(),
                kind,
                parent: Some(UnitId::new(parent)),
                area_code: None,
            })
            .expect("unit");
        }
        tree
    }

    /// Orders of Jinan and Qingdao, dispatched to every kind of unit, some signed.
    async fn scoped_orders(store: &Store, w: &World) {
        let targets = [
            None,
            Some("jinan-lixia"),
            Some("jinan-legal-aid"),
            Some("town"),
            Some("qingdao"),
        ];
        let ctx = Context {
            calendar: &w.calendar,
            units: &w.units,
            routing: &w.routing,
        };
        for i in 0..20_usize {
            let id = format!("GD-S{i:02}");
            let city = if i % 3 == 1 { "qingdao" } else { "jinan" };
            let (mut order, mut events) = submitted_in(w, &id, "13800000000", city);
            if let Some(unit) = targets[i % targets.len()] {
                let at = at("2025-09-30T17:00:00+08:00") + chrono::Duration::minutes(i as i64);
                let command = Command::Dispatch {
                    units: vec![UnitId::new(unit)],
                    category: None,
                    area: None,
                    urgency: None,
                    contact_name: None,
                    contact_phone: None,
                };
                let (next, more) =
                    apply(&order, command, &agent_of(city), at, &ctx).expect("dispatch");
                events.extend(more);
                order = next;
            }
            store
                .append_order_events(&order, 0, &events, None, 1000 + i as i64)
                .await
                .expect("append");
        }
    }

    fn subtree(tree: &UnitTree, unit: &str) -> Vec<String> {
        let unit = UnitId::new(unit);
        tree.units()
            .filter(|u| tree.covers(&unit, &u.id))
            .map(|u| u.id.0.clone())
            .collect()
    }

    /// The `order_scope` range gives exactly what the EXISTS probe of `order_units`
    /// gives, for every unit, state, sort, extra filter and page.
    async fn assert_scope_matches_probe(store: &Store, tree: &UnitTree) {
        let states = [None, Some(State::PendingDispatch), Some(State::Dispatched)];
        let mut seen_any = 0;
        for unit in tree.units().filter(|u| u.parent.is_some()) {
            for state in states {
                for sort in [OrderSort::Created, OrderSort::Deadline] {
                    for category in [None, Some("complaint".to_owned())] {
                        for (offset, limit) in [(0, 50), (2, 3)] {
                            let probe = OrderFilter {
                                state,
                                category: category.clone(),
                                scope: Some(subtree(tree, unit.id.as_str())),
                                sort,
                                offset,
                                limit,
                                ..OrderFilter::default()
                            };
                            let ranged = OrderFilter {
                                scope_unit: Some(unit.id.0.clone()),
                                ..probe.clone()
                            };
                            let ids = |(orders, total): (Vec<Order>, i64)| {
                                (
                                    orders.into_iter().map(|o| o.id.0).collect::<Vec<_>>(),
                                    total,
                                )
                            };
                            let expected = ids(store.list_orders(&probe).await.unwrap());
                            let got = ids(store.list_orders(&ranged).await.unwrap());
                            assert_eq!(
                                got, expected,
                                "{} {state:?} {sort:?} {category:?}",
                                unit.id
                            );
                            seen_any += expected.1;
                        }
                    }
                }
            }
        }
        assert!(seen_any > 0, "the scopes hold orders");
    }

    async fn unit_scope_ranges_match_the_probe(fresh: impl AsyncFn() -> Store) {
        let mut w = world();
        w.units = scoped_tree("jinan-lixia");
        // Installed before the orders are written.
        let store = fresh().await;
        assert!(
            store.install_unit_tree(&w.units).await.unwrap(),
            "new database"
        );
        scoped_orders(&store, &w).await;
        let (scoped, _) = store
            .list_orders(&OrderFilter {
                scope: Some(subtree(&w.units, "jinan-lixia")),
                scope_unit: Some("jinan-lixia".into()),
                limit: 50,
                ..OrderFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(scoped.len(), 8, "lixia and its township: 4 + 4");
        assert_scope_matches_probe(&store, &w.units).await;
        // Commands later move state and deadline: the copies follow.
        let ctx = Context {
            calendar: &w.calendar,
            units: &w.units,
            routing: &w.routing,
        };
        let order = store.load_order("GD-S03").await.unwrap().expect("order");
        let town = Actor {
            user_id: UserId("t".into()),
            roles: vec![Role::UnitHandler],
            unit: UnitId::new("town"),
        };
        let (next, more) = apply(
            &order,
            Command::Sign,
            &town,
            at("2025-10-09T09:00:00+08:00"),
            &ctx,
        )
        .unwrap();
        store
            .append_order_events(&next, order.version, &more, None, 5000)
            .await
            .unwrap();
        assert_scope_matches_probe(&store, &w.units).await;
        // Same tree again: nothing to rebuild.
        assert!(!store.install_unit_tree(&w.units).await.unwrap());
        // The ranged list really reads order_scope.
        on_pool!(store, |p| sqlx::query("DELETE FROM order_scope")
            .execute(p)
            .await
            .map(|_| ()))
        .unwrap();
        let filter = OrderFilter {
            scope: Some(subtree(&w.units, "jinan-lixia")),
            scope_unit: Some("jinan-lixia".into()),
            limit: 50,
            ..OrderFilter::default()
        };
        assert_eq!(store.list_orders(&filter).await.unwrap().1, 0);

        // Orders written without the tree, then installed: rebuilt from order_units.
        let store = fresh().await;
        scoped_orders(&store, &w).await;
        assert!(store.install_unit_tree(&w.units).await.unwrap());
        assert_scope_matches_probe(&store, &w.units).await;
        // The configuration moves the township under Qingdao: rebuilt again.
        let moved = scoped_tree("qingdao");
        assert!(store.install_unit_tree(&moved).await.unwrap());
        assert_scope_matches_probe(&store, &moved).await;
        assert!(ledger_ok(&store).await);
    }

    async fn ledger_ok(store: &Store) -> bool {
        store.verify_ledger().await.unwrap().ok
            && store.verify_projection().await.unwrap().is_none()
    }

    #[tokio::test]
    async fn sqlite_unit_scope_ranges_match_the_probe() {
        let dirs = std::sync::Mutex::new(Vec::new());
        unit_scope_ranges_match_the_probe(async || {
            let (store, dir) = test_support::sqlite().await;
            dirs.lock().unwrap().push(dir);
            store
        })
        .await;
    }

    #[tokio::test]
    async fn postgres_unit_scope_ranges_match_the_probe() {
        unit_scope_ranges_match_the_probe(async || test_support::postgres().await).await;
    }

    /// Many commits at once, each locking the head last: one chain, no fork, no gap.
    async fn concurrent_commits_keep_one_chain(store: Store) {
        let w = world();
        let mut tasks = Vec::new();
        for i in 0..24 {
            let (order, events) = submitted(&w, &format!("GD-C{i:02}"), "13800000000");
            let (next, more) = dispatched(&w, &order);
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .append_order_events(&order, 0, &events, None, i)
                    .await
                    .expect("create");
                store
                    .append_order_events(&next, order.version, &more, None, i + 100)
                    .await
                    .expect("dispatch");
                (events.len() + more.len()) as i64
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        let report = store.verify_ledger().await.unwrap();
        assert!(report.ok, "{report:?}");
        assert_eq!(report.checked, total);
        assert_eq!(store.verify_projection().await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_concurrent_commits_keep_one_chain() {
        let (store, _dir) = test_support::sqlite().await;
        concurrent_commits_keep_one_chain(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_concurrent_commits_keep_one_chain() {
        concurrent_commits_keep_one_chain(test_support::postgres().await).await;
    }

    #[test]
    fn reason_column_takes_the_human_text() {
        assert_eq!(
            event_reason(&EventKind::Returned {
                unit: UnitId::new("x"),
                reason: "不属于本单位".into(),
                back_to_dispatch: true
            }),
            "不属于本单位"
        );
        assert_eq!(event_reason(&EventKind::Started), "");
    }
}
