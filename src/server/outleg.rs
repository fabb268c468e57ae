//! One outbound media leg of the shell (an agent's phone, or an outside number through
//! the trunk): its RTP/RTCP sockets and port pair, our SDP offer, and — once answered —
//! its RTP session. The callback task bridges two of them; a call task bridges its
//! caller to one (transfer to a unit). Relaying and recording stay with the owner.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;

use crate::call::placed::{PlacedInput, PlacedSide};
use crate::config::MediaEncryption;
use crate::media::bridge::{LegMedia, RelayDirection, Relayed};
use crate::media::player::Player;
use crate::media::port_pool::PortPair;
use crate::media::rtp::{ReceiveOutcome, RtpPacket, RtpSession, SessionEvent, write_packet};
use crate::media::sdp::{self, LocalMedia, Negotiated, SessionDescription};
use crate::media::srtp::SdesCrypto;
use crate::server::calls::MediaContext;
use crate::server::leg_srtp::{LegSrtp, send_rtp};
use crate::sip::call_leg::LegEvent;
use crate::sip::endpoint::CallHandle;

/// A G.711 frame of 20 ms.
const FRAME_BYTES: usize = 160;
/// Receive buffer: larger than any RTP datagram we accept.
pub(crate) const DATAGRAM: usize = 2048;

/// Sockets and offer of a leg about to be dialled.
pub(crate) struct Prepared {
    ports: PortPair,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    offer: SessionDescription,
    /// Our SDES key when the policy asks for SRTP, until the answer.
    srtp_offer: Option<(SdesCrypto, MediaEncryption)>,
}

impl Prepared {
    /// Bind a port pair and build our G.711 offer, with an SDES key when `policy` asks
    /// for SRTP (the peer's: an agent's phone, or the trunk's); `None` when no port is
    /// free.
    pub(crate) async fn open(ctx: &MediaContext, policy: MediaEncryption) -> Option<Prepared> {
        let (ports, rtp, rtcp) = ctx.open_sockets().await?;
        let local = LocalMedia::g711(
            ctx.public_ip,
            ports.rtp,
            u64::from(rand::random::<u32>()),
            1,
        );
        let (offer, srtp_offer) = crate::server::leg_srtp::offer(&local, policy);
        Some(Prepared {
            ports,
            rtp,
            rtcp,
            offer,
            srtp_offer,
        })
    }

    /// The SDP body of the INVITE.
    pub(crate) fn body(&self) -> Bytes {
        Bytes::from(self.offer.to_string())
    }

    /// The leg, once the endpoint gave it a handle.
    pub(crate) fn dialled(self, handle: CallHandle, ring_until: Option<Instant>) -> OutLeg {
        OutLeg {
            handle,
            ports: self.ports,
            rtp: self.rtp,
            rtcp: self.rtcp,
            offer: self.offer,
            session: None,
            negotiated: None,
            ring_until,
            ended: false,
            peer_ip: None,
            srtp_offer: self.srtp_offer,
            srtp: None,
        }
    }

    /// Give the ports back (the leg was never dialled).
    pub(crate) fn release(self, ctx: &MediaContext) {
        let ports = self.ports;
        drop(self);
        ctx.release(ports);
    }
}

/// What a leg's timers found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegTimer {
    /// Nothing to do.
    Quiet,
    /// It rang past `ring_until`: hang it up (CANCEL).
    RingTimeout,
    /// No RTP from the answered peer for the media timeout.
    MediaTimeout,
}

/// An outbound leg and, once answered, its RTP session.
pub(crate) struct OutLeg {
    pub(crate) handle: CallHandle,
    ports: PortPair,
    pub(crate) rtp: UdpSocket,
    rtcp: UdpSocket,
    offer: SessionDescription,
    pub(crate) session: Option<RtpSession>,
    pub(crate) negotiated: Option<Negotiated>,
    pub(crate) ring_until: Option<Instant>,
    /// We asked the endpoint to end it, or it ended.
    pub(crate) ended: bool,
    /// Where the peer's SIP comes from (an agent's registration, the trunk's address):
    /// its media is accepted from there too, not only from the SDP's address (NAT, an
    /// SBC naming another address of its own).
    pub(crate) peer_ip: Option<std::net::IpAddr>,
    /// Our SDES key offered, until the answer.
    srtp_offer: Option<(SdesCrypto, MediaEncryption)>,
    /// SRTP on this leg, when the answer took our key.
    srtp: Option<LegSrtp>,
}

