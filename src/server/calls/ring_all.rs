//! Ring-all in the call task: the ACD offers a call to several agents at once
//! (`QueueAction::RingAgent` for each, `strategy = "ring_all"`); the task places one
//! leg per agent in parallel, the first 200 OK wins, the others are cancelled.
//!
//! - The first offer becomes [`CallMedia::agent`] as before; each further offer while
//!   it rings becomes a *fork* ([`CallMedia::forks`]), with its own RTP port pair and
//!   SDP offer (so whichever answers can be bridged at once).
//! - A fork that answers first is promoted to `agent` and bridged; the leg that was
//!   ringing there becomes a fork. The task reports `AgentAnswered` for the winner; the
//!   ACD withdraws every other offer in the same step (`CancelRing` each, reason
//!   `offer_withdrawn`) and the task CANCELs those legs.
//! - A 200 OK that crosses our CANCEL is ACKed and BYEd by the leg itself
//!   ([`crate::sip::call_leg::OutboundLeg`]); a 200 OK arriving from a fork after the
//!   call is already bridged is hung up here (BYE) and never reported as an answer.
//! - A fork that fails by itself (486, 603, 480, no contact …) is reported as
//!   `AgentLegFailed`; a fork we cancelled is not (the ACD already let it go).
//!
//! No-answer accounting follows Asterisk `app_queue` (`wait_for_answer`/`rna()`): with
//! ring-all, members hung up because another member answered are *not* counted as ring
//! no-answer (no `RINGNOANSWER`, no auto-pause), while every member still ringing when
//! the ring timeout expires is (each may be auto-paused); busy counts for neither. The
//! ACD core implements exactly that (`offer_failed` on the ring timeout for each agent,
//! `withdraw_offer` without penalty on another agent's answer); a missed call a phone
//! shows after "answered elsewhere" is not the agent's failure to answer.

use super::*;

impl CallMedia {
    /// Open an RTP port pair and place our INVITE (with our SDP offer) to `contact`; its
    /// events come to this task. `None` when no port pair or no endpoint is available.
    pub(super) async fn place_agent_leg(
        &mut self,
        now: Instant,
        contact: &crate::sip::endpoint::AgentContact,
        reason: DialFor,
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
        // SDES to a phone whose policy asks for it: `RTP/SAVP` when SRTP is required (a
        // phone that cannot must refuse), `RTP/AVP` with a key when it is optional.
        let policy = self.ctx.agent_media_encryption_of(&contact.agent);
        let srtp_offer = (policy != MediaEncryption::None).then(|| (LegSrtp::fresh(1), policy));
        let offer = match &srtp_offer {
            Some((ours, policy)) => sdp::with_sdes(
                sdp::offer(&local),
                ours,
                *policy == MediaEncryption::Required,
            ),
            None => sdp::offer(&local),
        };
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
        info!(%handle, agent = %contact.agent, contact = %contact.contact, %reason, "ringing agent");
        // The ACD times the ring itself (and cancels); ours is only a backstop then.
        let ring_timeout = if reason == DialFor::Acd {
            AGENT_RING_TIMEOUT * 4
        } else {
            AGENT_RING_TIMEOUT
        };
        Some(AgentLeg {
            reason,
            handle: leg,
            agent: contact.agent.clone(),
            contact: contact.contact.clone(),
            peer_ip: Some(contact.source.addr.ip()),
            ringing: false,
            dialled_at: now,
            ports,
            rtp,
            rtcp,
            offer,
            local,
            session: None,
            negotiated: None,
            to_agent: None,
            to_caller: None,
            ring_until: Some(now + ring_timeout),
            ended: false,
            srtp_offer,
            srtp: None,
        })
    }

    /// Ring every agent the ACD added to the offer (ring-all), each on its own leg.
    pub(super) async fn dial_forks(&mut self, now: Instant) {
        for agent in std::mem::take(&mut self.pending_forks) {
            let bridged = self.agent.as_ref().is_some_and(|a| a.session.is_some());
            if bridged {
                self.report_leg_failed(&agent, LegFailure::Busy);
                continue;
            }
            let contact = self
                .shell
                .drive(|ep| ep.agent_contacts(now, std::slice::from_ref(&agent.0)))
                .unwrap_or_default()
                .into_iter()
                .next();
            let Some(contact) = contact else {
                info!(handle = %self.handle, %agent, "ring-all: agent not registered");
                self.report_leg_failed(&agent, LegFailure::Unreachable);
                continue;
            };
            match self.place_agent_leg(now, &contact, DialFor::Acd).await {
                Some(leg) if self.agent.is_none() => self.agent = Some(leg),
                Some(leg) => self.forks.push(leg),
                None => self.report_leg_failed(&agent, LegFailure::Unreachable),
            }
        }
    }

