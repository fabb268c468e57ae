//! The B2BUA's call legs, sans-IO: [`InboundLeg`] (UAS: the caller's INVITE from the trunk)
//! and [`OutboundLeg`] (UAC: our INVITE to an agent or a callback number).
//!
//! # Calling contract
//! 1. Feed an input with the current time: `handle_request`, `handle_response`,
//!    `handle_transaction_timeout`, an action (`answer`, `hangup`, `cancel` …), or
//!    `handle_timeout(now)` once `now >= poll_timeout()`.
//! 2. Drain `poll_output()` until `None`:
//!    - [`LegOutput::SendRequest`]: route through a new client transaction, except ACK,
//!      which is sent straight to the transport (ACK for 2xx is its own transaction, RFC
//!      3261 §13.2.2.4) and CANCEL, which goes to the INVITE's client transaction.
//!    - [`LegOutput::SendResponse`]: hand to the server transaction of the request it answers;
//!      retransmitted 2xx to INVITE come from here too (RFC 3261 §13.3.1.4, RFC 6026
//!      Accepted state) and go straight to the transport.
//!    - [`LegOutput::Event`]: for the B2BUA / ACD.
//! 3. Wake at `poll_timeout()` or on the next input.
//!
//! # Guarantee
//! Every leg emits exactly one [`LegEvent::Ended`], on every path, without the shell's help:
//! each state that waits on the peer has a guard timer (64·T1), so no leg is left "ringing"
//! or "on call" when the peer vanishes. After `Ended`, [`InboundLeg::is_ended`] is true and
//! the leg only absorbs stragglers (re-ACKing 2xx, 481 to requests).

use crate::sip::dialog::{
    BranchSource, Dialog, DialogError, DialogId, ViaSentBy, build_cancel, header,
};
pub use crate::sip::message::Replaces;
use crate::sip::message::{Header, Headers, Method, NameAddr, ParseError, Request, Response, Uri};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Methods we accept inside a dialog (Allow header).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY";

/// RFC 3261 timer bases used by the legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegConfig {
    /// RTT estimate: first 2xx retransmission interval (default 500 ms).
    pub t1: Duration,
    /// Cap of the 2xx retransmission interval (default 4 s).
    pub t2: Duration,
    /// Outbound: longest wait after the last provisional response before the leg CANCELs
    /// by itself (like a proxy's Timer C, RFC 3261 §16.6; default 3 min). The ACD's ring
    /// timeout is normally much shorter; this is the backstop that keeps a leg from
    /// ringing forever if no one calls `cancel()`.
    pub max_ringing: Duration,
}

impl Default for LegConfig {
    fn default() -> Self {
        LegConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            max_ringing: Duration::from_secs(180),
        }
    }
}

impl LegConfig {
    /// 64·T1: Timers B, F, H and the 2xx retransmission give-up.
    pub fn timeout_64t1(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// Which side of this leg ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This server (hang-up by the B2BUA, timeouts, ring timeout).
    Local,
    /// The peer of this leg (the caller on an inbound leg, the agent on an outbound leg).
    Remote,
}

/// Why a leg ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The peer sent BYE.
    RemoteHangup,
    /// We hung up: BYE, or CANCEL / a final response before the answer.
    LocalHangup,
    /// Inbound: the caller CANCELled before the answer. Outbound: our `cancel()`.
    Cancelled,
    /// Inbound: no ACK for our 2xx within 64·T1 (RFC 3261 §13.3.1.4); we sent BYE.
    AckTimeout,
    /// The shell saw no RTP for too long (`media_timeout()`).
    MediaTimeout,
    /// A final non-2xx response ended the INVITE: received (outbound) or sent (inbound
    /// `reject()`).
    Rejected { status: u16 },
    /// Outbound: no response at all to the INVITE (Timer B).
    NoAnswer,
    /// Outbound: a 2xx from which no dialog could be built (no Contact / To tag).
    ProtocolError,
    /// The server is shutting down and the drain timeout ran out: BYE carrying
    /// `Reason: SIP;cause=503` (RFC 3326); before the answer, 503 with Retry-After.
    Shutdown,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Local => "local",
            Side::Remote => "remote",
        })
    }
}

/// As words for the log: `local_hangup`, `rejected 486`, ….
impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::RemoteHangup => f.write_str("remote_hangup"),
            EndReason::LocalHangup => f.write_str("local_hangup"),
            EndReason::Cancelled => f.write_str("cancelled"),
            EndReason::AckTimeout => f.write_str("ack_timeout"),
            EndReason::MediaTimeout => f.write_str("media_timeout"),
            EndReason::Rejected { status } => write!(f, "rejected {status}"),
            EndReason::NoAnswer => f.write_str("no_answer"),
            EndReason::ProtocolError => f.write_str("protocol_error"),
            EndReason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// The `Reason` header (RFC 3326) of a BYE sent because the server shuts down.
pub const SHUTDOWN_REASON: &str = "SIP;cause=503;text=\"server shutting down\"";

/// Observable state of a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    /// Outbound: INVITE sent, nothing heard yet.
    Calling,
    /// Inbound: INVITE received, no final response yet. Outbound: provisional received.
    Early,
    /// Outbound: CANCEL sent, or waiting for a provisional to send it.
    Cancelling,
    /// Inbound: 2xx sent, waiting for its ACK.
    AwaitingAck,
    Confirmed,
    /// Our BYE is out; waiting for its response.
    Terminating,
    Ended,
}

