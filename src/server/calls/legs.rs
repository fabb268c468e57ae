//! The shell's side of the call's legs. The call's core (`crate::call`, `legs.rs` there)
//! decides which legs ring, which answer wins, what a miss or a vanished phone means and
//! what the ACD and the call record hear; this file carries it out: it places the legs
//! the core dials (an agent's registered contact, the duty list's first registered
//! agent; a unit's number in `unit_transfer.rs`), CANCELs/BYEs the legs it ends, bridges
//! the media of the leg it bridges, and reports each leg's SIP events back.
//!
//! Ring-all: the ACD offers a call to several agents at once (`QueueAction::RingAgent`
//! for each, `strategy = "ring_all"`); each offer is a leg with its own RTP port pair and
//! SDP offer, so whichever answers first can be bridged at once. A 200 OK that crosses
//! our CANCEL is ACKed and BYEd by the leg itself ([`crate::sip::call_leg::OutboundLeg`]).

use super::*;
use crate::call::{AcdReport, LegId, LegTarget, RecordNote};

impl AgentLeg {
    /// Take the phone's SDES key from its answer to our SRTP offer: `false` when its
    /// policy requires SRTP and the answer has no key for our offer (the leg must end).
    pub(super) fn take_srtp_answer(&mut self, answer: Option<&SessionDescription>) -> bool {
        match crate::server::leg_srtp::from_answer(self.srtp_offer.take(), answer) {
            Ok(srtp) => {
                self.srtp = srtp;
                true
            }
            Err(()) => false,
        }
    }
}

impl CallMedia {
    /// Open an RTP port pair and place our INVITE (with our SDP offer) to `contact`; its
    /// events come to this task. `None` when no port pair or no endpoint is available.
    pub(super) async fn place_agent_leg(
        &mut self,
        now: Instant,
        contact: &crate::sip::endpoint::AgentContact,
        id: Option<LegId>,
    ) -> Option<AgentLeg> {
        let handle = self.handle;
        let Some((ports, rtp, rtcp)) = self.ctx.open_sockets().await else {
            warn!(%handle, "no RTP ports for the agent leg");
            return None;
        };
        let local = LocalMedia::g711(
            self.ctx.public_ip,
            ports.rtp,
            u64::from(rand::random::<u32>()),
            1,
        );
        // SDES to a phone whose policy asks for it.
        let policy = self.ctx.agent_media_encryption_of(&contact.agent);
        let (offer, srtp_offer) = crate::server::leg_srtp::offer(&local, policy);
        let body = Bytes::from(offer.to_string());
        let caller = self
            .hotline
            .as_ref()
            .map(|h| h.caller.clone())
            .unwrap_or_default();
        let shell = self.shell.clone();
        let dialled = self.shell.drive(|ep| {
            let leg = ep.call_dial(now, contact, &caller, body);
            // Registered while the endpoint is locked: no event of the leg can be lost.
            shell.calls().alias(leg, handle);
            leg
        });
        let Some(leg) = dialled else {
            drop((rtp, rtcp));
            self.ctx.release(ports);
            return None;
        };
        info!(%handle, agent = %contact.agent, contact = %contact.contact, leg = %crate::logfmt::word(&id.map(|l| l.to_string())), "ringing agent");
        Some(AgentLeg {
            id,
            handle: leg,
            agent: contact.agent.clone(),
            contact: contact.contact.clone(),
            peer_ip: Some(contact.source.addr.ip()),
            ports,
            rtp,
            rtcp,
            offer,
            local,
            session: None,
            negotiated: None,
            to_agent: None,
            to_caller: None,
            ended: false,
            srtp_offer,
            srtp: None,
        })
    }

