//! Transfer to a unit's outside number (`CALL-TRANSFER`, H-8: a matter within the
//! justice system's remit goes live to the competent unit).
//!
//! The agent REFERs to `sip:unit-<unit id>@…` or to the unit's configured number (or
//! the transfer API asks the same); the ACD releases the call
//! (`ReleaseReason::TransferredToUnit`) and sends [`AcdCommand::ToUnit`]. The call's core
//! (`crate::call`) ends any agent leg still up, plays hold music, times the unit's ring
//! and decides what its answer or failure means; this file dials the unit's number
//! through the outbound trunk (only with a permit of [`crate::server::outbound`]) and
//! bridges the caller to it when the core says so; the recording goes on (the unit on
//! the right channel). The work order of the call gets a `transferred_to_unit` event. A
//! unit that does not answer (or cannot be reached) sends the caller back to the queue.
//!
//! [`AcdCommand::ToUnit`]: crate::server::acd::AcdCommand::ToUnit

use super::{
    CallMedia, Channel, DATAGRAM, Duration, Instant, LegMedia, RelayDirection, Relayed, SocketAddr,
    debug, info, warn,
};
use crate::call::{CallInput, LegId};
use crate::queue::LegFailure;
use crate::server::call_orders::CallOrderSeed;
use crate::server::outbound::Dial;
use crate::server::outleg::{LegTimer, OutLeg, Prepared};
use crate::sip::call_leg::LegEvent;
use crate::sip::endpoint::CallHandle;
use crate::ticket::units::UnitId;

/// The caller's leg to a unit and the bridge to it.
pub(crate) struct UnitLeg {
    /// The core's name for it.
    pub(super) id: LegId,
    unit: UnitId,
    pub(super) leg: OutLeg,
    to_unit: Option<RelayDirection>,
    to_caller: Option<RelayDirection>,
}

impl CallMedia {
    /// The caller goes to `unit`: on the call record and the call's work order.
    pub(super) fn record_unit_transfer(&mut self, unit: UnitId) {
        info!(handle = %self.handle, unit = %unit, "transfer to the unit's outside number");
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
    pub(super) async fn dial_unit(&mut self, now: Instant, id: LegId, unit: UnitId) {
        let handle = self.handle;
        let permit = match self.ctx.outbound.permit(Dial::Unit(&unit)) {
            Ok(permit) => permit,
            Err(e) => {
                warn!(%handle, %e, "the unit cannot be dialled");
                self.unit_failed(now, id);
                return;
            }
        };
        let policy = self.ctx.trunk_media_encryption_of(permit.trunk_ip());
        let Some(prepared) = Prepared::open(&self.ctx, policy).await else {
            warn!(%handle, "no RTP ports for the unit leg");
            self.unit_failed(now, id);
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
            self.unit_failed(now, id);
            return;
        };
        info!(%handle, unit = %unit, number = %permit.number(), "dialling the unit");
        // The core times the ring.
        let mut leg = prepared.dialled(leg, None);
        leg.peer_ip = Some(permit.trunk_ip());
        self.unit = Some(Box::new(UnitLeg {
            id,
            unit,
            leg,
            to_unit: None,
            to_caller: None,
        }));
    }

    /// The unit's leg could not be placed or its answer is unusable: the core decides
    /// (back to the queue); the leg is given up.
    fn unit_failed(&mut self, now: Instant, id: LegId) {
        self.release_unit(now);
        info!(handle = %self.handle, "the unit was not reached");
        self.control(
            now,
            CallInput::LegFailed {
                leg: id,
                failure: LegFailure::Unreachable,
            },
        );
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
        let Some(unit) = self.unit.as_mut() else {
            return;
        };
        let id = unit.id;
        match event {
            LegEvent::Answered { sdp } => {
                let ok = sdp.is_some_and(|sdp| unit.leg.answered(now, &sdp, media_timeout));
                if !ok || unit.leg.media().is_none() {
                    warn!(%handle, "the unit's SDP answer is unusable");
                    self.unit_failed(now, id);
                    return;
                }
                self.control(now, CallInput::LegAnswered(id));
            }
            LegEvent::Ended { reason, .. } => {
                unit.leg.ended = true;
                info!(%handle, %reason, answered = unit.leg.session.is_some(), "the unit's leg ended");
                self.control(now, CallInput::LegEnded { leg: id, reason });
                self.release_unit(now);
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

    /// The core bridges the caller to the unit that answered.
    pub(super) fn bridge_unit(&mut self, now: Instant) {
        let caller_media = LegMedia::from(&self.negotiated);
        let Some(unit) = self.unit.as_mut() else {
            return;
        };
        let unit_media = unit.leg.media();
        unit.to_unit = unit.leg.relay_into(caller_media);
        unit.to_caller = unit_media.map(|m| RelayDirection::new(m, caller_media));
        info!(handle = %self.handle, unit = %unit.unit, "the unit answered; caller bridged");
        self.hangup_at = Some(now + Duration::from_secs(4 * 3600));
    }

    /// RTP from the unit: relayed to the caller, recorded on the right channel.
    pub(super) fn on_unit_rtp(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8], n: usize) {
        let Some(unit) = self.unit.as_mut() else {
            return;
        };
        let Some(n) = unit.leg.accept(now, from, buf, n) else {
            return;
        };
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
            // The core times the ring (no ring deadline is set here).
            LegTimer::Quiet | LegTimer::RingTimeout => {}
            LegTimer::MediaTimeout => {
                info!(%handle, "media timeout on the unit leg");
                unit.leg.ended = true;
                let (leg, id) = (unit.leg.handle, unit.id);
                self.shell.drive(|ep| ep.call_media_timeout(now, leg));
                self.control(now, CallInput::LegMediaLost(id));
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
