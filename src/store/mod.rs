//! Persistence: SQLite (embedded default) and PostgreSQL behind one [`Store`].
//!
//! SQL is written once with `$N` placeholders, which both SQLite and PostgreSQL accept,
//! and run on whichever pool is configured ([`on_pool!`] compiles the body once per
//! backend). Migrations live in `migrations/sqlite` and `migrations/postgres`; they are
//! append-only.

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Database, PgPool, SqlitePool};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL must start with sqlite:// or postgres://")]
    UnsupportedUrl,
    #[error("cannot create the data directory")]
    DataDir(#[source] std::io::Error),
    #[error("database {} does not exist (`hotline migrate` or `hotline serve` creates it)", .0.display())]
    Missing(std::path::PathBuf),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored work-order snapshot is unreadable")]
    Snapshot,
}

impl StoreError {
    /// The database cannot be reached, is shutting down or is out of room — a state
    /// that passes (as opposed to a query it refused): the write is worth retrying.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => sqlx_unavailable(e),
            _ => false,
        }
    }
}

fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_code(&code)),
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs (five characters): class 08 (connection exception), 57P
/// (operator intervention: shutdown, cannot connect now), 53 (insufficient resources).
/// SQLite result codes (numbers, extended codes keep the primary in the low byte):
/// BUSY, LOCKED, IOERR, FULL, CANTOPEN.
fn unavailable_code(code: &str) -> bool {
    if code.len() == 5 && !code.starts_with('1') {
        return code.starts_with("08") || code.starts_with("57P") || code.starts_with("53");
    }
    code.parse::<u32>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13 | 14))
}

