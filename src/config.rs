//! Typed configuration (`config/hotline.toml`), validated at start with clear errors.
//!
//! Unknown keys and bad values are errors, never silently ignored: every struct denies
//! unknown fields, and [`Config::validate`] checks what types cannot (references between
//! sections, duplicates, ranges). Each [`Problem`] names its TOML path and line so an
//! operator at 3 a.m. can find it.

use crate::ticket::hidden_character;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    #[serde(default)]
    pub sip: SipConfig,
    #[serde(default)]
    pub trunks: Vec<TrunkConfig>,
    #[serde(default)]
    pub cities: Vec<CityConfig>,
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    #[serde(default)]
    pub units: Vec<UnitConfig>,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub routing: Vec<RoutingConfig>,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub test_extensions: Vec<TestExtensionConfig>,
    #[serde(default)]
    pub calls: CallsConfig,
    #[serde(default)]
    pub ivr: crate::ivr::flow::IvrConfig,
    /// Call queues, agents' skills and duty rosters (the ACD); absent = no ACD (calls
    /// in hours ring the city's first registered agent).
    #[serde(default)]
    pub queues: Option<crate::queue::QueuesConfig>,
    /// Where reminders (催办) and supervision presses (督办) are sent besides the log.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// The HTTP listener (API and consoles): connection caps, timeouts, cookies.
    #[serde(default)]
    pub http: HttpConfig,
    /// The rankings' combined score (`[ranking.weights]`, W-19).
    #[serde(default)]
    pub ranking: RankingConfig,
    /// Work orders: the short order numbers (`[orders] number_prefix`).
    #[serde(default)]
    pub orders: OrdersConfig,
    /// The log's timestamps.
    #[serde(default)]
    pub log: LogConfig,
    /// What `/metrics` counts against a target.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The hot-topic analysis' word lists.
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// The quality review's rubric and sampling rules (H-15, H-17-3/4).
    #[serde(default)]
    pub quality: crate::assessment::quality::QualityConfig,
    /// The certificate of HTTPS and SIP over TLS (`server.https_listen`,
    /// `server.sip_tls_listen`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Partner hotlines (12345 and others, H-6) that hand orders over by machine
    /// interface (`[[partners]]`).
    #[serde(default)]
    pub partners: Vec<PartnerConfig>,
}

/// `[[partners]]`: a partner hotline (12345 …) sending orders through
/// `/api/partner/orders`, each request signed with HMAC-SHA256 under `secret`, and told
/// of its orders' progress at `webhook_url` (signed the same way).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// Sent as `X-Partner-Id`.
    pub id: String,
    /// Display name (`12345政务服务便民热线`).
    pub name: String,
    /// The shared HMAC key (at least 16 characters).
    pub secret: String,
    /// Where status callbacks go (`http://` or `https://`); none: the partner polls.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// `[analysis]`: the word lists of the hot-topic analysis (H-11), read at its first
/// request (relative paths are relative to the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Legal terms, as a jieba user dictionary (`word [freq] [tag]` per line).
    pub dictionary: PathBuf,
    /// Words never taken as topics, one per line.
    pub stop_words: PathBuf,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            dictionary: PathBuf::from("analysis/legal-terms.txt"),
            stop_words: PathBuf::from("analysis/stopwords.txt"),
        }
    }
}

/// `[tls]`: the certificate HTTPS and SIP over TLS present. Both paths or neither: with
/// neither, a self-signed certificate is made at the first start and kept in
/// `<data_dir>/tls/` (its SHA-256 fingerprint is logged for clients to pin).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM: the server's certificate first, then the intermediates.
    pub certificate: Option<PathBuf>,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: Option<PathBuf>,
}

impl TlsConfig {
    /// A listener asks for TLS.
    #[must_use]
    pub fn wanted(server: &ServerConfig) -> bool {
        server.https_listen.is_some() || server.sip_tls_listen.is_some()
    }
}

fn validate_tls(config: &Config, problems: &mut Vec<Problem>) {
    let tls = &config.tls;
    let mut add = |path: &str, message: &str| {
        problems.push(Problem {
            path: path.into(),
            line: None,
            message: message.into(),
        });
    };
    match (&tls.certificate, &tls.private_key) {
        (Some(_), None) => add(
            "tls.private_key",
            "must be given with tls.certificate (or neither, for a self-signed certificate)",
        ),
        (None, Some(_)) => add(
            "tls.certificate",
            "must be given with tls.private_key (or neither, for a self-signed certificate)",
        ),
        _ => {}
    }
    let server = &config.server;
    for (i, trunk) in config.trunks.iter().enumerate() {
        if trunk.source_transport == Some(TrunkTransport::Tls) && server.sip_tls_listen.is_none() {
            add(
                &format!("trunks[{i}].source_transport"),
                "\"tls\" needs server.sip_tls_listen",
            );
        }
    }
    if let Some(https) = server.https_listen
        && https == server.http_listen
    {
        add("server.https_listen", "must differ from server.http_listen");
    }
    if let Some(sips) = server.sip_tls_listen
        && sips.ip() == server.sip_listen.ip()
        && sips.port() == server.sip_listen.port()
    {
        add(
            "server.sip_tls_listen",
            "must differ from server.sip_listen (TCP is served there)",
        );
    }
}

/// `[log]`: how log lines are stamped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// The zone of the timestamps: `"Asia/Shanghai"` (the default: the operators'
    /// local time) or `"UTC"`.
    pub timezone: LogTimezone,
}

/// The zone of log timestamps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum LogTimezone {
    /// China Standard Time, UTC+08:00 (no daylight saving since 1991).
    #[default]
    #[serde(rename = "Asia/Shanghai")]
    Shanghai,
    /// Coordinated Universal Time.
    #[serde(rename = "UTC")]
    Utc,
}

/// `[metrics]`: targets the wallboard figures are counted against.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A queue call answered within this many seconds of entering the queue counts in
    /// `hotline_queue_answered_within_target_total` (the service level).
    pub service_level_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            service_level_secs: crate::metrics::DEFAULT_SERVICE_LEVEL_SECS,
        }
    }
}

/// `[ranking]`: how the rankings' combined score weighs each figure (W-19: the ranking
/// is automatic; only these weights are configured, and every ranking prints them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RankingConfig {
    /// `[ranking.weights]`: each >= 0, sum > 0.
    pub weights: crate::ticket::RankingWeights,
}

/// `[orders]`: work-order numbering.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersConfig {
    /// Prefix of the short order numbers read out on the phone: the province's short
    /// name and the hotline, `鲁12348` → `鲁12348-20261207-0042`.
    pub number_prefix: String,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            number_prefix: "鲁12348".into(),
        }
    }
}

/// `[[partners]]`: unique ids, secrets long enough to sign with, callback URLs that parse.
fn validate_partners(partners: &[PartnerConfig], problems: &mut Vec<Problem>) {
    let mut seen = HashSet::new();
    for (i, p) in partners.iter().enumerate() {
        let mut problem = |field: &str, message: String| {
            problems.push(Problem {
                path: format!("partners[{i}].{field}"),
                line: None,
                message,
            });
        };
        if p.id.trim().is_empty() || !seen.insert(p.id.clone()) {
            problem(
                "id",
                format!("partner id {:?} is empty or used twice", p.id),
            );
        }
        if p.secret.chars().count() < 16 {
            problem("secret", "at least 16 characters (an HMAC key)".into());
        }
        if let Some(url) = &p.webhook_url
            && let Err(e) = crate::http_client::HttpUrl::parse(url)
        {
            problem("webhook_url", e.to_string());
        }
    }
}

fn validate_ranking_and_orders(config: &Config, problems: &mut Vec<Problem>) {
    for message in config.quality.problems() {
        problems.push(Problem {
            path: "quality.rubric".into(),
            line: None,
            message,
        });
    }
    for (key, message) in config.ranking.weights.problems() {
        problems.push(Problem {
            path: if key.is_empty() {
                "ranking.weights".into()
            } else {
                format!("ranking.weights.{key}")
            },
            line: None,
            message: message.into(),
        });
    }
    let prefix = &config.orders.number_prefix;
    if prefix.is_empty()
        || prefix.chars().count() > 16
        || prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '-' || c == '/')
    {
        problems.push(Problem {
            path: "orders.number_prefix".into(),
            line: None,
            message: "must be 1 to 16 characters without spaces, '-' or '/' (e.g. \"鲁12348\")"
                .into(),
        });
    }
}

/// `[http]`: what keeps idle or greedy HTTP clients from using up the server's open
/// files (SIP and RTP keep their own reserve, see `server::http`), and how the session
/// cookie is marked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A connection must send a complete request head within this long of opening it or
    /// of its previous response (so also the keep-alive idle limit); else it is closed.
    pub header_timeout_secs: u64,
    /// HTTP connections open at once at most (lowered at start-up when the open-file
    /// limit cannot hold them besides the SIP and RTP reserve); more are closed at once.
    pub max_connections: usize,
    /// HTTP connections open at once from one address at most; more are closed at once.
    /// `trusted_proxies` count only against `max_connections`.
    pub max_connections_per_source: usize,
    /// Mark the session cookie `Secure`: the consoles are served over HTTPS by a
    /// TLS-terminating proxy in front of the server.
    pub secure_cookies: bool,
    /// Reverse proxies whose `X-Forwarded-For` (client address) and `X-Forwarded-Proto`
    /// (https → `Secure` cookie) are believed; from anyone else they are ignored.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_secs: 10,
            max_connections: 4096,
            max_connections_per_source: 256,
            secure_cookies: false,
            trusted_proxies: Vec::new(),
        }
    }
}

