//! The work-order HTTP API end to end through the router (`tower::ServiceExt::oneshot`)
//! with a real store: SQLite in a temp dir, and PostgreSQL on 127.0.0.1:5432 for the
//! tests named `postgres_*` (which must be running). Users, units and
//! routing come from the shipped `config/hotline.toml`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use hotline::api::auth::Auth;
use hotline::api::{AppState, router};
use hotline::calendar::Calendar;
use hotline::config::Config;
use hotline::orders::OrdersContext;
use hotline::store::Store;

struct Harness {
    app: Router,
    state: AppState,
    _dir: Option<tempfile::TempDir>,
    db_file: Option<PathBuf>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_config() -> Config {
    Config::load(&root().join("config/hotline.toml")).expect("shipped config")
}

fn orders_context() -> OrdersContext {
    let config = shipped_config();
    let calendar =
        Calendar::load(root().join("config/calendar/cn-workdays.toml")).expect("calendar");
    OrdersContext::from_config(&config, calendar)
}

fn context() -> Arc<OrdersContext> {
    Arc::new(orders_context())
}

async fn harness_on(
    store: Store,
    dir: Option<tempfile::TempDir>,
    db_file: Option<PathBuf>,
) -> Harness {
    let orders = context();
    // As `hotline serve` does: the read scope follows the configured units.
    store
        .install_unit_tree(&orders.units)
        .await
        .expect("install units");
    store.set_order_numbering(Some(&shipped_config().orders.number_prefix));
    let state = AppState {
        store,
        metrics: Arc::default(),
        warnings: Arc::new(vec![]),
        orders,
        auth: Arc::new(Auth::for_config(&shipped_config())),
        cities: Arc::default(),
    };
    Harness {
        app: router(state.clone()),
        state,
        _dir: dir,
        db_file,
    }
}

async fn sqlite() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.db");
    let store = Store::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("sqlite");
    store.migrate().await.expect("migrate");
    harness_on(store, Some(dir), Some(file)).await
}

async fn postgres() -> Harness {
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let name = format!(
        "hotline_api_{}_{}",
        std::process::id(),
        rand::random::<u32>()
    );
    let pool = sqlx::PgPool::connect(admin)
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
    harness_on(store, None, None).await
}

/// A logged-in console: session cookie + CSRF token.
#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