impl OutLeg {
    /// Answered with `sdp`: negotiate and start the RTP session. `false` when the
    /// answer is unusable (the caller hangs the leg up), or plain while the policy
    /// requires SRTP.
    pub(crate) fn answered(&mut self, now: Instant, sdp: &[u8], media_timeout: Duration) -> bool {
        let answer = std::str::from_utf8(sdp)
            .ok()
            .and_then(|t| SessionDescription::parse(t).ok());
        let negotiated = answer
            .as_ref()
            .and_then(|answer| sdp::parse_answer(&self.offer, answer).ok());
        let Some(negotiated) = negotiated else {
            return false;
        };
        match crate::server::leg_srtp::from_answer(self.srtp_offer.take(), answer.as_ref()) {
            Ok(srtp) => self.srtp = srtp,
            Err(()) => {
                tracing::warn!(leg = %self.handle, "the answer has no SRTP key, which the policy requires");
                return false;
            }
        }
        tracing::info!(leg = %self.handle, srtp = self.srtp.is_some(), codec = negotiated.codec.encoding_name(), "outbound leg answered");
        self.session = Some(crate::server::calls::leg_rtp_session(
            format!("hotline-out-{}", self.handle.0),
            Some(media_timeout),
            now,
            negotiated.remote(),
            self.peer_ip,
        ));
        self.negotiated = Some(negotiated);
        self.ring_until = None;
        true
    }

    /// Whether the peer answered and the leg is still up.
    pub(crate) fn is_up(&self) -> bool {
        self.session.is_some() && !self.ended
    }

    /// Media description for a relay, once answered.
    pub(crate) fn media(&self) -> Option<LegMedia> {
        self.negotiated.as_ref().map(LegMedia::from)
    }

    /// A relay from `from` (another answered leg's media) into this leg.
    pub(crate) fn relay_into(&self, from: LegMedia) -> Option<RelayDirection> {
        let to = self.media()?;
        self.session.as_ref()?;
        Some(RelayDirection::new(from, to))
    }

    /// This leg's outgoing stream (once answered), for a relay into it.
    pub(crate) fn outbound(&mut self) -> Option<&mut crate::media::stream::OutboundStream> {
        self.session.as_mut().map(RtpSession::outbound)
    }

    /// Take an RTP datagram received on this leg's socket (`buf[..n]`, decrypted in
    /// place on an SRTP leg) into its session: the RTP packet's length when it is
    /// accepted (the peer's media, latched), `None` when dropped.
    pub(crate) fn accept(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        n: usize,
    ) -> Option<usize> {
        let session = self.session.as_mut()?;
        let n = match self.srtp.as_mut() {
            Some(srtp) => srtp.unprotect(buf, n)?,
            None => n,
        };
        let packet = RtpPacket::parse(buf.get(..n)?).ok()?;
        matches!(
            session.receive_rtp(now, from, &packet),
            ReceiveOutcome::Accepted { .. }
        )
        .then_some(n)
    }

    /// Send a packet the relay rewrote for this leg (`bytes` = the rewritten datagram).
    pub(crate) fn send_relayed(&mut self, now: Instant, bytes: &[u8], relayed: &Relayed) {
        let (timestamp, payload_len) = match relayed {
            Relayed::Audio {
                timestamp,
                payload_len,
                ..
            } => (*timestamp, *payload_len),
            Relayed::Dtmf { timestamp, .. } => (*timestamp, 4),
            _ => return,
        };
        if let Some(session) = self.session.as_mut()
            && let Some(to) = session.remote_rtp()
            && send_rtp(&self.rtp, self.srtp.as_mut(), bytes, to)
        {
            session.record_sent(now, timestamp, payload_len);
        }
    }

