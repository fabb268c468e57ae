//! Backups and restores of the database the config names (`hotline backup`,
//! `hotline restore`).
//!
//! - SQLite: SQLite's online backup API (through `rusqlite`, linked to the same
//!   `libsqlite3-sys` as sqlx). One backup step copies every page inside one read
//!   transaction, so the copy is a consistent snapshot while the server keeps writing
//!   (WAL mode: writers are not blocked). sqlx does not expose the backup API.
//! - PostgreSQL: `pg_dump --format=custom` and `pg_restore` (Debian's
//!   `postgresql-client`), run as child processes.
//!
//! A backup is written to `<dest>.partial` and renamed once complete, so a crash never
//! leaves a file that looks finished. Restores go only into an empty target (a missing
//! SQLite file, a PostgreSQL database without tables): nothing is overwritten.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;

use super::{Pool, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("database URL must start with sqlite:// or postgres://")]
    UnsupportedUrl,
    #[error("database URL {0:?} is not a valid SQLite URL")]
    SqliteUrl(String),
    #[error("database {} does not exist", .0.display())]
    MissingSource(PathBuf),
    #[error("{} exists already; choose another file or move it away", .0.display())]
    DestinationExists(PathBuf),
    #[error(
        "database {} exists already; restore only into a new location (stop the server and move the old file and its -wal/-shm away first)",
        .0.display()
    )]
    TargetExists(PathBuf),
    #[error("{} is not a SQLite backup (no SQLite header)", .0.display())]
    NotSqlite(PathBuf),
    #[error("{} is not a pg_dump custom-format archive (no PGDMP header)", .0.display())]
    NotPgDump(PathBuf),
    #[error(
        "the PostgreSQL database already holds {0} tables; restore into a new, empty database (createdb NAME)"
    )]
    TargetNotEmpty(i64),
    #[error("cannot read or write {}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SQLite backup API")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the SQLite source stayed busy; try again")]
    Busy,
    #[error("integrity check of {} failed: {message}", .path.display())]
    Integrity { path: PathBuf, message: String },
    #[error("cannot run {program} (install postgresql-client)")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Tool {
        program: &'static str,
        status: String,
        stderr: String,
    },
    #[error("store")]
    Store(#[from] StoreError),
    #[error("background task")]
    Join(#[from] tokio::task::JoinError),
}

/// What a backup or restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// Work orders in the copy (SQLite: counted in the copy itself; PostgreSQL: in
    /// the restored database, `None` for a dump).
    pub orders: Option<i64>,
}

enum Target {
    Sqlite(PathBuf),
    Postgres(String),
}

fn target(url: &str) -> Result<Target, BackupError> {
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| BackupError::SqliteUrl(url.to_owned()))?;
        Ok(Target::Sqlite(options.get_filename().to_path_buf()))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Target::Postgres(url.to_owned()))
    } else {
        Err(BackupError::UnsupportedUrl)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

/// Make the renamed file durable: fsync the file, rename, fsync the directory.
fn finish_file(partial: &Path, dest: &Path) -> Result<u64, BackupError> {
    let file = std::fs::File::open(partial).map_err(io(partial))?;
    file.sync_all().map_err(io(partial))?;
    let bytes = file.metadata().map_err(io(partial))?.len();
    std::fs::rename(partial, dest).map_err(io(dest))?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(bytes)
}

/// Copy every page of `from` into `to` with the online backup API, in one step (one
/// read transaction: a consistent snapshot). Retries while the source is locked.
fn sqlite_copy(
    from: &rusqlite::Connection,
    to: &mut rusqlite::Connection,
) -> Result<(), BackupError> {
    use rusqlite::backup::{Backup, StepResult};
    let backup = Backup::new(from, to)?;
    for _ in 0..600 {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    Err(BackupError::Busy)
}

fn sqlite_check(conn: &rusqlite::Connection, path: &Path) -> Result<Option<i64>, BackupError> {
    let message: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if message != "ok" {
        return Err(BackupError::Integrity {
            path: path.to_path_buf(),
            message,
        });
    }
    let has_orders: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'orders'",
        [],
        |r| r.get(0),
    )?;
    if has_orders == 0 {
        return Ok(None);
    }
    Ok(Some(conn.query_row(
        "SELECT COUNT(*) FROM orders",
        [],
        |r| r.get(0),
    )?))
}

fn sqlite_backup(source: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    use rusqlite::OpenFlags;
    if !source.is_file() {
        return Err(BackupError::MissingSource(source.to_path_buf()));
    }
    let partial = partial_path(dest);
    // A partial file is what a crashed backup left: never a finished backup.
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&partial)(e)),
    }
    // Read-write without create: a WAL database's readers need its -shm file.
    let from = rusqlite::Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    from.busy_timeout(Duration::from_secs(5))?;
    let mut to = rusqlite::Connection::open(&partial)?;
    sqlite_copy(&from, &mut to)?;
    // The copy is a single file: no -wal beside it to lose.
    let mode: String = to.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    debug_assert_eq!(mode, "delete");
    let orders = sqlite_check(&to, &partial)?;
    drop(to);
    let bytes = finish_file(&partial, dest)?;
    Ok(BackupReport {
        path: dest.to_path_buf(),
        bytes,
        orders,
    })
}

