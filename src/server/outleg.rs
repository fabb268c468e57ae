//! One outbound media leg of the shell (an agent's phone, or an outside number through
//! the trunk): its RTP/RTCP sockets and port pair, our SDP offer, and — once answered —
//! its RTP session. The callback task bridges two of them; a call task bridges its
//! caller to one (transfer to a unit). Relaying and recording stay with the owner.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;

use crate::media::bridge::{LegMedia, RelayDirection, Relayed};
use crate::media::player::Player;
use crate::media::port_pool::PortPair;
use crate::media::rtp::{ReceiveOutcome, RtpPacket, RtpSession, SessionEvent, write_packet};
use crate::media::sdp::{self, LocalMedia, Negotiated, SessionDescription};
use crate::server::calls::MediaContext;
use crate::sip::call_leg::EndReason;
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
}

impl Prepared {
    /// Bind a port pair and build our G.711 offer; `None` when no port is free.
    pub(crate) async fn open(ctx: &MediaContext) -> Option<Prepared> {
        let (ports, rtp, rtcp) = ctx.open_sockets().await?;
        let local = LocalMedia::g711(
            ctx.public_ip,
            ports.rtp,
            u64::from(rand::random::<u32>()),
            1,
        );
        Some(Prepared {
            ports,
            rtp,
            rtcp,
            offer: sdp::offer(&local),
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
    /// Where the peer's SIP comes from, when known (an agent's registration): its media
    /// is accepted from there too (NAT). A trunk's media comes from its SDP address.
    pub(crate) peer_ip: Option<std::net::IpAddr>,
}

impl OutLeg {
    /// Answered with `sdp`: negotiate and start the RTP session. `false` when the
    /// answer is unusable (the caller hangs the leg up).
    pub(crate) fn answered(&mut self, now: Instant, sdp: &[u8], media_timeout: Duration) -> bool {
        let negotiated = std::str::from_utf8(sdp)
            .ok()
            .and_then(|t| SessionDescription::parse(t).ok())
            .and_then(|answer| sdp::parse_answer(&self.offer, &answer).ok());
        let Some(negotiated) = negotiated else {
            return false;
        };
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

    /// Take an RTP datagram received on this leg's socket into its session; `true` when
    /// it is accepted (the peer's media, latched).
    pub(crate) fn accept(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        RtpPacket::parse(datagram).is_ok_and(|packet| {
            matches!(
                session.receive_rtp(now, from, &packet),
                ReceiveOutcome::Accepted { .. }
            )
        })
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
            && self.rtp.try_send_to(bytes, to).is_ok()
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
                let _ = self.rtp.try_send_to(bytes, to);
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

/// How an outside party's leg that ended before the answer failed, as a callback
/// attempt result.
#[must_use]
pub(crate) fn attempt_result(reason: EndReason) -> crate::queue::CallbackResult {
    use crate::queue::CallbackResult;
    match reason {
        EndReason::Rejected { status: 486 | 600 } => CallbackResult::Busy,
        EndReason::Rejected {
            status: 408 | 480 | 487 | 603,
        }
        | EndReason::Cancelled
        | EndReason::LocalHangup => CallbackResult::NoAnswer,
        _ => CallbackResult::Unreachable,
    }
}