/// Why [`Store::check_writable`] says the database takes no writes.
#[derive(Debug, thiserror::Error)]
pub enum WriteProbeError {
    #[error("the last write failed and none succeeded since")]
    RecentFailure,
    #[error("the probe write failed")]
    Failed(#[source] StoreError),
    #[error("the probe write did not finish in time")]
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend's name, for log lines.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// How the last transactions ended, for [`Store::check_writable`]; shared by clones.
    writes: Arc<WriteHealth>,
    /// The unit tree the order read scope is written with ([`Store::install_unit_tree`]);
    /// shared by every clone.
    scope_tree: std::sync::Arc<std::sync::RwLock<Option<std::sync::Arc<orders::ScopeTree>>>>,
    /// The prefix of the short order numbers ([`Store::set_order_numbering`]); none:
    /// new orders get no number. Shared by every clone.
    numbering: std::sync::Arc<std::sync::RwLock<Option<String>>>,
}

/// Run `$body` with `$p` bound to the concrete pool of either backend.
macro_rules! on_pool {
    ($self:expr, |$p:ident| $body:expr) => {
        match &$self.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// How the store's transactions have been ending (see [`TxConnection`]), in unix ms.
#[derive(Debug, Default)]
struct WriteHealth {
    last_commit_ms: AtomicU64,
    /// A transaction that did not end cleanly (failed statement or COMMIT, cancelled).
    last_failure_ms: AtomicU64,
}

/// A pooled connection taken for one transaction, which goes back to the pool only when
/// the transaction ended cleanly ([`TxConnection::committed`], or a rollback the caller
/// awaited). Any other end — a failed statement, a failed COMMIT, a cancelled future —
/// closes the connection instead (the pool opens a fresh one).
///
/// Why: when a statement or the COMMIT fails with SQLITE_FULL or SQLITE_IOERR, SQLite may
/// or may not have rolled the transaction back itself (sqlite.org/lang_transaction.html,
/// "Response To Errors Within A Transaction"), and sqlx's count of open transactions on
/// the connection can then disagree with SQLite's. Such a connection, back in the pool,
/// answered the next `begin()` with a SAVEPOINT inside a transaction that never ended and
/// the next `commit()` with a RELEASE that commits nothing: work orders answered 201 that
/// were gone after a restart, the write lock held so that every other connection timed
/// out once the disk had room again, and lists counting rows only that connection saw.
/// Closing the connection rolls back whatever SQLite still held open.
struct TxConnection<DB: Database> {
    conn: PoolConnection<DB>,
    writes: Arc<WriteHealth>,
    clean: bool,
}

impl<DB: Database> TxConnection<DB> {
    async fn acquire(
        pool: &sqlx::Pool<DB>,
        writes: &Arc<WriteHealth>,
    ) -> Result<Self, sqlx::Error> {
        let conn = pool.acquire().await.inspect_err(|e| {
            if sqlx_unavailable(e) {
                writes.last_failure_ms.store(unix_ms(), Ordering::SeqCst);
            }
        })?;
        Ok(TxConnection {
            conn,
            writes: writes.clone(),
            clean: false,
        })
    }

    /// The connection to begin the transaction on.
    fn raw(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }

    /// The transaction committed: the connection may be reused.
    fn committed(&mut self) {
        self.clean = true;
        self.writes
            .last_commit_ms
            .store(unix_ms(), Ordering::SeqCst);
    }

    /// The transaction was rolled back by the caller (who awaited the ROLLBACK): the
    /// connection may be reused.
    fn rolled_back(&mut self) {
        self.clean = true;
    }
}

impl<DB: Database> Drop for TxConnection<DB> {
    fn drop(&mut self) {
        if !self.clean {
            self.writes
                .last_failure_ms
                .store(unix_ms(), Ordering::SeqCst);
            self.conn.close_on_drop();
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How recently a commit must have succeeded for [`Store::check_writable`] to trust it
/// rather than write a probe.
const TRUST_COMMIT_FOR_MS: u64 = 1_000;

/// How long a failed transaction with no commit after it makes [`Store::check_writable`]
/// say "not writable" without probing: a probe can pass where real writes fail (on
/// PostgreSQL the probe row's update fits its page and the WAL segment is preallocated,
/// while a new order needs new table pages).
const REMEMBER_FAILURE_FOR_MS: u64 = 30_000;

pub mod attachments;
pub mod calls;
pub mod directory;
pub mod drafts;
pub mod ops;
pub mod orders;
pub mod partners;
pub mod quality;
pub mod queue_log;
pub mod reports;
pub mod stats;
pub mod surveys;
pub mod violations;

const UPSERT_BINDING: &str = "INSERT INTO registrations \
    (aor, contact, expires_at, q, call_id, cseq, source, transport, user_agent, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
    ON CONFLICT (aor, contact) DO UPDATE SET expires_at = excluded.expires_at, \
    q = excluded.q, call_id = excluded.call_id, cseq = excluded.cseq, \
    source = excluded.source, transport = excluded.transport, \
    user_agent = excluded.user_agent, updated_at = excluded.updated_at";

/// One write of a [`Store::write_batch`].
#[derive(Debug, Clone, Copy)]
pub enum BindingWrite<'a> {
    Upsert(&'a StoredBinding),
    Delete {
        aor: &'a str,
        contact: &'a str,
    },
    Audit {
        actor: &'a str,
        action: &'a str,
        subject: &'a str,
        detail: &'a str,
    },
}

/// One registrar binding as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredBinding {
    pub aor: String,
    pub contact: String,
    /// Unix milliseconds.
    pub expires_at: i64,
    pub q: Option<f64>,
    pub call_id: String,
    pub cseq: i64,
    pub source: String,
    pub transport: String,
    pub user_agent: Option<String>,
}

impl Store {
    /// Connect (creating the SQLite file and its directory when needed).
    ///
    /// # Errors
    /// Unsupported URL, unreachable database.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::open(url, true).await
    }

    /// Connect to a database that must exist already: a missing SQLite file is
    /// [`StoreError::Missing`], not a new empty database (checks such as `ledger
    /// verify` would otherwise report an empty ledger as intact).
    ///
    /// # Errors
    /// Missing SQLite file, unsupported URL, unreachable database.
    pub async fn connect_existing(url: &str) -> Result<Store, StoreError> {
        Store::open(url, false).await
    }

    async fn open(url: &str, create: bool) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(create)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a work order acknowledged to a user survives power loss too.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let file = options.get_filename();
            let in_memory = file.as_os_str() == ":memory:" || url.contains("mode=memory");
            if !create && !in_memory && !file.is_file() {
                return Err(StoreError::Missing(file.to_path_buf()));
            }
            if let Some(dir) = file.parent()
                && create
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(StoreError::DataDir)?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await?;
            Ok(Store {
                pool: Pool::Sqlite(pool),
                writes: Arc::default(),
                scope_tree: std::sync::Arc::default(),
                numbering: std::sync::Arc::default(),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await?;
            Ok(Store {
                pool: Pool::Postgres(pool),
                writes: Arc::default(),
                scope_tree: std::sync::Arc::default(),
                numbering: std::sync::Arc::default(),
            })
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Apply pending migrations.
    ///
    /// # Errors
    /// A migration failed or a shipped one was edited.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await?,
            Pool::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    /// Round trip to the database, for `/healthz`.
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    /// Whether the database takes writes now, for `/healthz`: a read round trip says
    /// nothing about a full disk. From what the store's own transactions saw: one failed
    /// (within 30 s) and none committed since → no; one committed within the last second
    /// → yes. Otherwise one real, durable write (the `write_probe` row: a WAL frame on
    /// SQLite, a WAL record on PostgreSQL), bounded by `limit`.
    ///
    /// # Errors
    /// Recent transactions failed, or the probe failed or did not finish within `limit`.
    pub async fn check_writable(&self, limit: Duration) -> Result<(), WriteProbeError> {
        let now = unix_ms();
        let last_commit = self.writes.last_commit_ms.load(Ordering::SeqCst);
        let last_failure = self.writes.last_failure_ms.load(Ordering::SeqCst);
        if last_failure > last_commit && now.saturating_sub(last_failure) < REMEMBER_FAILURE_FOR_MS
        {
            return Err(WriteProbeError::RecentFailure);
        }
        if now.saturating_sub(last_commit) < TRUST_COMMIT_FOR_MS {
            return Ok(());
        }
        let probe = async {
            on_pool!(self, |p| {
                let mut conn = TxConnection::acquire(p, &self.writes).await?;
                let mut tx = sqlx::Connection::begin(conn.raw()).await?;
                sqlx::query("UPDATE write_probe SET at_ms = $1 WHERE id = 1")
                    .bind(i64::try_from(unix_ms()).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                conn.committed();
            });
            Ok::<(), StoreError>(())
        };
        match tokio::time::timeout(limit, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WriteProbeError::Failed(e)),
            Err(_) => Err(WriteProbeError::TimedOut),
        }
    }

    /// Insert or refresh one binding.
    ///
    /// # Errors
    /// Database errors.
    pub async fn upsert_binding(&self, b: &StoredBinding, now_ms: i64) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(UPSERT_BINDING)
            .bind(&b.aor)
            .bind(&b.contact)
            .bind(b.expires_at)
            .bind(b.q)
            .bind(&b.call_id)
            .bind(b.cseq)
            .bind(&b.source)
            .bind(&b.transport)
            .bind(&b.user_agent)
            .bind(now_ms)
            .execute(p)
            .await
            .map(|_| ())?);
        Ok(())
    }

    /// Apply registrar changes and audit lines in one transaction (group commit).
    ///
    /// # Errors
    /// Database errors; nothing is written then.
    pub async fn write_batch(
        &self,
        writes: &[BindingWrite<'_>],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            let mut conn = TxConnection::acquire(p, &self.writes).await?;
            let mut tx = sqlx::Connection::begin(conn.raw()).await?;
            for w in writes {
                match w {
                    BindingWrite::Upsert(b) => {
                        sqlx::query(UPSERT_BINDING)
                            .bind(&b.aor)
                            .bind(&b.contact)
                            .bind(b.expires_at)
                            .bind(b.q)
                            .bind(&b.call_id)
                            .bind(b.cseq)
                            .bind(&b.source)
                            .bind(&b.transport)
                            .bind(&b.user_agent)
                            .bind(now_ms)
                            .execute(&mut *tx)
                            .await?;
                    }
                    BindingWrite::Delete { aor, contact } => {
                        sqlx::query("DELETE FROM registrations WHERE aor = $1 AND contact = $2")
                            .bind(*aor)
                            .bind(*contact)
                            .execute(&mut *tx)
                            .await?;
                    }
                    BindingWrite::Audit {
                        actor,
                        action,
                        subject,
                        detail,
                    } => {
                        sqlx::query(
                            "INSERT INTO audit_log (at, actor, action, subject, detail) \
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(now_ms)
                        .bind(*actor)
                        .bind(*action)
                        .bind(*subject)
                        .bind(*detail)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            tx.commit().await?;
            conn.committed();
        });
        Ok(())
    }

    /// # Errors
    /// Database errors.
    pub async fn delete_binding(&self, aor: &str, contact: &str) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "DELETE FROM registrations WHERE aor = $1 AND contact = $2"
        )
        .bind(aor)
        .bind(contact)
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// Bindings still valid at `now_ms`, for restoring the registrar at start-up.
    ///
    /// # Errors
    /// Database errors.
    pub async fn live_bindings(&self, now_ms: i64) -> Result<Vec<StoredBinding>, StoreError> {
        const SQL: &str = "SELECT aor, contact, expires_at, q, call_id, cseq, source, transport, \
            user_agent FROM registrations WHERE expires_at > $1 ORDER BY aor, contact";
        let rows = on_pool!(self, |p| sqlx::query_as::<_, StoredBinding>(SQL)
            .bind(now_ms)
            .fetch_all(p)
            .await?);
        Ok(rows)
    }

    /// Remove bindings that expired; returns how many.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delete_expired_bindings(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = on_pool!(self, |p| sqlx::query(
            "DELETE FROM registrations WHERE expires_at <= $1"
        )
        .bind(now_ms)
        .execute(p)
        .await?
        .rows_affected());
        Ok(done)
    }

    /// Append one line to the audit log.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit(
        &self,
        now_ms: i64,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(now_ms)
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(detail)
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// Audit lines with this action, newest first, at most `limit`; only those about
    /// `subject` when given.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_lines(
        &self,
        action: &str,
        subject: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditLine>, StoreError> {
        let rows: Vec<(i64, String, String, String)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT at, actor, subject, detail FROM audit_log WHERE action = $1 \
             AND ($2 IS NULL OR subject = $2) ORDER BY id DESC LIMIT $3"
        )
        .bind(action)
        .bind(subject)
        .bind(limit)
        .fetch_all(p)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(at_ms, actor, subject, detail)| AuditLine {
                at_ms,
                actor,
                subject,
                detail,
            })
            .collect())
    }