fn validate_http(http: &HttpConfig, problems: &mut Vec<Problem>) {
    let mut add = |path: &str, message: &str| {
        problems.push(Problem {
            path: format!("http.{path}"),
            line: None,
            message: message.into(),
        });
    };
    if !(1..=300).contains(&http.header_timeout_secs) {
        add("header_timeout_secs", "must be 1 to 300 seconds");
    }
    if http.max_connections == 0 {
        add("max_connections", "must be at least 1");
    }
    if http.max_connections_per_source == 0
        || http.max_connections_per_source > http.max_connections
    {
        add(
            "max_connections_per_source",
            "must be at least 1 and at most http.max_connections",
        );
    }
}

/// `[notify]`: the reminder scheduler and the notifiers of order events (TK-REMIND).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// POST each notice as JSON here (`http://` or `https://`; https servers are trusted
    /// through the system's certificate store). Absent: notices are only logged.
    pub webhook_url: Option<String>,
    /// One delivery attempt may take this long.
    pub webhook_timeout_secs: u64,
    /// Attempts per notice (the first included) before it is given up (logged, counted).
    pub webhook_max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each, at most 60 s.
    pub webhook_backoff_ms: u64,
    /// Notices waiting for delivery at most; beyond, new ones are dropped (logged,
    /// counted). The ledger keeps every reminder whatever happens to its notice.
    pub webhook_queue: usize,
    /// How often the reminder scheduler looks for limits near or past.
    pub reminder_interval_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_url: None,
            webhook_timeout_secs: 5,
            webhook_max_attempts: 6,
            webhook_backoff_ms: 1000,
            webhook_queue: 10_000,
            reminder_interval_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// SIP domain of the hotline; also the digest realm.
    pub domain: String,
    #[serde(default = "default_sip_listen")]
    pub sip_listen: SocketAddr,
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// HTTPS for the consoles and the API, with the `[tls]` certificate. With both on,
    /// plain HTTP answers only `/healthz` and `/metrics` and redirects the rest here.
    #[serde(default)]
    pub https_listen: Option<SocketAddr>,
    /// SIP over TLS (RFC 3261 §26, usually port 5061), with the `[tls]` certificate and
    /// the limits of SIP over TCP.
    #[serde(default)]
    pub sip_tls_listen: Option<SocketAddr>,
    /// Database file, WAL journal and runtime state live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_recordings_dir")]
    pub recordings_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: `sqlite://<data_dir>/hotline.db`.
    /// The `DATABASE_URL` environment variable overrides it.
    #[serde(default)]
    pub database_url: Option<String>,
    /// China working-day calendar data (holidays and 调休 workdays).
    #[serde(default = "default_calendar")]
    pub calendar: PathBuf,
    /// On SIGTERM / SIGINT new calls are refused (503 with Retry-After) and calls in
    /// progress may finish for this long; the rest then get BYE with a `Reason` and the
    /// server exits 0.
    #[serde(default = "default_drain_timeout_secs")]
    pub drain_timeout_secs: u64,
}

fn default_sip_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 5060))
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
// Relative paths are relative to the config file's directory (`Config::load`).
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_recordings_dir() -> PathBuf {
    PathBuf::from("recordings")
}
fn default_drain_timeout_secs() -> u64 {
    30
}
fn default_calendar() -> PathBuf {
    PathBuf::from("calendar/cn-workdays.toml")
}

/// SIP timers and registrar/auth policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub nonce_ttl_secs: u64,
    /// Failed authentications for one user from one source within the window before that
    /// user is banned from that source.
    pub auth_failures_before_ban: u32,
    /// Failed authentications from one source (any users) within the window before the
    /// whole source is banned; configured trunk sources never are.
    pub auth_source_failures_before_ban: u32,
    pub auth_failure_window_secs: u64,
    pub ban_secs: u64,
    pub max_tcp_connections_per_source: usize,
    /// Inbound calls from one source IP not yet confirmed by their ACK (ringing, or
    /// answered and waiting for it) at most; more get 503 + Retry-After. A carrier ACKs
    /// within milliseconds, so its own calls never come near; a flood of INVITEs that
    /// are never ACKed holds at most this many IVR calls (each ended at Timer H).
    pub max_unconfirmed_calls_per_source: usize,
    /// New calls admitted per second, all sources together, with bursts up to one
    /// second's worth (a token bucket); beyond it an INVITE gets 503 + Retry-After at
    /// once, so that under overload the calls admitted still complete (goodput) instead
    /// of every call slowing down until callers give up. 0: no limit.
    pub max_new_calls_per_sec: u32,
    /// A TCP connection that sends no complete message for this long is closed
    /// (slowloris protection).
    pub tcp_idle_timeout_secs: u64,
    pub max_transactions: usize,
    /// Digest algorithms offered, most preferred first. RFC 8760 prefers SHA-256, but
    /// SIPp and many deployed softphones answer only the first challenge and know only
    /// MD5; list MD5 first until the fleet supports SHA-256.
    pub digest_algorithms: Vec<DigestAlgorithmName>,
    /// Answer UDP requests at the address and port they came from even without `rport`
    /// (symmetric response routing, RFC 3581 behaviour forced). Softphones behind NAT that
    /// do not ask for `rport` are unreachable otherwise; Asterisk's `force_rport` default.
    pub force_rport: bool,
}

/// A digest algorithm as named in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DigestAlgorithmName {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            nonce_ttl_secs: 300,
            auth_failures_before_ban: 10,
            auth_source_failures_before_ban: 50,
            auth_failure_window_secs: 60,
            ban_secs: 300,
            max_tcp_connections_per_source: 32,
            max_unconfirmed_calls_per_source: 100,
            max_new_calls_per_sec: 200,
            tcp_idle_timeout_secs: 120,
            max_transactions: 100_000,
            digest_algorithms: vec![DigestAlgorithmName::Sha256, DigestAlgorithmName::Md5],
            force_rport: true,
        }
    }
}

/// A carrier trunk: the sources allowed to send inbound 12348 calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    pub sources: Vec<IpAddr>,
    /// When set, only messages from this source port are the trunk's (the carrier's
    /// SIP port, over UDP): anything else from its address, e.g. a phone behind the
    /// same NAT or a scanner, is an ordinary outside source.
    #[serde(default)]
    pub source_port: Option<u16>,
    /// When set, only messages over this transport are the trunk's.
    #[serde(default)]
    pub source_transport: Option<TrunkTransport>,
    /// SRTP (SDES) on this carrier's calls, as `[[agents]] media_encryption`.
    #[serde(default)]
    pub media_encryption: MediaEncryption,
    /// A header this carrier sets on inbound calls whose value picks the city (the
    /// original called number such as `053212348`, an area code, or a city id), e.g.
    /// `P-Called-City`. It is consulted after the dialled number and before the
    /// caller's area code (CALL-ENTRY).
    #[serde(default)]
    pub city_header: Option<String>,
    /// The header in which this carrier asserts the caller's number (RFC 3325
    /// `P-Asserted-Identity`, name-addr with a `sip:` or `tel:` URI). When set, a callback
    /// dials only that number, and a call without the header gets no callback; unset,
    /// the From user is trusted (only for a carrier that screens it).
    #[serde(default)]
    pub identity_header: Option<String>,
    /// Where our outbound calls go through this carrier (callbacks to callers, transfers
    /// to units' outside numbers): `"host:port"`, or a SIP URI without user part such as
    /// `"sip:10.0.0.5:5060;transport=tcp"`. The number dialled becomes the user part of
    /// the Request-URI. Absent: no outbound calls through this trunk. The first trunk
    /// with `outbound` carries every outbound call.
    #[serde(default)]
    pub outbound: Option<String>,
}

/// Transport a trunk's messages must arrive over (`[[trunks]] source_transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    Udp,
    Tcp,
    /// SIP over TLS (`server.sip_tls_listen`).
    Tls,
}

/// Transport of an outbound trunk address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundTransport {
    Udp,
    Tcp,
}

/// A parsed `[[trunks]] outbound` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundAddress {
    /// IP literal or DNS name (resolved once at start-up).
    pub host: String,
    pub port: u16,
    pub transport: OutboundTransport,
}

/// Why an `outbound` address is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundAddressError {
    #[error("must not be empty")]
    Empty,
    #[error("only sip: URIs are supported (no sips:, no TLS yet)")]
    Scheme,
    #[error("must not have a user part: the dialled number is put there")]
    UserPart,
    #[error("{0:?} is not a host name or IP address")]
    Host(String),
    #[error("{0:?} is not a port (1-65535)")]
    Port(String),
    #[error("unsupported parameter {0:?} (only transport=udp or transport=tcp)")]
    Parameter(String),
}

