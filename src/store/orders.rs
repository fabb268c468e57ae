//! Work-order persistence: the append-only, hash-chained event ledger (TK-LEDGER) and
//! the `orders` projection, written in one transaction.
//!
//! # Chain
//! One global chain over every order's events in commit order (`global_seq`):
//! `hash = SHA-256(prev_hash || Event::canonical_bytes)`, hex, the first `prev_hash`
//! being 64 zeros. `ledger_head` holds the last link. Each commit first writes the
//! head row (which takes the write lock on SQLite and a row lock on PostgreSQL), so
//! commits are serialized and the chain has no forks. [`Store::verify_ledger`] walks
//! the chain: an edited row breaks its hash (or its derived `reason` column no longer
//! matches the hashed event), a deleted row leaves a gap in `global_seq` or a
//! `prev_hash` that does not match, a deleted tail no longer reaches the head.
//!
//! # Concurrency
//! The projection's `version` must equal the version the command was decided on
//! (`UPDATE … WHERE version = $expected`); otherwise the transaction is rolled back
//! and [`AppendError::Conflict`] returned (HTTP 409).

use sha2::{Digest, Sha256};

use super::{Pool, Store, StoreError};
use crate::ticket::deadlines::running_deadline;
use crate::ticket::{Event, EventKind, Order, OrderId, Role, State};

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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// Read scope: orders involving one of these units; `None` = everything.
    pub scope: Option<Vec<String>>,
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
    completed: Option<i64>,
    overdue_done: i64,
    snapshot: String,
}

fn projection(order: &Order) -> Result<Projection, StoreError> {
    let deadlines = order.deadlines;
    let feedback_due = deadlines.map(|d| millis(d.feedback.due.at));
    let completed = order.completed_at.map(millis);
    let overdue_done = matches!((completed, feedback_due), (Some(c), Some(f)) if c > f);
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
        next_due: running_deadline(order).map(|(_, w)| millis(w.due.at)),
        completed,
        overdue_done: bool_int(overdue_done),
        snapshot: serde_json::to_string(order).map_err(|_| StoreError::Snapshot)?,
    })
}

