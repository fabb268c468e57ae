//! Issue 15, two parts, through the work-order API on SQLite and PostgreSQL (tests
//! named `postgres_*` need it on 127.0.0.1:5432):
//! - helping units (协办) added by dispatch after the lead signed (W-11);
//! - a calendar year added with `hotline calendar add-year` to a temp copy of the
//!   calendar while the server runs: reloaded, provisional deadlines recomputed, and
//!   `/healthz` stops naming the file to edit. The copy lacks 2026 and the year added
//!   back is synthetic (1 January off only), never the State Council's dates.

mod common;

use std::process::Command;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Datelike;
use serde_json::{Value, json};

use common::orders::{Db, OrdersHarness, shipped_calendar_path};
use hotline::calendar::{Calendar, SharedCalendar};

fn order_body(category: &str, received_at: &str) -> Value {
    json!({
        "contact_name": "张三",
        "contact_phone": "13812345678",
        "category": category,
        "urgency": "normal",
        "business_area": "unknown",
        "units": [],
        "description": "相邻权纠纷，涉及两个区",
        "remarks": "",
        "channel": "phone",
        "city": "jinan",
        "call_id": null,
        "received_at": received_at,
    })
}

fn id_of(order: &Value) -> String {
    order["id"].as_str().expect("id").to_owned()
}

fn allowed(order: &Value) -> Vec<String> {
    order["allowed_commands"]
        .as_array()
        .expect("allowed_commands")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn event_kinds(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"]["type"].as_str().map(str::to_owned))
        .collect()
}

async fn helping_unit_added_after_sign_co_handles(db: Db) {
    let h = OrdersHarness::start(db).await;
    let agent = h.login("agent").await;
    let dispatcher = h.login("dispatcher").await;
    let lixia = h.login("lixia").await;
    let shizhong = h.login("shizhong").await;
    let order = h
        .create(
            &agent,
            order_body("suggestion", "2025-10-09T09:00:00+08:00"),
        )
        .await;
    let id = id_of(&order);
    h.command(
        &dispatcher,
        &id,
        "dispatch",
        json!({"units": ["jinan-lixia"]}),
    )
    .await;
    // Before the lead signed: refused, naming W-11.
    let early = h
        .post(
            &dispatcher,
            &format!("/api/orders/{id}/add_helping_units"),
            json!({"units": ["jinan-shizhong"], "reason": "需市中区协办"}),
        )
        .await;
    assert_eq!(
        early.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        early.text
    );
    assert!(early.text.contains("W-11"), "{}", early.text);
    // The other unit cannot see it yet.
    let hidden = h.get(&shizhong, &format!("/api/orders/{id}")).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "{}", hidden.text);

    h.command(&lixia, &id, "sign", json!({})).await;
    let seen = h.get(&dispatcher, &format!("/api/orders/{id}")).await.body;
    assert!(
        allowed(&seen).contains(&"add_helping_units".to_owned()),
        "{seen}"
    );
    // The lead unit may not add helpers itself; bad bodies are 4xx.
    let by_unit = h
        .post(
            &lixia,
            &format!("/api/orders/{id}/add_helping_units"),
            json!({"units": ["jinan-shizhong"], "reason": "x"}),
        )
        .await;
    assert_eq!(by_unit.status, StatusCode::FORBIDDEN, "{}", by_unit.text);
    for (body, field) in [
        (json!({"units": ["jinan-shizhong"], "reason": ""}), "reason"),
        (json!({"units": ["jinan-lixia"], "reason": "x"}), "units"),
        (json!({"units": ["no-such-unit"], "reason": "x"}), "units"),
        (json!({"units": [], "reason": "x"}), "units"),
    ] {
        let reply = h
            .post(
                &dispatcher,
                &format!("/api/orders/{id}/add_helping_units"),
                body.clone(),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.text);
    }
    let added = h
        .command(
            &dispatcher,
            &id,
            "add_helping_units",
            json!({"units": ["jinan-shizhong"], "reason": "涉及市中区辖区"}),
        )
        .await;
    assert_eq!(added["lead_unit"], "jinan-lixia", "{added}");
    assert_eq!(
        added["helping_units"],
        json!([{"unit": "jinan-shizhong", "status": "assigned"}]),
        "{added}"
    );
    // Visible to the helper, who signs (not as lead), adds a note, cannot reply.
    let theirs = h.get(&shizhong, &format!("/api/orders/{id}")).await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.text);
    assert!(
        allowed(&theirs.body).contains(&"sign".to_owned()),
        "{}",
        theirs.text
    );
    let signed = h.command(&shizhong, &id, "sign", json!({})).await;
    assert_eq!(signed["lead_unit"], "jinan-lixia");
    assert_eq!(signed["helping_units"][0]["status"], "signed", "{signed}");
    h.command(
        &shizhong,
        &id,
        "add_note",
        json!({"note": "市中区协办意见"}),
    )
    .await;
    let reply = h
        .post(&shizhong, &format!("/api/orders/{id}/start"), json!({}))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    // On the record, with who and why.
    let events = h
        .get(&dispatcher, &format!("/api/orders/{id}/events"))
        .await
        .body;
    let kinds = event_kinds(&events);
    assert!(
        kinds.ends_with(&[
            "helping_units_added".to_owned(),
            "signed".to_owned(),
            "note_added".to_owned()
        ]),
        "{kinds:?}"
    );
    let event = events
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"]["type"] == "helping_units_added")
        .expect("event");
    assert_eq!(event["kind"]["units"], json!(["jinan-shizhong"]), "{event}");
    assert_eq!(event["kind"]["reason"], "涉及市中区辖区", "{event}");
    assert_eq!(event["actor"], "dispatcher", "{event}");
    // The lead replies for all; then no more helpers.
    h.command(&lixia, &id, "start", json!({})).await;
    h.command(&lixia, &id, "reply", json!({"text": "答复"}))
        .await;
    let late = h
        .post(
            &dispatcher,
            &format!("/api/orders/{id}/add_helping_units"),
            json!({"units": ["jinan-legal-aid"], "reason": "x"}),
        )
        .await;
    assert_eq!(
        late.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        late.text
    );
}

