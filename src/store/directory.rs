//! The directory of institutions and practitioners, its change log and appointments
//! (`migrations/*/0020_directory.sql`). SQL only: what a field means and how it is
//! checked lives in `src/directory/`.
//!
//! Substring search: SQLite reads the FTS5 trigram table `directory_fts` for every term
//! of three or more characters; PostgreSQL's `ILIKE '%term%'` uses the pg_trgm GIN index
//! for those. A term of one or two characters (`律师`, `法`) has no trigram: it is looked
//! up as a word of `grams` (every single character and every pair of neighbouring
//! characters of the search text; SQLite: a second FTS5 table of unicode61 words,
//! PostgreSQL: a GIN index on its array).

use super::{Pool, Store, StoreError, TxConnection};

/// One directory entry as stored (text columns as written by `src/directory/`).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EntryRow {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub city: String,
    pub county: String,
    pub address: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub phone: String,
    pub service_hours: String,
    pub specialties: String,
    pub licence_no: String,
    pub licence_status: String,
    pub institution_id: Option<i64>,
    pub unit: Option<String>,
    pub integrity: String,
    pub intro: String,
    pub version: i64,
    pub updated_ms: i64,
}

const ENTRY_COLUMNS: &str = "e.id, e.kind, e.name, e.city, e.county, e.address, e.lat, e.lon, \
    e.phone, e.service_hours, e.specialties, e.licence_no, e.licence_status, e.institution_id, \
    e.unit, e.integrity, e.intro, e.version, e.updated_ms";

/// What is written for an entry (all but its id, version and time).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntryWrite {
    pub kind: String,
    pub name: String,
    pub city: String,
    pub county: String,
    pub address: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub phone: String,
    pub service_hours: String,
    pub specialties: String,
    pub licence_no: String,
    pub licence_status: String,
    pub institution_id: Option<i64>,
    pub unit: Option<String>,
    pub integrity: String,
    pub intro: String,
    /// What substring search reads.
    pub search_text: String,
    /// The 0.1° grid cell of (lat, lon) ([`cell_of`]).
    pub cell: Option<i64>,
    /// Its single characters and neighbouring pairs, space-separated (1–2 character
    /// search).
    pub grams: String,
}

/// Who made a change and when, with the log line's detail (JSON).
#[derive(Debug, Clone, Copy)]
pub struct ChangeStamp<'a> {
    pub actor: &'a str,
    pub at_ms: i64,
    /// `created`, `updated`, `deleted`, `imported`, `seeded`.
    pub action: &'a str,
}

/// One line of the change log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChangeRow {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub entry_id: i64,
    pub action: String,
    pub detail: String,
}

/// Why an update or delete was not written.
#[derive(Debug, thiserror::Error)]
pub enum EntryWriteError {
    #[error("no such entry")]
    NotFound,
    #[error("the entry was changed by someone else")]
    VersionConflict,
    #[error("the institution has appointments still to come")]
    HasAppointments,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for EntryWriteError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(e))
    }
}

/// A search of the directory; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    /// Substrings, each of which must occur in name, area, address or specialties.
    pub terms: Vec<String>,
    pub city: Option<String>,
    pub county: Option<String>,
    /// Any of these kinds (empty: all).
    pub kinds: Vec<String>,
    /// A substring of the specialties.
    pub specialty: Option<String>,
    /// Near this point, ordered by distance: (lat, lon, half the box's side in degrees
    /// of latitude, cos(lat)).
    pub near: Option<Near>,
    pub limit: i64,
    pub offset: i64,
}

/// "Near me": a box around a point, ordered by (equirectangular) distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    pub lat: f64,
    pub lon: f64,
    /// Half the box's height in degrees of latitude.
    pub dlat: f64,
    /// Half the box's width in degrees of longitude.
    pub dlon: f64,
    /// cos(lat): a degree of longitude is this many degrees of latitude long.
    pub lon_scale: f64,
}

/// Most grid cells a "near me" query lists; a larger box is read through the range of
/// latitudes alone.
pub const MAX_CELLS: i64 = 400;

