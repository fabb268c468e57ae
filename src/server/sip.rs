//! SIP transports: one UDP socket loop, a TCP accept loop with one task per connection,
//! and a timer task, all feeding the sans-IO [`Endpoint`] under a short std mutex (never
//! held across `.await`). Database writes go to a persistence task through a bounded
//! channel so a slow database never stalls signalling.

use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use crate::server::calls::{CallRouter, MediaContext};
use crate::server::metrics::{DropReason, Metrics};
use crate::sip::endpoint::{Endpoint, Output, SourceInfo, StoreOp, Transport};
use crate::sip::message::{
    MAX_MESSAGE_SIZE, Message, Method, Response, StreamFramer, parse_message,
};
use crate::store::Store;

/// Minimal cancellation token (avoids pulling tokio-util for one type).
mod tokio_util_free {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::Notify;

    #[derive(Debug, Clone, Default)]
    pub struct CancelToken(Arc<(AtomicBool, Notify)>);

    impl CancelToken {
        pub fn cancel(&self) {
            self.0.0.store(true, Ordering::SeqCst);
            self.0.1.notify_waiters();
        }
        pub fn is_cancelled(&self) -> bool {
            self.0.0.load(Ordering::SeqCst)
        }
        pub async fn cancelled(&self) {
            loop {
                let notified = self.0.1.notified();
                if self.is_cancelled() {
                    return;
                }
                notified.await;
            }
        }
    }
}

pub use tokio_util_free::CancelToken as Shutdown;

/// Writers of open TCP connections, by peer address, for responses and for reusing a
/// registered agent's connection (RFC 5923-style reuse of the flow it registered on).
type TcpWriters = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>>;

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
    /// The UDP receive loop: finished means SIP is no longer served.
    udp_task: std::sync::OnceLock<tokio::task::JoinHandle<()>>,
}

/// Bound sockets, so the caller knows the real ports (tests bind port 0).
pub struct SipSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

