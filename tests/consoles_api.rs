//! The consoles' call APIs through the router (`tower::ServiceExt::oneshot`) with a real
//! store (SQLite in a temp dir; PostgreSQL on 127.0.0.1:5432 for `postgres_*`, which
//! must be running), real WAV files in a temporary recordings directory and
//! the real ACD of the shipped config: recording playback (roles, Range, audit, path
//! traversal), autosaved call drafts, server-side order KPIs, and the console's
//! transfer of a bridged call.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::{Extension, Router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use hotline::api::auth::Auth;
use hotline::api::queues::AcdApi;
use hotline::api::recordings::RecordingsDir;
use hotline::api::{AppState, router};
use hotline::calendar::Calendar;
use hotline::clock::WallClock;
use hotline::config::{Config, Role as ConfigRole, UserConfig};
use hotline::ivr::cdr::CdrBuilder;
use hotline::ivr::city::CityId;
use hotline::ivr::flow::{CallCategory, Urgency};
use hotline::orders::OrdersContext;
use hotline::queue::{AgentId, QueueInput};
use hotline::server::acd::{AcdCommand, AcdShell};
use hotline::store::Store;
use hotline::ticket::model::CallId;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Console users for these tests (password `demo-<id>`), on top of the shipped ones.
fn user(id: &str, role: ConfigRole, unit: &str, agent: Option<&str>) -> UserConfig {
    UserConfig {
        id: id.into(),
        name: id.into(),
        password: Some(format!("demo-{id}")),
        password_hash: None,
        roles: vec![role],
        unit: unit.into(),
        api_token: None,
        agent: agent.map(str::to_owned),
    }
}

fn config() -> Config {
    let mut config = Config::load(&root().join("config/hotline.toml")).expect("shipped config");
    config.users.extend([
        user("sup-jinan", ConfigRole::Supervisor, "jinan", None),
        user("sup-qingdao", ConfigRole::Supervisor, "qingdao", None),
        user("admin-p", ConfigRole::ProvinceAdmin, "province", None),
        user("agent-1001", ConfigRole::Agent, "jinan", Some("1001")),
        user("agent-1002", ConfigRole::Agent, "jinan", Some("1002")),
        user("agent-qd", ConfigRole::Agent, "qingdao", None),
        user("disp", ConfigRole::Dispatcher, "jinan", None),
        user("cb", ConfigRole::CallbackStaff, "jinan", None),
        user("rev", ConfigRole::Reviewer, "jinan", None),
        user("county", ConfigRole::UnitHandler, "jinan-shizhong", None),
        user("disp-qd", ConfigRole::Dispatcher, "qingdao", None),
    ]);
    config
}

struct Harness {
    app: Router,
    store: Store,
    acd: Arc<AcdShell>,
    dir: tempfile::TempDir,
}

fn recordings(dir: &Path) -> PathBuf {
    dir.join("recordings")
}

async fn harness_on(store: Store) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(recordings(dir.path())).expect("recordings dir");
    let config = config();
    let calendar =
        Calendar::load(root().join("config/calendar/cn-workdays.toml")).expect("calendar");
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00+08:00").expect("t");
    let acd = AcdShell::new(
        config.queues.clone().expect("[queues]"),
        calendar.clone(),
        WallClock::starting_at(at),
        None,
        Default::default(),
    )
    .expect("ACD");
    let state = AppState {
        store: store.clone(),
        metrics: Arc::default(),
        warnings: Arc::new(vec![]),
        orders: Arc::new(OrdersContext::from_config(&config, calendar)),
        auth: Arc::new(Auth::for_config(&config)),
        cities: Arc::default(),
    };
    let app = router(state)
        .layer(Extension(AcdApi(Some(acd.clone()))))
        .layer(Extension(RecordingsDir(Some(recordings(dir.path())))));
    Harness {
        app,
        store,
        acd,
        dir,
    }
}

async fn sqlite() -> (Harness, tempfile::TempDir) {
    let db = tempfile::tempdir().expect("tempdir");
    let store = Store::connect(&format!("sqlite://{}", db.path().join("t.db").display()))
        .await
        .expect("sqlite");
    store.migrate().await.expect("migrate");
    (harness_on(store).await, db)
}