impl Store {
    /// Append `events` (produced by `apply` on the order at `expected_version`) and
    /// write `order` (the folded result) to the projection, in one transaction.
    /// `expected_version == 0` creates the order. Nothing is written on error.
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
        let p = projection(order)?;
        let involved = involved_units(order);
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Write first: takes the write lock (SQLite) / the head row lock (PostgreSQL).
            sqlx::query("UPDATE ledger_head SET touched_at = $1 WHERE id = 1")
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            let (mut global_seq, mut prev_hash): (i64, String) =
                sqlx::query_as("SELECT global_seq, hash FROM ledger_head WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?;
            if let Some(record) = idempotency {
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (actor, key, body_hash, order_id, created_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (actor, key) DO NOTHING",
                )
                .bind(record.actor)
                .bind(record.key)
                .bind(record.body_hash)
                .bind(order.id.0.as_str())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    tx.rollback().await?;
                    return Err(AppendError::IdempotencyKeyTaken);
                }
            }
            let written = if expected_version == 0 {
                sqlx::query(
                    "INSERT INTO orders (id, version, state, city, category, urgency, area, \
                     units, lead_unit, contact_phone, received_ms, transfer_due_ms, \
                     feedback_due_ms, callback_due_ms, next_due_ms, completed_ms, overdue_done, \
                     special_flag, created_ms, updated_ms, snapshot, due_sort) VALUES ($1, $2, $3, \
                     $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
                     $19, $20, $21) ON CONFLICT (id) DO NOTHING",
                )
                .bind(order.id.0.as_str())
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
                .bind(p.next_due.unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?
                .rows_affected()
            } else {
                sqlx::query(
                    "UPDATE orders SET version = $1, state = $2, category = $3, urgency = $4, \
                     area = $5, units = $6, lead_unit = $7, transfer_due_ms = $8, \
                     feedback_due_ms = $9, callback_due_ms = $10, next_due_ms = $11, \
                     completed_ms = $12, overdue_done = $13, special_flag = $14, \
                     updated_ms = $15, snapshot = $16, due_sort = $19 WHERE id = $17 \
                     AND version = $18",
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
                .bind(order.id.0.as_str())
                .bind(u64_i64(expected_version))
                .bind(p.next_due.unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?
                .rows_affected()
            };
            if written != 1 {
                tx.rollback().await?;
                return Err(AppendError::Conflict);
            }
            if expected_version == 0
                && let Some(call) = order.fields.call_id.as_ref()
            {
                // The call → order link the survey loop follows (src/store/surveys.rs).
                sqlx::query(
                    "INSERT INTO order_calls (call_id, order_id, created_ms, settled) \
                     VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
                )
                .bind(call.0.as_str())
                .bind(order.id.0.as_str())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            for event in events {
                global_seq += 1;
                let hash = chain_hash(&prev_hash, event);
                sqlx::query(
                    "INSERT INTO order_events (global_seq, order_id, seq, at, at_ms, actor, role, \
                     unit, kind, state_before, state_after, reason, prev_hash, hash) VALUES ($1, \
                     $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(global_seq)
                .bind(event.order_id.0.as_str())
                .bind(u64_i64(event.seq))
                .bind(at_text(event))
                .bind(millis(event.at))
                .bind(event.actor.0.as_str())
                .bind(enum_str(&event.role))
                .bind(event.unit.as_str())
                .bind(serde_json::to_string(&event.kind).map_err(|_| StoreError::Snapshot)?)
                .bind(event.state_before.as_str())
                .bind(event.state_after.as_str())
                .bind(event_reason(&event.kind))
                .bind(&prev_hash)
                .bind(&hash)
                .execute(&mut *tx)
                .await?;
                prev_hash = hash;
            }
            sqlx::query("UPDATE ledger_head SET global_seq = $1, hash = $2 WHERE id = 1")
                .bind(global_seq)
                .bind(&prev_hash)
                .execute(&mut *tx)
                .await?;
            for unit in &involved {
                sqlx::query(
                    "INSERT INTO order_units (order_id, unit) VALUES ($1, $2) \
                     ON CONFLICT (order_id, unit) DO NOTHING",
                )
                .bind(order.id.0.as_str())
                .bind(unit)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
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
        let text_filters = [
            ("state", filter.state.map(|s| s.as_str().to_owned())),
            ("city", filter.city.clone()),
            ("category", filter.category.clone()),
            ("area", filter.area.clone()),
            ("urgency", filter.urgency.clone()),
            ("contact_phone", filter.phone.clone()),
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
                "EXISTS (SELECT 1 FROM order_units ou WHERE ou.order_id = orders.id \
                 AND ou.unit = {n})"
            ));
        }
        if let Some(flag) = filter.special_flag {
            let n = next(&mut binds, Bind::Int(bool_int(flag)));
            clauses.push(format!("special_flag = {n}"));
        }
        if let Some(overdue) = filter.overdue {
            let n = next(&mut binds, Bind::Int(filter.now_ms));
            let condition = format!(
                "(overdue_done = 1 OR (completed_ms IS NULL AND state <> 'closed' \
                 AND feedback_due_ms < {n}))"
            );
            clauses.push(if overdue {
                condition
            } else {
                format!("NOT {condition}")
            });
        }
        if let Some(scope) = &filter.scope {
            if scope.is_empty() {
                clauses.push("1 = 0".to_owned());
            } else {
                let placeholders: Vec<String> = scope
                    .iter()
                    .map(|u| next(&mut binds, Bind::Text(u.clone())))
                    .collect();
                // EXISTS lets the planner walk the sort index and stop at the page.
                clauses.push(format!(
                    "EXISTS (SELECT 1 FROM order_units ou WHERE ou.order_id = orders.id \
                     AND ou.unit IN ({}))",
                    placeholders.join(", ")
                ));
            }
        }
        let where_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let order_sql = match filter.sort {
            OrderSort::Created => " ORDER BY created_ms DESC, id DESC",
            OrderSort::Deadline => " ORDER BY due_sort, id",
        };
        let limit = next(&mut binds, Bind::Int(filter.limit));
        let offset = next(&mut binds, Bind::Int(filter.offset));
        let count_binds = binds.len() - 2;
        // Only fixed fragments and numbered placeholders are concatenated; every
        // value is bound.
        let page_sql = format!(
            "SELECT snapshot FROM orders{where_sql}{order_sql} LIMIT {limit} OFFSET {offset}"
        );
        let count_sql = format!("SELECT COUNT(*) FROM orders{where_sql}");
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

    /// Every order not closed (for start-up passes such as recomputing provisional
    /// deadlines after calendar data was added).
    ///
    /// # Errors
    /// Database errors, or a snapshot that no longer parses.
    pub async fn open_orders(&self) -> Result<Vec<Order>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT snapshot FROM orders WHERE state <> 'closed' ORDER BY id"
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
            "SELECT snapshot FROM orders WHERE state <> 'closed' AND next_due_ms IS NOT NULL \
             AND due_sort <= $1 ORDER BY due_sort"
        )
        .bind(now_ms.saturating_add(DAY_MS))
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
                if stored != replayed {
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
        Actor {
            user_id: UserId("agent".into()),
            roles: vec![Role::Agent, Role::Dispatcher],
            unit: UnitId::new("jinan"),
        }
    }

    /// A submitted order and its events.
    fn submitted(w: &World, id: &str, phone: &str) -> (Order, Vec<Event>) {
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
            city: UnitId::new("jinan"),
            received_at: now,
            ..OrderFields::default()
        };
        let (o, mut events) = apply(
            &Order::new(OrderId(id.into())),
            Command::Create { fields },
            &agent(),
            now,
            &ctx,
        )
        .expect("create");
        let (o, more) = apply(&o, Command::Submit, &agent(), now, &ctx).expect("submit");
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
        let Some(store) = test_support::postgres().await else {
            return;
        };
        round_trip_and_conflict(store).await;
    }

    #[tokio::test]
    async fn sqlite_idempotency_and_filters() {
        let (store, _dir) = test_support::sqlite().await;
        idempotency_and_filters(store).await;
    }

    #[tokio::test]
    async fn postgres_idempotency_and_filters() {
        let Some(store) = test_support::postgres().await else {
            return;
        };
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
        if test_support::postgres().await.is_none() {
            return;
        }
        ledger_detects_edits_and_deletions(async || {
            test_support::postgres().await.expect("postgres")
        })
        .await;
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
        if let Some(store) = test_support::postgres().await {
            projection_edits_are_found(store).await;
        }
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