    /// Play `player` into this leg (hold music to an agent while the caller rings).
    pub(crate) fn play(&mut self, now: Instant, player: &mut Player) {
        let (Some(session), Some(negotiated)) = (self.session.as_mut(), self.negotiated.as_ref())
        else {
            return;
        };
        let Some(to) = session.remote_rtp() else {
            return;
        };
        while let Some(frame) = player.poll(now) {
            let mut payload = [0u8; FRAME_BYTES];
            let n = negotiated.codec.encode_into(&frame.samples, &mut payload);
            let payload = payload.get(..n).unwrap_or_default();
            let header = session.next_header(
                now,
                negotiated.payload_type,
                frame.marker,
                frame.timestamp,
                payload.len(),
            );
            let mut out = [0u8; DATAGRAM];
            if let Ok(len) = write_packet(&header, payload, &mut out)
                && let Some(bytes) = out.get(..len)
            {
                send_rtp(&self.rtp, self.srtp.as_mut(), bytes, to);
            }
        }
    }

    /// RTCP received on this leg.
    pub(crate) fn receive_rtcp(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if let Some(session) = self.session.as_mut() {
            let _ = session.receive_rtcp(now, from, datagram);
        }
    }

    /// The next moment its timers need.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.session.as_ref().and_then(RtpSession::poll_timeout),
            self.ring_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run its timers: RTCP reports are sent here; ring and media timeouts reported.
    pub(crate) fn timers(&mut self, now: Instant) -> LegTimer {
        if self.ring_until.is_some_and(|t| now >= t) {
            self.ring_until = None;
            return LegTimer::RingTimeout;
        }
        let Some(session) = self.session.as_mut() else {
            return LegTimer::Quiet;
        };
        session.handle_timeout(now);
        let mut result = LegTimer::Quiet;
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::RtcpDue => {
                    let mut out = [0u8; 512];
                    if let (Ok(len), Some(to)) =
                        (session.build_rtcp(now, &mut out), session.remote_rtcp())
                        && let Some(bytes) = out.get(..len)
                    {
                        let _ = self.rtcp.try_send_to(bytes, to);
                    }
                }
                SessionEvent::MediaTimeout { .. } => result = LegTimer::MediaTimeout,
            }
        }
        if self.ended { LegTimer::Quiet } else { result }
    }

    /// Give the ports back.
    pub(crate) fn release(self, ctx: &MediaContext) {
        let ports = self.ports;
        drop(self);
        ctx.release(ports);
    }
}

/// Receive on an optional leg's RTP socket (pending forever without one).
pub(crate) async fn recv_rtp(
    leg: Option<&OutLeg>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match leg {
        Some(leg) if !leg.ended => leg.rtp.recv_from(buf).await,
        _ => std::future::pending().await,
    }
}

/// Receive on an optional leg's RTCP socket (pending forever without one).
pub(crate) async fn recv_rtcp(
    leg: Option<&OutLeg>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match leg {
        Some(leg) if !leg.ended => leg.rtcp.recv_from(buf).await,
        _ => std::future::pending().await,
    }
}

/// One of the two legs of a call the hotline places itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The hotline person's own phone (a registered agent extension), rung first.
    Agent,
    /// The outside party, dialled through the trunk once the person answered.
    Caller,
}

impl From<PlacedSide> for Side {
    fn from(side: PlacedSide) -> Side {
        match side {
            PlacedSide::Person => Side::Agent,
            PlacedSide::Other => Side::Caller,
        }
    }
}

impl From<Side> for PlacedSide {
    fn from(side: Side) -> PlacedSide {
        match side {
            Side::Agent => PlacedSide::Person,
            Side::Caller => PlacedSide::Other,
        }
    }
}