    /// The audit lines with this action, oldest first, as (actor, subject, detail)
    /// (for tests and the operator's review).
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_lines_oldest_first(
        &self,
        action: &str,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows: Vec<(String, String, String)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT actor, subject, detail FROM audit_log WHERE action = $1 ORDER BY id"
        )
        .bind(action)
        .fetch_all(p)
        .await?);
        Ok(rows)
    }

    /// Number of audit lines with this action (for tests and metrics).
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_count(&self, action: &str) -> Result<i64, StoreError> {
        let n: (i64,) = on_pool!(self, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM audit_log WHERE action = $1"
        )
        .bind(action)
        .fetch_one(p)
        .await?);
        Ok(n.0)
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What it was about (an order id for reveals).
    pub subject: String,
    /// Details as written (JSON for reveals since H-12-4's reason).
    pub detail: String,
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A fresh SQLite store in a temp dir (kept alive by the returned guard).
    pub async fn sqlite() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.expect("connect sqlite");
        store.migrate().await.expect("migrate sqlite");
        (store, dir)
    }

    /// A fresh PostgreSQL database on the machine's server (127.0.0.1:5432, trust auth,
    /// or `HOTLINE_TEST_PG_ADMIN`), created with a unique name. There is no switch to
    /// skip: a test that cannot reach PostgreSQL fails (CI runs with PostgreSQL).
    pub async fn postgres() -> Store {
        let admin_url = std::env::var("HOTLINE_TEST_PG_ADMIN")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!(
            "hotline_test_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let admin = Store::connect(&admin_url)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (or HOTLINE_TEST_PG_ADMIN)");
        on_pool!(admin, |p| sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name}"
        )))
        .execute(p)
        .await
        .map(|_| ())
        .expect("create test database"));
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("HOTLINE_TEST_PG_ADMIN ends in /<database>");
        let store = Store::connect(&format!("{base}/{name}"))
            .await
            .expect("connect test database");
        store.migrate().await.expect("migrate postgres");
        store
    }
}

