//! `hotline backup` while the server runs and takes work orders, then `hotline restore`
//! into a new location and a server started on it reads the same orders through the
//! API — on SQLite (online backup API) and PostgreSQL (pg_dump / pg_restore).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::ops::{hotline, pg_database};
use common::{
    ORDER_DESK_CONFIG, Server, TEST_CONFIG, body_json, create_order, get, login_order_desk,
    path_str,
};

fn config() -> String {
    format!("{TEST_CONFIG}{ORDER_DESK_CONFIG}")
}

/// Each order as the API shows it (id → JSON), for orders `ids`.
fn read_orders(server: &Server, ids: &[String]) -> Vec<serde_json::Value> {
    let session = login_order_desk(server);
    ids.iter()
        .map(|id| {
            let (status, resp) = get(server, &session, &format!("/api/orders/{id}"));
            assert_eq!(status, 200, "order {id}: {resp}");
            body_json(&resp)
        })
        .collect()
}

fn backup_restore_round_trip(database_url: Option<String>, restored_url: Option<String>) {
    let env: Vec<(&str, &str)> = database_url
        .as_deref()
        .map(|u| vec![("DATABASE_URL", u)])
        .unwrap_or_default();
    let server = Server::start_with(&config(), &env);
    let session = login_order_desk(&server);
    let mut ids = Vec::new();
    for i in 0..6 {
        let (status, resp) = create_order(&server, &session, &format!("backup-{i}"));
        assert_eq!(status, 201, "{resp}");
        ids.push(body_json(&resp)["id"].as_str().expect("id").to_owned());
    }
    let before = read_orders(&server, &ids);

    // Orders keep arriving while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let addr = server.http;
        let session = session.clone();
        std::thread::spawn(move || {
            let mut created = 0;
            while !stop.load(Ordering::SeqCst) {
                let body = serde_json::json!({
                    "contact_name": "李四", "contact_phone": "13912345678",
                    "category": "consultation", "urgency": "normal",
                    "business_area": "legal_aid", "description": format!("并发 {created}"),
                    "channel": "phone", "city": "jinan",
                })
                .to_string();
                let (status, resp) = common::http(addr, "POST", "/api/orders", &session, &body);
                assert_eq!(status, 201, "{resp}");
                created += 1;
            }
            created
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("hotline.backup");
    let config_path = path_str(&server.dir.path().join("hotline.toml"));
    let data_dir = path_str(&server.data_dir());
    let out = hotline(
        work.path(),
        &[
            "backup",
            &path_str(&dest),
            "--config",
            &config_path,
            "--data-dir",
            &data_dir,
        ],
        &env,
    );
    stop.store(true, Ordering::SeqCst);
    let created_meanwhile = writer.join().expect("writer");
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("backup written"), "{}", out.stdout);
    assert!(
        created_meanwhile > 0,
        "no order was written during the backup"
    );
    assert!(dest.is_file());
    assert!(!work.path().join("hotline.backup.partial").exists());
    // A second backup never overwrites the first.
    let out = hotline(
        work.path(),
        &[
            "backup",
            &path_str(&dest),
            "--config",
            &config_path,
            "--data-dir",
            &data_dir,
        ],
        &env,
    );
    assert_ne!(out.status, Some(0), "{}", out.stdout);
    assert!(out.stderr.contains("exists already"), "{}", out.stderr);

    // Restore into a new location and serve from it.
    let restored_dir = tempfile::tempdir().expect("tempdir");
    let restored_config = restored_dir.path().join("hotline.toml");
    std::fs::copy(server.dir.path().join("hotline.toml"), &restored_config).expect("copy");
    let restored_env: Vec<(&str, &str)> = restored_url
        .as_deref()
        .map(|u| vec![("DATABASE_URL", u)])
        .unwrap_or_default();
    let restore_args = [
        "restore",
        &path_str(&dest),
        "--config",
        &path_str(&restored_config),
        "--data-dir",
        &path_str(&restored_dir.path().join("data")),
    ];
    let out = hotline(restored_dir.path(), &restore_args, &restored_env);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ledger ok"), "{}", out.stdout);
    // Nothing of the restoring process is left beside the database (a -wal or -shm
    // file owned by root would lock the service user out).
    let mut left: Vec<String> = std::fs::read_dir(restored_dir.path().join("data"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    left.sort();
    let expected: Vec<String> = if restored_url.is_some() {
        vec![]
    } else {
        vec!["hotline.db".to_owned()]
    };
    assert_eq!(left, expected);
    // A second restore into the same, now filled, database is refused.
    let out = hotline(restored_dir.path(), &restore_args, &restored_env);
    assert_ne!(out.status, Some(0), "{}", out.stdout);

    let config_text = std::fs::read_to_string(&restored_config).expect("config");
    let restored = Server::start_in(restored_dir, &config_text, &restored_env);
    assert_eq!(read_orders(&restored, &ids), before);
    // The backup holds at least the orders acknowledged before it started, and at
    // most those acknowledged before it ended.
    let (status, resp) = get(
        &restored,
        &login_order_desk(&restored),
        "/api/orders?per_page=100",
    );
    assert_eq!(status, 200, "{resp}");
    let total = body_json(&resp)["total"].as_u64().expect("total");
    assert!(
        (6..=6 + created_meanwhile).contains(&total),
        "{total} orders restored, {created_meanwhile} written during the backup"
    );
    // The original server went on taking orders.
    let (status, resp) = create_order(&server, &session, "after-backup");
    assert_eq!(status, 201, "{resp}");
}

#[test]
fn sqlite_backup_while_serving_restores_into_a_new_location_with_the_same_orders() {
    backup_restore_round_trip(None, None);
}

#[test]
fn postgres_backup_while_serving_restores_into_a_new_database_with_the_same_orders() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let source = rt.block_on(pg_database("hotline_backup_src"));
    let target = rt.block_on(pg_database("hotline_backup_dst"));
    backup_restore_round_trip(Some(source), Some(target));
}