/// What the placed call's core hears of a timer wake-up: a leg whose audio stopped (its
/// ring timeouts and the longest call are the core's own timers).
pub(crate) fn lost_audio(agent: LegTimer, caller: LegTimer) -> impl Iterator<Item = PlacedInput> {
    [(Side::Agent, agent), (Side::Caller, caller)]
        .into_iter()
        .filter(|(_, timer)| *timer == LegTimer::MediaTimeout)
        .map(|(side, _)| PlacedInput::MediaLost(side.into()))
}

/// Why a leg could not be placed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// No RTP port pair is free.
    #[error("no RTP ports free")]
    NoPorts,
    /// The SIP endpoint is unavailable (its lock poisoned: the server is failing).
    #[error("SIP endpoint unavailable")]
    Endpoint,
}

/// What woke a [`TwoLegs`] owner up.
#[derive(Debug)]
pub(crate) enum Wake {
    /// A SIP event of one of the legs (or of a leg the owner no longer knows).
    Event(CallHandle, LegEvent),
    /// A timer fired: each leg's timer result (the longest call is the owner's core's
    /// timer).
    Timers { agent: LegTimer, caller: LegTimer },
    /// The event channel closed (the server is stopping).
    Closed,
}

/// The two legs of a call the hotline places itself — a person's phone first, then an
/// outside number through the trunk — as the callback in queue
/// ([`crate::server::callback`]) and an order's callback call
/// ([`crate::server::order_call`]) place them: the relay between them once both
/// answered, hold music to the person while the outside phone rings, and the stereo
/// recording (the outside party left, the person right), as an inbound queue call's.
/// What a leg's events mean stays with the owner.
pub(crate) struct TwoLegs {
    pub(crate) agent: Option<OutLeg>,
    pub(crate) caller: Option<OutLeg>,
    to_agent: Option<RelayDirection>,
    to_caller: Option<RelayDirection>,
    player: Option<Player>,
    recorder: Option<crate::media::recorder::WavRecorder<std::fs::File>>,
    /// The recording's file, once bridged (and the recorder started).
    pub(crate) recording: Option<std::path::PathBuf>,
    /// Names the call in log lines.
    label: String,
    events_tx: tokio::sync::mpsc::UnboundedSender<(CallHandle, LegEvent)>,
    events: tokio::sync::mpsc::UnboundedReceiver<(CallHandle, LegEvent)>,
}

impl TwoLegs {
    /// No leg yet; `label` names the call in logs.
    pub(crate) fn new(label: String) -> TwoLegs {
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        TwoLegs {
            agent: None,
            caller: None,
            to_agent: None,
            to_caller: None,
            player: None,
            recorder: None,
            recording: None,
            label,
            events_tx,
            events,
        }
    }

    pub(crate) fn leg(&self, side: Side) -> Option<&OutLeg> {
        match side {
            Side::Agent => self.agent.as_ref(),
            Side::Caller => self.caller.as_ref(),
        }
    }

    fn leg_mut(&mut self, side: Side) -> Option<&mut OutLeg> {
        match side {
            Side::Agent => self.agent.as_mut(),
            Side::Caller => self.caller.as_mut(),
        }
    }

    /// Which leg `handle` is.
    pub(crate) fn side_of(&self, handle: CallHandle) -> Option<Side> {
        if self.agent.as_ref().is_some_and(|l| l.handle == handle) {
            Some(Side::Agent)
        } else if self.caller.as_ref().is_some_and(|l| l.handle == handle) {
            Some(Side::Caller)
        } else {
            None
        }
    }

    /// The leg ended (its `Ended` event).
    pub(crate) fn mark_ended(&mut self, side: Side) {
        if let Some(leg) = self.leg_mut(side) {
            leg.ended = true;
        }
    }

