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
use hotline::api::{AppState, router};
use hotline::calendar::{Calendar, SharedCalendar};
use hotline::config::Config;
use hotline::orders::OrdersContext;
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

async fn store_on(db: Db, dir: &tempfile::TempDir) -> Store {
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
    store
}

impl OrdersHarness {
    /// The shipped calendar, never reloaded.
    pub async fn start(db: Db) -> Self {
        let calendar = Calendar::load(shipped_calendar_path()).expect("calendar");
        Self::start_with(db, |_| SharedCalendar::fixed(calendar)).await
    }

    /// The calendar `make` returns, given the harness's temp dir (to copy a file into).
    pub async fn start_with(db: Db, make: impl FnOnce(&std::path::Path) -> SharedCalendar) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = shipped_config();
        let mut orders = OrdersContext::from_config(&config, Calendar::default());
        orders.calendar = make(dir.path());
        let store = store_on(db, &dir).await;
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
        }
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