/// What a leg tells the B2BUA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// Outbound: a provisional response (180 ringing, 183 with early media).
    Progress { status: u16, sdp: Option<Bytes> },
    /// The call was answered: inbound when we sent 200 (no SDP: the shell gave it), outbound
    /// when the 2xx arrived, with the peer's SDP.
    Answered { sdp: Option<Bytes> },
    /// The dialog is confirmed: inbound when the ACK arrived, outbound once we ACKed.
    Confirmed,
    /// Outbound: the INVITE got a final 3xx–6xx (followed by `Ended`).
    Failed { status: u16 },
    /// The ACK for our 2xx carried SDP: the peer's answer to the offer we put in the 2xx
    /// (an INVITE or re-INVITE without SDP, RFC 3264 §4 delayed offer).
    AckAnswer { sdp: Bytes },
    /// The peer sent a re-INVITE (hold/resume, new media address); answer it with
    /// `answer_reinvite` or `reject_reinvite`. An empty `sdp` means the peer wants an offer.
    Reinvite { sdp: Bytes },
    /// The peer asks for a transfer (REFER, RFC 3515); answer with `accept_refer` or
    /// `reject_refer`.
    Refer {
        refer_to: Box<NameAddr>,
        replaces: Option<Replaces>,
    },
    /// The leg is over. Emitted exactly once per leg.
    Ended {
        reason: EndReason,
        who_hung_up: Side,
    },
}

/// One output of a leg; see the module docs for where each goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegOutput {
    SendRequest(Request),
    SendResponse(Response),
    Event(LegEvent),
}

/// Misuse of a leg's API by the shell (protocol failures are events, not errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegError {
    #[error("{action} is not possible in state {state:?}")]
    WrongState {
        action: &'static str,
        state: LegState,
    },
    #[error("status {0} is not valid here")]
    InvalidStatus(u16),
    #[error("no {0} is waiting for an answer")]
    NothingPending(&'static str),
    #[error(transparent)]
    Dialog(#[from] DialogError),
    #[error(transparent)]
    Message(#[from] ParseError),
}

/// Parameters of an outbound call.
#[derive(Debug, Clone)]
pub struct OutboundParams {
    /// Request-URI: the agent's registered contact or the callback number's trunk URI.
    pub target: Uri,
    /// Our From, without tag (the leg adds one).
    pub from: NameAddr,
    pub to: NameAddr,
    pub contact: NameAddr,
    pub sdp_offer: Bytes,
    /// Pre-loaded route set (outbound proxy / trunk), in traversal order; may be empty.
    pub route: Vec<NameAddr>,
    pub via: ViaSentBy,
    /// Call-ID to use; a fresh one is drawn when None.
    pub call_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Next retransmission of the unacknowledged 2xx.
    Retransmit2xx = 0,
    /// 64·T1 after the 2xx: give up waiting for the ACK.
    AckGiveUp = 1,
    /// 64·T1 after our BYE: end even if no response ever comes.
    ByeGuard = 2,
    /// Outbound: no response at all to the INVITE, or no final after our CANCEL.
    InviteGuard = 3,
}

const TIMER_COUNT: usize = 4;

#[derive(Debug, Clone, Copy, Default)]
struct Timers([Option<Instant>; TIMER_COUNT]);

impl Timers {
    fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }
    fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }
    fn clear(&mut self) {
        self.0 = [None; TIMER_COUNT];
    }
    fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
    /// The timers due at `now`, clearing them.
    fn expired(&mut self, now: Instant) -> Vec<Timer> {
        let all = [
            Timer::Retransmit2xx,
            Timer::AckGiveUp,
            Timer::ByeGuard,
            Timer::InviteGuard,
        ];
        let mut due = Vec::new();
        for timer in all {
            if self.0[timer as usize].is_some_and(|at| at <= now) {
                self.0[timer as usize] = None;
                due.push(timer);
            }
        }
        due
    }
}

#[derive(Debug, Clone)]
struct Pending2xx {
    response: Response,
    invite_cseq: u32,
    interval: Duration,
    /// The 2xx to the dialog-creating INVITE (ACK confirms the dialog) vs a re-INVITE.
    initial: bool,
}

#[derive(Debug, Clone)]
struct ByeInFlight {
    cseq: u32,
    reason: EndReason,
    who: Side,
}

/// State and behaviour shared by both kinds of leg: the dialog, in-dialog requests from the
/// peer, our BYE, 2xx retransmission, REFER/NOTIFY.
#[derive(Debug)]
struct Core {
    config: LegConfig,
    ids: BranchSource,
    out: VecDeque<LegOutput>,
    timers: Timers,
    state: LegState,
    dialog: Option<Dialog>,
    local_tag: String,
    pending_2xx: Option<Pending2xx>,
    pending_reinvite: Option<Request>,
    pending_refer: Option<Request>,
    refer_subscription_active: bool,
    bye: Option<ByeInFlight>,
    /// A hang-up asked for while the 2xx is unacknowledged: the BYE waits for the ACK (RFC
    /// 3261 §15) or the ACK timeout.
    hangup_after_ack: Option<(EndReason, Side)>,
}

impl Core {
    fn new(config: LegConfig, ids: BranchSource, local_tag: String, state: LegState) -> Core {
        Core {
            config,
            ids,
            out: VecDeque::new(),
            timers: Timers::default(),
            state,
            dialog: None,
            local_tag,
            pending_2xx: None,
            pending_reinvite: None,
            pending_refer: None,
            refer_subscription_active: false,
            bye: None,
            hangup_after_ack: None,
        }
    }

    fn event(&mut self, event: LegEvent) {
        self.out.push_back(LegOutput::Event(event));
    }

    fn respond(&mut self, request: &Request, status: u16) {
        let response = self.response(request, status);
        self.out.push_back(LegOutput::SendResponse(response));
    }

    fn response(&self, request: &Request, status: u16) -> Response {
        Response::for_request(request, status, reason_phrase(status), &self.local_tag)
    }