    /// Ring the person's registered phone `contact`, showing `from_user` as the caller,
    /// for at most `ring`.
    pub(crate) async fn ring_agent(
        &mut self,
        shell: &std::sync::Arc<crate::server::sip::SipShell>,
        ctx: &MediaContext,
        now: Instant,
        contact: &crate::sip::endpoint::AgentContact,
        from_user: &str,
        ring: Duration,
    ) -> Result<(), PlaceError> {
        let policy = ctx.agent_media_encryption_of(&contact.agent);
        let prepared = Prepared::open(ctx, policy)
            .await
            .ok_or(PlaceError::NoPorts)?;
        let body = prepared.body();
        let tx = self.events_tx.clone();
        let routed = shell.clone();
        let dialled = shell.drive(|ep| {
            let leg = ep.call_dial(now, contact, from_user, body);
            // Registered while the endpoint is locked: no event of the leg can be lost.
            routed.calls().route_leg(leg, tx);
            leg
        });
        let Some(handle) = dialled else {
            prepared.release(ctx);
            return Err(PlaceError::Endpoint);
        };
        let mut leg = prepared.dialled(handle, Some(now + ring));
        leg.peer_ip = Some(contact.source.addr.ip());
        self.agent = Some(leg);
        Ok(())
    }

    /// Dial the outside number of `permit` through the trunk, for at most `ring`.
    pub(crate) async fn dial_caller(
        &mut self,
        shell: &std::sync::Arc<crate::server::sip::SipShell>,
        ctx: &MediaContext,
        now: Instant,
        permit: &crate::server::outbound::DialPermit,
        ring: Duration,
    ) -> Result<(), PlaceError> {
        let policy = ctx.trunk_media_encryption_of(permit.trunk_ip());
        let prepared = Prepared::open(ctx, policy)
            .await
            .ok_or(PlaceError::NoPorts)?;
        let body = prepared.body();
        let tx = self.events_tx.clone();
        let routed = shell.clone();
        let dialled = shell.drive(|ep| {
            let leg = permit.place(ep, now, body);
            routed.calls().route_leg(leg, tx);
            leg
        });
        let Some(handle) = dialled else {
            prepared.release(ctx);
            return Err(PlaceError::Endpoint);
        };
        let mut leg = prepared.dialled(handle, Some(now + ring));
        leg.peer_ip = Some(permit.trunk_ip());
        self.caller = Some(leg);
        Ok(())
    }

    /// The leg answered with `sdp`; `false` when the answer is unusable.
    pub(crate) fn answered(
        &mut self,
        side: Side,
        now: Instant,
        sdp: Option<&[u8]>,
        media_timeout: Duration,
    ) -> bool {
        match (self.leg_mut(side), sdp) {
            (Some(leg), Some(sdp)) => leg.answered(now, sdp, media_timeout),
            _ => false,
        }
    }

    /// A leg's SIP event as the placed call's core hears it (`crate::call::placed`):
    /// an answer checked against our offer and SRTP policy, an end marked on the leg;
    /// re-INVITEs and REFERs refused here (calls the hotline places are not
    /// transferred). `None`: nothing for the core.
    pub(crate) fn placed_input(
        &mut self,
        shell: &std::sync::Arc<crate::server::sip::SipShell>,
        now: Instant,
        side: Side,
        event: LegEvent,
        media_timeout: Duration,
    ) -> Option<PlacedInput> {
        match event {
            LegEvent::Answered { sdp } => {
                let usable = self.answered(side, now, sdp.as_deref(), media_timeout);
                if !usable {
                    tracing::warn!(call = %self.label, ?side, "an SDP answer is unusable");
                }
                Some(match side {
                    Side::Agent => PlacedInput::PersonAnswered { usable },
                    Side::Caller => PlacedInput::OtherAnswered { usable },
                })
            }
            LegEvent::Ended { reason, .. } => {
                self.mark_ended(side);
                tracing::info!(call = %self.label, ?side, %reason, "a leg ended");
                Some(PlacedInput::Ended {
                    side: side.into(),
                    reason,
                })
            }
            event @ (LegEvent::Reinvite { .. } | LegEvent::Refer { .. }) => {
                self.refuse(shell, now, side, &event);
                None
            }
            other => {
                tracing::debug!(call = %self.label, ?other, "leg event");
                None
            }
        }
    }