async fn postgres() -> Harness {
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let name = format!(
        "hotline_consoles_{}_{}",
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
    harness_on(store).await
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    bytes: Vec<u8>,
    body: Value,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
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
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            bytes,
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
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "login {user}: {}",
            reply.text()
        );
        let cookie = reply.headers[header::SET_COOKIE]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        Session {
            cookie,
            csrf: reply.body["csrf_token"].as_str().expect("csrf").to_owned(),
        }
    }

    async fn get(&self, s: &Session, uri: &str, range: Option<&str>) -> Reply {
        let mut request = Request::get(uri).header(header::COOKIE, &s.cookie);
        if let Some(range) = range {
            request = request.header(header::RANGE, range);
        }
        self.send(request.body(Body::empty()).expect("request"))
            .await
    }

    async fn write(&self, s: &Session, method: &str, uri: &str, body: Value) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::COOKIE, &s.cookie)
                .header("x-csrf-token", &s.csrf)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }

    /// Store a finished call of `city` answered by `agent` whose recording list is
    /// `recordings` (paths as the call layer stores them).
    async fn call(&self, call_id: &str, city: &str, agent: &str, recordings: Vec<String>) {
        self.call_at(
            call_id,
            city,
            agent,
            recordings,
            "2026-11-28T10:00:00+08:00",
        )
        .await;
    }

    /// As [`Harness::call`], arriving at `arrival` (RFC 3339).
    async fn call_at(
        &self,
        call_id: &str,
        city: &str,
        agent: &str,
        recordings: Vec<String>,
        arrival: &str,
    ) {
        let at = chrono::DateTime::parse_from_rfc3339(arrival).expect("t");
        let mut cdr = CdrBuilder::new(call_id, "13812345678", "053112348", at);
        cdr.category(CallCategory::Complaint, Urgency::Normal)
            .queued(at);
        let mut record = cdr.finish(at + chrono::TimeDelta::seconds(30));
        record.city = Some(CityId::new(city));
        record.agent = Some(agent.into());
        record.recordings = recordings;
        self.store.insert_call(&record, None).await.expect("cdr");
    }

    /// A stereo 8 kHz WAV of `seconds` under the recordings directory.
    fn wav(&self, relative: &str, seconds: u32) -> PathBuf {
        let path = recordings(self.dir.path()).join(relative);
        write_wav(&path, seconds);
        path
    }

    async fn plays(&self) -> i64 {
        self.store
            .audit_count("recording.play")
            .await
            .expect("audit count")
    }
}

fn write_wav(path: &Path, seconds: u32) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("dir");
    }
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for i in 0..(8000 * seconds) {
        let s = ((i % 80) as i16 - 40) * 200;
        w.write_sample(s).expect("sample");
        w.write_sample(-s).expect("sample");
    }
    w.finalize().expect("finalize");
}