    fn is_ended(&self) -> bool {
        self.state == LegState::Ended
    }

    /// The single place a leg ends.
    fn end(&mut self, reason: EndReason, who_hung_up: Side) {
        if self.is_ended() {
            return;
        }
        self.state = LegState::Ended;
        self.timers.clear();
        self.pending_2xx = None;
        self.pending_reinvite = None;
        self.pending_refer = None;
        self.refer_subscription_active = false;
        self.hangup_after_ack = None;
        self.event(LegEvent::Ended {
            reason,
            who_hung_up,
        });
    }

    /// Send BYE and wait for its response (guarded by 64·T1); without a dialog, just end.
    fn start_bye(&mut self, now: Instant, reason: EndReason, who: Side) {
        if self.is_ended() || self.bye.is_some() {
            return;
        }
        // A re-INVITE still waiting for the shell gets its final answer before the BYE.
        if let Some(reinvite) = self.pending_reinvite.take() {
            self.respond(&reinvite, 487);
        }
        if let Some(refer) = self.pending_refer.take() {
            self.respond(&refer, 603);
        }
        let branch = self.ids.branch();
        let Some(dialog) = self.dialog.as_mut() else {
            self.end(reason, who);
            return;
        };
        let extra = if reason == EndReason::Shutdown {
            vec![crate::sip::message::Header {
                name: "Reason".into(),
                value: SHUTDOWN_REASON.into(),
            }]
        } else {
            Vec::new()
        };
        let bye = dialog.build_request(Method::Bye, extra, Bytes::new(), &branch);
        self.bye = Some(ByeInFlight {
            cseq: dialog.local_cseq(),
            reason,
            who,
        });
        self.state = LegState::Terminating;
        self.timers.stop(Timer::Retransmit2xx);
        self.timers.stop(Timer::AckGiveUp);
        self.pending_2xx = None;
        self.timers
            .set(Timer::ByeGuard, now + self.config.timeout_64t1());
        self.out.push_back(LegOutput::SendRequest(bye));
    }

    /// Hang up an established dialog (2xx sent or received): BYE now, or after the ACK.
    fn hangup_established(&mut self, now: Instant, reason: EndReason) {
        match self.state {
            LegState::AwaitingAck if self.hangup_after_ack.is_none() => {
                self.hangup_after_ack = Some((reason, Side::Local));
            }
            LegState::Confirmed => self.start_bye(now, reason, Side::Local),
            _ => {}
        }
    }

    /// Send a 2xx to an INVITE and keep retransmitting it until its ACK.
    fn send_2xx_to_invite(&mut self, now: Instant, invite: &Request, sdp: Bytes, initial: bool) {
        let mut response = self.response(invite, 200);
        if let Some(dialog) = &self.dialog {
            response
                .headers
                .push("Contact", dialog.local_contact().to_string());
        }
        response.headers.push("Allow", ALLOW);
        if !sdp.is_empty() {
            response.headers.push("Content-Type", "application/sdp");
        }
        response.body = sdp;
        let invite_cseq = invite.headers.cseq().map(|c| c.seq).unwrap_or_default();
        self.pending_2xx = Some(Pending2xx {
            response: response.clone(),
            invite_cseq,
            interval: self.config.t1,
            initial,
        });
        self.timers.set(Timer::Retransmit2xx, now + self.config.t1);
        self.timers
            .set(Timer::AckGiveUp, now + self.config.timeout_64t1());
        self.out.push_back(LegOutput::SendResponse(response));
    }

    fn handle_ack(&mut self, now: Instant, ack: &Request) {
        let Ok(cseq) = ack.headers.cseq() else {
            return;
        };
        let Some(pending) = &self.pending_2xx else {
            return; // retransmitted ACK, or ACK for nothing: absorbed
        };
        if pending.invite_cseq != cseq.seq {
            return;
        }
        let initial = pending.initial;
        self.pending_2xx = None;
        self.timers.stop(Timer::Retransmit2xx);
        self.timers.stop(Timer::AckGiveUp);
        if !ack.body.is_empty() {
            self.event(LegEvent::AckAnswer {
                sdp: ack.body.clone(),
            });
        }
        if initial && self.state == LegState::AwaitingAck {
            self.state = LegState::Confirmed;
            self.event(LegEvent::Confirmed);
            if let Some((reason, who)) = self.hangup_after_ack.take() {
                self.start_bye(now, reason, who);
            }
        }
    }

    fn on_timers(&mut self, now: Instant, due: &[Timer]) {
        for timer in due {
            match timer {
                Timer::Retransmit2xx => {
                    if let Some(pending) = &mut self.pending_2xx {
                        pending.interval = (pending.interval * 2).min(self.config.t2);
                        let at = now + pending.interval;
                        let response = pending.response.clone();
                        self.timers.set(Timer::Retransmit2xx, at);
                        self.out.push_back(LegOutput::SendResponse(response));
                    }
                }
                Timer::AckGiveUp => {
                    // RFC 3261 §13.3.1.4: the dialog is confirmed but the session ends: BYE.
                    if let Some(pending) = self.pending_2xx.take() {
                        self.timers.stop(Timer::Retransmit2xx);
                        if pending.initial {
                            self.state = LegState::Confirmed;
                        }
                        let (reason, who) = self
                            .hangup_after_ack
                            .take()
                            .unwrap_or((EndReason::AckTimeout, Side::Local));
                        self.start_bye(now, reason, who);
                        if pending.initial {
                            // A peer that never ACKed its call will not answer the BYE
                            // either (gone, or a flood): the call ends now, at Timer H,
                            // and frees its IVR, ports and sockets; the BYE's own client
                            // transaction still runs, and a late answer is absorbed.
                            self.end(reason, who);
                        }
                    }
                }
                Timer::ByeGuard => {
                    if let Some(bye) = self.bye.clone() {
                        self.end(bye.reason, bye.who);
                    }
                }
                Timer::InviteGuard => {} // handled by the outbound leg
            }
        }
    }