impl OutboundAddress {
    /// Parse `host[:port]`, `[v6][:port]` or `sip:host[:port][;transport=udp|tcp]`.
    ///
    /// # Errors
    /// See [`OutboundAddressError`].
    pub fn parse(text: &str) -> Result<OutboundAddress, OutboundAddressError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(OutboundAddressError::Empty);
        }
        let lower = text.to_ascii_lowercase();
        let rest = if lower.starts_with("sips:") {
            return Err(OutboundAddressError::Scheme);
        } else if lower.starts_with("sip:") {
            text.get(4..).unwrap_or_default()
        } else {
            text
        };
        let mut parts = rest.split(';');
        let hostport = parts.next().unwrap_or_default();
        let mut transport = OutboundTransport::Udp;
        for param in parts {
            match param.to_ascii_lowercase().as_str() {
                "transport=udp" => transport = OutboundTransport::Udp,
                "transport=tcp" => transport = OutboundTransport::Tcp,
                "" => {}
                _ => return Err(OutboundAddressError::Parameter(param.to_string())),
            }
        }
        if hostport.contains('@') {
            return Err(OutboundAddressError::UserPart);
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| OutboundAddressError::Host(hostport.to_string()))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(OutboundAddressError::Host(addr.to_string()));
            }
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| OutboundAddressError::Port(p.to_string()))?,
                ),
            };
            (addr.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let host_ok = host.parse::<IpAddr>().is_ok()
            || (!host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                }));
        if !host_ok {
            return Err(OutboundAddressError::Host(host));
        }
        let port = match port {
            None => 5060,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| OutboundAddressError::Port(p.to_string()))?,
        };
        Ok(OutboundAddress {
            host,
            port,
            transport,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityConfig {
    pub id: String,
    pub name: String,
    /// Fixed-line area codes, e.g. ["0531", "0634"] (莱芜 joined 济南 in 2019).
    pub area_codes: Vec<String>,
    /// Numbers dialled to reach this city's center, e.g. "053112348".
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Published working hours; default Mon–Fri 09:00–12:00, 13:30–17:30 on the
    /// calendar's working days.
    #[serde(default)]
    pub hours: Option<crate::ivr::hours::WorkingHours>,
    /// Agent ids rung for urgent calls after hours (empty: no duty list).
    #[serde(default)]
    pub duty_list: Vec<String>,
    /// The leaders told of the city's urgent orders — when one is received and when
    /// its hour for the transfer passes (H-13-2 报告领导): `[[cities.leaders]]`.
    #[serde(default)]
    pub leaders: Vec<LeaderConfig>,
}

/// One leader of a city (`[[cities.leaders]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderConfig {
    /// Name and post, e.g. "王某（分管副局长）".
    pub name: String,
    /// How to reach them by hand (phone, e-mail); shown in the log line.
    #[serde(default)]
    pub contact: String,
    /// Where their alerts are POSTed as JSON (`http://` or `https://`; retried until answered 2xx,
    /// kept in `leader-notices-*.jsonl` in the data directory meanwhile).
    #[serde(default)]
    pub webhook_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// SIP user name and login id.
    pub id: String,
    pub name: String,
    pub city: String,
    /// Plain password (for development); prefer `ha1_md5`/`ha1_sha256` in production.
    #[serde(default)]
    pub password: Option<String>,
    /// H(user:realm:password) with MD5, lowercase hex.
    #[serde(default)]
    pub ha1_md5: Option<String>,
    /// H(user:realm:password) with SHA-256, lowercase hex.
    #[serde(default)]
    pub ha1_sha256: Option<String>,
    #[serde(default)]
    pub roles: Vec<Role>,
    /// SRTP (SDES) on this agent's calls: `"none"` (plain RTP, the default),
    /// `"optional"` (offered and accepted, plain RTP too) or `"required"` (plain RTP refused).
    #[serde(default)]
    pub media_encryption: MediaEncryption,
}

/// SRTP policy of an agent's phone or a trunk (`media_encryption`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaEncryption {
    /// Plain RTP; SRTP offers get 488.
    #[default]
    None,
    /// SRTP when the other side offers or accepts it, plain RTP otherwise.
    Optional,
    /// SRTP only: plain RTP offers get 488, a plain answer ends the leg.
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Dispatcher,
    UnitHandler,
    UnitHead,
    Reviewer,
    Supervisor,
    CallbackStaff,
    ProvinceAdmin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    Province,
    City,
    County,
    Township,
    Institution,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitConfig {
    pub id: String,
    pub name: String,
    pub kind: UnitKind,
    /// Parent unit id; only the province has none.
    #[serde(default)]
    pub parent: Option<String>,
    /// The unit's outside telephone number (digits, optionally a leading `+`): agents
    /// transfer callers to it live (CALL-TRANSFER, H-8) by REFER to `sip:unit-<id>@…` or
    /// to the number itself, through the trunk with `outbound`.
    #[serde(default)]
    pub phone: Option<String>,
}

/// One thing wrong with a config file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// TOML path, e.g. `agents[2].city`.
    pub path: String,
    /// 1-based line in the file, when it could be located.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} has {} problem(s):\n{}", .problems.len(), render(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Read, parse and validate a config file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Invalid`] with
    /// every problem found otherwise.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::from_toml(&text).map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(dir) = absolute.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Make the config's relative paths (data, recordings and prompt directories, the
    /// calendar, the mobile-prefix table, a `sqlite:` database URL) relative to `base`,
    /// the config file's directory, so the server finds the same files whatever the
    /// working directory it was started in. Absolute paths are kept.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        resolve(&mut self.server.data_dir);
        resolve(&mut self.server.recordings_dir);
        resolve(&mut self.server.calendar);
        resolve(&mut self.media.prompts_dir);
        resolve(&mut self.analysis.dictionary);
        resolve(&mut self.analysis.stop_words);
        if let Some(prefixes) = &mut self.calls.mobile_prefixes {
            resolve(prefixes);
        }
        for path in [&mut self.tls.certificate, &mut self.tls.private_key]
            .into_iter()
            .flatten()
        {
            resolve(path);
        }
        if let Some(url) = &mut self.server.database_url {
            *url = sqlite_url_beside(url, base);
        }
    }

    /// Parse and validate config text.
    ///
    /// # Errors
    /// Every problem found, each with its TOML path and line.
    pub fn from_toml(text: &str) -> Result<Config, Vec<Problem>> {
        let config = parse_sections(text)?;
        let mut problems = config.validate();
        if problems.is_empty() {
            return Ok(config);
        }
        let doc = toml::de::DeTable::parse(text).ok();
        for p in &mut problems {
            p.line = doc
                .as_ref()
                .and_then(|d| locate(text, d.get_ref(), &p.path));
        }
        Err(problems)
    }

    /// The checks types cannot express. Lines are filled in by the caller.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut add = |path: String, message: String| {
            problems.push(Problem {
                path,
                line: None,
                message,
            })
        };
        if self.server.domain.trim().is_empty() {
            add("server.domain".into(), "must not be empty".into());
        }
        let sip = &self.sip;
        if self.media.rtp_port_min % 2 != 0
            || self.media.rtp_port_max <= self.media.rtp_port_min
            || self.media.rtp_port_min < 1024
        {
            add(
                "media.rtp_port_min".into(),
                "must be even, >= 1024 and below media.rtp_port_max".into(),
            );
        }
        let agent_ids: HashSet<&str> = self.agents.iter().map(|a| a.id.as_str()).collect();
        for (i, c) in self.cities.iter().enumerate() {
            for id in &c.duty_list {
                if !agent_ids.contains(id.as_str()) {
                    add(
                        format!("cities[{i}].duty_list"),
                        format!("{id:?} is not an agent id"),
                    );
                }
            }
            if let Some(Err(e)) = c
                .hours
                .as_ref()
                .map(crate::ivr::hours::WorkingHours::validate)
            {
                add(format!("cities[{i}].hours"), e.to_string());
            }
            let mut leader_names = HashSet::new();
            for (j, leader) in c.leaders.iter().enumerate() {
                let path = format!("cities[{i}].leaders[{j}]");
                if leader.name.trim().is_empty() || !leader_names.insert(leader.name.trim()) {
                    add(
                        format!("{path}.name"),
                        "must be non-empty and unique in the city".into(),
                    );
                }
                if leader.contact.trim().is_empty() && leader.webhook_url.is_none() {
                    add(
                        format!("{path}.contact"),
                        "a leader needs a contact or a webhook_url to be told".into(),
                    );
                }
                if let Some(url) = &leader.webhook_url
                    && let Err(e) = crate::http_client::HttpUrl::parse(url)
                {
                    add(format!("{path}.webhook_url"), e.to_string());
                }
            }
        }
        if !self.cities.is_empty()
            && !self
                .cities
                .iter()
                .any(|c| c.id == self.calls.province_center)
        {
            add(
                "calls.province_center".into(),
                format!("{:?} is not a city id", self.calls.province_center),
            );
        }
        let mut extension_numbers = HashSet::new();
        for (i, e) in self.test_extensions.iter().enumerate() {
            if e.number.trim().is_empty() || !extension_numbers.insert(e.number.clone()) {
                add(
                    format!("test_extensions[{i}].number"),
                    "must be non-empty and unique".into(),
                );
            }
        }
        if sip.t1_ms == 0 || sip.t2_ms < sip.t1_ms {
            add("sip.t2_ms".into(), "T1 must be > 0 and T2 >= T1".into());
        }
        if sip.digest_algorithms.is_empty() {
            add(
                "sip.digest_algorithms".into(),
                "must list at least one of \"MD5\", \"SHA-256\"".into(),
            );
        }
        if sip.min_expires == 0 || sip.min_expires > sip.max_expires {
            add(
                "sip.min_expires".into(),
                "must be > 0 and <= sip.max_expires".into(),
            );
        }
        if !(sip.min_expires..=sip.max_expires).contains(&sip.default_expires) {
            add(
                "sip.default_expires".into(),
                "must lie between sip.min_expires and sip.max_expires".into(),
            );
        }

        let mut city_ids = HashSet::new();
        let mut numbers = HashSet::new();
        for (i, c) in self.cities.iter().enumerate() {
            if !city_ids.insert(c.id.as_str()) {
                add(
                    format!("cities[{i}].id"),
                    format!("duplicate city id {:?}", c.id),
                );
            }
            if c.area_codes.is_empty() {
                add(
                    format!("cities[{i}].area_codes"),
                    "must list at least one".into(),
                );
            }
            for (j, code) in c.area_codes.iter().enumerate() {
                if !is_area_code(code) {
                    add(
                        format!("cities[{i}].area_codes[{j}]"),
                        format!("{code:?} is not a Chinese area code (0 + 2-3 digits)"),
                    );
                }
            }
            for (j, n) in c.numbers.iter().enumerate() {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    add(
                        format!("cities[{i}].numbers[{j}]"),
                        format!("{n:?} must be digits only"),
                    );
                } else if !numbers.insert(n.as_str()) {
                    add(
                        format!("cities[{i}].numbers[{j}]"),
                        format!("number {n} is used by two cities"),
                    );
                }
            }
        }

        let mut agent_ids = HashSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            if a.id.is_empty() || !a.id.bytes().all(is_sip_user_char) {
                add(
                    format!("agents[{i}].id"),
                    format!(
                        "{:?} must be a plain SIP user name (letters, digits, . _ -)",
                        a.id
                    ),
                );
            }
            if !agent_ids.insert(a.id.as_str()) {
                add(
                    format!("agents[{i}].id"),
                    format!("duplicate agent id {:?}", a.id),
                );
            }
            if !city_ids.contains(a.city.as_str()) {
                add(
                    format!("agents[{i}].city"),
                    format!("unknown city {:?} (not in [[cities]])", a.city),
                );
            }
            if a.password.as_ref().is_some_and(|p| p.trim().is_empty()) {
                add(
                    format!("agents[{i}].password"),
                    "must not be empty (anyone could register as this agent)".into(),
                );
            }
            if a.password.is_none() && a.ha1_md5.is_none() && a.ha1_sha256.is_none() {
                add(
                    format!("agents[{i}]"),
                    "needs password, ha1_md5 or ha1_sha256".into(),
                );
            }
            if let Some(h) = &a.ha1_md5
                && !is_hex(h, 32)
            {
                add(
                    format!("agents[{i}].ha1_md5"),
                    "must be 32 lowercase hex digits".into(),
                );
            }
            if let Some(h) = &a.ha1_sha256
                && !is_hex(h, 64)
            {
                add(
                    format!("agents[{i}].ha1_sha256"),
                    "must be 64 lowercase hex digits".into(),
                );
            }
        }

        let unit_ids: HashSet<&str> = self.units.iter().map(|u| u.id.as_str()).collect();
        let mut seen_units = HashSet::new();
        for (i, u) in self.units.iter().enumerate() {
            if !seen_units.insert(u.id.as_str()) {
                add(
                    format!("units[{i}].id"),
                    format!("duplicate unit id {:?}", u.id),
                );
            }
            if let Some(c) = hidden_character(&u.name) {
                add(format!("units[{i}].name"), hidden_character_message(c));
            }
            match (&u.parent, u.kind) {
                (None, UnitKind::Province) => {}
                (None, _) => add(
                    format!("units[{i}].parent"),
                    "only the province may have no parent".into(),
                ),
                (Some(p), _) if !unit_ids.contains(p.as_str()) => {
                    add(format!("units[{i}].parent"), format!("unknown unit {p:?}"))
                }
                (Some(_), _) => {}
            }
        }
        let mut phones = HashSet::new();
        for (i, u) in self.units.iter().enumerate() {
            let Some(phone) = &u.phone else {
                continue;
            };
            if !is_phone_number(phone) {
                add(
                    format!("units[{i}].phone"),
                    format!("{phone:?} must be 3 to 20 digits, optionally after a +"),
                );
            } else if !phones.insert(phone.as_str()) {
                add(
                    format!("units[{i}].phone"),
                    format!("number {phone} is used by two units"),
                );
            }
        }
        for (i, t) in self.trunks.iter().enumerate() {
            if let Some(Err(e)) = t.outbound.as_deref().map(OutboundAddress::parse) {
                add(format!("trunks[{i}].outbound"), e.to_string());
            }
        }
        for (path, problem) in self
            .queues
            .iter()
            .flat_map(crate::queue::QueuesConfig::problems)
        {
            add(format!("queues.{path}"), problem.to_string());
        }
        validate_users_and_routing(self, &unit_ids, &mut problems);
        validate_notify(&self.notify, &mut problems);
        if self.sip.max_unconfirmed_calls_per_source == 0 {
            problems.push(Problem {
                path: "sip.max_unconfirmed_calls_per_source".into(),
                line: None,
                message: "must be at least 1 (0 would refuse every call)".into(),
            });
        }
        for (i, pattern) in self.calls.callback_numbers.iter().enumerate() {
            if !is_dial_pattern(pattern) {
                problems.push(Problem {
                    path: format!("calls.callback_numbers[{i}]"),
                    line: None,
                    message: format!(
                        "{pattern:?}: use digits, X (any digit), N (2-9), Z (1-9) and [..] classes"
                    ),
                });
            }
        }
        validate_http(&self.http, &mut problems);
        validate_tls(self, &mut problems);
        validate_ranking_and_orders(self, &mut problems);
        validate_partners(&self.partners, &mut problems);
        if !(1..=3600).contains(&self.metrics.service_level_secs) {
            problems.push(Problem {
                path: "metrics.service_level_secs".into(),
                line: None,
                message: "must be 1 to 3600 seconds".into(),
            });
        }
        problems
    }

    /// The database URL in force: `DATABASE_URL`, else the config, else SQLite in the
    /// data directory.
    pub fn database_url(&self, env_override: Option<String>) -> String {
        env_override
            .filter(|s| !s.is_empty())
            .or_else(|| self.server.database_url.clone())
            .unwrap_or_else(|| {
                format!(
                    "sqlite://{}?mode=rwc",
                    self.server.data_dir.join("hotline.db").display()
                )
            })
    }

    pub fn agent(&self, id: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.id == id)
    }
}