/// The 0.1° grid cell of a point: `floor(lat × 10) × 10000 + floor(lon × 10)`.
#[must_use]
pub fn cell_of(lat: f64, lon: f64) -> i64 {
    // Coordinates are checked to ±90 / ±180 before they get here.
    #[allow(clippy::cast_possible_truncation)]
    let (a, b) = ((lat * 10.0).floor() as i64, (lon * 10.0).floor() as i64);
    a * 10_000 + b
}

/// Terms shorter than this have no trigram.
pub const TRIGRAM_CHARS: usize = 3;

#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Real(f64),
    Int(i64),
}

fn like_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// An FTS5 phrase: the term in double quotes (quotes doubled).
fn fts_phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// The SQL of a search and its binds, for one backend.
/// What a search statement answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One page of rows.
    Page,
    /// The number of matches.
    Count,
    /// The number of matches, counted up to this many.
    CountUpTo(i64),
}

/// PostgreSQL: a search whose matches are fewer than this reads them all through its
/// indexes (bitmap scans) and sorts them; more, and it walks the ids in order and stops
/// at the page's end. The planner cannot tell the two apart for one- and two-character
/// terms (a term found nowhere was estimated common: a walk of every row, seconds).
pub const PG_FEW_MATCHES: i64 = 2000;

fn search_sql(backend: super::Backend, q: &SearchQuery, shape: Shape) -> (String, Vec<Bind>) {
    let mut binds: Vec<Bind> = Vec::new();
    let next = |b: Bind, binds: &mut Vec<Bind>| {
        binds.push(b);
        format!("${}", binds.len())
    };
    let mut clauses: Vec<String> = Vec::new();
    let mut driver: Option<&str> = None;
    let (long, short): (Vec<&String>, Vec<&String>) = q
        .terms
        .iter()
        .partition(|t| t.chars().count() >= TRIGRAM_CHARS);
    match backend {
        super::Backend::Sqlite => {
            // Without "near me" the page is in id order: the first full-text table
            // drives the query in its rowid order and stops at the page's end (an
            // `IN (…)` list would first collect every match of a common term).
            for (table, terms) in [("directory_fts", &long), ("directory_grams", &short)] {
                if terms.is_empty() {
                    continue;
                }
                let expr = terms
                    .iter()
                    .map(|t| fts_phrase(t))
                    .collect::<Vec<_>>()
                    .join(" ");
                let p = next(Bind::Text(expr), &mut binds);
                if driver.is_none() && q.near.is_none() {
                    driver = Some(table);
                    clauses.push(format!("{table} MATCH {p}"));
                } else {
                    clauses.push(format!(
                        "e.id IN (SELECT rowid FROM {table} WHERE {table} MATCH {p})"
                    ));
                }
            }
        }
        super::Backend::Postgres => {
            for t in long {
                let p = next(Bind::Text(like_pattern(t)), &mut binds);
                clauses.push(format!("e.search_text ILIKE {p}"));
            }
            for t in short {
                let p = next(Bind::Text(t.to_lowercase()), &mut binds);
                clauses.push(format!(
                    "string_to_array(e.grams, ' ') @> ARRAY[{p}]::text[]"
                ));
            }
        }
    }
    if let Some(city) = &q.city {
        let p = next(Bind::Text(city.clone()), &mut binds);
        clauses.push(format!("e.city = {p}"));
    }
    if let Some(county) = &q.county {
        let p = next(Bind::Text(county.clone()), &mut binds);
        clauses.push(format!("e.county = {p}"));
    }
    if !q.kinds.is_empty() {
        let list = q
            .kinds
            .iter()
            .map(|k| next(Bind::Text(k.clone()), &mut binds))
            .collect::<Vec<_>>()
            .join(", ");
        clauses.push(format!("e.kind IN ({list})"));
    }
    if let Some(s) = &q.specialty {
        let p = next(Bind::Text(s.clone()), &mut binds);
        clauses.push(match backend {
            super::Backend::Sqlite => format!("instr(e.specialties, {p}) > 0"),
            super::Backend::Postgres => format!("strpos(e.specialties, {p}) > 0"),
        });
    }
    let mut order = driver.map_or_else(|| "e.id".to_owned(), |t| format!("{t}.rowid"));
    if let Some(n) = q.near {
        let lat = next(Bind::Real(n.lat), &mut binds);
        let lon = next(Bind::Real(n.lon), &mut binds);
        let dlat = next(Bind::Real(n.dlat), &mut binds);
        let dlon = next(Bind::Real(n.dlon), &mut binds);
        let scale = next(Bind::Real(n.lon_scale), &mut binds);
        clauses.push(format!(
            "e.lat BETWEEN {lat} - {dlat} AND {lat} + {dlat} \
             AND e.lon BETWEEN {lon} - {dlon} AND {lon} + {dlon}"
        ));
        let (lo, hi) = (
            cell_of(n.lat - n.dlat, n.lon - n.dlon),
            cell_of(n.lat + n.dlat, n.lon + n.dlon),
        );
        let (rows, cols) = (hi / 10_000 - lo / 10_000 + 1, hi % 10_000 - lo % 10_000 + 1);
        // The cell arithmetic assumes positive coordinates (all of China's are).
        let positive = n.lat - n.dlat >= 0.0 && n.lon - n.dlon >= 0.0;
        if positive && rows > 0 && cols > 0 && rows * cols <= MAX_CELLS {
            let mut cells = Vec::new();
            for r in 0..rows {
                for c in 0..cols {
                    cells.push(next(Bind::Int(lo + r * 10_000 + c), &mut binds));
                }
            }
            clauses.push(format!("e.cell IN ({})", cells.join(", ")));
        }
        order = format!(
            "(e.lat - {lat}) * (e.lat - {lat}) + \
             ((e.lon - {lon}) * {scale}) * ((e.lon - {lon}) * {scale}), e.id"
        );
    }
    let from = driver.map_or_else(
        || "directory_entries e".to_owned(),
        |t| format!("{t} JOIN directory_entries e ON e.id = {t}.rowid"),
    );
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    match shape {
        Shape::Count => {
            return (format!("SELECT COUNT(*) FROM {from}{filter}"), binds);
        }
        Shape::CountUpTo(cap) => {
            let cap = next(Bind::Int(cap), &mut binds);
            return (
                format!("SELECT COUNT(*) FROM (SELECT 1 FROM {from}{filter} LIMIT {cap}) AS m"),
                binds,
            );
        }
        Shape::Page => {}
    }
    let limit = next(Bind::Int(q.limit), &mut binds);
    let offset = next(Bind::Int(q.offset), &mut binds);
    (
        format!(
            "SELECT {ENTRY_COLUMNS} FROM {from}{filter} ORDER BY {order} \
             LIMIT {limit} OFFSET {offset}"
        ),
        binds,
    )
}