/// `GET /api/calls` lists the calls of the user's subtree only: Qingdao's supervisor
/// does not see Jinan's calls, Jinan's does, the province sees both.
#[tokio::test]
async fn call_records_are_listed_within_the_users_subtree() {
    let (h, _db) = sqlite().await;
    h.call("call-jinan", "jinan", "1001", Vec::new()).await;
    h.call("call-qingdao", "qingdao", "2001", Vec::new()).await;
    let ids = |body: &serde_json::Value| {
        let mut ids: Vec<String> = body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["record"]["call_id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    for (user, expected) in [
        ("sup-qingdao", vec!["call-qingdao"]),
        ("sup-jinan", vec!["call-jinan"]),
        ("admin-p", vec!["call-jinan", "call-qingdao"]),
    ] {
        let session = h.login(user).await;
        let r = h.get(&session, "/api/calls", None).await;
        assert_eq!(r.status, StatusCode::OK, "{user}");
        let body: serde_json::Value = serde_json::from_slice(&r.bytes).expect("json");
        assert_eq!(ids(&body), expected, "{user}");
    }
}

/// The subtree filter of `GET /api/calls` comes before the limit: with newer calls of
/// another city on top, a city's supervisor asking for `limit=2` gets the two newest
/// calls of their city, not an empty or short page.
async fn the_calls_limit_counts_calls_of_the_users_subtree(h: &Harness) {
    h.call_at(
        "jinan-1",
        "jinan",
        "1001",
        Vec::new(),
        "2026-11-28T09:00:00+08:00",
    )
    .await;
    h.call_at(
        "jinan-2",
        "jinan",
        "1001",
        Vec::new(),
        "2026-11-28T09:10:00+08:00",
    )
    .await;
    h.call_at(
        "jinan-3",
        "jinan",
        "1001",
        Vec::new(),
        "2026-11-28T09:20:00+08:00",
    )
    .await;
    for minute in 30..33 {
        let id = format!("qingdao-{minute}");
        let arrival = format!("2026-11-28T09:{minute}:00+08:00");
        h.call_at(&id, "qingdao", "2001", Vec::new(), &arrival)
            .await;
    }
    let ids = |user: &'static str| async move {
        let session = h.login(user).await;
        let r = h.get(&session, "/api/calls?limit=2", None).await;
        assert_eq!(r.status, StatusCode::OK, "{user}: {}", r.text());
        let body: serde_json::Value = serde_json::from_slice(&r.bytes).expect("json");
        body.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["record"]["call_id"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("sup-jinan").await, ["jinan-3", "jinan-2"]);
    assert_eq!(ids("sup-qingdao").await, ["qingdao-32", "qingdao-31"]);
    assert_eq!(ids("admin-p").await, ["qingdao-32", "qingdao-31"]);
}

#[tokio::test]
async fn sqlite_the_calls_limit_counts_calls_of_the_users_subtree() {
    let (h, _db) = sqlite().await;
    the_calls_limit_counts_calls_of_the_users_subtree(&h).await;
}

#[tokio::test]
async fn postgres_the_calls_limit_counts_calls_of_the_users_subtree() {
    the_calls_limit_counts_calls_of_the_users_subtree(&postgres().await).await;
}

#[tokio::test]
async fn recordings_are_served_with_ranges_to_supervisors_and_their_agent_only() {
    let (h, _db) = sqlite().await;
    let wav = h.wav("2026/11/28/call-1.wav", 2);
    let bytes = std::fs::read(&wav).expect("read wav");
    let len = bytes.len();
    h.call("call-1", "jinan", "1001", vec![wav.display().to_string()])
        .await;
    let uri = "/api/recordings/call-1";

    // Not logged in: 401.
    let anonymous = h
        .send(Request::get(uri).body(Body::empty()).expect("request"))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // Roles that do not assess calls: 403, nothing audited.
    for who in ["disp", "cb", "rev"] {
        let s = h.login(who).await;
        let r = h.get(&s, uri, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {}", r.text());
    }
    assert_eq!(h.plays().await, 0);

    // The Jinan supervisor hears the whole file, as audio/wav with byte ranges.
    let sup = h.login("sup-jinan").await;
    let r = h.get(&sup, uri, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers[header::CONTENT_TYPE], "audio/wav");
    assert_eq!(r.headers[header::ACCEPT_RANGES], "bytes");
    assert_eq!(r.headers[header::CONTENT_LENGTH], len.to_string().as_str());
    assert_eq!(r.bytes, bytes);
    assert_eq!(&r.bytes[..4], b"RIFF");

    // Seeking: a middle range, an open range, a suffix.
    let r = h.get(&sup, uri, Some("bytes=100-1123")).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers[header::CONTENT_RANGE],
        format!("bytes 100-1123/{len}").as_str()
    );
    assert_eq!(r.bytes, bytes[100..1124]);
    let r = h
        .get(&sup, uri, Some(&format!("bytes={}-", len - 10)))
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, bytes[len - 10..]);
    let r = h.get(&sup, uri, Some("bytes=-44")).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes, bytes[len - 44..]);
    // Beyond the end: 416 with the length.
    let r = h.get(&sup, uri, Some(&format!("bytes={len}-"))).await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        r.headers[header::CONTENT_RANGE],
        format!("bytes */{len}").as_str()
    );

    // The province administrator hears every city; Qingdao's supervisor not Jinan's.
    let admin = h.login("admin-p").await;
    assert_eq!(
        h.get(&admin, uri, Some("bytes=0-43")).await.status,
        StatusCode::PARTIAL_CONTENT
    );
    let qingdao = h.login("sup-qingdao").await;
    assert_eq!(
        h.get(&qingdao, uri, None).await.status,
        StatusCode::FORBIDDEN
    );

    // The agent who answered replays the call; another agent may not.
    let own = h.login("agent-1001").await;
    assert_eq!(h.get(&own, uri, None).await.status, StatusCode::OK);
    let other = h.login("agent-1002").await;
    assert_eq!(h.get(&other, uri, None).await.status, StatusCode::FORBIDDEN);

    // Unknown call: 404. Every served request was audited, refused ones not.
    assert_eq!(
        h.get(&sup, "/api/recordings/no-such-call", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.plays().await, 6);
}

