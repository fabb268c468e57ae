//! The SIP endpoint core, sans-IO: what the server does with each received message.
//!
//! Order of checks for a request (the order matters for security and RFC 4475):
//! 1. a banned source is dropped before its bytes are even parsed;
//! 2. parse: a malformed request is answered 400 (505 for another SIP version) when the
//!    headers needed to route a response can be found, else dropped and counted;
//! 3. the transaction layer absorbs retransmissions (answered from the stored response);
//! 4. validation (RFC 3261 §8.2: 416, 420, …) comes before authentication and routing, so
//!    a malformed request gets its 400, never a digest challenge;
//! 5. per method: OPTIONS 200; REGISTER digest auth then the registrar; a new INVITE from
//!    a trunk (or from a digest-authenticated agent to a test extension) becomes a call;
//!    requests of a known call (by Call-ID: ACK, BYE, CANCEL, re-INVITE …) go to its
//!    [`InboundLeg`]; everything else is refused with the status RFC 3261 gives it.
//!
//! Feed it with [`Endpoint::handle_message`] / [`Endpoint::handle_timeout`], then drain
//! [`Endpoint::poll_output`]; sleep until [`Endpoint::poll_timeout`].
//!
//! Calls: each new call is announced as [`Output::Call`] with [`CallEvent::Incoming`]; the
//! shell answers through `call_ring` / `call_answer` / `call_reject`, ends it with
//! `call_hangup` / `call_media_timeout`, and hears every later leg event (re-INVITE,
//! confirmed, exactly one `Ended`) as [`CallEvent::Leg`]. Responses of a leg go through the
//! server transaction they answer (a 2xx retransmission straight to the transport);
//! requests of a leg (BYE …) get a client transaction whose events come back to the leg.
//! An ended call lingers 64·T1 to absorb stragglers, then is forgotten.

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

use super::counters::{Direction, DropReason, EndpointCounters};
use crate::config::{Config, DigestAlgorithmName, TrunkTransport};
use crate::sip::auth::{
    AuthConfig, AuthOutcome, AuthSource, Authenticator, ClockAnchor, DigestAlgorithm,
    DigestCredentials, RateLimitConfig, ServerSecret, SourceDecision, Staleness, UserSecret,
    credentials_for_realm,
};
use crate::sip::call_leg::{
    InboundLeg, LegConfig, LegError, LegEvent, LegOutput, LegState, OutboundLeg, OutboundParams,
};
use crate::sip::dialog::DialogError;
use crate::sip::message::{
    Message, Method, NameAddr, ParseError, Replaces, Request, Response, parse_message,
};
use crate::sip::registrar::{
    Aor, Binding, BindingChange, Q, Registrar, RegistrarConfig, RemovalReason,
};
pub use crate::sip::registrar::{SourceInfo, Transport};
use crate::sip::transaction::{
    IncomingRequest, LayerConfig, Reliability, RequestOutcome, ResponseOutcome, Rfc2543Ids,
    ServerTransaction, Side as TxSide, Timers, TransactionEvent, TransactionKey, TransactionLayer,
    has_magic_cookie,
};
use crate::store::StoredBinding;

/// Methods we answer; the `Allow` header of 405 and OPTIONS responses.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, REFER, NOTIFY";

/// Extensions we support (RFC 3261 `Supported`/`Require`): `replaces` (RFC 3891), so an
/// INVITE with `Require: replaces` reaches the Replaces checks instead of a 420.
const SUPPORTED: &[&str] = &["replaces"];

/// A database write the shell performs on the endpoint's behalf.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    UpsertBinding(StoredBinding),
    DeleteBinding {
        aor: String,
        contact: String,
    },
    Audit {
        actor: String,
        action: String,
        subject: String,
        detail: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Transmit {
        to: SourceInfo,
        bytes: Bytes,
    },
    Store(StoreOp),
    /// The binding changes in the `Store` outputs before this one announce a REGISTER
    /// answer that waits for their commit: write them, then report with
    /// [`Endpoint::binding_commit_done`] (`stored` false when the write failed or took
    /// too long). Until then a retransmission of that REGISTER is absorbed.
    AwaitCommit(CommitId),
    /// Something for the call (media/IVR) layer of the shell.
    Call {
        call: CallHandle,
        event: CallEvent,
    },
}

/// A REGISTER answer waiting for its binding changes to be committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitId(u64);

/// A REGISTER's final answer held until its binding changes are committed (the
/// transaction stays `Trying`, so a retransmission gets nothing rather than a 200).
#[derive(Debug)]
struct PendingAnswer {
    transaction: ServerTransaction,
    response: Response,
}

/// Retry-After (seconds) of the 503 a phone gets when its registration was not stored.
const NOT_STORED_RETRY_AFTER_SECS: u32 = 10;

/// The endpoint's handle of one inbound call (one [`InboundLeg`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

impl std::fmt::Display for CallHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

/// Who is allowed to have placed an inbound call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOrigin {
    /// A configured carrier trunk (by source address).
    Trunk,
    /// An agent authenticated by digest (test extensions only).
    Agent(String),
}

/// A new INVITE the call layer must answer (`call_ring`/`call_answer`/`call_reject`).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingCall {
    pub call_id: String,
    /// User part of the Request-URI: the dialled number or test extension.
    pub dialled: String,
    /// User part of the From URI (the caller's number).
    pub caller: String,
    /// The `P-Asserted-Identity`/`Diversion`-free view: the To user as sent.
    pub to_user: String,
    pub source: SourceInfo,
    pub origin: CallOrigin,
    /// The SDP offer (empty for a delayed offer, which the call layer refuses with 488).
    pub sdp: Bytes,
    /// The value of the trunk's configured city header (`[[trunks]] city_header`), when
    /// the call came from that trunk and carried it.
    pub carrier_city: Option<String>,
    /// The caller's number as the trunk vouches for it: the user of its
    /// `identity_header` (e.g. P-Asserted-Identity) when the trunk names one, else the
    /// From user; `None` from a trunk whose identity header is missing, and for agents.
    pub verified_caller: Option<String>,
    /// An INVITE with `Replaces` (RFC 3891) from an agent: the leg it replaces, checked
    /// by [`Endpoint::replaced_dialog`] (the call layer hands the new leg to that leg's
    /// call).
    pub replaces: Option<CallHandle>,
}

/// The dialog a `Replaces` names, found by [`Endpoint::replaced_dialog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacedDialog {
    pub handle: CallHandle,
    /// Our leg to an agent (UAC) or an agent's call to us (UAS); `None` for a caller's
    /// trunk leg, which no agent may replace.
    pub agent: Option<String>,
    /// We placed the leg (UAC).
    pub outbound: bool,
}

/// RFC 3891 §3, for the dialog a `Replaces` matched (`None`: no match): the status to
/// refuse with, or `Ok` to go on (authorization is checked by the caller).
/// - no dialog matches → 481;
/// - the dialog has ended → 603 Declined;
/// - a confirmed dialog with `early-only` → 486 Busy Here;
/// - an early dialog this UA did not initiate (we are its UAS) → 481.
///
/// # Errors
/// The status above.
pub fn check_replaces(found: Option<(LegState, bool)>, early_only: bool) -> Result<(), u16> {
    let Some((state, outbound)) = found else {
        return Err(481);
    };
    match state {
        LegState::Ended | LegState::Terminating => Err(603),
        LegState::Confirmed | LegState::AwaitingAck if early_only => Err(486),
        LegState::Confirmed | LegState::AwaitingAck => Ok(()),
        LegState::Early | LegState::Calling | LegState::Cancelling if !outbound => Err(481),
        LegState::Early | LegState::Calling | LegState::Cancelling => Ok(()),
    }
}

/// What the endpoint tells the call layer about a call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    Incoming(Box<IncomingCall>),
    /// Any other leg event (re-INVITE, confirmed, ended …).
    Leg(LegEvent),
}

/// Errors of the call-control API the shell drives.
#[derive(Debug, thiserror::Error)]
pub enum CallControlError {
    #[error("no such call {0}")]
    NoSuchCall(CallHandle),
    #[error(transparent)]
    Leg(#[from] LegError),
}

/// A call's SIP leg: the caller's (UAS) or ours to an agent (UAC).
// Both variants are ~2.5 kB; the difference is not worth a box per call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Leg {
    In(InboundLeg),
    Out(OutboundLeg),
}

impl Leg {
    fn handle_request(&mut self, now: Instant, req: Request) {
        match self {
            Leg::In(l) => l.handle_request(now, req),
            Leg::Out(l) => l.handle_request(now, req),
        }
    }
    fn handle_response(&mut self, now: Instant, resp: Response) {
        match self {
            Leg::In(l) => l.handle_response(now, resp),
            Leg::Out(l) => l.handle_response(now, resp),
        }
    }
    fn handle_transaction_timeout(&mut self, now: Instant, method: &Method) {
        match self {
            Leg::In(l) => l.handle_transaction_timeout(now, method),
            Leg::Out(l) => l.handle_transaction_timeout(now, method),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Leg::In(l) => l.handle_timeout(now),
            Leg::Out(l) => l.handle_timeout(now),
        }
    }
    fn poll_output(&mut self) -> Option<LegOutput> {
        match self {
            Leg::In(l) => l.poll_output(),
            Leg::Out(l) => l.poll_output(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Leg::In(l) => l.poll_timeout(),
            Leg::Out(l) => l.poll_timeout(),
        }
    }
    fn hangup(&mut self, now: Instant) {
        match self {
            Leg::In(l) => l.hangup(now),
            // Before the answer this CANCELs; afterwards it sends BYE.
            Leg::Out(l) => l.hangup(now),
        }
    }
    fn media_timeout(&mut self, now: Instant) {
        match self {
            Leg::In(l) => l.media_timeout(now),
            Leg::Out(l) => l.media_timeout(now),
        }
    }
    fn shutdown(&mut self, now: Instant) {
        match self {
            Leg::In(l) => l.shutdown(now),
            Leg::Out(l) => l.shutdown(now),
        }
    }
    fn answer_reinvite(&mut self, now: Instant, sdp: Bytes) -> Result<(), LegError> {
        match self {
            Leg::In(l) => l.answer_reinvite(now, sdp),
            Leg::Out(l) => l.answer_reinvite(now, sdp),
        }
    }
    fn reject_reinvite(&mut self, now: Instant, status: u16) -> Result<(), LegError> {
        match self {
            Leg::In(l) => l.reject_reinvite(now, status),
            Leg::Out(l) => l.reject_reinvite(now, status),
        }
    }
    fn accept_refer(&mut self, now: Instant) -> Result<(), LegError> {
        match self {
            Leg::In(l) => l.accept_refer(now),
            Leg::Out(l) => l.accept_refer(now),
        }
    }
    fn reject_refer(&mut self, now: Instant, status: u16) -> Result<(), LegError> {
        match self {
            Leg::In(l) => l.reject_refer(now, status),
            Leg::Out(l) => l.reject_refer(now, status),
        }
    }
    fn notify_refer_progress(
        &mut self,
        now: Instant,
        status: u16,
        reason: &str,
    ) -> Result<(), LegError> {
        match self {
            Leg::In(l) => l.notify_refer_progress(now, status, reason),
            Leg::Out(l) => l.notify_refer_progress(now, status, reason),
        }
    }
    fn state(&self) -> LegState {
        match self {
            Leg::In(l) => l.state(),
            Leg::Out(l) => l.state(),
        }
    }
    fn dialog_id(&self) -> Option<&crate::sip::dialog::DialogId> {
        match self {
            Leg::In(l) => l.dialog_id(),
            Leg::Out(l) => l.dialog_id(),
        }
    }
    fn inbound(&mut self) -> Result<&mut InboundLeg, LegError> {
        match self {
            Leg::In(l) => Ok(l),
            Leg::Out(l) => Err(LegError::WrongState {
                action: "answer an outbound leg",
                state: l.state(),
            }),
        }
    }
}

/// Where an agent can be rung: the contact it registered and the flow it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentContact {
    pub agent: String,
    pub contact: crate::sip::message::Uri,
    pub source: SourceInfo,
}

/// One call leg: its SIP leg, where its peer is, and the server transactions it answers.
#[derive(Debug)]
struct CallEntry {
    leg: Leg,
    call_id: String,
    peer: SourceInfo,
    server_transactions: HashMap<TransactionKey, ServerTransaction>,
    /// Set once the leg ended: the entry lingers to absorb stragglers, then goes.
    remove_at: Option<Instant>,
    /// The agent at the other end: the one we dialled, or the authenticated agent who
    /// called us (`None` for a trunk caller).
    agent: Option<String>,
    /// For an inbound leg: the address its INVITE came from, and whether the leg is
    /// counted in `Endpoint::unconfirmed` under it (not yet ACKed, not ended).
    unconfirmed_from: Option<(IpAddr, bool)>,
    /// When the INVITE came in or went out (for `hotline_call_setup_seconds`).
    created: Instant,
    /// Its set-up time was counted (the first 2xx to the INVITE).
    setup_counted: bool,
}

/// One configured trunk address, with the port and transport it must use when the
/// config names them (`[[trunks]] source_port`, `source_transport`).
#[derive(Debug, Clone)]
struct TrunkSource {
    ip: IpAddr,
    port: Option<u16>,
    transport: Option<Transport>,
    /// The header that carries the city, when configured.
    city_header: Option<String>,
    /// The header in which the carrier asserts the caller's number, when configured.
    identity_header: Option<String>,
}

impl TrunkSource {
    /// A message is the trunk's only when it matches every part the config names.
    fn matches(&self, source: SourceInfo) -> bool {
        self.ip == source.addr.ip()
            && self.port.is_none_or(|p| p == source.addr.port())
            && self.transport.is_none_or(|t| t == source.transport)
    }
}

/// How often expired nonces, bans and failure windows are pruned.
const HOUSEKEEPING: Duration = Duration::from_secs(30);

pub struct Endpoint {
    realm: String,
    auth: Authenticator,
    registrar: Registrar,
    transactions: TransactionLayer<SourceInfo>,
    users: HashMap<String, UserSecret>,
    trunks: Vec<TrunkSource>,
    metrics: Arc<dyn EndpointCounters>,
    outputs: VecDeque<Output>,
    /// Maps `Instant`s to wall-clock milliseconds for what is stored in the database.
    clock: ClockAnchor,
    next_housekeeping: Instant,
    force_rport: bool,
    /// Inbound calls by handle, and their Call-IDs.
    /// Boxed: an entry is ~2.8 KiB and ended calls linger 64·T1, so at 220 calls/s
    /// ~7 000 are held; inline, the table's buckets were 45 MiB and a rehash that
    /// doubled it (tombstones, not more calls) added 45 MiB at once in the soak.
    calls: HashMap<CallHandle, Box<CallEntry>>,
    calls_by_id: HashMap<String, CallHandle>,
    /// Client transactions (BYE, NOTIFY …) sent by a call's leg.
    call_client_transactions: HashMap<TransactionKey, CallHandle>,
    next_call: u64,
    leg_config: LegConfig,
    /// Contact of our own legs: `sip:hotline@<listen address>`.
    local_contact: NameAddr,
    /// Contact of legs over TLS, `sip:hotline@<TLS address>;transport=tls`, so that the
    /// peer's requests in the dialog (ACK, BYE, re-INVITE) come over TLS too.
    local_contact_tls: Option<NameAddr>,
    /// Request-URI users that authenticated agents may call (test extensions).
    agent_extensions: Vec<String>,
    rng: StdRng,
    /// Shutting down: new calls are answered 503 with this Retry-After (seconds);
    /// REGISTER, OPTIONS and requests inside calls are served as usual.
    draining: Option<u32>,
    /// `[sip] max_unconfirmed_calls_per_source`.
    max_unconfirmed_per_source: usize,
    /// `[sip] max_new_calls_per_sec`.
    admission: CallAdmission,
    /// Inbound legs not yet confirmed (no ACK to our 2xx yet, or no final answer) per
    /// source address, kept as legs change state: the cap is checked without a scan.
    unconfirmed: HashMap<IpAddr, usize>,
    /// REGISTER answers waiting for the commit of their binding changes.
    pending_commits: HashMap<CommitId, PendingAnswer>,
    next_commit: u64,
}

/// Overload control for new calls: a token bucket of `per_sec` calls a second, holding
/// at most one second's worth. Refusing at once what cannot be served keeps the
/// admitted calls fast (goodput) when offered load is above capacity.
#[derive(Debug, Clone)]
struct CallAdmission {
    per_sec: u32,
    tokens: f64,
    last: Option<Instant>,
}

impl CallAdmission {
    fn new(per_sec: u32) -> CallAdmission {
        CallAdmission {
            per_sec,
            tokens: f64::from(per_sec),
            last: None,
        }
    }

