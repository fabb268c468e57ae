//! Upgrades from each shipped version to the next. There are no release tags, so each
//! migration number is a version step. A reference database is filled by the real
//! server (work orders in several states and cities, their ledger, an after-hours
//! call's record, a registration, the audit log); for every earlier version `v` a new database gets the migrations up to
//! `v` and the reference rows of the tables and columns that version had; then the
//! current server starts on it (applying the rest) and must serve the same orders, the
//! same scoped lists and the registration, and `hotline ledger verify` must pass.
//! SQLite and PostgreSQL.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;
use sqlx::{Connection, Executor, Row};

use common::ops::{hotline, login, pg_database};
use common::{RawUdp, Server, body_json, get, path_str, register_with_password, shipped_config};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn dir(self) -> PathBuf {
        common::repo_root().join(match self {
            Backend::Sqlite => "migrations/sqlite",
            Backend::Postgres => "migrations/postgres",
        })
    }
}

/// The migration numbers shipped, oldest first.
fn versions(backend: Backend) -> Vec<i64> {
    let mut v: Vec<i64> = std::fs::read_dir(backend.dir())
        .expect("migrations dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.split('_').next()?.parse().ok()
        })
        .collect();
    v.sort_unstable();
    v
}

/// What the reference server showed.
struct Reference {
    /// Each order as the province supervisor reads it.
    orders: Vec<Value>,
    /// The ids the Jinan legal-aid handler lists (its unit's scope).
    handler_ids: Vec<String>,
    /// The call records as the province supervisor lists them.
    calls: Vec<Value>,
}

fn calls(server: &Server) -> Vec<Value> {
    let s = login(server, "province-supervisor", "demo-province-supervisor");
    let (status, resp) = get(server, &s, "/api/calls?limit=100");
    assert_eq!(status, 200, "{resp}");
    let body = body_json(&resp);
    body["items"]
        .as_array()
        .or_else(|| body.as_array())
        .cloned()
        .unwrap_or_default()
}

fn cmd(server: &Server, s: &(String, String), id: &str, command: &str, body: Value) {
    let (status, resp) = common::http(
        server.http,
        "POST",
        &format!("/api/orders/{id}/{command}"),
        s,
        &body.to_string(),
    );
    assert_eq!(status, 200, "{command} {id}: {resp}");
}

fn create(server: &Server, s: &(String, String), city: &str, text: &str) -> String {
    let body = serde_json::json!({
        "contact_name": "王五", "contact_phone": "13712345678",
        "category": "consultation", "urgency": "normal",
        "business_area": "legal_aid", "description": text,
        "channel": "phone", "city": city,
        "received_at": received_at(),
    })
    .to_string();
    let (status, resp) = common::http(server.http, "POST", "/api/orders", s, &body);
    assert_eq!(status, 201, "{resp}");
    body_json(&resp)["id"].as_str().expect("id").to_owned()
}

/// Every server of the test runs at this moment (after hours), so deadlines and overdue
/// flags read the same on each.
const NOW: (&str, &str) = ("HOTLINE_FAKE_NOW", "2026-02-14T20:00+08:00");
/// The upgraded servers start an hour later: a shifted clock restarts at its given
/// time, and the reference's ledger events (written by the one clock since) must not
/// lie in their future (TK-LEDGER refuses commands dated before an order's last event).
const LATER: (&str, &str) = ("HOTLINE_FAKE_NOW", "2026-02-14T21:00+08:00");

fn received_at() -> String {
    "2026-02-14T19:00:00+08:00".to_owned()
}

fn read_all(server: &Server, ids: &[String]) -> Vec<Value> {
    let s = login(server, "province-supervisor", "demo-province-supervisor");
    ids.iter()
        .map(|id| {
            let (status, resp) = get(server, &s, &format!("/api/orders/{id}"));
            assert_eq!(status, 200, "{id}: {resp}");
            body_json(&resp)
        })
        .collect()
}

