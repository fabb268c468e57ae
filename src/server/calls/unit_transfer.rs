//! Transfer to a unit's outside number (`CALL-TRANSFER`, H-8: a matter within the
//! justice system's remit goes live to the competent unit).
//!
//! The agent REFERs to `sip:unit-<unit id>@…` or to the unit's configured number (or
//! the transfer API asks the same); the ACD releases the call
//! (`ReleaseReason::TransferredToUnit`) and sends [`AcdCommand::ToUnit`]. The call task
//! then ends any agent leg still up, plays hold music, dials the unit's number through
//! the outbound trunk (only with a permit of [`crate::server::outbound`]) and bridges
//! the caller to it when it answers; the recording goes on (the unit on the right
//! channel). The work order of the call gets a `transferred_to_unit` event. A unit that
//! does not answer (or cannot be reached) sends the caller back to the queue.
//!
//! [`AcdCommand::ToUnit`]: crate::server::acd::AcdCommand::ToUnit

use super::{
    CallMedia, Channel, DATAGRAM, Duration, HangupParty, Instant, LegMedia, RelayDirection,
    Relayed, SocketAddr, debug, info, warn,
};
use crate::call::{CallInput, Peer, QueueCue};
use crate::server::call_orders::CallOrderSeed;
use crate::server::outbound::Dial;
use crate::server::outleg::{LegTimer, OutLeg, Prepared};
use crate::sip::call_leg::LegEvent;
use crate::sip::endpoint::CallHandle;
use crate::ticket::units::UnitId;

/// How long the unit's phone rings before the caller goes back to the queue.
const UNIT_RING: Duration = Duration::from_secs(30);

/// The caller's leg to a unit and the bridge to it.
pub(crate) struct UnitLeg {
    unit: UnitId,
    pub(super) leg: OutLeg,
    to_unit: Option<RelayDirection>,
    to_caller: Option<RelayDirection>,
}

impl CallMedia {
    /// The ACD released the call to `unit`: end any agent leg, hold music, and dial the
    /// unit (from the run loop).
    pub(super) fn transfer_to_unit(&mut self, now: Instant, unit: UnitId) {
        let handle = self.handle;
        info!(%handle, unit = %unit, "transfer to the unit's outside number");
        if let Some(q) = self.queue.as_mut() {
            q.released = true;
        }
        // A transfer asked by the API: the agent's leg is still up.
        if let Some(agent) = self.agent.as_ref().map(|a| a.agent.clone()) {
            self.hang_up_agent(now);
            self.release_agent();
            if let Some(q) = self.queue.as_ref() {
                q.acd
                    .leg_held(&q.call, &crate::queue::AgentId::new(agent), false);
            }
        }
        self.control(now, CallInput::Queue(QueueCue::ToUnit));
        self.pending_unit = Some(unit.clone());
        let wall = self.ctx.clock.now();
        let (category, urgency) = self
            .queue
            .as_ref()
            .map(|q| (q.category, q.urgency))
            .unwrap_or((
                crate::ivr::flow::CallCategory::Consultation,
                crate::ivr::flow::Urgency::default(),
            ));
        let Some(h) = self.hotline.as_mut() else {
            return;
        };
        h.cdr.transferred_to_unit();
        if let Some(orders) = self.ctx.call_orders() {
            let seed = CallOrderSeed {
                call: crate::ticket::model::CallId(h.call_id.clone()),
                caller: h.caller.clone(),
                city: h.city.as_ref().map(|c| c.as_str().to_string()),
                category,
                urgency,
                received_at: h.cdr.record().arrival,
            };
            let agent = h.cdr.record().agent.clone();
            orders.transferred_to_unit(seed, unit, agent, wall);
        }
    }

    /// Dial the unit through the trunk (the outbound rule gives the number).
    pub(super) async fn dial_unit(&mut self, now: Instant, unit: UnitId) {
        let handle = self.handle;
        let permit = match self.ctx.outbound.permit(Dial::Unit(&unit)) {
            Ok(permit) => permit,
            Err(e) => {
                warn!(%handle, %e, "the unit cannot be dialled");
                self.unit_failed(now);
                return;
            }
        };
        let Some(prepared) = Prepared::open(&self.ctx).await else {
            warn!(%handle, "no RTP ports for the unit leg");
            self.unit_failed(now);
            return;
        };
        let body = prepared.body();
        let shell = self.shell.clone();
        let dialled = self.shell.drive(|ep| {
            let leg = permit.place(ep, now, body);
            // Registered while the endpoint is locked: no event of the leg can be lost.
            shell.calls().alias(leg, handle);
            leg
        });
        let Some(leg) = dialled else {
            prepared.release(&self.ctx);
            self.unit_failed(now);
            return;
        };
        info!(%handle, unit = %unit, number = %permit.number(), "dialling the unit");
        self.unit = Some(Box::new(UnitLeg {
            unit,
            leg: prepared.dialled(leg, Some(now + UNIT_RING)),
            to_unit: None,
            to_caller: None,
        }));
    }

    /// The unit did not answer: the caller waits in the queue again.
    fn unit_failed(&mut self, now: Instant) {
        self.release_unit(now);
        if self.queue.is_none() {
            self.hangup_at = Some(now);
            return;
        }
        info!(handle = %self.handle, "the unit was not reached; the caller goes back to the queue");
        // The ACD let go of the call at the transfer: the core enqueues it afresh.
        self.queue = None;
        self.control(now, CallInput::UnitFailed);
    }

