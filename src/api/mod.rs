//! HTTP API (axum): health, metrics; the consoles' API grows here.

pub mod analysis;
pub mod attachments;
pub mod auth;
pub mod error;
pub mod labels;
pub mod openapi;
pub mod orders;
pub mod partner;
pub mod public;
pub mod web;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;

pub mod calls;
pub mod cities;
pub mod directory;
pub mod drafts;
pub mod order_calls;
pub mod quality;
pub mod queues;
pub mod recordings;
pub mod reports;
pub mod softphone;
pub mod stats;
pub mod views;
pub mod violations;

use crate::metrics::Metrics;
use crate::store::Store;

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Start-up warnings an operator must see (e.g. "calendar for 2027 not loaded").
    pub warnings: Arc<Vec<String>>,
    /// Work orders: calendar, units, routing, clock.
    pub orders: Arc<orders::OrdersContext>,
    /// Users, passwords, API tokens and console sessions.
    pub auth: Arc<auth::Auth>,
    /// The cities as configured (published hours, numbers).
    pub cities: Arc<Vec<crate::config::CityConfig>>,
}

/// The routes of the JSON API under `/api/`, each registered from its handler's
/// `#[utoipa::path]`: what is served and what `/api/openapi.json` documents are one list.
pub fn api_routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .merge(cities::routes())
        .merge(calls::routes())
        .merge(orders::routes())
        .merge(order_calls::routes())
        .merge(queues::routes())
        .merge(softphone::routes())
        .merge(recordings::routes())
        .merge(drafts::routes())
        .merge(stats::routes())
        .merge(analysis::routes())
        .merge(public::routes())
        .merge(attachments::routes())
        .merge(partner::routes())
        .merge(directory::routes())
        .merge(reports::routes())
        .merge(quality::routes())
        .merge(violations::routes())
}

/// Operational routes outside the API document (probes and scrapes, not for consoles).
pub const UNDOCUMENTED_ROUTES: [(&str, &str); 2] = [("get", "/healthz"), ("get", "/metrics")];

pub fn router(state: AppState) -> Router {
    let (api, _document) = api_routes().split_for_parts();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(api)
        .layer(axum::extract::DefaultBodyLimit::max(orders::MAX_BODY_BYTES))
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            api_latency,
        ))
        .with_state(state)
        .merge(web::router())
        .layer(axum::middleware::map_response(security_headers))
}

/// The standard security headers on every answer (those a handler set are kept), and
/// `Cache-Control: no-store` on the API's: they carry personal data that no browser or
/// proxy cache should keep.
async fn security_headers(uri: axum::http::Uri, mut response: Response) -> Response {
    use axum::http::HeaderValue;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        // Pages set their own policy (web.rs); API answers load nothing at all.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    let path = uri.path();
    let dynamic = path.starts_with("/api/") || path == "/healthz" || path == "/metrics";
    let no_store = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-store"));
    if dynamic && !no_store {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// How long `/healthz` waits for its write probe (the store's busy timeout is 5 s).
const WRITE_PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What `/healthz` reads from the running server (an axum extension set by `serve`).
#[derive(Debug, Clone, Default)]
pub struct ServerHealth {
    /// Work-order creates waiting for the database.
    pub outbox: Option<Arc<crate::orders::outbox::OrderOutbox>>,
    /// Call records waiting for the database.
    pub call_outbox: Option<Arc<crate::server::call_outbox::CallRecordOutbox>>,
    /// SIGTERM received: new calls are refused while calls in progress finish.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Whether SIP is served (`None`: not checked, e.g. a router without a SIP side).
    pub sip: Option<SipLiveness>,
}

/// Asks the SIP side whether it still serves (its receive loop runs).
#[derive(Clone)]
pub struct SipLiveness(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for SipLiveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SipLiveness")
    }
}

#[derive(Debug, Serialize)]
struct Health {
    /// "down" (503: calls are not served), "failing" (503: calls are served, but the
    /// database takes no writes: orders and call records are only queued, phones cannot
    /// register; someone must act), "draining", "degraded" (200: a known warning or a
    /// queue still draining) or "ok".
    status: &'static str,
    /// Calls are served: the SIP receive loop runs (a database outage does not stop
    /// calls: their records wait in the journal). False only with status "down".
    serving_calls: bool,
    /// "ok", "down" (the SIP receive loop ended) or "unchecked".
    sip: &'static str,
    /// "ok", "unwritable" (answers reads, refuses writes: a full disk) or "unreachable".
    database: &'static str,
    /// Work-order creates accepted (202) and waiting for the database.
    queued_orders: usize,
    /// Records of calls that ended while the database was unavailable, waiting for it.
    queued_call_records: usize,
    warnings: Vec<String>,
}

/// What a monitor pages on: 503 when someone must act now: `status: "down"` when calls
/// are not served (the SIP socket's receive loop ended), `"failing"` when calls are
/// served but the database is unreachable or takes no writes (orders and call records
/// only queued, REGISTER refused). Otherwise 200: `status` is "draining" after SIGTERM
/// (new calls are refused: a load balancer should move on), "degraded" for known
/// problems that need no one at 3 a.m. (orders or call records still being replayed, a
/// start-up warning such as a missing calendar year, which names the file to edit), else
/// "ok".
async fn healthz(
    State(state): State<AppState>,
    server: Option<axum::Extension<ServerHealth>>,
) -> (StatusCode, Json<serde_json::Value>) {
    let server = server.map(|axum::Extension(s)| s).unwrap_or_default();
    // A read round trip answers on a full disk too: the database is "ok" only when it
    // also takes a (durable) write.
    let database = if state.store.ping().await.is_err() {
        "unreachable"
    } else if let Err(e) = state.store.check_writable(WRITE_PROBE_LIMIT).await {
        tracing::warn!(%e, "healthz: the database takes no writes");
        "unwritable"
    } else {
        "ok"
    };
    let db_ok = database == "ok";
    let queued_orders = server.outbox.as_ref().map_or(0, |o| o.depth());
    let queued_call_records = server.call_outbox.as_ref().map_or(0, |o| o.depth());
    let draining = server.draining.load(std::sync::atomic::Ordering::Relaxed);
    let sip = match &server.sip {
        None => "unchecked",
        Some(SipLiveness(serving)) if serving() => "ok",
        Some(_) => "down",
    };
    let serving_calls = sip != "down";
    // Start-up warnings, then the calendar years missing from the calendar in force
    // (they go away once the file is reloaded with them).
    let mut warnings: Vec<String> = state.warnings.iter().cloned().collect();
    if let Some(path) = state.orders.calendar.path() {
        let today = state.orders.clock.now().date_naive();
        warnings.extend(crate::server::calendar_warnings(
            &state.orders.calendar.current(),
            path,
            today,
        ));
    }
    let health = Health {
        status: if !serving_calls {
            "down"
        } else if !db_ok {
            "failing"
        } else if draining {
            "draining"
        } else if db_ok && queued_orders == 0 && queued_call_records == 0 && warnings.is_empty() {
            "ok"
        } else {
            "degraded"
        },
        serving_calls,
        sip,
        database,
        queued_orders,
        queued_call_records,
        warnings,
    };
    let code = if serving_calls && db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::to_value(&health).unwrap_or_default()),
    )
}

