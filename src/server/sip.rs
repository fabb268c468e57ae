//! SIP transports: one UDP socket loop, a TCP accept loop with one task per connection
//! (and one for SIP over TLS, RFC 3261 §26: the same connection code over a rustls
//! stream, with the same caps and timeouts), and a timer task, all feeding the sans-IO [`Endpoint`] under a short std mutex (never
//! held across `.await`). Database writes go to a persistence task through a bounded
//! channel so a slow database never stalls signalling.

use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use crate::metrics::{DropReason, Metrics};
use crate::server::calls::{CallRouter, MediaContext};
use crate::sip::endpoint::{CommitId, Endpoint, Output, SourceInfo, StoreOp, Transport};
use crate::sip::message::{MAX_MESSAGE_SIZE, StreamFramer};
use crate::store::Store;

use crate::shutdown::Shutdown;

/// Writers of open TCP and TLS connections, by peer address and transport, for responses
/// and for reusing a registered agent's connection (RFC 5923-style reuse of the flow it
/// registered on). The transport is part of the key so that what is meant for a TLS
/// flow never leaves on a plain one.
type TcpWriters = Arc<Mutex<HashMap<(SocketAddr, Transport), mpsc::Sender<Bytes>>>>;

pub struct SipShell {
    endpoint: Arc<Mutex<Endpoint>>,
    metrics: Arc<Metrics>,
    udp: Arc<UdpSocket>,
    tcp_writers: TcpWriters,
    wake_timer: Arc<Notify>,
    store_tx: mpsc::Sender<PersistJob>,
    max_per_source: usize,
    idle_timeout: Duration,
    calls: CallRouter,
    /// When the allocator was last trimmed (`release_idle_memory`).
    last_trim: std::sync::Mutex<Option<Instant>>,
    /// The UDP receive loop: finished means SIP is no longer served.
    udp_task: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
}

/// Bound sockets, so the caller knows the real ports (tests bind port 0).
pub struct SipSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    /// SIP over TLS: its listener and the certificate it presents.
    pub tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
}

/// A TLS handshake must end within this long (or the idle timeout, if shorter): a
/// client that opens connections and never says hello holds none for long.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl SipSockets {
    /// Bind UDP and TCP on the same address (same port when the address has port 0:
    /// UDP picks, TCP follows).
    ///
    /// # Errors
    /// The address is taken or not local.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<SipSockets> {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(udp.local_addr()?).await?;
        Ok(SipSockets {
            udp,
            tcp,
            tls: None,
        })
    }

    /// Also listen for SIP over TLS on `addr`, presenting `acceptor`'s certificate.
    ///
    /// # Errors
    /// The address is taken or not local.
    pub async fn bind_tls(
        &mut self,
        addr: SocketAddr,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        self.tls = Some((listener, acceptor));
        Ok(local)
    }
}

/// Connections open per source address, over TCP and TLS together.
type PerSource = Arc<Mutex<HashMap<std::net::IpAddr, usize>>>;

