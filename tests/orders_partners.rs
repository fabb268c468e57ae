//! Issue 17, other hotlines (12345 and others, H-6) on SQLite and PostgreSQL (tests
//! named `postgres_*` need it on 127.0.0.1:5432): a partner hands orders over with
//! HMAC-signed requests inside a replay window and an idempotency key — concurrent
//! retries make one order (the database's unique key) — and sees only its own; its
//! status callbacks (dispatched, replied, closed) reach a real HTTP receiver on
//! 127.0.0.1 that first fails, signed, in order, after retries with backoff.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use common::Receiver;
use common::orders::{Db, OrdersHarness, Reply};
use hotline::http_client::HttpUrl;
use hotline::orders::partners::{DeliveryTiming, Partner, delivery_loop, sign};
use hotline::shutdown::Shutdown;
use hotline::store::orders::OrderFilter;
use hotline::ticket::{Channel, State};

const SECRET_A: &str = "12345-shared-secret-a";
const SECRET_B: &str = "other-hotline-secret-b";
const PATH: &str = "/api/partner/orders";

fn order_body(external: &str, phone: &str) -> Value {
    json!({
        "external_id": external,
        "contact_name": "赵六",
        "contact_phone": phone,
        "city": "jinan",
        "category": "consultation",
        "business_area": "legal_aid",
        "description": "12345转来：农民工讨薪，咨询法律援助申请条件。",
        "received_at": "2026-12-07T09:30:00+08:00",
    })
}

/// A request signed by `partner` with `secret` at `ts` (unix seconds).
fn signed(
    method: &str,
    path: &str,
    partner: &str,
    secret: &str,
    ts: i64,
    key: Option<&str>,
    body: &str,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("x-partner-id", partner)
        .header("x-timestamp", ts.to_string())
        .header(
            "x-signature",
            sign(secret.as_bytes(), ts, method, path, body.as_bytes()),
        );
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    builder.body(Body::from(body.to_owned())).expect("request")
}

fn now_secs(h: &OrdersHarness) -> i64 {
    h.state.orders.clock.now().timestamp()
}

async fn create(h: &OrdersHarness, key: &str, body: &Value) -> Reply {
    h.send(signed(
        "POST",
        PATH,
        "12345",
        SECRET_A,
        now_secs(h),
        Some(key),
        &body.to_string(),
    ))
    .await
}

fn partners(webhook: Option<HttpUrl>) -> Vec<Partner> {
    vec![
        Partner::new("12345", SECRET_A, webhook),
        Partner::new("other", SECRET_B, None),
    ]
}

async fn orders_with_phone(h: &OrdersHarness, phone: &str) -> i64 {
    let filter = OrderFilter {
        phone: Some(phone.to_owned()),
        limit: 100,
        ..OrderFilter::default()
    };
    h.state.store.list_orders(&filter).await.expect("list").1
}