/// A `sqlite:` URL whose file path is relative, made relative to `base`; any other URL
/// (PostgreSQL, an absolute path, an in-memory database) as it is.
fn sqlite_url_beside(url: &str, base: &Path) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_owned();
    };
    let (file, query) = rest.split_at(rest.find('?').unwrap_or(rest.len()));
    if file.is_empty() || file.starts_with(':') || Path::new(file).is_absolute() {
        return url.to_owned();
    }
    format!("sqlite://{}{query}", base.join(file).display())
}

fn is_area_code(s: &str) -> bool {
    (3..=4).contains(&s.len()) && s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
}

/// An outside telephone number as configured: digits, optionally after a `+`.
pub fn is_phone_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (3..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_sip_user_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Parse config text into a [`Config`], reporting as many syntax and type errors as
/// one pass can find: every syntax error the parser recovers from, and each section's
/// (each `[[array]]` item's) type errors separately, so a typo in `[sip]` does not hide
/// one in `[[agents]]`.
fn parse_sections(text: &str) -> Result<Config, Vec<Problem>> {
    use serde::Deserialize as _;
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // What the parser made of the rest is a guess: its type errors would mislead.
        let mut problems: Vec<Problem> = syntax.iter().map(|e| serde_problem(text, e)).collect();
        problems.sort_by_key(|p| p.line);
        problems.dedup_by_key(|p| p.line);
        return Err(problems);
    }
    let mut failed = Vec::new();
    let mut problems = Vec::new();
    for (key, value) in doc.get_ref() {
        let errors = section_errors(key.get_ref(), value).unwrap_or_default();
        if !errors.is_empty() {
            failed.push(key.clone());
        }
        problems.extend(errors.iter().map(|e| serde_problem(text, e)));
    }
    let mut rest = doc.clone();
    for key in &failed {
        rest.get_mut().remove(key);
    }
    // The whole document: what no section sees (unknown or missing sections).
    match Config::deserialize(toml::de::Deserializer::from(rest)) {
        Ok(config) if problems.is_empty() => return Ok(config),
        Ok(_) => {}
        Err(e) => {
            if !failed.iter().any(|key| is_missing_field(&e, key.get_ref())) {
                problems.push(serde_problem(text, &e));
            }
        }
    }
    problems.sort_by_key(|p| p.line);
    Err(problems)
}