/// A restore run as root into the service's data directory (owned by the service
/// user) gives the database to that user, or the server could not write it.
fn own_like_directory(file: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let dir_meta = std::fs::metadata(dir).map_err(io(dir))?;
    let meta = std::fs::metadata(file).map_err(io(file))?;
    if (meta.uid(), meta.gid()) != (dir_meta.uid(), dir_meta.gid()) {
        // Only root may give a file away; anyone else already owns what they wrote.
        if let Err(e) = std::os::unix::fs::chown(file, Some(dir_meta.uid()), Some(dir_meta.gid()))
            && e.kind() != std::io::ErrorKind::PermissionDenied
        {
            return Err(io(file)(e));
        }
    }
    Ok(())
}

fn sqlite_restore(source: &Path, target: &Path) -> Result<BackupReport, BackupError> {
    let mut header = [0_u8; 16];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(source).map_err(io(source))?;
        f.read_exact(&mut header)
            .map_err(|_| BackupError::NotSqlite(source.to_path_buf()))?;
    }
    if &header != b"SQLite format 3\0" {
        return Err(BackupError::NotSqlite(source.to_path_buf()));
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let from =
        rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let partial = partial_path(target);
    let _ = std::fs::remove_file(&partial);
    let mut to = rusqlite::Connection::open(&partial)?;
    sqlite_copy(&from, &mut to)?;
    let orders = sqlite_check(&to, &partial)?;
    drop(to);
    own_like_directory(&partial)?;
    let bytes = finish_file(&partial, target)?;
    Ok(BackupReport {
        path: target.to_path_buf(),
        bytes,
        orders,
    })
}

/// The PostgreSQL URL without its password, and the password (for `PGPASSWORD`): a
/// password in the command line would show in every user's process list.
fn split_password(url: &str) -> (String, Option<String>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_owned(), None);
    };
    let Some(password) = parsed.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    }) else {
        return (url.to_owned(), None);
    };
    if parsed.set_password(None).is_err() {
        return (url.to_owned(), None);
    }
    (parsed.to_string(), Some(password))
}

/// `pg_dump` / `pg_restore` for the database at `url` (`--dbname` without password).
fn pg_command(program: &str, url: &str) -> Command {
    let (url, password) = split_password(url);
    let mut cmd = Command::new(program);
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    cmd.arg("--dbname").arg(url);
    cmd
}