    pub(super) fn is_unit_leg(&self, leg: CallHandle) -> bool {
        self.unit.as_ref().is_some_and(|u| u.leg.handle == leg)
    }

    pub(super) fn unit_bridged(&self) -> bool {
        self.unit
            .as_ref()
            .is_some_and(|u| u.leg.is_up() && u.to_unit.is_some())
    }

    pub(super) fn on_unit_event(&mut self, now: Instant, event: LegEvent) {
        let handle = self.handle;
        let media_timeout = self.media_timeout;
        let caller_media = LegMedia::from(&self.negotiated);
        let Some(unit) = self.unit.as_mut() else {
            return;
        };
        match event {
            LegEvent::Answered { sdp } => {
                let ok = sdp.is_some_and(|sdp| unit.leg.answered(now, &sdp, media_timeout));
                let unit_media = unit.leg.media();
                if !ok || unit_media.is_none() {
                    warn!(%handle, "the unit's SDP answer is unusable");
                    self.unit_failed(now);
                    return;
                }
                unit.to_unit = unit.leg.relay_into(caller_media);
                unit.to_caller = unit_media.map(|m| RelayDirection::new(m, caller_media));
                info!(%handle, unit = %unit.unit, "the unit answered; caller bridged");
                self.control(now, CallInput::Bridged(Peer::Unit));
                self.hangup_at = Some(now + Duration::from_secs(4 * 3600));
            }
            LegEvent::Ended { reason, .. } => {
                let answered = unit.leg.session.is_some();
                unit.leg.ended = true;
                if answered {
                    info!(%handle, %reason, "the unit hung up; the call ends");
                    if let Some(h) = self.hotline.as_mut() {
                        h.cdr.hung_up(self.ctx.clock.now(), HangupParty::Agent);
                    }
                    self.hangup_at = Some(now);
                } else {
                    info!(%handle, %reason, "the unit's leg failed");
                    self.unit_failed(now);
                }
            }
            LegEvent::Reinvite { .. } => {
                let leg = unit.leg.handle;
                self.shell
                    .drive(|ep| ep.call_reject_reinvite(now, leg, 488));
            }
            LegEvent::Refer { .. } => {
                let leg = unit.leg.handle;
                self.shell.drive(|ep| ep.call_reject_refer(now, leg, 403));
            }
            other => debug!(%handle, ?other, "unit leg event"),
        }
    }

    /// RTP from the unit: relayed to the caller, recorded on the right channel.
    pub(super) fn on_unit_rtp(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8], n: usize) {
        let Some(unit) = self.unit.as_mut() else {
            return;
        };
        if !unit.leg.accept(now, from, buf.get(..n).unwrap_or_default()) {
            return;
        }
        let Some(relay) = unit.to_caller.as_mut() else {
            return;
        };
        let mut pcm = [0i16; DATAGRAM];
        let relayed = relay.relay(now, buf, n, Some(&mut pcm), self.session.outbound());
        self.agent_side_to_caller(now, buf, relayed, &pcm);
    }

    /// Caller RTP while bridged to the unit: relayed, recorded on the left channel.
    pub(super) fn relay_caller_to_unit(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        n: usize,
    ) {
        let accepted = buf
            .get(..n)
            .and_then(|d| crate::media::rtp::RtpPacket::parse(d).ok())
            .is_some_and(|packet| {
                matches!(
                    self.session.receive_rtp(now, from, &packet),
                    crate::media::rtp::ReceiveOutcome::Accepted { .. }
                )
            });
        if !accepted {
            return;
        }
        let Some(unit) = self.unit.as_mut() else {
            return;
        };
        let (Some(relay), Some(out)) = (unit.to_unit.as_mut(), unit.leg.outbound()) else {
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
        unit.leg
            .send_relayed(now, buf.get(..len).unwrap_or_default(), &relayed);
        if let Some(recorder) = self.recorder.as_mut()
            && let Err(e) =
                recorder.push(now, Channel::Caller, pcm.get(..decoded).unwrap_or_default())
        {
            crate::metrics::recording_failed();
            warn!(handle = %self.handle, %e, "recording failed; the call goes on");
        }
    }

    pub(super) fn unit_deadline(&self) -> Option<Instant> {
        self.unit.as_ref().and_then(|u| u.leg.poll_timeout())
    }

    pub(super) fn unit_timers(&mut self, now: Instant) {
        let handle = self.handle;
        let Some(unit) = self.unit.as_mut() else {
            return;
        };
        match unit.leg.timers(now) {
            LegTimer::Quiet => {}
            LegTimer::RingTimeout => {
                info!(%handle, "the unit did not answer; cancelling");
                // Its end (Cancelled) sends the caller back to the queue.
                let leg = unit.leg.handle;
                self.shell.drive(|ep| ep.call_hangup(now, leg));
            }
            LegTimer::MediaTimeout => {
                info!(%handle, "media timeout on the unit leg");
                unit.leg.ended = true;
                let leg = unit.leg.handle;
                self.shell.drive(|ep| ep.call_media_timeout(now, leg));
                self.hangup_at = Some(now);
            }
        }
    }

    /// Hang up the unit's leg if it is still up and give its ports back.
    pub(super) fn release_unit(&mut self, now: Instant) {
        if let Some(unit) = self.unit.take() {
            let unit = *unit;
            let mut leg = unit.leg;
            if !leg.ended {
                leg.ended = true;
                let handle = leg.handle;
                self.shell.drive(|ep| ep.call_hangup(now, handle));
            }
            leg.release(&self.ctx);
        }
    }
}