#[tokio::test]
async fn sqlite_helping_unit_added_after_sign_co_handles() {
    helping_unit_added_after_sign_co_handles(Db::Sqlite).await;
}

#[tokio::test]
async fn postgres_helping_unit_added_after_sign_co_handles() {
    helping_unit_added_after_sign_co_handles(Db::Postgres).await;
}

async fn healthz_warnings(h: &OrdersHarness) -> Vec<String> {
    let reply = h
        .send(
            Request::get("/healthz")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    reply.body["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect()
}

async fn added_year_is_reloaded_and_provisional_deadlines_recomputed(db: Db) {
    let h = OrdersHarness::start_with(db, |dir| {
        // The shipped calendar without its last year, 2026.
        let copy = dir.join("cn-workdays.toml");
        let shipped = std::fs::read_to_string(shipped_calendar_path()).expect("calendar");
        let (kept, dropped) = shipped.split_once("\n[years.2026]").expect("2026 is last");
        assert!(!dropped.contains("[years."), "2026 is the last table");
        std::fs::write(&copy, kept).expect("write calendar copy");
        SharedCalendar::watching(&copy, Calendar::load(&copy).expect("calendar"))
    })
    .await;
    let file = h.dir.path().join("cn-workdays.toml");
    let agent = h.login("agent").await;
    let order = h
        .create(&agent, order_body("complaint", "2025-12-30T10:00:00+08:00"))
        .await;
    let id = id_of(&order);
    assert_eq!(order["deadlines"]["provisional"], true, "{order}");
    let before = order["deadlines"]["feedback_due"].clone();

    // /healthz names the file to edit while the year a deadline can reach is missing
    // (it checks this year and next, on the real date: 2026 is among them until 2027).
    let this_year = chrono::Utc::now().year();
    if (2025..=2026).contains(&this_year) {
        let warnings = healthz_warnings(&h).await;
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("calendar for 2026 not loaded")
                    && w.contains("cn-workdays.toml")
                    && w.contains(
                        h.dir
                            .path()
                            .file_name()
                            .and_then(|n| n.to_str())
                            .expect("dir")
                    )),
            "{warnings:?}"
        );
    }

    // Invalid dates (a make-up working day that is also a holiday) are refused by the command and leave the file unchanged.
    let original = std::fs::read_to_string(&file).expect("read");
    let hotline = env!("CARGO_BIN_EXE_hotline");
    let refused = Command::new(hotline)
        .args(["calendar", "add-year", "2026", "--calendar"])
        .arg(&file)
        .args([
            "--holidays",
            "2026-01-01,2026-01-10",
            "--workdays",
            "2026-01-10",
        ])
        .output()
        .expect("run hotline");
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("both as holiday and as workday"),
        "{refused:?}"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), original);
    // The API records with the wall clock: so does the reload.
    let now = chrono::Utc::now().with_timezone(&hotline::calendar::shanghai());
    let orders = &h.state.orders;
    assert_eq!(
        hotline::server::reminders::reload_calendar(&h.state.store, orders, now).await,
        0,
        "nothing changed"
    );

    // A synthetic 2026 (1 January off), added while the server runs.
    let added = Command::new(hotline)
        .args(["calendar", "add-year", "2026", "--calendar"])
        .arg(&file)
        .args(["--holidays", "2026-01-01"])
        .output()
        .expect("run hotline");
    assert!(added.status.success(), "{added:?}");
    let check = Command::new(hotline)
        .args(["calendar", "check", "--calendar"])
        .arg(&file)
        .output()
        .expect("run hotline");
    assert!(check.status.success(), "{check:?}");
    assert_eq!(
        hotline::server::reminders::reload_calendar(&h.state.store, orders, now).await,
        1,
        "one open order had provisional deadlines"
    );
    assert!(orders.calendar.current().loaded_years().contains(&2026));

    let admin = h.login("admin").await;
    let after = h.get(&admin, &format!("/api/orders/{id}")).await.body;
    assert_eq!(after["deadlines"]["provisional"], false, "{after}");
    assert_ne!(after["deadlines"]["feedback_due"], before, "{after}");
    let kinds = event_kinds(
        &h.get(&admin, &format!("/api/orders/{id}/events"))
            .await
            .body,
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("deadlines_recomputed"),
        "{kinds:?}"
    );
    let warnings = healthz_warnings(&h).await;
    assert!(
        !warnings.iter().any(|w| w.starts_with("calendar for 2026")),
        "{warnings:?}"
    );
    // A second pass has nothing to do.
    assert_eq!(
        hotline::server::reminders::reload_calendar(&h.state.store, orders, now).await,
        0
    );
}