/// The type errors of one top-level section; `None` for a key [`Config`] lacks (the
/// whole-document pass reports it).
fn section_errors(
    key: &str,
    value: &toml::Spanned<toml::de::DeValue<'_>>,
) -> Option<Vec<toml::de::Error>> {
    Some(match key {
        "server" => type_errors::<ServerConfig>(value),
        "sip" => type_errors::<SipConfig>(value),
        "trunks" => item_type_errors::<TrunkConfig>(value),
        "cities" => item_type_errors::<CityConfig>(value),
        "agents" => item_type_errors::<AgentConfig>(value),
        "units" => item_type_errors::<UnitConfig>(value),
        "users" => item_type_errors::<UserConfig>(value),
        "routing" => item_type_errors::<RoutingConfig>(value),
        "media" => type_errors::<MediaConfig>(value),
        "test_extensions" => item_type_errors::<TestExtensionConfig>(value),
        "calls" => type_errors::<CallsConfig>(value),
        "ivr" => type_errors::<crate::ivr::flow::IvrConfig>(value),
        "queues" => type_errors::<crate::queue::QueuesConfig>(value),
        "notify" => type_errors::<NotifyConfig>(value),
        "http" => type_errors::<HttpConfig>(value),
        "tls" => type_errors::<TlsConfig>(value),
        "ranking" => type_errors::<RankingConfig>(value),
        "orders" => type_errors::<OrdersConfig>(value),
        _ => return None,
    })
}

/// An array section's errors item by item (each `[[agents]]` entry on its own).
fn item_type_errors<T: serde::de::DeserializeOwned>(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
) -> Vec<toml::de::Error> {
    match value.get_ref() {
        toml::de::DeValue::Array(items) => items.iter().flat_map(type_errors::<T>).collect(),
        _ => type_errors::<Vec<T>>(value),
    }
}

/// Every type error in `value` as a `T`: after each, the entry it is in is left out and
/// the rest tried again (a few times at most), so two typos in one table are both found.
fn type_errors<T: serde::de::DeserializeOwned>(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
) -> Vec<toml::de::Error> {
    const MOST_PER_SECTION: usize = 16;
    let mut value = value.clone();
    let mut errors = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    while errors.len() < MOST_PER_SECTION {
        let Err(e) = T::deserialize(toml::de::ValueDeserializer::from(value.clone())) else {
            break;
        };
        // A required key left out because of its own error is no second problem.
        if left_out.iter().any(|key| is_missing_field(&e, key)) {
            break;
        }
        let Some(at) = e.span().map(|s| s.start) else {
            errors.push(e);
            break;
        };
        errors.push(e);
        match leave_out(value.get_mut(), at) {
            Some(key) => left_out.push(key),
            None => break,
        }
    }
    errors
}

fn is_missing_field(e: &toml::de::Error, key: &str) -> bool {
    e.message().starts_with(&format!("missing field `{key}`"))
}

/// Remove the innermost table entry (or array element) holding byte `at`; the key it was
/// under, or `None` when nothing holds `at`.
fn leave_out(value: &mut toml::de::DeValue<'_>, at: usize) -> Option<String> {
    use toml::de::DeValue;
    match value {
        DeValue::Table(table) => {
            let key = table
                .iter()
                .find(|(k, v)| k.span().contains(&at) || v.span().contains(&at))
                .map(|(k, _)| k.clone())?;
            let inner = table.get_mut(&key).and_then(|v| leave_out(v.get_mut(), at));
            if inner.is_some() {
                return inner;
            }
            table.remove(&key);
            Some(key.get_ref().to_string())
        }
        DeValue::Array(items) => {
            let index = items.iter().position(|v| v.span().contains(&at))?;
            let inner = items
                .get_mut(index)
                .and_then(|v| leave_out(v.get_mut(), at));
            if inner.is_some() {
                return inner;
            }
            let kept: toml::de::DeArray<'_> = std::mem::replace(items, toml::de::DeArray::new())
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| (i != index).then_some(v))
                .collect();
            *items = kept;
            Some(String::new())
        }
        _ => None,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn serde_problem(text: &str, e: &toml::de::Error) -> Problem {
    let line = e.span().map(|s| line_of(text, s.start));
    // toml's message may contain the offending key; keep its first line, the rest is a
    // source excerpt that `line` already points to.
    let message = e
        .message()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .to_string();
    let path = e
        .span()
        .and_then(|s| key_path_at(text, s.start))
        .unwrap_or_else(|| "(document)".to_string());
    Problem {
        path,
        line,
        message,
    }
}

/// Best-effort TOML path of the table that contains byte `offset`: the nearest
/// `[table]` or `[[array]]` header above it plus the key on that line.
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?.trim();
    let key = line
        .split('=')
        .next()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let header = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        .filter(|h| !h.is_empty());
    // A broken header line (`[{`, `[]`) is no key, and names no table either.
    let key = key.filter(|k| !k.starts_with('['));
    match (header, key) {
        (Some(h), Some(k)) => Some(format!("{h}.{k}")),
        (Some(h), None) => Some(h),
        (None, Some(k)) => Some(k.to_string()),
        (None, None) => None,
    }
}

/// Find the line of a path like `agents[2].city` in the parsed document.
fn locate(text: &str, doc: &toml::de::DeTable<'_>, path: &str) -> Option<usize> {
    use toml::de::DeValue;
    let mut span = None;
    let mut table = Some(doc);
    let mut value: Option<&DeValue<'_>> = None;
    for seg in path.split('.') {
        let (key, index) = match seg.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        let t = match value {
            Some(DeValue::Table(t)) => t,
            Some(_) => return span.map(|s| line_of(text, s)),
            None => table?,
        };
        // A key that is not there (a required one missing): the line of its table.
        let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == key) else {
            break;
        };
        span = Some(k.span().start);
        let mut cur = v;
        if let Some(i) = index {
            if let DeValue::Array(items) = cur.get_ref() {
                cur = items.get(i)?;
                span = Some(cur.span().start);
            }
        }
        value = Some(cur.get_ref());
        table = None;
    }
    span.map(|s| line_of(text, s))
}

/// The media plane: RTP ports and addresses, media timeout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// First RTP port (even); each call leg takes an RTP/RTCP pair.
    #[serde(default = "default_rtp_port_min")]
    pub rtp_port_min: u16,
    /// Last port of the range (inclusive).
    #[serde(default = "default_rtp_port_max")]
    pub rtp_port_max: u16,
    /// No RTP from the caller for this long ends the call (reason `media-timeout`).
    #[serde(default = "default_media_timeout_secs")]
    pub media_timeout_secs: u64,
    /// Address RTP sockets bind to; default: the SIP listen IP.
    #[serde(default)]
    pub bind_address: Option<IpAddr>,
    /// Address advertised in SDP (`c=`); default: the bind address (or, for a wildcard
    /// bind, the SIP listen IP; 127.0.0.1 if that is a wildcard too).
    #[serde(default)]
    pub public_address: Option<IpAddr>,
    /// Prompt WAV files (8 kHz mono 16-bit).
    #[serde(default = "default_prompts_dir")]
    pub prompts_dir: PathBuf,
    /// Longest test-extension call (seconds) before the server hangs up.
    #[serde(default = "default_max_test_call_secs")]
    pub max_test_call_secs: u64,
}

fn default_rtp_port_min() -> u16 {
    20000
}
fn default_rtp_port_max() -> u16 {
    29999
}
fn default_media_timeout_secs() -> u64 {
    30
}
fn default_prompts_dir() -> PathBuf {
    PathBuf::from("prompts/zh")
}
fn default_max_test_call_secs() -> u64 {
    300
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_port_min: default_rtp_port_min(),
            rtp_port_max: default_rtp_port_max(),
            media_timeout_secs: default_media_timeout_secs(),
            bind_address: None,
            public_address: None,
            prompts_dir: default_prompts_dir(),
            max_test_call_secs: default_max_test_call_secs(),
        }
    }
}

/// A test extension: reachable only from trunks and authenticated agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestExtensionConfig {
    /// The number dialled (Request-URI user), e.g. "echo" or "9196".
    pub number: String,
    pub kind: TestExtensionKind,
    /// `play`: the WAV to play (relative to `media.prompts_dir`), default the greeting.
    #[serde(default)]
    pub prompt: Option<PathBuf>,
    /// `record`: stereo (caller left, what we sent right) instead of mono.
    #[serde(default)]
    pub stereo: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestExtensionKind {
    /// RTP is sent back to the caller.
    Echo,
    /// A prompt is played, then the call ends.
    Play,
    /// The caller is recorded under `recordings/YYYY/MM/DD/<call-id>.wav`.
    Record,
    /// Digits heard (RFC 4733 and in-band) are logged.
    Dtmf,
}

/// Inbound hotline calls: which numbers are the hotline, city fallback, queue stand-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsConfig {
    /// Dialled numbers (digits, any prefix such as an area code or +86) ending with one of
    /// these reach the hotline IVR.
    #[serde(default = "default_service_numbers")]
    pub service_numbers: Vec<String>,
    /// City answering calls whose city cannot be resolved.
    #[serde(default = "default_province_center")]
    pub province_center: String,
    /// Mobile prefix (号段) → city table; none: mobile callers go through the city menu.
    #[serde(default)]
    pub mobile_prefixes: Option<PathBuf>,
    /// Numbers a callback may dial, national form (a leading +86/0086 is removed first):
    /// digits, `X` any digit, `N` 2-9, `Z` 1-9, `[..]` one of the listed digits or ranges.
    /// The default: mainland mobiles and fixed lines with their area code; no
    /// international, short, emergency or service numbers.
    #[serde(default = "default_callback_numbers")]
    pub callback_numbers: Vec<String>,
    /// Callbacks to one number within 24 hours at most.
    #[serde(default = "default_callback_per_number_per_day")]
    pub callback_per_number_per_day: u32,
    /// Callbacks requested within an hour at most (the whole hotline).
    #[serde(default = "default_callback_per_hour")]
    pub callback_per_hour: u32,
}

