//! Process-wide counters, rendered as Prometheus text by `GET /metrics`.
//!
//! Lock-free: fixed arrays of atomics indexed by method and status, so counting on the
//! SIP parse path costs one atomic add.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::sip::message::Method;

/// Methods we count separately; everything else is "other".
const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "other",
];

fn method_index(m: &Method) -> usize {
    match m {
        Method::Invite => 0,
        Method::Ack => 1,
        Method::Bye => 2,
        Method::Cancel => 3,
        Method::Register => 4,
        Method::Options => 5,
        Method::Info => 6,
        Method::Update => 7,
        Method::Prack => 8,
        Method::Subscribe => 9,
        Method::Notify => 10,
        Method::Refer => 11,
        Method::Message => 12,
        Method::Publish => 13,
        Method::Extension(_) => 14,
    }
}

/// Recordings and voice messages that failed to start or to be written (disk full,
/// permissions): the call goes on, the failure is logged and counted here. A process-wide
/// counter because the media tasks that see it hold no `Metrics` handle.
static RECORDING_FAILURES: AtomicU64 = AtomicU64::new(0);

pub fn recording_failed() {
    RECORDING_FAILURES.fetch_add(1, Relaxed);
}

/// Bridged agents whose phone vanished (no audio): the caller was re-queued. Counted by
/// the call tasks, which hold no `Metrics` handle.
static AGENTS_LOST: AtomicU64 = AtomicU64::new(0);

pub fn agent_lost() {
    AGENTS_LOST.fetch_add(1, Relaxed);
}

/// RTP and RTCP packets dropped because they came from a host the call's SDP and
/// signalling never named (or another port once latched): counted per leg at its end.
static RTP_FOREIGN_DROPPED: AtomicU64 = AtomicU64::new(0);

pub fn rtp_foreign_dropped(packets: u64) {
    RTP_FOREIGN_DROPPED.fetch_add(packets, Relaxed);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

/// Why a message was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Unparseable and too broken to answer with 400.
    Unanswerable,
    /// Source is banned after repeated authentication failures.
    Banned,
    /// A response that matches no transaction.
    StrayResponse,
    /// A TCP stream that could not be framed (connection closed).
    BadStream,
}

const DROP_REASONS: [&str; 4] = ["unanswerable", "banned", "stray_response", "bad_stream"];

#[derive(Debug)]
pub struct Metrics {
    requests: [[AtomicU64; 15]; 2],
    responses: [Vec<AtomicU64>; 2],
    parse_errors: AtomicU64,
    dropped: [AtomicU64; 4],
    auth_failures: AtomicU64,
    bans: AtomicU64,
    overloaded: AtomicU64,
    toll_fraud_refused: AtomicU64,
    calls_over_rate: AtomicU64,
    active_registrations: AtomicI64,
    active_transactions: AtomicI64,
    tcp_connections: AtomicI64,
    notices_delivered: AtomicU64,
    notice_attempts_failed: AtomicU64,
    notices_dropped: [AtomicU64; 2],
    outbox_queued: [AtomicU64; 2],
    outbox_replayed: [AtomicU64; 2],
    outbox_refused: [AtomicU64; 2],
    outbox_depth: [AtomicI64; 2],
    calls_closed_at_startup: AtomicU64,
    http_connections: AtomicI64,
    http_refused: [AtomicU64; 2],
    api_throttled: [AtomicU64; 2],
}

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

const API_THROTTLES: [&str; 2] = ["login", "bearer"];

/// Which durable outbox (see `server::journal`) a figure is about.
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

const NOTICE_DROPS: [&str; 2] = ["queue_full", "gave_up"];

impl Default for Metrics {
    fn default() -> Self {
        let statuses = || (0..700).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Metrics {
            requests: Default::default(),
            responses: [statuses(), statuses()],
            parse_errors: AtomicU64::new(0),
            dropped: Default::default(),
            auth_failures: AtomicU64::new(0),
            bans: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            toll_fraud_refused: AtomicU64::new(0),
            calls_over_rate: AtomicU64::new(0),
            active_registrations: AtomicI64::new(0),
            active_transactions: AtomicI64::new(0),
            tcp_connections: AtomicI64::new(0),
            notices_delivered: AtomicU64::new(0),
            notice_attempts_failed: AtomicU64::new(0),
            notices_dropped: Default::default(),
            outbox_queued: Default::default(),
            outbox_replayed: Default::default(),
            outbox_refused: Default::default(),
            outbox_depth: Default::default(),
            calls_closed_at_startup: AtomicU64::new(0),
            http_connections: AtomicI64::new(0),
            http_refused: Default::default(),
            api_throttled: Default::default(),
        }
    }
}