    /// Open an RTP port pair for the agent leg and ring the agent's registered browser
    /// (`crate::server::webrtc`): its media task sends the browser's frames to this
    /// pair as a plain RTP phone would. `None` when no ports or the browser is gone.
    pub(super) async fn place_browser_leg(&mut self, agent: &str, id: LegId) -> Option<AgentLeg> {
        let handle = self.handle;
        let task = self.shell.calls().task_events(handle)?;
        let Some((ports, rtp, rtcp)) = self.ctx.open_sockets().await else {
            warn!(%handle, "no RTP ports for the browser leg");
            return None;
        };
        let loopback = match rtp.local_addr().map(|a| a.ip()) {
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => IpAddr::from([127, 0, 0, 1]),
        };
        let local = LocalMedia::g711(loopback, ports.rtp, u64::from(rand::random::<u32>()), 1);
        let offer = sdp::offer(&local);
        let caller = self
            .hotline
            .as_ref()
            .map(|h| crate::ticket::privacy::mask_phone(&h.caller))
            .unwrap_or_default();
        let contact = crate::sip::message::Uri::parse(&format!("sip:{agent}@browser.invalid"));
        let rung = contact.ok().and_then(|contact| {
            let leg = self.ctx.browsers.ring(
                agent,
                &caller,
                task,
                SocketAddr::new(loopback, ports.rtp),
            )?;
            Some((leg, contact))
        });
        let Some((leg, contact)) = rung else {
            drop((rtp, rtcp));
            self.ctx.release(ports);
            return None;
        };
        info!(%handle, %agent, %leg, "ringing the agent's browser");
        Some(AgentLeg {
            id: Some(id),
            handle: leg,
            agent: agent.to_string(),
            contact,
            peer_ip: Some(loopback),
            ports,
            rtp,
            rtcp,
            offer,
            local,
            session: None,
            negotiated: None,
            to_agent: None,
            to_caller: None,
            ended: false,
            srtp_offer: None,
            srtp: None,
        })
    }

    /// Hang up agent leg `leg`: BYE/CANCEL on SIP, the browser told on a browser leg.
    pub(super) fn hang_up_leg(&self, now: Instant, leg: CallHandle) {
        if crate::server::webrtc::is_browser(leg) {
            self.ctx.browsers.hang_up(leg);
        } else {
            self.shell.drive(|ep| ep.call_hangup(now, leg));
        }
    }

    /// Place the legs the core asked for (from the run loop: opening ports awaits). A
    /// leg that cannot be placed is reported failed at once.
    pub(super) async fn place_legs(&mut self, now: Instant) {
        for (id, target) in std::mem::take(&mut self.pending_legs) {
            let agents = match &target {
                LegTarget::Unit(unit) => {
                    self.dial_unit(now, id, unit.clone()).await;
                    continue;
                }
                LegTarget::Agent(agent) if self.ctx.browsers.has(&agent.0) => {
                    // The agent's browser is its phone: it rings, the desk phone not.
                    match self.place_browser_leg(&agent.0, id).await {
                        Some(leg) => {
                            if self.legs.is_empty() && self.agent.is_none() {
                                self.hangup_at = Some(
                                    now + crate::call::ACD_RING_BACKSTOP
                                        + Duration::from_secs(3600),
                                );
                            }
                            self.legs.push(leg);
                        }
                        None => self.control(
                            now,
                            CallInput::LegFailed {
                                leg: id,
                                failure: LegFailure::Unreachable,
                            },
                        ),
                    }
                    continue;
                }
                LegTarget::Agent(agent) => vec![agent.0.clone()],
                LegTarget::DutyList => {
                    let city = self.hotline.as_ref().and_then(|h| h.city.clone());
                    city.as_ref()
                        .and_then(|c| self.ctx.hotline.as_ref()?.cities.get(c.as_str()))
                        .map(|c| c.duty_list.clone())
                        .unwrap_or_default()
                }
            };
            let contact = self
                .shell
                .drive(|ep| ep.agent_contacts(now, &agents))
                .unwrap_or_default()
                .into_iter()
                .next();
            let Some(contact) = contact else {
                info!(handle = %self.handle, leg = %id, agents = %agents.join(","), "no registered agent to ring");
                self.control(
                    now,
                    CallInput::LegFailed {
                        leg: id,
                        failure: LegFailure::Unreachable,
                    },
                );
                continue;
            };
            let Some(leg) = self.place_agent_leg(now, &contact, Some(id)).await else {
                self.control(
                    now,
                    CallInput::LegFailed {
                        leg: id,
                        failure: LegFailure::Unreachable,
                    },
                );
                continue;
            };
            if self.legs.is_empty() && self.agent.is_none() {
                // A backstop only: the core and the ACD time the ring themselves.
                let ring = match target {
                    LegTarget::DutyList => crate::call::DUTY_RING,
                    _ => crate::call::ACD_RING_BACKSTOP,
                };
                self.hangup_at = Some(now + ring + Duration::from_secs(3600));
            }
            self.legs.push(leg);
        }
    }