async fn partner_orders_are_signed_idempotent_and_private(db: Db) {
    let h = OrdersHarness::start_with_partners(db, partners(None)).await;
    let body = order_body("12345-0001", "13611112222");

    // Refused: unsigned, a wrong signature, a timestamp outside the window, an
    // unknown partner, no Idempotency-Key.
    let unsigned = h
        .send(
            Request::post(PATH)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    let wrong_key = h
        .send(signed(
            "POST",
            PATH,
            "12345",
            SECRET_B,
            now_secs(&h),
            Some("k0"),
            &body.to_string(),
        ))
        .await;
    assert_eq!(wrong_key.status, StatusCode::UNAUTHORIZED);
    let stale = h
        .send(signed(
            "POST",
            PATH,
            "12345",
            SECRET_A,
            now_secs(&h) - 301,
            Some("k0"),
            &body.to_string(),
        ))
        .await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED, "{}", stale.text);
    let stranger = h
        .send(signed(
            "POST",
            PATH,
            "nobody",
            SECRET_A,
            now_secs(&h),
            Some("k0"),
            &body.to_string(),
        ))
        .await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);
    let no_key = h
        .send(signed(
            "POST",
            PATH,
            "12345",
            SECRET_A,
            now_secs(&h),
            None,
            &body.to_string(),
        ))
        .await;
    assert_eq!(no_key.status, StatusCode::BAD_REQUEST, "{}", no_key.text);
    assert_eq!(orders_with_phone(&h, "13611112222").await, 0);

    // Eight concurrent retries of one hand-over: one order, every answer names it.
    let mut tasks = Vec::new();
    let ts = now_secs(&h);
    for _ in 0..8 {
        let app = h.app.clone();
        let request = signed(
            "POST",
            PATH,
            "12345",
            SECRET_A,
            ts,
            Some("k1"),
            &body.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let response = app.oneshot(request).await.expect("response");
            let status = response.status();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .expect("body")
                .to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or_default(),
            )
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{status} {body}"
        );
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one order for every retry: {ids:?}");
    assert_eq!(orders_with_phone(&h, "13611112222").await, 1);
    let id = ids[0].clone();

    // Later retries too; the same key with another body is refused.
    let again = create(&h, "k1", &body).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["id"], id.as_str());
    let other_body = create(&h, "k1", &order_body("12345-0002", "13611112222")).await;
    assert_eq!(other_body.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other_body.body["code"], "idempotency_key_reused");

    // What the database holds: a 12345 order received when 12345 received it, routed.
    let order = h
        .state
        .store
        .load_order(&id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(order.fields.channel, Channel::Hotline12345);
    assert_eq!(
        order.fields.received_at.to_rfc3339(),
        "2026-12-07T09:30:00+08:00"
    );
    assert_eq!(order.state, State::Dispatched);
    assert!(order.fields.remarks.contains("12345-0001"));

    // Its partner reads it; another partner does not see it exists.
    let path = format!("{PATH}/{id}");
    let mine = h
        .send(signed(
            "GET",
            &path,
            "12345",
            SECRET_A,
            now_secs(&h),
            None,
            "",
        ))
        .await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    assert_eq!(mine.body["status"], "dispatched");
    let theirs = h
        .send(signed(
            "GET",
            &path,
            "other",
            SECRET_B,
            now_secs(&h),
            None,
            "",
        ))
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sqlite_partner_orders_are_signed_idempotent_and_private() {
    partner_orders_are_signed_idempotent_and_private(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_partner_orders_are_signed_idempotent_and_private() {
    partner_orders_are_signed_idempotent_and_private(Db::Postgres).await;
}

async fn partner_callbacks_are_signed_retried_and_in_order(db: Db) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // The partner's receiver is down twice before it answers.
    let receiver = Receiver::failing_first(listener, 2);
    let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/hook")).expect("url");
    let h = OrdersHarness::start_with_partners(db, partners(Some(url))).await;

    let created = create(&h, "k-cb", &order_body("12345-0100", "13622223333")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let handler = h.login("handler").await;
    h.command(&handler, &id, "sign", json!({})).await;
    h.command(&handler, &id, "start", json!({})).await;
    h.command(
        &handler,
        &id,
        "reply",
        json!({"text": "可以申请法律援助。"}),
    )
    .await;

    let partner = h
        .state
        .orders
        .partners
        .get("12345")
        .expect("partner")
        .clone();
    let shutdown = Shutdown::default();
    let timing = DeliveryTiming {
        poll: Duration::from_millis(50),
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        timeout: Duration::from_secs(2),
    };
    let task = tokio::spawn(delivery_loop(
        h.state.store.clone(),
        partner,
        h.state.orders.clock,
        timing,
        shutdown.clone(),
    ));
    let mut bodies = Vec::new();
    for _ in 0..100 {
        bodies = receiver.bodies();
        if bodies.last().is_some_and(|b| b["status"] == "closed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    task.await.expect("delivery loop");
    let heads = receiver.heads();
    let refused = receiver.refused();
    receiver.stop();

    assert_eq!(
        refused, 2,
        "the first two deliveries failed and were retried"
    );
    let statuses: Vec<&str> = bodies.iter().filter_map(|b| b["status"].as_str()).collect();
    assert_eq!(statuses.first(), Some(&"dispatched"), "{bodies:?}");
    assert_eq!(statuses.last(), Some(&"closed"), "{bodies:?}");
    let mut ids: Vec<&str> = bodies.iter().filter_map(|b| b["id"].as_str()).collect();
    let delivered = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), delivered, "each callback once: {bodies:?}");
    assert!(bodies.iter().all(|b| b["order_id"] == id.as_str()));
    assert_eq!(
        bodies.last().expect("closed")["reply"],
        "可以申请法律援助。"
    );
    // Each is signed as the partner checks it: timestamp + method + path + body.
    for (head, body) in heads.iter().zip(&bodies) {
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        let ts: i64 = header("x-timestamp").parse().expect("timestamp");
        assert_eq!(
            header("x-signature"),
            sign(
                SECRET_A.as_bytes(),
                ts,
                "POST",
                "/hook",
                body.to_string().as_bytes()
            ),
            "{head}"
        );
    }
    // The cursor moved past them: a restarted loop sends nothing again.
    assert!(
        h.state
            .store
            .partner_events_after("partner:12345", 10)
            .await
            .expect("events")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_partner_callbacks_are_signed_retried_and_in_order() {
    partner_callbacks_are_signed_retried_and_in_order(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_partner_callbacks_are_signed_retried_and_in_order() {
    partner_callbacks_are_signed_retried_and_in_order(Db::Postgres).await;
}