fn handler_ids(server: &Server) -> Vec<String> {
    let s = login(server, "handler", "demo-handler");
    let (status, resp) = get(server, &s, "/api/orders?per_page=100");
    assert_eq!(status, 200, "{resp}");
    let mut ids: Vec<String> = body_json(&resp)["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// Fill the reference database through the running server.
fn seed(server: &Server) -> (Vec<String>, Reference) {
    let desk = login(server, "province-dispatcher", "demo-province-dispatcher");
    let handler = login(server, "handler", "demo-handler");
    let supervisor = login(server, "province-supervisor", "demo-province-supervisor");
    let mut ids = Vec::new();
    for (city, text) in [
        ("jinan", "升级测试 已派单"),
        ("jinan", "升级测试 已签收"),
        ("jinan", "升级测试 办理中"),
        ("jinan", "升级测试 撤回"),
        ("qingdao", "升级测试 青岛"),
    ] {
        ids.push(create(server, &desk, city, text));
    }
    cmd(server, &handler, &ids[1], "sign", serde_json::json!({}));
    cmd(server, &handler, &ids[2], "sign", serde_json::json!({}));
    cmd(server, &handler, &ids[2], "start", serde_json::json!({}));
    cmd(
        server,
        &supervisor,
        &ids[3],
        "withdraw",
        serde_json::json!({"reason": "来电人撤回"}),
    );
    // An after-hours call (hung up during the announcement): its call record.
    let call = common::ivr_call(server);
    assert_eq!(call.status, Some(0), "{}{}", call.stdout, call.stderr);
    let sip = RawUdp::new(server.sip);
    let ok = register_with_password(&sip, "1001", "jinan-1001", false, 3600).expect("REGISTER");
    assert_eq!(common::status_of(&ok), 200, "{ok}");
    let reference = Reference {
        orders: read_all(server, &ids),
        handler_ids: handler_ids(server),
        calls: calls(server),
    };
    assert_eq!(reference.calls.len(), 1, "{:?}", reference.calls);
    assert_eq!(
        reference.handler_ids.len(),
        4,
        "{:?}",
        reference.handler_ids
    );
    (ids, reference)
}

/// Columns of `table` in a database at an older version that the reference also has.
async fn sqlite_copy(db: &Path, reference: &Path) {
    let url = format!("sqlite://{}", db.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.expect("open");
    c.execute("PRAGMA foreign_keys = OFF")
        .await
        .expect("fk off");
    c.execute(sqlx::AssertSqlSafe(format!(
        "ATTACH DATABASE '{}' AS ref",
        reference.display()
    )))
    .await
    .expect("attach");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' \
         AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'",
    )
    .fetch_all(&mut c)
    .await
    .expect("tables");
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT m.name FROM pragma_table_info('{table}', 'main') m \
             JOIN pragma_table_info('{table}', 'ref') r ON r.name = m.name"
        )))
        .fetch_all(&mut c)
        .await
        .expect("columns");
        let cols = columns.join(", ");
        c.execute(sqlx::AssertSqlSafe(format!("DELETE FROM main.{table}")))
            .await
            .expect("clear");
        c.execute(sqlx::AssertSqlSafe(format!(
            "INSERT INTO main.{table} ({cols}) SELECT {cols} FROM ref.{table}"
        )))
        .await
        .expect("copy rows");
    }
    c.close().await.expect("close");
}

async fn postgres_copy(url: &str, reference: &str) {
    let mut from = sqlx::PgConnection::connect(reference).await.expect("ref");
    let mut to = sqlx::PgConnection::connect(url).await.expect("target");
    to.execute("SET session_replication_role = replica")
        .await
        .expect("no fk checks");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut to)
    .await
    .expect("tables");
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(&table)
        .fetch_all(&mut to)
        .await
        .expect("columns");
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT row_to_json(t)::text FROM {table} t"
        )))
        .fetch_all(&mut from)
        .await
        .expect("reference rows");
        let cols = columns.join(", ");
        to.execute(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .await
            .expect("clear");
        for row in rows {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_record(NULL::{table}, $1::json)"
            )))
            .bind(row)
            .execute(&mut to)
            .await
            .expect("copy row");
        }
    }
    // Serial columns continue after the copied ids.
    let serials = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_default LIKE 'nextval%'",
    )
    .fetch_all(&mut to)
    .await
    .expect("serials");
    for s in serials {
        let (t, c): (String, String) = (s.get(0), s.get(1));
        to.execute(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{t}', '{c}'), COALESCE(MAX({c}), 0) + 1, false) FROM {t}"
        )))
        .await
        .expect("setval");
    }
}