    /// The core's id of the agent leg `handle` (bridged or ringing).
    fn leg_id_of(&self, handle: CallHandle) -> Option<LegId> {
        self.agent
            .iter()
            .chain(self.legs.iter())
            .find(|l| l.handle == handle)
            .and_then(|l| l.id)
    }

    /// The agent leg the core calls `id` (bridged or ringing).
    fn leg_by_id(&self, id: LegId) -> Option<&AgentLeg> {
        self.agent
            .iter()
            .chain(self.legs.iter())
            .find(|l| l.id == Some(id))
    }

    /// An event of one of the hotline call's agent legs: reported to the core; the
    /// bridged leg's REFERs and re-INVITEs are handled here (transfers, hold).
    pub(super) fn on_leg_event(&mut self, now: Instant, leg: CallHandle, event: LegEvent) {
        let handle = self.handle;
        let Some(id) = self.leg_id_of(leg) else {
            return;
        };
        let bridged = self.agent.as_ref().is_some_and(|a| a.handle == leg);
        match event {
            LegEvent::Answered { sdp: Some(sdp) } if !bridged => {
                let Some(l) = self.legs.iter_mut().find(|l| l.handle == leg) else {
                    return;
                };
                let answer = std::str::from_utf8(&sdp)
                    .ok()
                    .and_then(|t| SessionDescription::parse(t).ok());
                let negotiated = answer
                    .as_ref()
                    .and_then(|answer| sdp::parse_answer(&l.offer, answer).ok());
                let Some(negotiated) = negotiated else {
                    // Its end (a failure) follows and is reported then.
                    warn!(%handle, agent = %l.agent, "agent's SDP answer unusable; hanging up the agent");
                    self.shell.drive(|ep| ep.call_hangup(now, leg));
                    return;
                };
                if !l.take_srtp_answer(answer.as_ref()) {
                    // Its end (a failure) follows and is reported then.
                    warn!(%handle, agent = %l.agent, "agent's phone answered without SRTP, which its policy requires; hanging up the agent");
                    self.shell.drive(|ep| ep.call_hangup(now, leg));
                    return;
                }
                l.negotiated = Some(negotiated);
                self.control(now, CallInput::LegAnswered(id));
            }
            LegEvent::Ended { reason, .. } => {
                debug!(%handle, %leg, %reason, bridged, "agent leg ended");
                self.control(now, CallInput::LegEnded { leg: id, reason });
                self.release_leg(leg);
            }
            LegEvent::Progress { .. } => self.control(now, CallInput::LegRinging(id)),
            LegEvent::Refer {
                replaces: Some(replaces),
                ..
            } if bridged => self.on_attended_refer(now, leg, &replaces),
            LegEvent::Refer { refer_to, .. } if bridged => self.on_refer(now, leg, &refer_to),
            LegEvent::Reinvite { sdp } if bridged => self.on_agent_reinvite(now, leg, &sdp),
            LegEvent::Reinvite { .. } => {
                self.shell
                    .drive(|ep| ep.call_reject_reinvite(now, leg, 488));
            }
            LegEvent::Refer { .. } => {
                self.shell.drive(|ep| ep.call_reject_refer(now, leg, 403));
            }
            other => debug!(%handle, ?other, "agent leg event"),
        }
    }

    /// Give an ended agent leg's ports back.
    pub(super) fn release_leg(&mut self, leg: CallHandle) {
        let taken = if self.agent.as_ref().is_some_and(|a| a.handle == leg) {
            self.agent.take()
        } else {
            self.legs
                .iter()
                .position(|l| l.handle == leg)
                .map(|i| self.legs.swap_remove(i))
        };
        if let Some(l) = taken {
            // Counted here: the leg is gone before the call's summary.
            let foreign = l.session.as_ref().map_or(0, |s| s.stats().foreign_dropped);
            if foreign > 0 {
                crate::metrics::rtp_foreign_dropped(foreign);
                info!(handle = %self.handle, packets = foreign, "RTP from hosts not in the agent's leg dropped");
            }
            let ports = l.ports;
            drop(l);
            self.ctx.release(ports);
        }
    }

