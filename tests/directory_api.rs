//! The directory (W-6, W-8, DIR-LOOKUP) through the router with a real store, on SQLite
//! and on PostgreSQL: province administrators maintain entries (create, update, delete,
//! CSV import with row-level problems, every change in the log); anyone searches in
//! Chinese, opens an entry and books a slot with no login; the institution's users
//! confirm or mark a no-show; the citizen cancels with code + phone. Every answer is
//! checked against the OpenAPI document.

mod common;

use axum::http::StatusCode;
use serde_json::{Value, json};

use common::orders::{Db, OrdersHarness};
use common::schema::assert_answer;

fn doc() -> Value {
    hotline::api::openapi::document()
}

fn legal_aid_centre() -> Value {
    json!({
        "kind": "legal_aid_centre",
        "name": "济南市历下区法律援助中心（示例）",
        "city": "济南市",
        "county": "历下区",
        "address": "济南市历下区示例路8号",
        "lat": 36.651, "lon": 117.120,
        "phone": "0531-0000008",
        "service_hours": "09:00-12:00,13:30-17:30",
        "specialties": ["农民工讨薪", "法律援助申请"],
        "licence_status": "active",
        "unit": "jinan-legal-aid",
        "integrity": [{"kind": "commendation", "date": "2025-03-01", "text": "群众满意窗口", "authority": "济南市司法局"}]
    })
}

