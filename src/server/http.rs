//! The HTTP listener (API and consoles): our own accept loop around hyper's HTTP/1
//! connection, because `axum::serve` has no connection cap and no header timeout. An
//! attacker's idle connections once used up every open file, so that RTP sockets could
//! not be opened (new calls 503) and `/healthz` hung. Now:
//!
//! - a request head must arrive within `[http] header_timeout_secs` of opening the
//!   connection or of its previous response (the keep-alive idle limit too);
//! - connections beyond `[http] max_connections` in all, or beyond
//!   `max_connections_per_source` from one address, are closed at once;
//! - at start-up the open-file soft limit is raised to the hard limit, and the HTTP cap
//!   lowered if needed so that the SIP and RTP reserve still fits ([`plan_open_files`]).
//!
//! The same loop serves HTTPS (`server.https_listen`): the TLS handshake must also end
//! within the header timeout, and requests carry [`OverTls`] (the session cookie is
//! then `Secure`). With both listeners on, plain HTTP redirects to HTTPS
//! ([`redirect_to_https`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::metrics::{HttpRefusal, Metrics};
use crate::shutdown::Shutdown;

/// Open files kept besides RTP and HTTP: the database pool and its journals,
/// recordings being written, prompts, logs, the SIP sockets.
pub const BASE_FILE_RESERVE: u64 = 256;
/// Open files kept for SIP over TCP (agents' softphones on TCP).
pub const SIP_TCP_RESERVE: u64 = 512;
/// The open-file limit never lowers the HTTP cap below this: the consoles and
/// `/healthz` must stay reachable.
pub const MIN_HTTP_CONNECTIONS: usize = 64;

/// At shutdown, a connection's answer in progress gets this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How the process's open files are shared out (logged at start-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesPlan {
    /// The open-file soft limit after raising it.
    pub limit: u64,
    /// Kept for SIP, RTP and the rest.
    pub reserve: u64,
    /// HTTP connections open at once at most.
    pub http_max_connections: usize,
}

/// The HTTP cap that leaves `reserve` open files (RTP ports, SIP over TCP, the rest)
/// under `limit`: the configured cap, lowered when the limit cannot hold both.
#[must_use]
pub fn plan_open_files(limit: u64, config: &Config) -> OpenFilesPlan {
    let rtp_ports = u64::from(
        config
            .media
            .rtp_port_max
            .saturating_sub(config.media.rtp_port_min),
    ) + 1;
    let reserve = rtp_ports + SIP_TCP_RESERVE + BASE_FILE_RESERVE;
    let room = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    OpenFilesPlan {
        limit,
        reserve,
        http_max_connections: config
            .http
            .max_connections
            .min(room.max(MIN_HTTP_CONNECTIONS)),
    }
}

/// Raise the open-file soft limit to the hard limit; the soft limit in force after.
#[must_use]
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: current.maximum,
        maximum: current.maximum,
    };
    if current.current != current.maximum
        && let Err(e) = setrlimit(Resource::Nofile, raised)
    {
        warn!(%e, "cannot raise the open-file limit");
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The limits the accept loop applies.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// Addresses counted only against the total (reverse proxies in front).
    pub exempt_from_per_source: Vec<IpAddr>,
}

/// Connections open, in all and per source address. No IO: the accept loop asks it.
#[derive(Debug)]
pub struct ConnectionTable {
    limits: HttpLimits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A connection counted in its table until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    table: Arc<ConnectionTable>,
    source: IpAddr,
}

impl ConnectionTable {
    #[must_use]
    pub fn new(limits: HttpLimits) -> Arc<Self> {
        Arc::new(ConnectionTable {
            limits,
            open: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Count a new connection from `source`, or say which cap it is over.
    ///
    /// # Errors
    /// The total or this source's cap is reached.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<ConnectionSlot, HttpRefusal> {
        let mut open = self.lock();
        if open.0 >= self.limits.max_connections {
            return Err(HttpRefusal::Total);
        }
        let exempt = self.limits.exempt_from_per_source.contains(&source);
        let from_source = open.1.get(&source).copied().unwrap_or(0);
        if !exempt && from_source >= self.limits.max_connections_per_source {
            return Err(HttpRefusal::PerSource);
        }
        open.0 += 1;
        open.1.insert(source, from_source + 1);
        Ok(ConnectionSlot {
            table: self.clone(),
            source,
        })
    }

    /// Connections open now.
    #[must_use]
    pub fn open(&self) -> usize {
        self.lock().0
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.1.remove(&self.source);
            }
        }
    }
}

/// Marks a request that came over the built-in HTTPS listener.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// Paths plain HTTP still answers when HTTPS is on: health probes and Prometheus, which
/// carry no credentials and are often pointed at the plain port.
pub const PLAIN_HTTP_PATHS: [&str; 2] = ["/healthz", "/metrics"];