    /// Hold music to the person while the outside phone rings.
    pub(crate) fn hold(&mut self, ctx: &MediaContext, now: Instant) {
        let hold = ctx.playlist(&[crate::ivr::prompt::PromptRef::prompt("hold_music")]);
        self.player = Some(Player::new(
            crate::media::player::Playlist::looping(hold),
            now,
            crate::media::player::BargeIn::Ignore,
        ));
    }

    /// Both answered: relay both ways and record into `<recordings>/<day>/<name>.wav`
    /// (a recording that cannot start is logged and counted; the call goes on).
    /// `false` when a leg has no media (nothing is bridged).
    pub(crate) fn bridge(&mut self, ctx: &MediaContext, now: Instant, name: &str) -> bool {
        self.player = None;
        let (Some(agent), Some(caller)) = (self.agent.as_ref(), self.caller.as_ref()) else {
            return false;
        };
        let (Some(agent_media), Some(caller_media)) = (agent.media(), caller.media()) else {
            return false;
        };
        self.to_agent = agent.relay_into(caller_media);
        self.to_caller = caller.relay_into(agent_media);
        let date = ctx.clock.now().date_naive();
        let path = crate::media::recorder::recording_path(&ctx.recordings_dir, date, name);
        match crate::server::calls::create_recorder(&path, now, true) {
            Ok(r) => {
                self.recorder = Some(r);
                self.recording = Some(path);
            }
            Err(e) => {
                crate::metrics::recording_failed();
                tracing::warn!(call = %self.label, %e, "recording not started; the call goes on");
            }
        }
        true
    }

    /// Hang that leg up (CANCEL or BYE) unless it ended already.
    pub(crate) fn hang_up(
        &mut self,
        shell: &std::sync::Arc<crate::server::sip::SipShell>,
        now: Instant,
        side: Side,
    ) {
        if let Some(leg) = self.leg_mut(side)
            && !leg.ended
        {
            leg.ended = true;
            leg.ring_until = None;
            let handle = leg.handle;
            shell.drive(|ep| ep.call_hangup(now, handle));
        }
    }

    /// Refuse a re-INVITE or a REFER of that leg (neither is offered on these calls).
    pub(crate) fn refuse(
        &self,
        shell: &std::sync::Arc<crate::server::sip::SipShell>,
        now: Instant,
        side: Side,
        event: &LegEvent,
    ) {
        let Some(handle) = self.leg(side).map(|l| l.handle) else {
            return;
        };
        match event {
            LegEvent::Reinvite { .. } => {
                shell.drive(|ep| ep.call_reject_reinvite(now, handle, 488));
            }
            LegEvent::Refer { .. } => {
                shell.drive(|ep| ep.call_reject_refer(now, handle, 403));
            }
            _ => {}
        }
    }

    /// Wait for the next leg event or timer, relaying and recording media meanwhile.
    pub(crate) async fn wait(&mut self) -> Wake {
        let mut agent_buf = [0u8; DATAGRAM];
        let mut caller_buf = [0u8; DATAGRAM];
        let mut agent_rtcp = [0u8; DATAGRAM];
        let mut caller_rtcp = [0u8; DATAGRAM];
        loop {
            let deadline = tokio::time::Instant::from_std(self.next_deadline());
            tokio::select! {
                r = recv_rtp(self.agent.as_ref(), &mut agent_buf) => {
                    if let Ok((n, from)) = r {
                        self.relay(Side::Agent, Instant::now(), from, &mut agent_buf, n);
                    }
                }
                r = recv_rtp(self.caller.as_ref(), &mut caller_buf) => {
                    if let Ok((n, from)) = r {
                        self.relay(Side::Caller, Instant::now(), from, &mut caller_buf, n);
                    }
                }
                r = recv_rtcp(self.agent.as_ref(), &mut agent_rtcp) => {
                    if let (Ok((n, from)), Some(leg)) = (r, self.agent.as_mut()) {
                        leg.receive_rtcp(Instant::now(), from, agent_rtcp.get(..n).unwrap_or_default());
                    }
                }
                r = recv_rtcp(self.caller.as_ref(), &mut caller_rtcp) => {
                    if let (Ok((n, from)), Some(leg)) = (r, self.caller.as_mut()) {
                        leg.receive_rtcp(Instant::now(), from, caller_rtcp.get(..n).unwrap_or_default());
                    }
                }
                event = self.events.recv() => return match event {
                    Some((leg, event)) => Wake::Event(leg, event),
                    None => Wake::Closed,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if let Some(wake) = self.timers(Instant::now()) {
                        return wake;
                    }
                }
            }
        }
    }