impl SipSockets {
    /// Bind UDP and TCP on the same address (same port when the address has port 0:
    /// UDP picks, TCP follows).
    ///
    /// # Errors
    /// The address is taken or not local.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<SipSockets> {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(udp.local_addr()?).await?;
        Ok(SipSockets { udp, tcp })
    }
}

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
            udp_task: std::sync::OnceLock::new(),
        });
        tokio::spawn(persist_loop(Arc::downgrade(&shell), store, store_rx));
        let udp_task = tokio::spawn(shell.clone().udp_loop(shutdown.clone()));
        let _ = shell.udp_task.set(udp_task);
        tokio::spawn(shell.clone().tcp_accept_loop(sockets.tcp, shutdown.clone()));
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
        // (a REGISTER whose 200 arrived must survive kill -9): such a batch's transmits go
        // to the persistence task, which sends them after the commit.
        let durable = outputs.iter().any(|o| {
            matches!(
                o,
                Output::Store(StoreOp::UpsertBinding(_) | StoreOp::DeleteBinding { .. })
            )
        });
        if durable {
            self.calls.registration_changed();
            let mut job = PersistJob::default();
            for out in outputs {
                match out {
                    Output::Store(op) => job.ops.push(op),
                    Output::Transmit { .. } => job.then_send.push(out),
                    other => self.perform(other),
                }
            }
            if let Err(e) = self.store_tx.try_send(job) {
                warn!("persistence queue full: registration not stored, answered 503");
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                for out in job.then_send {
                    self.perform(not_stored_answer(out));
                }
            }
        } else {
            for out in outputs {
                self.perform(out);
            }
        }
        self.wake_timer.notify_one();
        Some(result)
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
                // TLS/WS transports are not served yet; they share the TCP writers table
                // once they are.
                Transport::Tcp | Transport::Tls | Transport::Ws | Transport::Wss => {
                    let writer = self
                        .tcp_writers
                        .lock()
                        .ok()
                        .and_then(|w| w.get(&to.addr).cloned());
                    match writer {
                        Some(w) => {
                            if w.try_send(bytes).is_err() {
                                debug!(to = %to.addr, "tcp writer full or closed");
                            }
                        }
                        None => {
                            tokio::spawn(self.clone().connect_outbound(to.addr, bytes));
                        }
                    }
                }
            },
            Output::Store(op) => {
                let job = PersistJob {
                    ops: vec![op],
                    then_send: Vec::new(),
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

    async fn tcp_accept_loop(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        let per_source: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.cancelled() => return,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    warn!(%e, "tcp accept failed");
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
                warn!(%peer, "too many TCP connections from this source; refused");
                continue;
            }
            let shell = self.clone();
            let per_source = per_source.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shell.metrics.tcp_connection(1);
                shell
                    .clone()
                    .tcp_connection(stream, peer, None, shutdown)
                    .await;
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
        self.clone()
            .tcp_connection(stream, to, Some(first), Shutdown::default())
            .await;
        self.metrics.tcp_connection(-1);
    }

    async fn tcp_connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        first: Option<Bytes>,
        shutdown: Shutdown,
    ) {
        let (mut reader, writer) = stream.into_split();
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        if let Some(bytes) = first {
            let _ = tx.try_send(bytes);
        }
        let pong = tx.clone();
        if let Ok(mut w) = self.tcp_writers.lock() {
            w.insert(peer, tx);
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
                            transport: Transport::Tcp,
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
        self.remove_writer(peer);
        // Let queued responses drain before the writer closes.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
    }

    fn remove_writer(&self, peer: SocketAddr) {
        if let Ok(mut w) = self.tcp_writers.lock() {
            w.remove(&peer);
        }
    }

    async fn timer_loop(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            let next = self.endpoint.lock().ok().and_then(|ep| ep.poll_timeout());
            let sleep = match next {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {
                    let now = Instant::now();
                    self.drive(|ep| ep.handle_timeout(now));
                }
                _ = self.wake_timer.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

async fn write_loop(mut writer: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = rx.recv().await {
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Database writes of the endpoint, and the answers to send once they are committed.
#[derive(Debug, Default)]
pub(crate) struct PersistJob {
    ops: Vec<StoreOp>,
    then_send: Vec<Output>,
}

/// Group commit: every job waiting is written in one transaction (one fsync for a burst
/// of REGISTERs), then the answers held for them are sent.
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
        for job in jobs {
            for out in job.then_send {
                shell.perform(if stored { out } else { not_stored_answer(out) });
            }
        }
    }
    info!("persistence loop ended");
}

/// Retry-After (seconds) of the 503 a phone gets when its registration was not stored.
const NOT_STORED_RETRY_AFTER_SECS: u32 = 10;

/// What to send instead of `out` when the binding change it announces was not committed:
/// a 2xx to a REGISTER becomes 503 Service Unavailable with Retry-After and without the
/// Contact list (no binding is confirmed); anything else goes out as it is.
fn not_stored_answer(out: Output) -> Output {
    let Output::Transmit { to, bytes } = out else {
        return out;
    };
    let answer = match parse_message(&bytes) {
        Ok(Message::Response(r))
            if (200..300).contains(&r.status)
                && r.headers.cseq().is_ok_and(|c| c.method == Method::Register) =>
        {
            r
        }
        _ => return Output::Transmit { to, bytes },
    };
    let mut headers = answer.headers;
    headers.remove("Contact");
    headers.remove("Expires");
    headers.push("Retry-After", NOT_STORED_RETRY_AFTER_SECS.to_string());
    let refused = Response {
        status: 503,
        reason: "Service Unavailable".into(),
        headers,
        body: Bytes::new(),
    };
    Output::Transmit {
        to,
        bytes: Bytes::from(refused.to_bytes()),
    }
}

/// Unix time in milliseconds (for stored expiry times).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::endpoint::Transport;

    fn transmit(text: &str) -> Output {
        Output::Transmit {
            to: SourceInfo {
                addr: SocketAddr::from(([127, 0, 0, 1], 5070)),
                transport: Transport::Udp,
            },
            bytes: Bytes::from(text.replace('\n', "\r\n")),
        }
    }

    fn text(out: &Output) -> String {
        match out {
            Output::Transmit { bytes, .. } => String::from_utf8_lossy(bytes).into_owned(),
            other => panic!("not a transmit: {other:?}"),
        }
    }

    #[test]
    fn a_register_ok_not_stored_becomes_503_with_retry_after() {
        let ok = transmit(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKr1\n\
             From: <sip:1001@hotline.test>;tag=a\nTo: <sip:1001@hotline.test>;tag=b\n\
             Call-ID: reg-1\nCSeq: 2 REGISTER\n\
             Contact: <sip:1001@127.0.0.1:5070>;expires=3600\nContent-Length: 0\n\n",
        );
        let answer = text(&not_stored_answer(ok));
        assert!(
            answer.starts_with("SIP/2.0 503 Service Unavailable\r\n"),
            "{answer}"
        );
        assert!(answer.contains("Retry-After: 10\r\n"), "{answer}");
        assert!(answer.contains("CSeq: 2 REGISTER\r\n"), "{answer}");
        assert!(answer.contains("Call-ID: reg-1\r\n"), "{answer}");
        assert!(answer.contains(";branch=z9hG4bKr1"), "{answer}");
        assert!(!answer.contains("Contact"), "{answer}");
    }

    #[test]
    fn other_messages_held_for_a_commit_go_out_unchanged() {
        for message in [
            "SIP/2.0 423 Interval Too Brief\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKr2\n\
             From: <sip:1001@hotline.test>;tag=a\nTo: <sip:1001@hotline.test>;tag=b\n\
             Call-ID: reg-2\nCSeq: 3 REGISTER\nMin-Expires: 60\nContent-Length: 0\n\n",
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKo1\n\
             From: <sip:1001@hotline.test>;tag=a\nTo: <sip:1001@hotline.test>;tag=b\n\
             Call-ID: opt-1\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n",
        ] {
            let out = transmit(message);
            assert_eq!(not_stored_answer(out.clone()), out);
        }
    }
}
