//! The public directory page (W-8) in headless Chromium on a phone-sized window
//! (390 × 844, touch): the real `hotline` binary serves the embedded page; a province
//! administrator adds a notary office through the console API (next to 200 generated
//! entries); `web/e2e/directory.mjs` searches it in Chinese with no login, opens it
//! (licence status and commendation shown), books the first free slot and reads the
//! booking code; this test then finds that booking in the database and through the
//! citizen's look-up by code + phone.
//!
//! Needs `node`, `web/node_modules` (`npm ci`), a built `web/dist` and
//! `/usr/bin/chromium`, like tests/web_e2e.rs; skipped (with a message) only when
//! `node` is missing.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, body_json, http, login, repo_root, run_bounded, shipped_config};

// No generated name has 泉鸣 (src/directory/seed.rs), so the search finds this one only.
const NOTARY: &str = "济南泉鸣公证处";

#[test]
fn a_citizen_finds_a_notary_office_and_books_a_slot_on_a_phone() {
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("node").is_file());
    if !on_path {
        eprintln!("SKIPPED directory_web: `node` is not installed");
        return;
    }
    let web = repo_root().join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules missing: run `npm ci` in web/"
    );
    let server = Server::start_with(&shipped_config(), &[]);
    let db = format!(
        "sqlite://{}",
        server.data_dir().join("hotline.db").display()
    );
    let seeded = common::ops::hotline(
        server.dir.path(),
        &[
            "directory",
            "seed",
            "--count",
            "200",
            "--config",
            repo_root().join("config/hotline.toml").to_str().unwrap(),
        ],
        &[("DATABASE_URL", &db)],
    );
    assert_eq!(seeded.status, Some(0), "{}", seeded.stderr);
    let admin = login(&server, "admin", "demo-admin");
    let entry = serde_json::json!({
        "kind": "notary_office",
        "name": format!("{NOTARY}（示例）"),
        "city": "jinan",
        "county": "历下区",
        "address": "济南市历下区示例路1号",
        "lat": 36.651, "lon": 117.120,
        "phone": "0531-0000001",
        "service_hours": "09:00-12:00,13:30-17:30",
        "specialties": ["遗嘱公证", "继承公证"],
        "licence_status": "active",
        "unit": "jinan-legal-aid",
        "integrity": [{"kind": "commendation", "date": "2025-03-01", "text": "群众满意窗口", "authority": "济南市司法局"}]
    });
    let (status, resp) = http(
        server.http,
        "POST",
        "/api/directory",
        &admin,
        &entry.to_string(),
    );
    assert_eq!(status, 201, "{resp}");
    let id = body_json(&resp)["id"].as_i64().expect("id");

    // HOTLINE_UPDATE_SCREENSHOTS=1 refreshes docs/screenshots/directory-*.png.
    let shots = if std::env::var_os("HOTLINE_UPDATE_SCREENSHOTS").is_some() {
        repo_root().join("docs/screenshots")
    } else {
        server.dir.path().join("screenshots")
    };
    let out = run_bounded(
        Command::new("node")
            .arg(web.join("e2e/directory.mjs"))
            .arg(format!("http://{}", server.http))
            .arg(NOTARY)
            .env("E2E_SCREENSHOTS", &shots)
            .current_dir(&web),
        Duration::from_secs(150),
    );
    println!("{}", out.stdout);
    assert_eq!(
        out.status,
        Some(0),
        "browser run failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let booked = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("e2e: booked "))
        .expect("the page showed a booking code");
    let mut parts = booked.split_whitespace();
    let (code, start) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );

    // What the database holds: the booking at that institution and slot, with the phone
    // and name typed, booked by the citizen; its reminder queued.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = hotline::store::Store::connect(&db).await.expect("open db");
        let a = store
            .appointment_by_code(&code)
            .await
            .unwrap()
            .expect("booked in the database");
        assert_eq!(a.institution_id, id);
        assert_eq!(a.phone, "13800138000");
        assert_eq!(a.citizen_name, "张示例");
        assert_eq!(a.status, "booked");
        let slot = chrono::DateTime::parse_from_rfc3339(&start).unwrap();
        assert_eq!(a.slot_start_ms, slot.timestamp_millis());
        assert_eq!(
            store.appointment_events(a.id).await.unwrap(),
            vec![("citizen".to_owned(), "booked".to_owned())]
        );
        assert_eq!(
            store.held_slots(id, 0, i64::MAX).await.unwrap(),
            vec![a.slot_start_ms]
        );
    });
    // The citizen's look-up by code + phone.
    let none = (String::new(), String::new());
    let (status, resp) = http(
        server.http,
        "POST",
        "/api/public/appointments/lookup",
        &none,
        &serde_json::json!({"code": code, "phone": "13800138000"}).to_string(),
    );
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        body_json(&resp)["institution_name"],
        format!("{NOTARY}（示例）")
    );
}