/// Bind `$binds` in order to query `$q` (either backend's query type).
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Real(f) => q.bind(f),
                Bind::Int(i) => q.bind(i),
            };
        }
        q
    }};
}

/// One appointment as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AppointmentRow {
    pub id: i64,
    pub code: String,
    pub institution_id: i64,
    pub slot_start_ms: i64,
    pub slot_end_ms: i64,
    pub citizen_name: String,
    pub phone: String,
    pub matter: String,
    pub status: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

const APPOINTMENT_COLUMNS: &str = "a.id, a.code, a.institution_id, a.slot_start_ms, \
    a.slot_end_ms, a.citizen_name, a.phone, a.matter, a.status, a.created_ms, a.updated_ms";

/// A booking to write.
#[derive(Debug, Clone)]
pub struct NewBooking<'a> {
    pub code: &'a str,
    pub institution_id: i64,
    pub slot_start_ms: i64,
    pub slot_end_ms: i64,
    pub citizen_name: &'a str,
    pub phone: &'a str,
    pub matter: &'a str,
    /// When its reminder is due.
    pub remind_at_ms: i64,
    pub now_ms: i64,
    /// Live bookings one phone may hold at once.
    pub max_per_phone: i64,
}

/// Why a booking was not written.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("the slot is already booked")]
    SlotTaken,
    #[error("the booking code is taken")]
    CodeTaken,
    #[error("this phone already holds the most bookings allowed")]
    TooManyForPhone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for BookingError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            let slot = db.constraint().is_some_and(|c| c.contains("one_per_slot"))
                || db.message().contains("slot_start_ms");
            return if slot {
                Self::SlotTaken
            } else {
                Self::CodeTaken
            };
        }
        Self::Store(StoreError::Database(e))
    }
}