/// How long `/metrics` waits for each database count of the wallboard.
const WALLBOARD_QUERY_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn metrics(
    State(state): State<AppState>,
    acd: Option<axum::Extension<queues::AcdApi>>,
) -> Response {
    let wallboard = wallboard(&state, acd.and_then(|axum::Extension(a)| a.0)).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render_with(Some(&wallboard)),
    )
        .into_response()
}

/// The figures `/metrics` reads at each scrape: the queues and agents from the ACD, the
/// voice messages and overdue orders from the database (left out when it does not
/// answer in time: the gauges keep their last values).
async fn wallboard(
    state: &AppState,
    acd: Option<Arc<crate::server::acd::AcdShell>>,
) -> crate::metrics::Wallboard {
    let mut w = crate::metrics::Wallboard::default();
    if let Some(acd) = acd {
        for snapshot in acd.snapshots() {
            let city = snapshot.city.as_str().to_owned();
            w.waiting.insert(
                city.clone(),
                u32::try_from(snapshot.waiting.len()).unwrap_or(u32::MAX),
            );
            for (agent_state, n) in snapshot.agents_by_state {
                w.agents.insert((city.clone(), agent_state), n);
            }
        }
    }
    let store = &state.store;
    let pending = tokio::time::timeout(
        WALLBOARD_QUERY_LIMIT,
        store.count_voice_messages_without_order(),
    );
    if let Ok(Ok(n)) = pending.await {
        w.voice_messages_pending = Some(n);
    }
    let now_ms = state.orders.clock.now().timestamp_millis();
    let filter = crate::store::stats::StatsFilter {
        scope: None,
        received: None,
        now_ms,
        end_of_today_ms: now_ms,
    };
    if let Ok(Ok(stats)) =
        tokio::time::timeout(WALLBOARD_QUERY_LIMIT, store.order_stats(&filter)).await
    {
        w.orders_overdue = Some(stats.overdue_open);
    }
    w
}