#[tokio::test]
async fn sqlite_added_year_is_reloaded_and_provisional_deadlines_recomputed() {
    added_year_is_reloaded_and_provisional_deadlines_recomputed(Db::Sqlite).await;
}

#[tokio::test]
async fn postgres_added_year_is_reloaded_and_provisional_deadlines_recomputed() {
    added_year_is_reloaded_and_provisional_deadlines_recomputed(Db::Postgres).await;
}

/// The real server: `calendar add-year` on the file it was started with; within a
/// reminder interval it has reloaded it (logged) and `/healthz` no longer names the
/// file to edit. No restart, no signal.
#[test]
fn running_server_reloads_the_calendar_file_after_add_year() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("cn-workdays.toml");
    let shipped = std::fs::read_to_string(shipped_calendar_path()).expect("calendar");
    let (kept, _) = shipped.split_once("\n[years.2026]").expect("2026 is last");
    std::fs::write(&copy, kept).expect("write calendar copy");
    let config = format!(
        "{}\n[notify]\nreminder_interval_secs = 1\n",
        common::TEST_CONFIG.replace("\"CALENDAR\"", &format!("{:?}", copy.display().to_string()))
    );
    let server = common::Server::start_with(&config, &[]);
    let missing = |server: &common::Server| {
        common::health(server)["warnings"]
            .as_array()
            .is_some_and(|w| {
                w.iter().any(|w| {
                    w.as_str()
                        .is_some_and(|w| w.starts_with("calendar for 2026 not loaded"))
                })
            })
    };
    // Named while 2026 is this year or next (on the real date).
    let this_year = chrono::Utc::now().year();
    if (2025..=2026).contains(&this_year) {
        assert!(missing(&server), "{}", common::health(&server));
    }
    let added = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["calendar", "add-year", "2026", "--calendar"])
        .arg(&copy)
        .args(["--holidays", "2026-01-01"])
        .output()
        .expect("run hotline");
    assert!(added.status.success(), "{added:?}");
    assert!(
        common::wait_for_log(
            &server,
            "calendar file changed: reloaded",
            std::time::Duration::from_secs(15)
        ),
        "{}",
        server.log()
    );
    assert!(!missing(&server), "{}", common::health(&server));
}