fn default_callback_numbers() -> Vec<String> {
    [
        "1[3-9]XXXXXXXXX",
        "0[1-9]XXXXXXXX",
        "0[1-9]XXXXXXXXX",
        "0[1-9]XXXXXXXXXX",
    ]
    .map(String::from)
    .to_vec()
}

fn default_callback_per_number_per_day() -> u32 {
    3
}

fn default_callback_per_hour() -> u32 {
    120
}

/// Whether `number` matches a dial pattern of [`CallsConfig::callback_numbers`].
#[must_use]
pub fn matches_dial_pattern(pattern: &str, number: &str) -> bool {
    let mut digits = number.bytes();
    let mut rest = pattern.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let Some(d) = digits.next() else {
            return false;
        };
        let (ok, after) = match first {
            b'X' => (d.is_ascii_digit(), tail),
            b'N' => ((b'2'..=b'9').contains(&d), tail),
            b'Z' => ((b'1'..=b'9').contains(&d), tail),
            b'[' => {
                let Some(end) = tail.iter().position(|&b| b == b']') else {
                    return false;
                };
                let class = &tail[..end];
                let mut ok = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == b'-' {
                        ok |= (class[i]..=class[i + 2]).contains(&d);
                        i += 3;
                    } else {
                        ok |= class[i] == d;
                        i += 1;
                    }
                }
                (ok, &tail[end + 1..])
            }
            literal => (literal == d, tail),
        };
        if !ok {
            return false;
        }
        rest = after;
    }
    digits.next().is_none()
}

/// A pattern is digits, `X`, `N`, `Z` and `[..]` classes of digits and ranges.
fn is_dial_pattern(pattern: &str) -> bool {
    let mut in_class = false;
    !pattern.is_empty()
        && pattern.bytes().all(|b| match b {
            b'[' if !in_class => {
                in_class = true;
                true
            }
            b']' if in_class => {
                in_class = false;
                true
            }
            b'-' => in_class,
            b'X' | b'N' | b'Z' => !in_class,
            b'0'..=b'9' => true,
            _ => false,
        })
        && !in_class
}

fn validate_notify(notify: &NotifyConfig, problems: &mut Vec<Problem>) {
    let mut add = |path: &str, message: String| {
        problems.push(Problem {
            path: format!("notify.{path}"),
            line: None,
            message,
        });
    };
    if let Some(url) = &notify.webhook_url
        && let Err(e) = crate::http_client::HttpUrl::parse(url)
    {
        add("webhook_url", e.to_string());
    }
    for (key, value) in [
        ("webhook_timeout_secs", notify.webhook_timeout_secs),
        (
            "webhook_max_attempts",
            u64::from(notify.webhook_max_attempts),
        ),
        ("webhook_queue", notify.webhook_queue as u64),
        ("reminder_interval_secs", notify.reminder_interval_secs),
    ] {
        if value == 0 {
            add(key, "must be at least 1".into());
        }
    }
    if notify.webhook_timeout_secs > 300 || notify.reminder_interval_secs > 86_400 {
        add(
            "webhook_timeout_secs",
            "at most 300 s (and reminder_interval_secs at most a day)".into(),
        );
    }
}