/// Every API answer's latency into `hotline_api_request_duration_seconds`, labelled by
/// the matched route template (unmatched paths share one label).
async fn api_latency(
    State(metrics): State<Arc<Metrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    if route.starts_with("/api/") {
        metrics.api_request(
            &method,
            &route,
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get_json(app: Router, uri: &str) -> (StatusCode, String) {
        let resp = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_reports_database_and_warnings() {
        let (store, _dir) = crate::store::test_support::sqlite().await;
        let state = AppState {
            store,
            metrics: Arc::default(),
            warnings: Arc::new(vec![]),
            orders: Arc::default(),
            auth: Arc::default(),
            cities: Arc::default(),
        };
        let (status, body) = get_json(router(state.clone()), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"status\":\"ok\""), "{body}");

        let warned = AppState {
            warnings: Arc::new(vec!["calendar for 2027 not loaded".into()]),
            ..state
        };
        let (_, body) = get_json(router(warned), "/healthz").await;
        assert!(body.contains("\"status\":\"degraded\""), "{body}");
        assert!(body.contains("calendar for 2027 not loaded"), "{body}");
    }

    #[tokio::test]
    async fn healthz_is_degraded_while_orders_wait_and_says_draining_after_sigterm() {
        let (store, dir) = crate::store::test_support::sqlite().await;
        let metrics: Arc<Metrics> = Arc::default();
        let outbox =
            crate::orders::outbox::OrderOutbox::open(dir.path(), metrics.clone()).expect("outbox");
        let state = AppState {
            store,
            metrics,
            warnings: Arc::new(vec![]),
            orders: Arc::default(),
            auth: Arc::default(),
            cities: Arc::default(),
        };
        let server = ServerHealth {
            outbox: Some(outbox.clone()),
            call_outbox: None,
            draining: Arc::default(),
            sip: None,
        };
        let app = || router(state.clone()).layer(axum::Extension(server.clone()));
        let (_, body) = get_json(app(), "/healthz").await;
        assert!(body.contains("\"status\":\"ok\""), "{body}");
        assert!(body.contains("\"queued_orders\":0"), "{body}");
        let create = crate::orders::outbox::QueuedCreate {
            order: crate::ticket::Order::default(),
            events: Vec::new(),
            actor: "u".into(),
            idempotency: None,
            at_ms: 0,
        };
        outbox.append(create).expect("queued");
        let (_, body) = get_json(app(), "/healthz").await;
        assert!(body.contains("\"status\":\"degraded\""), "{body}");
        assert!(body.contains("\"queued_orders\":1"), "{body}");
        server
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (status, body) = get_json(app(), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"status\":\"draining\""), "{body}");
    }

    #[tokio::test]
    async fn healthz_pages_only_when_calls_are_not_served() {
        let (store, _dir) = crate::store::test_support::sqlite().await;
        let state = AppState {
            store,
            metrics: Arc::default(),
            warnings: Arc::new(vec![
                "calendar for 2027 not loaded: add 2027 to /x.toml".into(),
            ]),
            orders: Arc::default(),
            auth: Arc::default(),
            cities: Arc::default(),
        };
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let probe = up.clone();
        let server = ServerHealth {
            sip: Some(SipLiveness(Arc::new(move || {
                probe.load(std::sync::atomic::Ordering::SeqCst)
            }))),
            ..ServerHealth::default()
        };
        let app = || router(state.clone()).layer(axum::Extension(server.clone()));
        // A known warning: served, degraded, 200.
        let (status, body) = get_json(app(), "/healthz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "degraded", "{body}");
        assert_eq!(health["serving_calls"], true, "{body}");
        assert_eq!(health["sip"], "ok", "{body}");
        // The SIP receive loop is gone: 503, down.
        up.store(false, std::sync::atomic::Ordering::SeqCst);
        let (status, body) = get_json(app(), "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "down", "{body}");
        assert_eq!(health["serving_calls"], false, "{body}");
        assert_eq!(health["sip"], "down", "{body}");
    }

    #[tokio::test]
    async fn metrics_is_prometheus_text() {
        let (store, _dir) = crate::store::test_support::sqlite().await;
        let state = AppState {
            store,
            metrics: Arc::default(),
            warnings: Arc::new(vec![]),
            orders: Arc::default(),
            auth: Arc::default(),
            cities: Arc::default(),
        };
        state.metrics.parse_error();
        let (status, body) = get_json(router(state), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("hotline_sip_parse_errors_total 1"), "{body}");
    }

    #[tokio::test]
    async fn cities_publish_their_hours() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = crate::config::Config::load(&root.join("config/hotline.toml")).unwrap();
        let calendar =
            crate::calendar::Calendar::load(root.join("config/calendar/cn-workdays.toml")).unwrap();
        let (store, _dir) = crate::store::test_support::sqlite().await;
        let state = AppState {
            store,
            metrics: Arc::default(),
            warnings: Arc::new(vec![]),
            orders: Arc::new(orders::OrdersContext::from_config(&config, calendar)),
            auth: Arc::new(auth::Auth::for_config(&config)),
            cities: Arc::new(config.cities.clone()),
        };
        let (status, body) = get_json(router(state), "/api/cities").await;
        assert_eq!(status, StatusCode::OK);
        let cities: serde_json::Value = serde_json::from_str(&body).unwrap();
        let list = cities.as_array().unwrap();
        assert_eq!(list.len(), 16, "{body}");
        let jinan = list.iter().find(|c| c["id"] == "jinan").unwrap();
        assert_eq!(jinan["numbers"][0], "053112348");
        assert_eq!(jinan["hours"], "工作日上午9:00至12:00，下午1:30至5:30");
        assert!(jinan["status"]["open"].is_boolean(), "{jinan}");
    }
}