    /// A datagram from `side`: into its session, then relayed to the other leg and
    /// recorded on that side's channel.
    fn relay(&mut self, side: Side, now: Instant, from: SocketAddr, buf: &mut [u8], n: usize) {
        let (source, target, relay, channel) = match side {
            Side::Agent => (
                self.agent.as_mut(),
                self.caller.as_mut(),
                self.to_caller.as_mut(),
                crate::media::recorder::Channel::Agent,
            ),
            Side::Caller => (
                self.caller.as_mut(),
                self.agent.as_mut(),
                self.to_agent.as_mut(),
                crate::media::recorder::Channel::Caller,
            ),
        };
        let Some(source) = source else {
            return;
        };
        let Some(n) = source.accept(now, from, buf, n) else {
            return;
        };
        let (Some(relay), Some(target)) = (relay, target) else {
            return;
        };
        let Some(out) = target.outbound() else {
            return;
        };
        let mut pcm = [0i16; DATAGRAM];
        let Ok(relayed) = relay.relay(now, buf, n, Some(&mut pcm), out) else {
            return;
        };
        let (len, decoded) = match relayed {
            Relayed::Audio { len, decoded, .. } => (len, decoded),
            Relayed::Dtmf { len, .. } => (len, 0),
            Relayed::Dropped(_) => return,
        };
        target.send_relayed(now, buf.get(..len).unwrap_or_default(), &relayed);
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) = recorder.push(now, channel, pcm.get(..decoded).unwrap_or_default())
        {
            crate::metrics::recording_failed();
            tracing::warn!(call = %self.label, %e, "recording failed; the call goes on");
        }
    }

    fn next_deadline(&self) -> Instant {
        [
            self.agent.as_ref().and_then(OutLeg::poll_timeout),
            self.caller.as_ref().and_then(OutLeg::poll_timeout),
            self.player.as_ref().and_then(Player::poll_timeout),
            self.recorder
                .as_ref()
                .map(crate::media::recorder::WavRecorder::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
    }

    /// Run the timers; `Some` when the owner has something to decide.
    fn timers(&mut self, now: Instant) -> Option<Wake> {
        let agent = self
            .agent
            .as_mut()
            .map_or(LegTimer::Quiet, |l| l.timers(now));
        let caller = self
            .caller
            .as_mut()
            .map_or(LegTimer::Quiet, |l| l.timers(now));
        if let (Some(player), Some(leg)) = (self.player.as_mut(), self.agent.as_mut()) {
            leg.play(now, player);
        }
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) = recorder.tick(now)
        {
            crate::metrics::recording_failed();
            tracing::warn!(call = %self.label, %e, "recording failed; the call goes on");
        }
        (agent != LegTimer::Quiet || caller != LegTimer::Quiet)
            .then_some(Wake::Timers { agent, caller })
    }

    /// Hang up what is still up, close the recording and give the ports back.
    pub(crate) fn finish(
        mut self,
        shell: &std::sync::Arc<crate::server::sip::SipShell>,
        ctx: &MediaContext,
        now: Instant,
    ) {
        self.hang_up(shell, now, Side::Agent);
        self.hang_up(shell, now, Side::Caller);
        if let Some(recorder) = self.recorder.take()
            && let Err(e) = recorder.finish()
        {
            crate::metrics::recording_failed();
            tracing::warn!(call = %self.label, %e, "recording incomplete");
        }
        for leg in [self.agent.take(), self.caller.take()]
            .into_iter()
            .flatten()
        {
            leg.release(ctx);
        }
    }
}
