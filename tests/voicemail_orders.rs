//! After-hours voice messages become work orders (TK-INTAKE, CALL-AFTERHOURS).
//!
//! In process (router + real store, SQLite and PostgreSQL on 127.0.0.1:5432, the
//! latter must be running): a stored message is converted by the
//! background pass, the order is listed by `GET /api/orders` with the message's city,
//! category, caller and time, and the message is linked; a crash between creating the
//! order and linking the message, and two passes racing, still leave exactly one
//! order. With the real binary: a database holding a message whose order was created
//! but not linked (the state a crash leaves) is repaired by the start-up pass, and a
//! kill -9 and restart create nothing more.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use hotline::api::auth::Auth;
use hotline::api::{AppState, router};
use hotline::calendar::Calendar;
use hotline::config::Config;
use hotline::ivr::cdr::CdrBuilder;
use hotline::orders::OrdersContext;
use hotline::server::voicemail::{self, DESCRIPTION};
use hotline::store::Store;
use hotline::store::calls::VoiceMessage;
use hotline::store::orders::{OrderFilter, OrderSort};
use hotline::ticket::UnitId;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_config() -> Config {
    Config::load(&root().join("config/hotline.toml")).expect("shipped config")
}

fn context() -> Arc<OrdersContext> {
    let config = shipped_config();
    let calendar =
        Calendar::load(root().join("config/calendar/cn-workdays.toml")).expect("calendar");
    Arc::new(OrdersContext::from_config(&config, calendar))
}

fn center() -> UnitId {
    UnitId::new("jinan")
}

fn at(text: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(text).expect("time")
}

/// A message left in Jinan on the evening of 2025-09-30, before National Day: the
/// callback is due on the first working day after the holiday, 2025-10-09 24:00.
fn message(call_id: &str) -> VoiceMessage {
    VoiceMessage {
        call_id: call_id.to_owned(),
        caller: "13812345678".into(),
        city: Some("jinan".into()),
        category: "complaint".into(),
        urgency: "normal".into(),
        recording: format!("recordings/{call_id}.wav"),
        duration_ms: 5000,
        received_at: "2025-09-30T20:00:00+08:00".into(),
        callback_due: "2025-10-10T00:00:00+08:00".into(),
        provisional: false,
        work_order: None,
    }
}

async fn insert_message(store: &Store, m: &VoiceMessage) {
    let arrival = at(&m.received_at);
    let cdr = CdrBuilder::new(&m.call_id, &m.caller, "053112348", arrival).finish(arrival);
    store.insert_call(&cdr, Some(m)).await.expect("insert call");
}

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect(&url).await.expect("sqlite");
    store.migrate().await.expect("migrate");
    (store, dir)
}

async fn postgres_store() -> Store {
    let name = format!(
        "hotline_vm_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (CI runs with PostgreSQL)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create database");
    let store = Store::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
}

async fn orders_total(store: &Store) -> i64 {
    let filter = OrderFilter {
        sort: OrderSort::Created,
        limit: 100,
        ..OrderFilter::default()
    };
    store.list_orders(&filter).await.expect("list").1
}