    /// An in-dialog request from the peer on an established (or early) dialog.
    fn handle_in_dialog_request(&mut self, now: Instant, request: Request) {
        let is_ack = request.method == Method::Ack;
        let Some(dialog) = self.dialog.as_mut() else {
            if !is_ack {
                self.respond(&request, 481);
            }
            return;
        };
        if self.state == LegState::Ended || !dialog.matches_request(&request) {
            if !is_ack {
                self.respond(&request, 481);
            }
            return;
        }
        let Ok(cseq) = request.headers.cseq() else {
            if !is_ack {
                self.respond(&request, 400);
            }
            return;
        };
        if !is_ack && dialog.accept_remote_cseq(&cseq).is_err() {
            self.respond(&request, 500);
            return;
        }
        match request.method {
            Method::Ack => self.handle_ack(now, &request),
            Method::Bye => {
                self.respond(&request, 200);
                if let Some(reinvite) = self.pending_reinvite.take() {
                    self.respond(&reinvite, 487);
                }
                match self.bye.clone() {
                    // Both sides hung up; ours was first.
                    Some(ours) => self.end(ours.reason, ours.who),
                    None => self.end(EndReason::RemoteHangup, Side::Remote),
                }
            }
            Method::Invite => self.handle_reinvite(request),
            Method::Info | Method::Options => self.respond(&request, 200),
            Method::Refer => self.handle_refer(request),
            // We never subscribe to anything, so no NOTIFY can match (RFC 6665 §4.1.3).
            Method::Notify => self.respond(&request, 481),
            _ => {
                let mut response = self.response(&request, 501);
                response.headers.push("Allow", ALLOW);
                self.out.push_back(LegOutput::SendResponse(response));
            }
        }
    }

    fn handle_reinvite(&mut self, request: Request) {
        let busy = self.pending_reinvite.is_some()
            || self.pending_2xx.is_some()
            || self.state != LegState::Confirmed;
        if busy {
            // RFC 3261 §14.2: an INVITE while another is in progress gets 500 + Retry-After.
            let mut response = self.response(&request, 500);
            response.headers.push("Retry-After", "1");
            self.out.push_back(LegOutput::SendResponse(response));
            return;
        }
        if let Some(dialog) = self.dialog.as_mut() {
            dialog.refresh_target(&request.headers);
        }
        let sdp = request.body.clone();
        self.pending_reinvite = Some(request);
        self.event(LegEvent::Reinvite { sdp });
    }

    fn handle_refer(&mut self, request: Request) {
        if self.pending_refer.is_some() || self.state != LegState::Confirmed {
            let mut response = self.response(&request, 500);
            response.headers.push("Retry-After", "1");
            self.out.push_back(LegOutput::SendResponse(response));
            return;
        }
        match parse_refer(&request) {
            Some((refer_to, replaces)) => {
                self.pending_refer = Some(request);
                self.event(LegEvent::Refer {
                    refer_to: Box::new(refer_to),
                    replaces,
                });
            }
            None => self.respond(&request, 400),
        }
    }

    fn answer_reinvite(&mut self, now: Instant, sdp: Bytes) -> Result<(), LegError> {
        let reinvite = self
            .pending_reinvite
            .take()
            .ok_or(LegError::NothingPending("re-INVITE"))?;
        self.send_2xx_to_invite(now, &reinvite, sdp, false);
        Ok(())
    }

    fn reject_reinvite(&mut self, status: u16) -> Result<(), LegError> {
        if !(300..700).contains(&status) {
            return Err(LegError::InvalidStatus(status));
        }
        let reinvite = self
            .pending_reinvite
            .take()
            .ok_or(LegError::NothingPending("re-INVITE"))?;
        self.respond(&reinvite, status);
        Ok(())
    }

    fn accept_refer(&mut self) -> Result<(), LegError> {
        let refer = self
            .pending_refer
            .take()
            .ok_or(LegError::NothingPending("REFER"))?;
        self.respond(&refer, 202);
        self.refer_subscription_active = true;
        // RFC 3515 §2.4.4: an initial NOTIFY follows the 202 at once.
        self.notify_refer_progress(100, "Trying")
    }

    fn reject_refer(&mut self, status: u16) -> Result<(), LegError> {
        if !(300..700).contains(&status) {
            return Err(LegError::InvalidStatus(status));
        }
        let refer = self
            .pending_refer
            .take()
            .ok_or(LegError::NothingPending("REFER"))?;
        self.respond(&refer, status);
        Ok(())
    }