/// A reminder due to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReminder {
    pub appointment: AppointmentRow,
    pub due_ms: i64,
}

/// Append one change-log line inside transaction `$tx`.
macro_rules! log_change {
    ($tx:expr, $stamp:expr, $entry_id:expr, $detail:expr) => {
        sqlx::query(
            "INSERT INTO directory_changes (at_ms, actor, entry_id, action, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind($stamp.at_ms)
        .bind($stamp.actor)
        .bind($entry_id)
        .bind($stamp.action)
        .bind($detail)
        .execute(&mut *$tx)
        .await
    };
}

/// Append one appointment event inside transaction `$tx`.
macro_rules! appointment_event {
    ($tx:expr, $id:expr, $at_ms:expr, $actor:expr, $action:expr) => {
        sqlx::query(
            "INSERT INTO directory_appointment_events (appointment_id, at_ms, actor, action) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind($id)
        .bind($at_ms)
        .bind($actor)
        .bind($action)
        .execute(&mut *$tx)
        .await
    };
}

impl Store {
    /// Insert entries, each with its change-log line, in one transaction; returns their
    /// ids in order. `detail` is the JSON logged for each.
    ///
    /// # Errors
    /// Database errors; nothing is written then.
    pub async fn insert_directory_entries(
        &self,
        entries: &[(EntryWrite, String)],
        stamp: ChangeStamp<'_>,
    ) -> Result<Vec<i64>, StoreError> {
        const INSERT: &str = "INSERT INTO directory_entries (kind, name, city, county, address, \
            lat, lon, phone, service_hours, specialties, licence_no, licence_status, \
            institution_id, unit, integrity, intro, search_text, grams, cell, version, updated_ms) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
            $19, $20, 1, $18) RETURNING id";
        let mut ids = Vec::with_capacity(entries.len());
        on_pool!(self, |p| {
            let mut conn = TxConnection::acquire(p, &self.writes).await?;
            let mut tx = sqlx::Connection::begin(conn.raw()).await?;
            for (e, detail) in entries {
                let (id,): (i64,) = sqlx::query_as(INSERT)
                    .bind(&e.kind)
                    .bind(&e.name)
                    .bind(&e.city)
                    .bind(&e.county)
                    .bind(&e.address)
                    .bind(e.lat)
                    .bind(e.lon)
                    .bind(&e.phone)
                    .bind(&e.service_hours)
                    .bind(&e.specialties)
                    .bind(&e.licence_no)
                    .bind(&e.licence_status)
                    .bind(e.institution_id)
                    .bind(&e.unit)
                    .bind(&e.integrity)
                    .bind(&e.intro)
                    .bind(&e.search_text)
                    .bind(stamp.at_ms)
                    .bind(&e.grams)
                    .bind(e.cell)
                    .fetch_one(&mut *tx)
                    .await?;
                log_change!(tx, stamp, id, detail)?;
                ids.push(id);
            }
            tx.commit().await?;
            conn.committed();
        });
        Ok(ids)
    }

    /// Replace an entry's fields; `expected_version` (when given) must be the stored
    /// one. Returns the new version.
    ///
    /// # Errors
    /// [`EntryWriteError::NotFound`], [`EntryWriteError::VersionConflict`], database
    /// errors.
    pub async fn update_directory_entry(
        &self,
        id: i64,
        expected_version: Option<i64>,
        e: &EntryWrite,
        detail: &str,
        stamp: ChangeStamp<'_>,
    ) -> Result<i64, EntryWriteError> {
        const UPDATE: &str = "UPDATE directory_entries SET kind = $2, name = $3, city = $4, \
            county = $5, address = $6, lat = $7, lon = $8, phone = $9, service_hours = $10, \
            specialties = $11, licence_no = $12, licence_status = $13, institution_id = $14, \
            unit = $15, integrity = $16, intro = $17, search_text = $18, grams = $21, cell = $22, \
            version = version + 1, updated_ms = $19 \
            WHERE id = $1 AND ($20 IS NULL OR version = $20) RETURNING version";
        let version = on_pool!(self, |p| {
            let mut conn = TxConnection::acquire(p, &self.writes).await?;
            let mut tx = sqlx::Connection::begin(conn.raw()).await?;
            let row: Option<(i64,)> = sqlx::query_as(UPDATE)
                .bind(id)
                .bind(&e.kind)
                .bind(&e.name)
                .bind(&e.city)
                .bind(&e.county)
                .bind(&e.address)
                .bind(e.lat)
                .bind(e.lon)
                .bind(&e.phone)
                .bind(&e.service_hours)
                .bind(&e.specialties)
                .bind(&e.licence_no)
                .bind(&e.licence_status)
                .bind(e.institution_id)
                .bind(&e.unit)
                .bind(&e.integrity)
                .bind(&e.intro)
                .bind(&e.search_text)
                .bind(stamp.at_ms)
                .bind(expected_version)
                .bind(&e.grams)
                .bind(e.cell)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((version,)) = row else {
                let exists: Option<(i64,)> =
                    sqlx::query_as("SELECT id FROM directory_entries WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                tx.rollback().await?;
                conn.rolled_back();
                return Err(if exists.is_some() {
                    EntryWriteError::VersionConflict
                } else {
                    EntryWriteError::NotFound
                });
            };
            log_change!(tx, stamp, id, detail)?;
            tx.commit().await?;
            conn.committed();
            version
        });
        Ok(version)
    }

    /// Delete an entry (logging it as it was); an institution with appointments still to
    /// come (booked or confirmed, from `now_ms`) is refused.
    ///
    /// # Errors
    /// [`EntryWriteError::NotFound`], [`EntryWriteError::HasAppointments`], database
    /// errors.
    pub async fn delete_directory_entry(
        &self,
        id: i64,
        detail: &str,
        stamp: ChangeStamp<'_>,
    ) -> Result<(), EntryWriteError> {
        on_pool!(self, |p| {
            let mut conn = TxConnection::acquire(p, &self.writes).await?;
            let mut tx = sqlx::Connection::begin(conn.raw()).await?;
            let done = sqlx::query("DELETE FROM directory_entries WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if done == 0 {
                tx.rollback().await?;
                conn.rolled_back();
                return Err(EntryWriteError::NotFound);
            }
            let (pending,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM directory_appointments WHERE institution_id = $1 \
                 AND status IN ('booked', 'confirmed') AND slot_end_ms > $2",
            )
            .bind(id)
            .bind(stamp.at_ms)
            .fetch_one(&mut *tx)
            .await?;
            if pending > 0 {
                tx.rollback().await?;
                conn.rolled_back();
                return Err(EntryWriteError::HasAppointments);
            }
            sqlx::query(
                "UPDATE directory_entries SET institution_id = NULL WHERE institution_id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            log_change!(tx, stamp, id, detail)?;
            tx.commit().await?;
            conn.committed();
        });
        Ok(())
    }

    /// One entry.
    ///
    /// # Errors
    /// Database errors.
    pub async fn directory_entry(&self, id: i64) -> Result<Option<EntryRow>, StoreError> {
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM directory_entries e WHERE e.id = $1");
        let row = on_pool!(self, |p| sqlx::query_as::<_, EntryRow>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(id)
        .fetch_optional(p)
        .await?);
        Ok(row)
    }

    /// The practitioners of an institution, by id, at most `limit`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn directory_practitioners(
        &self,
        institution_id: i64,
        limit: i64,
    ) -> Result<Vec<EntryRow>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM directory_entries e WHERE e.institution_id = $1 \
             ORDER BY e.id LIMIT $2"
        );
        let rows = on_pool!(self, |p| sqlx::query_as::<_, EntryRow>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(institution_id)
        .bind(limit)
        .fetch_all(p)
        .await?);
        Ok(rows)
    }

    /// The entries a search finds, one page.
    ///
    /// # Errors
    /// Database errors.
    pub async fn search_directory(&self, q: &SearchQuery) -> Result<Vec<EntryRow>, StoreError> {
        let (sql, binds) = search_sql(self.backend(), q, Shape::Page);
        if let Pool::Postgres(p) = &self.pool
            && !q.terms.is_empty()
        {
            // Count the matches through the indexes alone (bitmap scans), up to
            // PG_FEW_MATCHES; few: read them that way and sort; many: walk the ids.
            let (probe, probe_binds) =
                search_sql(self.backend(), q, Shape::CountUpTo(PG_FEW_MATCHES));
            let mut tx = p.begin().await?;
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await?;
            sqlx::query("SET LOCAL enable_indexscan = off")
                .execute(&mut *tx)
                .await?;
            let query = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(probe));
            let (found,) = bind_all!(query, probe_binds).fetch_one(&mut *tx).await?;
            if found >= PG_FEW_MATCHES {
                sqlx::query("SET LOCAL enable_seqscan = on")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("SET LOCAL enable_indexscan = on")
                    .execute(&mut *tx)
                    .await?;
            }
            let query = sqlx::query_as::<_, EntryRow>(sqlx::AssertSqlSafe(sql));
            let rows = bind_all!(query, binds).fetch_all(&mut *tx).await?;
            tx.rollback().await?;
            return Ok(rows);
        }
        let rows = on_pool!(self, |p| {
            let query = sqlx::query_as::<_, EntryRow>(sqlx::AssertSqlSafe(sql.clone()));
            bind_all!(query, binds.clone()).fetch_all(p).await?
        });
        Ok(rows)
    }

    /// How many entries a search finds (all pages).
    ///
    /// # Errors
    /// Database errors.
    pub async fn count_directory(&self, q: &SearchQuery) -> Result<i64, StoreError> {
        let (sql, binds) = search_sql(self.backend(), q, Shape::Count);
        let (n,): (i64,) = on_pool!(self, |p| {
            let query = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql.clone()));
            bind_all!(query, binds.clone()).fetch_one(p).await?
        });
        Ok(n)
    }

    /// The change log, newest first: of one entry, or of all.
    ///
    /// # Errors
    /// Database errors.
    pub async fn directory_changes(
        &self,
        entry_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, StoreError> {
        const SQL: &str = "SELECT id, at_ms, actor, entry_id, action, detail FROM directory_changes \
            WHERE ($1 IS NULL OR entry_id = $1) ORDER BY id DESC LIMIT $2";
        let rows = on_pool!(self, |p| sqlx::query_as::<_, ChangeRow>(SQL)
            .bind(entry_id)
            .bind(limit)
            .fetch_all(p)
            .await?);
        Ok(rows)
    }

    /// Book a slot: the appointment, its `booked` event and its reminder in one
    /// transaction. A second live booking of the slot fails on the unique index.
    ///
    /// # Errors
    /// [`BookingError::SlotTaken`], [`BookingError::CodeTaken`],
    /// [`BookingError::TooManyForPhone`], database errors.
    pub async fn book_appointment(
        &self,
        b: &NewBooking<'_>,
    ) -> Result<AppointmentRow, BookingError> {
        let insert = format!(
            "INSERT INTO directory_appointments (code, institution_id, slot_start_ms, \
             slot_end_ms, citizen_name, phone, matter, status, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'booked', $8, $8) RETURNING {}",
            APPOINTMENT_COLUMNS.replace("a.", "")
        );
        let row = on_pool!(self, |p| {
            let mut conn = TxConnection::acquire(p, &self.writes)
                .await
                .map_err(StoreError::from)?;
            let mut tx = sqlx::Connection::begin(conn.raw()).await?;
            let row = sqlx::query_as::<_, AppointmentRow>(sqlx::AssertSqlSafe(insert.clone()))
                .bind(b.code)
                .bind(b.institution_id)
                .bind(b.slot_start_ms)
                .bind(b.slot_end_ms)
                .bind(b.citizen_name)
                .bind(b.phone)
                .bind(b.matter)
                .bind(b.now_ms)
                .fetch_one(&mut *tx)
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) => {
                    let e = BookingError::from(e);
                    if matches!(e, BookingError::SlotTaken | BookingError::CodeTaken) {
                        tx.rollback().await?;
                        conn.rolled_back();
                    }
                    return Err(e);
                }
            };
            // Written first, counted after: on SQLite the transaction's first statement
            // is a write, so a busy database is waited for rather than refused.
            let (held,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM directory_appointments WHERE phone = $1 \
                 AND status IN ('booked', 'confirmed') AND slot_end_ms > $2",
            )
            .bind(b.phone)
            .bind(b.now_ms)
            .fetch_one(&mut *tx)
            .await?;
            if held > b.max_per_phone {
                tx.rollback().await?;
                conn.rolled_back();
                return Err(BookingError::TooManyForPhone);
            }
            appointment_event!(tx, row.id, b.now_ms, "citizen", "booked")?;
            sqlx::query("INSERT INTO directory_reminders (appointment_id, due_ms) VALUES ($1, $2)")
                .bind(row.id)
                .bind(b.remind_at_ms)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            conn.committed();
            row
        });
        Ok(row)
    }

    /// The starts of an institution's slots that are held (booked or confirmed) between
    /// two moments.
    ///
    /// # Errors
    /// Database errors.
    pub async fn held_slots(
        &self,
        institution_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        const SQL: &str = "SELECT slot_start_ms FROM directory_appointments \
            WHERE institution_id = $1 AND slot_start_ms >= $2 AND slot_start_ms < $3 \
            AND status IN ('booked', 'confirmed') ORDER BY slot_start_ms";
        let rows: Vec<(i64,)> = on_pool!(self, |p| sqlx::query_as(SQL)
            .bind(institution_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(p)
            .await?);
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    /// The appointment with this code.
    ///
    /// # Errors
    /// Database errors.
    pub async fn appointment_by_code(
        &self,
        code: &str,
    ) -> Result<Option<AppointmentRow>, StoreError> {
        let sql =
            format!("SELECT {APPOINTMENT_COLUMNS} FROM directory_appointments a WHERE a.code = $1");
        let row = on_pool!(self, |p| sqlx::query_as::<_, AppointmentRow>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(code)
        .fetch_optional(p)
        .await?);
        Ok(row)
    }

    /// The appointment with this id.
    ///
    /// # Errors
    /// Database errors.
    pub async fn appointment(&self, id: i64) -> Result<Option<AppointmentRow>, StoreError> {
        let sql =
            format!("SELECT {APPOINTMENT_COLUMNS} FROM directory_appointments a WHERE a.id = $1");
        let row = on_pool!(self, |p| sqlx::query_as::<_, AppointmentRow>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(id)
        .fetch_optional(p)
        .await?);
        Ok(row)
    }

    /// Move an appointment from one of `from` to `to`, with its event; `false` when it
    /// was not in one of `from` (nothing written).
    ///
    /// # Errors
    /// Database errors.
    pub async fn set_appointment_status(
        &self,
        id: i64,
        from: &[&str],
        to: &str,
        actor: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let list = (0..from.len())
            .map(|i| format!("${}", i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE directory_appointments SET status = $2, updated_ms = $3 \
             WHERE id = $1 AND status IN ({list})"
        );
        let done = on_pool!(self, |p| {
            let mut conn = TxConnection::acquire(p, &self.writes).await?;
            let mut tx = sqlx::Connection::begin(conn.raw()).await?;
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .bind(to)
                .bind(now_ms);
            for s in from {
                q = q.bind(*s);
            }
            let done = q.execute(&mut *tx).await?.rows_affected() == 1;
            if done {
                appointment_event!(tx, id, now_ms, actor, to)?;
                tx.commit().await?;
                conn.committed();
            } else {
                tx.rollback().await?;
                conn.rolled_back();
            }
            done
        });
        Ok(done)
    }

    /// The appointments of these institutions with slots between two moments, by slot.
    ///
    /// # Errors
    /// Database errors.
    pub async fn appointments_of(
        &self,
        institutions: &[i64],
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<AppointmentRow>, StoreError> {
        if institutions.is_empty() {
            return Ok(Vec::new());
        }
        let list = (0..institutions.len())
            .map(|i| format!("${}", i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {APPOINTMENT_COLUMNS} FROM directory_appointments a \
             WHERE a.slot_start_ms >= $1 AND a.slot_start_ms < $2 AND a.institution_id IN ({list}) \
             ORDER BY a.slot_start_ms, a.id LIMIT $3"
        );
        let rows = on_pool!(self, |p| {
            let mut q = sqlx::query_as::<_, AppointmentRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(from_ms)
                .bind(to_ms)
                .bind(limit);
            for i in institutions {
                q = q.bind(*i);
            }
            q.fetch_all(p).await?
        });
        Ok(rows)
    }

    /// The ids of the entries a console unit handles appointments for.
    ///
    /// # Errors
    /// Database errors.
    pub async fn directory_entries_of_units(
        &self,
        units: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let list = (0..units.len())
            .map(|i| format!("${}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT id FROM directory_entries WHERE unit IN ({list}) ORDER BY id");
        let rows: Vec<(i64,)> = on_pool!(self, |p| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for u in units {
                q = q.bind(u);
            }
            q.fetch_all(p).await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// An appointment's events, oldest first, as (actor, action).
    ///
    /// # Errors
    /// Database errors.
    pub async fn appointment_events(&self, id: i64) -> Result<Vec<(String, String)>, StoreError> {
        const SQL: &str = "SELECT actor, action FROM directory_appointment_events \
            WHERE appointment_id = $1 ORDER BY id";
        let rows = on_pool!(self, |p| sqlx::query_as(SQL).bind(id).fetch_all(p).await?);
        Ok(rows)
    }

    /// Reminders due at `now_ms` and not sent, of appointments still held, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn due_reminders(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<DueReminder>, StoreError> {
        let sql = format!(
            "SELECT {APPOINTMENT_COLUMNS}, r.due_ms FROM directory_reminders r \
             JOIN directory_appointments a ON a.id = r.appointment_id \
             WHERE r.sent_ms IS NULL AND r.due_ms <= $1 AND a.status IN ('booked', 'confirmed') \
             ORDER BY r.due_ms LIMIT $2"
        );
        let rows = on_pool!(self, |p| {
            use sqlx::Row;
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(now_ms)
                .bind(limit)
                .fetch_all(p)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(DueReminder {
                    appointment: sqlx::FromRow::from_row(r)?,
                    due_ms: r.try_get("due_ms")?,
                });
            }
            out
        });
        Ok(rows)
    }

    /// Marks a reminder sent.
    ///
    /// # Errors
    /// Database errors.
    pub async fn mark_reminder_sent(
        &self,
        appointment_id: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
            "UPDATE directory_reminders SET sent_ms = $2 WHERE appointment_id = $1 AND sent_ms IS NULL"
        )
        .bind(appointment_id)
        .bind(now_ms)
        .execute(p)
        .await
        .map(|_| ())?
        });
        Ok(())
    }

    /// Test hook: tries to rewrite and to delete change-log lines; `Err` when both are
    /// refused (the log is append-only).
    #[cfg(test)]
    pub(crate) async fn tamper_directory_changes(&self) -> Result<(), StoreError> {
        let update = on_pool!(self, |p| sqlx::query(
            "UPDATE directory_changes SET actor = 'x'"
        )
        .execute(p)
        .await
        .map(|_| ()));
        let delete = on_pool!(self, |p| sqlx::query("DELETE FROM directory_changes")
            .execute(p)
            .await
            .map(|_| ()));
        match (update, delete) {
            (Err(_), Err(e)) => Err(StoreError::Database(e)),
            _ => Ok(()),
        }
    }

    /// A plain row count of the directory (the bench's anchor).
    ///
    /// # Errors
    /// Database errors.
    pub async fn count_directory_entries(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(self, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM directory_entries"
        )
        .fetch_one(p)
        .await?);
        Ok(n)
    }
}