/// Plain HTTP beside HTTPS: everything but [`PLAIN_HTTP_PATHS`] is redirected (308, so an
/// API client's POST stays a POST) to the same host on the HTTPS port.
pub async fn redirect_to_https(
    State(https_port): State<u16>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if PLAIN_HTTP_PATHS.contains(&path) {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_without_port);
    let Some(host) = host else {
        return (StatusCode::BAD_REQUEST, "use HTTPS\n").into_response();
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    let location = format!("https://{host}:{https_port}{target}");
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

/// The host of a `Host` header without its port, if it is a plain name or address (a
/// redirect must not carry whatever a client put there).
fn host_without_port(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        host.get(..=host.find(']')?)?
    } else {
        host.split(':').next()?
    };
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c));
    (!name.is_empty() && plain).then_some(name)
}

/// Serve `app` on `listener` until `shutdown` (over TLS when `tls` is given); then ask
/// open connections to finish and wait for them (the caller bounds the wait). HTTP and
/// HTTPS share one `table`: the caps hold for both together.
///
/// # Errors
/// None today; the signature leaves room for fatal listener errors.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    table: Arc<ConnectionTable>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let header_timeout = table.limits.header_timeout;
    let mut last_refusal_log: Option<std::time::Instant> = None;
    let over_tls = tls.is_some();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and the like: wait for connections to close rather than spin.
                warn!(%e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match table.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                metrics.http_refused(why);
                // One line a second at most: a flood must not flood the log too.
                if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    warn!(%peer, reason = why.as_str(), "HTTP connection over the cap; closed");
                    last_refusal_log = Some(std::time::Instant::now());
                }
                drop(stream);
                continue;
            }
        };
        metrics.http_connection(1);
        let service = tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                if over_tls {
                    request.extensions_mut().insert(OverTls);
                }
                request
            },
        );
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_connection(stream, service, peer, header_timeout, &shutdown).await,
                Some(acceptor) => {
                    // The handshake is bounded like a request head: a client that opens
                    // connections and never says hello holds none for long.
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, service, peer, header_timeout, &shutdown)
                                .await;
                        }
                        Ok(Err(e)) => debug!(%peer, %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            metrics.http_connection(-1);
        });
    }
    while table.open() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    info!(tls = over_tls, "HTTP listener stopped");
    Ok(())
}

async fn serve_connection<S, A>(
    stream: S,
    service: A,
    peer: SocketAddr,
    header_timeout: Duration,
    shutdown: &Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    A::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        // The browser softphone's WebSocket (`GET /api/softphone`).
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            // An event stream never ends on its own: do not wait for it long.
            match tokio::time::timeout(SHUTDOWN_GRACE, connection).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        debug!(%peer, %e, "HTTP connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_source: usize) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(1),
            max_connections: total,
            max_connections_per_source: per_source,
            exempt_from_per_source: vec![[10, 0, 0, 1].into()],
        }
    }

    #[test]
    fn connections_are_capped_per_source_and_in_all_and_freed_on_drop() {
        let table = ConnectionTable::new(limits(5, 2));
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let proxy: IpAddr = [10, 0, 0, 1].into();
        let first = table.admit(a).expect("1st from a");
        let _second = table.admit(a).expect("2nd from a");
        assert_eq!(table.admit(a).err(), Some(HttpRefusal::PerSource));
        let _b = table.admit(b).expect("b has its own share");
        // A trusted proxy carries many clients: only the total counts.
        let _p1 = table.admit(proxy).expect("proxy 1");
        let _p2 = table.admit(proxy).expect("proxy 2");
        assert_eq!(table.admit(proxy).err(), Some(HttpRefusal::Total));
        assert_eq!(table.admit(b).err(), Some(HttpRefusal::Total));
        drop(first);
        assert_eq!(table.open(), 4);
        let _again = table.admit(a).expect("a's slot came back");
    }

    #[test]
    fn a_redirect_keeps_only_a_plain_host() {
        assert_eq!(
            host_without_port("hotline.example:8080"),
            Some("hotline.example")
        );
        assert_eq!(host_without_port("10.0.0.5"), Some("10.0.0.5"));
        assert_eq!(host_without_port("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_without_port("evil.example/path"), None);
        assert_eq!(host_without_port("a@b"), None);
        assert_eq!(host_without_port(""), None);
    }

    #[test]
    fn the_http_cap_leaves_the_sip_and_rtp_reserve() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = Config::load(&root.join("config/hotline.toml")).expect("config");
        let rtp = u64::from(config.media.rtp_port_max - config.media.rtp_port_min) + 1;
        let reserve = rtp + SIP_TCP_RESERVE + BASE_FILE_RESERVE;
        // Plenty of files: the configured cap.
        let plan = plan_open_files(1 << 20, &config);
        assert_eq!(plan.http_max_connections, config.http.max_connections);
        assert_eq!(plan.reserve, reserve);
        // A tight limit: HTTP gets what the reserve leaves.
        let plan = plan_open_files(reserve + 1000, &config);
        assert_eq!(plan.http_max_connections, 1000);
        // Even tighter: never below the floor (the operator is warned by the log).
        let plan = plan_open_files(1024, &config);
        assert_eq!(plan.http_max_connections, MIN_HTTP_CONNECTIONS);
    }
}