fn default_service_numbers() -> Vec<String> {
    vec!["12348".into()]
}
fn default_province_center() -> String {
    "jinan".into()
}
impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            service_numbers: default_service_numbers(),
            province_center: default_province_center(),
            mobile_prefixes: None,
            callback_numbers: default_callback_numbers(),
            callback_per_number_per_day: default_callback_per_number_per_day(),
            callback_per_hour: default_callback_per_hour(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
domain = "hotline.test"

[[cities]]
id = "jinan"
name = "济南"
area_codes = ["0531"]
numbers = ["053112348"]

[[agents]]
id = "1001"
name = "张律师"
city = "jinan"
password = "secret"
roles = ["agent"]
"#;

    #[test]
    fn minimal_config_loads_with_defaults() {
        let c = Config::from_toml(MINIMAL).expect("valid");
        assert_eq!(c.server.sip_listen.port(), 5060);
        assert_eq!(c.server.http_listen.port(), 8080);
        assert_eq!(c.sip.min_expires, 60);
        assert_eq!(c.agents[0].roles, vec![Role::Agent]);
    }

    #[test]
    fn partners_need_unique_ids_long_secrets_and_parsable_callback_urls() {
        let good = format!(
            "{MINIMAL}\n[[partners]]\nid = \"12345\"\nname = \"12345热线\"\nsecret = \"0123456789abcdef\"\nwebhook_url = \"http://127.0.0.1:9/cb\"\n"
        );
        let c = Config::from_toml(&good).expect("valid");
        assert_eq!(c.partners[0].id, "12345");
        let bad = format!(
            "{good}\n[[partners]]\nid = \"12345\"\nname = \"again\"\nsecret = \"short\"\nwebhook_url = \"ftp://x\"\n"
        );
        let problems = Config::from_toml(&bad).expect_err("bad partner");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "partners[1].id",
                "partners[1].secret",
                "partners[1].webhook_url"
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let text = MINIMAL.replace("password = \"secret\"", "pasword = \"secret\"");
        let problems = Config::from_toml(&text).expect_err("unknown key");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("pasword"), "{:?}", problems[0]);
        assert_eq!(problems[0].line, Some(15), "{:?}", problems[0]);
    }

    /// Found by fuzzing (`config_toml`): a broken table header gave a problem whose path
    /// was the empty string.
    #[test]
    fn broken_table_header_still_names_a_path_and_line() {
        for (text, path, line) in [
            ("[{", "(document)", 1),
            ("[]\nx = 1", "(document)", 1),
            ("[server]\n[{", "(document)", 2),
            ("[server]\ndomain = \"a\"\n[[cities]\n", "cities", 3),
        ] {
            let problems = Config::from_toml(text).expect_err(text);
            assert_eq!(problems.len(), 1, "{text:?}: {problems:?}");
            assert_eq!(problems[0].path, path, "{text:?}: {problems:?}");
            assert_eq!(problems[0].line, Some(line), "{text:?}: {problems:?}");
        }
    }

    #[test]
    fn bad_value_type_is_an_error() {
        let text = MINIMAL.replace("[server]", "[server]\nsip_listen = \"not an address\"");
        let problems = Config::from_toml(&text).expect_err("bad addr");
        assert_eq!(problems[0].line, Some(3));
    }

    #[test]
    fn every_semantic_problem_is_reported_with_path_and_line() {
        let text =
            format!("{MINIMAL}\n[[agents]]\nid = \"1001\"\nname = \"x\"\ncity = \"atlantis\"\n");
        let problems = Config::from_toml(&text).expect_err("two problems");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"agents[1].id"), "{paths:?}");
        assert!(paths.contains(&"agents[1].city"), "{paths:?}");
        assert!(paths.contains(&"agents[1]"), "{paths:?}");
        let city = problems
            .iter()
            .find(|p| p.path == "agents[1].city")
            .unwrap();
        assert_eq!(city.line, Some(21), "{city:?}");
    }

    #[test]
    fn notify_webhook_is_checked() {
        let c = Config::from_toml(&format!(
            "{MINIMAL}\n[notify]\nwebhook_url = \"http://127.0.0.1:9000/hook\"\n"
        ))
        .expect("valid");
        assert_eq!(c.notify.webhook_max_attempts, 6);
        assert_eq!(c.notify.reminder_interval_secs, 60);
        let problems = Config::from_toml(&format!(
            "{MINIMAL}\n[notify]\nwebhook_url = \"ftp://hooks.example\"\nwebhook_timeout_secs = 0\n"
        ))
        .expect_err("ftp, zero timeout");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["notify.webhook_url", "notify.webhook_timeout_secs"],
            "{problems:?}"
        );
        assert_eq!(problems[0].line, Some(19), "{:?}", problems[0]);
    }

    #[test]
    fn tls_settings_are_off_by_default_and_checked() {
        let c = Config::from_toml(MINIMAL).expect("valid");
        assert!(
            !TlsConfig::wanted(&c.server),
            "no TLS listener unless asked for"
        );
        let with_server = |server: &str, rest: &str| {
            MINIMAL.replace("[server]\n", &format!("[server]\n{server}")) + rest
        };
        let c = Config::from_toml(&with_server("https_listen = \"127.0.0.1:8443\"\n", ""))
            .expect("a self-signed certificate is made");
        assert!(TlsConfig::wanted(&c.server));
        let problems = Config::from_toml(&with_server(
            "https_listen = \"0.0.0.0:8080\"\nsip_tls_listen = \"0.0.0.0:5060\"\n",
            "\n[tls]\ncertificate = \"cert.pem\"\n\n[[trunks]]\nname = \"t\"\nsources = [\"192.0.2.1\"]\nsource_transport = \"tls\"\n",
        ))
        .expect_err("bad");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "tls.private_key",
                "server.https_listen",
                "server.sip_tls_listen"
            ],
            "{problems:?}"
        );
        let problems = Config::from_toml(&with_server(
            "",
            "\n[[trunks]]\nname = \"t\"\nsources = [\"192.0.2.1\"]\nsource_transport = \"tls\"\n",
        ))
        .expect_err("tls trunk without a TLS listener");
        assert_eq!(
            problems[0].path, "trunks[0].source_transport",
            "{problems:?}"
        );
    }

    #[test]
    fn http_limits_have_defaults_and_are_checked() {
        let c = Config::from_toml(MINIMAL).expect("valid");
        assert_eq!(c.http.header_timeout_secs, 10);
        assert_eq!(c.http.max_connections_per_source, 256);
        assert!(!c.http.secure_cookies);
        let problems = Config::from_toml(&format!(
            "{MINIMAL}\n[http]\nheader_timeout_secs = 0\nmax_connections = 10\nmax_connections_per_source = 11\n"
        ))
        .expect_err("zero timeout, per-source above the total");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "http.header_timeout_secs",
                "http.max_connections_per_source"
            ],
            "{problems:?}"
        );
    }

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hotline.toml");
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cities.len(), 16, "all 16 Shandong cities");
        assert!(
            c.cities
                .iter()
                .any(|c| c.numbers.contains(&"053112348".into()))
        );
    }

    #[test]
    fn outbound_trunk_addresses_parse_and_bad_ones_are_named() {
        let ok =
            |text: &str| OutboundAddress::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            ok("127.0.0.1:5080"),
            OutboundAddress {
                host: "127.0.0.1".into(),
                port: 5080,
                transport: OutboundTransport::Udp
            }
        );
        assert_eq!(ok("sip:gw.carrier.example").port, 5060);
        assert_eq!(
            ok("sip:10.0.0.5:5070;transport=tcp").transport,
            OutboundTransport::Tcp
        );
        assert_eq!(ok("[::1]:5062").host, "::1");
        for (bad, error) in [
            ("", OutboundAddressError::Empty),
            ("sips:gw:5061", OutboundAddressError::Scheme),
            ("sip:12348@gw", OutboundAddressError::UserPart),
            ("gw:0", OutboundAddressError::Port("0".into())),
            ("gw:port", OutboundAddressError::Port("port".into())),
            (
                "bad_host:5060",
                OutboundAddressError::Host("bad_host".into()),
            ),
            ("sip:gw;lr", OutboundAddressError::Parameter("lr".into())),
        ] {
            assert_eq!(OutboundAddress::parse(bad), Err(error), "{bad}");
        }
        let text = format!(
            "{MINIMAL}\n[[trunks]]\nname = \"t\"\nsources = [\"127.0.0.1\"]\noutbound = \"sip:x@y\"\n"
        );
        let problems = Config::from_toml(&text).expect_err("user part");
        assert!(
            problems.iter().any(|p| p.path == "trunks[0].outbound"),
            "{problems:?}"
        );
    }

    #[test]
    fn unit_phones_are_digits_and_unique() {
        let units = |a: &str, b: &str| {
            format!(
                "{MINIMAL}\n[[units]]\nid = \"p\"\nname = \"p\"\nkind = \"province\"\nphone = \"{a}\"\n\
                 [[units]]\nid = \"c\"\nname = \"c\"\nkind = \"city\"\nparent = \"p\"\nphone = \"{b}\"\n"
            )
        };
        assert!(Config::from_toml(&units("053188880000", "+8653288880000")).is_ok());
        let problems = Config::from_toml(&units("0531-8888", "12")).expect_err("bad");
        assert!(
            problems.iter().any(|p| p.path == "units[0].phone"),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.path == "units[1].phone"),
            "{problems:?}"
        );
        let problems =
            Config::from_toml(&units("053188880000", "053188880000")).expect_err("twice");
        assert!(
            problems.iter().any(|p| p.path == "units[1].phone"),
            "{problems:?}"
        );
    }

    /// Lines of `source` outside `#[cfg(test)]` items. An attribute line starts a test
    /// item; a block item ends at the closing brace at the attribute's indentation, a
    /// one-line item (`mod tests;`, `use …;`) at its semicolon.
    fn non_test_lines(source: &str) -> Vec<(usize, &str)> {
        let mut kept = Vec::new();
        let mut lines = source.lines().enumerate();
        while let Some((number, line)) = lines.next() {
            if line.trim() != "#[cfg(test)]" {
                kept.push((number + 1, line));
                continue;
            }
            let indent = &line[..line.len() - line.trim_start().len()];
            let closing = format!("{indent}}}");
            let mut first = true;
            for (_, item) in lines.by_ref() {
                let attribute = item.trim_start().starts_with("#[");
                let one_liner = first && !attribute && item.trim_end().ends_with(';');
                if one_liner || item.trim_end() == closing {
                    break;
                }
                first &= attribute;
            }
        }
        kept
    }

    fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                rust_files(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }

    /// Editing `config/` must not rebuild the server (a release build takes minutes,
    /// phones' registrations lapse meanwhile): no code outside tests embeds a file from
    /// it, and the build script does not watch it.
    #[test]
    fn no_code_outside_tests_embeds_the_config_directory() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        files.push(root.join("build.rs"));
        let mut embedding = Vec::new();
        for file in &files {
            // `tests.rs` files are `#[cfg(test)] mod tests;` of their parent.
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let source = std::fs::read_to_string(file).expect("read source");
            for (number, line) in non_test_lines(&source) {
                let embeds = line.contains("include_str!") || line.contains("include_bytes!");
                let watches = line.contains("rerun-if-changed");
                if (embeds || watches) && line.contains("config") && !line.contains("config.rs") {
                    embedding.push(format!("{}:{number}: {}", file.display(), line.trim()));
                }
            }
        }
        assert!(embedding.is_empty(), "{embedding:#?}");
        // The scan sees what it must: a test module's embedding is skipped, code's is not.
        let sample = "const A: &str = include_str!(\"../config/x\");\n#[cfg(test)]\nmod t {\n    const B: &str = include_str!(\"../config/y\");\n}\n#[cfg(test)]\nmod tests;\nconst C: u8 = 0;\n";
        let kept: Vec<usize> = non_test_lines(sample).iter().map(|(n, _)| *n).collect();
        assert_eq!(kept, [1, 8]);
    }

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).expect("mkdir");
        let text = MINIMAL.replace(
            "[server]\n",
            "[server]\ndata_dir = \"../var\"\nrecordings_dir = \"/srv/rec\"\n\
             database_url = \"sqlite://db/h.db?mode=rwc\"\n",
        ) + "[media]\nprompts_dir = \"prompts/zh\"\n[calls]\nmobile_prefixes = \"p.csv\"\n";
        std::fs::write(etc.join("hotline.toml"), text).expect("write");
        let c = Config::load(&etc.join("hotline.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server.data_dir, etc.join("../var"));
        assert_eq!(
            c.server.recordings_dir,
            Path::new("/srv/rec"),
            "absolute: kept"
        );
        assert_eq!(
            c.server.calendar,
            etc.join("calendar/cn-workdays.toml"),
            "default"
        );
        assert_eq!(c.media.prompts_dir, etc.join("prompts/zh"));
        assert_eq!(c.calls.mobile_prefixes, Some(etc.join("p.csv")));
        assert_eq!(
            c.database_url(None),
            format!("sqlite://{}?mode=rwc", etc.join("db/h.db").display())
        );
        // Absolute: a later change of working directory changes nothing.
        assert!(c.server.data_dir.is_absolute());

        for kept in [
            "postgres://h@127.0.0.1/h",
            "sqlite::memory:",
            "sqlite:///var/h.db",
        ] {
            assert_eq!(sqlite_url_beside(kept, &etc), kept);
        }
        assert_eq!(
            sqlite_url_beside("sqlite:h.db", &etc),
            format!("sqlite://{}", etc.join("h.db").display())
        );
    }

    /// Every path the shipped config names exists, relative to `config/`.
    #[test]
    fn shipped_config_paths_are_relative_to_config_dir() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = Config::load(&root.join("config/hotline.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            c.server.calendar.is_file(),
            "{}",
            c.server.calendar.display()
        );
        assert!(
            c.media.prompts_dir.is_dir(),
            "{}",
            c.media.prompts_dir.display()
        );
        assert_eq!(c.server.data_dir, root.join("config/../data"));
        assert_eq!(c.server.recordings_dir, root.join("config/../recordings"));
    }

    /// Line of the first line of `text` that contains `needle` (1-based).
    fn line_with(text: &str, needle: &str) -> Option<usize> {
        text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
    }

    #[test]
    fn type_errors_in_several_sections_are_reported_in_one_run() {
        let text = format!(
            "{MINIMAL}\n[sip]\nmin_expirse = 10\nt1_ms = \"fast\"\n\
             [media]\nrtp_port_min = \"low\"\n\
             [[agents]]\nid = \"1002\"\nname = \"x\"\ncity = \"jinan\"\npassword = \"p\"\nroles = [\"wizard\"]\n\
             [[agents]]\nid = \"1003\"\nname = \"y\"\ncity = \"jinan\"\npasword = \"p\"\n"
        );
        let problems = Config::from_toml(&text).expect_err("four typos");
        let lines: Vec<Option<usize>> = problems.iter().map(|p| p.line).collect();
        let expected: Vec<Option<usize>> = [
            "min_expirse",
            "t1_ms = \"fast\"",
            "rtp_port_min = \"low\"",
            "wizard",
            "pasword",
        ]
        .iter()
        .map(|needle| line_with(&text, needle))
        .collect();
        assert_eq!(lines, expected, "in file order: {problems:#?}");
        assert!(problems.iter().all(|p| !p.path.is_empty()), "{problems:#?}");
    }

    #[test]
    fn every_syntax_error_is_reported() {
        let text = "[server]\ndomain = \"a\"\nsip_listen = \"0.0.0.0:5060\n\n[sip]\nt1_ms = = 5\n";
        let problems = Config::from_toml(text).expect_err("two syntax errors");
        let lines: Vec<Option<usize>> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(3), Some(6)], "{problems:#?}");
    }

    #[test]
    fn empty_passwords_are_problems() {
        let text = format!(
            "{MINIMAL}\n[[units]]\nid = \"p\"\nname = \"p\"\nkind = \"province\"\n\
             [[users]]\nid = \"u\"\nname = \"u\"\npassword = \" \"\nroles = [\"agent\"]\nunit = \"p\"\n"
        )
        .replace("password = \"secret\"", "password = \"\"");
        let problems = Config::from_toml(&text).expect_err("empty passwords");
        let found: Vec<(&str, Option<usize>)> =
            problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(
            found,
            [
                ("agents[0].password", line_with(&text, "password = \"\"")),
                ("users[0].password", line_with(&text, "password = \" \"")),
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn queue_problems_point_at_their_entry() {
        let text = format!(
            "{MINIMAL}\n[queues]\nprovince_center = \"jinan\"\n\
             [[queues.queue]]\ncity = \"jinan\"\n\
             [[queues.queue]]\ncity = \"qingdao\"\nring_timeout_secs = 0\noverflow_to = \"atlantis\"\n\
             [[queues.agent]]\nid = \"1001\"\ncity = \"jinan\"\n\
             [[queues.roster]]\nagent = \"ghost\"\nfrom = \"2026-01-01\"\nuntil = \"2026-12-31\"\n\
             days = \"working_days\"\nstart = \"08:30\"\nend = \"17:30\"\n"
        );
        let problems = Config::from_toml(&text).expect_err("queue problems");
        let found: Vec<(&str, Option<usize>)> =
            problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(
            found,
            [
                (
                    "queues.queue[1].ring_timeout_secs",
                    line_with(&text, "ring_timeout_secs = 0")
                ),
                (
                    "queues.queue[1].overflow_to",
                    line_with(&text, "overflow_to = \"atlantis\"")
                ),
                (
                    "queues.roster[0].agent",
                    line_with(&text, "agent = \"ghost\"")
                ),
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn database_url_prefers_environment() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert!(c.database_url(None).starts_with("sqlite://"));
        assert_eq!(
            c.database_url(Some("postgres://x/y".into())),
            "postgres://x/y"
        );
    }
}

/// A console / API user (work orders). Passwords: `password_hash` (argon2 PHC string)
/// in production, plain `password` for development.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_hash: Option<String>,
    pub roles: Vec<Role>,
    /// Unit id from `[[units]]`.
    pub unit: String,
    /// SHA-256 hex of a bearer token for API clients.
    #[serde(default)]
    pub api_token: Option<String>,
    /// The `[[agents]]` id (softphone extension) this console user works as: the agent
    /// workspace signs that agent in and out and shows its screen-pops.
    #[serde(default)]
    pub agent: Option<String>,
}

/// Automatic routing (TK-ROUTE): (city, business area, category) → unit; `"*"` matches
/// anything. The most specific matching rule wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    #[serde(default = "wildcard")]
    pub city: String,
    #[serde(default = "wildcard")]
    pub business_area: String,
    #[serde(default = "wildcard")]
    pub category: String,
    pub unit: String,
}

fn wildcard() -> String {
    "*".to_owned()
}

const BUSINESS_AREAS: [&str; 8] = [
    "legal_aid",
    "lawyer",
    "notary",
    "judicial_appraisal",
    "mediation",
    "grassroots_legal_service",
    "legal_education",
    "other",
];
const CATEGORIES: [&str; 4] = ["consultation", "complaint", "suggestion", "case"];

/// Unit and user names show in the consoles' lists: a zero-width or bidi control
/// character would make one look like another.
fn hidden_character_message(c: char) -> String {
    format!(
        "holds the invisible character U+{:04X} (zero-width or bidi control); names may not",
        u32::from(c)
    )
}

fn validate_users_and_routing(
    config: &Config,
    unit_ids: &HashSet<&str>,
    problems: &mut Vec<Problem>,
) {
    let mut add = |path: String, message: String| {
        problems.push(Problem {
            path,
            line: None,
            message,
        })
    };
    let mut user_ids = HashSet::new();
    for (i, u) in config.users.iter().enumerate() {
        if u.id.trim().is_empty() {
            add(format!("users[{i}].id"), "must not be empty".into());
        }
        if let Some(c) = hidden_character(&u.name) {
            add(format!("users[{i}].name"), hidden_character_message(c));
        }
        if !user_ids.insert(u.id.as_str()) {
            add(
                format!("users[{i}].id"),
                format!("duplicate user id {:?}", u.id),
            );
        }
        if !unit_ids.contains(u.unit.as_str()) {
            add(
                format!("users[{i}].unit"),
                format!("unknown unit {:?} (not in [[units]])", u.unit),
            );
        }
        if u.roles.is_empty() {
            add(
                format!("users[{i}].roles"),
                "must list at least one role".into(),
            );
        }
        if u.password.as_ref().is_some_and(|p| p.trim().is_empty()) {
            add(
                format!("users[{i}].password"),
                "must not be empty (anyone could sign in as this user)".into(),
            );
        }
        match (&u.password, &u.password_hash) {
            (None, None) => add(
                format!("users[{i}]"),
                "needs password or password_hash".into(),
            ),
            (_, Some(h)) if !h.starts_with("$argon2") => add(
                format!("users[{i}].password_hash"),
                "must be an argon2 PHC string ($argon2id$…)".into(),
            ),
            _ => {}
        }
        if let Some(t) = &u.api_token
            && !is_hex(t, 64)
        {
            add(
                format!("users[{i}].api_token"),
                "must be the SHA-256 of the token, 64 lowercase hex digits".into(),
            );
        }
        if let Some(agent) = &u.agent
            && !config.agents.iter().any(|a| &a.id == agent)
        {
            add(
                format!("users[{i}].agent"),
                format!("unknown agent {agent:?} (not in [[agents]])"),
            );
        }
    }
    for (i, r) in config.routing.iter().enumerate() {
        if !unit_ids.contains(r.unit.as_str()) {
            add(
                format!("routing[{i}].unit"),
                format!("unknown unit {:?} (not in [[units]])", r.unit),
            );
        }
        if r.city != "*" && !unit_ids.contains(r.city.as_str()) {
            add(
                format!("routing[{i}].city"),
                format!("unknown unit {:?} (not in [[units]])", r.city),
            );
        }
        if r.business_area != "*" && !BUSINESS_AREAS.contains(&r.business_area.as_str()) {
            add(
                format!("routing[{i}].business_area"),
                format!(
                    "{:?} is not one of {BUSINESS_AREAS:?} or \"*\"",
                    r.business_area
                ),
            );
        }
        if r.category != "*" && !CATEGORIES.contains(&r.category.as_str()) {
            add(
                format!("routing[{i}].category"),
                format!("{:?} is not one of {CATEGORIES:?} or \"*\"", r.category),
            );
        }
    }
}

#[cfg(test)]
mod user_routing_tests {
    use super::*;

    const BASE: &str = r#"
[server]
domain = "hotline.test"

[[units]]
id = "province"
name = "省司法厅"
kind = "province"

[[units]]
id = "jinan"
name = "济南市司法局"
kind = "city"
parent = "province"
"#;

    #[test]
    fn users_and_routing_are_checked() {
        let text = format!(
            "{BASE}
[[users]]
id = \"a\"
name = \"A\"
roles = [\"agent\"]
unit = \"atlantis\"

[[users]]
id = \"b\"
name = \"B\"
roles = [\"wizard\"]
unit = \"jinan\"
password = \"x\"
agent = \"9999\"

[[routing]]
city = \"jinan\"
business_area = \"legal_aid\"
unit = \"nowhere\"
"
        );
        let problems = Config::from_toml(&text).expect_err("problems");
        // Unknown role is a type error: reported alone, by the parser.
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("wizard"), "{problems:?}");

        let fixed = text.replace("wizard", "dispatcher");
        let problems = Config::from_toml(&fixed).expect_err("problems");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"users[0].unit"), "{paths:?}");
        assert!(paths.contains(&"users[0]"), "missing password: {paths:?}");
        assert!(paths.contains(&"routing[0].unit"), "{paths:?}");
        assert!(
            paths.contains(&"users[1].agent"),
            "unknown agent: {paths:?}"
        );
        assert!(problems.iter().all(|p| p.line.is_some()), "{problems:?}");
    }

    #[test]
    fn unit_and_user_names_with_invisible_characters_are_refused() {
        let text = format!(
            "{BASE}
[[units]]
id = \"lixia\"
name = \"历下区\\u202e局法司\"
kind = \"county\"
parent = \"jinan\"

[[users]]
id = \"a\"
name = \"张\\u200b三\"
roles = [\"dispatcher\"]
unit = \"jinan\"
password = \"x\"
"
        );
        let problems = Config::from_toml(&text).expect_err("problems");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["units[2].name", "users[0].name"], "{problems:?}");
        let clean = text.replace("\\u202e", "").replace("\\u200b", "");
        assert!(Config::from_toml(&clean).is_ok(), "{clean}");
    }
}