    /// Take one call's token at `now`; false when none is left (or the limit is off).
    fn admit(&mut self, now: Instant) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let rate = f64::from(self.per_sec);
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * rate).min(rate);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("realm", &self.realm)
            .field("registrations", &self.registrar.binding_count())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Build from config and the bindings saved in the database. `now`/`unix_ms` anchor the
    /// monotonic clock to wall time; `rng_seed` is `None` in production (OS randomness).
    pub fn new(
        config: &Config,
        saved: Vec<StoredBinding>,
        metrics: Arc<dyn EndpointCounters>,
        now: Instant,
        unix_ms: i64,
        rng_seed: Option<u64>,
    ) -> Endpoint {
        let realm = config.server.domain.clone();
        let sip = &config.sip;
        let mut auth_config = AuthConfig::new(realm.clone());
        auth_config.nonce_ttl = Duration::from_secs(sip.nonce_ttl_secs);
        auth_config.algorithms = sip
            .digest_algorithms
            .iter()
            .map(|a| match a {
                DigestAlgorithmName::Md5 => DigestAlgorithm::Md5,
                DigestAlgorithmName::Sha256 => DigestAlgorithm::Sha256,
            })
            .collect();
        auth_config.rate_limit = RateLimitConfig {
            max_failures: sip.auth_failures_before_ban as usize,
            max_source_failures: sip.auth_source_failures_before_ban as usize,
            window: Duration::from_secs(sip.auth_failure_window_secs),
            ban: Duration::from_secs(sip.ban_secs),
            ..RateLimitConfig::default()
        };
        let mut rng = match rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rng, &mut secret);
        let call_seed = rand::RngCore::next_u64(&mut rng);
        let clock = ClockAnchor {
            instant: now,
            unix_ms: u64::try_from(unix_ms).unwrap_or(0),
        };
        let auth = Authenticator::new(auth_config, ServerSecret(secret), clock, rng);

        let mut registrar_config = RegistrarConfig::new(realm.clone());
        registrar_config.min_expires = sip.min_expires;
        registrar_config.max_expires = sip.max_expires;
        registrar_config.default_expires = sip.default_expires;
        let mut registrar = Registrar::new(registrar_config);
        let restored: Vec<Binding> = saved
            .iter()
            .filter_map(|b| binding_from_store(b, now, unix_ms))
            .collect();
        registrar.restore(restored);
        metrics.set_active_registrations(registrar.binding_count());

        let users = config
            .agents
            .iter()
            .map(|a| {
                let secret = match &a.password {
                    Some(p) => UserSecret::Password(p.clone()),
                    None => UserSecret::Ha1 {
                        md5: a.ha1_md5.clone(),
                        sha256: a.ha1_sha256.clone(),
                    },
                };
                (a.id.clone(), secret)
            })
            .collect();
        let timers = Timers {
            t1: Duration::from_millis(sip.t1_ms),
            t2: Duration::from_millis(sip.t2_ms),
            t4: Duration::from_millis(sip.t4_ms),
        };
        let transactions = TransactionLayer::new(LayerConfig {
            timers,
            max_transactions: sip.max_transactions,
            ..LayerConfig::default()
        });
        Endpoint {
            realm,
            auth,
            registrar,
            transactions,
            users,
            trunks: config
                .trunks
                .iter()
                .flat_map(|t| {
                    t.sources.iter().map(|ip| TrunkSource {
                        ip: *ip,
                        port: t.source_port,
                        transport: t.source_transport.map(|tr| match tr {
                            TrunkTransport::Udp => Transport::Udp,
                            TrunkTransport::Tcp => Transport::Tcp,
                            TrunkTransport::Tls => Transport::Tls,
                        }),
                        city_header: t.city_header.clone(),
                        identity_header: t.identity_header.clone(),
                    })
                })
                .collect(),
            metrics,
            outputs: VecDeque::new(),
            clock,
            next_housekeeping: now + HOUSEKEEPING,
            force_rport: sip.force_rport,
            calls: HashMap::new(),
            calls_by_id: HashMap::new(),
            call_client_transactions: HashMap::new(),
            draining: None,
            max_unconfirmed_per_source: sip.max_unconfirmed_calls_per_source,
            admission: CallAdmission::new(sip.max_new_calls_per_sec),
            unconfirmed: HashMap::new(),
            pending_commits: HashMap::new(),
            next_commit: 1,
            next_call: 1,
            leg_config: LegConfig {
                t1: Duration::from_millis(sip.t1_ms),
                t2: Duration::from_millis(sip.t2_ms),
                ..LegConfig::default()
            },
            local_contact: contact_for(config.server.sip_listen),
            local_contact_tls: config.server.sip_tls_listen.map(tls_contact_for),
            agent_extensions: config
                .test_extensions
                .iter()
                .map(|e| e.number.clone())
                .collect(),
            rng: StdRng::seed_from_u64(call_seed),
        }
    }

    /// The address the SIP sockets really listen on (tests bind port 0): our Contact.
    pub fn set_local_addr(&mut self, addr: std::net::SocketAddr) {
        self.local_contact = contact_for(addr);
    }

    /// The address SIP over TLS really listens on.
    pub fn set_local_tls_addr(&mut self, addr: std::net::SocketAddr) {
        self.local_contact_tls = Some(tls_contact_for(addr));
    }

    /// Our Contact (and Via sent-by) on `transport`.
    fn contact_on(&self, transport: Transport) -> &NameAddr {
        match (transport, &self.local_contact_tls) {
            (Transport::Tls, Some(tls)) => tls,
            _ => &self.local_contact,
        }
    }

    /// Number of live inbound calls (ended ones still lingering included).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Give back the room the call and transaction tables grew to in a burst (issue 14:
    /// after 1,500 un-ACKed INVITEs they kept it); the shell calls this once the calls
    /// are gone. Hash tables never shrink on their own.
    pub fn shrink_tables(&mut self) {
        self.calls.shrink_to_fit();
        self.calls_by_id.shrink_to_fit();
        self.call_client_transactions.shrink_to_fit();
        self.unconfirmed.shrink_to_fit();
        self.pending_commits.shrink_to_fit();
        self.outputs.shrink_to_fit();
        self.transactions.shrink_to_fit();
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.registrar.poll_timeout(),
            self.transactions.poll_timeout(),
            Some(self.next_housekeeping),
            self.calls
                .values()
                .filter_map(|c| match (c.leg.poll_timeout(), c.remove_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                })
                .min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for binding in self.registrar.expire(now) {
            debug!(aor = binding.aor.as_str(), contact = %binding.contact_uri, "registration expired");
            self.outputs
                .push_back(Output::Store(StoreOp::DeleteBinding {
                    aor: binding.aor.as_str().to_string(),
                    contact: binding.contact_uri.to_string(),
                }));
        }
        self.metrics
            .set_active_registrations(self.registrar.binding_count());
        self.transactions.handle_timeout(now);
        self.drain_transactions(now);
        let due: Vec<CallHandle> = self
            .calls
            .iter()
            .filter(|(_, c)| c.leg.poll_timeout().is_some_and(|t| t <= now))
            .map(|(h, _)| *h)
            .collect();
        for handle in due {
            if let Some(entry) = self.calls.get_mut(&handle) {
                entry.leg.handle_timeout(now);
            }
            self.drain_call(now, handle);
        }
        let gone: Vec<CallHandle> = self
            .calls
            .iter()
            .filter(|(_, c)| c.remove_at.is_some_and(|t| t <= now))
            .map(|(h, _)| *h)
            .collect();
        for handle in gone {
            self.remove_call(handle);
        }
        if now >= self.next_housekeeping {
            self.auth.housekeeping(now);
            self.next_housekeeping = now + HOUSEKEEPING;
        }
    }

    /// One received message (a UDP datagram or a TCP frame).
    pub fn handle_message(&mut self, now: Instant, source: SourceInfo, bytes: &[u8]) {
        let trunk = self.is_trunk(source);
        let banned = !trunk
            && matches!(
                self.auth.check_source(now, source.addr.ip()),
                SourceDecision::Banned { .. }
            );
        let message = match parse_message(bytes) {
            Ok(message) => message,
            Err(_) if banned => {
                self.metrics.dropped(DropReason::Banned);
                return;
            }
            Err(e) => return self.handle_unparseable(source, bytes, &e),
        };
        // A ban stops new requests; the calls already up (BYE, re-INVITE, their answers)
        // go on, so a scanner on a NAT does not cut its neighbours' calls.
        if banned && !self.is_in_dialog(&message) {
            self.metrics.dropped(DropReason::Banned);
            return;
        }
        match message {
            Message::Request(req) => {
                if self.is_user_banned(now, source, trunk, &req) {
                    self.metrics.dropped(DropReason::Banned);
                    return;
                }
                self.handle_request(now, source, req)
            }
            Message::Response(resp) => self.handle_response(now, source, resp),
        }
    }

    fn is_trunk(&self, source: SourceInfo) -> bool {
        self.trunks.iter().any(|t| t.matches(source))
    }

    /// A message of a call we hold (by Call-ID).
    fn is_in_dialog(&self, message: &Message) -> bool {
        let headers = match message {
            Message::Request(req) => &req.headers,
            Message::Response(resp) => &resp.headers,
        };
        headers
            .call_id()
            .is_ok_and(|id| self.calls_by_id.contains_key(id))
    }

    /// A new request that names a user banned from this source (REGISTER's user, or the
    /// user of its credentials) is dropped like a banned source's, before any transaction.
    fn is_user_banned(
        &mut self,
        now: Instant,
        source: SourceInfo,
        trunk: bool,
        req: &Request,
    ) -> bool {
        if !self.auth.has_user_bans() {
            return false;
        }
        let credentials = credentials_for_realm(req.headers.get_all("Authorization"), &self.realm);
        let user = match (&credentials, &req.method) {
            (Some(c), _) => c.username.clone(),
            (None, Method::Register) => match req.headers.to().ok().and_then(|to| to.uri.user) {
                Some(user) => user,
                None => return false,
            },
            (None, _) => return false,
        };
        if req
            .headers
            .call_id()
            .is_ok_and(|id| self.calls_by_id.contains_key(id))
        {
            return false;
        }
        let auth_source = AuthSource {
            ip: source.addr.ip(),
            trunk,
        };
        matches!(
            self.auth.check_user(now, auth_source, &user),
            SourceDecision::Banned { .. }
        )
    }

    fn handle_unparseable(&mut self, source: SourceInfo, bytes: &[u8], e: &ParseError) {
        self.metrics.parse_error();
        let (status, reason) = match e {
            ParseError::Version => (505, "Version Not Supported"),
            _ => (400, "Bad Request"),
        };
        match lenient_response(bytes, status, reason) {
            Some(resp) => {
                debug!(from = %source.addr, %e, status, "malformed request answered");
                self.metrics.response(Direction::Out, status);
                self.outputs.push_back(Output::Transmit {
                    to: source,
                    bytes: Bytes::from(resp),
                });
            }
            None => {
                debug!(from = %source.addr, %e, "malformed message dropped");
                self.metrics.dropped(DropReason::Unanswerable);
            }
        }
    }

    fn handle_response(&mut self, now: Instant, _source: SourceInfo, resp: Response) {
        self.metrics.response(Direction::In, resp.status);
        let key = match (resp.headers.top_via(), resp.headers.cseq()) {
            (Ok(via), Ok(cseq)) => match via.branch.as_deref() {
                Some(branch) => TransactionKey::for_response(branch, &sent_by(&via), &cseq.method),
                None => {
                    self.metrics.dropped(DropReason::StrayResponse);
                    return;
                }
            },
            _ => {
                self.metrics.dropped(DropReason::StrayResponse);
                return;
            }
        };
        let payload = Bytes::from(resp.to_bytes());
        let call = self.call_client_transactions.get(&key).copied();
        let answered_invite =
            (200..300).contains(&resp.status) && matches!(key.method(), Method::Invite);
        if let Some(entry) = call
            .filter(|_| answered_invite)
            .and_then(|handle| self.calls.get_mut(&handle))
            .filter(|e| !e.setup_counted && matches!(e.leg, Leg::Out(_)))
        {
            entry.setup_counted = true;
            self.metrics
                .call_setup(Direction::Out, now.saturating_duration_since(entry.created));
        }
        // RFC 3261 §17.1.1.3: the INVITE client transaction ACKs a 3xx–6xx itself, with
        // the ACK its user builds.
        let ack = match (call, key.method()) {
            (Some(handle), Method::Invite) if resp.status >= 300 => self
                .calls
                .get(&handle)
                .and_then(|e| match &e.leg {
                    Leg::Out(leg) => Some(ack_for_failure(leg.invite(), &resp)),
                    Leg::In(_) => None,
                })
                .map(|ack| Bytes::from(ack.to_bytes())),
            _ => None,
        };
        let outcome = self
            .transactions
            .handle_response(now, &key, resp.status, payload, ack);
        if outcome == ResponseOutcome::Unmatched {
            // A 2xx retransmitted after our INVITE transaction ended: the leg re-ACKs it.
            let by_call_id = resp
                .headers
                .call_id()
                .ok()
                .and_then(|id| self.calls_by_id.get(id).copied());
            match by_call_id {
                Some(handle) if (200..300).contains(&resp.status) => {
                    if let Some(entry) = self.calls.get_mut(&handle) {
                        entry.leg.handle_response(now, resp);
                    }
                    self.drain_call(now, handle);
                }
                _ => self.metrics.dropped(DropReason::StrayResponse),
            }
        }
        self.drain_transactions(now);
    }

    fn handle_request(&mut self, now: Instant, source: SourceInfo, mut req: Request) {
        self.metrics.request(Direction::In, &req.method);
        // RFC 3581 / RFC 3261 §18.2.1: note where the request really came from.
        let Some(reply_to) = stamp_via(&mut req, source, self.force_rport) else {
            self.metrics.dropped(DropReason::Unanswerable);
            return;
        };
        let Ok(via) = req.headers.top_via() else {
            self.metrics.dropped(DropReason::Unanswerable);
            return;
        };
        let key = match via.branch.as_deref() {
            Some(branch) if has_magic_cookie(Some(branch)) => {
                TransactionKey::for_request(branch, &sent_by(&via), &req.method)
            }
            _ => rfc2543_key(&req, &via),
        };
        let reliability = match source.transport {
            Transport::Udp => Reliability::Unreliable,
            _ => Reliability::Reliable,
        };
        let incoming = IncomingRequest {
            key,
            method: req.method.clone(),
            peer: reply_to,
            reliability,
            trying: None,
        };
        let call = req
            .headers
            .call_id()
            .ok()
            .and_then(|id| self.calls_by_id.get(id).copied());
        let transaction = match self.transactions.handle_request(now, incoming) {
            RequestOutcome::New(transaction) => transaction,
            RequestOutcome::AckForTu => {
                // ACK for a 2xx belongs to the call's dialog.
                self.drain_transactions(now);
                if let Some(handle) = call
                    && let Some(entry) = self.calls.get_mut(&handle)
                {
                    entry.leg.handle_request(now, req);
                    self.drain_call(now, handle);
                }
                return;
            }
            RequestOutcome::Retransmission | RequestOutcome::AckAbsorbed => {
                self.drain_transactions(now);
                return;
            }
            RequestOutcome::Overloaded => {
                let total = self.metrics.overloaded();
                if total == 1 || total % 1000 == 0 {
                    warn!(
                        total,
                        live = self.transactions.len(),
                        "transaction table full: answering 503 (raise [sip] max_transactions?)"
                    );
                }
                self.respond_stateless(
                    &req,
                    reply_to,
                    503,
                    "Service Unavailable",
                    &[("Retry-After", "5".into())],
                );
                return;
            }
        };
        if let Some(handle) = call {
            // CANCEL, BYE, re-INVITE … of a call we hold: its leg answers.
            if let Some(entry) = self.calls.get_mut(&handle) {
                entry
                    .server_transactions
                    .insert(transaction.key().clone(), transaction);
                entry.leg.handle_request(now, req);
            }
            self.drain_call(now, handle);
            self.drain_transactions(now);
            return;
        }
        let transaction = match self.maybe_new_call(now, source, reply_to, req, transaction) {
            Ok(()) => {
                self.drain_transactions(now);
                return;
            }
            Err((req, transaction)) => {
                let req = *req;
                (req, transaction)
            }
        };
        let (req, transaction) = transaction;
        match self.process(now, source, &req) {
            Reply::Now(answer) => self.send_answer(now, &req, transaction, answer),
            Reply::AfterCommit(answer) => self.answer_after_commit(&req, transaction, answer),
        }
        self.drain_transactions(now);
    }

    /// Hold `answer` (a REGISTER's 2xx) until the binding changes just output are
    /// committed: a 200 says the binding survives a restart (issue 14).
    fn answer_after_commit(
        &mut self,
        req: &Request,
        transaction: ServerTransaction,
        answer: Answer,
    ) {
        let id = CommitId(self.next_commit);
        self.next_commit += 1;
        let mut response = Response::for_request(req, answer.status, answer.reason, &new_tag());
        for (name, value) in answer.headers {
            response.headers.push(name, value);
        }
        self.pending_commits.insert(
            id,
            PendingAnswer {
                transaction,
                response,
            },
        );
        self.outputs.push_back(Output::AwaitCommit(id));
    }

    /// The shell wrote (`stored`) or could not write the binding changes before
    /// [`Output::AwaitCommit`]`(id)`: send the REGISTER its answer, the 2xx or, when not
    /// stored, 503 with Retry-After and no Contact (RFC 3261 §10.3, §21.5.4; the binding
    /// stays in memory meanwhile, so calls still reach the phone). The answer goes
    /// through the transaction: a later retransmission gets the same one.
    pub fn binding_commit_done(&mut self, now: Instant, id: CommitId, stored: bool) {
        let Some(pending) = self.pending_commits.remove(&id) else {
            return;
        };
        let response = if stored {
            pending.response
        } else {
            not_stored_response(pending.response)
        };
        self.metrics.response(Direction::Out, response.status);
        let status = response.status;
        let bytes = Bytes::from(response.to_bytes());
        if let Err(e) = self
            .transactions
            .send_final(now, pending.transaction, status, bytes)
        {
            warn!(%e, "transaction refused a REGISTER answer");
        }
        self.drain_transactions(now);
    }

    /// Number of REGISTER answers waiting for a commit.
    pub fn pending_commit_count(&self) -> usize {
        self.pending_commits.len()
    }

    /// Decide the final answer to a new request.
    fn process(&mut self, now: Instant, source: SourceInfo, req: &Request) -> Reply {
        if let Err(rejection) = req.validate(SUPPORTED, false) {
            return Reply::Now(Answer {
                status: rejection.status,
                reason: rejection.reason,
                headers: rejection
                    .headers
                    .into_iter()
                    .map(|h| (header_name(&h.name), h.value))
                    .collect(),
            });
        }
        if req.method == Method::Register {
            return self.register(now, source, req);
        }
        Reply::Now(match &req.method {
            Method::Options => Answer::ok(vec![
                ("Allow", ALLOW.into()),
                ("Accept", "application/sdp".into()),
            ]),
            Method::Invite => {
                if self.is_trunk(source) {
                    // Inbound 12348 calls are answered by the call layers (media/IVR);
                    // until they are configured nothing can take the call.
                    Answer::status(480, "Temporarily Unavailable")
                } else {
                    // Toll-fraud guard: only trunks may start calls here.
                    info!(from = %source.addr, "INVITE from a source that is not a trunk refused");
                    self.metrics.toll_fraud_refused();
                    Answer::status(403, "Forbidden")
                }
            }
            Method::Cancel => Answer::status(481, "Call/Transaction Does Not Exist"),
            Method::Bye
            | Method::Info
            | Method::Update
            | Method::Prack
            | Method::Notify
            | Method::Refer => Answer::status(481, "Call/Transaction Does Not Exist"),
            Method::Subscribe | Method::Publish | Method::Message => Answer {
                status: 405,
                reason: "Method Not Allowed",
                headers: vec![("Allow", ALLOW.into())],
            },
            Method::Extension(_) => Answer {
                status: 501,
                reason: "Not Implemented",
                headers: vec![("Allow", ALLOW.into())],
            },
            // REGISTER is answered above; an ACK never makes a transaction.
            Method::Register | Method::Ack => Answer::status(500, "Server Internal Error"),
        })
    }

    fn register(&mut self, now: Instant, source: SourceInfo, req: &Request) -> Reply {
        match self.authenticate(now, source, req) {
            Ok(user) => self.apply_register(now, source, req, &user),
            Err(answer) => Reply::Now(answer),
        }
    }

    /// Digest authentication of a request (REGISTER, or an agent's INVITE): the user, or
    /// the answer to send instead (a challenge, or 403 once banned).
    fn authenticate(
        &mut self,
        now: Instant,
        source: SourceInfo,
        req: &Request,
    ) -> Result<String, Answer> {
        let credentials = credentials_for_realm(req.headers.get_all("Authorization"), &self.realm);
        let Some(credentials) = credentials else {
            return Err(self.challenge(now, Staleness::Fresh));
        };
        if !digest_uri_matches(&credentials, req) {
            // RFC 3261 §22.4 / RFC 7616 §3.4.6: credentials computed for another URI are
            // not for this request (a replayed or relayed Authorization). Not counted:
            // nothing was verified.
            debug!(from = %source.addr, digest_uri = %credentials.uri, request_uri = %req.uri,
                "digest uri differs from the Request-URI");
            return Err(Answer::status(400, "Bad Request"));
        }
        let secret = self.users.get(&credentials.username).cloned();
        let auth_source = AuthSource {
            ip: source.addr.ip(),
            trunk: self.is_trunk(source),
        };
        let verification = self.auth.verify(
            now,
            auth_source,
            req.method.as_str(),
            &credentials,
            secret.as_ref(),
        );
        if let Some(ban) = &verification.ban {
            self.metrics.ban();
            let subject = match &ban.user {
                Some(user) => {
                    warn!(
                        source = %ban.source,
                        %user,
                        failures = ban.failures,
                        "source banned for one user after repeated authentication failures"
                    );
                    format!("{} user {user}", ban.source)
                }
                None => {
                    warn!(
                        source = %ban.source,
                        failures = ban.failures,
                        "source banned after repeated authentication failures"
                    );
                    ban.source.to_string()
                }
            };
            self.outputs.push_back(Output::Store(StoreOp::Audit {
                actor: "system".into(),
                action: "sip.ban".into(),
                subject,
                detail: format!("{} failed authentications", ban.failures),
            }));
        }
        match verification.outcome {
            AuthOutcome::Ok(user) => Ok(user),
            AuthOutcome::Stale => Err(self.challenge(now, Staleness::Stale)),
            AuthOutcome::Invalid => {
                self.metrics.auth_failure();
                Err(self.challenge(now, Staleness::Fresh))
            }
            // Banned mid-request: answer like any failure; later requests are dropped.
            AuthOutcome::Banned { .. } => Err(Answer::status(403, "Forbidden")),
        }
    }

    fn challenge(&mut self, now: Instant, staleness: Staleness) -> Answer {
        Answer {
            status: 401,
            reason: "Unauthorized",
            headers: self
                .auth
                .challenge(now, staleness)
                .into_iter()
                .map(|v| ("WWW-Authenticate", v))
                .collect(),
        }
    }

    fn apply_register(
        &mut self,
        now: Instant,
        source: SourceInfo,
        req: &Request,
        user: &str,
    ) -> Reply {
        match self.registrar.handle_register(now, req, source, user) {
            Ok(outcome) => {
                let changed = !outcome.changes.is_empty();
                for change in outcome.changes {
                    let op = match change {
                        BindingChange::Added(b) => {
                            info!(
                                agent = %crate::ticket::privacy::mask_phone(b.aor.as_str().split('@').next().unwrap_or_default()),
                                from = %b.source.addr,
                                expires_secs = b.expires_at.saturating_duration_since(now).as_secs(),
                                "phone registered"
                            );
                            StoreOp::UpsertBinding(self.binding_to_store(&b, now))
                        }
                        BindingChange::Refreshed(b) => {
                            StoreOp::UpsertBinding(self.binding_to_store(&b, now))
                        }
                        BindingChange::Removed(b, reason) => {
                            if reason == RemovalReason::Unregistered {
                                info!(
                                    agent = %crate::ticket::privacy::mask_phone(b.aor.as_str().split('@').next().unwrap_or_default()),
                                    from = %b.source.addr,
                                    "phone unregistered"
                                );
                            } else {
                                debug!(
                                    aor = b.aor.as_str(),
                                    reason = reason.as_str(),
                                    "binding removed"
                                );
                            }
                            StoreOp::DeleteBinding {
                                aor: b.aor.as_str().to_string(),
                                contact: b.contact_uri.to_string(),
                            }
                        }
                    };
                    self.outputs.push_back(Output::Store(op));
                }
                self.metrics
                    .set_active_registrations(self.registrar.binding_count());
                let answer = Answer {
                    status: outcome.status,
                    reason: outcome.reason,
                    headers: outcome
                        .contacts
                        .into_iter()
                        .map(|c| ("Contact", c))
                        .collect(),
                };
                // A change is announced only once it is committed; a fetch of the
                // bindings (no change) is answered at once.
                if changed {
                    Reply::AfterCommit(answer)
                } else {
                    Reply::Now(answer)
                }
            }
            Err(e) => Reply::Now(Answer {
                status: e.status(),
                reason: e.reason(),
                headers: e.headers(),
            }),
        }
    }

    fn binding_to_store(&self, b: &Binding, now: Instant) -> StoredBinding {
        let remaining = b.expires_at.saturating_duration_since(now).as_millis() as i64;
        let now_ms = self.clock.unix_ms as i64
            + now
                .saturating_duration_since(self.clock.instant)
                .as_millis() as i64;
        StoredBinding {
            aor: b.aor.as_str().to_string(),
            contact: b.contact_uri.to_string(),
            expires_at: now_ms + remaining,
            q: b.q.map(|q| f64::from(q.thousandths()) / 1000.0),
            call_id: b.call_id.clone(),
            cseq: i64::from(b.cseq),
            source: b.source.addr.to_string(),
            transport: b.source.transport.as_str().to_string(),
            user_agent: b.user_agent.clone(),
        }
    }

    fn respond_stateless(
        &mut self,
        req: &Request,
        to: SourceInfo,
        status: u16,
        reason: &str,
        headers: &[(&'static str, String)],
    ) {
        let mut resp = Response::for_request(req, status, reason, &new_tag());
        for (name, value) in headers {
            resp.headers.push(name, value.clone());
        }
        self.metrics.response(Direction::Out, status);
        self.outputs.push_back(Output::Transmit {
            to,
            bytes: Bytes::from(resp.to_bytes()),
        });
    }

    /// Move what the transaction layer wants sent out, and count its state.
    fn drain_transactions(&mut self, now: Instant) {
        // Legs react to their transactions' events with new requests/responses: repeat
        // until both are quiet.
        loop {
            while let Some(t) = self.transactions.poll_transmit() {
                self.outputs.push_back(Output::Transmit {
                    to: t.peer,
                    bytes: t.payload,
                });
            }
            let mut touched: Vec<CallHandle> = Vec::new();
            while let Some(e) = self.transactions.poll_event() {
                if e.side == TxSide::Server {
                    if e.event == TransactionEvent::TimedOut {
                        debug!(key = ?e.key, "transaction timed out");
                    }
                    continue;
                }
                let Some(handle) = self.call_client_transactions.get(&e.key).copied() else {
                    continue;
                };
                let Some(entry) = self.calls.get_mut(&handle) else {
                    self.call_client_transactions.remove(&e.key);
                    continue;
                };
                match e.event {
                    TransactionEvent::Response { payload, .. } => {
                        if let Ok(Message::Response(resp)) = parse_message(&payload) {
                            entry.leg.handle_response(now, resp);
                        }
                    }
                    TransactionEvent::TimedOut | TransactionEvent::TransportError => {
                        entry.leg.handle_transaction_timeout(now, e.key.method());
                    }
                    TransactionEvent::Terminated => {
                        self.call_client_transactions.remove(&e.key);
                    }
                }
                touched.push(handle);
            }
            if touched.is_empty() {
                break;
            }
            for handle in touched {
                self.drain_call(now, handle);
            }
        }
        self.metrics
            .set_active_transactions(self.transactions.len());
    }

    /// Carry out what a call's leg wants sent, and pass its events to the call layer.
    fn drain_call(&mut self, now: Instant, handle: CallHandle) {
        loop {
            let Some(entry) = self.calls.get_mut(&handle) else {
                return;
            };
            let Some(output) = entry.leg.poll_output() else {
                break;
            };
            let peer = entry.peer;
            match output {
                LegOutput::SendResponse(resp) => {
                    let status = resp.status;
                    self.metrics.response(Direction::Out, status);
                    if (200..300).contains(&status)
                        && !entry.setup_counted
                        && matches!(entry.leg, Leg::In(_))
                        && resp
                            .headers
                            .cseq()
                            .is_ok_and(|c| c.method == Method::Invite)
                    {
                        entry.setup_counted = true;
                        self.metrics.call_setup(
                            Direction::In,
                            now.saturating_duration_since(entry.created),
                        );
                    }
                    let key = response_key(&resp);
                    let bytes = Bytes::from(resp.to_bytes());
                    let is_final = status >= 200;
                    let transaction = key.as_ref().and_then(|k| {
                        if is_final {
                            entry.server_transactions.remove(k).map(Some)
                        } else {
                            entry.server_transactions.contains_key(k).then_some(None)
                        }
                    });
                    let result = match (transaction, key) {
                        (Some(Some(tx)), _) => self.transactions.send_final(now, tx, status, bytes),
                        (Some(None), Some(k)) => {
                            let tx = self
                                .calls
                                .get(&handle)
                                .and_then(|e| e.server_transactions.get(&k));
                            match tx {
                                Some(tx) => {
                                    self.transactions.send_provisional(now, tx, status, bytes)
                                }
                                None => Ok(()),
                            }
                        }
                        // A 2xx retransmission (or the transaction is gone): straight out.
                        _ => {
                            self.outputs.push_back(Output::Transmit { to: peer, bytes });
                            Ok(())
                        }
                    };
                    if let Err(e) = result {
                        debug!(%e, %handle, status, "call response not sent through its transaction");
                    }
                }
                LegOutput::SendRequest(req) => {
                    self.metrics.request(Direction::Out, &req.method);
                    let bytes = Bytes::from(req.to_bytes());
                    if req.method == Method::Ack {
                        self.outputs.push_back(Output::Transmit { to: peer, bytes });
                        continue;
                    }
                    let Some(key) = req.headers.top_via().ok().and_then(|via| {
                        via.branch
                            .as_deref()
                            .map(|b| TransactionKey::for_request(b, &sent_by(&via), &req.method))
                    }) else {
                        warn!(%handle, "leg built a request without a Via branch");
                        continue;
                    };
                    let reliability = match peer.transport {
                        Transport::Udp => Reliability::Unreliable,
                        _ => Reliability::Reliable,
                    };
                    match self
                        .transactions
                        .start_client(now, key.clone(), peer, reliability, bytes)
                    {
                        Ok(()) => {
                            self.call_client_transactions.insert(key, handle);
                        }
                        Err(e) => {
                            warn!(%e, %handle, "could not start a client transaction");
                            if let Some(entry) = self.calls.get_mut(&handle) {
                                entry.leg.handle_transaction_timeout(now, &req.method);
                            }
                        }
                    }
                }
                LegOutput::Event(event) => {
                    if matches!(event, LegEvent::Ended { .. }) {
                        entry.remove_at = Some(now + self.leg_config.timeout_64t1());
                        self.count_calls_active();
                    }
                    self.outputs.push_back(Output::Call {
                        call: handle,
                        event: CallEvent::Leg(event),
                    });
                }
            }
        }
        self.count_unconfirmed(handle);
    }

    /// Keep `unconfirmed` in step with the leg's state: every change of an inbound leg's
    /// state goes through `drain_call` (or the leg's creation, or its removal).
    fn count_unconfirmed(&mut self, handle: CallHandle) {
        let Some(entry) = self.calls.get_mut(&handle) else {
            return;
        };
        let Some((ip, counted)) = entry.unconfirmed_from.as_mut() else {
            return;
        };
        let unconfirmed = matches!(entry.leg.state(), LegState::Early | LegState::AwaitingAck);
        if unconfirmed == *counted {
            return;
        }
        *counted = unconfirmed;
        let ip = *ip;
        if unconfirmed {
            *self.unconfirmed.entry(ip).or_default() += 1;
        } else {
            self.uncount(ip);
        }
    }

    fn uncount(&mut self, ip: IpAddr) {
        if let std::collections::hash_map::Entry::Occupied(mut n) = self.unconfirmed.entry(ip) {
            *n.get_mut() = n.get().saturating_sub(1);
            if *n.get() == 0 {
                n.remove();
            }
        }
    }

    /// Inbound calls from `ip` not yet confirmed (no final answer, or our 2xx not ACKed).
    pub fn unconfirmed_from(&self, ip: IpAddr) -> usize {
        self.unconfirmed.get(&ip).copied().unwrap_or(0)
    }

    fn remove_call(&mut self, handle: CallHandle) {
        if let Some(entry) = self.calls.remove(&handle) {
            if let Some((ip, true)) = entry.unconfirmed_from {
                self.uncount(ip);
            }
            self.calls_by_id.remove(&entry.call_id);
            self.call_client_transactions.retain(|_, h| *h != handle);
        }
        self.count_calls_active();
    }

    /// `hotline_calls_active`: callers' legs (inbound INVITEs) not yet ended.
    fn count_calls_active(&self) {
        let up = self
            .calls
            .values()
            .filter(|e| matches!(e.leg, Leg::In(_)) && e.remove_at.is_none())
            .count();
        self.metrics.set_calls_active(up);
    }

    /// A new INVITE (no To tag) from a trunk, or from an authenticated agent to a test
    /// extension, becomes a call; anything else goes back to the caller for `process`.
    #[allow(clippy::result_large_err)]
    fn maybe_new_call(
        &mut self,
        now: Instant,
        source: SourceInfo,
        reply_to: SourceInfo,
        req: Request,
        transaction: ServerTransaction,
    ) -> Result<(), (Box<Request>, ServerTransaction)> {
        let has_to_tag = req.headers.to().ok().is_some_and(|to| to.tag().is_some());
        if req.method != Method::Invite || has_to_tag || req.validate(SUPPORTED, false).is_err() {
            return Err((Box::new(req), transaction));
        }
        let dialled = req.uri.user.clone().unwrap_or_default();
        let replaces = match req.headers.replaces() {
            Ok(r) => r,
            Err(e) => {
                // RFC 3891 §3: more than one Replaces (or a malformed one) is 400.
                debug!(%e, "INVITE with a bad Replaces");
                self.send_answer(now, &req, transaction, Answer::status(400, "Bad Request"));
                return Ok(());
            }
        };
        // ACD feature codes (`*11` sign in …) are for authenticated agents only, even
        // from a trunk's address (a carrier never reaches them).
        let feature_code =
            crate::queue::feature_code_input(crate::queue::AgentId::new(""), &dialled).is_some();
        // An agent's phone calling another agent (consultation before an attended
        // transfer) or replacing a dialog (RFC 3891): only from where that agent is
        // registered, and authenticated; anyone else still gets 403 (toll fraud).
        let agent_call = (replaces.is_some() || self.users.contains_key(&dialled))
            && self.is_registered_agent_source(now, source, &req);
        let origin = if !feature_code && !agent_call && self.is_trunk(source) {
            CallOrigin::Trunk
        } else {
            // Not the trunk: every INVITE is challenged alike, whatever number it dials,
            // so that the answer tells a scanner nothing (issue 14: test extensions used
            // to answer 401 and other numbers 403). The number is judged afterwards.
            let user = match self.authenticate(now, source, &req) {
                Ok(user) => user,
                Err(answer) => {
                    self.send_answer(now, &req, transaction, answer);
                    return Ok(());
                }
            };
            if !(feature_code || agent_call || self.agent_extensions.contains(&dialled)) {
                // Toll-fraud guard: only trunks reach the hotline and outside numbers.
                info!(from = %source.addr, %user, %dialled, "INVITE from a source that is not a trunk refused");
                self.metrics.toll_fraud_refused();
                self.send_answer(now, &req, transaction, Answer::status(403, "Forbidden"));
                return Ok(());
            }
            CallOrigin::Agent(user)
        };
        if let Some(retry_after) = self.draining {
            // Shutting down: the caller's carrier or phone tries another node or later.
            info!(%dialled, from = %source.addr, "shutting down: new call refused (503)");
            let answer = Answer {
                status: 503,
                reason: "Service Unavailable",
                headers: vec![("Retry-After", retry_after.to_string())],
            };
            self.send_answer(now, &req, transaction, answer);
            return Ok(());
        }
        let unconfirmed = self.unconfirmed_from(source.addr.ip());
        if unconfirmed >= self.max_unconfirmed_per_source {
            // Calls that never confirm (un-ACKed INVITEs) would each hold an IVR call,
            // ports and sockets until Timer H: refuse more until some confirm or end.
            warn!(from = %source.addr, unconfirmed, "too many unconfirmed calls from one source: 503");
            let answer = Answer {
                status: 503,
                reason: "Service Unavailable",
                headers: vec![("Retry-After", "5".to_string())],
            };
            self.send_answer(now, &req, transaction, answer);
            return Ok(());
        }
        if !self.admission.admit(now) {
            // Over the admission rate: refused before any IVR, port or socket is taken,
            // so the calls already admitted keep their pace.
            let total = self.metrics.calls_over_rate();
            if total == 1 || total % 1000 == 0 {
                warn!(from = %source.addr, total, "new calls above max_new_calls_per_sec: 503");
            }
            let answer = Answer {
                status: 503,
                reason: "Service Unavailable",
                headers: vec![("Retry-After", "2".to_string())],
            };
            self.send_answer(now, &req, transaction, answer);
            return Ok(());
        }
        let replaces = match (replaces, &origin) {
            (None, _) => None,
            (Some(r), CallOrigin::Agent(_)) => match self.replaced_dialog(&r) {
                // Only a leg with an agent at its end may be replaced by an agent.
                Ok(d) if d.agent.is_some() => Some(d.handle),
                Ok(_) => {
                    info!(call_id = %r.call_id, "INVITE with Replaces for a caller's leg refused");
                    self.send_answer(now, &req, transaction, Answer::status(403, "Forbidden"));
                    return Ok(());
                }
                Err(status) => {
                    info!(call_id = %r.call_id, status, "INVITE with Replaces refused (RFC 3891 §3)");
                    let answer = match status {
                        486 => Answer::status(486, "Busy Here"),
                        603 => Answer::status(603, "Decline"),
                        _ => Answer::status(481, "Call/Transaction Does Not Exist"),
                    };
                    self.send_answer(now, &req, transaction, answer);
                    return Ok(());
                }
            },
            // A carrier's INVITE is a new call whatever it carries (as before).
            (Some(_), CallOrigin::Trunk) => None,
        };
        let seed = rand::RngCore::next_u64(&mut self.rng);
        let contact = self.contact_on(source.transport).clone();
        let leg = match InboundLeg::new(self.leg_config, req.clone(), &contact, seed) {
            Ok(leg) => leg,
            Err(e) => {
                debug!(%e, "INVITE cannot start a dialog");
                // An RFC 2543 caller (no From tag) is not wrong, we just cannot hold a
                // dialog with it; anything else is a malformed request.
                let answer = match e {
                    LegError::Dialog(DialogError::MissingFromTag) => {
                        Answer::status(480, "Temporarily Unavailable")
                    }
                    _ => Answer::status(400, "Bad Request"),
                };
                self.send_answer(now, &req, transaction, answer);
                return Ok(());
            }
        };
        let call_id = req.headers.call_id().unwrap_or_default().to_string();
        let handle = CallHandle(self.next_call);
        self.next_call += 1;
        let user_of =
            |h: Result<NameAddr, ParseError>| h.ok().and_then(|n| n.uri.user).unwrap_or_default();
        let incoming = IncomingCall {
            call_id: call_id.clone(),
            dialled,
            caller: user_of(req.headers.from()),
            to_user: user_of(req.headers.to()),
            carrier_city: self
                .trunks
                .iter()
                .find(|t| t.matches(source))
                .and_then(|t| t.city_header.as_deref())
                .and_then(|name| req.headers.get(name))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()),
            verified_caller: match (&origin, self.trunks.iter().find(|t| t.matches(source))) {
                (CallOrigin::Trunk, Some(trunk)) => match trunk.identity_header.as_deref() {
                    Some(name) => req
                        .headers
                        .get(name)
                        .and_then(|v| NameAddr::parse(v.trim()).ok())
                        .and_then(|n| n.uri.user)
                        .filter(|u| !u.is_empty()),
                    None => Some(user_of(req.headers.from())).filter(|u| !u.is_empty()),
                },
                _ => None,
            },
            source,
            origin,
            sdp: req.body.clone(),
            replaces,
        };
        let agent = match &incoming.origin {
            CallOrigin::Agent(user) => Some(user.clone()),
            CallOrigin::Trunk => None,
        };
        let mut server_transactions = HashMap::new();
        server_transactions.insert(transaction.key().clone(), transaction);
        self.calls.insert(
            handle,
            Box::new(CallEntry {
                leg: Leg::In(leg),
                call_id: call_id.clone(),
                peer: reply_to,
                server_transactions,
                remove_at: None,
                agent,
                unconfirmed_from: Some((source.addr.ip(), false)),
                created: now,
                setup_counted: false,
            }),
        );
        self.count_unconfirmed(handle);
        self.calls_by_id.insert(call_id, handle);
        self.count_calls_active();
        self.outputs.push_back(Output::Call {
            call: handle,
            event: CallEvent::Incoming(Box::new(incoming)),
        });
        Ok(())
    }

    fn send_answer(
        &mut self,
        now: Instant,
        req: &Request,
        transaction: ServerTransaction,
        answer: Answer,
    ) {
        let mut resp = Response::for_request(req, answer.status, answer.reason, &new_tag());
        for (name, value) in answer.headers {
            resp.headers.push(name, value);
        }
        self.metrics.response(Direction::Out, answer.status);
        let bytes = Bytes::from(resp.to_bytes());
        let sent = if is_stateless_challenge(req, answer.status) {
            self.transactions
                .send_final_and_forget(transaction, answer.status, bytes)
        } else {
            self.transactions
                .send_final(now, transaction, answer.status, bytes)
        };
        if let Err(e) = sent {
            warn!(%e, "transaction refused a response");
        }
    }

    fn with_call<F>(
        &mut self,
        now: Instant,
        handle: CallHandle,
        f: F,
    ) -> Result<(), CallControlError>
    where
        F: FnOnce(&mut Leg) -> Result<(), LegError>,
    {
        let entry = self
            .calls
            .get_mut(&handle)
            .ok_or(CallControlError::NoSuchCall(handle))?;
        let result = f(&mut entry.leg);
        self.drain_call(now, handle);
        self.drain_transactions(now);
        result.map_err(CallControlError::from)
    }

    /// Whether the request comes from an address where its From user, a configured
    /// agent, has a live registration (the gate before challenging an agent's call).
    fn is_registered_agent_source(&self, now: Instant, source: SourceInfo, req: &Request) -> bool {
        let Some(user) = req.headers.from().ok().and_then(|f| f.uri.user) else {
            return false;
        };
        if !self.users.contains_key(&user) {
            return false;
        }
        let aor = Aor::new(&user, &self.realm);
        self.registrar
            .lookup(&aor)
            .iter()
            .any(|b| b.expires_at > now && b.source.addr.ip() == source.addr.ip())
    }

    /// The call leg whose dialog a `Replaces` names (RFC 3891 §3: `to-tag` is our local
    /// tag, `from-tag` the remote one), with the §3 checks of [`check_replaces`]. Our
    /// outbound legs are matched once answered (an early dialog of ours is not tracked
    /// by its remote tag, so it is not found: 481).
    ///
    /// # Errors
    /// The status to answer (481, 486, 603).
    pub fn replaced_dialog(&self, replaces: &Replaces) -> Result<ReplacedDialog, u16> {
        let found = self
            .calls_by_id
            .get(&replaces.call_id)
            .and_then(|h| Some((*h, self.calls.get(h)?)))
            .filter(|(_, entry)| {
                entry.leg.dialog_id().is_some_and(|d| {
                    d.local_tag == replaces.to_tag && d.remote_tag == replaces.from_tag
                })
            });
        let outbound = |entry: &CallEntry| matches!(entry.leg, Leg::Out(_));
        check_replaces(
            found.map(|(_, e)| (e.leg.state(), outbound(e))),
            replaces.early_only,
        )?;
        let (handle, entry) = found.ok_or(481u16)?;
        Ok(ReplacedDialog {
            handle,
            agent: entry.agent.clone(),
            outbound: outbound(entry),
        })
    }

    /// `agent`'s phone at `contact` vanished (its audio stopped mid-call, or an INVITE
    /// to it got no answer at all): drop that binding as if it had expired, so the agent
    /// shows offline (离线) until the phone registers again. Returns whether there was
    /// one.
    pub fn drop_binding(&mut self, agent: &str, contact: &crate::sip::message::Uri) -> bool {
        let aor = Aor::new(agent, &self.realm);
        let Some(binding) = self.registrar.remove(&aor, contact) else {
            return false;
        };
        info!(aor = binding.aor.as_str(), contact = %binding.contact_uri, "binding dropped: the phone vanished");
        self.outputs
            .push_back(Output::Store(StoreOp::DeleteBinding {
                aor: binding.aor.as_str().to_string(),
                contact: binding.contact_uri.to_string(),
            }));
        self.metrics
            .set_active_registrations(self.registrar.binding_count());
        true
    }

    /// Stop taking new calls (SIGTERM): every new INVITE from now on is answered 503
    /// with `Retry-After: retry_after_secs`; calls in progress, REGISTER and OPTIONS go
    /// on.
    pub fn start_draining(&mut self, retry_after_secs: u32) {
        self.draining = Some(retry_after_secs);
    }

    /// Whether [`Endpoint::start_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.is_some()
    }

    /// End every call leg for shutdown (the drain timeout ran out): BYE with
    /// `Reason: SIP;cause=503` once answered, 503 / CANCEL before. Returns how many legs
    /// were still up.
    pub fn shutdown_calls(&mut self, now: Instant) -> usize {
        let handles: Vec<CallHandle> = self
            .calls
            .iter()
            .filter(|(_, c)| c.remove_at.is_none())
            .map(|(h, _)| *h)
            .collect();
        for handle in &handles {
            let _ = self.with_call(now, *handle, |leg| {
                leg.shutdown(now);
                Ok(())
            });
        }
        handles.len()
    }

    /// Where the given agents can be rung now (their first live registration each), in
    /// the order given.
    pub fn agent_contacts(&self, now: Instant, agents: &[String]) -> Vec<AgentContact> {
        agents
            .iter()
            .filter_map(|agent| {
                let aor = Aor::new(agent, &self.realm);
                self.registrar
                    .lookup(&aor)
                    .iter()
                    .find(|b| b.expires_at > now)
                    .map(|b| AgentContact {
                        agent: agent.clone(),
                        contact: b.contact_uri.clone(),
                        source: b.source,
                    })
            })
            .collect()
    }

    /// Ring an agent (B2BUA B-leg) with our SDP offer; the call's events (progress,
    /// answered with the agent's SDP, ended) come back as [`CallEvent::Leg`] on the
    /// returned handle. `caller` is shown to the agent as the From user.
    pub fn call_dial(
        &mut self,
        now: Instant,
        target: &AgentContact,
        caller: &str,
        sdp_offer: Bytes,
    ) -> CallHandle {
        let uri = |user: &str| {
            crate::sip::message::Uri::parse(&format!("sip:{user}@{}", self.realm)).ok()
        };
        let name_addr = |uri: crate::sip::message::Uri| NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        };
        let local = self.contact_on(target.source.transport).clone();
        let fallback = local.uri.clone();
        let from = name_addr(
            uri(caller)
                .or_else(|| uri("12348"))
                .unwrap_or(fallback.clone()),
        );
        let to = name_addr(uri(&target.agent).unwrap_or(fallback));
        let via = crate::sip::dialog::ViaSentBy {
            transport: target.source.transport.as_str().to_string(),
            host: local.uri.host.clone(),
            port: local.uri.port,
        };
        let params = OutboundParams {
            target: target.contact.clone(),
            from,
            to,
            contact: local,
            sdp_offer,
            route: Vec::new(),
            via,
            call_id: None,
        };
        self.place_outbound(now, params, target.source, Some(target.agent.clone()))
    }

    /// Call out through a carrier trunk (B2BUA leg to an outside number): INVITE
    /// `request_uri` (`sip:<number>@<trunk>`) sent to `peer`, To = the Request-URI, From
    /// `sip:<from_user>@<our domain>`. Events come back as for [`Endpoint::call_dial`].
    /// The shell decides what may be dialled (the shell's outbound rule): this only
    /// sends.
    pub fn call_dial_out(
        &mut self,
        now: Instant,
        request_uri: crate::sip::message::Uri,
        peer: SourceInfo,
        from_user: &str,
        sdp_offer: Bytes,
    ) -> CallHandle {
        let name_addr = |uri: crate::sip::message::Uri| NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        };
        let from = name_addr(
            crate::sip::message::Uri::parse(&format!("sip:{from_user}@{}", self.realm))
                .unwrap_or_else(|_| self.local_contact.uri.clone()),
        );
        let local = self.contact_on(peer.transport).clone();
        let via = crate::sip::dialog::ViaSentBy {
            transport: peer.transport.as_str().to_string(),
            host: local.uri.host.clone(),
            port: local.uri.port,
        };
        let params = OutboundParams {
            target: request_uri.clone(),
            from,
            to: name_addr(request_uri),
            contact: local,
            sdp_offer,
            route: Vec::new(),
            via,
            call_id: None,
        };
        // An outside number: no agent whose dialog an agent's INVITE may replace.
        self.place_outbound(now, params, peer, None)
    }

    fn place_outbound(
        &mut self,
        now: Instant,
        params: OutboundParams,
        peer: SourceInfo,
        agent: Option<String>,
    ) -> CallHandle {
        let seed = rand::RngCore::next_u64(&mut self.rng);
        let leg = OutboundLeg::new(now, self.leg_config, params, seed);
        let call_id = leg
            .invite()
            .headers
            .call_id()
            .unwrap_or_default()
            .to_string();
        let handle = CallHandle(self.next_call);
        self.next_call += 1;
        self.calls.insert(
            handle,
            Box::new(CallEntry {
                leg: Leg::Out(leg),
                call_id: call_id.clone(),
                peer,
                server_transactions: HashMap::new(),
                remove_at: None,
                agent,
                unconfirmed_from: None,
                created: now,
                setup_counted: false,
            }),
        );
        self.calls_by_id.insert(call_id, handle);
        self.drain_call(now, handle);
        self.drain_transactions(now);
        handle
    }

    /// 180 Ringing to the caller.
    ///
    /// # Errors
    /// Unknown call, or the INVITE already has its final response.
    pub fn call_ring(&mut self, now: Instant, handle: CallHandle) -> Result<(), CallControlError> {
        self.with_call(now, handle, |leg| leg.inbound()?.ring(now))
    }

    /// 200 OK with our SDP answer.
    ///
    /// # Errors
    /// Unknown call, or the INVITE already has its final response.
    pub fn call_answer(
        &mut self,
        now: Instant,
        handle: CallHandle,
        sdp: Bytes,
    ) -> Result<(), CallControlError> {
        self.with_call(now, handle, |leg| leg.inbound()?.answer(now, sdp))
    }

    /// A final 3xx–6xx (488 for no common codec, 404 for an unknown number …).
    ///
    /// # Errors
    /// Unknown call, answered already, or a status outside 300–699.
    pub fn call_reject(
        &mut self,
        now: Instant,
        handle: CallHandle,
        status: u16,
    ) -> Result<(), CallControlError> {
        self.with_call(now, handle, |leg| leg.inbound()?.reject(now, status))
    }

    /// Hang up (BYE, or 480 before the answer).
    ///
    /// # Errors
    /// Unknown call.
    pub fn call_hangup(
        &mut self,
        now: Instant,
        handle: CallHandle,
    ) -> Result<(), CallControlError> {
        self.with_call(now, handle, |leg| {
            leg.hangup(now);
            Ok(())
        })
    }

    /// No RTP for too long: end the call with that reason.
    ///
    /// # Errors
    /// Unknown call.
    pub fn call_media_timeout(
        &mut self,
        now: Instant,
        handle: CallHandle,
    ) -> Result<(), CallControlError> {
        self.with_call(now, handle, |leg| {
            leg.media_timeout(now);
            Ok(())
        })
    }

    /// Answer a re-INVITE (hold/resume) with our SDP.
    ///
    /// # Errors
    /// Unknown call or no re-INVITE waiting.
    pub fn call_answer_reinvite(
        &mut self,
        now: Instant,
        handle: CallHandle,
        sdp: Bytes,
    ) -> Result<(), CallControlError> {
        self.with_call(now, handle, |leg| leg.answer_reinvite(now, sdp))
    }

    /// Refuse a re-INVITE (e.g. 488 for an offer we cannot take).
    ///
    /// # Errors
    /// Unknown call or no re-INVITE waiting.
    pub fn call_reject_reinvite(
        &mut self,
        now: Instant,
        handle: CallHandle,
        status: u16,
    ) -> Result<(), CallControlError> {
        self.with_call(now, handle, |leg| leg.reject_reinvite(now, status))
    }

    /// 202 Accepted to a REFER (RFC 3515) and the first NOTIFY (100 Trying).
    ///
    /// # Errors
    /// Unknown call, or no REFER waiting.
    pub fn call_accept_refer(
        &mut self,
        now: Instant,
        handle: CallHandle,
    ) -> Result<(), CallControlError> {
        self.with_call(now, handle, |leg| leg.accept_refer(now))
    }

    /// Refuse a REFER with a final status (300–699).
    ///
    /// # Errors
    /// Unknown call, no REFER waiting, or an invalid status.
    pub fn call_reject_refer(
        &mut self,
        now: Instant,
        handle: CallHandle,
        status: u16,
    ) -> Result<(), CallControlError> {
        self.with_call(now, handle, |leg| leg.reject_refer(now, status))
    }

    /// NOTIFY the transfer's progress (a final status ends the subscription).
    ///
    /// # Errors
    /// Unknown call, no accepted REFER, or an invalid status.
    pub fn call_notify_refer(
        &mut self,
        now: Instant,
        handle: CallHandle,
        status: u16,
        reason: &str,
    ) -> Result<(), CallControlError> {
        self.with_call(now, handle, |leg| {
            leg.notify_refer_progress(now, status, reason)
        })
    }
}

