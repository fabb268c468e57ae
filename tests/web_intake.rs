//! Issue 17, public intake (W-2, W-9, H-6; WEB-INTAKE) through the router on SQLite and
//! PostgreSQL (tests named `postgres_*` need it on 127.0.0.1:5432): a citizen's
//! consultation from the web page or the app becomes a routed work order received at
//! submission; the citizen reads the progress and the reply with the query code and
//! phone, and rates it into the callback rules; proof of work, rate limits and
//! duplicate detection; a submission accepted while the database is down lands once it
//! is back.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use common::orders::{Db, OrdersHarness, from_source};
use common::schema::assert_answer;
use hotline::orders::intake::{leading_zero_bits, work_digest};
use hotline::shutdown::Shutdown;
use hotline::store::Store;
use hotline::store::orders::OrderFilter;
use hotline::ticket::{Channel, Satisfaction, State};

const PHONE: &str = "139 1234 5678";
const DIGITS: &str = "13912345678";
const DEPOSIT: &str = "我租的房子到期退租，房东拒绝退还三千元押金，请问我该怎么办？";

fn submission(phone: &str, description: &str, (challenge, nonce): &(String, String)) -> Value {
    json!({
        "name": "王小明",
        "phone": phone,
        "city": "jinan",
        "business_area": "legal_aid",
        "category": "consultation",
        "description": description,
        "challenge": challenge,
        "nonce": nonce,
    })
}

fn code_of(reply: &common::orders::Reply) -> String {
    reply.body["query_code"]
        .as_str()
        .unwrap_or_else(|| panic!("query code: {}", reply.text))
        .to_owned()
}

