//! Operator commands run as an operator would: the `hotline` binary with a config
//! file, and fresh PostgreSQL databases for backups, restores and upgrades.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{Output, run_bounded};

/// `hotline ARGS…` in `cwd` with `env` (no inherited DATABASE_URL / HOTLINE_CONFIG),
/// at most 120 s.
pub fn hotline(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotline"));
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("HOTLINE_CONFIG")
        .env_remove("HOTLINE_TOKEN")
        .env_remove("HOTLINE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(&mut cmd, Duration::from_secs(120))
}

/// The value after `prefix` on a line of `text` (e.g. `"api token: "`).
pub fn line_value(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .map(|v| v.trim().to_owned())
}

/// The PostgreSQL server the tests use (127.0.0.1:5432, trust auth, or
/// `HOTLINE_TEST_PG_ADMIN`): its admin URL and the URL base for new databases.
pub fn pg_admin() -> (String, String) {
    let admin = std::env::var("HOTLINE_TEST_PG_ADMIN")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .expect("HOTLINE_TEST_PG_ADMIN ends in /<database>");
    (admin, base)
}

/// A new, empty PostgreSQL database named after `prefix`; its URL. There is no switch
/// to skip: a test that cannot reach PostgreSQL fails (CI runs with PostgreSQL).
pub async fn pg_database(prefix: &str) -> String {
    let (admin, base) = pg_admin();
    let name = format!("{prefix}_{}_{}", std::process::id(), rand::random::<u32>());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (or HOTLINE_TEST_PG_ADMIN)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    format!("{base}/{name}")
}

/// Sign in at the console as `user`: (cookie, CSRF token).
pub fn login(server: &super::Server, user: &str, password: &str) -> (String, String) {
    let none = (String::new(), String::new());
    let body = serde_json::json!({"user": user, "password": password}).to_string();
    let (status, resp) = super::http(server.http, "POST", "/api/login", &none, &body);
    assert_eq!(status, 200, "login {user}: {resp}");
    let cookie = resp
        .lines()
        .find_map(|l| {
            l.strip_prefix("Set-Cookie: ")
                .or_else(|| l.strip_prefix("set-cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_string();
    let csrf = super::body_json(&resp)["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();
    (cookie, csrf)
}