/// When a new request's final answer goes out.
enum Reply {
    Now(Answer),
    /// A REGISTER that changed bindings: once they are committed.
    AfterCommit(Answer),
}

/// A REGISTER's 2xx whose binding changes were not committed becomes 503 Service
/// Unavailable with Retry-After and without the Contact list (no binding is confirmed).
fn not_stored_response(ok: Response) -> Response {
    let mut headers = ok.headers;
    headers.remove("Contact");
    headers.remove("Expires");
    headers.push("Retry-After", NOT_STORED_RETRY_AFTER_SECS.to_string());
    Response {
        status: 503,
        reason: "Service Unavailable".into(),
        headers,
        body: Bytes::new(),
    }
}

/// The final answer the core chose for a request.
struct Answer {
    status: u16,
    reason: &'static str,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn status(status: u16, reason: &'static str) -> Answer {
        Answer {
            status,
            reason,
            headers: Vec::new(),
        }
    }
    fn ok(headers: Vec<(&'static str, String)>) -> Answer {
        Answer {
            status: 200,
            reason: "OK",
            headers,
        }
    }
}

/// Header names we emit come from a fixed set; map a rejection's header name onto it.
fn header_name(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "unsupported" => "Unsupported",
        "allow" => "Allow",
        "accept" => "Accept",
        "min-expires" => "Min-Expires",
        "retry-after" => "Retry-After",
        _ => "Warning",
    }
}