    /// An event of a ring-all fork.
    pub(super) fn on_fork_event(&mut self, now: Instant, leg: CallHandle, event: LegEvent) {
        let handle = self.handle;
        let Some(index) = self.forks.iter().position(|f| f.handle == leg) else {
            return;
        };
        match event {
            LegEvent::Answered { sdp } => {
                let bridged = self
                    .agent
                    .as_ref()
                    .is_some_and(|a| a.session.is_some() && !a.ended);
                if bridged {
                    // Another agent won: this late answer is hung up (BYE), not reported.
                    if let Some(fork) = self.forks.get_mut(index)
                        && !fork.ended
                    {
                        fork.ended = true;
                        fork.ring_until = None;
                        info!(%handle, agent = %fork.agent, "ring-all: late answer hung up");
                        self.shell.drive(|ep| ep.call_hangup(now, leg));
                    }
                    return;
                }
                // First answer: this fork becomes the call's agent leg and is bridged.
                let fork = self.forks.swap_remove(index);
                info!(%handle, agent = %fork.agent, "ring-all: first answer wins");
                if let Some(previous) = self.agent.replace(fork) {
                    self.forks.push(previous);
                }
                self.on_agent_event(now, leg, LegEvent::Answered { sdp });
            }
            LegEvent::Ended { reason, .. } => {
                let fork = self.forks.swap_remove(index);
                let (we_ended, agent) = (fork.ended, AgentId::new(fork.agent.clone()));
                let contact = fork.contact.clone();
                let ports = fork.ports;
                drop(fork);
                self.ctx.release(ports);
                debug!(%handle, %agent, ?reason, we_ended, "ring-all fork ended");
                if we_ended {
                    if let Some(q) = self.queue.as_ref() {
                        q.acd.leg_held(&q.call, &agent, false);
                    }
                    return;
                }
                // The fork failed by itself: as for a single agent leg.
                let status = match reason {
                    EndReason::Rejected { status } => Some(status),
                    _ => None,
                };
                if let Some(h) = self.hotline.as_mut() {
                    h.cdr.agent_failed(
                        self.ctx.clock.now(),
                        agent.0.clone(),
                        AgentStage::Ringing,
                        AgentFailureCause::LegFailed,
                        status,
                    );
                }
                if reason == EndReason::NoAnswer {
                    // Not even a provisional answer: the phone is gone.
                    warn!(%handle, %agent, "agent's phone does not answer at all: offline");
                    self.shell
                        .drive(|ep| ep.drop_binding(agent.as_str(), &contact));
                    if let Some(q) = self.queue.as_ref() {
                        q.acd.leg_held(&q.call, &agent, false);
                        let call = q.call.clone();
                        self.report(QueueInput::AgentLost { call, agent });
                    }
                } else {
                    self.report_leg_failed(&agent, leg_failure(reason));
                }
            }
            LegEvent::Progress { .. } => {
                if let Some(fork) = self.forks.get_mut(index) {
                    fork.ringing = true;
                }
            }
            LegEvent::Reinvite { .. } => {
                self.shell
                    .drive(|ep| ep.call_reject_reinvite(now, leg, 488));
            }
            other => debug!(%handle, ?other, "ring-all fork event"),
        }
    }

    /// CANCEL (or BYE) the fork ringing `agent`; true when there was one. Unless the
    /// call is bridged (another agent answered), the miss goes on the CDR, and a phone
    /// that has not even rung for [`SILENT_PHONE`] is taken as gone (offline), as for a
    /// single agent leg.
    pub(super) fn hang_up_fork(&mut self, now: Instant, agent: &AgentId) -> bool {
        let handle = self.handle;
        let answered_elsewhere = self.agent.as_ref().is_some_and(|a| a.session.is_some());
        let Some(fork) = self
            .forks
            .iter_mut()
            .find(|f| f.agent == agent.0 && !f.ended)
        else {
            return false;
        };
        fork.ended = true;
        fork.ring_until = None;
        let leg = fork.handle;
        let silent = !fork.ringing && now >= fork.dialled_at + SILENT_PHONE;
        let contact = fork.contact.clone();
        info!(%handle, %agent, "ACD lets go of a ring-all fork");
        self.shell.drive(|ep| ep.call_hangup(now, leg));
        if answered_elsewhere {
            return true;
        }
        self.note_unanswered_offer(agent, silent);
        if silent {
            warn!(%handle, %agent, "agent's phone did not respond to the offer: offline");
            self.shell
                .drive(|ep| ep.drop_binding(agent.as_str(), &contact));
            if let Some(q) = self.queue.as_ref() {
                let call = q.call.clone();
                self.report(QueueInput::AgentLost {
                    call,
                    agent: agent.clone(),
                });
            }
        }
        true
    }

    /// Hang up every fork still up (the call ends or is bridged elsewhere).
    pub(super) fn hang_up_forks(&mut self, now: Instant) {
        let legs: Vec<CallHandle> = self
            .forks
            .iter_mut()
            .filter(|f| !f.ended)
            .map(|f| {
                f.ended = true;
                f.ring_until = None;
                f.handle
            })
            .collect();
        for leg in legs {
            self.shell.drive(|ep| ep.call_hangup(now, leg));
        }
    }

    /// The call task ends: give every fork's ports back.
    pub(super) fn release_forks(&mut self) {
        for fork in std::mem::take(&mut self.forks) {
            let ports = fork.ports;
            drop(fork);
            self.ctx.release(ports);
        }
    }

    /// Our backstop ring timeout on forks (the ACD's own timeout normally comes first).
    pub(super) fn fork_timers(&mut self, now: Instant) {
        let due: Vec<CallHandle> = self
            .forks
            .iter_mut()
            .filter(|f| f.ring_until.is_some_and(|t| now >= t))
            .map(|f| {
                f.ring_until = None;
                f.handle
            })
            .collect();
        for leg in due {
            info!(handle = %self.handle, %leg, "ring-all fork did not answer; cancelling");
            self.shell.drive(|ep| ep.call_hangup(now, leg));
        }
    }
}