fn run_tool(program: &'static str, cmd: &mut Command) -> Result<(), BackupError> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| BackupError::Spawn { program, source })?;
    if out.status.success() {
        return Ok(());
    }
    Err(BackupError::Tool {
        program,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Back up the database at `url` into the new file `dest`.
///
/// # Errors
/// `dest` exists, the source is missing, the copy or `pg_dump` failed.
pub async fn backup(url: &str, dest: &Path) -> Result<BackupReport, BackupError> {
    if dest.exists() {
        return Err(BackupError::DestinationExists(dest.to_path_buf()));
    }
    match target(url)? {
        Target::Sqlite(source) => {
            let dest = dest.to_path_buf();
            tokio::task::spawn_blocking(move || sqlite_backup(&source, &dest)).await?
        }
        Target::Postgres(url) => {
            let partial = partial_path(dest);
            let _ = std::fs::remove_file(&partial);
            let mut cmd = pg_command("pg_dump", &url);
            cmd.arg("--format=custom")
                .arg("--no-owner")
                .arg("--no-privileges")
                .arg("--file")
                .arg(&partial);
            tokio::task::spawn_blocking(move || run_tool("pg_dump", &mut cmd)).await??;
            let bytes = finish_file(&partial, dest)?;
            Ok(BackupReport {
                path: dest.to_path_buf(),
                bytes,
                orders: None,
            })
        }
    }
}

/// Restore the backup `source` into the (new, empty) database at `url`, then apply
/// the current migrations (a backup of an older version is upgraded).
///
/// # Errors
/// The target is not empty, the file is not a backup of that backend, the copy or
/// `pg_restore` failed, migrations failed.
pub async fn restore(source: &Path, url: &str) -> Result<BackupReport, BackupError> {
    let report = match target(url)? {
        Target::Sqlite(path) => {
            if path.exists() {
                return Err(BackupError::TargetExists(path));
            }
            let source = source.to_path_buf();
            tokio::task::spawn_blocking(move || sqlite_restore(&source, &path)).await??
        }
        Target::Postgres(url) => {
            let mut header = [0_u8; 5];
            {
                use std::io::Read;
                let mut f = std::fs::File::open(source).map_err(io(source))?;
                f.read_exact(&mut header)
                    .map_err(|_| BackupError::NotPgDump(source.to_path_buf()))?;
            }
            if &header != b"PGDMP" {
                return Err(BackupError::NotPgDump(source.to_path_buf()));
            }
            let store = Store::connect_existing(&url).await?;
            let tables = store.public_tables().await?;
            store.close().await;
            if tables > 0 {
                return Err(BackupError::TargetNotEmpty(tables));
            }
            let mut cmd = pg_command("pg_restore", &url);
            cmd.arg("--no-owner")
                .arg("--no-privileges")
                .arg("--exit-on-error")
                .arg("--single-transaction")
                .arg(source);
            tokio::task::spawn_blocking(move || run_tool("pg_restore", &mut cmd)).await??;
            BackupReport {
                path: source.to_path_buf(),
                bytes: std::fs::metadata(source).map_err(io(source))?.len(),
                orders: None,
            }
        }
    };
    let store = Store::connect_existing(url).await?;
    store.migrate().await?;
    let orders = store.count_orders().await?;
    store.close().await;
    Ok(BackupReport {
        orders: Some(orders),
        ..report
    })
}

impl Store {
    /// Tables in PostgreSQL's `public` schema (0 on SQLite).
    async fn public_tables(&self) -> Result<i64, StoreError> {
        match &self.pool {
            Pool::Postgres(p) => Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_one(p)
            .await?),
            Pool::Sqlite(_) => Ok(0),
        }
    }

    /// Work orders stored.
    ///
    /// # Errors
    /// Database errors.
    pub async fn count_orders(&self) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders"
        )
        .fetch_one(p)
        .await?))
    }

    /// Whether any work order is stored (cheap on a large table, unlike a count):
    /// false on a first start.
    ///
    /// # Errors
    /// Database errors.
    pub async fn has_orders(&self) -> Result<bool, StoreError> {
        let any: Option<i64> =
            on_pool!(self, |p| sqlx::query_scalar("SELECT 1 FROM orders LIMIT 1")
                .fetch_optional(p)
                .await?);
        Ok(any.is_some())
    }

    /// Close the pool (a restore's connections end before the server opens its own).
    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_command_line_for_pgpassword() {
        assert_eq!(
            split_password("postgres://hotline:s%40cret@db.local:5432/hotline?sslmode=require"),
            (
                "postgres://hotline@db.local:5432/hotline?sslmode=require".to_owned(),
                Some("s@cret".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://postgres@127.0.0.1:5432/x"),
            ("postgres://postgres@127.0.0.1:5432/x".to_owned(), None)
        );
    }

    #[test]
    fn a_restored_file_belongs_to_the_owner_of_its_directory() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        // As the packaged service's /var/lib/hotline: another owner than root.
        std::os::unix::fs::chown(&data, Some(65534), Some(65534)).expect("chown (as root)");
        let file = data.join("hotline.db");
        std::fs::write(&file, b"x").expect("write");
        own_like_directory(&file).expect("own");
        let meta = std::fs::metadata(&file).expect("stat");
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    }
}