#[tokio::test]
async fn recording_ids_that_look_like_paths_are_refused_and_nothing_outside_is_read() {
    let (h, _db) = sqlite().await;
    let sup = h.login("sup-jinan").await;
    // A secret next to the recordings directory, and a call whose stored path points
    // at it through `..`, one through an absolute path, one through a symlink.
    let secret = h.dir.path().join("secret.wav");
    write_wav(&secret, 1);
    let secret_bytes = std::fs::read(&secret).expect("secret");
    let dotdot = recordings(h.dir.path()).join("2026/11/28/../../../secret.wav");
    std::fs::create_dir_all(recordings(h.dir.path()).join("2026/11/28")).expect("dirs");
    h.call(
        "evil-dotdot",
        "jinan",
        "1001",
        vec![dotdot.display().to_string()],
    )
    .await;
    h.call(
        "evil-absolute",
        "jinan",
        "1001",
        vec![secret.display().to_string()],
    )
    .await;
    let link = recordings(h.dir.path()).join("2026/11/28/link.wav");
    std::os::unix::fs::symlink(&secret, &link).expect("symlink");
    h.call(
        "evil-link",
        "jinan",
        "1001",
        vec![link.display().to_string()],
    )
    .await;
    // A real one, to show the same user is otherwise served.
    let good = h.wav("2026/11/28/good.wav", 1);
    h.call("good", "jinan", "1001", vec![good.display().to_string()])
        .await;

    for id in ["evil-dotdot", "evil-absolute", "evil-link"] {
        let r = h.get(&sup, &format!("/api/recordings/{id}"), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}: {}", r.text());
        assert_ne!(r.bytes, secret_bytes);
    }
    // Ids shaped like paths never reach the store or the disk: 400 (or a 404 from the
    // router when the raw path has more segments).
    for uri in [
        "/api/recordings/..",
        "/api/recordings/%2e%2e",
        "/api/recordings/%2E%2E",
        "/api/recordings/..%2F..%2Fsecret.wav",
        "/api/recordings/%2e%2e%2f%2e%2e%2fsecret.wav",
        "/api/recordings/%2Fetc%2Fpasswd",
        "/api/recordings/%5C..%5Csecret.wav",
        "/api/recordings/good%00",
        "/api/recordings/a%0Ab",
        "/api/recordings/../../secret.wav",
        "/api/recordings/..%252F..%252Fsecret.wav",
    ] {
        let r = h.get(&sup, uri, None).await;
        assert!(
            r.status.is_client_error(),
            "{uri}: {} {}",
            r.status,
            r.text()
        );
        assert_ne!(r.bytes, secret_bytes, "{uri}");
    }
    let long = format!("/api/recordings/{}", "a".repeat(257));
    assert_eq!(
        h.get(&sup, &long, None).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get(&sup, "/api/recordings/%2e%2e", None).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        h.get(&sup, "/api/recordings/good%00", None).await.status,
        StatusCode::BAD_REQUEST
    );
    // Nothing above was served, so nothing was audited; the good call still plays.
    assert_eq!(h.plays().await, 0);
    assert_eq!(
        h.get(&sup, "/api/recordings/good", None).await.status,
        StatusCode::OK
    );
    assert_eq!(h.plays().await, 1);
}