/// The ACK of a failed INVITE (RFC 3261 §17.1.1.3): the INVITE's Request-URI, top Via,
/// From, Call-ID, CSeq number and Route, with the response's To.
fn ack_for_failure(invite: &Request, resp: &Response) -> Request {
    let mut headers = crate::sip::message::Headers::default();
    for name in ["Via", "Max-Forwards", "From"] {
        if let Some(value) = invite.headers.get(name) {
            headers.push(name, value);
        }
    }
    if let Some(to) = resp.headers.get("To") {
        headers.push("To", to);
    }
    if let Some(call_id) = invite.headers.get("Call-ID") {
        headers.push("Call-ID", call_id);
    }
    if let Ok(cseq) = invite.headers.cseq() {
        headers.push("CSeq", format!("{} ACK", cseq.seq));
    }
    for route in invite.headers.get_all("Route") {
        headers.push("Route", route);
    }
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Bytes::new(),
    }
}

/// The transaction key a response belongs to (top Via branch and sent-by, CSeq method).
fn response_key(resp: &Response) -> Option<TransactionKey> {
    let via = resp.headers.top_via().ok()?;
    let cseq = resp.headers.cseq().ok()?;
    let branch = via.branch.as_deref()?;
    Some(TransactionKey::for_response(
        branch,
        &sent_by(&via),
        &cseq.method,
    ))
}