struct Reply {
    status: StatusCode,
    body: Value,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
            text,
        }
    }

    async fn login(&self, user: &str) -> Session {
        let reply = self
            .send(
                Request::post("/api/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"user": user, "password": format!("demo-{user}")}).to_string(),
                    ))
                    .expect("request"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "login {user}: {}", reply.text);
        let cookie = reply.headers[header::SET_COOKIE]
            .to_str()
            .expect("cookie")
            .to_owned();
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        Session {
            cookie: cookie.split(';').next().expect("pair").to_owned(),
            csrf: reply.body["csrf_token"].as_str().expect("csrf").to_owned(),
        }
    }

    async fn get(&self, s: &Session, uri: &str) -> Reply {
        self.send(
            Request::get(uri)
                .header(header::COOKIE, &s.cookie)
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    async fn post(&self, s: &Session, uri: &str, body: Value) -> Reply {
        self.post_raw(s, uri, body.to_string(), &[]).await
    }

    async fn post_raw(
        &self,
        s: &Session,
        uri: &str,
        body: String,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::post(uri)
            .header(header::COOKIE, &s.cookie)
            .header("x-csrf-token", &s.csrf)
            .header(header::CONTENT_TYPE, "application/json");
        for (k, v) in extra {
            builder = builder.header(*k, *v);
        }
        self.send(builder.body(Body::from(body)).expect("request"))
            .await
    }

    async fn command(&self, s: &Session, id: &str, command: &str, body: Value) -> Value {
        let reply = self
            .post(s, &format!("/api/orders/{id}/{command}"), body)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{command} on {id}: {}",
            reply.text
        );
        reply.body
    }

    async fn create(&self, s: &Session, body: Value) -> Value {
        let reply = self.post(s, "/api/orders", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "create: {}", reply.text);
        reply.body
    }

    /// The raw bytes of a GET answer (files).
    async fn send_bytes(&self, s: &Session, uri: &str) -> Vec<u8> {
        let response = self
            .app
            .clone()
            .oneshot(
                Request::get(uri)
                    .header(header::COOKIE, &s.cookie)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec()
    }

    async fn total(&self, s: &Session) -> i64 {
        self.get(s, "/api/orders").await.body["total"]
            .as_i64()
            .expect("total")
    }
}

fn order_body(category: &str, area: &str, received_at: Option<&str>) -> Value {
    let mut body = json!({
        "contact_name": "张三",
        "contact_phone": "13812345678",
        "category": category,
        "urgency": "normal",
        "business_area": area,
        "units": [],
        "description": "咨询法律援助申请条件",
        "remarks": "",
        "channel": "phone",
        "city": "jinan",
        "call_id": null,
    });
    if let Some(at) = received_at {
        body["received_at"] = json!(at);
    }
    body
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

/// Consultation received 2025-09-30 16:00 (before the National Day holiday): the
/// transfer limit is 2025-10-09 24:00; auto-routed to the legal-aid center, which
/// signs, starts and replies; the reply closes the consultation (H-10).
async fn consultation_lifecycle_over_national_day(h: &Harness) {
    let agent = h.login("agent").await;
    let handler = h.login("handler").await;
    let order = h
        .create(
            &agent,
            order_body(
                "consultation",
                "legal_aid",
                Some("2025-09-30T16:00:00+08:00"),
            ),
        )
        .await;
    let id = id_of(&order);
    assert_eq!(order["state"], "dispatched", "auto-routed: {order}");
    assert_eq!(
        order["deadlines"]["transfer_due"],
        "2025-10-10T00:00:00+08:00"
    );
    assert_eq!(
        order["deadlines"]["transfer_due_display"],
        "2025-10-09T24:00+08:00"
    );
    assert_eq!(
        order["fields"]["contact_phone"], "138****5678",
        "the agent sees the number masked (H-12-4)"
    );
    let seen = h.get(&handler, &format!("/api/orders/{id}")).await.body;
    assert_eq!(seen["fields"]["contact_phone"], "13812345678", "{seen}");
    assert_eq!(allowed(&seen), vec!["sign", "return", "add_note"], "{seen}");
    assert_eq!(seen["units"][0]["unit"], "jinan-legal-aid");
    h.command(&handler, &id, "sign", json!({})).await;
    h.command(&handler, &id, "start", json!({})).await;
    let done = h
        .command(
            &handler,
            &id,
            "reply",
            json!({"text": "符合条件，可申请法律援助"}),
        )
        .await;
    assert_eq!(done["state"], "closed", "{done}");
    assert_eq!(done["closing"]["reason"], "answered");
    let events = h.get(&handler, &format!("/api/orders/{id}/events")).await;
    let kinds: Vec<&str> = events
        .body
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"]["type"].as_str())
        .collect();
    assert_eq!(
        &kinds[..5],
        ["created", "submitted", "dispatched", "signed", "started"],
        "{kinds:?}"
    );
    assert!(kinds.contains(&"closed"));
}

/// Complaint received 2024-02-08 (eve of the Spring Festival): feedback due
/// 2024-02-21 24:00. Unknown area → a dispatcher routes it; the reply goes through
/// review (one rejection first), is sent, fed back and the order closes; a sampled
/// callback records satisfaction.
async fn complaint_lifecycle_over_spring_festival(h: &Harness, category: &str) {
    let agent = h.login("agent").await;
    let dispatcher = h.login("dispatcher").await;
    let handler = h.login("handler").await;
    let reviewer = h.login("reviewer").await;
    let callback = h.login("callback").await;
    let mut body = order_body(category, "unknown", Some("2024-02-08T10:00:00+08:00"));
    if category == "case" {
        // H-8: 案件 comes from another channel; the hotline registers 咨询/投诉/建议.
        body["channel"] = json!("web");
    }
    let order = h.create(&agent, body).await;
    let id = id_of(&order);
    assert_eq!(order["state"], "pending_dispatch");
    assert_eq!(
        order["deadlines"]["feedback_due"],
        "2024-02-22T00:00:00+08:00"
    );
    assert_eq!(order["deadlines"]["provisional"], false);
    let seen = h.get(&dispatcher, &format!("/api/orders/{id}")).await.body;
    assert!(allowed(&seen).contains(&"dispatch".to_owned()), "{seen}");
    h.command(
        &dispatcher,
        &id,
        "dispatch",
        json!({"units": ["jinan-legal-aid"], "area": "legal_aid"}),
    )
    .await;
    h.command(&handler, &id, "sign", json!({})).await;
    h.command(&handler, &id, "start", json!({})).await;
    h.command(&handler, &id, "draft_reply", json!({"text": "初稿"}))
        .await;
    let rejected = h
        .command(
            &reviewer,
            &id,
            "review",
            json!({"decision": "reject", "reason": "事实不清"}),
        )
        .await;
    assert_eq!(rejected["state"], "in_progress");
    h.command(&handler, &id, "draft_reply", json!({"text": "修改稿"}))
        .await;
    h.command(
        &reviewer,
        &id,
        "review",
        json!({"decision": "approve", "reason": "同意"}),
    )
    .await;
    let sent = h
        .command(&handler, &id, "send_reviewed_reply", json!({}))
        .await;
    assert_eq!(sent["state"], "replied");
    let closed = h
        .command(&handler, &id, "feed_back", json!({"note": "已电话告知"}))
        .await;
    assert_eq!(closed["state"], "closed", "{closed}");
    assert_eq!(closed["closing"]["reason"], "fed_back");
    let rated = h
        .command(
            &callback,
            &id,
            "record_callback",
            json!({"outcome": {"outcome": "satisfied"}, "note": ""}),
        )
        .await;
    assert_eq!(rated["satisfaction"], "satisfied", "{rated}");
    assert_eq!(rated["state"], "closed");
}

async fn suggestion_lifecycle(h: &Harness) {
    let agent = h.login("agent").await;
    let shizhong = h.login("shizhong").await;
    let order = h
        .create(&agent, order_body("suggestion", "mediation", None))
        .await;
    let id = id_of(&order);
    assert_eq!(order["units"][0]["unit"], "jinan-shizhong");
    h.command(&shizhong, &id, "sign", json!({})).await;
    h.command(&shizhong, &id, "start", json!({})).await;
    let replied = h
        .command(&shizhong, &id, "reply", json!({"text": "感谢建议"}))
        .await;
    assert_eq!(replied["state"], "replied");
    let closed = h
        .command(&shizhong, &id, "feed_back", json!({"note": "已告知"}))
        .await;
    assert_eq!(closed["state"], "closed");
}

/// Urgent orders: 1-hour transfer, and they close only through the mandatory callback.
async fn urgent_order_closes_through_callback(h: &Harness) {
    let agent = h.login("agent").await;
    let handler = h.login("handler").await;
    let callback = h.login("callback").await;
    let mut body = order_body(
        "consultation",
        "legal_aid",
        Some("2025-09-30T16:00:00+08:00"),
    );
    body["urgency"] = json!("urgent");
    let order = h.create(&agent, body).await;
    let id = id_of(&order);
    assert_eq!(
        order["deadlines"]["transfer_due"],
        "2025-09-30T17:00:00+08:00"
    );
    assert_eq!(
        order["deadlines"]["callback_due_display"], "2025-10-11T24:00+08:00",
        "3 working days: 10-9, 10-10, 10-11 (adjusted Saturday workday)"
    );
    h.command(&handler, &id, "sign", json!({})).await;
    h.command(&handler, &id, "start", json!({})).await;
    let answered = h
        .command(&handler, &id, "reply", json!({"text": "答复"}))
        .await;
    assert_eq!(answered["state"], "fed_back", "{answered}");
    let closed = h
        .command(
            &callback,
            &id,
            "record_callback",
            json!({"outcome": {"outcome": "satisfied"}, "note": ""}),
        )
        .await;
    assert_eq!(closed["state"], "closed");
}

#[tokio::test]
async fn sqlite_lifecycle_of_each_category_with_real_holidays() {
    let h = sqlite().await;
    consultation_lifecycle_over_national_day(&h).await;
    complaint_lifecycle_over_spring_festival(&h, "complaint").await;
    complaint_lifecycle_over_spring_festival(&h, "case").await;
    suggestion_lifecycle(&h).await;
    urgent_order_closes_through_callback(&h).await;
    let admin = h.login("admin").await;
    let verify = h.get(&admin, "/api/ledger/verify").await;
    assert_eq!(verify.body["ok"], true, "{}", verify.text);
}

#[tokio::test]
async fn postgres_lifecycle_of_each_category_with_real_holidays() {
    let h = postgres().await;
    consultation_lifecycle_over_national_day(&h).await;
    complaint_lifecycle_over_spring_festival(&h, "complaint").await;
    complaint_lifecycle_over_spring_festival(&h, "case").await;
    suggestion_lifecycle(&h).await;
    urgent_order_closes_through_callback(&h).await;
    let admin = h.login("admin").await;
    assert_eq!(h.get(&admin, "/api/ledger/verify").await.body["ok"], true);
}

#[tokio::test]
async fn illegal_transitions_are_422_naming_state_and_rule() {
    let h = sqlite().await;
    let agent = h.login("agent").await;
    let dispatcher = h.login("dispatcher").await;
    let handler = h.login("handler").await;
    let complaint = id_of(
        &h.create(&agent, order_body("complaint", "legal_aid", None))
            .await,
    );
    // Already dispatched: dispatching again is out of the lifecycle.
    let again = h
        .post(
            &dispatcher,
            &format!("/api/orders/{complaint}/dispatch"),
            json!({"units": ["jinan-lixia"]}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        again.text
    );
    assert_eq!(again.body["code"], "illegal_transition");
    let message = again.body["message"].as_str().expect("message");
    assert!(
        message.contains("dispatched") && message.contains("rule TK-ROUTE"),
        "{message}"
    );
    h.command(&handler, &complaint, "sign", json!({})).await;
    h.command(&handler, &complaint, "start", json!({})).await;
    // A complaint's reply must go through review (W-13).
    let direct = h
        .post(
            &handler,
            &format!("/api/orders/{complaint}/reply"),
            json!({"text": "x"}),
        )
        .await;
    assert_eq!(
        direct.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        direct.text
    );
    assert!(
        direct.body["message"]
            .as_str()
            .expect("m")
            .contains("rule TK-"),
        "{}",
        direct.text
    );
    // Feedback before any reply.
    let early = h
        .post(
            &handler,
            &format!("/api/orders/{complaint}/feed_back"),
            json!({"note": "x"}),
        )
        .await;
    assert_eq!(
        early.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        early.text
    );
    assert_eq!(early.body["code"], "illegal_transition");
    // A return needs a reason.
    let consultation = id_of(
        &h.create(&agent, order_body("consultation", "legal_aid", None))
            .await,
    );
    let bare = h
        .post(
            &handler,
            &format!("/api/orders/{consultation}/return"),
            json!({"reason": " "}),
        )
        .await;
    assert_eq!(
        bare.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bare.text
    );
    assert_eq!(bare.body["field"], "reason");
    // Wrong role: an agent cannot sign.
    let role = h
        .post(
            &agent,
            &format!("/api/orders/{consultation}/sign"),
            json!({}),
        )
        .await;
    assert_eq!(role.status, StatusCode::FORBIDDEN, "{}", role.text);
    // Unknown command, and a missing field type.
    let unknown = h
        .post(
            &agent,
            &format!("/api/orders/{consultation}/create"),
            json!({}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let typed = h
        .post(
            &handler,
            &format!("/api/orders/{consultation}/return"),
            json!({"reason": 42}),
        )
        .await;
    assert_eq!(
        typed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        typed.text
    );
}

#[tokio::test]
async fn role_scoping_and_masking() {
    let h = sqlite().await;
    let agent = h.login("agent").await;
    let order = h
        .create(&agent, order_body("consultation", "legal_aid", None))
        .await;
    let id = id_of(&order);
    // Another county never sees it: not in its list, 404 on read and on commands.
    let lixia = h.login("lixia").await;
    assert_eq!(
        h.get(&lixia, &format!("/api/orders/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.total(&lixia).await, 0);
    let sign = h
        .post(&lixia, &format!("/api/orders/{id}/sign"), json!({}))
        .await;
    assert_eq!(sign.status, StatusCode::NOT_FOUND);
    // The city's supervisor sees it, masked, and can reveal (audited).
    let supervisor = h.login("supervisor").await;
    let seen = h.get(&supervisor, &format!("/api/orders/{id}")).await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body["fields"]["contact_phone"], "138****5678");
    assert_eq!(seen.body["fields"]["contact_name"], "张*");
    assert_eq!(h.total(&supervisor).await, 1);
    let events = h
        .get(&supervisor, &format!("/api/orders/{id}/events"))
        .await;
    assert!(
        !events.text.contains("13812345678"),
        "events leak: {}",
        events.text
    );
    let search = h.get(&supervisor, "/api/orders?phone=13812345678").await;
    assert_eq!(search.status, StatusCode::FORBIDDEN);
    let revealed = h
        .post(
            &supervisor,
            &format!("/api/orders/{id}/reveal_contact"),
            json!({"reason": "核实来电人身份"}),
        )
        .await;
    assert_eq!(revealed.body["contact_phone"], "13812345678");
    assert_eq!(
        h.state
            .store
            .audit_count("order.reveal_contact")
            .await
            .expect("audit"),
        1
    );
    // The handling unit sees the number; the agent finds earlier orders by number.
    let handler = h.login("handler").await;
    assert_eq!(
        h.get(&handler, &format!("/api/orders/{id}")).await.body["fields"]["contact_phone"],
        "13812345678"
    );
    let by_phone = h.get(&agent, "/api/orders?phone=13812345678").await;
    assert_eq!(by_phone.body["total"], 1, "{}", by_phone.text);
    // Unauthenticated.
    let anonymous = h
        .send(
            Request::get("/api/orders")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.body["code"], "unauthenticated");
}

/// The audit lines of `action` by `actor`, each as the record ids it names.
async fn audited_records(h: &Harness, action: &str, actor: &str) -> Vec<Vec<String>> {
    h.state
        .store
        .audit_lines_oldest_first(action)
        .await
        .expect("audit lines")
        .into_iter()
        .filter(|(who, _, _)| who == actor)
        .map(|(_, _, detail)| {
            let detail: Value = serde_json::from_str(&detail).expect("audit detail is JSON");
            detail["records"]
                .as_array()
                .unwrap_or_else(|| panic!("no records in {detail}"))
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// Issue 14 item 9 (H-12-4): the agent sees callers' numbers masked in `/api/calls`
/// and in the orders opened from a call (list, read, events, a search by the number);
/// dispatch, the handling unit and callback staff see them in full, and each of those
/// answers is in the audit log with the record ids it returned. Roles that see masked
/// values leave no read line.
async fn agents_see_numbers_masked_and_every_full_number_read_is_audited(h: &Harness) {
    let arrival = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:00:00+08:00").expect("time");
    let jinan = hotline::ivr::city::CityResolution {
        city: hotline::ivr::city::CityId::new("jinan"),
        how: hotline::ivr::city::ResolvedBy::AreaCode,
    };
    for (call_id, caller) in [("call-mask-1", "13812345678"), ("call-mask-2", "82345678")] {
        let mut cdr = hotline::ivr::cdr::CdrBuilder::new(call_id, caller, "053112348", arrival);
        cdr.city(&jinan);
        let record = cdr.finish(arrival + chrono::TimeDelta::minutes(3));
        h.state
            .store
            .insert_call(&record, None)
            .await
            .expect("call record");
    }
    let full = ["13812345678", "82345678"];
    let leaks = |text: &str| full.iter().any(|n| text.contains(&format!("\"{n}\"")));

    // The agent: masked everywhere, and no read line (nothing was shown in full).
    let agent = h.login("agent").await;
    let calls = h.get(&agent, "/api/calls").await;
    assert_eq!(calls.status, StatusCode::OK, "{}", calls.text);
    let callers: Vec<&str> = calls
        .body
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["record"]["caller"].as_str())
        .collect();
    assert_eq!(callers.len(), 2, "{}", calls.text);
    assert!(
        callers.contains(&"138****5678") && callers.contains(&"****5678"),
        "{callers:?}"
    );
    assert!(!leaks(&calls.text), "{}", calls.text);
    // An order opened from the call without a phone takes the number, unseen.
    let mut body = order_body("consultation", "legal_aid", None);
    body["contact_phone"] = json!("");
    body["call_id"] = json!("call-mask-1");
    let created = h.create(&agent, body).await;
    let id = id_of(&created);
    assert_eq!(
        created["fields"]["contact_phone"], "138****5678",
        "{created}"
    );
    assert_eq!(created["contact_masked"], true, "{created}");
    for uri in [
        format!("/api/orders/{id}"),
        "/api/orders".to_owned(),
        format!("/api/orders/{id}/events"),
        "/api/orders?phone=13812345678".to_owned(),
    ] {
        let reply = h.get(&agent, &uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text);
        assert!(
            !leaks(&reply.text),
            "{uri} shows a full number: {}",
            reply.text
        );
        assert!(reply.text.contains("138****5678"), "{uri}: {}", reply.text);
    }
    let supervisor = h.login("supervisor").await;
    let seen = h.get(&supervisor, &format!("/api/orders/{id}")).await;
    assert!(!leaks(&seen.text), "{}", seen.text);
    for action in ["calls.read", "orders.read", "order.events.read"] {
        for who in ["agent", "supervisor"] {
            assert!(
                audited_records(h, action, who).await.is_empty(),
                "{who} saw only masked numbers: no {action} line"
            );
        }
    }

    // Dispatch sees the calls in full: one line naming both calls.
    let dispatcher = h.login("dispatcher").await;
    let calls = h.get(&dispatcher, "/api/calls").await;
    assert!(
        full.iter().all(|n| calls.text.contains(n)),
        "{}",
        calls.text
    );
    let mut read = audited_records(h, "calls.read", "dispatcher").await;
    assert_eq!(read.len(), 1, "{read:?}");
    read[0].sort();
    assert_eq!(read[0], ["call-mask-1", "call-mask-2"]);
    // Dispatch's list, the handling unit's read, callback staff's read: each a line
    // naming the order; the events a line of their own.
    let list = h.get(&dispatcher, "/api/orders").await;
    assert_eq!(
        list.body["items"][0]["fields"]["contact_phone"], "13812345678",
        "{}",
        list.text
    );
    assert_eq!(
        audited_records(h, "orders.read", "dispatcher").await,
        [[id.clone()]]
    );
    for who in ["handler", "callback"] {
        let session = h.login(who).await;
        let reply = h.get(&session, &format!("/api/orders/{id}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{who}: {}", reply.text);
        assert_eq!(
            reply.body["fields"]["contact_phone"], "13812345678",
            "{who}"
        );
        assert_eq!(reply.body["contact_masked"], false, "{who}");
        assert_eq!(
            audited_records(h, "orders.read", who).await,
            [[id.clone()]],
            "{who}"
        );
    }
    let events = h
        .get(&dispatcher, &format!("/api/orders/{id}/events"))
        .await;
    assert!(events.text.contains("13812345678"), "{}", events.text);
    assert_eq!(
        audited_records(h, "order.events.read", "dispatcher").await,
        [[id.clone()]]
    );
}

#[tokio::test]
async fn sqlite_agents_see_numbers_masked_and_every_full_number_read_is_audited() {
    agents_see_numbers_masked_and_every_full_number_read_is_audited(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_agents_see_numbers_masked_and_every_full_number_read_is_audited() {
    agents_see_numbers_masked_and_every_full_number_read_is_audited(&postgres().await).await;
}

/// A full-number read is only answered once its audit line is written: with the audit
/// log unwritable, dispatch gets the order and the calls masked (a command's answer
/// comes after its commit, so masking rather than refusing keeps one rule).
#[tokio::test]
async fn a_full_number_read_that_cannot_be_audited_is_answered_masked() {
    let h = sqlite().await;
    let dispatcher = h.login("dispatcher").await;
    let order = h
        .create(&dispatcher, order_body("consultation", "legal_aid", None))
        .await;
    assert_eq!(order["fields"]["contact_phone"], "13812345678", "{order}");
    let id = id_of(&order);
    let path = h.db_file.clone().expect("sqlite file");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open the database file");
    sqlx::query("DROP TABLE audit_log")
        .execute(&pool)
        .await
        .expect("drop the audit log");
    pool.close().await;
    let seen = h.get(&dispatcher, &format!("/api/orders/{id}")).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
    assert_eq!(
        seen.body["fields"]["contact_phone"], "138****5678",
        "{}",
        seen.text
    );
    assert_eq!(seen.body["contact_masked"], true);
    let events = h
        .get(&dispatcher, &format!("/api/orders/{id}/events"))
        .await;
    assert!(!events.text.contains("13812345678"), "{}", events.text);
}

#[tokio::test]
async fn ledger_detects_a_row_edited_directly_in_sqlite() {
    let h = sqlite().await;
    let agent = h.login("agent").await;
    let handler = h.login("handler").await;
    let admin = h.login("admin").await;
    let id = id_of(
        &h.create(&agent, order_body("consultation", "legal_aid", None))
            .await,
    );
    h.command(&handler, &id, "return", json!({"reason": "不属于本单位"}))
        .await;
    assert_eq!(h.get(&admin, "/api/ledger/verify").await.body["ok"], true);
    let csv = h.get(&admin, "/api/ledger/jinan-legal-aid.csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.text.contains("不属于本单位"), "{}", csv.text);
    // The ledger names who acted (issue 15: names and Chinese labels, no login ids).
    assert!(
        csv.text.starts_with("工单编号,序号,时间,操作人,角色,单位,"),
        "{}",
        csv.text
    );
    assert!(csv.text.contains(",\"承办人 王芳\","), "{}", csv.text);
    let path = h.db_file.clone().expect("sqlite file");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open sqlite");
    sqlx::query("UPDATE order_events SET reason = '本单位已处理' WHERE reason = '不属于本单位'")
        .execute(&pool)
        .await
        .expect("tamper");
    let report = h.get(&admin, "/api/ledger/verify").await.body;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["broken_at"]["order_id"], id.as_str());
    assert_eq!(
        report["broken_at"]["seq"], 4,
        "created, submitted, dispatched, returned"
    );
    // Non-oversight roles cannot read the ledger.
    assert_eq!(
        h.get(&agent, "/api/ledger/verify").await.status,
        StatusCode::FORBIDDEN
    );
}

async fn concurrent_signs_one_wins(h: &Harness) {
    let agent = h.login("agent").await;
    let dispatcher = h.login("dispatcher").await;
    let handler = h.login("handler").await;
    let shizhong = h.login("shizhong").await;
    let id = id_of(
        &h.create(&agent, order_body("complaint", "unknown", None))
            .await,
    );
    let dispatched = h
        .command(
            &dispatcher,
            &id,
            "dispatch",
            json!({"units": ["jinan-legal-aid", "jinan-shizhong"]}),
        )
        .await;
    let version = dispatched["version"].as_u64().expect("version");
    let uri = format!("/api/orders/{id}/sign");
    let (a, b) = tokio::join!(
        h.post(&handler, &uri, json!({"version": version})),
        h.post(&shizhong, &uri, json!({"version": version})),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{} / {}",
        a.text,
        b.text
    );
    let loser = if a.status == StatusCode::CONFLICT {
        &a
    } else {
        &b
    };
    assert_eq!(loser.body["code"], "version_conflict");
    // Without a version a command means "the order as it is now": two notes sent at
    // once both land (the later is decided again on the order the first left).
    let note = format!("/api/orders/{id}/add_note");
    let (a, b) = tokio::join!(
        h.post(&handler, &note, json!({"note": "第一条"})),
        h.post(&shizhong, &note, json!({"note": "第二条"})),
    );
    assert_eq!(
        (a.status, b.status),
        (StatusCode::OK, StatusCode::OK),
        "{} / {}",
        a.text,
        b.text
    );
    // If-Match with a stale version is refused too.
    let stale = h
        .post_raw(
            &shizhong,
            &uri,
            "{}".into(),
            &[("if-match", &version.to_string())],
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.text);
}

#[tokio::test]
async fn sqlite_concurrent_signs_one_wins() {
    concurrent_signs_one_wins(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_concurrent_signs_one_wins() {
    concurrent_signs_one_wins(&postgres().await).await;
}

#[tokio::test]
async fn idempotent_create() {
    let h = sqlite().await;
    let agent = h.login("agent").await;
    let body = order_body("consultation", "legal_aid", None).to_string();
    let first = h
        .post_raw(
            &agent,
            "/api/orders",
            body.clone(),
            &[("idempotency-key", "call-42")],
        )
        .await;
    let second = h
        .post_raw(
            &agent,
            "/api/orders",
            body.clone(),
            &[("idempotency-key", "call-42")],
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(first.body["id"], second.body["id"]);
    let other = order_body("complaint", "legal_aid", None).to_string();
    let reused = h
        .post_raw(
            &agent,
            "/api/orders",
            other,
            &[("idempotency-key", "call-42")],
        )
        .await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reused.text
    );
    assert_eq!(reused.body["code"], "idempotency_key_reused");
    assert_eq!(h.total(&agent).await, 1);
}

#[tokio::test]
async fn bad_input_is_4xx_and_stores_nothing() {
    let h = sqlite().await;
    let agent = h.login("agent").await;
    let malformed = h
        .post_raw(&agent, "/api/orders", "{\"category\": ".into(), &[])
        .await;
    assert_eq!(
        malformed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        malformed.text
    );
    assert_eq!(malformed.body["code"], "malformed_json");
    let mut wrong = order_body("consultation", "legal_aid", None);
    wrong["category"] = json!(5);
    let typed = h.post(&agent, "/api/orders", wrong).await;
    assert_eq!(
        typed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        typed.text
    );
    let mut unknown = order_body("consultation", "legal_aid", None);
    unknown["category"] = json!("gossip");
    assert_eq!(
        h.post(&agent, "/api/orders", unknown).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let mut huge = order_body("consultation", "legal_aid", None);
    huge["description"] = json!("长".repeat(40_000));
    let too_big = h.post(&agent, "/api/orders", huge).await;
    assert_eq!(
        too_big.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        too_big.text
    );
    assert_eq!(too_big.body["code"], "body_too_large");
    let mut future = order_body(
        "consultation",
        "legal_aid",
        Some("2099-01-01T00:00:00+08:00"),
    );
    future["remarks"] = json!("x");
    let future = h.post(&agent, "/api/orders", future).await;
    assert_eq!(
        future.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        future.text
    );
    assert_eq!(future.body["field"], "received_at");
    for query in [
        "city=jinan'%20OR%20'1'='1",
        "unit=x%3BDROP%20TABLE%20orders",
        "state=closed'--",
        "phone=1'%20OR%201=1",
        "per_page=100000",
        "sort=id;DROP",
        "bogus=1",
    ] {
        let reply = h.get(&agent, &format!("/api/orders?{query}")).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            reply.text
        );
        assert!(reply.body["code"].is_string(), "{query}: {}", reply.text);
    }
    assert_eq!(h.total(&agent).await, 0, "nothing stored");
    assert!(!malformed.text.to_lowercase().contains("sqlite"));
}

/// A 4xx whose JSON body carries a code and a reason (and the field when named).
fn assert_refused(reply: &Reply, status: StatusCode, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    assert!(reply.body["code"].is_string(), "{what}: {}", reply.text);
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {}",
        reply.text
    );
    let lower = reply.text.to_lowercase();
    assert!(
        !lower.contains("sqlite") && !lower.contains("syntax error"),
        "{what}: database text leaked: {}",
        reply.text
    );
}

/// Issue 7, bad input: every list filter of `GET /api/orders` not covered above, with
/// SQL metacharacters, LIKE wildcards, NULs and out-of-range numbers → 400 naming the
/// field; the orders stored before are untouched.
#[tokio::test]
async fn every_order_list_filter_refuses_sql_metacharacters() {
    let h = sqlite().await;
    let agent = h.login("agent").await;
    let supervisor = h.login("supervisor").await;
    h.create(&agent, order_body("consultation", "legal_aid", None))
        .await;
    for (query, field) in [
        ("category=consultation'%20OR%20'1'='1", "category"),
        ("category=%25", "category"),
        ("business_area=legal_aid%22;--", "business_area"),
        ("urgency=urgent%00", "urgency"),
        ("urgency=normal)%20UNION%20SELECT%201--", "urgency"),
        ("overdue=1%20OR%201=1", "overdue"),
        ("special_flag=true;--", "special_flag"),
        ("page=1;DROP%20TABLE%20orders", "page"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("per_page=1'", "per_page"),
        ("per_page=0", "per_page"),
        ("state=%25", "state"),
        ("city=%25", "city"),
        ("city=JINAN", "city"),
        ("unit=jinan-legal-aid'--", "unit"),
        ("phone=%25", "phone"),
        ("phone=138%27", "phone"),
    ] {
        let reply = h.get(&supervisor, &format!("/api/orders?{query}")).await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, query);
        assert_eq!(reply.body["field"], field, "{query}: {}", reply.text);
    }
    // A repeated or unknown parameter, and a query that is not URL-encoded text.
    for query in ["city=jinan&city=qingdao", "order_by=1", "%ff%fe=1"] {
        let reply = h.get(&supervisor, &format!("/api/orders?{query}")).await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, query);
    }
    assert_eq!(
        h.total(&supervisor).await,
        1,
        "the stored order is untouched"
    );
}

/// Issue 7, bad input: `GET /api/calls` checks each filter against its type (city id,
/// category, caller number, path stage, RFC 3339 times, limit 1..=1000) before the
/// store sees it: SQL metacharacters and LIKE wildcards are 400 naming the field.
#[tokio::test]
async fn every_call_list_filter_refuses_sql_metacharacters() {
    let h = sqlite().await;
    let dispatcher = h.login("dispatcher").await;
    let ok = h.get(&dispatcher, "/api/calls?city=jinan&category=complaint&caller=%2B8613812345678&path=voice_message&from=2026-01-01T00:00:00%2B08:00&to=2026-12-31T00:00:00Z&limit=1000").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body, json!([]));
    for (query, field) in [
        ("city=jinan'%20OR%20'1'='1", "city"),
        ("city=%25", "city"),
        ("category=complaint'--", "category"),
        ("category=%25", "category"),
        ("caller=1'%20OR%201=1", "caller"),
        ("caller=%25", "caller"),
        ("caller=138%20", "caller"),
        ("path=%25", "path"),
        ("path=queue,voice_message", "path"),
        ("path=queue';DROP%20TABLE%20calls;--", "path"),
        ("from=2026-01-01'", "from"),
        ("to=yesterday", "to"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=1001", "limit"),
        ("limit=1;DROP", "limit"),
    ] {
        let reply = h.get(&dispatcher, &format!("/api/calls?{query}")).await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, query);
        assert_eq!(reply.body["field"], field, "{query}: {}", reply.text);
    }
    for query in ["bogus=1", "limit=1&limit=2"] {
        let reply = h.get(&dispatcher, &format!("/api/calls?{query}")).await;
        assert_refused(&reply, StatusCode::BAD_REQUEST, query);
    }
    // A role that may not see numbers may not search by one, whatever the value.
    let supervisor = h.login("supervisor").await;
    let reply = h.get(&supervisor, "/api/calls?caller=1'--").await;
    assert_refused(
        &reply,
        StatusCode::FORBIDDEN,
        "caller search without the role",
    );
}

/// Issue 7, bad input: order commands, login and agent-state bodies that are not JSON,
/// have the wrong types or shape, or exceed the 64 KiB limit → 4xx with a reason, and
/// the order's version and ledger are unchanged.
#[tokio::test]
async fn bad_command_login_and_agent_bodies_are_4xx_and_store_nothing() {
    let h = sqlite().await;
    let agent = h.login("agent").await;
    let handler = h.login("handler").await;
    let order = h
        .create(&agent, order_body("consultation", "legal_aid", None))
        .await;
    let id = id_of(&order);
    let events_before = h.state.store.order_events(&id).await.expect("events").len();
    let huge = format!("{{\"text\": \"{}\"}}", "长".repeat(30_000));
    let uri = |command: &str| format!("/api/orders/{id}/{command}");
    for (command, body, status, code) in [
        (
            "sign",
            "{\"version\": ",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        ("sign", "\u{0}", StatusCode::BAD_REQUEST, "malformed_json"),
        (
            "sign",
            "[1, 2]",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "sign",
            "\"sign\"",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "sign",
            "{\"version\": \"1' OR 1=1\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "sign",
            "{\"version\": -1}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "sign",
            "{\"version\": 999}",
            StatusCode::CONFLICT,
            "version_conflict",
        ),
        (
            "return",
            "{\"reason\": 5}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "return",
            "{\"reason\": [\"x\"]}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "return",
            "{}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "dispatch",
            "{\"units\": \"jinan'--\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "sign",
            &huge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        ("drop_table", "{}", StatusCode::NOT_FOUND, "unknown_command"),
    ] {
        let reply = h
            .post_raw(&handler, &uri(command), body.to_owned(), &[])
            .await;
        let what = format!("{command} {}", body.chars().take(40).collect::<String>());
        assert_refused(&reply, status, &what);
        assert_eq!(reply.body["code"], code, "{what}: {}", reply.text);
    }
    let reply = h
        .post_raw(
            &handler,
            &uri("sign"),
            "{}".into(),
            &[("if-match", "1;DROP")],
        )
        .await;
    assert_refused(&reply, StatusCode::BAD_REQUEST, "If-Match");
    let after = h.get(&handler, &format!("/api/orders/{id}")).await;
    assert_eq!(after.body["version"], order["version"], "version unchanged");
    assert_eq!(after.body["state"], order["state"]);
    assert_eq!(
        h.state.store.order_events(&id).await.expect("events").len(),
        events_before,
        "nothing appended to the ledger"
    );

    let login = |body: String| {
        Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("request")
    };
    let failed_before = h
        .state
        .store
        .audit_count("login.failed")
        .await
        .expect("audit");
    for (body, status) in [
        ("{\"user\": \"agent\"".to_owned(), StatusCode::BAD_REQUEST),
        (
            "{\"user\": 1, \"password\": 2}".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "[\"agent\", \"demo-agent\"]".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "{\"user\": \"agent\", \"password\": \"demo-agent\", \"role\": \"province_admin\"}"
                .to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!(
                "{{\"user\": \"agent\", \"password\": \"{}\"}}",
                "x".repeat(70_000)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let reply = h.send(login(body.clone())).await;
        assert_refused(&reply, status, &body.chars().take(60).collect::<String>());
        assert!(reply.headers.get(header::SET_COOKIE).is_none());
    }
    assert_eq!(
        h.state
            .store
            .audit_count("login.failed")
            .await
            .expect("audit"),
        failed_before,
        "a malformed login is not even a failed attempt"
    );

    // Agent state changes parse the body before anything else (no ACD configured here).
    for (body, status) in [
        ("{\"reason\": ".to_owned(), StatusCode::BAD_REQUEST),
        ("{\"reason\": 5}".to_owned(), StatusCode::BAD_REQUEST),
        (
            "{\"reason\": \"x\", \"agent\": \"1002\"}".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{{\"reason\": \"{}\"}}", "x".repeat(70_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let reply = h
            .post_raw(&handler, "/api/agents/1001/pause", body.clone(), &[])
            .await;
        assert_refused(&reply, status, &body.chars().take(40).collect::<String>());
    }
}

#[tokio::test]
async fn login_lockout_and_csrf() {
    let h = sqlite().await;
    let login = |user: &str, password: &str| {
        Request::post("/api/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"user": user, "password": password}).to_string(),
            ))
            .expect("request")
    };
    let unknown = h.send(login("ghost", "x")).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.body["code"], "bad_credentials");
    let wrong = h.send(login("agent", "x")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.body, unknown.body,
        "same answer for unknown user and wrong password"
    );
    for _ in 0..4 {
        assert_eq!(
            h.send(login("agent", "x")).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = h.send(login("agent", "demo-agent")).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text
    );
    let retry: u64 = locked.headers[header::RETRY_AFTER]
        .to_str()
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=900).contains(&retry));

    let dispatcher = h.login("dispatcher").await;
    let body = order_body("consultation", "legal_aid", None).to_string();
    let no_csrf = h
        .send(
            Request::post("/api/orders")
                .header(header::COOKIE, &dispatcher.cookie)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.clone()))
                .expect("request"),
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(no_csrf.body["code"], "csrf");
    let forged = Session {
        cookie: dispatcher.cookie.clone(),
        csrf: "0".repeat(64),
    };
    assert_eq!(
        h.post_raw(&forged, "/api/orders", body.clone(), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(h.total(&dispatcher).await, 0);
    assert_eq!(
        h.post_raw(&dispatcher, "/api/orders", body, &[])
            .await
            .status,
        StatusCode::CREATED
    );
    let me = h.get(&dispatcher, "/api/me").await;
    assert_eq!(me.body["unit_name"], "济南市司法局", "{}", me.text);
    let out = h.post(&dispatcher, "/api/logout", json!({})).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&dispatcher, "/api/me").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rankings_show_the_unit_after_a_closed_order() {
    let h = sqlite().await;
    let agent = h.login("agent").await;
    let handler = h.login("handler").await;
    let id = id_of(
        &h.create(&agent, order_body("consultation", "legal_aid", None))
            .await,
    );
    h.command(&handler, &id, "sign", json!({})).await;
    h.command(&handler, &id, "start", json!({})).await;
    h.command(&handler, &id, "reply", json!({"text": "答复"}))
        .await;
    let now = chrono::Utc::now().with_timezone(&hotline::calendar::shanghai());
    let month = now.format("%Y-%m").to_string();
    let ranked = h
        .get(
            &agent,
            &format!("/api/rankings?period={month}&by=unit&group=consultation"),
        )
        .await;
    assert_eq!(ranked.status, StatusCode::OK, "{}", ranked.text);
    // (The city's row comes first: its center made the transfer.)
    let row = row_of(&ranked, "jinan-legal-aid");
    assert_eq!(row["level"], "institution", "{}", ranked.text);
    assert_eq!(row["unit_name"], "济南市法律援助中心");
    assert_eq!(row["rank"], 1);
    assert_eq!(row["orders"], 1);
    assert_eq!(row["completion_rate"], 1.0);
    let year = now.format("%Y").to_string();
    let csv = h
        .get(
            &agent,
            &format!("/api/rankings?period={year}&group=consultation&format=csv"),
        )
        .await;
    assert!(csv.text.contains("jinan-legal-aid"), "{}", csv.text);
    let by_category = h
        .get(&agent, &format!("/api/rankings?period={year}&by=category"))
        .await;
    assert_eq!(
        by_category.body["rows"][0]["unit"], "consultation",
        "{}",
        by_category.text
    );
    let other_group = h
        .get(&agent, &format!("/api/rankings?period={year}&group=case"))
        .await;
    assert_eq!(other_group.body["rows"], json!([]));
    assert_eq!(
        h.get(&agent, "/api/rankings?period=2026-13").await.status,
        StatusCode::BAD_REQUEST
    );
    let units = h.get(&agent, "/api/units").await;
    assert!(units.text.contains("jinan-legal-aid"));
    let doc = h.get(&agent, "/api/openapi.json").await;
    assert_eq!(doc.body["openapi"], "3.1.0");
}

#[tokio::test]
async fn scheduler_raises_red_reminder_once() {
    let h = sqlite().await;
    let agent = h.login("agent").await;
    let order = h
        .create(
            &agent,
            order_body("complaint", "unknown", Some("2025-09-30T16:00:00+08:00")),
        )
        .await;
    let id = id_of(&order);
    assert_eq!(order["reminder"], "red", "transfer limit long past");
    let now = chrono::Utc::now().with_timezone(&hotline::calendar::shanghai());
    let notifier = hotline::server::reminders::LogNotifier;
    let raised =
        hotline::server::reminders::remind_once(&h.state.store, &h.state.orders, &notifier, now)
            .await
            .expect("remind");
    assert_eq!(raised, 1);
    let again =
        hotline::server::reminders::remind_once(&h.state.store, &h.state.orders, &notifier, now)
            .await
            .expect("remind");
    assert_eq!(again, 0, "not repeated");
    // A dispatcher's manual 催办 needs no arguments: the running limit and its colour.
    let dispatcher = h.login("dispatcher").await;
    let pressed = h.command(&dispatcher, &id, "remind", json!({})).await;
    assert_eq!(pressed["state"], "pending_dispatch");
    let events = h
        .get(&agent, &format!("/api/orders/{id}/events"))
        .await
        .body;
    let last = events.as_array().and_then(|e| e.last()).expect("event");
    assert_eq!(last["kind"]["type"], "reminded");
    assert_eq!(last["kind"]["level"], "red");
    assert_eq!(last["kind"]["deadline"], "transfer");
    assert_eq!(last["role"], "dispatcher");
    let system = &events.as_array().expect("events")[events.as_array().expect("events").len() - 2];
    assert_eq!(system["role"], "system");
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let h = sqlite().await;
    let doc = hotline::api::openapi::document();
    let operations = hotline::api::openapi::operations(&doc);
    assert!(operations.len() >= 28, "{operations:?}");
    for (method, path) in &operations {
        let uri = path
            .replace("{file}", "jinan.csv")
            .replace("{id}", "GD-none")
            .replace("{command}", "sign")
            .replace("{unit}", "jinan")
            .replace("{call_id}", "call-none")
            .replace("{action}", "sign_in");
        let request = Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .expect("request");
        let reply = h.send(request).await;
        assert!(
            reply.status != StatusCode::NOT_FOUND && reply.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}: {}",
            reply.status
        );
        // The router's own list of the path's methods (405's Allow) is the document's.
        let probe = Request::builder()
            .method("TRACE")
            .uri(&uri)
            .body(Body::empty())
            .expect("request");
        let reply = h.send(probe).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "TRACE {uri}");
        let mut served: Vec<String> = reply
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_lowercase())
            .filter(|m| m != "head")
            .collect();
        served.sort();
        let mut documented: Vec<String> = operations
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m.clone())
            .collect();
        documented.sort();
        assert_eq!(served, documented, "{path}");
    }
}

/// A consultation answered by the legal-aid center, called back dissatisfied by the
/// city's callback clerk: pushed to the supervising unit (jinan) for a second callback.
async fn escalated_to_second_callback(h: &Harness) -> String {
    let agent = h.login("agent").await;
    let handler = h.login("handler").await;
    let callback = h.login("callback").await;
    let id = id_of(
        &h.create(&agent, order_body("consultation", "legal_aid", None))
            .await,
    );
    h.command(&handler, &id, "sign", json!({})).await;
    h.command(&handler, &id, "start", json!({})).await;
    h.command(&handler, &id, "reply", json!({"text": "答复"}))
        .await;
    let escalated = h
        .command(
            &callback,
            &id,
            "record_callback",
            json!({"outcome": {"outcome": "dissatisfied"}, "note": "不满意"}),
        )
        .await;
    assert_eq!(escalated["state"], "second_callback", "{escalated}");
    assert_eq!(escalated["second_callback_unit"], "jinan");
    id
}

/// W-14: the second callback is made by another person, of the supervising unit itself
/// (not the clerk of the first, not a unit above), who has the history to read.
async fn second_callback_by_another_person_of_the_supervising_unit(h: &Harness) {
    let id = escalated_to_second_callback(h).await;
    let callback = h.login("callback").await;
    let seen = h.get(&callback, &format!("/api/orders/{id}")).await.body;
    assert!(
        !allowed(&seen).contains(&"record_callback".to_owned()),
        "{seen}"
    );
    let again = json!({"outcome": {"outcome": "satisfied"}, "note": "满意"});
    let same_clerk = h
        .post(
            &callback,
            &format!("/api/orders/{id}/record_callback"),
            again.clone(),
        )
        .await;
    assert_eq!(
        same_clerk.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        same_clerk.text
    );
    assert_eq!(same_clerk.body["code"], "second_callback_refused");
    assert!(
        same_clerk.text.contains("first callback") && same_clerk.text.contains("W-14"),
        "{}",
        same_clerk.text
    );
    let province = h.login("province-supervisor").await;
    let above = h
        .post(
            &province,
            &format!("/api/orders/{id}/record_callback"),
            again.clone(),
        )
        .await;
    assert_eq!(
        above.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        above.text
    );
    assert_eq!(above.body["code"], "second_callback_refused");
    assert!(
        above.text.contains("supervising unit jinan"),
        "{}",
        above.text
    );
    let supervisor = h.login("supervisor").await;
    let seen = h.get(&supervisor, &format!("/api/orders/{id}")).await.body;
    assert!(
        allowed(&seen).contains(&"record_callback".to_owned()),
        "{seen}"
    );
    let history = h
        .get(&supervisor, &format!("/api/orders/{id}/events"))
        .await;
    assert_eq!(history.status, StatusCode::OK);
    assert!(
        history.text.contains("escalated_for_second_callback"),
        "{}",
        history.text
    );
    let closed = h.command(&supervisor, &id, "record_callback", again).await;
    assert_eq!(closed["state"], "closed", "{closed}");
    let events = h
        .get(&supervisor, &format!("/api/orders/{id}/events"))
        .await;
    let callbacks: Vec<&Value> = events
        .body
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"]["type"] == "callback_recorded")
        .collect();
    assert_eq!(callbacks.len(), 2, "{}", events.text);
    assert_eq!(callbacks[0]["actor"], "callback");
    assert_eq!(callbacks[1]["actor"], "supervisor");
}

#[tokio::test]
async fn sqlite_second_callback_by_another_person_of_the_supervising_unit() {
    second_callback_by_another_person_of_the_supervising_unit(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_second_callback_by_another_person_of_the_supervising_unit() {
    second_callback_by_another_person_of_the_supervising_unit(&postgres().await).await;
}

/// Records every notice it is given.
#[derive(Debug, Default)]
struct Recorded(std::sync::Mutex<Vec<hotline::orders::notify::Notice>>);

impl hotline::orders::notify::Notifier for Recorded {
    fn notify(&self, notice: &hotline::orders::notify::Notice) {
        self.0.lock().expect("lock").push(notice.clone());
    }
}

/// W-14 特殊标记，进行研究处理: still dissatisfied at the second callback → flagged and
/// kept open; the supervising unit is notified, adds study notes and decides its end;
/// listed as open until then.
async fn flagged_order_stays_open_for_study(h: &Harness, recorded: &Recorded) {
    let id = escalated_to_second_callback(h).await;
    let supervisor = h.login("supervisor").await;
    let flagged = h
        .command(
            &supervisor,
            &id,
            "record_callback",
            json!({"outcome": {"outcome": "dissatisfied"}, "note": "仍不满意"}),
        )
        .await;
    assert_eq!(flagged["special_flag"], true, "{flagged}");
    assert_eq!(flagged["state"], "special_study", "{flagged}");
    assert_eq!(flagged["closing"], Value::Null, "{flagged}");
    for command in ["study_note", "conclude_study"] {
        assert!(allowed(&flagged).contains(&command.to_owned()), "{flagged}");
    }
    {
        let notices = recorded.0.lock().expect("lock");
        let notice = notices
            .iter()
            .find(|n| n.order_id == id && n.note == "仍不满意")
            .expect("special-flag notice after commit");
        let body = serde_json::to_value(notice).expect("json");
        assert_eq!(body["event"], "special_flag", "{body}");
        assert_eq!(body["to_unit"], "jinan", "{body}");
    }
    let open = h.get(&supervisor, "/api/orders?flagged=open").await;
    assert_eq!(open.status, StatusCode::OK, "{}", open.text);
    assert_eq!(open.body["total"], 1, "{}", open.text);
    assert_eq!(open.body["items"][0]["id"], id.as_str());
    let listed = h.get(&supervisor, "/api/special_flags").await;
    assert_eq!(listed.body[0]["id"], id.as_str(), "{}", listed.text);
    let lixia = h.login("lixia").await;
    assert_eq!(h.get(&lixia, "/api/special_flags").await.body, json!([]));
    let handler = h.login("handler").await;
    let refused = h
        .post(
            &handler,
            &format!("/api/orders/{id}/study_note"),
            json!({"note": "x"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let empty = h
        .post(
            &supervisor,
            &format!("/api/orders/{id}/study_note"),
            json!({"note": " "}),
        )
        .await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.text
    );
    let noted = h
        .command(
            &supervisor,
            &id,
            "study_note",
            json!({"note": "调阅录音，约谈承办人"}),
        )
        .await;
    assert_eq!(noted["state"], "special_study", "{noted}");
    let agent = h.login("agent").await;
    let withdraw = h
        .post(
            &agent,
            &format!("/api/orders/{id}/withdraw"),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(
        withdraw.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        withdraw.text
    );
    let concluded = h
        .command(
            &supervisor,
            &id,
            "conclude_study",
            json!({"result": "经研究维持原处理意见，已向来电人说明"}),
        )
        .await;
    assert_eq!(concluded["state"], "closed", "{concluded}");
    assert_eq!(concluded["closing"]["reason"], "special_flag");
    let open = h.get(&supervisor, "/api/orders?flagged=open").await;
    assert_eq!(open.body["total"], 0, "{}", open.text);
    let done = h.get(&supervisor, "/api/orders?flagged=concluded").await;
    assert_eq!(done.body["total"], 1, "{}", done.text);
    let bad = h.get(&supervisor, "/api/orders?flagged=maybe").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    let events = h
        .get(&supervisor, &format!("/api/orders/{id}/events"))
        .await;
    assert!(
        events.text.contains("study_note_added") && events.text.contains("study_concluded"),
        "{}",
        events.text
    );
}

fn with_recorder(mut h: Harness) -> (Harness, Arc<Recorded>) {
    let recorded = Arc::new(Recorded::default());
    let mut orders = orders_context();
    orders.notifier = Some(recorded.clone());
    h.state.orders = Arc::new(orders);
    h.app = router(h.state.clone());
    (h, recorded)
}

#[tokio::test]
async fn sqlite_flagged_order_stays_open_for_study() {
    let (h, recorded) = with_recorder(sqlite().await);
    flagged_order_stays_open_for_study(&h, &recorded).await;
}

#[tokio::test]
async fn postgres_flagged_order_stays_open_for_study() {
    let (h, recorded) = with_recorder(postgres().await);
    flagged_order_stays_open_for_study(&h, &recorded).await;
}

#[tokio::test]
async fn bearer_token_writes_without_csrf() {
    use sha2::Digest;
    let token = "s3cret-api-token";
    let digest = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    let text = std::fs::read_to_string(root().join("config/hotline.toml")).expect("config");
    let text = format!(
        "{text}\n[[users]]\nid = \"intake-bot\"\nname = \"网站接入\"\npassword = \"x\"\nroles = [\"agent\"]\nunit = \"jinan\"\napi_token = \"{digest}\"\n"
    );
    let config = Config::from_toml(&text).expect("config with token");
    let calendar =
        Calendar::load(root().join("config/calendar/cn-workdays.toml")).expect("calendar");
    let mut h = sqlite().await;
    h.state.orders = Arc::new(OrdersContext::from_config(&config, calendar));
    h.state.auth = Arc::new(Auth::for_config(&config));
    h.app = router(h.state.clone());
    let request = |auth: &str| {
        Request::post("/api/orders")
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                order_body("consultation", "legal_aid", None).to_string(),
            ))
            .expect("request")
    };
    let created = h.send(request(&format!("Bearer {token}"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let wrong = h.send(request("Bearer nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let me = h
        .send(
            Request::get("/api/me")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(me.body["id"], "intake-bot");
}

/// Sign-in rate by duty shift from real `queue_log` rows (AS-METRICS). The shipped
/// roster puts agents 1001 and 1002 (Jinan) and 2001 (Qingdao) on duty every day from
/// 00:00, so March 2026 has 31 shifts each.
async fn rankings_carry_the_sign_in_rate(h: &Harness) {
    use hotline::queue::{AgentId, QueueLogEntry, QueueLogEvent};
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("time");
    let row = |agent: &str, city: &str, t: &str, event: QueueLogEvent| QueueLogEntry {
        at: at(t),
        queue: hotline::ivr::city::CityId::new(city),
        call: None,
        agent: Some(AgentId::new(agent)),
        event,
    };
    for entry in [
        // 1001 signs in the evening before March and stays: 31 shifts, but the ACD
        // reported it absent on the 5th (e.g. after a restart): 30.
        row(
            "1001",
            "jinan",
            "2026-02-28T20:00:00+08:00",
            QueueLogEvent::SignIn,
        ),
        row(
            "1001",
            "jinan",
            "2026-03-05T00:00:00+08:00",
            QueueLogEvent::Absent {
                shift_start: at("2026-03-05T00:00:00+08:00"),
            },
        ),
        // 1002: signed in from the 10th 08:00 to the 20th 18:00 → the shifts of the
        // 11th to the 20th: 10.
        row(
            "1002",
            "jinan",
            "2026-03-10T08:00:00+08:00",
            QueueLogEvent::SignIn,
        ),
        row(
            "1002",
            "jinan",
            "2026-03-20T18:00:00+08:00",
            QueueLogEvent::SignOut,
        ),
        // Not attendance rows: ignored.
        row(
            "1002",
            "jinan",
            "2026-03-12T09:00:00+08:00",
            QueueLogEvent::Unpause,
        ),
        // 2001 (Qingdao) never signs in: 0 of 31.
    ] {
        h.state
            .store
            .insert_queue_log(&entry)
            .await
            .expect("queue_log row");
    }
    // A consultation received in March, answered by the Jinan agent directly: Jinan
    // is the unit answerable for it.
    let agent = h.login("agent").await;
    let order = h
        .create(
            &agent,
            order_body("consultation", "unknown", Some("2026-03-10T10:00:00+08:00")),
        )
        .await;
    let id = id_of(&order);
    h.command(
        &agent,
        &id,
        "answer_directly",
        json!({"answer": "可以申请法律援助"}),
    )
    .await;
    let ranked = h
        .get(&agent, "/api/rankings?period=2026-03&group=consultation")
        .await;
    assert_eq!(ranked.status, StatusCode::OK, "{}", ranked.text);
    let jinan = ranked.body["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["unit"] == "jinan"))
        .unwrap_or_else(|| panic!("no jinan row: {}", ranked.text));
    assert_eq!(jinan["shifts_scheduled"], 62, "{jinan}");
    assert_eq!(jinan["shifts_signed_in"], 40, "{jinan}");
    assert_eq!(jinan["sign_in_rate"], 0.645, "{jinan}");
    let sign_in = ranked.body["sign_in"].as_array().expect("sign_in");
    let qingdao = sign_in
        .iter()
        .find(|r| r["unit"] == "qingdao")
        .unwrap_or_else(|| panic!("no qingdao: {}", ranked.text));
    assert_eq!(qingdao["sign_in_rate"], 0.0, "rostered, never signed in");
    assert_eq!(qingdao["shifts_scheduled"], 31);
    assert_eq!(qingdao["unit_name"], "青岛市司法局");
    // A unit without agents on a roster has no rate: null, not 100 %.
    assert!(
        sign_in.iter().all(|r| r["unit"] != "jinan-legal-aid"),
        "{}",
        ranked.text
    );
    let csv = h
        .get(
            &agent,
            "/api/rankings?period=2026-03&group=consultation&format=csv",
        )
        .await;
    assert!(
        // New columns (level, withdrawn) are appended after these.
        csv.text
            .lines()
            .next()
            .is_some_and(|header| header
                .contains(",overdue,sign_in_rate,shifts_scheduled,shifts_signed_in,")),
        "{}",
        csv.text
    );
    assert!(csv.text.contains(",0.645,62,40"), "{}", csv.text);
    // Ranked by sign-in rate (W-19 签到率), cities among themselves: Qingdao, with no
    // order in the period, is ranked too (its shifts count).
    let by_sign_in = h
        .get(
            &agent,
            "/api/rankings?period=2026-03&group=consultation&metric=sign_in_rate&level=city",
        )
        .await;
    let cities: Vec<(&str, &Value, &Value)> = by_sign_in.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["unit"].as_str().unwrap_or_default(),
                &r["rank"],
                &r["sign_in_rate"],
            )
        })
        .collect();
    assert_eq!(
        cities,
        vec![
            ("jinan", &json!(1), &json!(0.645)),
            ("qingdao", &json!(2), &json!(0.0))
        ],
        "{}",
        by_sign_in.text
    );
    assert_eq!(row_of(&by_sign_in, "qingdao")["orders"], 0);
    // Before the roster starts (2026-01-01): no shift, no rate.
    let before = h.get(&agent, "/api/rankings?period=2025-12").await;
    assert_eq!(before.body["sign_in"], json!([]), "{}", before.text);
}

#[tokio::test]
async fn sqlite_rankings_carry_the_sign_in_rate_from_queue_log() {
    rankings_carry_the_sign_in_rate(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_rankings_carry_the_sign_in_rate_from_queue_log() {
    rankings_carry_the_sign_in_rate(&postgres().await).await;
}

/// An order written to the store as the API would have written it, but at past
/// moments: `steps` (command, actor, time) applied in order with the pure core. Lets a
/// test hold an order completed in a past period (the API only acts "now").
async fn backdated_order(
    h: &Harness,
    fields: hotline::ticket::OrderFields,
    steps: Vec<(hotline::ticket::Command, hotline::ticket::Actor, &str)>,
) -> String {
    use hotline::ticket::{Context, Order, OrderId, apply};
    let calendar = h.state.orders.calendar.current();
    let ctx = Context {
        calendar: &calendar,
        units: &h.state.orders.units,
        routing: &h.state.orders.routing,
    };
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("time");
    let id = OrderId(format!("GDTEST{:016X}", rand::random::<u64>()));
    let mut order = Order::new(id.clone());
    let first = at(steps[0].2);
    let mut events = Vec::new();
    let mut steps = steps;
    steps.insert(
        0,
        (
            hotline::ticket::Command::Create { fields },
            steps[0].1.clone(),
            steps[0].2,
        ),
    );
    for (command, actor, t) in steps {
        let (next, mut produced) = apply(&order, command, &actor, at(t), &ctx).expect("step");
        order = next;
        events.append(&mut produced);
    }
    h.state
        .store
        .append_order_events(&order, 0, &events, None, first.timestamp_millis())
        .await
        .expect("append");
    id.0
}

fn actor_of(user: &str, role: hotline::ticket::Role, unit: &str) -> hotline::ticket::Actor {
    hotline::ticket::Actor {
        user_id: hotline::ticket::UserId(user.to_owned()),
        roles: vec![role],
        unit: hotline::ticket::UnitId::new(unit),
    }
}

fn row_of<'a>(ranked: &'a Reply, unit: &str) -> &'a Value {
    ranked.body["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["unit"] == unit))
        .unwrap_or_else(|| panic!("no {unit} row: {}", ranked.text))
}

/// W-19 (自动排名，不需人工干预), H-17-5 (不得隐瞒): an agent or dispatcher cannot
/// withdraw an order on their own word (422 naming what is missing); with the caller's
/// confirmation on a call on record, or by a supervisor, it is withdrawn — and keeps
/// counting in the period it was received, as withdrawn and overdue.
async fn withdrawal_needs_confirmation_and_keeps_counting(h: &Harness) {
    let agent = h.login("agent").await;
    let dispatcher = h.login("dispatcher").await;
    let supervisor = h.login("supervisor").await;
    let admin = h.login("admin").await;
    // Received in February 2026 (its 5-working-day limit long past), waiting for
    // dispatch at the Jinan center.
    let complaint = h
        .create(
            &agent,
            order_body("complaint", "unknown", Some("2026-02-02T10:00:00+08:00")),
        )
        .await;
    let id = id_of(&complaint);
    assert!(
        !allowed(&complaint).contains(&"withdraw".to_owned()),
        "no call on record: the agent is not offered withdraw: {complaint}"
    );
    for who in [&agent, &dispatcher] {
        let refused = h
            .post(
                who,
                &format!("/api/orders/{id}/withdraw"),
                json!({"reason": "来电人不再需要"}),
            )
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.text
        );
        assert_eq!(refused.body["code"], "withdrawal_not_confirmed");
        let message = refused.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("caller's confirmation") && message.contains("supervisor"),
            "{message}"
        );
        let stranger = h
            .post(
                who,
                &format!("/api/orders/{id}/withdraw"),
                json!({"reason": "来电人不再需要", "call_id": "call-of-someone-else"}),
            )
            .await;
        assert_eq!(stranger.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            stranger.body["code"], "call_not_on_record",
            "{}",
            stranger.text
        );
    }
    assert_eq!(
        h.get(&admin, &format!("/api/orders/{id}")).await.body["state"],
        "pending_dispatch"
    );
    // A supervisor approves: withdrawn under the supervisor's name.
    let withdrawn = h
        .command(
            &supervisor,
            &id,
            "withdraw",
            json!({"reason": "来电人电话撤回，督办岗批准"}),
        )
        .await;
    assert_eq!(withdrawn["state"], "closed");
    let events = h.get(&admin, &format!("/api/orders/{id}/events")).await;
    assert!(
        events.text.contains(r#""by":"supervisor_approval""#),
        "{}",
        events.text
    );
    // Opened from a call: the caller confirms on that call, and the agent withdraws.
    let mut from_call = order_body("suggestion", "unknown", Some("2026-02-03T10:00:00+08:00"));
    from_call["call_id"] = json!("call-withdraw-1");
    let second = h.create(&agent, from_call).await;
    assert!(
        allowed(&second).contains(&"withdraw".to_owned()),
        "{second}"
    );
    let second_id = id_of(&second);
    h.command(
        &agent,
        &second_id,
        "withdraw",
        json!({"reason": "来电人来电确认撤回", "call_id": "call-withdraw-1"}),
    )
    .await;
    // Both still count in February, as withdrawn and overdue (withdrawn after the
    // limit), in the rankings and in the dashboard's figures alike.
    let ranked = h
        .get(
            &agent,
            "/api/rankings?period=2026-02&group=complaint_suggestion",
        )
        .await;
    assert_eq!(ranked.status, StatusCode::OK, "{}", ranked.text);
    let jinan = row_of(&ranked, "jinan");
    assert_eq!(
        (&jinan["orders"], &jinan["withdrawn"], &jinan["overdue"]),
        (&json!(2), &json!(2), &json!(2)),
        "{jinan}"
    );
    assert_eq!(jinan["completion_rate"], 0.0, "{jinan}");
    let stats = h.get(&admin, "/api/stats/orders?period=2026-02").await;
    assert_eq!(stats.body["total"], 2, "{}", stats.text);
    assert_eq!(stats.body["overdue"], 2, "{}", stats.text);
}

#[tokio::test]
async fn sqlite_withdrawal_needs_confirmation_and_keeps_counting() {
    withdrawal_needs_confirmation_and_keeps_counting(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_withdrawal_needs_confirmation_and_keeps_counting() {
    let h = postgres().await;
    withdrawal_needs_confirmation_and_keeps_counting(&h).await;
}

/// AS-RANK, W-19: one definition of overdue for the rankings and `/api/stats/orders`
/// (open past the limit at the moment of the ranking, or finished after it); an
/// order open past its limit is not on time; each unit level is ranked on its own.
async fn rankings_agree_with_stats_and_rank_each_level(h: &Harness) {
    use hotline::ticket::{BusinessArea, Category, Channel, Command, Contact, OrderFields, Role};
    let agent = h.login("agent").await;
    let admin = h.login("admin").await;
    let handler = actor_of("handler", Role::UnitHandler, "jinan-legal-aid");
    // 1. A legal-aid consultation received 2 March, answered by the legal-aid center
    //    the next day: on time (written at those moments).
    let fields = OrderFields {
        contact: Contact {
            name: "李四".to_owned(),
            phone: "13900000000".to_owned(),
        },
        category: Category::Consultation,
        area: BusinessArea::LegalAid,
        description: "法律援助条件".to_owned(),
        channel: Channel::Phone,
        city: hotline::ticket::UnitId::new("jinan"),
        received_at: chrono::DateTime::parse_from_rfc3339("2026-03-02T10:00:00+08:00")
            .expect("time"),
        ..OrderFields::default()
    };
    let jinan_agent = actor_of("agent", Role::Agent, "jinan");
    backdated_order(
        h,
        fields,
        vec![
            (Command::Submit, jinan_agent, "2026-03-02T10:05:00+08:00"),
            (Command::Sign, handler.clone(), "2026-03-03T09:00:00+08:00"),
            (Command::Start, handler.clone(), "2026-03-03T09:01:00+08:00"),
            (
                Command::Reply {
                    text: "符合条件".to_owned(),
                },
                handler,
                "2026-03-03T10:00:00+08:00",
            ),
        ],
    )
    .await;
    // 2. Another, auto-routed to the center and never answered: open past its limit.
    h.create(
        &agent,
        order_body(
            "consultation",
            "legal_aid",
            Some("2026-03-02T11:00:00+08:00"),
        ),
    )
    .await;
    // 3. One the Jinan agent answers only now: completed after its limit (the city).
    let late = h
        .create(
            &agent,
            order_body("consultation", "unknown", Some("2026-03-02T12:00:00+08:00")),
        )
        .await;
    h.command(
        &agent,
        &id_of(&late),
        "answer_directly",
        json!({"answer": "可以"}),
    )
    .await;
    // 4. A complaint withdrawn now by a supervisor: withdrawn after its limit.
    let complaint = h
        .create(
            &agent,
            order_body("complaint", "unknown", Some("2026-03-03T09:00:00+08:00")),
        )
        .await;
    let supervisor = h.login("supervisor").await;
    h.command(
        &supervisor,
        &id_of(&complaint),
        "withdraw",
        json!({"reason": "督办岗批准撤回"}),
    )
    .await;

    let consultations = h
        .get(
            &agent,
            "/api/rankings?period=2026-03&group=consultation&metric=on_time_rate",
        )
        .await;
    assert_eq!(
        consultations.status,
        StatusCode::OK,
        "{}",
        consultations.text
    );
    let center = row_of(&consultations, "jinan-legal-aid");
    assert_eq!(center["level"], "institution", "{center}");
    assert_eq!(
        (&center["orders"], &center["completed"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(center["overdue"], 1, "{center}");
    // 1 on time of 2 decided (the open one past its limit is not on time).
    assert_eq!(center["on_time_rate"], 0.5, "{center}");
    let city = row_of(&consultations, "jinan");
    assert_eq!(city["level"], "city", "{city}");
    assert_eq!(
        (&city["overdue"], &city["on_time_rate"]),
        (&json!(1), &json!(0.0))
    );
    // Levels ranked separately: each is first of its own level.
    assert_eq!((&center["rank"], &city["rank"]), (&json!(1), &json!(1)));
    let levels = &consultations.body["levels"];
    assert_eq!(
        levels["institution"][0]["unit"], "jinan-legal-aid",
        "{levels}"
    );
    assert_eq!(levels["city"][0]["unit"], "jinan", "{levels}");
    assert_eq!(levels["county"], json!([]), "{levels}");
    let only_city = h
        .get(
            &agent,
            "/api/rankings?period=2026-03&group=consultation&level=city",
        )
        .await;
    assert_eq!(
        only_city.body["rows"].as_array().map(Vec::len),
        Some(1),
        "{}",
        only_city.text
    );
    assert_eq!(only_city.body["rows"][0]["unit"], "jinan");
    assert_eq!(
        h.get(&agent, "/api/rankings?period=2026-03&level=galaxy")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // The rankings' overdue, over every group and level, is the dashboard's.
    let mut ranked_overdue = 0;
    for group in ["case", "consultation", "complaint_suggestion"] {
        let ranked = h
            .get(
                &agent,
                &format!("/api/rankings?period=2026-03&group={group}"),
            )
            .await;
        ranked_overdue += ranked.body["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["overdue"].as_i64().expect("overdue"))
            .sum::<i64>();
    }
    let stats = h.get(&admin, "/api/stats/orders?period=2026-03").await;
    assert_eq!(stats.body["total"], 4, "{}", stats.text);
    assert_eq!(stats.body["overdue"], 3, "{}", stats.text);
    assert_eq!(ranked_overdue, 3);
}

#[tokio::test]
async fn sqlite_rankings_agree_with_stats_and_rank_each_level() {
    rankings_agree_with_stats_and_rank_each_level(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_rankings_agree_with_stats_and_rank_each_level() {
    let h = postgres().await;
    rankings_agree_with_stats_and_rank_each_level(&h).await;
}

/// H-8, H-9, H-13-2 (TK-INTAKE): an order opened from a call is received when the call
/// arrived — not when the agent saved it, nor at a time the form claims — so its
/// limits count from the arrival; an order from another channel is received at its
/// submission there, which the registration must give.
async fn receipt_is_the_calls_arrival_or_the_submission(h: &Harness) {
    let agent = h.login("agent").await;
    // The call arrived on 2025-09-30 at 16:00, before National Day; the agent saves
    // the order now, and the form even claims a later receipt.
    let arrival = chrono::DateTime::parse_from_rfc3339("2025-09-30T16:00:00+08:00").expect("time");
    let record =
        hotline::ivr::cdr::CdrBuilder::new("call-receipt-1", "13812345678", "053112348", arrival)
            .finish(arrival + chrono::TimeDelta::minutes(6));
    h.state
        .store
        .insert_call(&record, None)
        .await
        .expect("call record");
    let mut body = order_body("consultation", "unknown", Some("2025-10-10T09:00:00+08:00"));
    body["call_id"] = json!("call-receipt-1");
    let order = h.create(&agent, body).await;
    let received = chrono::DateTime::parse_from_rfc3339(
        order["fields"]["received_at"]
            .as_str()
            .expect("received_at"),
    )
    .expect("rfc3339");
    assert_eq!(received, arrival, "{order}");
    // 1 working day from the arrival, across the holiday.
    assert_eq!(
        order["deadlines"]["transfer_due_display"], "2025-10-09T24:00+08:00",
        "{order}"
    );
    // Without a received_at either: the arrival, not now.
    let record =
        hotline::ivr::cdr::CdrBuilder::new("call-receipt-2", "13812345678", "053112348", arrival)
            .finish(arrival);
    h.state
        .store
        .insert_call(&record, None)
        .await
        .expect("call record");
    let mut body = order_body("consultation", "unknown", None);
    body["call_id"] = json!("call-receipt-2");
    let order = h.create(&agent, body).await;
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(order["fields"]["received_at"].as_str().expect("at"))
            .expect("rfc3339"),
        arrival,
        "{order}"
    );
    // W-7: a call that overflowed to a Jinan agent from Qingdao is registered under
    // Qingdao, the caller's city as the call resolved it, when the form names none.
    // Without having answered that call, a Jinan agent may not register for Qingdao.
    let mut overflowed =
        hotline::ivr::cdr::CdrBuilder::new("call-receipt-3", "053288001234", "12348", arrival);
    overflowed.city(&hotline::ivr::city::CityResolution {
        city: hotline::domain::CityId::new("qingdao"),
        how: hotline::ivr::city::ResolvedBy::AreaCode,
    });
    let record = overflowed.finish(arrival);
    h.state
        .store
        .insert_call(&record, None)
        .await
        .expect("call record");
    let mut body = order_body("consultation", "unknown", None);
    body["call_id"] = json!("call-receipt-3");
    body.as_object_mut().expect("object").remove("city");
    let refused = h.post(&agent, "/api/orders", body).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    // Agent 1001 (the `agent` user's phone) answered this one.
    let mut overflowed =
        hotline::ivr::cdr::CdrBuilder::new("call-receipt-4", "053288001234", "12348", arrival);
    overflowed
        .city(&hotline::ivr::city::CityResolution {
            city: hotline::domain::CityId::new("qingdao"),
            how: hotline::ivr::city::ResolvedBy::AreaCode,
        })
        .agent_answered(arrival, "1001");
    let record = overflowed.finish(arrival);
    h.state
        .store
        .insert_call(&record, None)
        .await
        .expect("call record");
    let mut body = order_body("consultation", "unknown", None);
    body["call_id"] = json!("call-receipt-4");
    body.as_object_mut().expect("object").remove("city");
    let order = h.create(&agent, body).await;
    assert_eq!(order["fields"]["city"], "qingdao", "{order}");
    // It waits for Qingdao's dispatchers, the registration in the agent's name.
    assert_eq!(order["state"], "pending_dispatch", "{order}");
    // Another channel: the submission time is required, and kept.
    let mut web = order_body("consultation", "unknown", None);
    web["channel"] = json!("web");
    let refused = h.post(&agent, "/api/orders", web.clone()).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert_eq!(refused.body["field"], "received_at", "{}", refused.text);
    web["received_at"] = json!("2025-09-30T16:00:00+08:00");
    let order = h.create(&agent, web).await;
    assert_eq!(
        order["deadlines"]["transfer_due_display"], "2025-10-09T24:00+08:00",
        "{order}"
    );
}

#[tokio::test]
async fn sqlite_receipt_is_the_calls_arrival_or_the_submission() {
    receipt_is_the_calls_arrival_or_the_submission(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_receipt_is_the_calls_arrival_or_the_submission() {
    let h = postgres().await;
    receipt_is_the_calls_arrival_or_the_submission(&h).await;
}

/// H-13-1: the dispatcher reviewing an order corrects urgency and contact details,
/// not only category and area; each correction is an event (before and after, the
/// contact masked for roles that may not see it), a new urgency moves the limits, and
/// the corrected phone is what the phone search finds.
async fn dispatch_corrects_urgency_and_contact(h: &Harness) {
    let agent = h.login("agent").await;
    let dispatcher = h.login("dispatcher").await;
    let supervisor = h.login("supervisor").await;
    let order = h
        .create(&agent, order_body("consultation", "unknown", None))
        .await;
    let id = id_of(&order);
    let bad = h
        .post(
            &dispatcher,
            &format!("/api/orders/{id}/dispatch"),
            json!({"units": ["jinan-lixia"], "contact_phone": "138; DROP TABLE"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert_eq!(bad.body["field"], "contact_phone");
    let dispatched = h
        .command(
            &dispatcher,
            &id,
            "dispatch",
            json!({"units": ["jinan-lixia"], "category": "complaint", "urgency": "urgent",
                   "contact_name": "张三丰", "contact_phone": "13987654321"}),
        )
        .await;
    assert_eq!(dispatched["fields"]["urgency"], "urgent", "{dispatched}");
    assert_eq!(dispatched["fields"]["category"], "complaint");
    assert_eq!(dispatched["fields"]["contact_phone"], "13987654321");
    assert!(
        dispatched["deadlines"]["callback_due"].is_string(),
        "urgent: a callback limit: {dispatched}"
    );
    let events = h
        .get(&dispatcher, &format!("/api/orders/{id}/events"))
        .await;
    let corrected = events.body["events"]
        .as_array()
        .or(events.body.as_array())
        .and_then(|list| {
            list.iter()
                .find(|e| e["kind"]["type"] == "fields_corrected")
        })
        .unwrap_or_else(|| panic!("no correction event: {}", events.text))
        .clone();
    assert_eq!(
        corrected["kind"]["fields"]["urgency"], "urgent",
        "{corrected}"
    );
    assert_eq!(
        corrected["kind"]["before"]["urgency"], "normal",
        "{corrected}"
    );
    assert_eq!(
        corrected["kind"]["before"]["contact"]["phone"],
        "13812345678"
    );
    assert_eq!(
        corrected["kind"]["fields"]["contact"]["phone"],
        "13987654321"
    );
    assert_eq!(corrected["actor"], "dispatcher");
    // A supervisor sees the history with the numbers masked, before and after.
    let masked = h
        .get(&supervisor, &format!("/api/orders/{id}/events"))
        .await;
    assert!(masked.text.contains("139****4321"), "{}", masked.text);
    assert!(!masked.text.contains("13987654321") && !masked.text.contains("13812345678"));
    // The corrected number finds the order.
    let found = h.get(&agent, "/api/orders?phone=13987654321").await;
    assert_eq!(found.body["total"], 1, "{}", found.text);
}

#[tokio::test]
async fn sqlite_dispatch_corrects_urgency_and_contact() {
    dispatch_corrects_urgency_and_contact(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_dispatch_corrects_urgency_and_contact() {
    let h = postgres().await;
    dispatch_corrects_urgency_and_contact(&h).await;
}

/// H-8 (解释说明): a complaint about a matter outside the justice system, which the
/// agent may not answer as a consultation (422), is closed with the explanation given
/// to the caller, and counts as completed for the answering city.
async fn outside_the_remit_is_closed_with_the_explanation(h: &Harness) {
    let agent = h.login("agent").await;
    let order = h
        .create(&agent, order_body("complaint", "unknown", None))
        .await;
    let id = id_of(&order);
    assert!(
        allowed(&order).contains(&"explain_outside_remit".to_owned()),
        "{order}"
    );
    let refused = h
        .post(
            &agent,
            &format!("/api/orders/{id}/answer_directly"),
            json!({"answer": "请向住建部门反映"}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    let closed = h
        .command(
            &agent,
            &id,
            "explain_outside_remit",
            json!({"explanation": "物业收费纠纷不属司法行政职能，已告知向住建部门反映"}),
        )
        .await;
    assert_eq!(closed["state"], "closed", "{closed}");
    assert_eq!(closed["fields"]["business_area"], "other", "{closed}");
    let events = h.get(&agent, &format!("/api/orders/{id}/events")).await;
    assert!(
        events.text.contains("explained_outside_remit") && events.text.contains("outside_remit"),
        "{}",
        events.text
    );
    let now = chrono::Utc::now().with_timezone(&hotline::calendar::shanghai());
    let ranked = h
        .get(
            &agent,
            &format!(
                "/api/rankings?period={}&group=complaint_suggestion&level=city",
                now.format("%Y-%m")
            ),
        )
        .await;
    let jinan = row_of(&ranked, "jinan");
    assert_eq!(
        (&jinan["orders"], &jinan["completed"]),
        (&json!(1), &json!(1)),
        "{jinan}"
    );
}

#[tokio::test]
async fn sqlite_outside_the_remit_is_closed_with_the_explanation() {
    outside_the_remit_is_closed_with_the_explanation(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_outside_the_remit_is_closed_with_the_explanation() {
    let h = postgres().await;
    outside_the_remit_is_closed_with_the_explanation(&h).await;
}

/// H-13-3: an order the city returns up waits at the province, where the shipped
/// province dispatcher sends it on; the city's dispatcher no longer may.
async fn order_returned_to_the_province_is_dispatched_there(h: &Harness) {
    let agent = h.login("agent").await;
    let dispatcher = h.login("dispatcher").await;
    let province = h.login("province-dispatcher").await;
    let id = id_of(
        &h.create(&agent, order_body("complaint", "unknown", None))
            .await,
    );
    let up = h
        .command(
            &dispatcher,
            &id,
            "return_upward",
            json!({"reason": "涉及两市，请省平台转办"}),
        )
        .await;
    assert_eq!(up["state"], "pending_dispatch", "{up}");
    assert_eq!(up["dispatch_unit"], "province", "{up}");
    let stuck = h
        .post(
            &dispatcher,
            &format!("/api/orders/{id}/dispatch"),
            json!({"units": ["qingdao-legal-aid"], "category": null, "area": null}),
        )
        .await;
    assert_eq!(stuck.status, StatusCode::FORBIDDEN, "{}", stuck.text);
    let seen = h.get(&province, &format!("/api/orders/{id}")).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
    assert!(
        allowed(&seen.body).contains(&"dispatch".to_owned()),
        "{}",
        seen.text
    );
    let sent = h
        .command(
            &province,
            &id,
            "dispatch",
            json!({"units": ["qingdao-legal-aid"], "category": null, "area": "legal_aid"}),
        )
        .await;
    assert_eq!(sent["state"], "dispatched", "{sent}");
    let qingdao_order = h.get(&province, "/api/orders?unit=qingdao-legal-aid").await;
    assert_eq!(qingdao_order.body["total"], 1, "{}", qingdao_order.text);
}

#[tokio::test]
async fn sqlite_order_returned_to_the_province_is_dispatched_there() {
    order_returned_to_the_province_is_dispatched_there(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_order_returned_to_the_province_is_dispatched_there() {
    order_returned_to_the_province_is_dispatched_there(&postgres().await).await;
}

/// `check-config`'s dispatch check: the shipped users leave no level without a
/// dispatcher; without the province dispatcher, the province (where returned orders
/// wait) and every city but Jinan are named.
#[test]
fn check_config_names_levels_without_a_dispatcher() {
    let text = std::fs::read_to_string(root().join("config/hotline.toml")).expect("config");
    let shipped = Config::from_toml(&text).expect("shipped config");
    assert_eq!(
        hotline::api::orders::dispatch_gaps(&shipped),
        Vec::<String>::new()
    );
    let mut without = shipped.clone();
    without.users.retain(|u| u.id != "province-dispatcher");
    let gaps = hotline::api::orders::dispatch_gaps(&without);
    assert!(
        gaps.iter().any(|g| g.contains("province province")),
        "{gaps:?}"
    );
    assert!(gaps.iter().any(|g| g.contains("city qingdao")), "{gaps:?}");
    assert!(!gaps.iter().any(|g| g.contains("city jinan")), "{gaps:?}");
}

/// W-7: a county registers a matter it received itself and handles it; an institution
/// still may not register.
async fn county_registers_and_handles_its_own_matter(h: &Harness) {
    let lixia = h.login("lixia").await;
    let mut body = order_body("consultation", "grassroots_legal_service", None);
    body["city"] = Value::Null;
    body["description"] = json!("来所咨询土地承包纠纷");
    let created = h.create(&lixia, body.clone()).await;
    let id = id_of(&created);
    assert_eq!(created["state"], "dispatched", "{created}");
    assert_eq!(created["fields"]["city"], "jinan", "{created}");
    let events = h.get(&lixia, &format!("/api/orders/{id}/events")).await;
    assert!(
        events.text.contains("self_registered") && events.text.contains("jinan-lixia"),
        "{}",
        events.text
    );
    h.command(&lixia, &id, "sign", json!({})).await;
    h.command(&lixia, &id, "start", json!({})).await;
    let replied = h
        .command(&lixia, &id, "reply", json!({"text": "已当面解答"}))
        .await;
    assert_eq!(replied["state"], "closed", "{replied}");
    let supervisor = h.login("supervisor").await;
    let listed = h.get(&supervisor, "/api/orders?unit=jinan-lixia").await;
    assert_eq!(listed.body["total"], 1, "{}", listed.text);
    let handler = h.login("handler").await;
    let refused = h.post(&handler, "/api/orders", body).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
}

#[tokio::test]
async fn sqlite_county_registers_and_handles_its_own_matter() {
    county_registers_and_handles_its_own_matter(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_county_registers_and_handles_its_own_matter() {
    county_registers_and_handles_its_own_matter(&postgres().await).await;
}

/// H-12-4: a full number is revealed only for a reason; the reveal is in the order's
/// history (without the number) and supervisors and province administrators read the
/// audit: who, which order, when, why.
async fn reveal_needs_a_reason_and_is_audited(h: &Harness) {
    let agent = h.login("agent").await;
    let id = id_of(
        &h.create(&agent, order_body("complaint", "unknown", None))
            .await,
    );
    let supervisor = h.login("supervisor").await;
    let uri = format!("/api/orders/{id}/reveal_contact");
    for body in [json!({}), json!({"reason": "  "})] {
        let refused = h.post(&supervisor, &uri, body).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.text
        );
        assert_eq!(refused.body["field"], "reason", "{}", refused.text);
        assert!(!refused.text.contains("13812345678"), "{}", refused.text);
    }
    assert_eq!(
        h.state
            .store
            .audit_count("order.reveal_contact")
            .await
            .expect("audit"),
        0
    );
    let before = chrono::Utc::now();
    let revealed = h
        .post(
            &supervisor,
            &uri,
            json!({"reason": "来电人要求回电，核对号码"}),
        )
        .await;
    assert_eq!(revealed.status, StatusCode::OK, "{}", revealed.text);
    assert_eq!(revealed.body["contact_phone"], "13812345678");
    let events = h
        .get(&supervisor, &format!("/api/orders/{id}/events"))
        .await;
    assert!(
        events.text.contains("contact_revealed")
            && events.text.contains("来电人要求回电，核对号码"),
        "{}",
        events.text
    );
    assert!(!events.text.contains("13812345678"), "{}", events.text);
    let audit = h.get(&supervisor, "/api/reveals").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    let line = &audit.body[0];
    assert_eq!(line["user"], "supervisor", "{line}");
    assert_eq!(line["order_id"], id.as_str(), "{line}");
    assert_eq!(line["reason"], "来电人要求回电，核对号码", "{line}");
    let at =
        chrono::DateTime::parse_from_rfc3339(line["at"].as_str().expect("at")).expect("rfc3339");
    assert!(at.timestamp() >= before.timestamp() - 1, "{line}");
    let admin = h.login("admin").await;
    let by_order = h.get(&admin, &format!("/api/reveals?order={id}")).await;
    assert_eq!(
        by_order.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        by_order.text
    );
    let other = h.get(&admin, "/api/reveals?order=nope").await;
    assert_eq!(other.body, json!([]), "{}", other.text);
    for user in ["agent", "lixia", "handler"] {
        let s = h.login(user).await;
        let denied = h.get(&s, "/api/reveals").await;
        assert_eq!(
            denied.status,
            StatusCode::FORBIDDEN,
            "{user}: {}",
            denied.text
        );
    }
    let bad = h.get(&admin, "/api/reveals?order=x';--").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
}

#[tokio::test]
async fn sqlite_reveal_needs_a_reason_and_is_audited() {
    reveal_needs_a_reason_and_is_audited(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_reveal_needs_a_reason_and_is_audited() {
    reveal_needs_a_reason_and_is_audited(&postgres().await).await;
}

/// A contact name holding a zero-width or bidi control character would show in lists
/// as another name: creating or correcting an order with one is 422 naming
/// `contact_name`, and nothing is stored.
async fn names_with_invisible_characters_are_refused(h: &Harness) {
    let agent = h.login("agent").await;
    let dispatcher = h.login("dispatcher").await;
    let hidden = [
        '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{202A}', '\u{202B}',
        '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        '\u{200E}', '\u{200F}', '\u{061C}',
    ];
    for c in hidden {
        let mut body = order_body("consultation", "legal_aid", None);
        body["contact_name"] = json!(format!("张{c}三"));
        let reply = h.post(&agent, "/api/orders", body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "U+{:04X}: {}",
            u32::from(c),
            reply.text
        );
        assert_eq!(reply.body["field"], "contact_name", "{}", reply.text);
    }
    assert_eq!(h.total(&dispatcher).await, 0, "nothing stored");
    let order = h
        .create(&agent, order_body("consultation", "unknown", None))
        .await;
    let id = id_of(&order);
    let reply = h
        .post(
            &dispatcher,
            &format!("/api/orders/{id}/dispatch"),
            json!({"units": ["jinan-lixia"], "contact_name": "\u{202E}三张"}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(reply.body["field"], "contact_name");
    let stored = h.get(&dispatcher, &format!("/api/orders/{id}")).await;
    assert_eq!(stored.body["state"], "pending_dispatch", "{}", stored.text);
    assert_eq!(
        stored.body["fields"]["contact_name"], "张三",
        "{}",
        stored.text
    );
}

#[tokio::test]
async fn sqlite_names_with_invisible_characters_are_refused() {
    names_with_invisible_characters_are_refused(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_names_with_invisible_characters_are_refused() {
    names_with_invisible_characters_are_refused(&postgres().await).await;
}

/// TK-EXTEND (W-12): a unit head who asked for an extension for their own unit may not
/// approve it themselves: 422 `extension_refused` with the reason, the request stays
/// pending and the limit unchanged.
async fn a_unit_head_may_not_decide_their_own_extension(h: &Harness) {
    let agent = h.login("agent").await;
    // Handler and head of Shizhong district at once.
    let shizhong = h.login("shizhong").await;
    let order = h
        .create(&agent, order_body("suggestion", "mediation", None))
        .await;
    let id = id_of(&order);
    assert_eq!(order["units"][0]["unit"], "jinan-shizhong");
    h.command(&shizhong, &id, "sign", json!({})).await;
    h.command(&shizhong, &id, "start", json!({})).await;
    let requested = h
        .command(
            &shizhong,
            &id,
            "request_extension",
            json!({"extra_working_days": 2, "reason": "需补充材料"}),
        )
        .await;
    let due = requested["deadlines"]["feedback_due"].clone();
    assert!(due.is_string(), "{requested}");
    let reply = h
        .post(
            &shizhong,
            &format!("/api/orders/{id}/decide_extension"),
            json!({"decision": "approve", "reason": ""}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert_eq!(reply.body["code"], "extension_refused", "{}", reply.text);
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("may not decide")),
        "{}",
        reply.text
    );
    let stored = h.get(&shizhong, &format!("/api/orders/{id}")).await;
    assert_eq!(
        stored.body["deadlines"]["feedback_due"], due,
        "{}",
        stored.text
    );
}

#[tokio::test]
async fn sqlite_a_unit_head_may_not_decide_their_own_extension() {
    a_unit_head_may_not_decide_their_own_extension(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_a_unit_head_may_not_decide_their_own_extension() {
    a_unit_head_may_not_decide_their_own_extension(&postgres().await).await;
}

/// The same store and database behind a router whose rankings weigh the combined score
/// with `weights` (as `[ranking.weights]` would).
fn with_weights(h: &Harness, weights: hotline::ticket::RankingWeights) -> Harness {
    let mut orders = orders_context();
    orders.ranking_weights = weights;
    let state = AppState {
        orders: Arc::new(orders),
        auth: Arc::new(Auth::for_config(&shipped_config())),
        ..h.state.clone()
    };
    Harness {
        app: router(state.clone()),
        state,
        _dir: None,
        db_file: None,
    }
}

/// W-19, H-8, H-13-2: transfer timeliness (first dispatch within 1 working day, urgent
/// within 1 hour, from receipt) for every order, shown in the unit and business-area
/// (法律服务需求类型) rankings; the combined score with the configured weights, printed
/// with the ranking. March 2026: the 2nd is a Monday, so a normal order received then
/// must be dispatched by 3 March 24:00.
async fn rankings_by_area_transfer_timeliness_and_combined_score(h: &Harness) {
    use hotline::ticket::{
        BusinessArea, Category, Channel, Command, Contact, OrderFields, Role, UnitId, Urgency,
    };
    let agent_actor = actor_of("agent", Role::Agent, "jinan");
    let dispatcher = actor_of("dispatcher", Role::Dispatcher, "jinan");
    let fields = |area: BusinessArea, urgency: Urgency, received: &str| OrderFields {
        contact: Contact {
            name: "王五".to_owned(),
            phone: "13900000001".to_owned(),
        },
        category: Category::Consultation,
        urgency,
        area,
        description: "咨询".to_owned(),
        channel: Channel::Phone,
        city: UnitId::new("jinan"),
        received_at: chrono::DateTime::parse_from_rfc3339(received).expect("time"),
        ..OrderFields::default()
    };
    let dispatch = || Command::Dispatch {
        units: vec![UnitId::new("jinan-lixia")],
        category: None,
        area: None,
        urgency: None,
        contact_name: None,
        contact_phone: None,
    };
    let submit = |t| (Command::Submit, agent_actor.clone(), t);
    // Legal aid: routed to the legal-aid center at submission, 5 minutes in: on time.
    backdated_order(
        h,
        fields(
            BusinessArea::LegalAid,
            Urgency::Normal,
            "2026-03-02T10:00:00+08:00",
        ),
        vec![submit("2026-03-02T10:05:00+08:00")],
    )
    .await;
    // Notary (no routing rule): dispatched by hand on the 4th: late.
    backdated_order(
        h,
        fields(
            BusinessArea::Notary,
            Urgency::Normal,
            "2026-03-02T10:00:00+08:00",
        ),
        vec![
            submit("2026-03-02T10:05:00+08:00"),
            (dispatch(), dispatcher.clone(), "2026-03-04T09:00:00+08:00"),
        ],
    )
    .await;
    // Urgent notary matters: dispatched after 30 minutes (on time), after 90 (late).
    for dispatched in ["2026-03-05T09:30:00+08:00", "2026-03-05T10:30:00+08:00"] {
        backdated_order(
            h,
            fields(
                BusinessArea::Notary,
                Urgency::Urgent,
                "2026-03-05T09:00:00+08:00",
            ),
            vec![
                submit("2026-03-05T09:05:00+08:00"),
                (dispatch(), dispatcher.clone(), dispatched),
            ],
        )
        .await;
    }
    // A notary question the agent answered at once: no transfer, not counted.
    backdated_order(
        h,
        fields(
            BusinessArea::Notary,
            Urgency::Normal,
            "2026-03-06T10:00:00+08:00",
        ),
        vec![
            submit("2026-03-06T10:01:00+08:00"),
            (
                Command::AnswerDirectly {
                    answer: "可到公证处办理".to_owned(),
                },
                agent_actor.clone(),
                "2026-03-06T10:05:00+08:00",
            ),
        ],
    )
    .await;
    // A lawyer question never dispatched: waiting past its limit is late.
    backdated_order(
        h,
        fields(
            BusinessArea::Lawyer,
            Urgency::Normal,
            "2026-03-09T10:00:00+08:00",
        ),
        vec![submit("2026-03-09T10:05:00+08:00")],
    )
    .await;

    let agent = h.login("agent").await;
    // By business area, ranked by transfer timeliness.
    let by_area = h
        .get(
            &agent,
            "/api/rankings?period=2026-03&group=consultation&by=area&metric=transfer_rate",
        )
        .await;
    assert_eq!(by_area.status, StatusCode::OK, "{}", by_area.text);
    assert_eq!(by_area.body["by"], "area");
    let areas: Vec<(String, i64, Value)> = by_area.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["business_area"].as_str().expect("area").to_owned(),
                r["rank"].as_i64().expect("rank"),
                r["transfer_rate"].clone(),
            )
        })
        .collect();
    assert_eq!(
        areas,
        vec![
            ("legal_aid".to_owned(), 1, json!(1.0)),
            ("notary".to_owned(), 2, json!(0.333)),
            ("lawyer".to_owned(), 3, json!(0.0)),
        ],
        "{}",
        by_area.text
    );
    let notary = row_of(&by_area, "notary");
    assert_eq!(notary["unit_name"], "公证");
    assert_eq!(
        (
            &notary["orders"],
            &notary["transfers_on_time"],
            &notary["transfers_late"]
        ),
        (&json!(4), &json!(1), &json!(2)),
        "the answered one needs no transfer: {notary}"
    );
    // The units ranked within one business area: legal aid only.
    let legal_aid = h
        .get(
            &agent,
            "/api/rankings?period=2026-03&group=consultation&business_area=legal_aid",
        )
        .await;
    assert_eq!(legal_aid.body["business_area"], "legal_aid");
    let units: Vec<&str> = legal_aid.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["unit"].as_str())
        .collect();
    assert_eq!(units, ["jinan", "jinan-legal-aid"], "{}", legal_aid.text);
    assert_eq!(row_of(&legal_aid, "jinan")["transfer_rate"], 1.0);
    assert_eq!(
        h.get(&agent, "/api/rankings?business_area=astrology")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // The city whose center received them answers for the transfers: 2 of 5.
    let by_unit = h
        .get(&agent, "/api/rankings?period=2026-03&group=consultation")
        .await;
    let jinan = row_of(&by_unit, "jinan");
    assert_eq!(
        (
            &jinan["transfers_on_time"],
            &jinan["transfers_late"],
            &jinan["transfer_rate"]
        ),
        (&json!(2), &json!(3), &json!(0.4)),
        "{jinan}"
    );
    // The weights used are printed, and each combined score follows from them:
    // Σ weight × rate / Σ weight over the figures the unit has data for.
    let weights = &by_unit.body["weights"];
    let shipped = shipped_config().ranking.weights;
    assert_eq!(
        weights["on_time_rate"],
        json!(shipped.on_time_rate),
        "{weights}"
    );
    assert_eq!(weights["transfer_rate"], json!(shipped.transfer_rate));
    for row in by_unit.body["rows"].as_array().expect("rows") {
        let (mut sum, mut total) = (0.0, 0.0);
        for key in [
            "completion_rate",
            "on_time_rate",
            "satisfaction_rate",
            "sign_in_rate",
            "transfer_rate",
        ] {
            if let (Some(rate), Some(weight)) = (row[key].as_f64(), weights[key].as_f64()) {
                sum += rate * weight;
                total += weight;
            }
        }
        let expected = (sum / total * 1000.0).round() / 1000.0;
        let combined = row["combined_score"].as_f64().expect("combined_score");
        assert!((combined - expected).abs() < 0.0015, "{row} vs {expected}");
    }
    let csv = h
        .get(
            &agent,
            "/api/rankings?period=2026-03&group=consultation&by=area&format=csv",
        )
        .await;
    assert!(
        csv.text.lines().next().is_some_and(|header| header
            .ends_with(",transfer_rate,transfers_on_time,transfers_late,combined_score,weights")),
        "{}",
        csv.text
    );
    assert!(
        csv.text.contains("transfer_rate=0.1"),
        "weights printed: {}",
        csv.text
    );
    // Only transfer timeliness weighed: the combined score is the transfer rate, and
    // the combined ranking follows it.
    let transfer_only = with_weights(
        h,
        hotline::ticket::RankingWeights {
            completion_rate: 0.0,
            on_time_rate: 0.0,
            satisfaction_rate: 0.0,
            sign_in_rate: 0.0,
            transfer_rate: 2.0,
        },
    );
    let agent_there = transfer_only.login("agent").await;
    let combined = transfer_only
        .get(
            &agent_there,
            "/api/rankings?period=2026-03&group=consultation&by=area&metric=combined",
        )
        .await;
    assert_eq!(combined.body["weights"]["transfer_rate"], 2.0);
    assert_eq!(combined.body["metric"], "combined");
    let order: Vec<(&str, &Value)> = combined.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["unit"].as_str().unwrap_or_default(), &r["combined_score"]))
        .collect();
    assert_eq!(
        order,
        vec![
            ("legal_aid", &json!(1.0)),
            ("notary", &json!(0.333)),
            ("lawyer", &json!(0.0))
        ],
        "{}",
        combined.text
    );
    assert_eq!(
        h.get(&agent, "/api/rankings?metric=popularity")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn sqlite_rankings_by_area_transfer_timeliness_and_combined_score() {
    rankings_by_area_transfer_timeliness_and_combined_score(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_rankings_by_area_transfer_timeliness_and_combined_score() {
    rankings_by_area_transfer_timeliness_and_combined_score(&postgres().await).await;
}

/// A path segment percent-encoded (the order numbers hold 鲁).
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Short order numbers read out on the phone: `鲁12348-YYYYMMDD-NNNN`, the day of
/// receipt in Asia/Shanghai, a sequence per day unique under concurrent creates; shown
/// in the answers and found by `GET /api/orders/{number}`. Orders created before
/// numbering keep working by id, with no number.
async fn orders_get_short_numbers_unique_per_day(h: &Harness) {
    let agent = h.login("agent").await;
    let body = |received: &str| {
        let mut body = order_body("consultation", "notary", Some(received));
        body["channel"] = json!("web");
        body
    };
    // Before numbering existed.
    h.state.store.set_order_numbering(None);
    let old = h.create(&agent, body("2026-12-06T10:00:00+08:00")).await;
    assert_eq!(old["number"], Value::Null, "{old}");
    h.state
        .store
        .set_order_numbering(Some(&shipped_config().orders.number_prefix));
    let late_evening = h.create(&agent, body("2026-12-06T23:30:00+08:00")).await;
    assert_eq!(late_evening["number"], "鲁12348-20261206-0001");
    // 16:30 UTC is already the 7th in Shanghai.
    let past_midnight = h.create(&agent, body("2026-12-06T16:30:00Z")).await;
    assert_eq!(past_midnight["number"], "鲁12348-20261207-0001");
    // Twelve creates at once: twelve different numbers, none skipped.
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let app = h.app.clone();
        let request = Request::post("/api/orders")
            .header(header::COOKIE, &agent.cookie)
            .header("x-csrf-token", &agent.csrf)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body("2026-12-07T09:00:00+08:00").to_string()))
            .expect("request");
        tasks.push(tokio::spawn(async move {
            let response = app.oneshot(request).await.expect("response");
            assert_eq!(response.status(), StatusCode::CREATED);
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            serde_json::from_slice::<Value>(&bytes).expect("json")["number"]
                .as_str()
                .expect("number")
                .to_owned()
        }));
    }
    let mut numbers = Vec::new();
    for task in tasks {
        numbers.push(task.await.expect("task"));
    }
    numbers.sort();
    let expected: Vec<String> = (2..=13)
        .map(|n| format!("鲁12348-20261207-{n:04}"))
        .collect();
    assert_eq!(numbers, expected);
    // Found by number, as by id; the order's own answer carries it.
    let by_number = h
        .get(
            &agent,
            &format!("/api/orders/{}", path_segment("鲁12348-20261206-0001")),
        )
        .await;
    assert_eq!(by_number.status, StatusCode::OK, "{}", by_number.text);
    assert_eq!(by_number.body["id"], late_evening["id"]);
    assert_eq!(by_number.body["number"], "鲁12348-20261206-0001");
    let by_id = h
        .get(&agent, &format!("/api/orders/{}", id_of(&past_midnight)))
        .await;
    assert_eq!(by_id.body["number"], "鲁12348-20261207-0001");
    assert_eq!(
        h.get(
            &agent,
            &format!("/api/orders/{}", path_segment("鲁12348-20261207-0099"))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // The order from before numbering: still there by id, without a number.
    let old_again = h.get(&agent, &format!("/api/orders/{}", id_of(&old))).await;
    assert_eq!(old_again.status, StatusCode::OK);
    assert_eq!(old_again.body["number"], Value::Null);
    // Given by the server only (W-19: nothing set by hand): a client cannot choose it.
    let mut forged = body("2026-12-07T10:00:00+08:00");
    forged["number"] = json!("鲁12348-20261207-0001");
    let refused = h.post(&agent, "/api/orders", forged).await;
    assert!(refused.status.is_client_error(), "{}", refused.text);
    // The number is in the order's Created event, in the chained ledger, which still
    // verifies.
    let events = h
        .get(
            &agent,
            &format!("/api/orders/{}/events", id_of(&late_evening)),
        )
        .await;
    assert_eq!(
        events.body[0]["kind"]["number"], "鲁12348-20261206-0001",
        "{}",
        events.text
    );
    let admin = h.login("admin").await;
    let verify = h.get(&admin, "/api/ledger/verify").await;
    assert_eq!(verify.status, StatusCode::OK, "{}", verify.text);
    assert_eq!(verify.body["ok"], true, "{}", verify.text);
}

#[tokio::test]
async fn sqlite_orders_get_short_numbers_unique_per_day() {
    orders_get_short_numbers_unique_per_day(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_orders_get_short_numbers_unique_per_day() {
    orders_get_short_numbers_unique_per_day(&postgres().await).await;
}

// ------------------------------------------------- H-13-2 urgent orders, H-9 report

fn rfc3339(t: chrono::DateTime<chrono::FixedOffset>) -> String {
    t.to_rfc3339()
}

fn shanghai_now() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::Utc::now().with_timezone(&hotline::calendar::shanghai())
}

fn urgent_fields(received_at: &str, description: &str) -> hotline::ticket::OrderFields {
    hotline::ticket::OrderFields {
        contact: hotline::ticket::Contact {
            name: "张三".into(),
            phone: "13812345678".into(),
        },
        category: hotline::ticket::Category::Complaint,
        urgency: hotline::ticket::Urgency::Urgent,
        description: description.into(),
        city: hotline::ticket::UnitId::new("jinan"),
        received_at: chrono::DateTime::parse_from_rfc3339(received_at).expect("time"),
        ..hotline::ticket::OrderFields::default()
    }
}

async fn event_kinds(h: &Harness, s: &Session, id: &str) -> Vec<String> {
    let events = h.get(s, &format!("/api/orders/{id}/events")).await;
    assert_eq!(events.status, StatusCode::OK, "{}", events.text);
    events
        .body
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"]["type"].as_str().map(str::to_owned))
        .collect()
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| k.as_str() == kind).count()
}

/// H-13-2: an urgent order is transferred within 1 hour and reported to the leaders.
/// The scheduler tells the city's configured leaders once when an urgent order is
/// received and once when its hour passes undispatched — also when the dispatch came
/// late before the scheduler looked — and records the missed limit once as an event;
/// the late transfer counts against the dispatch center and the dispatcher in
/// `/api/stats/orders`. Leaders' alerts go to a real receiver on 127.0.0.1 that fails
/// the first delivery: it is retried, and each alert arrives.
async fn urgent_orders_alert_leaders_and_record_a_missed_transfer(h: Harness) {
    use hotline::orders::leaders::LeaderNotifier;
    use hotline::ticket::Role;
    let port = common::free_port();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind receiver");
    let receiver = common::Receiver::failing_first(listener, 1);
    let mut h = h;
    let mut orders = orders_context();
    orders.leaders.insert(
        "jinan".into(),
        vec![hotline::config::LeaderConfig {
            name: "王局长".into(),
            contact: "0531-12345678".into(),
            webhook_url: Some(format!("http://127.0.0.1:{port}/leaders")),
        }],
    );
    h.state.orders = Arc::new(orders);
    h.app = router(h.state.clone());
    let journals = tempfile::tempdir().expect("tempdir");
    let shutdown = hotline::shutdown::Shutdown::default();
    let notifier = LeaderNotifier::start(
        h.state.orders.leaders.clone(),
        journals.path(),
        std::time::Duration::from_secs(5),
        Arc::default(),
        &shutdown,
    )
    .expect("leader notifier");

    let now = shanghai_now();
    let agent = actor_of("agent", Role::Agent, "jinan");
    fn submit<'a>(
        agent: &hotline::ticket::Actor,
        t: &'a str,
    ) -> Vec<(hotline::ticket::Command, hotline::ticket::Actor, &'a str)> {
        vec![(hotline::ticket::Command::Submit, agent.clone(), t)]
    }
    // Received two hours ago and still waiting for dispatch.
    let two_hours_ago = rfc3339(now - chrono::TimeDelta::hours(2));
    let waiting = backdated_order(
        &h,
        urgent_fields(&two_hours_ago, "群体性纠纷，现场冲突"),
        submit(&agent, &two_hours_ago),
    )
    .await;
    // Received 90 minutes ago, dispatched now: late, before the scheduler looked.
    let ninety = rfc3339(now - chrono::TimeDelta::minutes(90));
    let late = backdated_order(
        &h,
        urgent_fields(&ninety, "老人走失求助"),
        submit(&agent, &ninety),
    )
    .await;
    let dispatcher = h.login("dispatcher").await;
    let dispatched = h
        .command(
            &dispatcher,
            &late,
            "dispatch",
            json!({"units": ["jinan-legal-aid"], "area": "legal_aid"}),
        )
        .await;
    assert_eq!(dispatched["transfer_on_time"], false, "{dispatched}");
    // Received now and dispatched at once: on time.
    let agent_session = h.login("agent").await;
    let mut body = order_body("complaint", "unknown", None);
    body["urgency"] = json!("urgent");
    let timely = id_of(&h.create(&agent_session, body).await);
    let on_time = h
        .command(
            &dispatcher,
            &timely,
            "dispatch",
            json!({"units": ["jinan-legal-aid"], "area": "legal_aid"}),
        )
        .await;
    assert_eq!(on_time["transfer_on_time"], true, "{on_time}");

    let scheduler_now = shanghai_now();
    let recorded = hotline::server::reminders::remind_once(
        &h.state.store,
        &h.state.orders,
        &notifier,
        scheduler_now,
    )
    .await
    .expect("scheduler pass");
    assert!(
        recorded >= 7,
        "alerts, missed limits and reminders: {recorded}"
    );
    let again = hotline::server::reminders::remind_once(
        &h.state.store,
        &h.state.orders,
        &notifier,
        scheduler_now + chrono::TimeDelta::seconds(1),
    )
    .await
    .expect("scheduler pass");
    assert_eq!(again, 0, "each alert and missed limit recorded once");

    let supervisor = h.login("supervisor").await;
    for id in [&waiting, &late] {
        let kinds = event_kinds(&h, &supervisor, id).await;
        assert_eq!(count(&kinds, "leaders_alerted"), 2, "{id}: {kinds:?}");
        assert_eq!(count(&kinds, "limit_missed"), 1, "{id}: {kinds:?}");
        let order = h.get(&supervisor, &format!("/api/orders/{id}")).await.body;
        assert_eq!(order["transfer_on_time"], false, "{order}");
        assert_eq!(order["missed_limits"][0]["deadline"], "transfer", "{order}");
        assert_eq!(
            order["leader_alerts"],
            json!(["urgent_received", "urgent_transfer_missed"]),
            "{order}"
        );
    }
    let kinds = event_kinds(&h, &supervisor, &timely).await;
    assert_eq!(count(&kinds, "leaders_alerted"), 1, "{kinds:?}");
    assert_eq!(count(&kinds, "limit_missed"), 0, "{kinds:?}");
    let events = h
        .get(&supervisor, &format!("/api/orders/{timely}/events"))
        .await
        .body;
    let alert = events
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"]["type"] == "leaders_alerted"))
        .expect("alert event");
    assert_eq!(alert["kind"]["leaders"], json!(["王局长"]), "{alert}");
    assert_eq!(alert["role"], "system");

    // Five alerts, each delivered once the receiver answers (the first try got 500).
    // (Waits on the runtime: the delivery tasks run on this test's thread.)
    for _ in 0..200 {
        if receiver.bodies().len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.refused(), 1);
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 5, "{bodies:?}");
    let of = |id: &str, alert: &str| {
        bodies
            .iter()
            .filter(|b| b["order_id"] == id && b["alert"] == alert)
            .count()
    };
    assert_eq!(
        (
            of(&waiting, "urgent_received"),
            of(&waiting, "urgent_transfer_missed"),
            of(&late, "urgent_transfer_missed"),
            of(&timely, "urgent_received"),
            of(&timely, "urgent_transfer_missed"),
        ),
        (1, 1, 1, 1, 0),
        "{bodies:?}"
    );
    for body in &bodies {
        assert_eq!(body["event"], "leaders", "{body}");
        assert_eq!(body["leader"]["name"], "王局长", "{body}");
        assert_eq!(body["city"], "jinan", "{body}");
        let text = body.to_string();
        assert!(
            !text.contains("13812345678") && !text.contains("张三"),
            "{text}"
        );
    }
    assert!(
        receiver
            .heads()
            .iter()
            .all(|head| head.to_ascii_lowercase().contains("x-hotline-event: ")),
        "{:?}",
        receiver.heads()
    );

    // Timeliness: the dispatch center and the dispatcher carry the late transfer.
    let stats = h.get(&supervisor, "/api/stats/orders").await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    let transfer = &stats.body["transfer"];
    assert_eq!(transfer["total"]["late"], 2, "{transfer}");
    assert_eq!(transfer["total"]["urgent_late"], 2, "{transfer}");
    assert_eq!(transfer["total"]["recorded_missed"], 2, "{transfer}");
    assert_eq!(transfer["by_unit"]["jinan"]["late"], 2, "{transfer}");
    assert_eq!(
        transfer["by_dispatcher"]["dispatcher"]["late"], 1,
        "{transfer}"
    );
    assert_eq!(
        transfer["by_dispatcher"]["dispatcher"]["on_time"], 1,
        "{transfer}"
    );
    assert_eq!(
        transfer["by_dispatcher"]["dispatcher"]["on_time_permille"], 500,
        "{transfer}"
    );
    // The database's counts are `ticket::transfer_timeliness` of the same orders.
    let mut stored = Vec::new();
    for id in [&waiting, &late, &timely] {
        stored.push(
            h.state
                .store
                .load_order(id)
                .await
                .expect("load")
                .expect("order"),
        );
    }
    let expected = hotline::ticket::transfer_timeliness(&stored, shanghai_now());
    assert_eq!(
        *transfer,
        serde_json::to_value(&expected).expect("json"),
        "{transfer}"
    );
    shutdown.cancel();
    receiver.stop();
}

#[tokio::test]
async fn sqlite_urgent_orders_alert_leaders_and_record_a_missed_transfer() {
    urgent_orders_alert_leaders_and_record_a_missed_transfer(sqlite().await).await;
}

#[tokio::test]
async fn postgres_urgent_orders_alert_leaders_and_record_a_missed_transfer() {
    urgent_orders_alert_leaders_and_record_a_missed_transfer(postgres().await).await;
}

/// `check-config` refuses a leader without a name, without any way to be told, or with
/// a webhook that is not an http:// or https:// URL.
#[test]
fn check_config_validates_the_leaders() {
    let text = std::fs::read_to_string(root().join("config/hotline.toml")).expect("config");
    let bad = text.replacen(
        "[[cities.leaders]]\nname = \"济南市司法局值班领导\"\ncontact = \"0531-00000000\"\n",
        "[[cities.leaders]]\nname = \"\"\n\n[[cities.leaders]]\nname = \"李处长\"\nwebhook_url = \"ftp://example.org/x\"\n",
        1,
    );
    assert_ne!(bad, text, "the shipped config names Jinan's leaders");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hotline.toml");
    std::fs::write(&path, &bad).expect("write");
    let problems = Config::load(&path).expect_err("refused").to_string();
    assert!(problems.contains("cities[0].leaders[0].name"), "{problems}");
    assert!(
        problems.contains("cities[0].leaders[0].contact"),
        "{problems}"
    );
    assert!(
        problems.contains("cities[0].leaders[1].webhook_url"),
        "{problems}"
    );
    let shipped = Config::load(&root().join("config/hotline.toml")).expect("shipped config");
    assert_eq!(shipped.cities[0].leaders[0].name, "济南市司法局值班领导");
    let gap = hotline::orders::leaders::leader_gaps(&shipped).expect("other cities");
    assert!(gap.contains("qingdao") && !gap.contains("jinan,"), "{gap}");
}

/// H-9: a caller dissatisfied with the result is reported to the unit within 1 working
/// day. The dissatisfied callback opens the report deadline (shown on the order, from
/// the working-day calendar); the scheduler reminds before it lapses and records it
/// missed once; the callback clerk or the supervising unit makes the report, which
/// completes it.
async fn dissatisfaction_is_reported_to_the_unit_within_a_working_day(h: &Harness) {
    use hotline::ticket::{CallbackOutcome, Command, Role};
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("time");
    // A consultation answered by the legal-aid center, called back dissatisfied on
    // Monday 2025-10-13 (after the National Day holiday): report due Tue 24:00.
    let mut fields = urgent_fields("2025-10-13T09:00:00+08:00", "咨询遗产继承");
    fields.urgency = hotline::ticket::Urgency::Normal;
    fields.category = hotline::ticket::Category::Consultation;
    fields.area = hotline::ticket::BusinessArea::LegalAid;
    let handler = actor_of("handler", Role::UnitHandler, "jinan-legal-aid");
    let id = backdated_order(
        h,
        fields,
        vec![
            (
                Command::Submit,
                actor_of("agent", Role::Agent, "jinan"),
                "2025-10-13T09:00:00+08:00",
            ),
            (Command::Sign, handler.clone(), "2025-10-13T09:10:00+08:00"),
            (Command::Start, handler.clone(), "2025-10-13T09:20:00+08:00"),
            (
                Command::Reply {
                    text: "答复".into(),
                },
                handler,
                "2025-10-13T09:30:00+08:00",
            ),
            (
                Command::RecordCallback {
                    outcome: CallbackOutcome::Dissatisfied,
                    note: "不满意".into(),
                },
                actor_of("callback", Role::CallbackStaff, "jinan"),
                "2025-10-13T10:00:00+08:00",
            ),
        ],
    )
    .await;
    let supervisor = h.login("supervisor").await;
    let order = h.get(&supervisor, &format!("/api/orders/{id}")).await.body;
    let report = &order["dissatisfaction_report"];
    assert_eq!(report["unit"], "jinan-legal-aid", "{order}");
    assert_eq!(report["due_display"], "2025-10-14T24:00+08:00", "{report}");
    assert_eq!(report["reported_at"], Value::Null, "{report}");
    assert_eq!(
        report["overdue"], true,
        "long past on the wall clock: {report}"
    );
    let callback = h.login("callback").await;
    let seen = h.get(&callback, &format!("/api/orders/{id}")).await.body;
    assert!(
        allowed(&seen).contains(&"report_dissatisfaction".to_owned()),
        "{seen}"
    );

    // Yellow on its own day, red and missed once at the limit.
    let notifier = hotline::server::reminders::LogNotifier;
    let pass = |t: &str| {
        hotline::server::reminders::remind_once(&h.state.store, &h.state.orders, &notifier, at(t))
    };
    assert_eq!(pass("2025-10-13T20:00:00+08:00").await.expect("pass"), 0);
    assert_eq!(pass("2025-10-14T12:00:00+08:00").await.expect("pass"), 1);
    assert_eq!(pass("2025-10-15T01:00:00+08:00").await.expect("pass"), 2);
    assert_eq!(pass("2025-10-15T02:00:00+08:00").await.expect("pass"), 0);
    let events = h
        .get(&supervisor, &format!("/api/orders/{id}/events"))
        .await
        .body;
    let report_events: Vec<(String, String)> = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"]["deadline"] == "report")
        .map(|e| {
            (
                e["kind"]["type"].as_str().unwrap_or_default().to_owned(),
                e["kind"]["level"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        report_events,
        [
            ("reminded".to_owned(), "yellow".to_owned()),
            ("limit_missed".to_owned(), String::new()),
            ("reminded".to_owned(), "red".to_owned()),
        ],
        "{events}"
    );

    // The report: a note is required; units may not; once made it is complete.
    let unit = h.login("handler").await;
    let refused = h
        .post(
            &unit,
            &format!("/api/orders/{id}/report_dissatisfaction"),
            json!({"note": "x"}),
        )
        .await;
    assert!(
        matches!(
            refused.status,
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
        ),
        "{}",
        refused.text
    );
    let empty = h
        .post(
            &callback,
            &format!("/api/orders/{id}/report_dissatisfaction"),
            json!({"note": " "}),
        )
        .await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.text
    );
    let reported = h
        .command(
            &callback,
            &id,
            "report_dissatisfaction",
            json!({"note": "已向法律援助中心通报来电人不满意及理由"}),
        )
        .await;
    let report = &reported["dissatisfaction_report"];
    assert_eq!(report["reported_by"], "callback", "{report}");
    assert!(report["reported_at"].is_string(), "{report}");
    assert_eq!(report["overdue"], true, "made after the limit: {report}");
    assert_eq!(reported["state"], "second_callback", "{reported}");
    let twice = h
        .post(
            &supervisor,
            &format!("/api/orders/{id}/report_dissatisfaction"),
            json!({"note": "再次通报"}),
        )
        .await;
    assert_eq!(
        twice.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        twice.text
    );

    // Made in time (the supervising unit, right after the callback): no reminder, not
    // missed.
    let live = escalated_to_second_callback(h).await;
    let open = h
        .get(&supervisor, &format!("/api/orders/{live}"))
        .await
        .body;
    assert_eq!(open["dissatisfaction_report"]["overdue"], false, "{open}");
    let done = h
        .command(
            &supervisor,
            &live,
            "report_dissatisfaction",
            json!({"note": "已通报"}),
        )
        .await;
    assert_eq!(done["dissatisfaction_report"]["overdue"], false, "{done}");
    assert_eq!(done["dissatisfaction_report"]["reported_by"], "supervisor");
    let kinds = event_kinds(h, &supervisor, &live).await;
    assert_eq!(count(&kinds, "dissatisfaction_reported"), 1, "{kinds:?}");
    hotline::server::reminders::remind_once(
        &h.state.store,
        &h.state.orders,
        &notifier,
        shanghai_now() + chrono::TimeDelta::days(10),
    )
    .await
    .expect("pass");
    let kinds = event_kinds(h, &supervisor, &live).await;
    assert_eq!(count(&kinds, "limit_missed"), 0, "{kinds:?}");
}

#[tokio::test]
async fn sqlite_dissatisfaction_is_reported_to_the_unit_within_a_working_day() {
    dissatisfaction_is_reported_to_the_unit_within_a_working_day(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_dissatisfaction_is_reported_to_the_unit_within_a_working_day() {
    dissatisfaction_is_reported_to_the_unit_within_a_working_day(&postgres().await).await;
}

/// Words a Shandong bureau reads (issue 15): each limit carries its span and the working
/// days still to run by the calendar (the day of receipt is not counted, H-8/H-9/H-11),
/// and the ledger names people, not login ids.
async fn limits_count_working_days_and_the_ledger_names_people(h: &Harness) {
    let agent = h.login("agent").await;
    // Received now: 1 working day to transfer, 5 to feed back, whatever today is.
    let order = h
        .create(&agent, order_body("consultation", "legal_aid", None))
        .await;
    let d = &order["deadlines"];
    assert_eq!(d["transfer_working_days"], 1, "{d}");
    assert_eq!(d["transfer_hours"], Value::Null, "{d}");
    assert_eq!(d["transfer_working_days_left"], 1, "{d}");
    assert_eq!(d["feedback_working_days"], 5, "{d}");
    assert_eq!(d["feedback_working_days_left"], 5, "{d}");
    assert_eq!(d["callback_working_days_left"], Value::Null, "{d}");

    // Urgent: the transfer limit is 1 hour (no working days); the callback 3 working days.
    let mut body = order_body("consultation", "legal_aid", None);
    body["urgency"] = json!("urgent");
    let urgent = h.create(&agent, body).await;
    let d = &urgent["deadlines"];
    assert_eq!(d["transfer_hours"], 1, "{d}");
    assert_eq!(d["transfer_working_days"], Value::Null, "{d}");
    assert_eq!(d["transfer_working_days_left"], Value::Null, "{d}");
    assert_eq!(d["callback_working_days"], 3, "{d}");
    assert_eq!(d["callback_working_days_left"], 3, "{d}");

    // Received 2025-09-30: its feedback limit passed long ago, working days over < 0.
    let old = h
        .create(
            &agent,
            order_body(
                "consultation",
                "legal_aid",
                Some("2025-09-30T16:00:00+08:00"),
            ),
        )
        .await;
    let over = old["deadlines"]["feedback_working_days_left"]
        .as_i64()
        .expect("working days left");
    assert!(over < -200, "a year past the limit: {over}");

    // The ledger of an order handled by the agent, the unit and the callback clerk.
    let id = escalated_to_second_callback(h).await;
    let supervisor = h.login("supervisor").await;
    let events = h
        .get(&supervisor, &format!("/api/orders/{id}/events"))
        .await
        .body;
    let events = events.as_array().expect("events");
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["actor_name"].as_str().unwrap_or("<none>"))
        .collect();
    for who in ["值班员 张明", "承办人 王芳", "回访员 吴静"] {
        assert!(names.contains(&who), "{who} in {names:?}");
    }
    for e in events {
        assert_ne!(
            e["actor_name"], e["actor"],
            "a login id shown as a name: {e}"
        );
    }
}

#[tokio::test]
async fn sqlite_limits_count_working_days_and_the_ledger_names_people() {
    limits_count_working_days_and_the_ledger_names_people(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_limits_count_working_days_and_the_ledger_names_people() {
    limits_count_working_days_and_the_ledger_names_people(&postgres().await).await;
}

/// H-8: a 12348 call is registered as 咨询/投诉/建议; 案件 only from another channel, at
/// registration and at the dispatcher's correction alike. Nothing is stored when refused.
async fn hotline_calls_are_not_registered_as_cases(h: &Harness) {
    let agent = h.login("agent").await;
    let dispatcher = h.login("dispatcher").await;
    let before = h.total(&agent).await;
    let refused = h
        .post(&agent, "/api/orders", order_body("case", "notary", None))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert_eq!(refused.body["field"], "category", "{}", refused.text);
    assert!(refused.text.contains("H-8"), "{}", refused.text);
    assert_eq!(h.total(&agent).await, before);
    // From the website, with its submission time, a case is registered.
    let mut web = order_body("case", "notary", Some("2026-12-01T09:00:00+08:00"));
    web["channel"] = json!("web");
    assert_eq!(h.create(&agent, web).await["fields"]["category"], "case");
    // A hotline order cannot be turned into a case at dispatch either.
    let order = h
        .create(&agent, order_body("complaint", "unknown", None))
        .await;
    let id = id_of(&order);
    let refused = h
        .post(
            &dispatcher,
            &format!("/api/orders/{id}/dispatch"),
            json!({"units": ["jinan-legal-aid"], "category": "case", "version": order["version"]}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert!(refused.text.contains("H-8"), "{}", refused.text);
    let unchanged = h.get(&dispatcher, &format!("/api/orders/{id}")).await.body;
    assert_eq!(unchanged["state"], "pending_dispatch", "{unchanged}");
    assert_eq!(unchanged["fields"]["category"], "complaint", "{unchanged}");
}

#[tokio::test]
async fn sqlite_hotline_calls_are_not_registered_as_cases() {
    hotline_calls_are_not_registered_as_cases(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_hotline_calls_are_not_registered_as_cases() {
    hotline_calls_are_not_registered_as_cases(&postgres().await).await;
}

/// Issue 19: the answers of the orders, rankings, events and calls endpoints, taken
/// live from a server that has orders in several states (second callback, urgent from
/// a call with a pending extension, withdrawn) and calls (answered and transferred,
/// a voice message), each match the schema `/api/openapi.json` generates from the
/// handler's type: every required key present, every value of its documented type,
/// no undocumented key.
async fn answers_match_the_generated_schemas(h: &Harness) {
    use hotline::ivr::cdr::{AgentFailureCause, AgentStage, CdrBuilder, HangupParty, TransferKind};
    use hotline::ivr::city::{CityId, CityResolution, ResolvedBy};
    use hotline::ivr::flow::{CallCategory, SurveyResult, Urgency};

    let doc = h
        .get(&h.login("agent").await, "/api/openapi.json")
        .await
        .body;
    let now = chrono::Utc::now().with_timezone(&hotline::calendar::shanghai());
    let arrival = now.fixed_offset() - chrono::TimeDelta::minutes(10);
    let jinan = CityResolution {
        city: CityId::new("jinan"),
        how: ResolvedBy::AreaCode,
    };
    let mut answered = CdrBuilder::new("call-schema-1", "13812345678", "053112348", arrival);
    answered
        .ivr_answered(arrival)
        .city(&jinan)
        .category(CallCategory::Complaint, Urgency::Urgent)
        .queued(arrival)
        .agent_failed(
            arrival,
            "1002",
            AgentStage::Ringing,
            AgentFailureCause::NotAnswered,
            Some(480),
        )
        .agent_answered(arrival, "1001")
        .transferred(
            arrival,
            Some("1001".to_owned()),
            "agent:1002".to_owned(),
            TransferKind::Attended,
        )
        .survey(SurveyResult::BasicallySatisfied)
        .hung_up(arrival + chrono::TimeDelta::minutes(4), HangupParty::Caller);
    h.state
        .store
        .insert_call(
            &answered.finish(arrival + chrono::TimeDelta::minutes(4)),
            None,
        )
        .await
        .expect("call record");
    let message = hotline::store::calls::VoiceMessage {
        call_id: "call-schema-vm".to_owned(),
        caller: "13912345678".into(),
        city: Some("jinan".into()),
        category: "consultation".into(),
        urgency: "normal".into(),
        recording: "recordings/call-schema-vm.wav".into(),
        duration_ms: 5000,
        received_at: arrival.to_rfc3339(),
        callback_due: (arrival + chrono::TimeDelta::days(1)).to_rfc3339(),
        provisional: false,
        work_order: None,
    };
    let mut left = CdrBuilder::new("call-schema-vm", "13912345678", "053112348", arrival);
    left.city(&jinan)
        .after_hours()
        .voice_message("recordings/call-schema-vm.wav");
    h.state
        .store
        .insert_call(&left.finish(arrival), Some(&message))
        .await
        .expect("voice message");

    let agent = h.login("agent").await;
    let handler = h.login("handler").await;
    let supervisor = h.login("supervisor").await;
    let dispatcher = h.login("dispatcher").await;
    let second = escalated_to_second_callback(h).await;
    let mut urgent = order_body("complaint", "legal_aid", None);
    urgent["urgency"] = json!("urgent");
    urgent["call_id"] = json!("call-schema-1");
    let created = h.create(&agent, urgent).await;
    common::schema::assert_answer(&doc, "post", "/api/orders", 201, &created);
    let urgent = id_of(&created);
    for (command, body) in [
        ("sign", json!({})),
        ("start", json!({})),
        (
            "request_extension",
            json!({"extra_working_days": 3, "reason": "需调查取证"}),
        ),
    ] {
        let after = h.command(&handler, &urgent, command, body).await;
        common::schema::assert_answer(&doc, "post", "/api/orders/{id}/{command}", 200, &after);
    }
    let withdrawn = id_of(
        &h.create(&agent, order_body("suggestion", "unknown", None))
            .await,
    );
    let after = h
        .command(
            &supervisor,
            &withdrawn,
            "withdraw",
            json!({"reason": "来电人撤回"}),
        )
        .await;
    assert_eq!(after["state"], "closed", "{after}");
    common::schema::assert_answer(&doc, "post", "/api/orders/{id}/{command}", 200, &after);

    let year = now.format("%Y").to_string();
    let mut checked = 0;
    for (who, path, uri) in [
        (&dispatcher, "/api/orders", "/api/orders".to_owned()),
        (
            &agent,
            "/api/orders",
            "/api/orders?per_page=2&page=2".to_owned(),
        ),
        (
            &supervisor,
            "/api/orders/{id}",
            format!("/api/orders/{second}"),
        ),
        (
            &dispatcher,
            "/api/orders/{id}",
            format!("/api/orders/{urgent}"),
        ),
        (
            &agent,
            "/api/orders/{id}",
            format!("/api/orders/{withdrawn}"),
        ),
        (
            &supervisor,
            "/api/orders/{id}/events",
            format!("/api/orders/{second}/events"),
        ),
        (
            &dispatcher,
            "/api/orders/{id}/events",
            format!("/api/orders/{urgent}/events"),
        ),
        (
            &agent,
            "/api/orders/{id}/events",
            format!("/api/orders/{withdrawn}/events"),
        ),
        (
            &supervisor,
            "/api/special_flags",
            "/api/special_flags".to_owned(),
        ),
        (
            &agent,
            "/api/rankings",
            format!("/api/rankings?period={year}"),
        ),
        (
            &agent,
            "/api/rankings",
            format!("/api/rankings?period={year}&group=complaint_suggestion&level=institution"),
        ),
        (
            &agent,
            "/api/rankings",
            format!("/api/rankings?period={year}&by=area&metric=combined"),
        ),
        (
            &agent,
            "/api/rankings",
            format!("/api/rankings?period={year}&by=category"),
        ),
        (&agent, "/api/calls", "/api/calls".to_owned()),
        (&dispatcher, "/api/calls", "/api/calls".to_owned()),
    ] {
        let reply = h.get(who, &uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text);
        common::schema::assert_answer(&doc, "get", path, 200, &reply.body);
        checked += 1;
    }
    assert_eq!(checked, 15);
    // What the checks went through: the answers held the parts under test.
    let calls = h.get(&dispatcher, "/api/calls").await.body;
    assert!(
        calls
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["agent_name"] == "值班员 张明")
                && c.iter()
                    .any(|c| c["voice_message"]["call_id"] == "call-schema-vm")),
        "{calls}"
    );
    let order = h
        .get(&dispatcher, &format!("/api/orders/{urgent}"))
        .await
        .body;
    assert!(order["deadlines"]["callback_due"].is_string(), "{order}");
    assert!(order["pending_extension"]["reason"].is_string(), "{order}");
    let ranked = h
        .get(&agent, &format!("/api/rankings?period={year}&by=area"))
        .await
        .body;
    assert!(
        ranked["rows"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["business_area"] == "legal_aid")),
        "{ranked}"
    );
    // And the checker itself refuses an undocumented key and a missing required one.
    let mut extra = order.clone();
    extra["not_documented"] = json!(1);
    assert!(
        !common::schema::answer_problems(&doc, "get", "/api/orders/{id}", 200, &extra).is_empty()
    );
    let mut nested = order.clone();
    nested["fields"]["not_documented"] = json!(1);
    nested["pending_extension"]["extra_working_days"] = json!("three");
    assert_eq!(
        common::schema::answer_problems(&doc, "get", "/api/orders/{id}", 200, &nested).len(),
        2,
        "{nested}"
    );
    let mut missing = order;
    missing.as_object_mut().expect("order").remove("state");
    assert!(
        !common::schema::answer_problems(&doc, "get", "/api/orders/{id}", 200, &missing).is_empty()
    );
}

#[tokio::test]
async fn sqlite_answers_match_the_generated_schemas() {
    answers_match_the_generated_schemas(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_answers_match_the_generated_schemas() {
    answers_match_the_generated_schemas(&postgres().await).await;
}

/// Issue 15, "words a Shandong bureau uses": the per-unit ledger export of an order
/// that went through dispatch, reply and a callback (basically satisfied, closed on
/// judgement) names people and units and reads in Chinese labels: no cell but the order
/// id and the hash columns holds a Latin letter, so no enum value (`basically_satisfied`,
/// `dispatched`) and no login id (`handler`) can appear.
async fn ledger_export_reads_in_names_and_chinese_labels(h: &Harness) {
    let agent = h.login("agent").await;
    let dispatcher = h.login("dispatcher").await;
    let handler = h.login("handler").await;
    let callback = h.login("callback").await;
    let supervisor = h.login("supervisor").await;
    let created = h
        .create(&agent, order_body("consultation", "unknown", None))
        .await;
    assert_eq!(created["state"], "pending_dispatch", "{created}");
    let id = id_of(&created);
    h.command(
        &dispatcher,
        &id,
        "dispatch",
        json!({"units": ["jinan-legal-aid"], "area": "legal_aid"}),
    )
    .await;
    h.command(&handler, &id, "sign", json!({})).await;
    h.command(&handler, &id, "start", json!({})).await;
    h.command(
        &handler,
        &id,
        "reply",
        json!({"text": "已告知申请法律援助的条件"}),
    )
    .await;
    let closed = h
        .command(
            &callback,
            &id,
            "record_callback",
            json!({"outcome": {"outcome": "closed_on_judgement", "satisfaction": "basically_satisfied",
                               "ground": "law_or_policy"}, "note": "对服务满意，对结果基本满意"}),
        )
        .await;
    assert_eq!(closed["state"], "closed", "{closed}");
    let csv = h.get(&supervisor, "/api/ledger/jinan-legal-aid.csv").await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text);
    let mut lines = csv.text.lines();
    assert_eq!(
        lines.next(),
        Some("工单编号,序号,时间,操作人,角色,单位,原状态,新状态,事件,详情,说明,前一哈希,哈希")
    );
    let rows: Vec<Vec<String>> = lines
        .map(|line| {
            line.trim_matches('"')
                .split("\",\"")
                .map(str::to_owned)
                .collect()
        })
        .collect();
    assert!(rows.len() >= 7, "{}", csv.text);
    for row in &rows {
        assert_eq!(row.len(), 13, "{row:?}");
        assert_eq!(row[0], id);
        for cell in &row[1..11] {
            assert!(
                !cell.chars().any(|c| c.is_ascii_alphabetic()),
                "an enum value or login id in {cell:?} of {row:?}"
            );
        }
    }
    for words in [
        "值班员 张明",
        "转办员 李华",
        "承办人 王芳",
        "回访员 吴静",
        "值班坐席",
        "转办人员",
        "承办人员",
        "济南市法律援助中心",
        "待派单",
        "已派单",
        "已签收",
        "办理中",
        "已办结",
        "登记",
        "派单",
        "→ 济南市法律援助中心",
        "济南市法律援助中心（主办）",
        "首次回访 · 基本满意 · 回访人 回访员 吴静",
        "依法办结：对服务满意，对结果基本满意",
        "已告知申请法律援助的条件",
        hotline::ticket::transition::CONSULTATION_ANSWERED_NOTE,
    ] {
        assert!(csv.text.contains(words), "{words} missing: {}", csv.text);
    }
    for raw in [
        "basically_satisfied",
        "dispatched",
        "law_or_policy",
        "handler",
        "callback",
    ] {
        let cells: Vec<&String> = rows.iter().flat_map(|r| &r[1..11]).collect();
        assert!(
            cells.iter().all(|c| !c.contains(raw)),
            "{raw} in {}",
            csv.text
        );
    }
}

#[tokio::test]
async fn sqlite_ledger_export_reads_in_names_and_chinese_labels() {
    ledger_export_reads_in_names_and_chinese_labels(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_ledger_export_reads_in_names_and_chinese_labels() {
    ledger_export_reads_in_names_and_chinese_labels(&postgres().await).await;
}

/// `POST /api/orders/{id}/call_back` (H-11, H-12-3 回拨解答) is for who answers the
/// order's caller now, by the orders' own role, scope and step rules: the unit that
/// replies, then the callback clerk on the callback step; others get 403. The request
/// names no number (a body with one is 422); an order without a contact phone is 422
/// `no_number`; without the server's telephony (this harness) it is 422
/// `trunk_not_configured`. Nothing is logged on the order for a refused call.
async fn order_callback_call_is_for_who_answers_the_caller(h: &Harness) {
    let agent = h.login("agent").await;
    let handler = h.login("handler").await;
    let callback = h.login("callback").await;
    let dispatcher = h.login("dispatcher").await;
    let mut body = order_body(
        "consultation",
        "legal_aid",
        Some("2025-09-30T16:00:00+08:00"),
    );
    body["urgency"] = json!("urgent");
    let id = id_of(&h.create(&agent, body).await);
    let call_back = format!("/api/orders/{id}/call_back");
    let code = |reply: &Reply| reply.body["code"].as_str().unwrap_or_default().to_owned();

    let typed = h
        .post(&handler, &call_back, json!({"number": "13900001111"}))
        .await;
    assert_eq!(
        typed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        typed.text
    );
    assert_eq!(code(&typed), "invalid_body", "{}", typed.text);
    h.command(&handler, &id, "sign", json!({})).await;
    h.command(&handler, &id, "start", json!({})).await;
    // The handling unit replies: it may call back; the callback step is not yet.
    let unit = h.post(&handler, &call_back, json!({})).await;
    assert_eq!(
        unit.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unit.text
    );
    assert_eq!(code(&unit), "trunk_not_configured", "{}", unit.text);
    for (who, session) in [("callback", &callback), ("dispatcher", &dispatcher)] {
        let refused = h.post(session, &call_back, json!({})).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{who}: {}",
            refused.text
        );
    }
    let fed_back = h
        .command(&handler, &id, "reply", json!({"text": "答复"}))
        .await;
    assert_eq!(fed_back["state"], "fed_back", "{fed_back}");
    // The callback step: the clerk may.
    let clerk = h.post(&callback, &call_back, json!({})).await;
    assert_eq!(
        clerk.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        clerk.text
    );
    assert_eq!(code(&clerk), "trunk_not_configured", "{}", clerk.text);
    let refused = h.post(&dispatcher, &call_back, json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let none = h.get(&callback, &call_back).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND, "{}", none.text);
    let events = h.get(&callback, &format!("/api/orders/{id}/events")).await;
    assert!(
        !events.text.contains("call_logged"),
        "nothing logged: {}",
        events.text
    );

    // An order without a number has nobody to call.
    let mut body = order_body("consultation", "legal_aid", None);
    body["contact_phone"] = json!("");
    let id = id_of(&h.create(&agent, body).await);
    h.command(&handler, &id, "sign", json!({})).await;
    h.command(&handler, &id, "start", json!({})).await;
    let no_number = h
        .post(&handler, &format!("/api/orders/{id}/call_back"), json!({}))
        .await;
    assert_eq!(
        no_number.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        no_number.text
    );
    assert_eq!(code(&no_number), "no_number", "{}", no_number.text);
}

#[tokio::test]
async fn sqlite_order_callback_call_is_for_who_answers_the_caller() {
    order_callback_call_is_for_who_answers_the_caller(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_order_callback_call_is_for_who_answers_the_caller() {
    order_callback_call_is_for_who_answers_the_caller(&postgres().await).await;
}

/// H-11: hot, difficult and focal issues from the orders' descriptions. Eight quiet
/// weeks of one divorce question each, then a week of unpaid wages in three cities:
/// the province's administrator sees 拖欠工资 hot and focal, the divorces steady; a
/// Jinan supervisor sees only Jinan's orders; agents are refused.
async fn hot_topics_come_from_the_orders_descriptions(h: &Harness) {
    let desk = h.login("province-dispatcher").await;
    let now = chrono::Utc::now().with_timezone(&hotline::calendar::shanghai());
    let web = |city: &str, text: &str, at: chrono::DateTime<chrono::FixedOffset>| {
        let mut body = order_body("consultation", "unknown", Some(&at.to_rfc3339()));
        body["channel"] = json!("web");
        body["city"] = json!(city);
        body["description"] = json!(text);
        body
    };
    for weeks in 1..=8 {
        let at = now - chrono::TimeDelta::weeks(weeks);
        h.create(&desk, web("jinan", "想咨询离婚以后孩子的抚养权归谁", at))
            .await;
    }
    let just_now = now - chrono::TimeDelta::seconds(10);
    h.create(
        &desk,
        web("jinan", "想咨询离婚以后孩子的抚养权归谁", just_now),
    )
    .await;
    for city in ["jinan", "qingdao", "yantai", "jinan"] {
        h.create(
            &desk,
            web(city, "工地老板拖欠工资半年，工友们都拿不到钱", just_now),
        )
        .await;
    }
    let admin = h.login("admin").await;
    let reply = h.get(&admin, "/api/analysis/topics?period=week").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let topics = reply.body["topics"].as_array().expect("topics").clone();
    let topic = |name: &str| {
        topics
            .iter()
            .find(|t| t["topic"] == name)
            .unwrap_or_else(|| panic!("no {name}: {}", reply.text))
            .clone()
    };
    let wages = topic("拖欠工资");
    assert_eq!(wages["current"], 4, "{wages}");
    assert_eq!(wages["hot"], true, "{wages}");
    assert_eq!(wages["focal"], true, "three cities: {wages}");
    assert_eq!(topics[0]["topic"], "拖欠工资", "{}", reply.text);
    let divorce = topic("离婚");
    assert_eq!(
        divorce["counts"],
        json!([1, 1, 1, 1, 1, 1, 1, 1, 1]),
        "{divorce}"
    );
    assert_eq!(divorce["hot"], false, "{divorce}");
    assert_eq!(reply.body["periods"].as_array().map(Vec::len), Some(9));
    assert!(
        reply.body["rules"]
            .as_str()
            .is_some_and(|r| r.contains("z ="))
    );
    // A Jinan supervisor: only Jinan's wages.
    let supervisor = h.login("supervisor").await;
    let reply = h.get(&supervisor, "/api/analysis/topics").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let jinan_wages = reply.body["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["topic"] == "拖欠工资").cloned())
        .unwrap_or_else(|| panic!("{}", reply.text));
    assert_eq!(jinan_wages["current"], 2, "{jinan_wages}");
    assert_eq!(jinan_wages["cities"], json!(["jinan"]), "{jinan_wages}");
    // Months work too; bad queries and other roles are refused with a reason.
    let months = h
        .get(&admin, "/api/analysis/topics?period=month&city=qingdao")
        .await;
    assert_eq!(months.status, StatusCode::OK, "{}", months.text);
    assert_eq!(months.body["orders"], 1, "{}", months.text);
    let bad = h.get(&admin, "/api/analysis/topics?period=day").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    let agent = h.login("agent").await;
    let refused = h.get(&agent, "/api/analysis/topics").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
}

#[tokio::test]
async fn sqlite_hot_topics_come_from_the_orders_descriptions() {
    hot_topics_come_from_the_orders_descriptions(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_hot_topics_come_from_the_orders_descriptions() {
    hot_topics_come_from_the_orders_descriptions(&postgres().await).await;
}

/// H-15, W-19, W-20: the published report of a month is made by the server alone,
/// once, and every figure in its JSON, its XLSX and its HTML page is the API's answer
/// for the same period; the scheduler's next pass publishes the quarter and the year
/// that have ended and nothing twice.
async fn published_reports_agree_with_the_api(h: &Harness) {
    use calamine::{DataType, Reader};
    use hotline::api::reports::{ReportsDir, publish, publish_due};
    use hotline::assessment::periods::ReportPeriod;
    let dir = tempfile::tempdir().expect("tempdir");
    let reports = Harness {
        app: router(h.state.clone())
            .layer(axum::Extension(ReportsDir(Some(dir.path().to_path_buf())))),
        state: h.state.clone(),
        _dir: None,
        db_file: None,
    };
    let desk = h.login("province-dispatcher").await;
    let agent = h.login("agent").await;
    let march = |day: u32, city: &str, category: &str, text: &str| {
        let mut body = order_body(
            category,
            "unknown",
            Some(&format!("2026-03-{day:02}T10:00:00+08:00")),
        );
        body["city"] = json!(city);
        body["description"] = json!(text);
        body
    };
    for (day, city) in [(2, "jinan"), (3, "qingdao"), (4, "yantai"), (5, "jinan")] {
        h.create(
            &desk,
            march(
                day,
                city,
                "consultation",
                "工地老板拖欠工资半年，工友们都拿不到钱",
            ),
        )
        .await;
    }
    let answered = h
        .create(
            &agent,
            march(6, "jinan", "consultation", "想咨询离婚以后孩子的抚养权归谁"),
        )
        .await;
    h.command(
        &agent,
        &id_of(&answered),
        "answer_directly",
        json!({"answer": "可以"}),
    )
    .await;
    h.create(
        &agent,
        march(9, "jinan", "complaint", "投诉律师事务所收费不透明"),
    )
    .await;
    // Outside the month: not in its report.
    let mut april_order = march(1, "jinan", "complaint", "投诉");
    april_order["received_at"] = json!("2026-04-01T10:00:00+08:00");
    h.create(&agent, april_order).await;

    let period = ReportPeriod::parse("2026-03").expect("period");
    let now = h.state.orders.clock.now();
    assert!(
        publish(&reports.state, dir.path(), period, now)
            .await
            .expect("publish")
    );
    // Made once: a second attempt (another node, a restart) writes nothing.
    assert!(
        !publish(&reports.state, dir.path(), period, now)
            .await
            .expect("publish again")
    );

    let supervisor = h.login("supervisor").await;
    let admin = h.login("admin").await;
    assert_eq!(
        reports.get(&agent, "/api/reports").await.status,
        StatusCode::FORBIDDEN
    );
    let list = reports.get(&supervisor, "/api/reports").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(list.body["reports"][0]["id"], "2026-03", "{}", list.text);
    assert_eq!(
        list.body["reports"][0]["title"],
        "12348公共法律服务热线2026年3月运行报告"
    );
    let report = reports.get(&admin, "/api/reports/2026-03").await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text);
    let data = &report.body;

    // The figures are the API's for the same period.
    let mut stats = h.get(&admin, "/api/stats/orders?period=2026-03").await.body;
    let mut reported = data["stats"].clone();
    for v in [&mut stats, &mut reported] {
        v["as_of"] = Value::Null;
    }
    assert_eq!(reported, stats);
    assert_eq!(stats["total"], 6, "{stats}");
    let groups = ["consultation", "complaint_suggestion", "case"];
    for (i, group) in groups.iter().enumerate() {
        let ranked = h
            .get(
                &agent,
                &format!("/api/rankings?period=2026-03&group={group}&metric=combined"),
            )
            .await;
        assert_eq!(ranked.status, StatusCode::OK, "{}", ranked.text);
        assert_eq!(data["rankings"][i], ranked.body, "{group}");
    }
    let wages = data["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["topic"] == "拖欠工资")
        .unwrap_or_else(|| panic!("no 拖欠工资: {}", data["topics"]))
        .clone();
    assert_eq!(wages["current"], 4, "{wages}");
    assert_eq!(wages["focal"], true, "three cities: {wages}");

    // The workbook, read back: the overview and the city ranking hold the same numbers.
    let xlsx = reports.get(&supervisor, "/api/reports/2026-03/xlsx").await;
    assert_eq!(xlsx.status, StatusCode::OK);
    assert_eq!(
        xlsx.headers[header::CONTENT_TYPE],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let bytes = reports
        .send_bytes(&supervisor, "/api/reports/2026-03/xlsx")
        .await;
    let mut book =
        calamine::Xlsx::new(std::io::Cursor::new(bytes)).expect("the report is an XLSX file");
    assert_eq!(
        book.sheet_names(),
        [
            "概况",
            "咨询类排名",
            "投诉建议类排名",
            "业务办理类排名",
            "签到率",
            "热点问题",
            "质量评查"
        ]
    );
    let overview = book.worksheet_range("概况").expect("概况");
    let value_of = |label: &str| {
        overview
            .rows()
            .find(|r| r.first().and_then(|c| c.get_string()) == Some(label))
            .and_then(|r| r.get(1).and_then(DataType::as_f64))
    };
    assert_eq!(value_of("受理工单总数"), stats["total"].as_f64());
    assert_eq!(value_of("超期工单"), stats["overdue"].as_f64());
    assert_eq!(value_of("特殊标记工单"), stats["special_flag"].as_f64());
    assert_eq!(value_of("满意率"), stats["satisfaction"]["rate"].as_f64());
    let sheet = book.worksheet_range("咨询类排名").expect("ranking");
    let api_rows = data["rankings"][0]["rows"].as_array().expect("rows");
    assert!(!api_rows.is_empty());
    for api_row in api_rows {
        let name = api_row["unit_name"].as_str().expect("name");
        let row = sheet
            .rows()
            .find(|r| r.get(2).and_then(|c| c.get_string()) == Some(name))
            .unwrap_or_else(|| panic!("{name} not in the workbook"));
        assert_eq!(row[1].as_f64(), api_row["rank"].as_f64(), "{name}");
        assert_eq!(row[3].as_f64(), api_row["orders"].as_f64(), "{name}");
        assert_eq!(
            row[5].as_f64(),
            api_row["completion_rate"].as_f64(),
            "{name}"
        );
        assert_eq!(
            row[12].as_f64(),
            api_row["combined_score"].as_f64(),
            "{name}"
        );
    }
    let topics = book.worksheet_range("热点问题").expect("topics");
    assert!(
        topics
            .rows()
            .any(|r| r[0].get_string() == Some("拖欠工资") && r[1].as_f64() == Some(4.0))
    );

    // The printable page: Chinese, the same figures.
    let page = reports.get(&supervisor, "/api/reports/2026-03/html").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("<html lang=\"zh-CN\">"));
    assert!(page.text.contains("12348公共法律服务热线2026年3月运行报告"));
    assert!(page.text.contains(&format!(
        "<th>受理工单总数</th><td class=\"n\">{}</td>",
        stats["total"]
    )));
    assert!(page.text.contains("拖欠工资") && page.text.contains("<svg"));

    // Bad and unknown ids.
    assert_eq!(
        reports.get(&admin, "/api/reports/..%2Fx").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        reports
            .get(&admin, "/api/reports/2025-01/xlsx")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The scheduler's pass on 2 April: the first quarter and 2025 have ended too.
    let april = chrono::DateTime::parse_from_rfc3339("2026-04-02T08:00:00+08:00").expect("time");
    let published = publish_due(&reports.state, dir.path(), april)
        .await
        .expect("publish due");
    assert_eq!(published, ["2026-Q1", "2025"]);
    assert!(
        publish_due(&reports.state, dir.path(), april)
            .await
            .expect("again")
            .is_empty()
    );
    let ids: Vec<Value> = reports.get(&admin, "/api/reports").await.body["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, [json!("2026-03"), json!("2026-Q1"), json!("2025")]);
    let files = std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(
        files, 6,
        "an XLSX and an HTML file per report, nothing partial"
    );
}

#[tokio::test]
async fn sqlite_published_reports_agree_with_the_api() {
    published_reports_agree_with_the_api(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_published_reports_agree_with_the_api() {
    published_reports_agree_with_the_api(&postgres().await).await;
}

/// H-15, H-17-3/4, H-12: a supervisor samples the month's recorded calls and web
/// answers — every dissatisfied caller, complaint and long call by rule, plus a seeded
/// random draw (the same seed draws the same) — scores them on the configured rubric
/// with a comment; the agent sees only their own scores and appeals once (the second
/// appeal is 409); the scores roll up per person, unit and city, and the month's
/// published report carries the same roll-up as the API.
async fn quality_review_samples_scores_and_one_appeal(h: &Harness) {
    use hotline::ivr::flow::{CallCategory, SurveyResult, Urgency};
    let arrival = |day: u32, minute: u32| {
        chrono::DateTime::parse_from_rfc3339(&format!("2026-03-{day:02}T10:{minute:02}:00+08:00"))
            .expect("time")
    };
    let jinan = hotline::ivr::city::CityResolution {
        city: hotline::ivr::city::CityId::new("jinan"),
        how: hotline::ivr::city::ResolvedBy::AreaCode,
    };
    // (call, category, survey, minutes talked): agent 1001 (user "agent") answered.
    let calls = [
        ("q-complaint", CallCategory::Complaint, None, 3),
        (
            "q-unhappy",
            CallCategory::Consultation,
            Some(SurveyResult::Dissatisfied),
            2,
        ),
        ("q-long", CallCategory::Consultation, None, 12),
        (
            "q-plain-1",
            CallCategory::Consultation,
            Some(SurveyResult::Satisfied),
            2,
        ),
        ("q-plain-2", CallCategory::Consultation, None, 1),
        ("q-plain-3", CallCategory::Consultation, None, 4),
    ];
    for (i, (id, category, survey, minutes)) in calls.iter().enumerate() {
        let at = arrival(2 + i as u32, 0);
        let mut cdr = hotline::ivr::cdr::CdrBuilder::new(*id, "13812345678", "053112348", at);
        cdr.city(&jinan)
            .category(*category, Urgency::Normal)
            .queued(at)
            .agent_answered(at + chrono::TimeDelta::seconds(10), "1001");
        if let Some(s) = survey {
            cdr.survey(*s);
        }
        let record =
            cdr.finish(at + chrono::TimeDelta::seconds(10) + chrono::TimeDelta::minutes(*minutes));
        h.state
            .store
            .insert_call(&record, None)
            .await
            .expect("call");
    }
    // A web question the agent answered in writing.
    let agent = h.login("agent").await;
    let mut web = order_body("consultation", "unknown", Some("2026-03-10T09:00:00+08:00"));
    web["channel"] = json!("web");
    web["description"] = json!("网上咨询：劳动合同到期不续签有补偿吗");
    let web = h.create(&agent, web).await;
    h.command(
        &agent,
        &id_of(&web),
        "answer_directly",
        json!({"answer": "依法应支付经济补偿，可申请劳动仲裁"}),
    )
    .await;

    let supervisor = h.login("supervisor").await;
    assert_eq!(
        h.post(&agent, "/api/quality/samples", json!({"period": "2026-03"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let drawn = h
        .post(
            &supervisor,
            "/api/quality/samples",
            json!({"period": "2026-03", "random": 1, "seed": 42}),
        )
        .await;
    assert_eq!(drawn.status, StatusCode::CREATED, "{}", drawn.text);
    assert_eq!(drawn.body["candidates"], 7, "{}", drawn.text);
    let sampled = drawn.body["sampled"].as_array().expect("sampled").clone();
    let reason_of = |id: &str| {
        sampled
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["reason"].clone())
    };
    assert_eq!(reason_of("call:q-complaint"), Some(json!("complaint")));
    assert_eq!(reason_of("call:q-unhappy"), Some(json!("dissatisfied")));
    assert_eq!(reason_of("call:q-long"), Some(json!("long_call")));
    assert_eq!(
        sampled.len(),
        4,
        "three by rule, one at random: {}",
        drawn.text
    );
    let random: Vec<&Value> = sampled.iter().filter(|r| r["reason"] == "random").collect();
    assert_eq!(random.len(), 1);
    let complaint = sampled
        .iter()
        .find(|r| r["id"] == "call:q-complaint")
        .expect("complaint");
    assert_eq!(complaint["person"], "agent");
    assert_eq!(complaint["recording_url"], "/api/recordings/q-complaint");
    // Nothing is sampled twice; the rest is drawn by the next seed.
    let again = h
        .post(
            &supervisor,
            "/api/quality/samples",
            json!({"period": "2026-03", "random": 10, "seed": 42}),
        )
        .await;
    assert_eq!(
        again.body["sampled"].as_array().map(Vec::len),
        Some(3),
        "{}",
        again.text
    );

    // Scores on the rubric: every item, 0-100.
    let rubric = h.get(&supervisor, "/api/quality/rubric").await;
    let keys: Vec<&str> = rubric
        .body
        .as_array()
        .expect("rubric")
        .iter()
        .map(|i| i["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, ["attitude", "law", "no_paid_referral", "etiquette"]);
    let refused = h
        .post(
            &supervisor,
            "/api/quality/reviews/call:q-complaint/score",
            json!({"marks": {"attitude": 90}}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert_eq!(refused.body["field"], "marks");
    let marks = json!({"attitude": 90, "law": 80, "no_paid_referral": 100, "etiquette": 70});
    let scored = h
        .post(
            &supervisor,
            "/api/quality/reviews/call:q-complaint/score",
            json!({"marks": marks, "comment": "法条引用准确，语气可更耐心"}),
        )
        .await;
    assert_eq!(scored.status, StatusCode::OK, "{}", scored.text);
    assert_eq!(scored.body["score"], 86.0);
    let scored = h
        .post(
            &supervisor,
            &format!("/api/quality/reviews/web_answer:{}/score", id_of(&web)),
            json!({"marks": {"attitude": 100, "law": 60, "no_paid_referral": 100, "etiquette": 100}}),
        )
        .await;
    assert_eq!(scored.status, StatusCode::OK, "{}", scored.text);
    assert_eq!(scored.body["score"], 84.0);

    // The agent sees their own scored reviews only, with the answer reviewed.
    let mine = h.get(&agent, "/api/quality/reviews").await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text);
    let mine = mine.body["reviews"].as_array().expect("reviews").clone();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(
        mine.iter()
            .all(|r| r["person"] == "agent" && r["score"].is_number())
    );
    assert!(
        mine.iter()
            .any(|r| r["answer"] == "依法应支付经济补偿，可申请劳动仲裁")
    );
    assert_eq!(
        h.get(&agent, "/api/quality/reviews?mine=false")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // One appeal; the second is 409; nobody else appeals it.
    let other = h.login("dispatcher").await;
    assert_eq!(
        h.post(
            &other,
            "/api/quality/reviews/call:q-complaint/appeal",
            json!({"reason": "不是我"})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let appeal = h
        .post(
            &agent,
            "/api/quality/reviews/call:q-complaint/appeal",
            json!({"reason": "来电人情绪激动，已按规范安抚"}),
        )
        .await;
    assert_eq!(appeal.status, StatusCode::OK, "{}", appeal.text);
    assert_eq!(appeal.body["appeal"], "来电人情绪激动，已按规范安抚");
    let second = h
        .post(
            &agent,
            "/api/quality/reviews/call:q-complaint/appeal",
            json!({"reason": "再次申诉"}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.text);
    assert_eq!(second.body["code"], "already_appealed");
    assert_eq!(
        h.post(
            &agent,
            "/api/quality/reviews/call:q-long/appeal",
            json!({"reason": "未评分"})
        )
        .await
        .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Roll-up per person, unit and city; the report carries the same.
    let scores = h
        .get(&supervisor, "/api/quality/scores?period=2026-03")
        .await;
    assert_eq!(scores.status, StatusCode::OK, "{}", scores.text);
    assert_eq!(scores.body["reviews"], 2);
    assert_eq!(scores.body["score"], 85.0);
    assert_eq!(scores.body["by_person"][0]["key"], "agent");
    assert_eq!(scores.body["by_city"][0]["key"], "jinan");
    let dir = tempfile::tempdir().expect("tempdir");
    let period = hotline::assessment::periods::ReportPeriod::parse("2026-03").expect("period");
    hotline::api::reports::publish(&h.state, dir.path(), period, h.state.orders.clock.now())
        .await
        .expect("publish");
    let admin = h.login("admin").await;
    let report = h.get(&admin, "/api/reports/2026-03").await;
    let province = h.get(&admin, "/api/quality/scores?period=2026-03").await;
    assert_eq!(report.body["quality"], province.body, "{}", report.text);
}

#[tokio::test]
async fn sqlite_quality_review_samples_scores_and_one_appeal() {
    quality_review_samples_scores_and_one_appeal(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_quality_review_samples_scores_and_one_appeal() {
    quality_review_samples_scores_and_one_appeal(&postgres().await).await;
}

/// H-16, H-17: a supervisor registers a fault (agent absent from duty) with a
/// rectification deadline counted in working days like an order's; the unit records
/// its rectification once (the second is 409); the criticism circular of the month
/// names the unit, the person, the fault, the deadline as a bureau writes it and the
/// rectification's state.
async fn violations_are_rectified_once_and_circulated(h: &Harness) {
    use chrono::Datelike;
    let supervisor = h.login("supervisor").await;
    let agent = h.login("agent").await;
    let body = json!({
        "unit": "jinan",
        "person": "agent",
        "kind": "absent_from_duty",
        "description": "值班时段离开岗位40分钟",
        "working_days": 3,
    });
    assert_eq!(
        h.post(&agent, "/api/violations", body.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    let mut elsewhere = body.clone();
    elsewhere["unit"] = json!("qingdao");
    let refused = h.post(&supervisor, "/api/violations", elsewhere).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    let mut bad_days = body.clone();
    bad_days["working_days"] = json!(0);
    assert_eq!(
        h.post(&supervisor, "/api/violations", bad_days).await.body["field"],
        "working_days"
    );
    let registered = h.post(&supervisor, "/api/violations", body).await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.text
    );
    let v = &registered.body;
    let now = h.state.orders.clock.now();
    let calendar = h.state.orders.calendar.current();
    let due = calendar.add_working_days(now, 3);
    assert_eq!(v["due"], due.at.to_rfc3339(), "{v}");
    assert!(
        v["due_text"]
            .as_str()
            .is_some_and(|t| t.ends_with("24:00（3个工作日）")),
        "{v}"
    );
    assert_eq!(v["state"], "open");
    assert_eq!(v["person_name"], "值班员 张明");
    let id = v["id"].as_str().expect("id").to_owned();

    // The unit sees it and records the rectification, once.
    let listed = h.get(&agent, "/api/violations").await;
    assert_eq!(
        listed.body["violations"][0]["id"],
        id.as_str(),
        "{}",
        listed.text
    );
    let done = h
        .post(
            &agent,
            &format!("/api/violations/{id}/rectified"),
            json!({"note": "已调整排班并签订值班承诺书"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.body["state"], "done");
    let again = h
        .post(
            &agent,
            &format!("/api/violations/{id}/rectified"),
            json!({"note": "再次"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    // A unit below Jinan (the legal-aid center) does not see Jinan's faults.
    let center = h.login("handler").await;
    let theirs = h.get(&center, "/api/violations").await;
    assert_eq!(theirs.body["violations"], json!([]), "{}", theirs.text);

    // The month's circular.
    let period = format!("{}-{:02}", now.year(), now.month());
    let text = h
        .get(&supervisor, &format!("/api/circulars?period={period}"))
        .await;
    assert_eq!(text.status, StatusCode::OK, "{}", text.text);
    assert!(text.text.contains("批评通报"), "{}", text.text);
    assert!(
        text.text
            .contains("济南市司法局（值班员 张明）：值班人员脱岗。值班时段离开岗位40分钟。限"),
        "{}",
        text.text
    );
    assert!(text.text.contains("前整改，已整改。"), "{}", text.text);
    let page = h
        .get(
            &supervisor,
            &format!("/api/circulars?period={period}&format=html"),
        )
        .await;
    assert!(
        page.text.contains("<h1>关于") && page.text.contains("批评通报</h1>"),
        "{}",
        page.text
    );
}

#[tokio::test]
async fn sqlite_violations_are_rectified_once_and_circulated() {
    violations_are_rectified_once_and_circulated(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_violations_are_rectified_once_and_circulated() {
    violations_are_rectified_once_and_circulated(&postgres().await).await;
}

/// H-6: the public-sentiment summary of a city and month: top topics with counts and
/// the change against the month before, sample descriptions with numbers and names
/// masked, the urgent events; and its CSV export.
async fn sentiment_summary_counts_changes_and_masks(h: &Harness) {
    let desk = h.login("province-dispatcher").await;
    let order = |at: &str, text: &str, urgency: &str| {
        let mut body = order_body("consultation", "unknown", Some(at));
        body["description"] = json!(text);
        body["urgency"] = json!(urgency);
        body
    };
    h.create(
        &desk,
        order("2026-02-10T10:00:00+08:00", "公司拖欠工资三个月", "normal"),
    )
    .await;
    for day in [3, 4, 5] {
        h.create(
            &desk,
            order(
                &format!("2026-03-{day:02}T10:00:00+08:00"),
                "张三反映老板拖欠工资，电话13812345678",
                "normal",
            ),
        )
        .await;
    }
    h.create(
        &desk,
        order(
            "2026-03-06T10:00:00+08:00",
            "工地发生群体性讨薪，情绪激动",
            "urgent",
        ),
    )
    .await;
    let admin = h.login("admin").await;
    assert_eq!(
        h.get(
            &h.login("agent").await,
            "/api/analysis/summary?period=2026-03"
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let reply = h
        .get(&admin, "/api/analysis/summary?period=2026-03&city=jinan")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["orders"], 4, "{}", reply.text);
    let wages = reply.body["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["topic"] == "拖欠工资")
        .unwrap_or_else(|| panic!("{}", reply.text))
        .clone();
    assert_eq!(
        (&wages["count"], &wages["previous"], &wages["change"]),
        (&json!(3), &json!(1), &json!(2))
    );
    assert_eq!(
        wages["samples"][0], "张*反映老板拖欠工资，电话138****5678",
        "{wages}"
    );
    assert!(!reply.text.contains("13812345678"));
    assert_eq!(
        reply.body["urgent"].as_array().map(Vec::len),
        Some(1),
        "{}",
        reply.text
    );
    assert_eq!(
        reply.body["urgent"][0]["description"],
        "工地发生群体性讨薪，情绪激动"
    );
    let csv = h
        .get(
            &admin,
            "/api/analysis/summary?period=2026-03&city=jinan&format=csv",
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.text
            .starts_with("类型,话题或工单,本期,上期,变化,样例或时间\n"),
        "{}",
        csv.text
    );
    assert!(
        csv.text.contains("话题,\"拖欠工资\",3,1,2,"),
        "{}",
        csv.text
    );
    assert!(csv.text.contains("紧急事件,"), "{}", csv.text);
    assert_eq!(
        h.get(&admin, "/api/analysis/summary?period=2026-13")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn sqlite_sentiment_summary_counts_changes_and_masks() {
    sentiment_summary_counts_changes_and_masks(&sqlite().await).await;
}

#[tokio::test]
async fn postgres_sentiment_summary_counts_changes_and_masks() {
    sentiment_summary_counts_changes_and_masks(&postgres().await).await;
}
