//! Process-wide metrics, rendered by `GET /metrics` in the OpenMetrics text format (which
//! Prometheus scrapes) through the `prometheus-client` crate.
//!
//! Counting on the SIP parse path costs one atomic add (plus a read lock for a labelled
//! family). The wallboard figures that live elsewhere (callers waiting, agents by state,
//! voice messages and orders) are read when `/metrics` is scraped: see [`Wallboard`].
//!
//! `docs/grafana/hotline.json` is a dashboard over these names; a test checks that every
//! name it uses is exposed.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::sip::message::Method;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The method label: the methods we count separately; everything else is "other".
fn method_label(m: &Method) -> &'static str {
    match m {
        Method::Invite => "INVITE",
        Method::Ack => "ACK",
        Method::Bye => "BYE",
        Method::Cancel => "CANCEL",
        Method::Register => "REGISTER",
        Method::Options => "OPTIONS",
        Method::Info => "INFO",
        Method::Update => "UPDATE",
        Method::Prack => "PRACK",
        Method::Subscribe => "SUBSCRIBE",
        Method::Notify => "NOTIFY",
        Method::Refer => "REFER",
        Method::Message => "MESSAGE",
        Method::Publish => "PUBLISH",
        Method::Extension(_) => "other",
    }
}

/// Recordings and voice messages that failed to start or to be written (disk full,
/// permissions): the call goes on, the failure is logged and counted here. A process-wide
/// counter because the media tasks that see it hold no `Metrics` handle.
static RECORDING_FAILURES: LazyLock<Counter> = LazyLock::new(Counter::default);

pub fn recording_failed() {
    RECORDING_FAILURES.inc();
}

/// Bridged agents whose phone vanished (no audio): the caller was re-queued. Counted by
/// the call tasks, which hold no `Metrics` handle.
static AGENTS_LOST: LazyLock<Counter> = LazyLock::new(Counter::default);

pub fn agent_lost() {
    AGENTS_LOST.inc();
}

/// RTP and RTCP packets dropped because they came from a host the call's SDP and
/// signalling never named (or another port once latched): counted per leg at its end.
static RTP_FOREIGN_DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

pub fn rtp_foreign_dropped(packets: u64) {
    RTP_FOREIGN_DROPPED.inc_by(packets);
}

pub use crate::sip::counters::{Direction, DropReason};

/// Why an HTTP connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRefusal {
    /// `[http] max_connections` (or the open-file plan's lower cap) reached.
    Total = 0,
    /// `[http] max_connections_per_source` reached for its address.
    PerSource = 1,
}

impl HttpRefusal {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HttpRefusal::Total => "total",
            HttpRefusal::PerSource => "per_source",
        }
    }
}

/// What an API client was throttled for (429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiThrottle {
    /// Failed logins for one user from one source.
    Login = 0,
    /// Unknown bearer tokens from one source.
    Bearer = 1,
}

impl ApiThrottle {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ApiThrottle::Login => "login",
            ApiThrottle::Bearer => "bearer",
        }
    }
}

/// Which durable outbox (see `orders::journal`) a figure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// Work-order creates (`outbox.jsonl`).
    Orders = 0,
    /// Call records and their voice messages (`call-records.outbox.jsonl`).
    CallRecords = 1,
}

impl OutboxKind {
    /// What one entry is, for log lines.
    #[must_use]
    pub fn what(self) -> &'static str {
        match self {
            OutboxKind::Orders => "order create",
            OutboxKind::CallRecords => "call record",
        }
    }
}

/// Why a webhook notice was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeDrop {
    /// The delivery queue was full.
    QueueFull,
    /// Every attempt failed.
    GaveUp,
}

impl NoticeDrop {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeDrop::QueueFull => "queue_full",
            NoticeDrop::GaveUp => "gave_up",
        }
    }
}

/// How a caller's wait in a queue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// An agent answered.
    Answered,
    /// The caller hung up while waiting.
    Abandoned,
}