/// `GET /api/orders` as the Jinan dispatcher (who may see callers' numbers).
async fn api_orders(store: &Store, orders: Arc<OrdersContext>, query: &str) -> Value {
    let state = AppState {
        store: store.clone(),
        metrics: Arc::default(),
        warnings: Arc::new(vec![]),
        orders,
        auth: Arc::new(Auth::for_config(&shipped_config())),
        cities: Arc::default(),
    };
    let app = router(state);
    let login = app
        .clone()
        .oneshot(
            Request::post("/api/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"user": "dispatcher", "password": "demo-dispatcher"}).to_string(),
                ))
                .expect("request"),
        )
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login.headers()[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let response = app
        .oneshot(
            Request::get(format!("/api/orders{query}"))
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("list");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("json")
}

async fn message_becomes_a_listed_order(store: &Store) {
    let orders = context();
    insert_message(store, &message("vm-1")).await;
    let now = at("2025-09-30T20:00:07+08:00");
    assert_eq!(
        voicemail::convert_once(store, &orders, &center(), now)
            .await
            .expect("pass"),
        1
    );
    let stored = store
        .voice_message("vm-1")
        .await
        .expect("read")
        .expect("message");
    let order_id = stored
        .work_order
        .expect("voice message linked to its order");

    let list = api_orders(store, orders.clone(), "?city=jinan&category=complaint").await;
    assert_eq!(list["total"], 1, "{list}");
    let order = &list["items"][0];
    assert_eq!(order["id"], order_id.as_str(), "{order}");
    let fields = &order["fields"];
    assert_eq!(fields["city"], "jinan");
    assert_eq!(fields["category"], "complaint");
    assert_eq!(fields["urgency"], "normal");
    assert_eq!(fields["channel"], "phone");
    assert_eq!(fields["contact_phone"], "13812345678");
    assert_eq!(fields["description"], DESCRIPTION);
    assert_eq!(fields["call_id"], "vm-1");
    assert_eq!(
        fields.get("recordings"),
        None,
        "no server path in the API: {fields}"
    );
    assert_eq!(
        order["voice_message"]["play_url"],
        format!("/api/orders/{order_id}/voice_message"),
        "{order}"
    );
    assert_eq!(
        at(fields["received_at"].as_str().expect("received_at")),
        at("2025-09-30T20:00:00+08:00")
    );
    let remarks = fields["remarks"].as_str().expect("remarks");
    assert!(!remarks.contains("recordings/vm-1.wav"), "{remarks}");
    assert!(remarks.contains("2025-10-09T24:00+08:00"), "{remarks}");
    // Submitted: the business area of a voice message is unknown, so it waits for a
    // dispatcher (W-9); its first deadline is the callback due, counted from the
    // message across the National Day holiday.
    assert_eq!(order["state"], "pending_dispatch");
    assert_eq!(
        order["deadlines"]["transfer_due_display"], "2025-10-09T24:00+08:00",
        "{order}"
    );

    // Nothing left to do: a second pass creates nothing.
    assert_eq!(
        voicemail::convert_once(store, &orders, &center(), now)
            .await
            .expect("pass"),
        0
    );
    assert_eq!(orders_total(store).await, 1);
}

async fn crash_between_create_and_link_leaves_one_order(store: &Store) {
    let orders = context();
    let m = message("vm-crash");
    insert_message(store, &m).await;
    let now = at("2025-09-30T20:00:07+08:00");
    // The process dies right after the order's transaction commits.
    let created = voicemail::create_order(store, &orders, &center(), &m, now)
        .await
        .expect("create");
    assert_eq!(
        store
            .voice_message("vm-crash")
            .await
            .expect("read")
            .expect("row")
            .work_order,
        None
    );
    // Restart: the start-up pass finds the message unlinked and the key taken.
    let later = at("2025-09-30T20:05:00+08:00");
    assert_eq!(
        voicemail::convert_once(store, &orders, &center(), later)
            .await
            .expect("pass"),
        1
    );
    assert_eq!(orders_total(store).await, 1);
    assert_eq!(
        store
            .voice_message("vm-crash")
            .await
            .expect("read")
            .expect("row")
            .work_order,
        Some(created.0)
    );
}

async fn racing_passes_create_one_order(store: &Store) {
    let orders = context();
    for i in 0..5 {
        insert_message(store, &message(&format!("vm-race-{i}"))).await;
    }
    let now = at("2025-09-30T20:00:07+08:00");
    let center = center();
    let (a, b) = tokio::join!(
        voicemail::convert_once(store, &orders, &center, now),
        voicemail::convert_once(store, &orders, &center, now)
    );
    a.expect("pass a");
    b.expect("pass b");
    assert_eq!(orders_total(store).await, 5);
    let unlinked = store.voice_messages_without_order(100).await.expect("read");
    assert!(unlinked.is_empty(), "{unlinked:?}");
}

#[tokio::test]
async fn voice_message_becomes_a_listed_order_sqlite() {
    let (store, _dir) = sqlite_store().await;
    message_becomes_a_listed_order(&store).await;
}

#[tokio::test]
async fn voice_message_becomes_a_listed_order_postgres() {
    let store = postgres_store().await;
    message_becomes_a_listed_order(&store).await;
}

#[tokio::test]
async fn crash_between_create_and_link_leaves_one_order_sqlite() {
    let (store, _dir) = sqlite_store().await;
    crash_between_create_and_link_leaves_one_order(&store).await;
}

#[tokio::test]
async fn crash_between_create_and_link_leaves_one_order_postgres() {
    let store = postgres_store().await;
    crash_between_create_and_link_leaves_one_order(&store).await;
}

#[tokio::test]
async fn racing_passes_create_one_order_per_message_sqlite() {
    let (store, _dir) = sqlite_store().await;
    racing_passes_create_one_order(&store).await;
}

#[tokio::test]
async fn racing_passes_create_one_order_per_message_postgres() {
    let store = postgres_store().await;
    racing_passes_create_one_order(&store).await;
}

/// H-8, H-9, H-13-2: the order of a voice message is received when its call arrived
/// (the caller spent a minute and a half in the IVR before the message was taken),
/// and that is what the order list shows.
async fn voice_message_order_is_received_at_the_calls_arrival(store: &Store) {
    let orders = context();
    let m = message("vm-arrival");
    let arrival = at("2025-09-30T19:58:30+08:00");
    let cdr =
        CdrBuilder::new(&m.call_id, &m.caller, "053112348", arrival).finish(at(&m.received_at));
    store
        .insert_call(&cdr, Some(&m))
        .await
        .expect("insert call");
    voicemail::convert_once(store, &orders, &center(), at("2025-09-30T20:00:07+08:00"))
        .await
        .expect("pass");
    let list = api_orders(store, orders.clone(), "?city=jinan").await;
    assert_eq!(list["total"], 1, "{list}");
    let received = &list["items"][0]["fields"]["received_at"];
    assert_eq!(
        at(received.as_str().expect("received_at")),
        arrival,
        "{list}"
    );
}

#[tokio::test]
async fn voice_message_order_is_received_at_the_calls_arrival_sqlite() {
    let (store, _dir) = sqlite_store().await;
    voice_message_order_is_received_at_the_calls_arrival(&store).await;
}

#[tokio::test]
async fn voice_message_order_is_received_at_the_calls_arrival_postgres() {
    let store = postgres_store().await;
    voice_message_order_is_received_at_the_calls_arrival(&store).await;
}

// ------------------------------------------------------------- real binary

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn server_start_up_links_the_order_a_crash_left_and_a_restart_adds_none() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let db: PathBuf = data.join("hotline.db");
    let url = format!("sqlite://{}", db.display());
    let orders = context();
    let now = at("2025-09-30T20:00:07+08:00");
    // The database a crash between the two steps leaves: order created, message not
    // linked; plus a message never looked at.
    let created = runtime.block_on(async {
        let store = Store::connect(&url).await.expect("sqlite");
        store.migrate().await.expect("migrate");
        let half = message("vm-half");
        insert_message(&store, &half).await;
        insert_message(&store, &message("vm-new")).await;
        voicemail::create_order(&store, &orders, &center(), &half, now)
            .await
            .expect("create")
    });
    // The shared test config has no city units; orders need one.
    let config = &format!(
        "{}\n[[units]]\nid = \"jinan\"\nname = \"济南市\"\nkind = \"city\"\nparent = \"province\"\n",
        common::TEST_CONFIG
    );
    let mut server = common::Server::start_in(dir, config, &[]);
    let linked = |url: &str| {
        runtime.block_on(async {
            let store = Store::connect(url).await.expect("sqlite");
            let half = store.voice_message("vm-half").await.expect("read");
            let new = store.voice_message("vm-new").await.expect("read");
            let total = orders_total(&store).await;
            (
                half.and_then(|m| m.work_order),
                new.and_then(|m| m.work_order),
                total,
            )
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (half, new, _) = linked(&url);
            half.is_some() && new.is_some()
        }),
        "start-up pass did not link both messages; log:\n{}",
        server.log()
    );
    let (half, _, total) = linked(&url);
    assert_eq!(half, Some(created.0.clone()));
    assert_eq!(total, 2, "one order per message");

    // kill -9 and restart on the same data: nothing is created twice.
    server.kill();
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tempdir"));
    drop(server);
    let server = common::Server::start_in(dir, config, &[]);
    std::thread::sleep(voicemail::INTERVAL + Duration::from_secs(1));
    let (half, new, total) = linked(&url);
    assert_eq!(half, Some(created.0));
    assert!(new.is_some());
    assert_eq!(total, 2, "log:\n{}", server.log());
}