    /// NOTIFY carrying `SIP/2.0 <status> <reason>` as message/sipfrag (RFC 3515 §2.4.5);
    /// a final status terminates the implicit subscription.
    fn notify_refer_progress(&mut self, status: u16, reason: &str) -> Result<(), LegError> {
        if !self.refer_subscription_active {
            return Err(LegError::NothingPending("accepted REFER"));
        }
        if !(100..700).contains(&status) {
            return Err(LegError::InvalidStatus(status));
        }
        let subscription_state = if status >= 200 {
            self.refer_subscription_active = false;
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        let branch = self.ids.branch();
        let dialog = self.dialog.as_mut().ok_or(LegError::WrongState {
            action: "notify_refer_progress",
            state: self.state,
        })?;
        let extra: Vec<Header> = vec![
            header("Event", "refer"),
            header("Subscription-State", subscription_state),
            header("Content-Type", "message/sipfrag;version=2.0"),
        ];
        let body = Bytes::from(format!("SIP/2.0 {status} {}\r\n", reason.trim()));
        let notify = dialog.build_request(Method::Notify, extra, body, &branch);
        self.out.push_back(LegOutput::SendRequest(notify));
        Ok(())
    }

    /// Responses to requests we sent inside the dialog (BYE, NOTIFY).
    fn handle_in_dialog_response(&mut self, response: &Response) {
        let Ok(cseq) = response.headers.cseq() else {
            return;
        };
        if response.status < 200 {
            return;
        }
        match cseq.method {
            Method::Bye => {
                if let Some(bye) = self.bye.clone()
                    && bye.cseq == cseq.seq
                {
                    self.end(bye.reason, bye.who);
                }
            }
            Method::Notify if response.status >= 300 => {
                // The referrer is gone (481) or refuses: stop reporting.
                self.refer_subscription_active = false;
            }
            _ => {}
        }
    }

    fn handle_transaction_timeout(&mut self, method: &Method) {
        match method {
            Method::Bye => {
                if let Some(bye) = self.bye.clone() {
                    self.end(bye.reason, bye.who);
                }
            }
            Method::Notify => self.refer_subscription_active = false,
            _ => {}
        }
    }
}

/// The caller's leg (UAS): created from the INVITE the trunk sent us.
#[derive(Debug)]
pub struct InboundLeg {
    core: Core,
    invite: Request,
}

impl InboundLeg {
    /// A leg for `invite` (already validated by the message layer). The transaction layer
    /// sends 100 Trying; the leg sends nothing until the shell acts.
    ///
    /// # Errors
    /// The INVITE lacks what a dialog needs (From tag, Contact, CSeq …): answer it 400.
    pub fn new(
        config: LegConfig,
        invite: Request,
        local_contact: &NameAddr,
        seed: u64,
    ) -> Result<InboundLeg, LegError> {
        let mut ids = BranchSource::from_seed(seed);
        let local_tag = ids.tag();
        let dialog = Dialog::from_uas(&invite, &local_tag, local_contact)?;
        let mut core = Core::new(config, ids, local_tag, LegState::Early);
        core.dialog = Some(dialog);
        Ok(InboundLeg { core, invite })
    }

    pub fn state(&self) -> LegState {
        self.core.state
    }
    pub fn is_ended(&self) -> bool {
        self.core.is_ended()
    }
    pub fn dialog(&self) -> Option<&Dialog> {
        self.core.dialog.as_ref()
    }
    pub fn dialog_id(&self) -> Option<&DialogId> {
        self.core.dialog.as_ref().map(Dialog::id)
    }
    pub fn invite(&self) -> &Request {
        &self.invite
    }

    /// 180 Ringing.
    ///
    /// # Errors
    /// After the final response.
    pub fn ring(&mut self, _now: Instant) -> Result<(), LegError> {
        self.provisional(180, Bytes::new(), "ring")
    }

    /// 183 Session Progress with early media SDP.
    ///
    /// # Errors
    /// After the final response.
    pub fn session_progress(&mut self, _now: Instant, sdp: Bytes) -> Result<(), LegError> {
        self.provisional(183, sdp, "session_progress")
    }

    fn provisional(
        &mut self,
        status: u16,
        sdp: Bytes,
        action: &'static str,
    ) -> Result<(), LegError> {
        self.require_early(action)?;
        let mut response = self.core.response(&self.invite, status);
        if let Some(dialog) = &self.core.dialog {
            response
                .headers
                .push("Contact", dialog.local_contact().to_string());
        }
        if !sdp.is_empty() {
            response.headers.push("Content-Type", "application/sdp");
        }
        response.body = sdp;
        self.core.out.push_back(LegOutput::SendResponse(response));
        Ok(())
    }

    /// 200 OK with our SDP answer; retransmitted until the ACK (RFC 3261 §13.3.1.4).
    ///
    /// # Errors
    /// After the final response.
    pub fn answer(&mut self, now: Instant, sdp: Bytes) -> Result<(), LegError> {
        self.require_early("answer")?;
        let invite = self.invite.clone();
        self.core.state = LegState::AwaitingAck;
        self.core.send_2xx_to_invite(now, &invite, sdp, true);
        self.core.event(LegEvent::Answered { sdp: None });
        Ok(())
    }

    /// A final 3xx–6xx to the INVITE (busy, unavailable, 488 …); the leg ends.
    ///
    /// # Errors
    /// After the final response, or a status outside 300–699.
    pub fn reject(&mut self, _now: Instant, status: u16) -> Result<(), LegError> {
        if !(300..700).contains(&status) {
            return Err(LegError::InvalidStatus(status));
        }
        self.require_early("reject")?;
        self.core.respond(&self.invite, status);
        self.core.end(EndReason::Rejected { status }, Side::Local);
        Ok(())
    }

    /// Hang up: before the answer a 480 to the INVITE, after it a BYE (deferred until the
    /// ACK, RFC 3261 §15). Does nothing once the leg is ending.
    pub fn hangup(&mut self, now: Instant) {
        self.terminate(now, EndReason::LocalHangup);
    }

    /// The shell saw no RTP for too long: end the call (BYE) with that reason.
    pub fn media_timeout(&mut self, now: Instant) {
        self.terminate(now, EndReason::MediaTimeout);
    }

    /// The server shuts down (drain timeout): before the answer 503 with Retry-After,
    /// after it a BYE with `Reason: SIP;cause=503`.
    pub fn shutdown(&mut self, now: Instant) {
        self.terminate(now, EndReason::Shutdown);
    }

    fn terminate(&mut self, now: Instant, reason: EndReason) {
        if self.core.state == LegState::Early {
            if reason == EndReason::Shutdown {
                let mut response = self.core.response(&self.invite, 503);
                response.headers.push("Retry-After", "30");
                self.core.out.push_back(LegOutput::SendResponse(response));
            } else {
                self.core.respond(&self.invite, 480);
            }
            self.core.end(reason, Side::Local);
        } else {
            self.core.hangup_established(now, reason);
        }
    }