#[cfg(test)]
mod tests {
    use super::test_support;
    use super::*;

    fn binding(contact: &str, expires_at: i64) -> StoredBinding {
        StoredBinding {
            aor: "1001@hotline.test".into(),
            contact: contact.into(),
            expires_at,
            q: Some(0.5),
            call_id: "abc".into(),
            cseq: 7,
            source: "127.0.0.1:5070".into(),
            transport: "UDP".into(),
            user_agent: Some("baresip".into()),
        }
    }

    async fn bindings_round_trip(store: Store) {
        store.ping().await.unwrap();
        let a = binding("sip:1001@127.0.0.1:5070", 10_000);
        let b = binding("sip:1001@127.0.0.1:5071", 20_000);
        store.upsert_binding(&a, 1).await.unwrap();
        store.upsert_binding(&b, 1).await.unwrap();
        let mut refreshed = a.clone();
        refreshed.expires_at = 30_000;
        refreshed.cseq = 8;
        store.upsert_binding(&refreshed, 2).await.unwrap();
        assert_eq!(
            store.live_bindings(15_000).await.unwrap(),
            vec![refreshed.clone(), b.clone()]
        );
        assert_eq!(store.delete_expired_bindings(25_000).await.unwrap(), 1);
        store
            .delete_binding(&refreshed.aor, &refreshed.contact)
            .await
            .unwrap();
        assert!(store.live_bindings(0).await.unwrap().is_empty());
        let c = binding("sip:1001@127.0.0.1:5072", 40_000);
        let batch = [
            BindingWrite::Upsert(&c),
            BindingWrite::Audit {
                actor: "system",
                action: "sip.ban",
                subject: "127.0.0.8",
                detail: "batch",
            },
            BindingWrite::Delete {
                aor: &c.aor,
                contact: &c.contact,
            },
            BindingWrite::Upsert(&c),
        ];
        store.write_batch(&batch, 3).await.unwrap();
        assert_eq!(store.live_bindings(0).await.unwrap(), vec![c.clone()]);
        store.delete_binding(&c.aor, &c.contact).await.unwrap();
        store
            .audit(1, "system", "sip.ban", "127.0.0.9", "10 failures")
            .await
            .unwrap();
        assert_eq!(store.audit_count("sip.ban").await.unwrap(), 2);
    }

    #[tokio::test]
    async fn sqlite_bindings_round_trip() {
        let (store, _dir) = test_support::sqlite().await;
        assert_eq!(store.backend(), Backend::Sqlite);
        bindings_round_trip(store).await;
    }

    #[tokio::test]
    async fn postgres_bindings_round_trip() {
        let store = test_support::postgres().await;
        assert_eq!(store.backend(), Backend::Postgres);
        bindings_round_trip(store).await;
    }

    #[test]
    fn outages_are_told_from_refused_queries() {
        for code in [
            "08006", "08001", "57P01", "57P03", "53300", "5", "517", "13", "10", "266",
        ] {
            assert!(unavailable_code(code), "{code}");
        }
        // Unique violation, syntax error, SQLite constraint (19, 2067), not found.
        for code in ["23505", "42601", "19", "2067", "1", "12"] {
            assert!(!unavailable_code(code), "{code}");
        }
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::Snapshot.is_unavailable());
    }

    #[tokio::test]
    async fn unsupported_url_is_refused() {
        assert!(matches!(
            Store::connect("mysql://x").await,
            Err(StoreError::UnsupportedUrl)
        ));
    }
}