/// `<sip:hotline@ip:port>`; an unspecified listen address is replaced by loopback until
/// the shell tells the real one.
/// Our Contact over TLS: the TLS address, `;transport=tls` (RFC 3261 §26.2.2 prefers
/// `sips:`, but a `sip:` URI with the parameter is what deployed phones and trunks
/// accept from a dialog that began with `sip:`).
fn tls_contact_for(addr: std::net::SocketAddr) -> NameAddr {
    contact_with(addr, Some(("transport", "tls")))
}

fn contact_for(addr: std::net::SocketAddr) -> NameAddr {
    contact_with(addr, None)
}

fn contact_with(addr: std::net::SocketAddr, param: Option<(&str, &str)>) -> NameAddr {
    let host = match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let suffix = param.map_or(String::new(), |(name, value)| format!(";{name}={value}"));
    let text = format!("sip:hotline@{host}:{}{suffix}", addr.port());
    NameAddr {
        display_name: None,
        uri: crate::sip::message::Uri::parse(&text).unwrap_or_else(|_| crate::sip::message::Uri {
            scheme: "sip".into(),
            user: Some("hotline".into()),
            password: None,
            host,
            port: Some(addr.port()),
            params: param
                .map(|(name, value)| (name.to_owned(), Some(value.to_owned())))
                .into_iter()
                .collect(),
            headers: Vec::new(),
            raw: text.clone(),
        }),
        params: Vec::new(),
    }
}

/// A fresh To-tag.
fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `host[:port]` of a Via, as the transaction key's sent-by.
/// Whether the digest `uri` names the Request-URI (RFC 3261 §22.4, RFC 7616 §3.4.6).
/// Compared as URIs (scheme, user, host case-insensitively, port), not as text: UAs
/// differ in how they spell parameters and escapes.
fn digest_uri_matches(credentials: &DigestCredentials, req: &Request) -> bool {
    let Ok(uri) = crate::sip::message::Uri::parse(credentials.uri.trim()) else {
        return false;
    };
    let req_uri = &req.uri;
    uri.scheme.eq_ignore_ascii_case(&req_uri.scheme)
        && uri.user == req_uri.user
        && uri.host.eq_ignore_ascii_case(&req_uri.host)
        && uri.port == req_uri.port
}

/// The transaction key of a request without an RFC 3261 branch (RFC 3261 §17.2.3).
fn rfc2543_key(req: &Request, via: &crate::sip::message::Via) -> TransactionKey {
    let to = req.headers.to().ok();
    let from = req.headers.from().ok();
    let request_uri = req.uri.to_string();
    let top_via = via.to_string();
    let sent_by = sent_by(via);
    let ids = Rfc2543Ids {
        request_uri: &request_uri,
        to_tag: to.as_ref().and_then(|t| t.tag()),
        from_tag: from.as_ref().and_then(|f| f.tag()),
        call_id: req.headers.call_id().unwrap_or(""),
        cseq: req.headers.cseq().map(|c| c.seq).unwrap_or(0),
        top_via: &top_via,
        sent_by: &sent_by,
    };
    TransactionKey::for_rfc2543_request(&ids, &req.method)
}

fn sent_by(via: &crate::sip::message::Via) -> String {
    match via.port {
        Some(p) => format!("{}:{p}", via.host),
        None => via.host.clone(),
    }
}

/// A challenge (401/407) to a non-INVITE request that carried no credentials is sent
/// statelessly (RFC 3261 §8.2.7): nothing is kept for Timer J. A REGISTER refresh is
/// two transactions (challenge, then the authenticated request), so this halves what a
/// registration flood holds in the transaction table. Requests that did carry
/// credentials keep their transaction, so a retransmitted wrong password is absorbed,
/// not counted twice against the source; an INVITE's challenge is ACKed, so it is
/// always stateful.
fn is_stateless_challenge(req: &Request, status: u16) -> bool {
    matches!(status, 401 | 407)
        && req.method != Method::Invite
        && req.headers.get("Authorization").is_none()
        && req.headers.get("Proxy-Authorization").is_none()
}

/// Add `received` (when the sent-by host is not the source address) and fill `rport`
/// (RFC 3581) in the top Via, and work out where responses go (RFC 3261 §18.2.2):
/// TCP → the same connection; UDP → the source address when `rport` was asked for (or
/// `force_rport`), else the source IP at the sent-by port (5060 by default).
fn stamp_via(req: &mut Request, source: SourceInfo, force_rport: bool) -> Option<SourceInfo> {
    let via = req.headers.top_via().ok()?;
    let ip = source.addr.ip();
    let host_is_source = via
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|h| h == ip);
    let wants_rport = via.rport.is_some();
    let mut extra = String::new();
    if !host_is_source || wants_rport {
        extra.push_str(&format!(";received={ip}"));
    }
    let header = req
        .headers
        .0
        .iter_mut()
        .find(|h| h.name.eq_ignore_ascii_case("via") || h.name.eq_ignore_ascii_case("v"))?;
    let (first, rest) = split_first_element(&header.value);
    let mut first = first.to_string();
    if wants_rport {
        first = fill_rport(&first, source.addr.port());
    }
    if !extra.is_empty() && !first.contains(";received=") {
        first.push_str(&extra);
    }
    header.value = match rest {
        Some(rest) => format!("{first},{rest}"),
        None => first,
    };
    let reply_to = match source.transport {
        Transport::Udp if !wants_rport && !force_rport => SourceInfo {
            addr: std::net::SocketAddr::new(ip, via.port.unwrap_or(5060)),
            transport: Transport::Udp,
        },
        _ => source,
    };
    Some(reply_to)
}

/// Split a header value at its first comma outside quotes and angle brackets.
fn split_first_element(value: &str) -> (&str, Option<&str>) {
    let mut in_quotes = false;
    let mut depth = 0u32;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => depth += 1,
            '>' if !in_quotes => depth = depth.saturating_sub(1),
            ',' if !in_quotes && depth == 0 => {
                return (&value[..i], Some(&value[i + 1..]));
            }
            _ => {}
        }
    }
    (value, None)
}