impl WaitOutcome {
    fn as_str(self) -> &'static str {
        match self {
            WaitOutcome::Answered => "answered",
            WaitOutcome::Abandoned => "abandoned",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionMethod {
    direction: &'static str,
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionStatus {
    direction: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct What {
    what: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueOutcome {
    queue: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CityState {
    city: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    method: String,
    route: String,
    status: u16,
}

/// Queue waits: from 1 s to 10 min.
const WAIT_BUCKETS: [f64; 11] = [
    1.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0, 600.0,
];
/// Call set-up (INVITE to answer): from 10 ms to 1 min (a ringing agent).
const SETUP_BUCKETS: [f64; 11] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// API latency: from 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn wait_histogram() -> Histogram {
    Histogram::new(WAIT_BUCKETS)
}
fn setup_histogram() -> Histogram {
    Histogram::new(SETUP_BUCKETS)
}
fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The figures read from the running server when `/metrics` is scraped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wallboard {
    /// Callers waiting per queue (city); every configured queue, 0 included.
    pub waiting: BTreeMap<String, u32>,
    /// Agents per (city, state name): `available`, `on_call`, `logged_out`, ….
    pub agents: BTreeMap<(String, String), u32>,
    /// Voice messages without a work order yet (`None`: the database did not answer).
    pub voice_messages_pending: Option<i64>,
    /// Open work orders past their feedback limit (`None`: the database did not answer).
    pub orders_overdue: Option<i64>,
}

pub struct Metrics {
    registry: Registry,
    /// Held while the wallboard gauges are refreshed and the text encoded, so a scrape
    /// never sees half a refresh.
    scrape: Mutex<()>,
    requests: Family<DirectionMethod, Counter>,
    responses: Family<DirectionStatus, Counter>,
    parse_errors: Counter,
    dropped: Family<Reason, Counter>,
    auth_failures: Counter,
    bans: Counter,
    overloaded: Counter,
    toll_fraud_refused: Counter,
    calls_over_rate: Counter,
    active_registrations: Gauge,
    active_transactions: Gauge,
    tcp_connections: Gauge,
    notices_delivered: Counter,
    notice_attempts_failed: Counter,
    notices_dropped: Family<Reason, Counter>,
    outbox_queued: [Counter; 2],
    outbox_replayed: [Counter; 2],
    outbox_refused: [Counter; 2],
    outbox_depth: [Gauge; 2],
    calls_closed_at_startup: Counter,
    http_connections: Gauge,
    http_refused: Family<Reason, Counter>,
    api_throttled: Family<What, Counter>,
    // The wallboard.
    calls_active: Gauge,
    queue_waiting: Family<QueueLabel, Gauge>,
    agents: Family<CityState, Gauge>,
    queue_answered: Family<QueueLabel, Counter>,
    queue_answered_in_target: Family<QueueLabel, Counter>,
    queue_abandoned: Family<QueueLabel, Counter>,
    service_level_target: Gauge,
    service_level_secs: std::sync::atomic::AtomicU64,
    voice_messages_pending: Gauge,
    orders_overdue: Gauge,
    queue_wait: HistogramFamily<QueueOutcome>,
    call_setup: HistogramFamily<DirectionLabel>,
    api_latency: HistogramFamily<RouteLabel>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The service-level target until `[metrics] service_level_secs` sets it.
pub const DEFAULT_SERVICE_LEVEL_SECS: u64 = 20;

impl Default for Metrics {
    #[allow(clippy::too_many_lines)]
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            scrape: Mutex::new(()),
            requests: Family::default(),
            responses: Family::default(),
            parse_errors: Counter::default(),
            dropped: Family::default(),
            auth_failures: Counter::default(),
            bans: Counter::default(),
            overloaded: Counter::default(),
            toll_fraud_refused: Counter::default(),
            calls_over_rate: Counter::default(),
            active_registrations: Gauge::default(),
            active_transactions: Gauge::default(),
            tcp_connections: Gauge::default(),
            notices_delivered: Counter::default(),
            notice_attempts_failed: Counter::default(),
            notices_dropped: Family::default(),
            outbox_queued: Default::default(),
            outbox_replayed: Default::default(),
            outbox_refused: Default::default(),
            outbox_depth: Default::default(),
            calls_closed_at_startup: Counter::default(),
            http_connections: Gauge::default(),
            http_refused: Family::default(),
            api_throttled: Family::default(),
            calls_active: Gauge::default(),
            queue_waiting: Family::default(),
            agents: Family::default(),
            queue_answered: Family::default(),
            queue_answered_in_target: Family::default(),
            queue_abandoned: Family::default(),
            service_level_target: Gauge::default(),
            service_level_secs: std::sync::atomic::AtomicU64::new(DEFAULT_SERVICE_LEVEL_SECS),
            voice_messages_pending: Gauge::default(),
            orders_overdue: Gauge::default(),
            queue_wait: Family::new_with_constructor(wait_histogram),
            call_setup: Family::new_with_constructor(setup_histogram),
            api_latency: Family::new_with_constructor(latency_histogram),
        };
        m.service_level_target
            .set(i64::try_from(DEFAULT_SERVICE_LEVEL_SECS).unwrap_or(i64::MAX));
        // Labelled counters an alert reads show their zeros from the start.
        for why in DropReason::ALL {
            let _ = m.dropped.get_or_create(&Reason {
                reason: why.as_str(),
            });
        }
        for why in [NoticeDrop::QueueFull, NoticeDrop::GaveUp] {
            let _ = m.notices_dropped.get_or_create(&Reason {
                reason: why.as_str(),
            });
        }
        for why in [HttpRefusal::Total, HttpRefusal::PerSource] {
            let _ = m.http_refused.get_or_create(&Reason {
                reason: why.as_str(),
            });
        }
        for what in [ApiThrottle::Login, ApiThrottle::Bearer] {
            let _ = m.api_throttled.get_or_create(&What {
                what: what.as_str(),
            });
        }
        for d in [Direction::In, Direction::Out] {
            let _ = m.call_setup.get_or_create(&DirectionLabel {
                direction: d.as_str(),
            });
        }
        m.register_all();
        m
    }
}

impl Metrics {
    /// Counters are registered without their `_total` suffix: the encoder adds it.
    #[allow(clippy::too_many_lines)]
    fn register_all(&mut self) {
        let r = &mut self.registry;
        r.register(
            "hotline_sip_requests",
            "SIP requests by direction and method",
            self.requests.clone(),
        );
        r.register(
            "hotline_sip_responses",
            "SIP responses by direction and status",
            self.responses.clone(),
        );
        r.register(
            "hotline_sip_parse_errors",
            "Messages that failed to parse",
            self.parse_errors.clone(),
        );
        r.register(
            "hotline_sip_dropped",
            "Messages dropped without an answer",
            self.dropped.clone(),
        );
        r.register(
            "hotline_sip_auth_failures",
            "Failed digest authentications",
            self.auth_failures.clone(),
        );
        r.register(
            "hotline_sip_bans",
            "Sources banned after repeated authentication failures",
            self.bans.clone(),
        );
        r.register(
            "hotline_sip_overload_rejections",
            "Requests answered 503 because the transaction table was full",
            self.overloaded.clone(),
        );
        r.register(
            "hotline_sip_calls_over_rate",
            "New calls answered 503 above [sip] max_new_calls_per_sec (overload)",
            self.calls_over_rate.clone(),
        );
        r.register(
            "hotline_sip_toll_fraud_refused",
            "INVITEs refused: not from a trunk or an authenticated agent",
            self.toll_fraud_refused.clone(),
        );
        r.register(
            "hotline_recording_failures",
            "Recordings or voice messages that could not be started or written",
            RECORDING_FAILURES.clone(),
        );
        r.register(
            "hotline_notify_webhook_delivered",
            "Order notices (reminders, supervision) delivered to the webhook",
            self.notices_delivered.clone(),
        );
        r.register(
            "hotline_notify_webhook_failures",
            "Webhook delivery attempts that failed (unreachable, timeout, non-2xx answer)",
            self.notice_attempts_failed.clone(),
        );
        r.register(
            "hotline_notify_webhook_dropped",
            "Order notices never delivered to the webhook (the ledger keeps the events)",
            self.notices_dropped.clone(),
        );
        r.register(
            "hotline_sip_registrations",
            "Active registrar bindings",
            self.active_registrations.clone(),
        );
        r.register(
            "hotline_sip_transactions",
            "Live SIP transactions",
            self.active_transactions.clone(),
        );
        r.register(
            "hotline_sip_tcp_connections",
            "Open SIP TCP connections",
            self.tcp_connections.clone(),
        );
        for (k, prefix, things, capital, rejected) in [
            (
                OutboxKind::Orders as usize,
                "hotline_orders",
                "work-order creates",
                "Work-order creates",
                "outbox.rejected.jsonl",
            ),
            (
                OutboxKind::CallRecords as usize,
                "hotline_call_records",
                "call records",
                "Call records",
                "call-records.outbox.rejected.jsonl",
            ),
        ] {
            r.register(
                format!("{prefix}_queued"),
                format!("{capital} queued in the outbox while the database was unavailable"),
                self.outbox_queued[k].clone(),
            );
            r.register(
                format!("{prefix}_replayed"),
                format!("Queued {things} written once the database was back"),
                self.outbox_replayed[k].clone(),
            );
            r.register(
                format!("{prefix}_replay_failed"),
                format!("Queued {things} the database refused (kept in {rejected})"),
                self.outbox_refused[k].clone(),
            );
            r.register(
                format!("{prefix}_outbox_depth"),
                format!("{capital} waiting in the outbox"),
                self.outbox_depth[k].clone(),
            );
        }
        r.register(
            "hotline_calls_closed_at_startup",
            "Call records left open by a crash or restart and closed at start-up",
            self.calls_closed_at_startup.clone(),
        );
        r.register(
            "hotline_http_connections",
            "HTTP connections open",
            self.http_connections.clone(),
        );
        r.register(
            "hotline_http_connections_refused",
            "HTTP connections closed at once: over a cap",
            self.http_refused.clone(),
        );
        r.register(
            "hotline_api_throttled",
            "API requests answered 429 by a throttle",
            self.api_throttled.clone(),
        );
        r.register(
            "hotline_agents_lost",
            "Bridged agents whose phone vanished (no audio); their callers were re-queued",
            AGENTS_LOST.clone(),
        );
        r.register(
            "hotline_rtp_foreign_dropped",
            "RTP/RTCP packets dropped: from a host not named in the call's SDP or signalling",
            RTP_FOREIGN_DROPPED.clone(),
        );
        // The wallboard.
        r.register(
            "hotline_calls_active",
            "Calls up now: callers' (inbound) call legs not yet ended",
            self.calls_active.clone(),
        );
        r.register(
            "hotline_queue_waiting",
            "Callers waiting in each queue now (callbacks included)",
            self.queue_waiting.clone(),
        );
        r.register(
            "hotline_agents",
            "Agents per city and state now (available, ringing, on_call, wrap_up, paused, logged_out, ...)",
            self.agents.clone(),
        );
        r.register(
            "hotline_queue_answered",
            "Queue calls answered by an agent",
            self.queue_answered.clone(),
        );
        r.register(
            "hotline_queue_answered_within_target",
            "Queue calls answered within the service-level target (hotline_service_level_target_seconds)",
            self.queue_answered_in_target.clone(),
        );
        r.register(
            "hotline_queue_abandoned",
            "Queue calls the caller hung up on while waiting",
            self.queue_abandoned.clone(),
        );
        r.register(
            "hotline_service_level_target_seconds",
            "Service-level target: a queue call answered within this many seconds counts as in target ([metrics] service_level_secs)",
            self.service_level_target.clone(),
        );
        r.register(
            "hotline_voice_messages_pending",
            "Voice messages without a work order yet",
            self.voice_messages_pending.clone(),
        );
        r.register(
            "hotline_orders_overdue",
            "Open work orders past their feedback limit now",
            self.orders_overdue.clone(),
        );
        r.register(
            "hotline_queue_wait_seconds",
            "How long callers waited in a queue, by how the wait ended",
            self.queue_wait.clone(),
        );
        r.register(
            "hotline_call_setup_seconds",
            "Call set-up time: INVITE to answer (in: a caller's INVITE to our 200 OK; out: our INVITE to an agent or callee until its 200 OK)",
            self.call_setup.clone(),
        );
        r.register(
            "hotline_api_request_duration_seconds",
            "HTTP API latency, by method, route template and status",
            self.api_latency.clone(),
        );
    }

    pub fn request(&self, d: Direction, m: &Method) {
        self.requests
            .get_or_create(&DirectionMethod {
                direction: d.as_str(),
                method: method_label(m),
            })
            .inc();
    }
    pub fn response(&self, d: Direction, status: u16) {
        if (100..700).contains(&status) {
            self.responses
                .get_or_create(&DirectionStatus {
                    direction: d.as_str(),
                    status,
                })
                .inc();
        }
    }
    pub fn parse_error(&self) {
        self.parse_errors.inc();
    }
    pub fn dropped(&self, why: DropReason) {
        self.dropped
            .get_or_create(&Reason {
                reason: why.as_str(),
            })
            .inc();
    }
    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }
    pub fn ban(&self) {
        self.bans.inc();
    }
    /// A request refused with 503 because the transaction table was full; returns the
    /// new total (the caller logs the first one and every 1000th).
    pub fn overloaded(&self) -> u64 {
        self.overloaded.inc() + 1
    }
    /// An INVITE refused because its source is neither a trunk nor an authenticated
    /// agent allowed to dial that number.
    pub fn toll_fraud_refused(&self) {
        self.toll_fraud_refused.inc();
    }
    /// A new call refused above `[sip] max_new_calls_per_sec`; returns the new total
    /// (the caller logs the first one and every 1000th).
    pub fn calls_over_rate(&self) -> u64 {
        self.calls_over_rate.inc() + 1
    }
    pub fn set_active_registrations(&self, n: usize) {
        self.active_registrations.set(gauge_value(n));
    }
    pub fn set_active_transactions(&self, n: usize) {
        self.active_transactions.set(gauge_value(n));
    }
    pub fn tcp_connection(&self, delta: i64) {
        self.tcp_connections.inc_by(delta);
    }
    /// A webhook notice answered 2xx.
    pub fn notice_delivered(&self) {
        self.notices_delivered.inc();
    }
    /// One webhook delivery attempt failed (unreachable, timeout, non-2xx).
    pub fn notice_attempt_failed(&self) {
        self.notice_attempts_failed.inc();
    }
    /// A webhook notice will not be delivered.
    pub fn notice_dropped(&self, why: NoticeDrop) {
        self.notices_dropped
            .get_or_create(&Reason {
                reason: why.as_str(),
            })
            .inc();
    }
    /// An entry was queued in an outbox (the database was unavailable).
    pub fn outbox_queued(&self, kind: OutboxKind) {
        self.outbox_queued[kind as usize].inc();
    }
    /// A queued entry was written to the database (or found already there).
    pub fn outbox_replayed(&self, kind: OutboxKind) {
        self.outbox_replayed[kind as usize].inc();
    }
    /// A queued entry the database refused for good (kept in the rejected journal).
    pub fn outbox_refused(&self, kind: OutboxKind) {
        self.outbox_refused[kind as usize].inc();
    }
    pub fn set_outbox_depth(&self, kind: OutboxKind, n: usize) {
        self.outbox_depth[kind as usize].set(gauge_value(n));
    }
    /// Call records found open at start-up and closed (crash or restart).
    pub fn calls_closed_at_startup(&self, n: usize) {
        self.calls_closed_at_startup
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }
    /// An HTTP connection opened (+1) or closed (-1).
    pub fn http_connection(&self, delta: i64) {
        self.http_connections.inc_by(delta);
    }
    /// An HTTP connection closed at once: over a cap.
    pub fn http_refused(&self, why: HttpRefusal) {
        self.http_refused
            .get_or_create(&Reason {
                reason: why.as_str(),
            })
            .inc();
    }
    /// An API request answered 429 by a throttle.
    pub fn api_throttled(&self, what: ApiThrottle) {
        self.api_throttled
            .get_or_create(&What {
                what: what.as_str(),
            })
            .inc();
    }
    pub fn parse_errors(&self) -> u64 {
        self.parse_errors.get()
    }
    pub fn bans(&self) -> u64 {
        self.bans.get()
    }

    /// Callers' call legs up now (set by the SIP endpoint).
    pub fn set_calls_active(&self, n: usize) {
        self.calls_active.set(gauge_value(n));
    }
    /// One call's set-up time: INVITE to its 200 OK.
    pub fn call_setup(&self, d: Direction, took: Duration) {
        self.call_setup
            .get_or_create(&DirectionLabel {
                direction: d.as_str(),
            })
            .observe(took.as_secs_f64());
    }
    /// `[metrics] service_level_secs`: the wait within which an answer counts as in
    /// target.
    pub fn set_service_level_secs(&self, secs: u64) {
        self.service_level_secs
            .store(secs, std::sync::atomic::Ordering::Relaxed);
        self.service_level_target
            .set(i64::try_from(secs).unwrap_or(i64::MAX));
    }
    /// A caller's wait in `queue` ended after `wait_ms`: answered or abandoned.
    pub fn queue_wait_ended(&self, queue: &str, outcome: WaitOutcome, wait_ms: i64) {
        let label = QueueLabel {
            queue: queue.to_owned(),
        };
        match outcome {
            WaitOutcome::Answered => {
                self.queue_answered.get_or_create(&label).inc();
                let target = self
                    .service_level_secs
                    .load(std::sync::atomic::Ordering::Relaxed);
                let target_ms = i64::try_from(target.saturating_mul(1000)).unwrap_or(i64::MAX);
                if wait_ms <= target_ms {
                    self.queue_answered_in_target.get_or_create(&label).inc();
                }
            }
            WaitOutcome::Abandoned => {
                self.queue_abandoned.get_or_create(&label).inc();
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let secs = wait_ms.max(0) as f64 / 1000.0;
        self.queue_wait
            .get_or_create(&QueueOutcome {
                queue: queue.to_owned(),
                outcome: outcome.as_str(),
            })
            .observe(secs);
    }
    /// One API request answered: `route` is the matched route template
    /// (`/api/orders/{id}`), never the raw path, so the label set stays bounded.
    pub fn api_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.api_latency
            .get_or_create(&RouteLabel {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .observe(took.as_secs_f64());
    }

    /// The text for `/metrics`, with the wallboard figures read now (`None`: no ACD or
    /// database to read them from; those gauges keep their last values).
    pub fn render_with(&self, wallboard: Option<&Wallboard>) -> String {
        let _guard = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = wallboard {
            self.queue_waiting.clear();
            for (queue, n) in &w.waiting {
                let label = QueueLabel {
                    queue: queue.clone(),
                };
                self.queue_waiting.get_or_create(&label).set(i64::from(*n));
                // Every queue's counters and waits show from the start (0), so rates
                // and the service level are defined before the first call.
                let _ = self.queue_answered.get_or_create(&label);
                let _ = self.queue_answered_in_target.get_or_create(&label);
                let _ = self.queue_abandoned.get_or_create(&label);
                for outcome in [WaitOutcome::Answered, WaitOutcome::Abandoned] {
                    let _ = self.queue_wait.get_or_create(&QueueOutcome {
                        queue: queue.clone(),
                        outcome: outcome.as_str(),
                    });
                }
            }
            self.agents.clear();
            for ((city, state), n) in &w.agents {
                self.agents
                    .get_or_create(&CityState {
                        city: city.clone(),
                        state: state.clone(),
                    })
                    .set(i64::from(*n));
            }
            if let Some(n) = w.voice_messages_pending {
                self.voice_messages_pending.set(n);
            }
            if let Some(n) = w.orders_overdue {
                self.orders_overdue.set(n);
            }
        }
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The text for `/metrics` as counted so far.
    pub fn render(&self) -> String {
        self.render_with(None)
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl crate::sip::counters::EndpointCounters for Metrics {
    fn request(&self, direction: Direction, method: &Method) {
        Metrics::request(self, direction, method);
    }
    fn response(&self, direction: Direction, status: u16) {
        Metrics::response(self, direction, status);
    }
    fn parse_error(&self) {
        Metrics::parse_error(self);
    }
    fn dropped(&self, why: DropReason) {
        Metrics::dropped(self, why);
    }
    fn auth_failure(&self) {
        Metrics::auth_failure(self);
    }
    fn ban(&self) {
        Metrics::ban(self);
    }
    fn overloaded(&self) -> u64 {
        Metrics::overloaded(self)
    }
    fn toll_fraud_refused(&self) {
        Metrics::toll_fraud_refused(self);
    }
    fn calls_over_rate(&self) -> u64 {
        Metrics::calls_over_rate(self)
    }
    fn set_active_registrations(&self, n: usize) {
        Metrics::set_active_registrations(self, n);
    }
    fn set_calls_active(&self, n: usize) {
        Metrics::set_calls_active(self, n);
    }
    fn set_active_transactions(&self, n: usize) {
        Metrics::set_active_transactions(self, n);
    }
    fn call_setup(&self, direction: Direction, took: Duration) {
        Metrics::call_setup(self, direction, took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name{labels}` → value, from an exposition; panics on a sample line that does
    /// not parse (so a format slip fails the test).
    fn samples(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').expect("sample line");
                (name.to_owned(), value.parse().expect("sample value"))
            })
            .collect()
    }

    #[test]
    fn renders_counted_methods_and_statuses() {
        let m = Metrics::default();
        m.request(Direction::In, &Method::Register);
        m.request(Direction::In, &Method::Extension("FOO".into()));
        m.response(Direction::Out, 401);
        m.response(Direction::Out, 9999); // out of range: ignored, no panic
        m.parse_error();
        let text = m.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        let s = samples(&text);
        assert_eq!(
            s["hotline_sip_requests_total{direction=\"in\",method=\"REGISTER\"}"],
            1.0
        );
        assert_eq!(
            s["hotline_sip_requests_total{direction=\"in\",method=\"other\"}"],
            1.0
        );
        assert_eq!(
            s["hotline_sip_responses_total{direction=\"out\",status=\"401\"}"],
            1.0
        );
        assert!(!text.contains("9999"), "{text}");
        assert_eq!(s["hotline_sip_parse_errors_total"], 1.0);
        assert_eq!(s["hotline_sip_dropped_total{reason=\"banned\"}"], 0.0);
    }

    #[test]
    fn queue_waits_count_service_level_and_fill_the_histogram() {
        let m = Metrics::default();
        m.set_service_level_secs(20);
        m.queue_wait_ended("jinan", WaitOutcome::Answered, 12_000);
        m.queue_wait_ended("jinan", WaitOutcome::Answered, 25_000);
        m.queue_wait_ended("jinan", WaitOutcome::Abandoned, 40_000);
        let s = samples(&m.render());
        assert_eq!(s["hotline_queue_answered_total{queue=\"jinan\"}"], 2.0);
        assert_eq!(
            s["hotline_queue_answered_within_target_total{queue=\"jinan\"}"],
            1.0
        );
        assert_eq!(s["hotline_queue_abandoned_total{queue=\"jinan\"}"], 1.0);
        assert_eq!(s["hotline_service_level_target_seconds"], 20.0);
        assert_eq!(
            s["hotline_queue_wait_seconds_bucket{le=\"15.0\",queue=\"jinan\",outcome=\"answered\"}"],
            1.0,
            "{s:?}"
        );
        assert_eq!(
            s["hotline_queue_wait_seconds_count{queue=\"jinan\",outcome=\"answered\"}"],
            2.0
        );
    }

    #[test]
    fn the_wallboard_replaces_queues_and_agent_states_at_each_scrape() {
        let m = Metrics::default();
        let mut w = Wallboard {
            voice_messages_pending: Some(3),
            orders_overdue: Some(2),
            ..Wallboard::default()
        };
        w.waiting.insert("jinan".into(), 4);
        w.agents.insert(("jinan".into(), "on_call".into()), 1);
        let s = samples(&m.render_with(Some(&w)));
        assert_eq!(s["hotline_queue_waiting{queue=\"jinan\"}"], 4.0);
        assert_eq!(s["hotline_agents{city=\"jinan\",state=\"on_call\"}"], 1.0);
        assert_eq!(s["hotline_voice_messages_pending"], 3.0);
        assert_eq!(s["hotline_orders_overdue"], 2.0);
        w.agents.clear();
        w.agents.insert(("jinan".into(), "available".into()), 1);
        let s = samples(&m.render_with(Some(&w)));
        assert!(!s.contains_key("hotline_agents{city=\"jinan\",state=\"on_call\"}"));
        assert_eq!(s["hotline_agents{city=\"jinan\",state=\"available\"}"], 1.0);
    }
}