fn upgrades_keep_the_data(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let reference_url =
        (backend == Backend::Postgres).then(|| rt.block_on(pg_database("hotline_upgrade_ref")));
    let mut env: Vec<(&str, &str)> = vec![NOW];
    if let Some(u) = reference_url.as_deref() {
        env.push(("DATABASE_URL", u));
    }
    let config = shipped_config();
    let mut server = Server::start_with(&config, &env);
    let (ids, reference) = seed(&server);
    let reference_db = server.data_dir().join("hotline.db");
    assert_eq!(server.terminate(), Some(0));
    let reference_dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tmp"));
    drop(server);

    let all = versions(backend);
    let current = *all.last().expect("migrations");
    for &version in all.iter().filter(|&&v| v < current) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("data/hotline.db");
        std::fs::create_dir_all(db.parent().expect("parent")).expect("mkdir");
        let target_url = match backend {
            Backend::Sqlite => format!("sqlite://{}?mode=rwc", db.display()),
            Backend::Postgres => rt.block_on(pg_database("hotline_upgrade")),
        };
        rt.block_on(async {
            let migrator = sqlx::migrate::Migrator::new(backend.dir())
                .await
                .expect("migrations");
            match backend {
                Backend::Sqlite => {
                    let pool = sqlx::SqlitePool::connect(&target_url).await.expect("open");
                    migrator
                        .run_to(version, &pool)
                        .await
                        .expect("old migrations");
                    pool.close().await;
                    sqlite_copy(&db, &reference_db).await;
                }
                Backend::Postgres => {
                    let pool = sqlx::PgPool::connect(&target_url).await.expect("open");
                    migrator
                        .run_to(version, &pool)
                        .await
                        .expect("old migrations");
                    pool.close().await;
                    postgres_copy(&target_url, reference_url.as_deref().expect("ref")).await;
                }
            }
        });
        let env: Vec<(&str, &str)> = match backend {
            Backend::Sqlite => vec![LATER],
            Backend::Postgres => vec![LATER, ("DATABASE_URL", target_url.as_str())],
        };
        let upgraded = Server::start_in(dir, &config, &env);
        let log = upgraded.log();
        assert!(
            log.contains("restored_registrations=1"),
            "from version {version}: the registration is lost:\n{log}"
        );
        let out = hotline(
            upgraded.dir.path(),
            &[
                "ledger",
                "verify",
                "--config",
                &path_str(&upgraded.dir.path().join("hotline.toml")),
                "--data-dir",
                &path_str(&upgraded.data_dir()),
            ],
            &env,
        );
        let has_orders = version >= 2;
        if has_orders {
            assert_eq!(
                out.status,
                Some(0),
                "from version {version}: {}{}",
                out.stdout,
                out.stderr
            );
            assert!(
                out.stdout.contains("ledger ok"),
                "from version {version}: {}",
                out.stdout
            );
            assert_eq!(
                read_all(&upgraded, &ids),
                reference.orders,
                "from version {version}: orders differ"
            );
            assert_eq!(
                handler_ids(&upgraded),
                reference.handler_ids,
                "from version {version}: the handler's scope differs"
            );
        }
        if version >= 3 {
            assert_eq!(
                calls(&upgraded),
                reference.calls,
                "from version {version}: call records differ"
            );
        }
    }
    drop(reference_dir);
}

#[test]
fn sqlite_each_version_upgrades_to_the_current_one_with_orders_ledger_and_registrations() {
    upgrades_keep_the_data(Backend::Sqlite);
}

#[test]
fn postgres_each_version_upgrades_to_the_current_one_with_orders_ledger_and_registrations() {
    upgrades_keep_the_data(Backend::Postgres);
}
