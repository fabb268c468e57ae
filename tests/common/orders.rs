//! The work-order API in process (router + real store, SQLite in a temp dir or a fresh
//! PostgreSQL database on 127.0.0.1:5432), with users, units and routing from the
//! shipped config and a calendar the test chooses (e.g. a temp copy it edits).

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use hotline::api::auth::Auth;
use hotline::api::{AppState, ServerHealth, router};
use hotline::calendar::{Calendar, SharedCalendar};
use hotline::config::Config;
use hotline::orders::OrdersContext;
use hotline::orders::outbox::OrderOutbox;
use hotline::store::Store;

use super::repo_root;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct OrdersHarness {
    pub app: Router,
    pub state: AppState,
    pub dir: tempfile::TempDir,
    /// The database's URL (to connect a second store to it).
    pub url: String,
}

pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

pub fn shipped_config() -> Config {
    Config::load(&repo_root().join("config/hotline.toml")).expect("shipped config")
}

pub fn shipped_calendar_path() -> PathBuf {
    repo_root().join("config/calendar/cn-workdays.toml")
}

async fn store_on(db: Db, dir: &tempfile::TempDir) -> (Store, String) {
    let url = match db {
        Db::Sqlite => format!("sqlite://{}", dir.path().join("t.db").display()),
        Db::Postgres => {
            let name = format!(
                "hotline_orders_{}_{}",
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
            format!("postgres://postgres@127.0.0.1:5432/{name}")
        }
    };
    let store = Store::connect(&url).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, url)
}

impl OrdersHarness {
    /// The shipped calendar, never reloaded.
    pub async fn start(db: Db) -> Self {
        let calendar = Calendar::load(shipped_calendar_path()).expect("calendar");
        Self::start_with(db, |_| SharedCalendar::fixed(calendar)).await
    }

    /// The calendar `make` returns, given the harness's temp dir (to copy a file into).
    pub async fn start_with(db: Db, make: impl FnOnce(&std::path::Path) -> SharedCalendar) -> Self {
        Self::start_edited(db, make, |_| {}).await
    }

    /// The shipped calendar, with these partner hotlines (`[[partners]]`).
    pub async fn start_with_partners(
        db: Db,
        partners: Vec<hotline::orders::partners::Partner>,
    ) -> Self {
        let calendar = Calendar::load(shipped_calendar_path()).expect("calendar");
        Self::start_edited(
            db,
            |_| SharedCalendar::fixed(calendar),
            move |orders| {
                for p in partners {
                    orders.partners.0.insert(p.id.clone(), p);
                }
            },
        )
        .await
    }

    async fn start_edited(
        db: Db,
        make: impl FnOnce(&std::path::Path) -> SharedCalendar,
        edit: impl FnOnce(&mut OrdersContext),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = shipped_config();
        let mut orders = OrdersContext::from_config(&config, Calendar::default());
        orders.calendar = make(dir.path());
        orders.attachments_dir = Some(dir.path().join("attachments"));
        edit(&mut orders);
        let (store, url) = store_on(db, &dir).await;
        store
            .install_unit_tree(&orders.units)
            .await
            .expect("install units");
        store.set_order_numbering(Some(&config.orders.number_prefix));
        let state = AppState {
            store,
            metrics: Arc::default(),
            warnings: Arc::new(vec![]),
            orders: Arc::new(orders),
            auth: Arc::new(Auth::for_config(&config)),
            cities: Arc::default(),
        };
        Self {
            app: router(state.clone()),
            state,
            dir,
            url,
        }
    }

    /// As `hotline serve` runs it: creates go to an outbox journal in the harness's
    /// temp dir while the database is unavailable.
    pub fn with_outbox(mut self) -> (Self, Arc<OrderOutbox>) {
        let outbox = OrderOutbox::open(&self.dir.path().join("data"), Arc::default())
            .expect("outbox journal");
        self.app = router(self.state.clone()).layer(axum::Extension(ServerHealth {
            outbox: Some(outbox.clone()),
            ..ServerHealth::default()
        }));
        (self, outbox)
    }

    /// A request of the public intake (no login) from `source`, JSON body.
    pub async fn public_post(&self, source: &str, uri: &str, body: &Value) -> Reply {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .extension(from_source(source))
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }

    /// A citizen's attachment upload from `source` (raw body; `content_type` declared).
    pub async fn public_upload(
        &self,
        source: &str,
        code: &str,
        phone: &str,
        content_type: &str,
        content: Vec<u8>,
    ) -> Reply {
        self.send(
            Request::post(format!("/api/public/orders/{code}/attachments"))
                .header(header::CONTENT_TYPE, content_type)
                .header("x-contact-phone", phone)
                .extension(from_source(source))
                .body(Body::from(content))
                .expect("request"),
        )
        .await
    }

    /// A proof-of-work challenge asked from `source` and solved: `(challenge, nonce)`.
    pub async fn solved_challenge(&self, source: &str) -> (String, String) {
        let reply = self
            .send(
                Request::get("/api/public/challenge")
                    .extension(from_source(source))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "challenge: {}", reply.text);
        let challenge = reply.body["challenge"]
            .as_str()
            .expect("challenge")
            .to_owned();
        let bits =
            u8::try_from(reply.body["difficulty_bits"].as_u64().expect("bits")).expect("bits fit");
        // 2^bits tries on average; the bound is far above it.
        let nonce = hotline::orders::intake::solve(&challenge, bits, 1 << (bits + 8))
            .expect("a nonce within the bound");
        (challenge, nonce)
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("response");
        let status = response.status();
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
            text,
        }
    }

    /// Logs a shipped demo user in (password `demo-<user>`).
    pub async fn login(&self, user: &str) -> Session {
        let response = self
            .app
            .clone()
            .oneshot(
                Request::post("/api/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"user": user, "password": format!("demo-{user}")}).to_string(),
                    ))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK, "login {user}");
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).expect("login json");
        Session {
            cookie,
            csrf: body["csrf_token"].as_str().expect("csrf").to_owned(),
        }
    }

    pub async fn get(&self, s: &Session, uri: &str) -> Reply {
        self.send(
            Request::get(uri)
                .header(header::COOKIE, &s.cookie)
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    pub async fn post(&self, s: &Session, uri: &str, body: Value) -> Reply {
        self.send(
            Request::post(uri)
                .header(header::COOKIE, &s.cookie)
                .header("x-csrf-token", &s.csrf)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }

    /// A request with no login (the public pages' API).
    pub async fn public(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        self.send(
            request
                .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
                .expect("request"),
        )
        .await
    }

    /// A logged-in write of any method with a body of any type.
    pub async fn write(
        &self,
        s: &Session,
        method: &str,
        uri: &str,
        content_type: &str,
        body: String,
    ) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::COOKIE, &s.cookie)
                .header("x-csrf-token", &s.csrf)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .expect("request"),
        )
        .await
    }

    /// A command that must succeed (200); the order after it.
    pub async fn command(&self, s: &Session, id: &str, command: &str, body: Value) -> Value {
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

    /// Creates an order (201); the order.
    pub async fn create(&self, s: &Session, body: Value) -> Value {
        let reply = self.post(s, "/api/orders", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "create: {}", reply.text);
        reply.body
    }
}

/// The peer address a request came from (what the HTTP server records).
pub fn from_source(ip: &str) -> axum::extract::ConnectInfo<std::net::SocketAddr> {
    axum::extract::ConnectInfo(std::net::SocketAddr::new(
        ip.parse().expect("an IP address"),
        40_000,
    ))
}