#[tokio::test]
async fn drafts_are_autosaved_per_call_and_deleted_when_the_order_is_created() {
    let (h, _db) = sqlite().await;
    let _task = bridged_call(&h.acd, "call-7");
    let agent = h.login("agent").await;
    let other = h.login("agent-1002").await;
    let uri = "/api/drafts/call-7";
    assert_eq!(h.get(&agent, uri, None).await.status, StatusCode::NOT_FOUND);
    let form = json!({"contact_name": "张先生", "description": "邻里纠纷", "call_id": "call-7"});
    let r = h.write(&agent, "PUT", uri, form.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.get(&agent, uri, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["fields"], form);
    // Another user neither reads nor overwrites it.
    assert_eq!(h.get(&other, uri, None).await.status, StatusCode::NOT_FOUND);
    let r = h
        .write(&other, "PUT", uri, json!({"description": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    // A supervisor of the city may write it, but not over the agent's draft.
    let sup = h.login("sup-jinan").await;
    let r = h.write(&sup, "PUT", uri, json!({"description": "x"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    // Roles that take no calls write no drafts.
    let disp = h.login("disp").await;
    let r = h.write(&disp, "PUT", uri, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    // Not an object, not JSON, a path-like id: refused.
    assert_eq!(
        h.write(&agent, "PUT", uri, json!([1, 2])).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        h.write(&agent, "PUT", "/api/drafts/%2e%2e", json!({}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // The order created with the call id takes the draft's place.
    let r = h
        .write(
            &agent,
            "POST",
            "/api/orders",
            json!({"contact_name": "张先生", "contact_phone": "13812345678", "category": "complaint",
                   "description": "邻里纠纷", "city": "jinan", "call_id": "call-7"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.body["fields"]["call_id"], "call-7");
    assert_eq!(h.get(&agent, uri, None).await.status, StatusCode::NOT_FOUND);
}

async fn kpis_are_counted_in_the_users_subtree(h: &Harness) {
    let agent = h.login("agent").await;
    let agent_qd = h.login("agent-qd").await;
    let disp = h.login("dispatcher").await;
    let create = |city: &'static str, phone: &'static str| {
        json!({"contact_name": "王", "contact_phone": phone, "category": "consultation",
               "description": "咨询", "city": city, "units": []})
    };
    for (city, phone) in [
        ("jinan", "13800000001"),
        ("jinan", "13800000002"),
        ("qingdao", "13800000003"),
    ] {
        let who = if city == "jinan" { &agent } else { &agent_qd };
        let r = h
            .write(who, "POST", "/api/orders", create(city, phone))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    // One Jinan order dispatched to the legal-aid centre.
    let list = h.get(&agent, "/api/orders?city=jinan", None).await;
    let first = list.body["items"][0]["id"].as_str().expect("id").to_owned();
    let r = h
        .write(
            &disp,
            "POST",
            &format!("/api/orders/{first}/dispatch"),
            json!({"units": ["jinan-legal-aid"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let province = h.login("admin-p").await;
    let all = h.get(&province, "/api/stats/orders", None).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text());
    assert_eq!(all.body["total"], 3, "{}", all.body);
    assert_eq!(all.body["by_state"]["pending_dispatch"], 2, "{}", all.body);
    assert_eq!(all.body["by_state"]["dispatched"], 1, "{}", all.body);
    assert_eq!(all.body["open"], 3);
    assert_eq!(all.body["overdue_open"], 0);
    assert_eq!(all.body["special_flag"], 0);
    assert_eq!(all.body["satisfaction"]["rated"], 0);
    assert!(all.body["satisfaction"]["rate"].is_null());
    // Pending orders have their transfer limit within a working day: some are due
    // today or later, never overdue yet.
    assert!(all.body["due_today"].as_i64().is_some());

    // A Qingdao supervisor counts Qingdao only; the Jinan one Jinan only.
    let qingdao = h.login("sup-qingdao").await;
    let q = h.get(&qingdao, "/api/stats/orders", None).await;
    assert_eq!(q.body["total"], 1, "{}", q.body);
    let jinan = h.login("sup-jinan").await;
    let j = h.get(&jinan, "/api/stats/orders", None).await;
    assert_eq!(j.body["total"], 2, "{}", j.body);

    // A period: this month holds them all; a past year none; a bad one is 400.
    let now = chrono::Utc::now().with_timezone(&hotline::calendar::shanghai());
    let month = now.format("%Y-%m").to_string();
    let m = h
        .get(
            &province,
            &format!("/api/stats/orders?period={month}"),
            None,
        )
        .await;
    assert_eq!(m.body["total"], 3, "{}", m.body);
    assert_eq!(m.body["period"], month.as_str());
    let old = h
        .get(&province, "/api/stats/orders?period=2017", None)
        .await;
    assert_eq!(old.body["total"], 0, "{}", old.body);
    let bad = h
        .get(&province, "/api/stats/orders?period=soon", None)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let unknown = h.get(&province, "/api/stats/orders?limit=3", None).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn order_kpis_are_counted_by_the_server_in_the_users_subtree_sqlite() {
    let (h, _db) = sqlite().await;
    kpis_are_counted_in_the_users_subtree(&h).await;
}

#[tokio::test]
async fn postgres_order_kpis_are_counted_by_the_server_in_the_users_subtree() {
    let h = postgres().await;
    kpis_are_counted_in_the_users_subtree(&h).await;
}

/// Put a call in the Jinan queue and bridge it to agent 1001; the returned channel is
/// the call task's side (it receives the ACD's commands).
fn bridged_call(acd: &AcdShell, call: &str) -> tokio::sync::mpsc::UnboundedReceiver<AcdCommand> {
    let agent = AgentId::new("1001");
    acd.input(QueueInput::Registered {
        agent: agent.clone(),
    })
    .expect("registered");
    acd.input(QueueInput::SignIn {
        agent: agent.clone(),
    })
    .expect("signed in");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    acd.enqueue(
        QueueInput::CallArrived {
            call: CallId(call.into()),
            city: CityId::new("jinan"),
            category: CallCategory::Complaint,
            urgency: Urgency::Normal,
            area: None,
            caller: "13812345678".into(),
        },
        tx,
    )
    .expect("enqueued");
    acd.input(QueueInput::AgentAnswered {
        call: CallId(call.into()),
        agent,
    })
    .expect("answered");
    rx
}

#[tokio::test]
async fn transfer_is_for_the_agent_on_the_call_or_a_supervisor_and_units_are_not_available() {
    let (h, _db) = sqlite().await;
    let mut task = bridged_call(&h.acd, "call-9");
    // The call task's side: carry out each transfer it is asked for.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Some(command) = task.recv().await {
            if let AcdCommand::Transfer { to, reply } = command {
                record.lock().expect("lock").push(to);
                reply.send(Ok(()));
            }
        }
    });
    let uri = "/api/calls/call-9/transfer";
    let own = h.login("agent").await; // the shipped demo agent works as 1001
    let other = h.login("agent-1002").await;
    let disp = h.login("disp").await;
    let qingdao = h.login("sup-qingdao").await;
    let jinan = h.login("sup-jinan").await;

    for (who, s) in [
        ("agent-1002", &other),
        ("disp", &disp),
        ("sup-qingdao", &qingdao),
    ] {
        let r = h.write(s, "POST", uri, json!({"to": "survey"})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {}", r.text());
    }
    let r = h
        .write(&own, "POST", uri, json!({"to": "unit:jinan-legal-aid"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.body["code"], "transfer_unavailable");
    let r = h
        .write(&own, "POST", uri, json!({"to": "sip:evil@x"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["code"], "invalid_field");
    let r = h.write(&own, "POST", uri, json!({"where": "survey"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = h
        .write(
            &own,
            "POST",
            "/api/calls/no-such/transfer",
            json!({"to": "survey"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .write(
            &own,
            "POST",
            "/api/calls/%2e%2e/transfer",
            json!({"to": "survey"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Without the CSRF token a cookie session cannot transfer.
    let r = h
        .send(
            Request::post(uri)
                .header(header::COOKIE, &own.cookie)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"to":"survey"}"#))
                .expect("request"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(seen.lock().expect("lock").is_empty());

    // The agent on the call, and the supervisor of its city, reach the call task.
    let r = h
        .write(&own, "POST", uri, json!({"to": "queue:qingdao"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h.write(&jinan, "POST", uri, json!({"to": "survey"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        *seen.lock().expect("lock"),
        [
            hotline::queue::TransferTarget::Queue(CityId::new("qingdao")),
            hotline::queue::TransferTarget::Survey
        ]
    );
}

/// The next SSE event of a `/api/events` body within `wait` (keep-alive comments
/// skipped), as its text.
async fn next_event(body: &mut Body, wait: std::time::Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .ok()??;
        let Ok(data) = frame.ok()?.into_data() else {
            continue;
        };
        let text = String::from_utf8_lossy(&data).into_owned();
        if text.contains("event:") {
            return Some(text);
        }
    }
}

#[tokio::test]
async fn drafts_are_for_known_calls_their_agent_or_city_supervisor_and_a_quota() {
    let (h, _db) = sqlite().await;
    let _task = bridged_call(&h.acd, "jinan-live");
    let agent = h.login("agent").await; // agent 1001, on the call
    let qingdao_agent = h.login("agent-qd").await;
    let qingdao_sup = h.login("sup-qingdao").await;
    let form = json!({"description": "邻里纠纷"});
    // The incident: another city's agent takes a Jinan call id first.
    for (who, s) in [("agent-qd", &qingdao_agent), ("sup-qingdao", &qingdao_sup)] {
        let r = h
            .write(s, "PUT", "/api/drafts/jinan-live", form.clone())
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {}", r.text());
    }
    let r = h
        .write(&agent, "PUT", "/api/drafts/jinan-live", form.clone())
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the agent on the call: {}",
        r.text()
    );
    // Call ids the server never saw: no draft for anybody.
    let r = h
        .write(&agent, "PUT", "/api/drafts/made-up", form.clone())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    // After the call the agent its record names goes on writing (wrap-up).
    h.call("jinan-ended", "jinan", "1001", vec![]).await;
    let r = h
        .write(&agent, "PUT", "/api/drafts/jinan-ended", form.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = h
        .write(
            &qingdao_agent,
            "PUT",
            "/api/drafts/jinan-ended",
            form.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    // A quota per user: 20 drafts at once (2 held already).
    for i in 0..18 {
        let id = format!("jinan-old-{i}");
        h.call(&id, "jinan", "1001", vec![]).await;
        let r = h
            .write(&agent, "PUT", &format!("/api/drafts/{id}"), form.clone())
            .await;
        assert_eq!(r.status, StatusCode::OK, "{id}: {}", r.text());
    }
    h.call("jinan-one-more", "jinan", "1001", vec![]).await;
    let r = h
        .write(&agent, "PUT", "/api/drafts/jinan-one-more", form.clone())
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert_eq!(r.body["code"], "draft_quota");
    // Updating a draft already held is not a new one.
    let r = h
        .write(&agent, "PUT", "/api/drafts/jinan-live", form.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn live_control_queue_views_and_events_stay_in_the_users_subtree() {
    let (h, _db) = sqlite().await;
    h.acd
        .input(QueueInput::Registered {
            agent: AgentId::new("1001"),
        })
        .expect("registered");
    let jinan = h.login("sup-jinan").await;
    let qingdao = h.login("sup-qingdao").await;
    let county = h.login("county").await;
    let province = h.login("admin-p").await;

    // Queue views: a city's supervisor sees their city, a county user no city's live
    // calls, the province every city.
    let cities = |r: &Reply| -> Vec<String> {
        r.body
            .as_array()
            .expect("queues")
            .iter()
            .map(|q| q["city"].as_str().expect("city").to_owned())
            .collect()
    };
    assert_eq!(
        cities(&h.get(&qingdao, "/api/queues", None).await),
        ["qingdao"]
    );
    assert_eq!(cities(&h.get(&jinan, "/api/queues", None).await), ["jinan"]);
    assert!(cities(&h.get(&county, "/api/queues", None).await).is_empty());
    assert!(cities(&h.get(&province, "/api/queues", None).await).len() >= 2);

    // The event streams of both cities' supervisors.
    let stream = |s: &Session| {
        Request::get("/api/events")
            .header(header::COOKIE, &s.cookie)
            .body(Body::empty())
            .expect("request")
    };
    let mut jinan_events = h
        .app
        .clone()
        .oneshot(stream(&jinan))
        .await
        .expect("sse")
        .into_body();
    let mut qingdao_events = h
        .app
        .clone()
        .oneshot(stream(&qingdao))
        .await
        .expect("sse")
        .into_body();

    // Qingdao's supervisor cannot pause Jinan's agent; Jinan's can.
    let r = h
        .write(&qingdao, "POST", "/api/agents/1001/sign_in", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = h
        .write(&jinan, "POST", "/api/agents/1001/sign_in", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let wait = std::time::Duration::from_secs(2);
    let seen = next_event(&mut jinan_events, wait)
        .await
        .expect("Jinan's event");
    assert!(
        seen.contains("agent_state") && seen.contains("1001"),
        "{seen}"
    );
    assert_eq!(
        next_event(&mut qingdao_events, std::time::Duration::from_millis(500)).await,
        None,
        "Qingdao's supervisor hears nothing of Jinan's agents"
    );
}

/// H-12-4 / issue 15: dispatch, the units and callback staff play the voice message of
/// an order they may read (404 for an order outside their scope, 403 for reviewers),
/// through a URL on the order — never the server's file path — and each play is in the
/// audit log (who, which order and call, when, which bytes).
async fn voice_messages_play_on_the_order_for_its_roles_audited(h: &Harness) {
    use hotline::store::calls::VoiceMessage;
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).expect("t");
    let wav = h.wav("2026/11/27/vm-7.wav", 1);
    let bytes = std::fs::read(&wav).expect("read wav");
    let path = wav.display().to_string();
    let arrival = "2026-11-27T20:00:00+08:00";
    let message = VoiceMessage {
        call_id: "vm-7".into(),
        caller: "13812345678".into(),
        city: Some("jinan".into()),
        category: "complaint".into(),
        urgency: "normal".into(),
        recording: path.clone(),
        duration_ms: 1000,
        received_at: arrival.into(),
        callback_due: "2026-12-01T00:00:00+08:00".into(),
        provisional: false,
        work_order: None,
    };
    let cdr = CdrBuilder::new("vm-7", "13812345678", "053112348", at(arrival)).finish(at(arrival));
    h.store
        .insert_call(&cdr, Some(&message))
        .await
        .expect("call with a voice message");
    let calendar =
        Calendar::load(root().join("config/calendar/cn-workdays.toml")).expect("calendar");
    let orders = OrdersContext::from_config(&config(), calendar);
    let made = hotline::server::voicemail::convert_once(
        &h.store,
        &orders,
        &hotline::ticket::UnitId::new("jinan"),
        at("2026-11-27T20:00:05+08:00"),
    )
    .await
    .expect("voice message → order");
    assert_eq!(made, 1);
    let id = h
        .store
        .voice_message("vm-7")
        .await
        .expect("read")
        .and_then(|m| m.work_order)
        .expect("linked order");
    let url = format!("/api/orders/{id}/voice_message");

    // The order carries the play URL, and neither it nor its history the file path.
    let disp = h.login("disp").await;
    let order = h.get(&disp, &format!("/api/orders/{id}"), None).await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.text());
    assert_eq!(order.body["voice_message"]["play_url"], url.as_str());
    assert!(!order.text().contains(&path), "{}", order.text());
    let events = h
        .get(&disp, &format!("/api/orders/{id}/events"), None)
        .await;
    assert!(!events.text().contains(&path), "{}", events.text());

    // Dispatch and the callback clerk of Jinan play it, with ranges.
    let r = h.get(&disp, &url, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers[header::CONTENT_TYPE], "audio/wav");
    assert_eq!(r.bytes, bytes);
    let cb = h.login("cb").await;
    let r = h.get(&cb, &url, Some("bytes=0-43")).await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{}", r.text());
    assert_eq!(r.bytes, bytes[..44]);

    // Outside the order's scope: 404, as for the order itself; reviewers: 403.
    for who in ["disp-qd", "sup-qingdao", "agent-qd", "county"] {
        let s = h.login(who).await;
        let r = h.get(&s, &url, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{who}: {}", r.text());
    }
    let rev = h.login("rev").await;
    assert_eq!(h.get(&rev, &url, None).await.status, StatusCode::FORBIDDEN);

    // Once dispatched to a unit, its handlers hear it too.
    let dispatched = h
        .write(
            &disp,
            "POST",
            &format!("/api/orders/{id}/dispatch"),
            json!({"units": ["jinan-shizhong"], "area": "mediation"}),
        )
        .await;
    assert_eq!(dispatched.status, StatusCode::OK, "{}", dispatched.text());
    let county = h.login("county").await;
    assert_eq!(h.get(&county, &url, None).await.status, StatusCode::OK);

    // Every play is audited: who, which order (and call), which bytes; refusals not.
    let lines = h
        .store
        .audit_lines("voice_message.play", Some(&id), 10)
        .await
        .expect("audit");
    let mut who: Vec<&str> = lines.iter().map(|l| l.actor.as_str()).collect();
    who.sort_unstable();
    assert_eq!(who, ["cb", "county", "disp"], "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.subject == id && l.detail.contains("call vm-7") && l.at_ms > 0),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.detail.contains("bytes 0-43/")),
        "{lines:?}"
    );

    // An order that merely names the call is not the message's order: 404.
    let own = h
        .write(
            &disp,
            "POST",
            "/api/orders",
            json!({"contact_phone": "13800000000", "category": "consultation",
                   "description": "冒用留言", "call_id": "vm-7", "city": "jinan"}),
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.text());
    let other = own.body["id"].as_str().expect("id").to_owned();
    let r = h
        .get(&disp, &format!("/api/orders/{other}/voice_message"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
}

#[tokio::test]
async fn sqlite_voice_messages_play_on_the_order_for_its_roles_audited() {
    let (h, _db) = sqlite().await;
    voice_messages_play_on_the_order_for_its_roles_audited(&h).await;
}

#[tokio::test]
async fn postgres_voice_messages_play_on_the_order_for_its_roles_audited() {
    voice_messages_play_on_the_order_for_its_roles_audited(&postgres().await).await;
}