/// "call records" → "Call records", for HELP lines.
fn capital(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn dir(d: Direction) -> usize {
    match d {
        Direction::In => 0,
        Direction::Out => 1,
    }
}

impl Metrics {
    pub fn request(&self, d: Direction, m: &Method) {
        self.requests[dir(d)][method_index(m)].fetch_add(1, Relaxed);
    }
    pub fn response(&self, d: Direction, status: u16) {
        if let Some(c) = self.responses[dir(d)].get(usize::from(status)) {
            c.fetch_add(1, Relaxed);
        }
    }
    pub fn parse_error(&self) {
        self.parse_errors.fetch_add(1, Relaxed);
    }
    pub fn dropped(&self, why: DropReason) {
        self.dropped[why as usize].fetch_add(1, Relaxed);
    }
    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }
    pub fn ban(&self) {
        self.bans.fetch_add(1, Relaxed);
    }
    /// A request refused with 503 because the transaction table was full; returns the
    /// new total (the caller logs the first one and every 1000th).
    pub fn overloaded(&self) -> u64 {
        self.overloaded.fetch_add(1, Relaxed) + 1
    }
    /// An INVITE refused because its source is neither a trunk nor an authenticated
    /// agent allowed to dial that number.
    pub fn toll_fraud_refused(&self) {
        self.toll_fraud_refused.fetch_add(1, Relaxed);
    }
    /// A new call refused above `[sip] max_new_calls_per_sec`; returns the new total
    /// (the caller logs the first one and every 1000th).
    pub fn calls_over_rate(&self) -> u64 {
        self.calls_over_rate.fetch_add(1, Relaxed) + 1
    }
    pub fn set_active_registrations(&self, n: usize) {
        self.active_registrations.store(n as i64, Relaxed);
    }
    pub fn set_active_transactions(&self, n: usize) {
        self.active_transactions.store(n as i64, Relaxed);
    }
    pub fn tcp_connection(&self, delta: i64) {
        self.tcp_connections.fetch_add(delta, Relaxed);
    }
    /// A webhook notice answered 2xx.
    pub fn notice_delivered(&self) {
        self.notices_delivered.fetch_add(1, Relaxed);
    }
    /// One webhook delivery attempt failed (unreachable, timeout, non-2xx).
    pub fn notice_attempt_failed(&self) {
        self.notice_attempts_failed.fetch_add(1, Relaxed);
    }
    /// A webhook notice will not be delivered.
    pub fn notice_dropped(&self, why: NoticeDrop) {
        self.notices_dropped[why as usize].fetch_add(1, Relaxed);
    }
    /// An entry was queued in an outbox (the database was unavailable).
    pub fn outbox_queued(&self, kind: OutboxKind) {
        self.outbox_queued[kind as usize].fetch_add(1, Relaxed);
    }
    /// A queued entry was written to the database (or found already there).
    pub fn outbox_replayed(&self, kind: OutboxKind) {
        self.outbox_replayed[kind as usize].fetch_add(1, Relaxed);
    }
    /// A queued entry the database refused for good (kept in the rejected journal).
    pub fn outbox_refused(&self, kind: OutboxKind) {
        self.outbox_refused[kind as usize].fetch_add(1, Relaxed);
    }
    pub fn set_outbox_depth(&self, kind: OutboxKind, n: usize) {
        self.outbox_depth[kind as usize].store(i64::try_from(n).unwrap_or(i64::MAX), Relaxed);
    }
    /// Call records found open at start-up and closed (crash or restart).
    pub fn calls_closed_at_startup(&self, n: usize) {
        self.calls_closed_at_startup
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Relaxed);
    }
    /// An HTTP connection opened (+1) or closed (-1).
    pub fn http_connection(&self, delta: i64) {
        self.http_connections.fetch_add(delta, Relaxed);
    }
    /// An HTTP connection closed at once: over a cap.
    pub fn http_refused(&self, why: HttpRefusal) {
        self.http_refused[why as usize].fetch_add(1, Relaxed);
    }
    /// An API request answered 429 by a throttle.
    pub fn api_throttled(&self, what: ApiThrottle) {
        self.api_throttled[what as usize].fetch_add(1, Relaxed);
    }
    pub fn parse_errors(&self) -> u64 {
        self.parse_errors.load(Relaxed)
    }
    pub fn bans(&self) -> u64 {
        self.bans.load(Relaxed)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP hotline_sip_requests_total SIP requests by direction and method.\n");
        out.push_str("# TYPE hotline_sip_requests_total counter\n");
        for (d, name) in [(0, "in"), (1, "out")] {
            for (i, m) in METHODS.iter().enumerate() {
                let v = self.requests[d][i].load(Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "hotline_sip_requests_total{{direction=\"{name}\",method=\"{m}\"}} {v}"
                    );
                }
            }
        }
        out.push_str("# HELP hotline_sip_responses_total SIP responses by direction and status.\n");
        out.push_str("# TYPE hotline_sip_responses_total counter\n");
        for (d, name) in [(0, "in"), (1, "out")] {
            for (status, c) in self.responses[d].iter().enumerate() {
                let v = c.load(Relaxed);
                if v > 0 {
                    let _ = writeln!(
                        out,
                        "hotline_sip_responses_total{{direction=\"{name}\",status=\"{status}\"}} {v}"
                    );
                }
            }
        }
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: i64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "hotline_sip_parse_errors_total",
            "Messages that failed to parse.",
            "counter",
            self.parse_errors.load(Relaxed) as i64,
        );
        out.push_str("# HELP hotline_sip_dropped_total Messages dropped without an answer.\n");
        out.push_str("# TYPE hotline_sip_dropped_total counter\n");
        for (i, reason) in DROP_REASONS.iter().enumerate() {
            let _ = writeln!(
                out,
                "hotline_sip_dropped_total{{reason=\"{reason}\"}} {}",
                self.dropped[i].load(Relaxed)
            );
        }
        gauge(
            &mut out,
            "hotline_sip_auth_failures_total",
            "Failed digest authentications.",
            "counter",
            self.auth_failures.load(Relaxed) as i64,
        );
        gauge(
            &mut out,
            "hotline_sip_bans_total",
            "Sources banned after repeated authentication failures.",
            "counter",
            self.bans.load(Relaxed) as i64,
        );
        gauge(
            &mut out,
            "hotline_sip_overload_rejections_total",
            "Requests answered 503 because the transaction table was full.",
            "counter",
            self.overloaded.load(Relaxed) as i64,
        );
        gauge(
            &mut out,
            "hotline_sip_calls_over_rate_total",
            "New calls answered 503 above [sip] max_new_calls_per_sec (overload).",
            "counter",
            self.calls_over_rate.load(Relaxed) as i64,
        );
        gauge(
            &mut out,
            "hotline_sip_toll_fraud_refused_total",
            "INVITEs refused: not from a trunk or an authenticated agent.",
            "counter",
            self.toll_fraud_refused.load(Relaxed) as i64,
        );
        gauge(
            &mut out,
            "hotline_recording_failures_total",
            "Recordings or voice messages that could not be started or written.",
            "counter",
            RECORDING_FAILURES.load(Relaxed) as i64,
        );
        gauge(
            &mut out,
            "hotline_notify_webhook_delivered_total",
            "Order notices (reminders, supervision) delivered to the webhook.",
            "counter",
            self.notices_delivered.load(Relaxed) as i64,
        );
        gauge(
            &mut out,
            "hotline_notify_webhook_failures_total",
            "Webhook delivery attempts that failed (unreachable, timeout, non-2xx answer).",
            "counter",
            self.notice_attempts_failed.load(Relaxed) as i64,
        );
        out.push_str(
            "# HELP hotline_notify_webhook_dropped_total Order notices never delivered to the webhook (the ledger keeps the events).\n",
        );
        out.push_str("# TYPE hotline_notify_webhook_dropped_total counter\n");
        for (i, reason) in NOTICE_DROPS.iter().enumerate() {
            let _ = writeln!(
                out,
                "hotline_notify_webhook_dropped_total{{reason=\"{reason}\"}} {}",
                self.notices_dropped[i].load(Relaxed)
            );
        }
        gauge(
            &mut out,
            "hotline_sip_registrations",
            "Active registrar bindings.",
            "gauge",
            self.active_registrations.load(Relaxed),
        );
        gauge(
            &mut out,
            "hotline_sip_transactions",
            "Live SIP transactions.",
            "gauge",
            self.active_transactions.load(Relaxed),
        );
        gauge(
            &mut out,
            "hotline_sip_tcp_connections",
            "Open SIP TCP connections.",
            "gauge",
            self.tcp_connections.load(Relaxed),
        );
        let count = |c: &AtomicU64| i64::try_from(c.load(Relaxed)).unwrap_or(i64::MAX);
        for (kind, prefix, things, rejected) in [
            (
                OutboxKind::Orders,
                "hotline_orders",
                "work-order creates",
                "outbox.rejected.jsonl",
            ),
            (
                OutboxKind::CallRecords,
                "hotline_call_records",
                "call records",
                "call-records.outbox.rejected.jsonl",
            ),
        ] {
            let k = kind as usize;
            gauge(
                &mut out,
                &format!("{prefix}_queued_total"),
                &format!(
                    "{} queued in the outbox while the database was unavailable.",
                    capital(things)
                ),
                "counter",
                count(&self.outbox_queued[k]),
            );
            gauge(
                &mut out,
                &format!("{prefix}_replayed_total"),
                &format!("Queued {things} written once the database was back."),
                "counter",
                count(&self.outbox_replayed[k]),
            );
            gauge(
                &mut out,
                &format!("{prefix}_replay_failed_total"),
                &format!("Queued {things} the database refused (kept in {rejected})."),
                "counter",
                count(&self.outbox_refused[k]),
            );
            gauge(
                &mut out,
                &format!("{prefix}_outbox_depth"),
                &format!("{} waiting in the outbox.", capital(things)),
                "gauge",
                self.outbox_depth[k].load(Relaxed),
            );
        }
        gauge(
            &mut out,
            "hotline_calls_closed_at_startup_total",
            "Call records left open by a crash or restart and closed at start-up.",
            "counter",
            count(&self.calls_closed_at_startup),
        );
        gauge(
            &mut out,
            "hotline_http_connections",
            "HTTP connections open.",
            "gauge",
            self.http_connections.load(Relaxed),
        );
        out.push_str(
            "# HELP hotline_http_connections_refused_total HTTP connections closed at once: over a cap.\n\
             # TYPE hotline_http_connections_refused_total counter\n",
        );
        for why in [HttpRefusal::Total, HttpRefusal::PerSource] {
            let _ = writeln!(
                out,
                "hotline_http_connections_refused_total{{reason=\"{}\"}} {}",
                why.as_str(),
                count(&self.http_refused[why as usize])
            );
        }
        out.push_str(
            "# HELP hotline_api_throttled_total API requests answered 429 by a throttle.\n\
             # TYPE hotline_api_throttled_total counter\n",
        );
        for (i, what) in API_THROTTLES.iter().enumerate() {
            let _ = writeln!(
                out,
                "hotline_api_throttled_total{{what=\"{what}\"}} {}",
                count(&self.api_throttled[i])
            );
        }
        gauge(
            &mut out,
            "hotline_agents_lost_total",
            "Bridged agents whose phone vanished (no audio); their callers were re-queued.",
            "counter",
            count(&AGENTS_LOST),
        );
        gauge(
            &mut out,
            "hotline_rtp_foreign_dropped_total",
            "RTP/RTCP packets dropped: from a host not named in the call's SDP or signalling.",
            "counter",
            count(&RTP_FOREIGN_DROPPED),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counted_methods_and_statuses() {
        let m = Metrics::default();
        m.request(Direction::In, &Method::Register);
        m.request(Direction::In, &Method::Extension("FOO".into()));
        m.response(Direction::Out, 401);
        m.response(Direction::Out, 9999); // out of range: ignored, no panic
        m.parse_error();
        let text = m.render();
        assert!(
            text.contains("hotline_sip_requests_total{direction=\"in\",method=\"REGISTER\"} 1")
        );
        assert!(text.contains("hotline_sip_requests_total{direction=\"in\",method=\"other\"} 1"));
        assert!(text.contains("hotline_sip_responses_total{direction=\"out\",status=\"401\"} 1"));
        assert!(text.contains("hotline_sip_parse_errors_total 1"));
    }
}