    /// # Errors
    /// No re-INVITE is waiting.
    pub fn answer_reinvite(&mut self, now: Instant, sdp: Bytes) -> Result<(), LegError> {
        self.core.answer_reinvite(now, sdp)
    }
    /// # Errors
    /// No re-INVITE is waiting, or the status is not 300–699.
    pub fn reject_reinvite(&mut self, _now: Instant, status: u16) -> Result<(), LegError> {
        self.core.reject_reinvite(status)
    }
    /// 202 Accepted and the initial NOTIFY (100 Trying).
    ///
    /// # Errors
    /// No REFER is waiting.
    pub fn accept_refer(&mut self, _now: Instant) -> Result<(), LegError> {
        self.core.accept_refer()
    }
    /// # Errors
    /// No REFER is waiting, or the status is not 300–699.
    pub fn reject_refer(&mut self, _now: Instant, status: u16) -> Result<(), LegError> {
        self.core.reject_refer(status)
    }
    /// NOTIFY with the transfer target's status as sipfrag; a final status ends reporting.
    ///
    /// # Errors
    /// No accepted REFER, or an invalid status.
    pub fn notify_refer_progress(
        &mut self,
        _now: Instant,
        status: u16,
        reason: &str,
    ) -> Result<(), LegError> {
        self.core.notify_refer_progress(status, reason)
    }

    fn require_early(&self, action: &'static str) -> Result<(), LegError> {
        if self.core.state == LegState::Early {
            Ok(())
        } else {
            Err(LegError::WrongState {
                action,
                state: self.core.state,
            })
        }
    }

    /// A request routed to this leg: CANCEL of the INVITE, or an in-dialog request.
    pub fn handle_request(&mut self, now: Instant, request: Request) {
        match request.method {
            Method::Cancel => {
                // RFC 3261 §9.2: the CANCEL gets 200; before the final response the INVITE
                // gets 487, afterwards the CANCEL has no effect.
                self.core.respond(&request, 200);
                if self.core.state == LegState::Early {
                    self.core.respond(&self.invite, 487);
                    self.core.end(EndReason::Cancelled, Side::Remote);
                }
            }
            Method::Invite if !has_to_tag(&request) => {
                // A retransmission of the initial INVITE leaked past the transaction layer.
            }
            Method::Bye if self.core.state == LegState::Early => {
                // BYE on the early dialog (RFC 3261 §15): ends the INVITE too.
                if self
                    .core
                    .dialog
                    .as_ref()
                    .is_some_and(|d| d.matches_request(&request))
                {
                    self.core.respond(&request, 200);
                    self.core.respond(&self.invite, 487);
                    self.core.end(EndReason::RemoteHangup, Side::Remote);
                } else {
                    self.core.respond(&request, 481);
                }
            }
            _ => self.core.handle_in_dialog_request(now, request),
        }
    }

    /// A response to a request this leg sent (BYE, NOTIFY).
    pub fn handle_response(&mut self, _now: Instant, response: Response) {
        self.core.handle_in_dialog_response(&response);
    }

    /// The client transaction of a request this leg sent timed out or failed at the
    /// transport (treated like a final response: the leg does not wait any longer).
    pub fn handle_transaction_timeout(&mut self, _now: Instant, method: &Method) {
        self.core.handle_transaction_timeout(method);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due = self.core.timers.expired(now);
        self.core.on_timers(now, &due);
    }

    pub fn poll_output(&mut self) -> Option<LegOutput> {
        self.core.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.timers.next()
    }
}

/// Our leg to an agent or a callback number (UAC).
#[derive(Debug)]
pub struct OutboundLeg {
    core: Core,
    invite: Request,
    invite_cseq: u32,
    provisional_received: bool,
    /// Set by `cancel()`/`hangup()` before the answer: the reason the leg will end with.
    cancel_reason: Option<EndReason>,
    cancel_sent: bool,
    /// The ACK we sent for the 2xx, re-sent for each retransmitted 2xx.
    ack: Option<Request>,
}

impl OutboundLeg {
    /// Build the INVITE (emitted as the first output) and arm the no-response guard (64·T1).
    pub fn new(now: Instant, config: LegConfig, params: OutboundParams, seed: u64) -> OutboundLeg {
        let mut ids = BranchSource::from_seed(seed);
        let local_tag = ids.tag();
        let call_id = params.call_id.unwrap_or_else(|| ids.call_id());
        let branch = ids.branch();
        let invite_cseq = 1;
        let mut from = params.from;
        from.params.retain(|(k, _)| !k.eq_ignore_ascii_case("tag"));
        from.params
            .push(("tag".to_string(), Some(local_tag.clone())));
        let mut headers = Headers::default();
        headers.push("Via", params.via.header_value(&branch));
        headers.push("Max-Forwards", "70");
        for route in &params.route {
            headers.push("Route", route.to_string());
        }
        headers.push("From", from.to_string());
        headers.push("To", params.to.to_string());
        headers.push("Call-ID", call_id);
        headers.push("CSeq", format!("{invite_cseq} INVITE"));
        headers.push("Contact", params.contact.to_string());
        headers.push("Allow", ALLOW);
        if !params.sdp_offer.is_empty() {
            headers.push("Content-Type", "application/sdp");
        }
        let invite = Request {
            method: Method::Invite,
            uri: params.target,
            headers,
            body: params.sdp_offer,
        };
        let mut core = Core::new(config, ids, local_tag, LegState::Calling);
        core.timers
            .set(Timer::InviteGuard, now + config.timeout_64t1());
        core.out.push_back(LegOutput::SendRequest(invite.clone()));
        OutboundLeg {
            core,
            invite,
            invite_cseq,
            provisional_received: false,
            cancel_reason: None,
            cancel_sent: false,
            ack: None,
        }
    }