async fn a_web_consultation_is_routed_answered_read_and_rated(db: Db) {
    let h = OrdersHarness::start(db).await;
    let source = "198.51.100.7";
    let pow = h.solved_challenge(source).await;
    let reply = h
        .public_post(
            source,
            "/api/public/orders",
            &submission(PHONE, DEPOSIT, &pow),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["duplicate"], false);
    let doc = hotline::api::openapi::document();
    assert_answer(&doc, "post", "/api/public/orders", 201, &reply.body);
    let code = code_of(&reply);

    // What the database holds: a web order received at submission, routed by the
    // city's rule for legal aid like a call's, registered by the public intake.
    let order = h
        .state
        .store
        .load_order(&code)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(order.fields.channel, Channel::Web);
    assert_eq!(
        order.fields.received_at.to_rfc3339(),
        chrono::DateTime::parse_from_rfc3339(reply.body["received_at"].as_str().expect("at"))
            .expect("rfc3339")
            .to_rfc3339()
    );
    assert_eq!(order.state, State::Dispatched);
    assert_eq!(order.assignments[0].unit.as_str(), "jinan-legal-aid");
    assert_eq!(order.fields.contact.phone, DIGITS);
    assert!(order.number.is_some(), "numbered like every order");
    let events = h.state.store.order_events(&code).await.expect("events");
    assert_eq!(events[0].actor, "public");

    // The citizen's view: progress, contact masked, no reply yet.
    let query = json!({"query_code": code, "phone": "13912345678"});
    let status = h
        .public_post(source, "/api/public/orders/status", &query)
        .await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert_answer(&doc, "post", "/api/public/orders/status", 200, &status.body);
    assert_eq!(status.body["progress"], "dispatched");
    assert_eq!(status.body["reply"], Value::Null);
    assert_eq!(status.body["can_rate"], false);
    assert!(!status.text.contains(DIGITS) && !status.text.contains("王小明"));
    assert_eq!(status.body["contact_name"], "王**");

    // A wrong phone answers exactly as an unknown code.
    let wrong_phone = h
        .public_post(
            source,
            "/api/public/orders/status",
            &json!({"query_code": code, "phone": "13900000000"}),
        )
        .await;
    let unknown = h
        .public_post(
            source,
            "/api/public/orders/status",
            &json!({"query_code": "GD20261207FFFFFFFFFFFFFFFF", "phone": "13912345678"}),
        )
        .await;
    assert_eq!(wrong_phone.status, StatusCode::NOT_FOUND);
    assert_eq!(wrong_phone.text, unknown.text);

    // The unit answers; the citizen reads the reply, not the unit's notes.
    let handler = h.login("handler").await;
    h.command(&handler, &code, "sign", json!({})).await;
    h.command(
        &handler,
        &code,
        "add_note",
        json!({"note": "内部：当事人曾来电"}),
    )
    .await;
    h.command(&handler, &code, "start", json!({})).await;
    let answer = "您可以向房屋所在地人民调解委员会申请调解，也可以携带租赁合同向法院起诉。";
    h.command(&handler, &code, "reply", json!({"text": answer}))
        .await;
    let status = h
        .public_post(source, "/api/public/orders/status", &query)
        .await;
    assert_eq!(status.body["progress"], "closed", "{}", status.text);
    assert_eq!(status.body["reply"], answer);
    assert_eq!(status.body["can_rate"], true);
    assert!(!status.text.contains("内部"), "{}", status.text);

    // Dissatisfied: the same rule as a callback's — a second callback by the
    // supervising unit (W-14).
    let rated = h
        .public_post(
            source,
            "/api/public/orders/rate",
            &json!({"query_code": code, "phone": PHONE, "rating": "dissatisfied", "comment": "没说清需要哪些材料"}),
        )
        .await;
    assert_eq!(rated.status, StatusCode::OK, "{}", rated.text);
    let order = h
        .state
        .store
        .load_order(&code)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(order.state, State::SecondCallback);
    assert_eq!(order.satisfaction, Some(Satisfaction::Dissatisfied));
    assert_eq!(
        order.second_callback_unit.as_ref().map(|u| u.as_str()),
        Some("jinan")
    );
    let events = h.state.store.order_events(&code).await.expect("events");
    let rating = events
        .iter()
        .find(|e| e.kind.contains("callback_recorded"))
        .expect("the rating in the ledger");
    assert_eq!(rating.actor, "citizen");
    assert!(
        rating.kind.contains("没说清需要哪些材料"),
        "{}",
        rating.kind
    );
    // Once per closing.
    let again = h
        .public_post(
            source,
            "/api/public/orders/rate",
            &json!({"query_code": code, "phone": PHONE, "rating": "satisfied"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert_eq!(again.body["code"], "not_ratable");

    // The app uses the same API.
    let pow = h.solved_challenge(source).await;
    let mut from_app = submission(
        "13700001111",
        "公司拖欠我三个月工资，想申请法律援助。",
        &pow,
    );
    from_app["channel"] = json!("app");
    let reply = h.public_post(source, "/api/public/orders", &from_app).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let order = h
        .state
        .store
        .load_order(&code_of(&reply))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(order.fields.channel, Channel::App);
}

#[tokio::test]
async fn sqlite_a_web_consultation_is_routed_answered_read_and_rated() {
    a_web_consultation_is_routed_answered_read_and_rated(Db::Sqlite).await;
}

#[tokio::test]
async fn postgres_a_web_consultation_is_routed_answered_read_and_rated() {
    a_web_consultation_is_routed_answered_read_and_rated(Db::Postgres).await;
}

async fn orders_of(h: &OrdersHarness, phone: &str) -> i64 {
    let filter = OrderFilter {
        phone: Some(phone.to_owned()),
        limit: 100,
        ..OrderFilter::default()
    };
    h.state.store.list_orders(&filter).await.expect("list").1
}

async fn abuse_controls_need_no_outside_service(db: Db) {
    let h = OrdersHarness::start(db).await;
    let source = "198.51.100.8";

    // A form post is refused before anything else.
    let form = h
        .send(
            Request::post("/api/public/orders")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .extension(from_source(source))
                .body(Body::from("name=x"))
                .expect("request"),
        )
        .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // An unsolved challenge, then a bad city, are refused with their reasons.
    let (challenge, _) = h.solved_challenge(source).await;
    let wrong = (0..10_000u32)
        .map(|n| n.to_string())
        .find(|n| leading_zero_bits(&work_digest(&challenge, n)) < 16)
        .expect("a non-solution");
    let reply = h
        .public_post(
            source,
            "/api/public/orders",
            &submission(PHONE, DEPOSIT, &(challenge.clone(), wrong)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["code"], "challenge_unsolved", "{}", reply.text);
    let mut no_city = submission(PHONE, DEPOSIT, &(challenge, "1".into()));
    no_city["city"] = json!("atlantis");
    let reply = h.public_post(source, "/api/public/orders", &no_city).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["field"], "city", "{}", reply.text);

    // Accepted once; the same solution again is spent.
    let pow = h.solved_challenge(source).await;
    let first = h
        .public_post(
            source,
            "/api/public/orders",
            &submission(PHONE, DEPOSIT, &pow),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let replayed = h
        .public_post(
            source,
            "/api/public/orders",
            &submission(PHONE, "另一件事：邻居装修噪音扰民。", &pow),
        )
        .await;
    assert_eq!(
        replayed.body["code"], "challenge_spent",
        "{}",
        replayed.text
    );

    // The same phone, spelt otherwise, with the same matter, punctuation aside: the
    // earlier code, no new order.
    let pow = h.solved_challenge(source).await;
    let dup = h
        .public_post(
            source,
            "/api/public/orders",
            &submission(
                "139-1234-5678",
                "我租的房子到期退租 房东拒绝退还三千元押金 请问我该怎么办",
                &pow,
            ),
        )
        .await;
    assert_eq!(dup.status, StatusCode::OK, "{}", dup.text);
    assert_eq!(dup.body["duplicate"], true);
    assert_eq!(dup.body["query_code"], first.body["query_code"]);
    assert_eq!(orders_of(&h, DIGITS).await, 1, "no second order");

    // Per phone (digits, whatever the spelling): five an hour, then 429.
    let mut last = None;
    for n in 0..4 {
        let pow = h.solved_challenge(source).await;
        let reply = h
            .public_post(
                source,
                "/api/public/orders",
                &submission(
                    PHONE,
                    &format!("第{n}件不同的事情：合同纠纷咨询{n}{n}{n}"),
                    &pow,
                ),
            )
            .await;
        last = Some(reply);
    }
    let last = last.expect("replies");
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS, "{}", last.text);
    assert_eq!(
        orders_of(&h, DIGITS).await,
        4,
        "the first, and three more before the limit"
    );

    // Look-ups per source: 60 an hour, then 429 (guessing codes stops there).
    let mut statuses = Vec::new();
    for n in 0..61 {
        let reply = h
            .public_post(
                "198.51.100.9",
                "/api/public/orders/status",
                &json!({"query_code": format!("GD20261207{n:016X}"), "phone": PHONE}),
            )
            .await;
        statuses.push(reply.status);
    }
    assert!(statuses[..60].iter().all(|s| *s == StatusCode::NOT_FOUND));
    assert_eq!(statuses[60], StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn sqlite_abuse_controls_need_no_outside_service() {
    abuse_controls_need_no_outside_service(Db::Sqlite).await;
}

#[tokio::test]
async fn postgres_abuse_controls_need_no_outside_service() {
    abuse_controls_need_no_outside_service(Db::Postgres).await;
}

async fn a_submission_accepted_while_the_database_is_down_lands(db: Db) {
    let (h, outbox) = OrdersHarness::start(db).await.with_outbox();
    let source = "198.51.100.10";
    let pow = h.solved_challenge(source).await;
    h.state.store.close().await;
    let reply = h
        .public_post(
            source,
            "/api/public/orders",
            &submission(PHONE, DEPOSIT, &pow),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.body["queued"], true);
    let code = code_of(&reply);
    assert_eq!(outbox.depth(), 1);

    // The database is back (a new pool): the journal is replayed into it.
    let store = Store::connect(&h.url).await.expect("reconnect");
    let shutdown = Shutdown::default();
    let replay = tokio::spawn(outbox.clone().replay_loop(store.clone(), shutdown.clone()));
    let mut landed = None;
    for _ in 0..100 {
        if let Some(order) = store.load_order(&code).await.expect("read") {
            landed = Some(order);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    replay.await.expect("replay loop");
    let order = landed.expect("the queued submission landed");
    assert_eq!(order.fields.channel, Channel::Web);
    assert_eq!(order.state, State::Dispatched);
    assert_eq!(outbox.depth(), 0);
}

#[tokio::test]
async fn sqlite_a_submission_accepted_while_the_database_is_down_lands() {
    a_submission_accepted_while_the_database_is_down_lands(Db::Sqlite).await;
}

#[tokio::test]
async fn postgres_a_submission_accepted_while_the_database_is_down_lands() {
    a_submission_accepted_while_the_database_is_down_lands(Db::Postgres).await;
}

/// The first bytes of a PNG (signature and IHDR) and of a PDF: what the content is
/// judged by.
fn png() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    bytes
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

async fn attachments_are_typed_by_content_capped_and_linked(db: Db) {
    let h = OrdersHarness::start(db).await;
    let source = "198.51.100.11";
    let pow = h.solved_challenge(source).await;
    let reply = h
        .public_post(
            source,
            "/api/public/orders",
            &submission(PHONE, DEPOSIT, &pow),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let code = code_of(&reply);

    let stored = h
        .public_upload(source, &code, PHONE, "image/png", png())
        .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.text);
    assert_eq!(stored.body["content_type"], "image/png");
    let pdf_stored = h
        .public_upload(source, &code, PHONE, "application/octet-stream", pdf())
        .await;
    assert_eq!(
        pdf_stored.status,
        StatusCode::CREATED,
        "{}",
        pdf_stored.text
    );
    assert_eq!(pdf_stored.body["content_type"], "application/pdf");

    // Refused, each with its reason: a PDF called a PNG, text called a JPEG, a ZIP,
    // more than 5 MB, a wrong phone.
    let mismatch = h
        .public_upload(source, &code, PHONE, "image/png", pdf())
        .await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        mismatch.body["code"], "attachment_type_mismatch",
        "{}",
        mismatch.text
    );
    let text = h
        .public_upload(
            source,
            &code,
            PHONE,
            "image/jpeg",
            b"just some words".to_vec(),
        )
        .await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(text.body["code"], "unsupported_attachment", "{}", text.text);
    let mut zip = b"PK\x03\x04".to_vec();
    zip.extend_from_slice(&[0u8; 60]);
    let zip = h
        .public_upload(source, &code, PHONE, "application/octet-stream", zip)
        .await;
    assert_eq!(zip.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(zip.text.contains("application/zip"), "{}", zip.text);
    let mut big = png();
    big.resize(5 * 1024 * 1024 + 1, 0);
    let big = h
        .public_upload(source, &code, PHONE, "image/png", big)
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", big.text);
    let stranger = h
        .public_upload(source, &code, "13900000000", "image/png", png())
        .await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND);

    // What the database and the data directory hold: two files, linked.
    let list = h.state.store.attachments_of(&code).await.expect("list");
    assert_eq!(list.len(), 2);
    let of_type = |t: &str| {
        list.iter()
            .find(|a| a.content_type == t)
            .map(|a| a.id.clone())
            .expect("stored")
    };
    let on_disk =
        std::fs::read(h.dir.path().join("attachments").join(of_type("image/png"))).expect("file");
    assert_eq!(on_disk, png());

    // Staff who may read the order download it as it was sent.
    let handler = h.login("handler").await;
    let listed = h
        .get(&handler, &format!("/api/orders/{code}/attachments"))
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.body.as_array().map(Vec::len), Some(2));
    let file = h
        .get(
            &handler,
            &format!(
                "/api/orders/{code}/attachments/{}",
                of_type("application/pdf")
            ),
        )
        .await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.text.as_bytes(), pdf().as_slice());
}

#[tokio::test]
async fn sqlite_attachments_are_typed_by_content_capped_and_linked() {
    attachments_are_typed_by_content_capped_and_linked(Db::Sqlite).await;
}

#[tokio::test]
async fn postgres_attachments_are_typed_by_content_capped_and_linked() {
    attachments_are_typed_by_content_capped_and_linked(Db::Postgres).await;
}