/// Replace a bare `;rport` parameter with `;rport=PORT`.
fn fill_rport(via: &str, port: u16) -> String {
    let mut out = String::with_capacity(via.len() + 8);
    for (i, part) in via.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        if i > 0 && part.trim().eq_ignore_ascii_case("rport") {
            out.push_str(&format!("rport={port}"));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Build a response to a request that did not parse, from its raw header lines, when the
/// five headers a response needs are there (RFC 4475 expects 400 for most invalid
/// requests). Responses to responses are never sent.
fn lenient_response(bytes: &[u8], status: u16, reason: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let start = lines.next()?.trim();
    if start.is_empty() || start.starts_with("SIP/") || !start.contains(' ') {
        return None;
    }
    let mut copied: Vec<String> = Vec::new();
    let mut have = [false; 5];
    for line in lines {
        if line.is_empty() || line.starts_with(' ') || line.starts_with('\t') {
            if line.is_empty() {
                break;
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => 0,
            "from" | "f" => 1,
            "to" | "t" => 2,
            "call-id" | "i" => 3,
            "cseq" => 4,
            _ => continue,
        };
        if slot != 0 && have[slot] {
            continue;
        }
        have[slot] = true;
        let canonical = ["Via", "From", "To", "Call-ID", "CSeq"][slot];
        let mut value = value.trim().to_string();
        if slot == 2 && !value.contains(";tag=") {
            value.push_str(&format!(";tag={}", new_tag()));
        }
        copied.push(format!("{canonical}: {value}"));
    }
    if !have.iter().all(|h| *h) {
        return None;
    }
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for line in copied {
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

fn binding_from_store(b: &StoredBinding, now: Instant, unix_ms: i64) -> Option<Binding> {
    let remaining = u64::try_from(b.expires_at.checked_sub(unix_ms)?).ok()?;
    let uri = crate::sip::message::Uri::parse(&b.contact).ok()?;
    let (user, domain) = b.aor.rsplit_once('@')?;
    Some(Binding {
        aor: Aor::new(user, domain),
        contact_uri: uri,
        expires_at: now + Duration::from_millis(remaining),
        q: b.q.and_then(|q| Q::parse(&format!("{q:.3}"))),
        call_id: b.call_id.clone(),
        cseq: u32::try_from(b.cseq).unwrap_or(0),
        source: SourceInfo {
            addr: b.source.parse().ok()?,
            transport: match b.transport.as_str() {
                "TCP" => Transport::Tcp,
                "TLS" => Transport::Tls,
                "WS" => Transport::Ws,
                "WSS" => Transport::Wss,
                _ => Transport::Udp,
            },
        },
        instance: None,
        reg_id: None,
        user_agent: b.user_agent.clone(),
    })
}

/// The call routing of the endpoint, in simulated time: INVITE → call, the shell's
/// answer, ACK/BYE/CANCEL routed to the leg, retransmissions absorbed, our BYE through a
/// client transaction, every call ended once and then forgotten.
#[cfg(test)]
mod call_tests {
    use super::*;
    use crate::sip::call_leg::{EndReason, Side};

    const CONFIG: &str = r#"
[server]
domain = "hotline.test"
sip_listen = "127.0.0.1:5060"

[[trunks]]
name = "carrier"
sources = ["192.0.2.1"]
city_header = "P-Called-City"

[[agents]]
id = "1001"
name = "a"
city = "jinan"
password = "pw"
roles = ["agent"]

[[cities]]
id = "jinan"
name = "济南"
area_codes = ["0531"]

[[test_extensions]]
number = "echo"
kind = "echo"
"#;
    const SDP: &str = "v=0\r\no=c 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n";

    fn endpoint(now: Instant) -> Endpoint {
        let config = Config::from_toml(CONFIG).expect("config");
        Endpoint::new(
            &config,
            Vec::new(),
            Arc::new(crate::sip::counters::NoCounters),
            now,
            0,
            Some(7),
        )
    }

    fn from(ip: [u8; 4]) -> SourceInfo {
        SourceInfo {
            addr: std::net::SocketAddr::from((ip, 5060)),
            transport: Transport::Udp,
        }
    }

    fn request(
        method: &str,
        branch: &str,
        call_id: &str,
        to_tag: &str,
        cseq: u32,
        body: &str,
    ) -> Vec<u8> {
        let to_tag = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} sip:12348@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:053188886666@192.0.2.1>;tag=caller\r\n\
             To: <sip:12348@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:caller@192.0.2.1:5060>\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Drain the endpoint: (texts transmitted, call events).
    fn drain(ep: &mut Endpoint) -> (Vec<String>, Vec<(CallHandle, CallEvent)>) {
        let mut sent = Vec::new();
        let mut events = Vec::new();
        while let Some(out) = ep.poll_output() {
            match out {
                Output::Transmit { bytes, .. } => {
                    sent.push(String::from_utf8_lossy(&bytes).into_owned());
                }
                Output::Call { call, event } => events.push((call, event)),
                Output::Store(_) | Output::AwaitCommit(_) => {}
            }
        }
        (sent, events)
    }

    /// Drain the endpoint: (texts transmitted, REGISTER answers waiting for a commit).
    fn drain_commits(ep: &mut Endpoint) -> (Vec<String>, Vec<CommitId>) {
        let mut sent = Vec::new();
        let mut commits = Vec::new();
        while let Some(out) = ep.poll_output() {
            match out {
                Output::Transmit { bytes, .. } => {
                    sent.push(String::from_utf8_lossy(&bytes).into_owned());
                }
                Output::AwaitCommit(id) => commits.push(id),
                Output::Store(_) | Output::Call { .. } => {}
            }
        }
        (sent, commits)
    }

    /// Drain like a shell whose database takes every write: the REGISTER answers that
    /// waited for a commit go out too.
    fn drain_stored(ep: &mut Endpoint, now: Instant) -> Vec<String> {
        let (mut sent, commits) = drain_commits(ep);
        for id in commits {
            ep.binding_commit_done(now, id, true);
            sent.extend(drain_commits(ep).0);
        }
        sent
    }

    fn statuses(sent: &[String]) -> Vec<u16> {
        sent.iter()
            .filter_map(|t| t.strip_prefix("SIP/2.0 "))
            .filter_map(|t| t.get(..3)?.parse().ok())
            .collect()
    }

    fn to_tag(response: &str) -> String {
        response
            .lines()
            .find(|l| l.starts_with("To:"))
            .and_then(|l| l.split("tag=").nth(1))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    #[test]
    fn the_trunks_city_header_reaches_the_call_layer() {
        let now = Instant::now();
        let mut ep = endpoint(now);
        let invite = String::from_utf8(request("INVITE", "z9hG4bK-hdr", "c-hdr", "", 1, SDP))
            .expect("utf8")
            .replacen(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nP-Called-City: 053212348\r\n",
                1,
            );
        ep.handle_message(now, from([192, 0, 2, 1]), invite.as_bytes());
        let (_, events) = drain(&mut ep);
        let [(_, CallEvent::Incoming(incoming))] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(incoming.carrier_city.as_deref(), Some("053212348"));
    }

    /// Overload: with `max_new_calls_per_sec = 10`, a burst of 15 new calls in one
    /// instant gets 10 admitted and 5 refused at once (503 + Retry-After, no call
    /// event); 300 ms later 3 more fit; a second later the full 10 again.
    #[test]
    fn new_calls_above_the_admission_rate_get_503_at_once() {
        let start = Instant::now();
        let config = CONFIG.replace(
            "[[trunks]]",
            "[sip]\nmax_new_calls_per_sec = 10\n\n[[trunks]]",
        );
        let mut ep = Endpoint::new(
            &Config::from_toml(&config).expect("config"),
            Vec::new(),
            Arc::new(crate::sip::counters::NoCounters),
            start,
            0,
            Some(7),
        );
        let mut n = 0;
        let mut offer = |ep: &mut Endpoint, at: Instant, calls: usize| {
            let mut admitted = 0;
            let mut refused = 0;
            for _ in 0..calls {
                n += 1;
                let (call_id, branch) = (format!("rate-{n}"), format!("z9hG4bK-rate-{n}"));
                // Fewer than the per-source cap on unconfirmed calls (100): only the
                // rate refuses them.
                ep.handle_message(
                    at,
                    from([192, 0, 2, 1]),
                    &request("INVITE", &branch, &call_id, "", 1, SDP),
                );
                let (sent, events) = drain(ep);
                if events
                    .iter()
                    .any(|(_, e)| matches!(e, CallEvent::Incoming(_)))
                {
                    admitted += 1;
                } else {
                    assert_eq!(statuses(&sent), [503], "{sent:?}");
                    assert!(sent[0].contains("Retry-After: 2\r\n"), "{}", sent[0]);
                    refused += 1;
                }
            }
            (admitted, refused)
        };
        assert_eq!(offer(&mut ep, start, 15), (10, 5));
        assert_eq!(
            offer(&mut ep, start + Duration::from_millis(300), 5),
            (3, 2)
        );
        assert_eq!(offer(&mut ep, start + Duration::from_secs(2), 15), (10, 5));
    }

    /// An endpoint whose trunk is 192.0.2.1 and 192.0.2.9, holding at most 3 unconfirmed
    /// calls per source.
    fn capped_endpoint(now: Instant) -> Endpoint {
        let config = CONFIG
            .replace(
                "[[trunks]]",
                "[sip]\nmax_unconfirmed_calls_per_source = 3\n\n[[trunks]]",
            )
            .replace(
                "sources = [\"192.0.2.1\"]",
                "sources = [\"192.0.2.1\", \"192.0.2.9\"]",
            );
        Endpoint::new(
            &Config::from_toml(&config).expect("config"),
            Vec::new(),
            Arc::new(crate::sip::counters::NoCounters),
            now,
            0,
            Some(7),
        )
    }

    /// A new INVITE from `source` (Call-ID and branch from `name`): the call's handle, or
    /// `None` with what was answered.
    fn offer(
        ep: &mut Endpoint,
        now: Instant,
        source: SourceInfo,
        name: &str,
    ) -> Result<CallHandle, Vec<String>> {
        ep.handle_message(
            now,
            source,
            &request("INVITE", &format!("z9hG4bK-{name}"), name, "", 1, SDP),
        );
        let (sent, events) = drain(ep);
        match events.as_slice() {
            [(call, CallEvent::Incoming(_))] => Ok(*call),
            [] => Err(sent),
            other => panic!("{other:?}"),
        }
    }

    /// A source's INVITEs that never confirm hold at most `max_unconfirmed_calls_per_source`
    /// calls; the next gets 503 + Retry-After; another source is not affected.
    #[test]
    fn unconfirmed_calls_from_one_source_are_capped() {
        let now = Instant::now();
        let mut ep = capped_endpoint(now);
        let trunk = from([192, 0, 2, 1]);
        for n in 0..3 {
            offer(&mut ep, now, trunk, &format!("flood-{n}")).expect("admitted");
        }
        assert_eq!(ep.unconfirmed_from(trunk.addr.ip()), 3);
        let refused = offer(&mut ep, now, trunk, "flood-3").expect_err("the fourth is refused");
        assert_eq!(statuses(&refused), [503], "{refused:?}");
        assert!(refused[0].contains("Retry-After: 5\r\n"), "{}", refused[0]);
        assert_eq!(ep.unconfirmed_from(trunk.addr.ip()), 3);
        // Another source is not affected.
        offer(&mut ep, now, from([192, 0, 2, 9]), "other").expect("admitted");
        assert_eq!(ep.unconfirmed_from(IpAddr::from([192, 0, 2, 9])), 1);
    }

    /// Issue 14: the cap keeps a count per source instead of scanning every call on each
    /// INVITE. The count follows the legs: an answered call stays unconfirmed until its
    /// ACK, a rejected or cancelled one leaves it at once, one whose 2xx is never ACKed
    /// leaves it at Timer H; back at 0 the source may call again, and once the calls are
    /// gone nothing is left in the table.
    #[test]
    fn the_unconfirmed_count_follows_the_legs_and_returns_to_zero() {
        let t0 = Instant::now();
        let mut ep = capped_endpoint(t0);
        let trunk = from([192, 0, 2, 1]);
        let ip = trunk.addr.ip();
        let acked = offer(&mut ep, t0, trunk, "acked").expect("admitted");
        let rejected = offer(&mut ep, t0, trunk, "rejected").expect("admitted");
        let never_acked = offer(&mut ep, t0, trunk, "never-acked").expect("admitted");
        assert_eq!(ep.unconfirmed_from(ip), 3);
        assert!(offer(&mut ep, t0, trunk, "refused").is_err());

        // Answered: still unconfirmed until the ACK.
        ep.call_answer(t0, acked, Bytes::from_static(b"v=0\r\n"))
            .expect("answer");
        let (sent, _) = drain(&mut ep);
        let tag = to_tag(
            sent.iter()
                .find(|t| t.starts_with("SIP/2.0 200"))
                .expect("200"),
        );
        assert_eq!(ep.unconfirmed_from(ip), 3);
        ep.handle_message(
            t0,
            trunk,
            &request("ACK", "z9hG4bK-ack", "acked", &tag, 1, ""),
        );
        drain(&mut ep);
        assert_eq!(ep.unconfirmed_from(ip), 2, "confirmed by its ACK");

        ep.call_reject(t0, rejected, 486).expect("reject");
        drain(&mut ep);
        assert_eq!(ep.unconfirmed_from(ip), 1, "a rejected call is not pending");
        offer(&mut ep, t0, trunk, "room-again").expect("room for one more");
        ep.handle_message(
            t0,
            trunk,
            &request("CANCEL", "z9hG4bK-room-again", "room-again", "", 1, ""),
        );
        drain(&mut ep);
        assert_eq!(
            ep.unconfirmed_from(ip),
            1,
            "a cancelled call is not pending"
        );

        // Answered but never ACKed: it ends at Timer H (64·T1) and leaves the count.
        ep.call_answer(t0, never_acked, Bytes::from_static(b"v=0\r\n"))
            .expect("answer");
        drain(&mut ep);
        assert_eq!(ep.unconfirmed_from(ip), 1);
        let mut t = t0;
        while ep.unconfirmed_from(ip) > 0 && t < t0 + Duration::from_secs(40) {
            t = ep
                .poll_timeout()
                .unwrap_or(t + Duration::from_secs(1))
                .max(t);
            ep.handle_timeout(t);
            drain(&mut ep);
        }
        assert_eq!(ep.unconfirmed_from(ip), 0, "ended at Timer H");
        assert!(
            t <= t0 + Duration::from_secs(33),
            "Timer H is 64·T1: {:?}",
            t - t0
        );

        // Back at 0: three new calls are admitted again, the fourth refused.
        for n in 0..3 {
            offer(&mut ep, t, trunk, &format!("again-{n}")).expect("admitted");
        }
        assert!(offer(&mut ep, t, trunk, "again-3").is_err());
        // All end (the caller hangs up the confirmed call; we end the others) and linger
        // out: no entry is left behind for the source.
        ep.handle_message(
            t,
            trunk,
            &request("BYE", "z9hG4bK-bye", "acked", &tag, 2, ""),
        );
        drain(&mut ep);
        let live: Vec<CallHandle> = ep.calls.keys().copied().collect();
        for call in live {
            let _ = ep.call_hangup(t, call);
        }
        drain(&mut ep);
        assert_eq!(ep.unconfirmed_from(ip), 0);
        let end = t + Duration::from_secs(70);
        while ep.call_count() > 0 && t < end {
            t = ep.poll_timeout().unwrap_or(end).max(t);
            ep.handle_timeout(t);
            drain(&mut ep);
        }
        assert_eq!(ep.call_count(), 0);
        assert!(ep.unconfirmed.is_empty(), "{:?}", ep.unconfirmed);
    }

    /// With `identity_header`, the caller's number is the one the carrier asserts; a
    /// call without it has no vouched-for number (no callback); without the setting,
    /// the From user is taken as the carrier's.
    #[test]
    fn the_trunks_identity_header_names_the_verified_caller() {
        let now = Instant::now();
        let config = CONFIG.replace(
            "city_header = \"P-Called-City\"",
            "city_header = \"P-Called-City\"\nidentity_header = \"P-Asserted-Identity\"",
        );
        let mut ep = Endpoint::new(
            &Config::from_toml(&config).expect("config"),
            Vec::new(),
            Arc::new(crate::sip::counters::NoCounters),
            now,
            0,
            Some(7),
        );
        let incoming_with = |ep: &mut Endpoint, call_id: &str, header: &str| {
            let invite = String::from_utf8(request(
                "INVITE",
                &format!("z9hG4bK-{call_id}"),
                call_id,
                "",
                1,
                SDP,
            ))
            .expect("utf8")
            .replacen(
                "Max-Forwards: 70\r\n",
                &format!("Max-Forwards: 70\r\n{header}"),
                1,
            );
            ep.handle_message(now, from([192, 0, 2, 1]), invite.as_bytes());
            let (_, events) = drain(ep);
            let [(_, CallEvent::Incoming(incoming))] = events.as_slice() else {
                panic!("{events:?}");
            };
            incoming.verified_caller.clone()
        };
        assert_eq!(
            incoming_with(
                &mut ep,
                "c-pai",
                "P-Asserted-Identity: <sip:+8613800001111@carrier;user=phone>\r\n"
            ),
            Some("+8613800001111".into())
        );
        assert_eq!(
            incoming_with(&mut ep, "c-nopai", ""),
            None,
            "no assertion: no callback"
        );
        let mut plain = endpoint(now);
        assert_eq!(
            incoming_with(&mut plain, "c-from", ""),
            Some("053188886666".into())
        );
    }

    /// A trunk INVITE answered by the shell; returns the call and our To tag.
    fn answered_call(ep: &mut Endpoint, now: Instant) -> (CallHandle, String) {
        ep.handle_message(
            now,
            from([192, 0, 2, 1]),
            &request("INVITE", "z9hG4bK-inv", "c1", "", 1, SDP),
        );
        let (_, events) = drain(ep);
        let [(call, CallEvent::Incoming(incoming))] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(incoming.dialled, "12348");
        assert_eq!(incoming.caller, "053188886666");
        assert_eq!(incoming.origin, CallOrigin::Trunk);
        assert_eq!(incoming.sdp, Bytes::from(SDP));
        assert_eq!(incoming.carrier_city, None, "no header sent");
        let call = *call;
        ep.call_ring(now, call).expect("ring");
        ep.call_answer(now, call, Bytes::from_static(b"v=0\r\n"))
            .expect("answer");
        let (sent, events) = drain(ep);
        assert_eq!(statuses(&sent), [180, 200]);
        assert!(sent[1].ends_with("v=0\r\n"), "our SDP in the 200");
        assert!(matches!(
            events.as_slice(),
            [(_, CallEvent::Leg(LegEvent::Answered { .. }))]
        ));
        (call, to_tag(&sent[1]))
    }

    #[test]
    fn replaces_checks_follow_rfc3891_section_3() {
        use LegState::*;
        assert_eq!(check_replaces(None, false), Err(481), "no such dialog");
        assert_eq!(check_replaces(Some((Ended, false)), false), Err(603));
        assert_eq!(check_replaces(Some((Terminating, true)), false), Err(603));
        assert_eq!(check_replaces(Some((Confirmed, false)), false), Ok(()));
        assert_eq!(check_replaces(Some((Confirmed, true)), true), Err(486));
        assert_eq!(check_replaces(Some((AwaitingAck, false)), true), Err(486));
        // An early dialog we did not initiate (we are its UAS) is not ours to replace.
        assert_eq!(check_replaces(Some((Early, false)), false), Err(481));
        assert_eq!(check_replaces(Some((Early, false)), true), Err(481));
        // One we initiated may be replaced, early-only or not.
        assert_eq!(check_replaces(Some((Early, true)), true), Ok(()));
        assert_eq!(check_replaces(Some((Calling, true)), false), Ok(()));
    }

    #[test]
    fn a_replaces_finds_the_dialog_by_call_id_and_tags_seen_from_our_side() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        let (call, tag) = answered_call(&mut ep, t0);
        let named = |to_tag: &str, from_tag: &str, early_only: bool| Replaces {
            call_id: "c1".into(),
            to_tag: to_tag.into(),
            from_tag: from_tag.into(),
            early_only,
        };
        // 200 sent, no ACK yet: a confirmed-for-replacement dialog (trunk leg: no agent).
        assert_eq!(
            ep.replaced_dialog(&named(&tag, "caller", false)),
            Ok(ReplacedDialog {
                handle: call,
                agent: None,
                outbound: false
            })
        );
        // The tags as the caller sees them (swapped) do not match.
        assert_eq!(ep.replaced_dialog(&named("caller", &tag, false)), Err(481));
        assert_eq!(ep.replaced_dialog(&named(&tag, "caller", true)), Err(486));
        let mut other = named(&tag, "caller", false);
        other.call_id = "c2".into();
        assert_eq!(ep.replaced_dialog(&other), Err(481));
        ep.handle_message(
            t0,
            from([192, 0, 2, 1]),
            &request("ACK", "z9hG4bK-ack", "c1", &tag, 1, ""),
        );
        ep.handle_message(
            t0,
            from([192, 0, 2, 1]),
            &request("BYE", "z9hG4bK-bye", "c1", &tag, 2, ""),
        );
        drain(&mut ep);
        // Ended but still lingering: 603 Declined.
        assert_eq!(ep.replaced_dialog(&named(&tag, "caller", false)), Err(603));
    }

    #[test]
    fn an_invite_with_two_replaces_headers_is_400_and_a_trunk_ignores_replaces() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        let two = String::from_utf8(request("INVITE", "z9hG4bK-r2", "c-r2", "", 1, SDP))
            .expect("utf8")
            .replacen(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nReplaces: a;to-tag=1;from-tag=2\r\nReplaces: b;to-tag=1;from-tag=2\r\n",
                1,
            );
        ep.handle_message(t0, from([192, 0, 2, 1]), two.as_bytes());
        let (sent, events) = drain(&mut ep);
        assert_eq!(statuses(&sent).last(), Some(&400), "{sent:?}");
        assert!(events.is_empty());
        // `Require: replaces` is supported; from the carrier the INVITE is a new call.
        let one = String::from_utf8(request("INVITE", "z9hG4bK-r1", "c-r1", "", 1, SDP))
            .expect("utf8")
            .replacen(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nRequire: replaces\r\nReplaces: a;to-tag=1;from-tag=2\r\n",
                1,
            );
        ep.handle_message(t0, from([192, 0, 2, 1]), one.as_bytes());
        let (_, events) = drain(&mut ep);
        let [(_, CallEvent::Incoming(incoming))] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(incoming.origin, CallOrigin::Trunk);
        assert_eq!(incoming.replaces, None);
    }

    #[test]
    fn trunk_call_is_answered_confirmed_by_ack_and_ended_by_bye_once() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        let (call, tag) = answered_call(&mut ep, t0);
        ep.handle_message(
            t0,
            from([192, 0, 2, 1]),
            &request("ACK", "z9hG4bK-ack", "c1", &tag, 1, ""),
        );
        let (_, events) = drain(&mut ep);
        assert_eq!(events, [(call, CallEvent::Leg(LegEvent::Confirmed))]);
        // No 2xx retransmission after the ACK.
        let later = t0 + Duration::from_secs(2);
        ep.handle_timeout(later);
        assert!(statuses(&drain(&mut ep).0).is_empty());
        ep.handle_message(
            later,
            from([192, 0, 2, 1]),
            &request("BYE", "z9hG4bK-bye", "c1", &tag, 2, ""),
        );
        let (sent, events) = drain(&mut ep);
        assert_eq!(statuses(&sent), [200]);
        assert_eq!(
            events,
            [(
                call,
                CallEvent::Leg(LegEvent::Ended {
                    reason: EndReason::RemoteHangup,
                    who_hung_up: Side::Remote
                })
            )]
        );
        // A retransmitted BYE is answered from the transaction, no second end.
        ep.handle_message(
            later,
            from([192, 0, 2, 1]),
            &request("BYE", "z9hG4bK-bye", "c1", &tag, 2, ""),
        );
        let (sent, events) = drain(&mut ep);
        assert_eq!(statuses(&sent), [200]);
        assert!(events.is_empty());
        // The call lingers for stragglers, then is forgotten.
        ep.handle_timeout(later + Duration::from_secs(40));
        drain(&mut ep);
        assert_eq!(ep.call_count(), 0);
    }

    #[test]
    fn draining_refuses_new_calls_503_and_ends_calls_in_progress_with_a_reason() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        let (call, tag) = answered_call(&mut ep, t0);
        ep.handle_message(
            t0,
            from([192, 0, 2, 1]),
            &request("ACK", "z9hG4bK-ack", "c1", &tag, 1, ""),
        );
        drain(&mut ep);
        ep.start_draining(30);
        assert!(ep.is_draining());
        // A new call: 503 with Retry-After, no call event.
        ep.handle_message(
            t0,
            from([192, 0, 2, 1]),
            &request("INVITE", "z9hG4bK-new", "c2", "", 1, SDP),
        );
        let (sent, events) = drain(&mut ep);
        assert_eq!(statuses(&sent), [503], "{sent:?}");
        assert!(sent[0].contains("Retry-After: 30\r\n"), "{}", sent[0]);
        assert!(events.is_empty(), "{events:?}");
        // OPTIONS is still answered.
        ep.handle_message(
            t0,
            from([192, 0, 2, 1]),
            &request("OPTIONS", "z9hG4bK-opt", "c3", "", 1, ""),
        );
        assert_eq!(statuses(&drain(&mut ep).0), [200]);
        // The call in progress goes on (its BYE would be answered) until the drain
        // timeout: then BYE with a Reason, and the end says why.
        assert_eq!(ep.shutdown_calls(t0), 1);
        let (sent, _) = drain(&mut ep);
        let bye = sent
            .iter()
            .find(|t| t.starts_with("BYE "))
            .expect("BYE sent");
        assert!(
            bye.contains("Reason: SIP;cause=503;text=\"server shutting down\"\r\n"),
            "{bye}"
        );
        let via_branch = bye
            .lines()
            .find(|l| l.starts_with("Via:"))
            .and_then(|l| l.split("branch=").nth(1))
            .map(|b| b.split(';').next().unwrap_or(b).trim().to_string())
            .expect("branch");
        let cseq = bye
            .lines()
            .find(|l| l.starts_with("CSeq:"))
            .expect("cseq")
            .to_string();
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={via_branch}\r\n\
             From: <sip:12348@127.0.0.1>;tag={tag}\r\nTo: <sip:053188886666@192.0.2.1>;tag=caller\r\n\
             Call-ID: c1\r\n{cseq}\r\nContent-Length: 0\r\n\r\n"
        );
        ep.handle_message(t0, from([192, 0, 2, 1]), ok.as_bytes());
        let (_, events) = drain(&mut ep);
        assert_eq!(
            events,
            [(
                call,
                CallEvent::Leg(LegEvent::Ended {
                    reason: EndReason::Shutdown,
                    who_hung_up: Side::Local
                })
            )]
        );
    }

    #[test]
    fn unacknowledged_200_is_retransmitted_then_bye_and_the_call_ends_with_ack_timeout() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        let (call, _) = answered_call(&mut ep, t0);
        let mut retransmitted = 0;
        let mut byes = 0;
        let mut ended = Vec::new();
        let mut now = t0;
        // 64·T1 without ACK → BYE; nobody answers it → 64·T1 later the leg ends anyway.
        while now < t0 + Duration::from_secs(70) {
            now += Duration::from_millis(100);
            ep.handle_timeout(now);
            let (sent, events) = drain(&mut ep);
            retransmitted += statuses(&sent).iter().filter(|s| **s == 200).count();
            byes += sent.iter().filter(|t| t.starts_with("BYE ")).count();
            ended.extend(events);
        }
        assert!(
            retransmitted >= 5,
            "2xx retransmitted {retransmitted} times"
        );
        assert!(byes >= 1, "BYE after the ACK timeout");
        assert_eq!(
            ended,
            [(
                call,
                CallEvent::Leg(LegEvent::Ended {
                    reason: EndReason::AckTimeout,
                    who_hung_up: Side::Local
                })
            )]
        );
        ep.handle_timeout(now + Duration::from_secs(40));
        drain(&mut ep);
        assert_eq!(ep.call_count(), 0, "forgotten after the linger");
    }

    #[test]
    fn cancel_before_the_answer_gets_200_and_the_invite_487() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        ep.handle_message(
            t0,
            from([192, 0, 2, 1]),
            &request("INVITE", "z9hG4bK-inv", "c2", "", 1, SDP),
        );
        let (_, events) = drain(&mut ep);
        let call = events.first().map(|(c, _)| *c).expect("call");
        // A retransmitted INVITE is not a second call.
        ep.handle_message(
            t0,
            from([192, 0, 2, 1]),
            &request("INVITE", "z9hG4bK-inv", "c2", "", 1, SDP),
        );
        assert!(drain(&mut ep).1.is_empty());
        ep.handle_message(
            t0,
            from([192, 0, 2, 1]),
            &request("CANCEL", "z9hG4bK-inv", "c2", "", 1, ""),
        );
        let (sent, events) = drain(&mut ep);
        assert_eq!(statuses(&sent), [200, 487]);
        assert_eq!(
            events,
            [(
                call,
                CallEvent::Leg(LegEvent::Ended {
                    reason: EndReason::Cancelled,
                    who_hung_up: Side::Remote
                })
            )]
        );
        // The shell's late answer is refused, not sent.
        assert!(
            ep.call_answer(t0, call, Bytes::from_static(b"v=0\r\n"))
                .is_err()
        );
        assert!(statuses(&drain(&mut ep).0).is_empty());
    }

    #[test]
    fn our_hangup_sends_bye_and_ends_when_it_is_answered() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        let (call, tag) = answered_call(&mut ep, t0);
        ep.handle_message(
            t0,
            from([192, 0, 2, 1]),
            &request("ACK", "z9hG4bK-ack", "c1", &tag, 1, ""),
        );
        drain(&mut ep);
        ep.call_hangup(t0, call).expect("hangup");
        let (sent, events) = drain(&mut ep);
        let bye = sent
            .iter()
            .find(|t| t.starts_with("BYE "))
            .expect("BYE sent");
        assert!(events.is_empty(), "not ended before the BYE is answered");
        // Answer the BYE: 200 with its Via/CSeq.
        let via = bye.lines().find(|l| l.starts_with("Via:")).expect("via");
        let cseq = bye.lines().find(|l| l.starts_with("CSeq:")).expect("cseq");
        let from_line = bye.lines().find(|l| l.starts_with("From:")).expect("from");
        let to_line = bye.lines().find(|l| l.starts_with("To:")).expect("to");
        let ok = format!(
            "SIP/2.0 200 OK\r\n{via}\r\n{from_line}\r\n{to_line}\r\nCall-ID: c1\r\n{cseq}\r\nContent-Length: 0\r\n\r\n"
        );
        ep.handle_message(t0, from([192, 0, 2, 1]), ok.as_bytes());
        let (_, events) = drain(&mut ep);
        assert_eq!(
            events,
            [(
                call,
                CallEvent::Leg(LegEvent::Ended {
                    reason: EndReason::LocalHangup,
                    who_hung_up: Side::Local
                })
            )]
        );
    }

    fn register(branch: &str, authorization: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:1001@127.0.0.1>\r\n\
             Call-ID: reg-1\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@192.0.2.1:5060>\r\n\
             {authorization}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn nonce(challenge: &str) -> String {
        challenge
            .split("nonce=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn a_challenge_to_a_request_without_credentials_holds_no_transaction() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        ep.handle_message(t0, from([192, 0, 2, 1]), &register("z9hG4bK-r1", ""));
        let (sent, _) = drain(&mut ep);
        assert_eq!(statuses(&sent), [401]);
        assert_eq!(ep.transactions.len(), 0, "nothing kept for Timer J");
        // The 401 was lost and the REGISTER comes again: a fresh challenge.
        let later = t0 + Duration::from_millis(500);
        ep.handle_message(later, from([192, 0, 2, 1]), &register("z9hG4bK-r1", ""));
        let (again, _) = drain(&mut ep);
        assert_eq!(statuses(&again), [401]);
        assert!(!nonce(&again[0]).is_empty());
        assert_ne!(nonce(&sent[0]), nonce(&again[0]));
        assert_eq!(ep.transactions.len(), 0);

        // With credentials (here a nonce we never issued) the answer stays stateful: a
        // retransmission gets the same bytes from the transaction, it is not judged again.
        let credentials = format!(
            "Authorization: Digest username=\"1001\", realm=\"hotline.test\", \
             nonce=\"{}x\", uri=\"sip:127.0.0.1\", \
             response=\"00000000000000000000000000000000\"\r\n",
            nonce(&sent[0])
        );
        ep.handle_message(
            later,
            from([192, 0, 2, 1]),
            &register("z9hG4bK-r2", &credentials),
        );
        let (judged, _) = drain(&mut ep);
        assert_eq!(judged.len(), 1);
        assert_eq!(ep.transactions.len(), 1, "kept Completed for Timer J");
        ep.handle_message(
            later,
            from([192, 0, 2, 1]),
            &register("z9hG4bK-r2", &credentials),
        );
        let (resent, _) = drain(&mut ep);
        assert_eq!(resent, judged);
    }

    /// RFC 2543 requests (no magic cookie; here no branch at all, as RFC 4475 `inv2543`)
    /// are matched by Request-URI, tags, Call-ID, CSeq and top Via, not by Via alone.
    #[test]
    fn cookieless_requests_are_matched_by_rfc3261_17_2_3_fields_not_via_alone() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        let options = |call_id: &str, cseq: u32| {
            String::from_utf8(request("OPTIONS", "x", call_id, "", cseq, ""))
                .expect("utf8")
                .replace(";branch=x", "")
        };
        let source = from([192, 0, 2, 1]);
        ep.handle_message(t0, source, options("old-1", 1).as_bytes());
        let (first, _) = drain(&mut ep);
        assert_eq!(statuses(&first), [200]);
        // Another request on the same Via: a new transaction, answered with its own Call-ID.
        ep.handle_message(
            t0 + Duration::from_millis(10),
            source,
            options("old-2", 1).as_bytes(),
        );
        let (second, _) = drain(&mut ep);
        assert_eq!(statuses(&second), [200]);
        assert!(second[0].contains("Call-ID: old-2"), "{}", second[0]);
        // Same Call-ID, next CSeq: new as well.
        ep.handle_message(
            t0 + Duration::from_millis(20),
            source,
            options("old-1", 2).as_bytes(),
        );
        let (third, _) = drain(&mut ep);
        assert!(third[0].contains("CSeq: 2 OPTIONS"), "{}", third[0]);
        // A true retransmission is absorbed: the same answer again, not processed twice.
        let created = ep.transactions.counters().non_invite_server.created;
        ep.handle_message(
            t0 + Duration::from_millis(30),
            source,
            options("old-1", 1).as_bytes(),
        );
        let (again, _) = drain(&mut ep);
        assert_eq!(again, first);
        assert_eq!(
            ep.transactions.counters().non_invite_server.created,
            created
        );
    }

    #[test]
    fn cookieless_ack_of_a_failure_is_absorbed_by_its_invite_transaction() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        let source = from([198, 51, 100, 9]);
        let no_branch = |text: Vec<u8>| {
            String::from_utf8(text)
                .expect("utf8")
                .replace(";branch=x", "")
        };
        let invite = no_branch(request("INVITE", "x", "c2543", "", 1, SDP));
        ep.handle_message(t0, source, invite.as_bytes());
        let (sent, _) = drain(&mut ep);
        let status = statuses(&sent)[0];
        assert!(status >= 400, "{}", sent[0]);
        let tag = to_tag(&sent[0]);
        let ack = no_branch(request("ACK", "x", "c2543", &tag, 1, ""));
        ep.handle_message(t0 + Duration::from_millis(10), source, ack.as_bytes());
        drain(&mut ep);
        assert_eq!(ep.transactions.counters().retransmissions_absorbed, 1);
        // A second INVITE from the same Via with another Call-ID is new, not a repeat.
        let other = no_branch(request("INVITE", "x", "c2543-b", "", 1, SDP));
        ep.handle_message(t0 + Duration::from_millis(20), source, other.as_bytes());
        let (sent, _) = drain(&mut ep);
        assert!(sent[0].contains("Call-ID: c2543-b"), "{}", sent[0]);
        assert_eq!(ep.transactions.counters().invite_server.created, 2);
    }

    #[test]
    fn only_trunks_call_the_hotline_and_test_extensions_need_an_agent() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        ep.handle_message(
            t0,
            from([198, 51, 100, 9]),
            &request("INVITE", "z9hG4bK-x1", "c3", "", 1, SDP),
        );
        let (sent, events) = drain(&mut ep);
        // Challenged like a test extension: the status tells a scanner nothing.
        assert_eq!(statuses(&sent), [401]);
        assert!(events.is_empty());
        let mut to_echo =
            String::from_utf8(request("INVITE", "z9hG4bK-x2", "c4", "", 1, SDP)).expect("utf8");
        to_echo = to_echo.replacen("sip:12348@", "sip:echo@", 1);
        ep.handle_message(t0, from([198, 51, 100, 9]), to_echo.as_bytes());
        let (sent, events) = drain(&mut ep);
        assert_eq!(statuses(&sent), [401]);
        assert!(sent[0].contains("WWW-Authenticate: Digest"));
        assert!(events.is_empty());
    }

    /// A REGISTER for `user` (Request-URI `sip:127.0.0.1`), with an optional
    /// Authorization line.
    fn register_for(user: &str, branch: &str, authorization: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=a\r\nTo: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: reg-{user}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@198.51.100.7:5060>\r\n\
             {authorization}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// The Authorization line answering the MD5 challenge in `challenge_response`.
    fn authorization(
        challenge_response: &str,
        method: &str,
        uri: &str,
        user: &str,
        password: &str,
    ) -> String {
        use crate::sip::auth::{ResponseInputs, compute_response, ha1};
        let challenge = challenge_response
            .lines()
            .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("algorithm=MD5"))
            .expect("an MD5 challenge");
        let param = |name: &str| {
            challenge
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_string()
        };
        let (nonce, opaque) = (param("nonce"), param("opaque"));
        let user_ha1 = ha1(DigestAlgorithm::Md5, user, "hotline.test", password);
        let response = compute_response(&ResponseInputs {
            algorithm: DigestAlgorithm::Md5,
            ha1: &user_ha1,
            nonce: &nonce,
            nc: "00000001",
            cnonce: "c0ffee",
            qop: "auth",
            method,
            uri,
        });
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"hotline.test\", \
             nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, \
             cnonce=\"c0ffee\", qop=auth, nc=00000001, opaque=\"{opaque}\"\r\n"
        )
    }

    fn phone() -> SourceInfo {
        from([198, 51, 100, 7])
    }

    /// An agent whose phone registered over TLS is called over that flow, with our TLS
    /// address in Via and Contact, so that its ACK and BYE come over TLS too; over UDP
    /// nothing changes.
    #[test]
    fn a_phone_on_tls_is_called_with_our_tls_contact() {
        let t0 = Instant::now();
        let mut ep = endpoint(t0);
        ep.set_local_addr("192.0.2.100:5060".parse().expect("addr"));
        ep.set_local_tls_addr("192.0.2.100:5061".parse().expect("addr"));
        let over_tls = SourceInfo {
            addr: "198.51.100.7:40001".parse().expect("addr"),
            transport: Transport::Tls,
        };
        let target = |source: SourceInfo| AgentContact {
            agent: "1001".into(),
            contact: crate::sip::message::Uri::parse("sip:1001@198.51.100.7:40002;transport=tls")
                .expect("uri"),
            source,
        };
        ep.call_dial(
            t0,
            &target(over_tls),
            "12348",
            Bytes::from_static(SDP.as_bytes()),
        );
        let mut invites = Vec::new();
        while let Some(out) = ep.poll_output() {
            if let Output::Transmit { to, bytes } = out {
                invites.push((to, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        let [(to, invite)] = invites.as_slice() else {
            panic!("one INVITE: {invites:?}");
        };
        assert_eq!(*to, over_tls, "sent over the phone's own TLS flow");
        assert!(
            invite.contains("Via: SIP/2.0/TLS 192.0.2.100:5061;"),
            "{invite}"
        );
        assert!(
            invite.contains("Contact: <sip:hotline@192.0.2.100:5061;transport=tls>"),
            "{invite}"
        );
        ep.call_dial(
            t0,
            &target(phone()),
            "12348",
            Bytes::from_static(SDP.as_bytes()),
        );
        let (sent, _) = drain(&mut ep);
        assert!(
            sent.iter()
                .any(|m| m.contains("Contact: <sip:hotline@192.0.2.100:5060>")),
            "{sent:?}"
        );
    }

    /// One failed REGISTER round (challenge, wrong password) for `user` from `source`;
    /// the status of the second answer, `None` when dropped.
    fn fail_register(
        ep: &mut Endpoint,
        now: Instant,
        source: SourceInfo,
        user: &str,
        n: usize,
    ) -> Option<u16> {
        ep.handle_message(
            now,
            source,
            &register_for(user, &format!("z9hG4bK-c{user}-{n}"), ""),
        );
        let (sent, _) = drain(ep);
        let challenge = sent.first()?;
        let auth = authorization(challenge, "REGISTER", "sip:127.0.0.1", user, "wrong");
        ep.handle_message(
            now,
            source,
            &register_for(user, &format!("z9hG4bK-a{user}-{n}"), &auth),
        );
        let (sent, _) = drain(ep);
        statuses(&sent).first().copied()
    }

    /// Issue 14: failures are counted per (source, user). Ten for one user ban that user
    /// from that source only; fifty over many users ban the source.
    #[test]
    fn failures_ban_one_user_from_a_source_and_many_users_ban_the_source() {
        // Nonces dated at the clock anchor itself are stale: start a little later.
        let start = Instant::now();
        let mut ep = endpoint(start);
        let t0 = start + Duration::from_secs(1);
        for n in 0..10 {
            assert_eq!(
                fail_register(&mut ep, t0, phone(), "1001", n),
                Some(401),
                "try {n}"
            );
        }
        ep.handle_message(t0, phone(), &register_for("1001", "z9hG4bK-after", ""));
        let (sent, _) = drain(&mut ep);
        assert!(sent.is_empty(), "1001 is banned from there: {sent:?}");
        // Another phone behind the same NAT is still served.
        ep.handle_message(t0, phone(), &register_for("1002", "z9hG4bK-other", ""));
        let (sent, _) = drain(&mut ep);
        assert_eq!(statuses(&sent), [401]);
        // A scanner rotating names: 40 more failures (50 in all) ban the whole source.
        for n in 0..40 {
            assert_eq!(
                fail_register(&mut ep, t0, phone(), &format!("u{n}"), n),
                Some(401)
            );
        }
        ep.handle_message(t0, phone(), &register_for("1002", "z9hG4bK-late", ""));
        let (sent, _) = drain(&mut ep);
        assert!(sent.is_empty(), "source banned: {sent:?}");
    }

    /// Issue 14: svcrack from the carrier's address banned it and stopped 12348 calls.
    /// A trunk address is never banned as a whole; and a banned source keeps its calls.
    #[test]
    fn a_trunk_is_never_banned_and_a_banned_source_keeps_its_calls() {
        // Nonces dated at the clock anchor itself are stale: start a little later.
        let start = Instant::now();
        let mut ep = endpoint(start);
        let t0 = start + Duration::from_secs(1);
        let trunk = from([192, 0, 2, 1]);
        for n in 0..60 {
            fail_register(&mut ep, t0, trunk, &format!("u{n}"), n);
        }
        ep.handle_message(
            t0,
            trunk,
            &request("INVITE", "z9hG4bK-t1", "c-t1", "", 1, SDP),
        );
        let (_, events) = drain(&mut ep);
        assert!(
            matches!(events.as_slice(), [(_, CallEvent::Incoming(_))]),
            "{events:?}"
        );

        // An agent's call to a test extension from a phone, then a scanner on its NAT.
        let echo = |method: &str, branch: &str, auth: &str| {
            String::from_utf8(request(method, branch, "c-echo", "", 1, SDP))
                .expect("utf8")
                .replacen("sip:12348@", "sip:echo@", 1)
                .replacen(
                    "Max-Forwards: 70\r\n",
                    &format!("Max-Forwards: 70\r\n{auth}"),
                    1,
                )
        };
        ep.handle_message(t0, phone(), echo("INVITE", "z9hG4bK-e1", "").as_bytes());
        let (sent, _) = drain(&mut ep);
        assert_eq!(statuses(&sent), [401]);
        let auth = authorization(&sent[0], "INVITE", "sip:echo@127.0.0.1", "1001", "pw");
        ep.handle_message(t0, phone(), echo("INVITE", "z9hG4bK-e2", &auth).as_bytes());
        let (_, events) = drain(&mut ep);
        assert!(
            matches!(events.as_slice(), [(_, CallEvent::Incoming(_))]),
            "{events:?}"
        );
        for n in 0..50 {
            fail_register(&mut ep, t0, phone(), &format!("s{n}"), n);
        }
        ep.handle_message(
            t0,
            phone(),
            &request("OPTIONS", "z9hG4bK-o1", "c-o1", "", 1, ""),
        );
        assert!(drain(&mut ep).0.is_empty(), "the phone's address is banned");
        // Its call goes on: the CANCEL is answered.
        let cancel = echo("CANCEL", "z9hG4bK-e2", "");
        ep.handle_message(t0, phone(), cancel.as_bytes());
        let (sent, _) = drain(&mut ep);
        assert!(statuses(&sent).contains(&200), "{sent:?}");
    }

    /// Issue 14: after a restart (new secret) phones answer the old challenge correctly;
    /// each gets `stale=true` and none counts as a failure.
    #[test]
    fn a_correct_answer_to_a_challenge_from_before_a_restart_is_stale_and_not_counted() {
        let start = Instant::now();
        let mut before = endpoint(start);
        let t0 = start + Duration::from_secs(1);
        before.handle_message(t0, phone(), &register_for("1001", "z9hG4bK-b1", ""));
        let (sent, _) = drain(&mut before);
        let auth = authorization(&sent[0], "REGISTER", "sip:127.0.0.1", "1001", "pw");
        let t1 = t0 + Duration::from_secs(5);
        let config = Config::from_toml(CONFIG).expect("config");
        let mut after = Endpoint::new(
            &config,
            Vec::new(),
            Arc::new(crate::sip::counters::NoCounters),
            t1,
            5_000,
            Some(8),
        );
        for n in 0..11 {
            after.handle_message(
                t1,
                phone(),
                &register_for("1001", &format!("z9hG4bK-s{n}"), &auth),
            );
            let (sent, _) = drain(&mut after);
            assert_eq!(statuses(&sent), [401], "phone {n}: {sent:?}");
            assert!(sent[0].contains("stale=true"), "phone {n}: {}", sent[0]);
        }
        let fresh = authorization(
            &{
                after.handle_message(t1, phone(), &register_for("1001", "z9hG4bK-f0", ""));
                drain(&mut after).0.remove(0)
            },
            "REGISTER",
            "sip:127.0.0.1",
            "1001",
            "pw",
        );
        after.handle_message(t1, phone(), &register_for("1001", "z9hG4bK-f1", &fresh));
        let sent = drain_stored(&mut after, t1);
        assert_eq!(statuses(&sent), [200], "{sent:?}");
    }

    /// An authenticated REGISTER of 1001 from the phone (the challenge answered), and the
    /// time after it.
    fn authorized_register(ep: &mut Endpoint, start: Instant, branch: &str) -> (Vec<u8>, Instant) {
        let t0 = start + Duration::from_secs(1);
        ep.handle_message(t0, phone(), &register_for("1001", "z9hG4bK-ch", ""));
        let (sent, _) = drain(ep);
        let auth = authorization(&sent[0], "REGISTER", "sip:127.0.0.1", "1001", "pw");
        (register_for("1001", branch, &auth), t0)
    }

    /// Issue 14: a REGISTER's 200 says its binding is stored. While the commit is pending
    /// the transaction stays `Trying`: retransmissions (T1, 2·T1, 4·T1) get no final
    /// answer (they used to get the 200 the transaction already held); the 200 leaves once
    /// the commit is reported, and later retransmissions get that same 200.
    #[test]
    fn a_retransmitted_register_gets_no_200_before_the_commit() {
        let start = Instant::now();
        let mut ep = endpoint(start);
        let (register, t0) = authorized_register(&mut ep, start, "z9hG4bK-p1");
        ep.handle_message(t0, phone(), &register);
        let (sent, commits) = drain_commits(&mut ep);
        assert!(sent.is_empty(), "answered before the commit: {sent:?}");
        let [commit] = commits.as_slice() else {
            panic!("{commits:?}");
        };
        assert_eq!(ep.pending_commit_count(), 1);
        let mut t = t0;
        for wait_ms in [500, 1000, 2000] {
            t += Duration::from_millis(wait_ms);
            ep.handle_timeout(t);
            ep.handle_message(t, phone(), &register);
            let (sent, commits) = drain_commits(&mut ep);
            assert!(
                statuses(&sent).iter().all(|s| *s < 200),
                "a final answer before the commit: {sent:?}"
            );
            assert!(commits.is_empty(), "a retransmission is not a new commit");
        }
        ep.binding_commit_done(t, *commit, true);
        let (sent, _) = drain_commits(&mut ep);
        assert_eq!(statuses(&sent), [200], "{sent:?}");
        assert!(
            sent[0].contains("Contact: <sip:1001@198.51.100.7:5060>"),
            "{}",
            sent[0]
        );
        assert_eq!(ep.pending_commit_count(), 0);
        ep.handle_message(t + Duration::from_millis(100), phone(), &register);
        let (again, _) = drain_commits(&mut ep);
        assert_eq!(again, sent, "the retransmission gets the same 200");
    }

    /// Issue 14: when the binding could not be stored (full disk, database too slow) the
    /// REGISTER gets 503 with Retry-After and no Contact, and so do its retransmissions:
    /// never the 200 the registrar had in mind.
    #[test]
    fn a_register_whose_binding_was_not_stored_gets_503_also_when_retransmitted() {
        let start = Instant::now();
        let mut ep = endpoint(start);
        let (register, t0) = authorized_register(&mut ep, start, "z9hG4bK-p2");
        ep.handle_message(t0, phone(), &register);
        let (sent, commits) = drain_commits(&mut ep);
        assert!(sent.is_empty(), "{sent:?}");
        ep.binding_commit_done(t0, commits[0], false);
        let (sent, _) = drain_commits(&mut ep);
        assert_eq!(statuses(&sent), [503], "{sent:?}");
        assert!(sent[0].contains("Retry-After: 10\r\n"), "{}", sent[0]);
        assert!(sent[0].contains("CSeq: 1 REGISTER\r\n"), "{}", sent[0]);
        assert!(!sent[0].contains("Contact"), "{}", sent[0]);
        for n in 1..=3 {
            ep.handle_message(t0 + Duration::from_millis(500 * n), phone(), &register);
            let (again, _) = drain_commits(&mut ep);
            assert_eq!(again, sent, "retransmission {n}");
        }
        // A report for an answer already sent (or unknown) changes nothing.
        ep.binding_commit_done(t0, commits[0], true);
        assert!(drain_commits(&mut ep).0.is_empty());
    }

    /// Issue 14 item 11: the digest `uri` must name the Request-URI (RFC 3261 §22.4).
    #[test]
    fn credentials_for_another_uri_are_refused() {
        // Nonces dated at the clock anchor itself are stale: start a little later.
        let start = Instant::now();
        let mut ep = endpoint(start);
        let t0 = start + Duration::from_secs(1);
        ep.handle_message(t0, phone(), &register_for("1001", "z9hG4bK-u1", ""));
        let (sent, _) = drain(&mut ep);
        let elsewhere = authorization(&sent[0], "REGISTER", "sip:other.example", "1001", "pw");
        ep.handle_message(t0, phone(), &register_for("1001", "z9hG4bK-u2", &elsewhere));
        let (sent, _) = drain(&mut ep);
        assert_eq!(statuses(&sent), [400], "{sent:?}");
        // Spelled differently but the same URI (host case, quoting): accepted.
        ep.handle_message(t0, phone(), &register_for("1001", "z9hG4bK-u3", ""));
        let (sent, _) = drain(&mut ep);
        let same = authorization(&sent[0], "REGISTER", "SIP:127.0.0.1", "1001", "pw");
        ep.handle_message(t0, phone(), &register_for("1001", "z9hG4bK-u4", &same));
        let sent = drain_stored(&mut ep, t0);
        assert_eq!(statuses(&sent), [200], "{sent:?}");
    }

    /// Issue 14 item 11: a trunk configured with a port and transport is only that flow;
    /// anything else from its address is an outside source.
    #[test]
    fn a_trunk_with_port_and_transport_is_only_that_flow() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let config = CONFIG.replace(
            "city_header = \"P-Called-City\"",
            "city_header = \"P-Called-City\"\nsource_port = 5060\nsource_transport = \"udp\"",
        );
        let config = Config::from_toml(&config).expect("config");
        let mut ep = Endpoint::new(
            &config,
            Vec::new(),
            Arc::new(crate::sip::counters::NoCounters),
            t0,
            0,
            Some(7),
        );
        let at = |port: u16, transport: Transport| SourceInfo {
            addr: std::net::SocketAddr::from(([192, 0, 2, 1], port)),
            transport,
        };
        for (n, source) in [at(5062, Transport::Udp), at(5060, Transport::Tcp)]
            .into_iter()
            .enumerate()
        {
            let invite = request(
                "INVITE",
                &format!("z9hG4bK-p{n}"),
                &format!("c-p{n}"),
                "",
                1,
                SDP,
            );
            ep.handle_message(t0, source, &invite);
            let (sent, events) = drain(&mut ep);
            assert_eq!(statuses(&sent), [401], "{source:?}");
            assert!(events.is_empty());
        }
        ep.handle_message(
            t0,
            at(5060, Transport::Udp),
            &request("INVITE", "z9hG4bK-p9", "c-p9", "", 1, SDP),
        );
        let (_, events) = drain(&mut ep);
        assert!(
            matches!(events.as_slice(), [(_, CallEvent::Incoming(_))]),
            "{events:?}"
        );
    }

    /// Issue 14 item 11: from an outside source every INVITE is challenged, and only
    /// after authentication is the number judged: 403 for the hotline, a call for a
    /// test extension.
    #[test]
    fn an_authenticated_agent_is_refused_the_hotline_and_reaches_a_test_extension() {
        // Nonces dated at the clock anchor itself are stale: start a little later.
        let start = Instant::now();
        let mut ep = endpoint(start);
        let t0 = start + Duration::from_secs(1);
        let invite = |number: &str, branch: &str, auth: &str| {
            String::from_utf8(request(
                "INVITE",
                branch,
                &format!("c-{branch}"),
                "",
                1,
                SDP,
            ))
            .expect("utf8")
            .replacen("sip:12348@", &format!("sip:{number}@"), 1)
            .replacen(
                "Max-Forwards: 70\r\n",
                &format!("Max-Forwards: 70\r\n{auth}"),
                1,
            )
        };
        for (number, want) in [("12348", None), ("echo", Some(()))] {
            ep.handle_message(
                t0,
                phone(),
                invite(number, &format!("z9hG4bK-{number}-1"), "").as_bytes(),
            );
            let (sent, _) = drain(&mut ep);
            assert_eq!(statuses(&sent), [401], "{number}");
            let uri = format!("sip:{number}@127.0.0.1");
            let auth = authorization(&sent[0], "INVITE", &uri, "1001", "pw");
            ep.handle_message(
                t0,
                phone(),
                invite(number, &format!("z9hG4bK-{number}-2"), &auth).as_bytes(),
            );
            let (sent, events) = drain(&mut ep);
            match want {
                None => {
                    assert_eq!(statuses(&sent), [403], "{number}");
                    assert!(events.is_empty());
                }
                Some(()) => assert!(
                    matches!(events.as_slice(), [(_, CallEvent::Incoming(_))]),
                    "{events:?}"
                ),
            }
        }
    }
}