    pub fn state(&self) -> LegState {
        self.core.state
    }
    pub fn is_ended(&self) -> bool {
        self.core.is_ended()
    }
    pub fn dialog(&self) -> Option<&Dialog> {
        self.core.dialog.as_ref()
    }
    pub fn dialog_id(&self) -> Option<&DialogId> {
        self.core.dialog.as_ref().map(Dialog::id)
    }
    pub fn invite(&self) -> &Request {
        &self.invite
    }

    /// Give up ringing (ring timeout): CANCEL once a provisional response has arrived (RFC
    /// 3261 §9.1); before that, wait for one (or for the 64·T1 guard). After the answer it is
    /// a hang-up.
    pub fn cancel(&mut self, now: Instant) {
        self.stop(now, EndReason::Cancelled);
    }

    /// Hang up: CANCEL before the answer, BYE after.
    pub fn hangup(&mut self, now: Instant) {
        self.stop(now, EndReason::LocalHangup);
    }

    /// The shell saw no RTP for too long: BYE with that reason.
    pub fn media_timeout(&mut self, now: Instant) {
        self.stop(now, EndReason::MediaTimeout);
    }

    /// The server shuts down: CANCEL before the answer, BYE with `Reason` after.
    pub fn shutdown(&mut self, now: Instant) {
        self.stop(now, EndReason::Shutdown);
    }

    fn stop(&mut self, now: Instant, reason: EndReason) {
        match self.core.state {
            LegState::Calling => {
                self.cancel_reason = Some(reason);
                self.core.state = LegState::Cancelling;
            }
            LegState::Early => {
                self.cancel_reason = Some(reason);
                self.core.state = LegState::Cancelling;
                self.send_cancel(now);
            }
            LegState::AwaitingAck | LegState::Confirmed => {
                // Once answered there is nothing left to cancel: it is a hang-up.
                let reason = match reason {
                    EndReason::Cancelled => EndReason::LocalHangup,
                    other => other,
                };
                self.core.hangup_established(now, reason);
            }
            LegState::Cancelling | LegState::Terminating | LegState::Ended => {}
        }
    }

    fn send_cancel(&mut self, now: Instant) {
        if self.cancel_sent {
            return;
        }
        match build_cancel(&self.invite) {
            Ok(cancel) => {
                self.cancel_sent = true;
                self.core.out.push_back(LegOutput::SendRequest(cancel));
                if !self.core.is_ended() {
                    // RFC 3261 §9.1: no final response 64·T1 after the CANCEL → give up.
                    self.core
                        .timers
                        .set(Timer::InviteGuard, now + self.core.config.timeout_64t1());
                }
            }
            Err(_) => {
                // Our own INVITE always has the headers; end rather than hang if not.
                let reason = self.cancel_reason.unwrap_or(EndReason::Cancelled);
                self.core.end(reason, Side::Local);
            }
        }
    }

    /// # Errors
    /// No re-INVITE is waiting.
    pub fn answer_reinvite(&mut self, now: Instant, sdp: Bytes) -> Result<(), LegError> {
        self.core.answer_reinvite(now, sdp)
    }
    /// # Errors
    /// No re-INVITE is waiting, or the status is not 300–699.
    pub fn reject_reinvite(&mut self, _now: Instant, status: u16) -> Result<(), LegError> {
        self.core.reject_reinvite(status)
    }
    /// # Errors
    /// No REFER is waiting.
    pub fn accept_refer(&mut self, _now: Instant) -> Result<(), LegError> {
        self.core.accept_refer()
    }
    /// # Errors
    /// No REFER is waiting, or the status is not 300–699.
    pub fn reject_refer(&mut self, _now: Instant, status: u16) -> Result<(), LegError> {
        self.core.reject_refer(status)
    }
    /// # Errors
    /// No accepted REFER, or an invalid status.
    pub fn notify_refer_progress(
        &mut self,
        _now: Instant,
        status: u16,
        reason: &str,
    ) -> Result<(), LegError> {
        self.core.notify_refer_progress(status, reason)
    }

    /// An in-dialog request from the agent (BYE, re-INVITE, REFER, INFO …).
    pub fn handle_request(&mut self, now: Instant, request: Request) {
        self.core.handle_in_dialog_request(now, request);
    }

    pub fn handle_response(&mut self, now: Instant, response: Response) {
        let Ok(cseq) = response.headers.cseq() else {
            return;
        };
        match cseq.method {
            Method::Invite if cseq.seq == self.invite_cseq => {
                self.handle_invite_response(now, response);
            }
            Method::Cancel => {} // 200/481 to CANCEL: the INVITE's final response decides.
            _ => self.core.handle_in_dialog_response(&response),
        }
    }

    fn handle_invite_response(&mut self, now: Instant, response: Response) {
        match response.status {
            100..=199 => self.on_provisional(now, response),
            200..=299 => self.on_2xx(now, response),
            _ => self.on_final_failure(response.status),
        }
    }

    fn on_provisional(&mut self, now: Instant, response: Response) {
        match self.core.state {
            LegState::Calling | LegState::Early => {
                self.provisional_received = true;
                self.core.state = LegState::Early;
                self.core
                    .timers
                    .set(Timer::InviteGuard, now + self.core.config.max_ringing);
                if response.status > 100 {
                    self.core.event(LegEvent::Progress {
                        status: response.status,
                        sdp: sdp_of(&response.body),
                    });
                }
            }
            LegState::Cancelling => {
                self.provisional_received = true;
                // The CANCEL we held back can go now.
                self.send_cancel(now);
            }
            LegState::Ended if self.core.dialog.is_none() => {
                // We gave up before any response (guard timer); the callee is ringing now:
                // stop it, silently.
                self.provisional_received = true;
                self.send_cancel(now);
            }
            _ => {}
        }
    }