    /// Start the RTP session and both relay directions of an answered agent leg.
    pub(super) fn start_agent_media(
        &self,
        now: Instant,
        leg: &mut AgentLeg,
        negotiated: Negotiated,
    ) {
        let session = leg_rtp_session(
            format!("hotline-{}", leg.handle.0),
            Some(self.media_timeout),
            now,
            negotiated.remote(),
            leg.peer_ip,
        );
        let caller_media = LegMedia::from(&self.negotiated);
        let agent_media = LegMedia::from(&negotiated);
        leg.to_agent = Some(RelayDirection::new(caller_media, agent_media));
        leg.to_caller = Some(RelayDirection::new(agent_media, caller_media));
        leg.session = Some(session);
        leg.negotiated = Some(negotiated);
    }

    /// The core bridges the caller to `id`: an agent's leg (the call is recorded from
    /// here on), or the unit's.
    pub(super) fn bridge_leg(&mut self, now: Instant, id: LegId) {
        let handle = self.handle;
        if self.unit.as_ref().is_some_and(|u| u.id == id) {
            self.bridge_unit(now);
            return;
        }
        let Some(i) = self.legs.iter().position(|l| l.id == Some(id)) else {
            return;
        };
        let mut leg = self.legs.swap_remove(i);
        let Some(negotiated) = leg.negotiated else {
            self.legs.push(leg);
            return;
        };
        self.start_agent_media(now, &mut leg, negotiated);
        let agent_id = leg.agent.clone();
        if let Some(previous) = self.agent.replace(leg) {
            self.legs.push(previous);
        }
        self.hangup_at = Some(now + Duration::from_secs(4 * 3600));
        let wall = self.ctx.clock.now();
        let date = wall.date_naive();
        if let Some(h) = self.hotline.as_mut()
            && self.recorder.is_some()
        {
            // A caller re-queued after losing an agent: the recording goes on.
            h.cdr.agent_answered(wall, agent_id.clone());
        } else if let Some(h) = self.hotline.as_mut() {
            let path = recording_path(&self.ctx.recordings_dir, date, &h.call_id);
            match create_recorder(&path, now, true) {
                Ok(r) => {
                    self.recorder = Some(r);
                    h.cdr.recording(path.display().to_string());
                    self.recording = Some(path);
                }
                Err(e) => {
                    crate::metrics::recording_failed();
                    warn!(%handle, %e, "call recording not started");
                }
            }
            h.cdr.agent_answered(wall, agent_id.clone());
        }
        info!(%handle, agent = %agent_id, codec = negotiated.codec.encoding_name(), srtp = self.agent.as_ref().is_some_and(|a| a.srtp.is_some()), "agent answered; bridged");
    }

    /// The core ends `id`: CANCEL before the answer, BYE after. A bridged agent's leg
    /// stops relaying at once and no longer counts as the call's in the ACD.
    pub(super) fn end_leg(&mut self, now: Instant, id: LegId) {
        if let Some(unit) = self.unit.as_mut().filter(|u| u.id == id) {
            if !unit.leg.ended {
                unit.leg.ended = true;
                let leg = unit.leg.handle;
                info!(handle = %self.handle, "ending the unit's leg");
                self.shell.drive(|ep| ep.call_hangup(now, leg));
            }
            return;
        }
        if self.agent.as_ref().is_some_and(|a| a.id == Some(id))
            && let Some(leg) = self.agent.take()
        {
            if let Some(q) = self.queue.as_ref() {
                q.acd
                    .leg_held(&q.call, &AgentId::new(leg.agent.clone()), false);
            }
            self.legs.push(leg);
        }
        let handle = self.handle;
        if let Some(leg) = self.legs.iter_mut().find(|l| l.id == Some(id) && !l.ended) {
            leg.ended = true;
            let h = leg.handle;
            info!(%handle, agent = %leg.agent, "ending the agent's leg");
            self.hang_up_leg(now, h);
        }
    }