/// `/api/queues`' `on_duty` of `agent`, as the supervisor's console reads it.
fn on_duty(server: &common::Server, agent: &str) -> Option<bool> {
    let (status, queues) = common::queue::api(server, "/api/queues");
    assert_eq!(status, 200, "{queues}");
    queues
        .as_array()?
        .iter()
        .flat_map(|q| q["agents"].as_array().cloned().unwrap_or_default())
        .find(|a| a["id"] == agent)
        .and_then(|a| a["on_duty"].as_bool())
}

/// Issue 15, calendar years, for the duty rosters: the server runs on Thursday
/// 2026-01-01 with a calendar that lacks 2026, so the working-days roster assumes the
/// day is worked and agent 1001 is on duty. `calendar add-year 2026` with 1 January
/// off: the server reloads the file and the ACD follows it, without a restart; the
/// supervisor's queue view shows 1001 off duty on the holiday.
#[test]
fn running_server_rosters_follow_the_calendar_after_add_year() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("cn-workdays.toml");
    let shipped = std::fs::read_to_string(shipped_calendar_path()).expect("calendar");
    let (kept, _) = shipped.split_once("\n[years.2026]").expect("2026 is last");
    std::fs::write(&copy, kept).expect("write calendar copy");
    let config = format!(
        "{}
[[queues.roster]]
agent = \"1001\"
from = \"2026-01-01\"
until = \"2026-12-31\"
days = \"working_days\"
start = \"08:00\"
end = \"20:00\"

[notify]
reminder_interval_secs = 1
",
        common::queue::queue_config("linear", 5, 3)
            .replace("\"CALENDAR\"", &format!("{:?}", copy.display().to_string()))
    );
    let server =
        common::Server::start_with(&config, &[("HOTLINE_FAKE_NOW", "2026-01-01T10:00+08:00")]);
    assert_eq!(on_duty(&server, "1001"), Some(true), "{}", server.log());
    let added = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["calendar", "add-year", "2026", "--calendar"])
        .arg(&copy)
        .args(["--holidays", "2026-01-01"])
        .output()
        .expect("run hotline");
    assert!(added.status.success(), "{added:?}");
    assert!(
        common::wait_for_log(
            &server,
            "the duty rosters follow the calendar reloaded",
            std::time::Duration::from_secs(15)
        ),
        "{}",
        server.log()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while on_duty(&server, "1001") != Some(false) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(on_duty(&server, "1001"), Some(false), "{}", server.log());
}