async fn directory_end_to_end(db: Db) {
    let h = OrdersHarness::start(db).await;
    let doc = doc();
    let admin = h.login("admin").await;
    let dispatcher = h.login("dispatcher").await;

    // Only province administrators maintain the directory.
    let refused = h
        .post(&dispatcher, "/api/directory", legal_aid_centre())
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let bad = h
        .post(&admin, "/api/directory", json!({"kind": "notary_office", "name": "x", "city": "上海", "licence_status": "active"}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert_eq!(bad.body["field"], "city");

    let created = h.post(&admin, "/api/directory", legal_aid_centre()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_answer(&doc, "post", "/api/directory", 201, &created.body);
    let centre = created.body["id"].as_i64().expect("id");
    assert_eq!(created.body["bookable"], true);

    // CSV import: good rows kept, bad rows reported with their row numbers.
    let csv = "类别,名称,城市,区县,纬度,经度,服务时间,专长,诚信记录\n\
        公证处,济南明信公证处（示例）,济南,历下区,36.652,117.121,09:00-12:00,遗嘱公证、继承公证,表彰|2025-03-01|群众满意窗口|济南市司法局\n\
        银行,某某银行,济南,,,,,,\n\
        公证处,青岛崂山公证处（示例）,青岛,崂山区,36.10,120.47,09:00-12:00,出国公证,处罚|2024-05-01|警告|青岛市司法局\n\
        公证处,无效时间公证处（示例）,济南,历下区,,,全天,,\n";
    let imported = h
        .write(
            &admin,
            "POST",
            "/api/directory/import",
            "text/csv",
            csv.to_owned(),
        )
        .await;
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.text);
    assert_answer(&doc, "post", "/api/directory/import", 200, &imported.body);
    let rows: Vec<u64> = imported.body["imported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, vec![2, 4]);
    let problems: Vec<(u64, String)> = imported.body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["row"].as_u64().unwrap(),
                p["column"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        vec![(3, "kind".to_owned()), (5, "service_hours".to_owned())]
    );
    let notary = imported.body["imported"][0]["id"].as_i64().unwrap();

    // Public search, no login: any Chinese substring; filters; near me.
    let found = h
        .public(
            "GET",
            "/api/public/directory?q=%E6%98%8E%E4%BF%A1%E5%85%AC%E8%AF%81",
            None,
        )
        .await; // 明信公证
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    assert_answer(&doc, "get", "/api/public/directory", 200, &found.body);
    assert_eq!(found.body["items"][0]["name"], "济南明信公证处（示例）");
    assert_eq!(found.body["items"].as_array().unwrap().len(), 1);
    let two = h
        .public(
            "GET",
            "/api/public/directory?q=%E5%85%AC%E8%AF%81&city=jinan",
            None,
        )
        .await; // 公证
    assert_eq!(
        two.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        two.text
    );
    let near = h
        .public(
            "GET",
            "/api/public/directory?lat=36.6525&lon=117.1215&radius_km=5",
            None,
        )
        .await;
    let names: Vec<&str> = near.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["济南明信公证处（示例）", "济南市历下区法律援助中心（示例）"]
    );
    assert!(near.body["items"][0]["distance_km"].as_f64().unwrap() < 0.2);
    let kinds = h
        .public(
            "GET",
            "/api/public/directory?kind=notary_office&city=qingdao",
            None,
        )
        .await;
    assert_eq!(
        kinds.body["items"][0]["integrity"][0]["kind"], "penalty",
        "{}",
        kinds.text
    );
    let refused = h
        .public("GET", "/api/public/directory?kind=bank", None)
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let shown = h
        .public("GET", &format!("/api/public/directory/{notary}"), None)
        .await;
    assert_answer(&doc, "get", "/api/public/directory/{id}", 200, &shown.body);
    assert_eq!(
        shown.body["entry"]["specialties"],
        json!(["遗嘱公证", "继承公证"])
    );

    // Update pinned to a version; a stale one is 409. Every change is logged.
    let mut changed = legal_aid_centre();
    changed["phone"] = json!("0531-0000009");
    let updated = h
        .write(
            &admin,
            "PUT",
            &format!("/api/directory/{centre}?version=1"),
            "application/json",
            changed.to_string(),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.text);
    assert_eq!(updated.body["version"], 2);
    let stale = h
        .write(
            &admin,
            "PUT",
            &format!("/api/directory/{centre}?version=1"),
            "application/json",
            changed.to_string(),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);

    // Book a slot with no login; the slot is then taken; the code + phone find it.
    let slots = h
        .public(
            "GET",
            &format!("/api/public/directory/{centre}/slots?days=10"),
            None,
        )
        .await;
    assert_eq!(slots.status, StatusCode::OK, "{}", slots.text);
    assert_answer(
        &doc,
        "get",
        "/api/public/directory/{id}/slots",
        200,
        &slots.body,
    );
    let first = slots.body["slots"][0]["start"]
        .as_str()
        .expect("a slot")
        .to_owned();
    let booking =
        json!({"slot_start": first, "name": "张三", "phone": "13800138000", "matter": "讨薪"});
    let booked = h
        .public(
            "POST",
            &format!("/api/public/directory/{centre}/appointments"),
            Some(booking.clone()),
        )
        .await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.text);
    assert_answer(
        &doc,
        "post",
        "/api/public/directory/{id}/appointments",
        201,
        &booked.body,
    );
    let code = booked.body["code"].as_str().unwrap().to_owned();
    let again = h
        .public(
            "POST",
            &format!("/api/public/directory/{centre}/appointments"),
            Some(json!({"slot_start": first, "name": "李四", "phone": "13900139000"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    let not_bookable = h
        .public(
            "POST",
            &format!("/api/public/directory/{notary}/appointments"),
            Some(booking.clone()),
        )
        .await;
    assert_eq!(
        not_bookable.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        not_bookable.text
    );
    let slots = h
        .public(
            "GET",
            &format!("/api/public/directory/{centre}/slots?days=10"),
            None,
        )
        .await;
    assert_eq!(slots.body["slots"][0]["free"], false);
    let wrong_phone = h
        .public(
            "POST",
            "/api/public/appointments/lookup",
            Some(json!({"code": code, "phone": "13800138001"})),
        )
        .await;
    assert_eq!(wrong_phone.status, StatusCode::NOT_FOUND);

    // The institution's user sees and confirms it; others do not see it.
    let handler = h.login("handler").await;
    let list = h.get(&handler, "/api/directory/appointments").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_answer(&doc, "get", "/api/directory/appointments", 200, &list.body);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    let appointment = list.body[0]["id"].as_i64().unwrap();
    assert_eq!(list.body[0]["phone"], "13800138000");
    let outsider = h.login("lixia").await;
    assert!(
        h.get(&outsider, "/api/directory/appointments")
            .await
            .body
            .as_array()
            .unwrap()
            .is_empty()
    );
    let nope = h
        .post(
            &outsider,
            &format!("/api/directory/appointments/{appointment}/confirm"),
            json!({}),
        )
        .await;
    assert_eq!(nope.status, StatusCode::NOT_FOUND);
    let confirmed = h
        .post(
            &handler,
            &format!("/api/directory/appointments/{appointment}/confirm"),
            json!({}),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    assert_eq!(confirmed.body["status"], "confirmed");
    // A no-show before the slot has begun is refused.
    let early = h
        .post(
            &handler,
            &format!("/api/directory/appointments/{appointment}/no-show"),
            json!({}),
        )
        .await;
    assert_eq!(early.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The citizen cancels with code + phone: recorded, and the slot is free again.
    let cancelled = h
        .public(
            "POST",
            "/api/public/appointments/cancel",
            Some(json!({"code": code, "phone": "13800138000"})),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    assert_answer(
        &doc,
        "post",
        "/api/public/appointments/cancel",
        200,
        &cancelled.body,
    );
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(
        h.state.store.appointment_events(appointment).await.unwrap(),
        vec![
            ("citizen".to_owned(), "booked".to_owned()),
            ("handler".to_owned(), "confirmed".to_owned()),
            ("citizen".to_owned(), "cancelled".to_owned()),
        ]
    );
    let rebook = h
        .public(
            "POST",
            &format!("/api/public/directory/{centre}/appointments"),
            Some(booking),
        )
        .await;
    assert_eq!(rebook.status, StatusCode::CREATED, "{}", rebook.text);
    assert_eq!(
        h.state
            .store
            .due_reminders(i64::MAX, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Delete is refused while appointments are to come; the notary office goes.
    let refused = h
        .write(
            &admin,
            "DELETE",
            &format!("/api/directory/{centre}"),
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    let deleted = h
        .write(
            &admin,
            "DELETE",
            &format!("/api/directory/{notary}"),
            "application/json",
            String::new(),
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(
        h.public("GET", &format!("/api/public/directory/{notary}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let log = h.get(&admin, "/api/directory/changes").await;
    assert_answer(&doc, "get", "/api/directory/changes", 200, &log.body);
    let actions: Vec<(&str, &str)> = log
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["action"].as_str().unwrap(), l["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("deleted", "admin"),
            ("updated", "admin"),
            ("imported", "admin"),
            ("imported", "admin"),
            ("created", "admin")
        ]
    );
    assert_eq!(log.body[0]["detail"]["name"], "济南明信公证处（示例）");
    assert_eq!(
        h.get(&dispatcher, "/api/directory/changes").await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn sqlite_directory_end_to_end() {
    directory_end_to_end(Db::Sqlite).await;
}

#[tokio::test]
async fn postgres_directory_end_to_end() {
    directory_end_to_end(Db::Postgres).await;
}

/// `hotline directory seed --count N` writes N searchable sample entries.
async fn seed_cli(url: String, dir: &std::path::Path) {
    let config = common::repo_root().join("config/hotline.toml");
    let out = common::ops::hotline(
        dir,
        &[
            "directory",
            "seed",
            "--count",
            "500",
            "--config",
            config.to_str().unwrap(),
        ],
        &[("DATABASE_URL", &url)],
    );
    assert_eq!(out.status, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("500 directory entries written"),
        "{}",
        out.stdout
    );
    let store = hotline::store::Store::connect(&url).await.expect("connect");
    assert_eq!(store.count_directory_entries().await.unwrap(), 500);
    let params = hotline::directory::SearchParams {
        q: Some("公证处".into()),
        city: Some("jinan".into()),
        ..Default::default()
    };
    let found = store
        .search_directory(&params.query().unwrap())
        .await
        .unwrap();
    assert!(
        found
            .iter()
            .any(|e| e.kind == "notary_office" && e.name.contains("示例"))
    );
    let refused = common::ops::hotline(
        dir,
        &[
            "directory",
            "seed",
            "--count",
            "2000000",
            "--config",
            config.to_str().unwrap(),
        ],
        &[("DATABASE_URL", &url)],
    );
    assert_eq!(refused.status, Some(2));
}

#[tokio::test]
async fn sqlite_directory_seed_cli() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    seed_cli(url, dir.path()).await;
}

#[tokio::test]
async fn postgres_directory_seed_cli() {
    let dir = tempfile::tempdir().unwrap();
    let url = common::ops::pg_database("hotline_directory_seed").await;
    seed_cli(url, dir.path()).await;
}