impl SipShell {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        sockets: SipSockets,
        endpoint: Endpoint,
        metrics: Arc<Metrics>,
        store: Store,
        max_per_source: usize,
        idle_timeout: Duration,
        shutdown: Shutdown,
        media: Arc<MediaContext>,
    ) -> Arc<SipShell> {
        let (store_tx, store_rx) = mpsc::channel(10_000);
        let mut endpoint = endpoint;
        if let Ok(local) = sockets.udp.local_addr() {
            endpoint.set_local_addr(local);
        }
        if let Some(local) = sockets.tls.as_ref().and_then(|(l, _)| l.local_addr().ok()) {
            endpoint.set_local_tls_addr(local);
        }
        let shell = Arc::new(SipShell {
            endpoint: Arc::new(Mutex::new(endpoint)),
            metrics,
            udp: Arc::new(sockets.udp),
            tcp_writers: Arc::default(),
            wake_timer: Arc::new(Notify::new()),
            store_tx,
            max_per_source,
            idle_timeout,
            calls: CallRouter::new(media),
            last_trim: std::sync::Mutex::new(None),
            udp_task: std::sync::OnceLock::new(),
        });
        tokio::spawn(persist_loop(Arc::downgrade(&shell), store, store_rx));
        let udp_task = tokio::spawn(shell.clone().udp_loop(shutdown.clone()));
        let _ = shell.udp_task.set(udp_task);
        let per_source = PerSource::default();
        tokio::spawn(shell.clone().tcp_accept_loop(
            sockets.tcp,
            None,
            per_source.clone(),
            shutdown.clone(),
        ));
        if let Some((listener, acceptor)) = sockets.tls {
            tokio::spawn(shell.clone().tcp_accept_loop(
                listener,
                Some(acceptor),
                per_source,
                shutdown.clone(),
            ));
        }
        tokio::spawn(shell.clone().timer_loop(shutdown));
        shell
    }

    /// SIP is served: the UDP receive loop runs and the endpoint is usable (its lock
    /// not poisoned by a panic).
    #[must_use]
    pub fn serving(&self) -> bool {
        self.udp_task.get().is_some_and(|t| !t.is_finished()) && !self.endpoint.is_poisoned()
    }

    pub(crate) fn calls(&self) -> &CallRouter {
        &self.calls
    }

    /// Run the endpoint on one input and carry out its outputs; `None` if the endpoint's
    /// lock is poisoned.
    pub(crate) fn drive<R, F: FnOnce(&mut Endpoint) -> R>(self: &Arc<Self>, f: F) -> Option<R> {
        let (result, outputs): (R, Vec<Output>) = {
            let Ok(mut ep) = self.endpoint.lock() else {
                return None;
            };
            let result = f(&mut ep);
            (result, std::iter::from_fn(|| ep.poll_output()).collect())
        };
        // A registration change is committed before the answer that announces it leaves
        // (a REGISTER whose 200 arrived must survive kill -9): the endpoint holds that
        // answer (`AwaitCommit`) until the persistence task reports the commit.
        let durable = outputs.iter().any(|o| {
            matches!(
                o,
                Output::Store(StoreOp::UpsertBinding(_) | StoreOp::DeleteBinding { .. })
                    | Output::AwaitCommit(_)
            )
        });
        if durable {
            self.calls.registration_changed();
            let mut job = PersistJob::default();
            for out in outputs {
                match out {
                    Output::Store(op) => job.ops.push(op),
                    Output::AwaitCommit(id) => job.commits.push(id),
                    other => self.perform(other),
                }
            }
            if let Err(e) = self.store_tx.try_send(job) {
                warn!("persistence queue full: registration not stored, answered 503");
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                self.commits_done(&job.commits, false);
            }
        } else {
            for out in outputs {
                self.perform(out);
            }
        }
        self.wake_timer.notify_one();
        Some(result)
    }

    /// Report the outcome of binding writes to the endpoint, which answers the REGISTERs
    /// that waited for them.
    fn commits_done(self: &Arc<Self>, commits: &[CommitId], stored: bool) {
        if commits.is_empty() {
            return;
        }
        let now = Instant::now();
        self.drive(|ep| {
            for id in commits {
                ep.binding_commit_done(now, *id, stored);
            }
        });
    }

    fn perform(self: &Arc<Self>, out: Output) {
        match out {
            Output::Transmit { to, bytes } => match to.transport {
                Transport::Udp => {
                    // try_send_to never blocks the loop; a full socket buffer drops the
                    // datagram, which SIP's retransmissions recover from.
                    if let Err(e) = self.udp.try_send_to(&bytes, to.addr) {
                        debug!(%e, to = %to.addr, "udp send failed");
                    }
                }
                // Connection-oriented transports share the writers table (a TLS
                // connection's writer encrypts).
                Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
                    let writer = self
                        .tcp_writers
                        .lock()
                        .ok()
                        .and_then(|w| w.get(&(to.addr, to.transport)).cloned());
                    match writer {
                        Some(w) => {
                            if w.try_send(bytes).is_err() {
                                debug!(to = %to.addr, "tcp writer full or closed");
                            }
                        }
                        None if to.transport == Transport::Tcp => {
                            tokio::spawn(self.clone().connect_outbound(to.addr, bytes));
                        }
                        // Never sent in clear instead: a TLS peer is reached over the
                        // connection it opened (phones and trunks keep theirs open).
                        None => {
                            debug!(to = %to.addr, transport = to.transport.as_str(), "no open connection to this peer; not sent")
                        }
                    }
                }
            },
            // `drive` sends these with the batch's binding writes; one that came here would
            // have nothing written for it: the REGISTER gets its 503.
            Output::AwaitCommit(id) => self.commits_done(&[id], false),
            Output::Store(op) => {
                let job = PersistJob {
                    ops: vec![op],
                    commits: Vec::new(),
                };
                if self.store_tx.try_send(job).is_err() {
                    warn!("persistence queue full: an audit line was not stored");
                }
            }
            Output::Call { call, event } => self.calls.dispatch(self, call, event),
        }
    }

    async fn udp_loop(self: Arc<Self>, shutdown: Shutdown) {
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
        loop {
            let received = tokio::select! {
                r = self.udp.recv_from(&mut buf) => r,
                _ = shutdown.cancelled() => return,
            };
            match received {
                Ok((n, from)) => {
                    let Some(datagram) = buf.get(..n) else {
                        continue;
                    };
                    let source = SourceInfo {
                        addr: from,
                        transport: Transport::Udp,
                    };
                    let now = Instant::now();
                    self.drive(|ep| ep.handle_message(now, source, datagram));
                }
                // ICMP port unreachable from an earlier send surfaces here on some
                // platforms: not fatal.
                Err(e) => debug!(%e, "udp recv error"),
            }
        }
    }

    async fn tcp_accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        per_source: PerSource,
        shutdown: Shutdown,
    ) {
        let kind = if tls.is_some() { "tls" } else { "tcp" };
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.cancelled() => return,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    warn!(%e, kind, "SIP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let allowed = per_source.lock().map(|mut m| {
                let n = m.entry(peer.ip()).or_insert(0);
                if *n >= self.max_per_source {
                    false
                } else {
                    *n += 1;
                    true
                }
            });
            if allowed.ok() != Some(true) {
                // TCP and TLS together: a TLS connection is a TCP connection too.
                warn!(%peer, kind, "too many TCP connections from this source; refused");
                continue;
            }
            let shell = self.clone();
            let per_source = per_source.clone();
            let shutdown = shutdown.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                shell.metrics.tcp_connection(1);
                match tls {
                    None => {
                        let (reader, writer) = stream.into_split();
                        shell
                            .clone()
                            .tcp_connection(reader, writer, peer, Transport::Tcp, None, shutdown)
                            .await;
                    }
                    Some(acceptor) => {
                        let limit = TLS_HANDSHAKE_TIMEOUT.min(shell.idle_timeout);
                        match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let (reader, writer) = tokio::io::split(stream);
                                shell
                                    .clone()
                                    .tcp_connection(
                                        reader,
                                        writer,
                                        peer,
                                        Transport::Tls,
                                        None,
                                        shutdown,
                                    )
                                    .await;
                            }
                            Ok(Err(e)) => debug!(%peer, %e, "SIP TLS handshake failed"),
                            Err(_) => debug!(%peer, "SIP TLS handshake timed out"),
                        }
                    }
                }
                shell.metrics.tcp_connection(-1);
                if let Ok(mut m) = per_source.lock()
                    && let Some(n) = m.get_mut(&peer.ip())
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        m.remove(&peer.ip());
                    }
                }
            });
        }
    }

    /// Open a TCP connection to a peer we have no connection with (e.g. an agent whose
    /// registration flow closed), send, and then serve it like an accepted one.
    async fn connect_outbound(self: Arc<Self>, to: SocketAddr, first: Bytes) {
        let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(to)).await
        else {
            debug!(%to, "tcp connect failed");
            return;
        };
        self.metrics.tcp_connection(1);
        let (reader, writer) = stream.into_split();
        self.clone()
            .tcp_connection(
                reader,
                writer,
                to,
                Transport::Tcp,
                Some(first),
                Shutdown::default(),
            )
            .await;
        self.metrics.tcp_connection(-1);
    }

    /// Serve one connection (TCP, or TLS after its handshake) until it closes, idles
    /// out or cannot be framed.
    async fn tcp_connection<R, W>(
        self: Arc<Self>,
        mut reader: R,
        writer: W,
        peer: SocketAddr,
        transport: Transport,
        first: Option<Bytes>,
        shutdown: Shutdown,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        if let Some(bytes) = first {
            let _ = tx.try_send(bytes);
        }
        let pong = tx.clone();
        if let Ok(mut w) = self.tcp_writers.lock() {
            w.insert((peer, transport), tx);
        }
        let writer_task = tokio::spawn(write_loop(writer, rx));
        let mut framer = StreamFramer::new(MAX_MESSAGE_SIZE);
        let mut buf = vec![0u8; 16 * 1024];
        'read: loop {
            // Slowloris guard: a connection must complete a message within the idle
            // timeout, or it is closed.
            let read = tokio::select! {
                r = tokio::time::timeout(self.idle_timeout, reader.read(&mut buf)) => r,
                _ = shutdown.cancelled() => break,
            };
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => {
                    debug!(%peer, "tcp connection idle; closed");
                    break;
                }
            };
            framer.push(buf.get(..n).unwrap_or_default());
            loop {
                match framer.next_frame() {
                    Ok(Some(frame)) => {
                        let source = SourceInfo {
                            addr: peer,
                            transport,
                        };
                        let now = Instant::now();
                        self.drive(|ep| ep.handle_message(now, source, &frame));
                    }
                    Ok(None) => {
                        // RFC 5626 §4.4.1: each CRLFCRLF ping gets a CRLF pong.
                        for _ in 0..framer.take_pings() {
                            let _ = pong.try_send(Bytes::from_static(b"\r\n"));
                        }
                        break;
                    }
                    Err(e) => {
                        // A stream that cannot be framed cannot be resynchronised.
                        self.metrics.parse_error();
                        self.metrics.dropped(DropReason::BadStream);
                        debug!(%peer, %e, "unframeable tcp stream; closing");
                        break 'read;
                    }
                }
            }
        }
        // Answers to the frames read so far (RFC 4475 dblreq: a request, then bytes that
        // cannot be framed) still go out before the close. The writer ends once every
        // sender is gone: ours and the one in `tcp_writers`.
        drop(pong);
        self.remove_writer(peer, transport);
        // Let queued responses drain before the writer closes.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
    }

    fn remove_writer(&self, peer: SocketAddr, transport: Transport) {
        if let Ok(mut w) = self.tcp_writers.lock() {
            w.remove(&(peer, transport));
        }
    }

    async fn timer_loop(self: Arc<Self>, shutdown: Shutdown) {
        // Calls held at the last timer: memory is given back when they drop to none
        // (`release_pending` until it could be, see `release_idle_memory`).
        let mut had_calls = false;
        let mut release_pending = false;
        loop {
            let next = self.endpoint.lock().ok().and_then(|ep| ep.poll_timeout());
            let sleep = match next {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {
                    let now = Instant::now();
                    let calls = self.drive(|ep| {
                        ep.handle_timeout(now);
                        ep.call_count()
                    });
                    let has_calls = calls.is_some_and(|n| n > 0);
                    release_pending |= had_calls && !has_calls;
                    if release_pending && !has_calls && self.release_idle_memory() {
                        release_pending = false;
                    }
                    had_calls = has_calls;
                }
                _ = self.wake_timer.notified() => {
                    // A call that starts and is gone between two timer runs counts too.
                    had_calls |= self.endpoint.lock().is_ok_and(|ep| ep.call_count() > 0);
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// The last call's entry is gone: shrink the endpoint's tables and hand the pages the
    /// calls freed back to the system. glibc's malloc keeps freed memory in its arenas
    /// (one per worker thread) and returns only the top of the main heap by itself: after
    /// 1,500 un-ACKed INVITEs RSS stayed ~8 MB over idle (issue 14). Runs when calls drop
    /// to none (an entry lingers 64·T1 after its call ended), so not in the middle of
    /// traffic; at most every `TRIM_INTERVAL` (false when too early: the timer loop tries
    /// again, at the latest at the endpoint's housekeeping tick).
    fn release_idle_memory(self: &Arc<Self>) -> bool {
        let Ok(mut last) = self.last_trim.lock() else {
            return true;
        };
        if last.is_some_and(|t| t.elapsed() < TRIM_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        if let Ok(mut ep) = self.endpoint.lock() {
            ep.shrink_tables();
        }
        info!("no calls left: tables shrunk, freed memory handed back to the system");
        // malloc_trim walks every arena: a few ms for a large heap, off the runtime.
        tokio::task::spawn_blocking(trim_allocator);
        true
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = rx.recv().await {
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Least time between two `malloc_trim` runs.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Return the allocator's free pages to the system (glibc `malloc_trim(0)`: every arena,
/// not only the top of the main heap). A no-op with other C libraries.
pub fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only releases memory that malloc holds
    // free; it is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Database writes of the endpoint, and the REGISTER answers waiting for their commit.
#[derive(Debug, Default)]
pub(crate) struct PersistJob {
    ops: Vec<StoreOp>,
    commits: Vec<CommitId>,
}

/// Group commit: every job waiting is written in one transaction (one fsync for a burst
/// of REGISTERs), then the endpoint is told, and answers the REGISTERs that waited.
/// How long answers wait for their registrations to be committed.
const PERSIST_WAIT: Duration = Duration::from_millis(800);

async fn persist_loop(
    shell: std::sync::Weak<SipShell>,
    store: Store,
    mut rx: mpsc::Receiver<PersistJob>,
) {
    const MAX_BATCH: usize = 256;
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let ops: Vec<&StoreOp> = jobs.iter().flat_map(|j| j.ops.iter()).collect();
        let writes: Vec<crate::store::BindingWrite<'_>> = ops
            .iter()
            .map(|op| match op {
                StoreOp::UpsertBinding(b) => crate::store::BindingWrite::Upsert(b),
                StoreOp::DeleteBinding { aor, contact } => {
                    crate::store::BindingWrite::Delete { aor, contact }
                }
                StoreOp::Audit {
                    actor,
                    action,
                    subject,
                    detail,
                } => crate::store::BindingWrite::Audit {
                    actor,
                    action,
                    subject,
                    detail,
                },
            })
            .collect();
        // A 200 to a REGISTER says the binding is stored (a restart still knows it): it
        // is sent only after the commit. A database that refuses the write (a full disk)
        // or does not answer within PERSIST_WAIT (phones must not wait on it) gets the
        // phones a 503 with Retry-After instead (RFC 3261 10.3, 21.5.4), and they
        // register again. The binding stays in memory meanwhile, so calls still reach
        // the phone.
        let stored =
            match tokio::time::timeout(PERSIST_WAIT, store.write_batch(&writes, wall_ms())).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    warn!(%e, writes = writes.len(), "registrations not stored: answered 503");
                    false
                }
                Err(_) => {
                    warn!(
                        writes = writes.len(),
                        "database too slow: registrations not stored, answered 503"
                    );
                    false
                }
            };
        let Some(shell) = shell.upgrade() else {
            break;
        };
        let commits: Vec<CommitId> = jobs.into_iter().flat_map(|j| j.commits).collect();
        shell.commits_done(&commits, stored);
    }
    info!("persistence loop ended");
}

/// Unix time in milliseconds (for stored expiry times).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