    fn on_2xx(&mut self, now: Instant, response: Response) {
        let remote_tag = response
            .headers
            .to()
            .ok()
            .and_then(|to| to.tag().map(str::to_string));
        let same_dialog = self
            .core
            .dialog
            .as_ref()
            .is_some_and(|d| Some(&d.id().remote_tag) == remote_tag.as_ref());
        if same_dialog {
            // Retransmitted 2xx: our ACK was lost. Send it again (RFC 3261 §13.2.2.4).
            if let Some(ack) = &self.ack {
                self.core.out.push_back(LegOutput::SendRequest(ack.clone()));
            }
            return;
        }
        if self.core.dialog.is_some() || self.core.is_ended() {
            // A 2xx from another fork, or one arriving after we gave up: ACK it and BYE it.
            self.ack_and_bye_stray(&response);
            return;
        }
        let dialog = match Dialog::from_uac(&self.invite, &response) {
            Ok(dialog) => dialog,
            Err(_) => {
                self.core.end(EndReason::ProtocolError, Side::Remote);
                return;
            }
        };
        let branch = self.core.ids.branch();
        let ack = dialog.build_ack_for_2xx(self.invite_cseq, None, &branch);
        self.core.dialog = Some(dialog);
        self.core.timers.stop(Timer::InviteGuard);
        self.core.out.push_back(LegOutput::SendRequest(ack.clone()));
        self.ack = Some(ack);
        self.core.state = LegState::Confirmed;
        match self.cancel_reason {
            // CANCEL crossed the 2xx: the call is up but no longer wanted (RFC 3261 §9.1).
            Some(reason) => self.core.start_bye(now, reason, Side::Local),
            None => {
                self.core.event(LegEvent::Answered {
                    sdp: sdp_of(&response.body),
                });
                self.core.event(LegEvent::Confirmed);
            }
        }
    }

    fn ack_and_bye_stray(&mut self, response: &Response) {
        let Ok(mut stray) = Dialog::from_uac(&self.invite, response) else {
            return;
        };
        let ack_branch = self.core.ids.branch();
        let bye_branch = self.core.ids.branch();
        let ack = stray.build_ack_for_2xx(self.invite_cseq, None, &ack_branch);
        let bye = stray.build_request(Method::Bye, Vec::new(), Bytes::new(), &bye_branch);
        self.core.out.push_back(LegOutput::SendRequest(ack));
        self.core.out.push_back(LegOutput::SendRequest(bye));
    }

    fn on_final_failure(&mut self, status: u16) {
        match self.core.state {
            LegState::Calling | LegState::Early => {
                self.core.event(LegEvent::Failed { status });
                self.core.end(EndReason::Rejected { status }, Side::Remote);
            }
            LegState::Cancelling => {
                // 487 (or a rejection crossing our CANCEL): we gave up first.
                let reason = self.cancel_reason.unwrap_or(EndReason::Cancelled);
                self.core.end(reason, Side::Local);
            }
            _ => {}
        }
    }

    /// The client transaction of a request this leg sent timed out or hit a transport error.
    pub fn handle_transaction_timeout(&mut self, _now: Instant, method: &Method) {
        match method {
            Method::Invite if self.core.dialog.is_none() => self.give_up_invite(),
            _ => self.core.handle_transaction_timeout(method),
        }
    }

    fn give_up_invite(&mut self) {
        let reason = match self.cancel_reason {
            Some(reason) => reason,
            None => EndReason::NoAnswer,
        };
        self.core.end(reason, Side::Local);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let due = self.core.timers.expired(now);
        if due.contains(&Timer::InviteGuard) {
            match self.core.state {
                // Ringing too long with nobody cancelling: cancel ourselves.
                LegState::Early => self.stop(now, EndReason::NoAnswer),
                LegState::Calling | LegState::Cancelling => self.give_up_invite(),
                _ => {}
            }
        }
        self.core.on_timers(now, &due);
    }

    pub fn poll_output(&mut self) -> Option<LegOutput> {
        self.core.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.timers.next()
    }

    /// Whether a provisional response has arrived (CANCEL may be sent).
    pub fn provisional_received(&self) -> bool {
        self.provisional_received
    }
}

/// Refer-To (RFC 3515) and the Replaces carried in its URI headers (RFC 3891 §4.1). None when
/// Refer-To is missing, repeated or malformed, or carries a malformed Replaces: answer 400.
pub fn parse_refer(request: &Request) -> Option<(NameAddr, Option<Replaces>)> {
    if request.headers.count("Refer-To") != 1 {
        return None;
    }
    let refer_to = NameAddr::parse(request.headers.get("Refer-To")?).ok()?;
    let escaped = refer_to.uri.raw.split_once('?').and_then(|(_, headers)| {
        headers.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            name.eq_ignore_ascii_case("Replaces").then_some(value)
        })
    });
    let replaces = match escaped {
        Some(value) => Some(Replaces::from_uri_header(value).ok()?),
        None => None,
    };
    Some((refer_to, replaces))
}

fn has_to_tag(request: &Request) -> bool {
    request
        .headers
        .to()
        .ok()
        .is_some_and(|to| to.tag().is_some())
}

fn sdp_of(body: &Bytes) -> Option<Bytes> {
    (!body.is_empty()).then(|| body.clone())
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        603 => "Decline",
        _ => "Unknown",
    }
}

#[cfg(test)]
#[path = "call_leg_tests.rs"]
mod tests;