    /// The phone of leg `id` is gone: offline until it registers again.
    pub(super) fn drop_agent_binding(&mut self, id: LegId) {
        let Some(leg) = self.leg_by_id(id) else {
            return;
        };
        let (agent, contact) = (leg.agent.clone(), leg.contact.clone());
        warn!(handle = %self.handle, %agent, "agent's phone is gone: offline");
        self.shell.drive(|ep| ep.drop_binding(&agent, &contact));
    }

    /// What the core tells the ACD, with this call's id (the core only reports while
    /// the ACD holds the call; errors are races and only logged). An agent whose leg
    /// is gone no longer counts as held by this call.
    pub(super) fn acd_report(&mut self, report: AcdReport) {
        if let AcdReport::AttendedTransfer { from, to } = &report {
            self.acd_attended_transfer(from, to);
            return;
        }
        let Some(q) = self.queue.as_ref() else {
            return;
        };
        let call = q.call.clone();
        let input = match report {
            AcdReport::AttendedTransfer { .. } => return,
            AcdReport::AgentAnswered(agent) => QueueInput::AgentAnswered { call, agent },
            AcdReport::LegFailed { agent, reason } => {
                q.acd.leg_held(&call, &agent, false);
                QueueInput::AgentLegFailed {
                    call,
                    agent,
                    reason,
                }
            }
            AcdReport::AgentLost(agent) => {
                q.acd.leg_held(&call, &agent, false);
                QueueInput::AgentLost { call, agent }
            }
            AcdReport::CallEnded(who_hung_up) => {
                if let Some(a) = self.agent.as_ref() {
                    q.acd.leg_held(&call, &AgentId::new(a.agent.clone()), false);
                }
                QueueInput::CallEnded { call, who_hung_up }
            }
        };
        if let Err(e) = q.acd.input(input) {
            debug!(handle = %self.handle, %e, "report not taken by the ACD");
        }
    }

    /// What the core puts on the call record.
    pub(super) fn record_note(&mut self, note: RecordNote) {
        let wall = self.ctx.clock.now();
        let agent_of = |call: &Self, leg: LegId| call.leg_by_id(leg).map(|l| l.agent.clone());
        match note {
            RecordNote::AgentFailed {
                leg,
                stage,
                cause,
                status,
            } => {
                let Some(agent) = agent_of(self, leg) else {
                    return;
                };
                if cause == AgentFailureCause::MediaTimeout {
                    warn!(handle = %self.handle, %agent, "agent's phone vanished mid-call (no audio): the caller goes back to the queue");
                    crate::metrics::agent_lost();
                }
                if let Some(h) = self.hotline.as_mut() {
                    h.cdr.agent_failed(wall, agent, stage, cause, status);
                }
            }
            RecordNote::PeerHungUp => {
                if let Some(h) = self.hotline.as_mut() {
                    h.cdr.hung_up(wall, HangupParty::Agent);
                }
            }
            RecordNote::ShutdownEnd => {
                if let Some(h) = self.hotline.as_mut() {
                    h.cdr.system_end(wall, crate::ivr::cdr::SystemEnd::Shutdown);
                }
            }
            RecordNote::BlindTransfer { leg, to } => {
                let from = agent_of(self, leg);
                if let Some(h) = self.hotline.as_mut() {
                    h.cdr
                        .transferred(wall, from, to, crate::ivr::cdr::TransferKind::Blind);
                }
            }
            RecordNote::TransferredToUnit(unit) => self.record_unit_transfer(unit),
            RecordNote::AttendedTransfer { leg, to } => {
                let from = agent_of(self, leg);
                self.record_attended_transfer(from, &to);
            }
        }
    }

    /// End the bridged agent's leg and every other agent leg still up (the call task
    /// ends; the core normally asked for this already).
    pub(super) fn hang_up_agent(&mut self, now: Instant) {
        let mut ending = Vec::new();
        for leg in self.agent.iter_mut().chain(self.legs.iter_mut()) {
            if !leg.ended {
                leg.ended = true;
                ending.push(leg.handle);
            }
        }
        for h in ending {
            self.hang_up_leg(now, h);
        }
    }

    /// The call task ends: give every agent leg's ports back.
    pub(super) fn release_agent_legs(&mut self) {
        for leg in self
            .agent
            .take()
            .into_iter()
            .chain(std::mem::take(&mut self.legs))
        {
            let ports = leg.ports;
            drop(leg);
            self.ctx.release(ports);
        }
    }
}
