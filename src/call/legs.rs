//! The call's outgoing legs, decided here and placed by the shell: the agents the ACD
//! offers the call to (ring-all: several at once, the first answer wins), after hours
//! the duty list, and a unit's outside number (transfer to a unit).
//!
//! The shell dials what [`CallOutput::Dial`] names, ends what [`CallOutput::EndLeg`]
//! names, bridges the caller to [`CallOutput::Bridge`]'s leg, and reports each leg's
//! events ([`CallInput::LegRinging`], [`CallInput::LegAnswered`], [`CallInput::LegFailed`],
//! [`CallInput::LegEnded`], [`CallInput::LegMediaLost`]). This module decides what they
//! mean: which answer wins, what the ACD hears, when a phone counts as gone, when the
//! caller goes back to the queue.
//!
//! No-answer accounting follows Asterisk `app_queue` (`wait_for_answer`/`rna()`): legs
//! cancelled because another agent answered are not the agents' misses; every agent
//! still ringing when the ACD's ring timeout expires is (the ACD cancels each and may
//! pause the agent); busy counts for neither. A phone that has not even sent 180 after
//! [`SILENT_PHONE`] when its offer is withdrawn, or whose INVITE got no response at all,
//! is taken as gone (its registration is dropped, the ACD hears `AgentLost`).

use std::time::{Duration, Instant};

use crate::ivr::cdr::{AgentFailureCause, AgentStage};
use crate::queue::{AgentId, LegFailure, Party};
use crate::sip::call_leg::EndReason;
use crate::ticket::units::UnitId;

use super::{Call, CallOutput, Peer, Phase};

/// An offered phone that has not even sent 180 Ringing after this long (the INVITE was
/// retransmitted twice) when its offer is withdrawn is taken as gone.
pub const SILENT_PHONE: Duration = Duration::from_secs(3);
/// How long the duty list's agent rings before the caller is offered a message.
pub const DUTY_RING: Duration = Duration::from_secs(30);
/// The ACD times an offer itself and cancels it; this is only our backstop.
pub const ACD_RING_BACKSTOP: Duration = Duration::from_secs(120);
/// How long a unit's phone rings before the caller goes back to the queue.
pub const UNIT_RING: Duration = Duration::from_secs(30);

/// A leg of this call, named by the core when it asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u32);

impl std::fmt::Display for LegId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "leg-{}", self.0)
    }
}

/// Whom a leg rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegTarget {
    /// An agent the ACD offered the call to (its registered contact).
    Agent(AgentId),
    /// After hours, urgent: the first registered agent of the city's duty list.
    DutyList,
    /// A unit's outside number, through the trunk.
    Unit(UnitId),
}

/// What the ACD hears about its call (the shell adds the call's id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcdReport {
    /// The agent answered; the caller is bridged to them.
    AgentAnswered(AgentId),
    /// The offer to the agent failed (busy, declined, no answer, unreachable).
    LegFailed {
        /// The agent.
        agent: AgentId,
        /// How it failed.
        reason: LegFailure,
    },
    /// The agent's phone is gone (no response, or no audio mid-call): offline.
    AgentLost(AgentId),
    /// The bridged call ended on the agent's side.
    CallEnded(Party),
    /// An attended transfer: `to` has the caller now, `from` is free.
    AttendedTransfer {
        /// The agent who consulted.
        from: AgentId,
        /// The consulted agent.
        to: AgentId,
    },
}

/// What goes on the call record (the shell's call-record builder adds the time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordNote {
    /// An agent's leg failed or was given up.
    AgentFailed {
        /// The leg (the shell knows whose phone it rang).
        leg: LegId,
        /// Ringing or on the call.
        stage: AgentStage,
        /// Why.
        cause: AgentFailureCause,
        /// The final SIP status, when one came.
        status: Option<u16>,
    },
    /// The bridged agent (or unit) hung up first.
    PeerHungUp,
    /// The server's shutdown ended the bridged call.
    ShutdownEnd,
    /// The agent of `leg` blind-transferred the caller to `to`.
    BlindTransfer {
        /// The transferring agent's leg.
        leg: LegId,
        /// The target, as the record names it.
        to: String,
    },
    /// The caller goes to this unit's outside number.
    TransferredToUnit(UnitId),
    /// The agent of `leg` handed the caller to `to` (attended transfer).
    AttendedTransfer {
        /// The transferring agent's leg (ended).
        leg: LegId,
        /// The consulted agent, bridged now.
        to: AgentId,
    },
}

/// How a leg's dial ended early, or its session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LegState {
    /// Dialled, not answered.
    Ringing,
    /// Answered and bridged to the caller.
    Up,
}

/// One leg the core asked for.
#[derive(Debug, Clone)]
pub(super) struct Leg {
    pub(super) id: LegId,
    pub(super) to: LegTarget,
    pub(super) state: LegState,
    pub(super) dialled_at: Instant,
    /// The phone answered the INVITE with 180/183: it is there.
    pub(super) ringing: bool,
    /// Our backstop ring timeout (the ACD times its own offers).
    pub(super) ring_until: Option<Instant>,
    /// We asked for its end (CANCEL/BYE) and the ACD already knows: its end is no news.
    pub(super) ending: bool,
}

/// The call's legs, live or ending.
#[derive(Debug, Default)]
pub(super) struct Legs {
    legs: Vec<Leg>,
    pub(super) next: u32,
}

impl Legs {
    fn get_mut(&mut self, id: LegId) -> Option<&mut Leg> {
        self.legs.iter_mut().find(|l| l.id == id)
    }

    fn remove(&mut self, id: LegId) -> Option<Leg> {
        let i = self.legs.iter().position(|l| l.id == id)?;
        Some(self.legs.remove(i))
    }

    fn bridged(&self) -> Option<&Leg> {
        self.legs
            .iter()
            .find(|l| l.state == LegState::Up && !l.ending)
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.legs.iter().filter_map(|l| l.ring_until).min()
    }

    /// The agent a leg rings (the duty list's is the shell's to know).
    pub(super) fn agent_of(&self, id: LegId) -> Option<AgentId> {
        self.legs
            .iter()
            .find(|l| l.id == id)
            .and_then(|l| match &l.to {
                LegTarget::Agent(agent) => Some(agent.clone()),
                _ => None,
            })
    }

    /// Forget a leg (its end is no news any more).
    pub(super) fn forget(&mut self, id: LegId) -> Option<Leg> {
        self.remove(id)
    }

    pub(super) fn push_up(&mut self, leg: Leg) {
        self.legs.push(leg);
    }
}

impl Call {
    /// The agent the caller is bridged to through the queue (a blind transfer is theirs
    /// to make), if any.
    pub fn bridged_agent(&self) -> Option<&AgentId> {
        match &self.phase {
            Phase::Bridged {
                peer: Peer::QueueAgent,
                leg,
                ..
            } => self
                .legs
                .legs
                .iter()
                .find(|l| l.id == *leg)
                .and_then(|l| match &l.to {
                    LegTarget::Agent(agent) => Some(agent),
                    _ => None,
                }),
            _ => None,
        }
    }

    pub(super) fn dial(&mut self, now: Instant, to: LegTarget) -> LegId {
        self.legs.next += 1;
        let id = LegId(self.legs.next);
        let ring = match to {
            LegTarget::Agent(_) => ACD_RING_BACKSTOP,
            LegTarget::DutyList => DUTY_RING,
            LegTarget::Unit(_) => UNIT_RING,
        };
        self.legs.legs.push(Leg {
            id,
            to: to.clone(),
            state: LegState::Ringing,
            dialled_at: now,
            ringing: false,
            ring_until: Some(now + ring),
            ending: false,
        });
        self.outputs.push_back(CallOutput::Dial {
            leg: id,
            target: to,
        });
        id
    }

    /// The ACD offers the call to `agent`: ring them too (ring-all), unless an agent
    /// already answered (the offer is stale: busy at once).
    pub(super) fn on_ring_agent(&mut self, now: Instant, agent: AgentId) {
        if self.legs.bridged().is_some() || !self.can_ring() {
            self.outputs
                .push_back(CallOutput::Acd(AcdReport::LegFailed {
                    agent,
                    reason: LegFailure::Busy,
                }));
            return;
        }
        self.dial(now, LegTarget::Agent(agent));
    }

    /// Only a call waiting in the queue (or already bridged: stale) rings agents.
    fn can_ring(&self) -> bool {
        !matches!(self.phase, Phase::Over) && !self.caller_gone
    }

    /// The ACD withdraws its offer to `agent` (ring timeout, another agent answered,
    /// the call moved on). Unless another agent answered, the miss goes on the record,
    /// and a phone that never even rang is taken as gone.
    pub(super) fn on_cancel_ring(&mut self, now: Instant, agent: &AgentId) {
        let answered_elsewhere = self.legs.bridged().is_some();
        let Some(leg) = self
            .legs
            .legs
            .iter_mut()
            .find(|l| l.to == LegTarget::Agent(agent.clone()) && !l.ending)
        else {
            return;
        };
        leg.ending = true;
        leg.ring_until = None;
        let (id, was_up) = (leg.id, leg.state == LegState::Up);
        let silent = !leg.ringing && now >= leg.dialled_at + SILENT_PHONE;
        self.outputs.push_back(CallOutput::EndLeg(id));
        if was_up || answered_elsewhere {
            return;
        }
        self.note(RecordNote::AgentFailed {
            leg: id,
            stage: AgentStage::Ringing,
            cause: if silent {
                AgentFailureCause::NoResponse
            } else {
                AgentFailureCause::NotAnswered
            },
            status: None,
        });
        if silent {
            // Not even ringing for seconds: the phone is gone (a live one answers 180
            // within milliseconds).
            self.outputs.push_back(CallOutput::DropAgentBinding(id));
            self.outputs
                .push_back(CallOutput::Acd(AcdReport::AgentLost(agent.clone())));
        }
    }

    /// The ACD hangs up `agent`'s leg (an answer that crossed its cancel).
    pub(super) fn on_hang_up_agent(&mut self, agent: &AgentId) {
        if let Some(leg) = self
            .legs
            .legs
            .iter_mut()
            .find(|l| l.to == LegTarget::Agent(agent.clone()) && !l.ending)
        {
            leg.ending = true;
            leg.ring_until = None;
            let id = leg.id;
            self.outputs.push_back(CallOutput::EndLeg(id));
        }
    }

    pub(super) fn on_leg_ringing(&mut self, leg: LegId) {
        if let Some(leg) = self.legs.get_mut(leg) {
            leg.ringing = true;
        }
    }

    /// A leg answered: the first answer is bridged; a later one (another agent won) is
    /// hung up and never reported.
    pub(super) fn on_leg_answered(&mut self, leg: LegId) {
        let won_elsewhere = self.legs.bridged().is_some_and(|b| b.id != leg);
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        if l.ending || l.state == LegState::Up {
            // An answer crossing our CANCEL: the leg itself ACKs and BYEs it.
            return;
        }
        l.ring_until = None;
        if won_elsewhere {
            l.ending = true;
            self.outputs.push_back(CallOutput::EndLeg(leg));
            return;
        }
        l.state = LegState::Up;
        let peer = match &l.to {
            LegTarget::Agent(agent) => {
                let agent = agent.clone();
                self.outputs.push_back(CallOutput::Bridge(leg));
                self.outputs
                    .push_back(CallOutput::Acd(AcdReport::AgentAnswered(agent)));
                Peer::QueueAgent
            }
            LegTarget::DutyList => {
                self.outputs.push_back(CallOutput::Bridge(leg));
                Peer::DutyAgent
            }
            LegTarget::Unit(_) => {
                self.outputs.push_back(CallOutput::Bridge(leg));
                Peer::Unit
            }
        };
        let choice = self.choice();
        self.phase = Phase::Bridged {
            peer,
            choice,
            leg,
            consulted_leg_due: None,
        };
        self.play_nothing();
    }

    /// A leg could not be placed at all (no registered contact, no ports, no permit).
    pub(super) fn on_leg_failed(&mut self, now: Instant, leg: LegId, failure: LegFailure) {
        let Some(l) = self.legs.remove(leg) else {
            return;
        };
        if l.ending {
            return;
        }
        match l.to {
            LegTarget::Agent(agent) => {
                self.outputs
                    .push_back(CallOutput::Acd(AcdReport::LegFailed {
                        agent,
                        reason: failure,
                    }));
            }
            LegTarget::DutyList => self.duty_list_unavailable(now),
            LegTarget::Unit(_) => self.unit_failed(leg),
        }
    }

    /// A leg's dialog ended (by either side).
    pub(super) fn on_leg_ended(&mut self, now: Instant, leg: LegId, reason: EndReason) {
        let Some(l) = self.legs.remove(leg) else {
            return;
        };
        if l.state == LegState::Up {
            self.bridged_leg_ended(now, l, reason);
            return;
        }
        if l.ending {
            // The ACD already let go of this offer (or another agent answered).
            return;
        }
        let status = match reason {
            EndReason::Rejected { status } => Some(status),
            _ => None,
        };
        match l.to {
            LegTarget::Agent(agent) => {
                self.note(RecordNote::AgentFailed {
                    leg,
                    stage: AgentStage::Ringing,
                    cause: AgentFailureCause::LegFailed,
                    status,
                });
                if reason == EndReason::NoAnswer {
                    // Not even a provisional answer: the phone is gone.
                    self.outputs.push_back(CallOutput::DropAgentBinding(leg));
                    self.outputs
                        .push_back(CallOutput::Acd(AcdReport::AgentLost(agent)));
                } else {
                    self.outputs
                        .push_back(CallOutput::Acd(AcdReport::LegFailed {
                            agent,
                            reason: leg_failure(reason),
                        }));
                }
            }
            LegTarget::DutyList => {
                self.note(RecordNote::AgentFailed {
                    leg,
                    stage: AgentStage::Ringing,
                    cause: AgentFailureCause::LegFailed,
                    status,
                });
                self.duty_list_unavailable(now);
            }
            LegTarget::Unit(_) => self.unit_failed(leg),
        }
    }

    fn bridged_leg_ended(&mut self, now: Instant, leg: Leg, reason: EndReason) {
        match leg.to {
            LegTarget::Unit(_) => {
                self.note(RecordNote::PeerHungUp);
                self.hang_up();
            }
            LegTarget::Agent(_) | LegTarget::DutyList => {
                // A shutdown ends both legs from the endpoint: the server hung up.
                let we_ended = leg.ending || reason == EndReason::Shutdown;
                self.note(if reason == EndReason::Shutdown {
                    RecordNote::ShutdownEnd
                } else {
                    RecordNote::PeerHungUp
                });
                let queue_agent = matches!(leg.to, LegTarget::Agent(_));
                if queue_agent {
                    self.outputs
                        .push_back(CallOutput::Acd(AcdReport::CallEnded(if we_ended {
                            Party::System
                        } else {
                            Party::Agent
                        })));
                }
                // The agent of the queue hung up first: the caller rates the service;
                // otherwise (a duty agent, the server ended it) the call ends.
                let is_phase_leg = matches!(
                    self.phase,
                    Phase::Bridged { leg: l, .. } if l == leg.id
                );
                if !is_phase_leg {
                    return;
                }
                if queue_agent && !we_ended {
                    self.start_survey(now);
                } else {
                    self.hang_up();
                }
            }
        }
    }

    /// The bridged leg's audio stopped (its phone vanished; the shell ended its dialog).
    /// An agent of the queue: the caller goes back to the queue ahead of later callers
    /// and the agent is offline until the phone registers again. Anyone else: the call
    /// ends.
    pub(super) fn on_leg_media_lost(&mut self, leg: LegId) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        if l.state != LegState::Up {
            return;
        }
        let l = self.legs.remove(leg);
        let agent = match l.map(|l| l.to) {
            Some(LegTarget::Agent(agent))
                if matches!(
                    self.phase,
                    Phase::Bridged {
                        peer: Peer::QueueAgent,
                        ..
                    }
                ) =>
            {
                agent
            }
            _ => {
                self.hang_up();
                return;
            }
        };
        self.note(RecordNote::AgentFailed {
            leg,
            stage: AgentStage::OnCall,
            cause: AgentFailureCause::MediaTimeout,
            status: None,
        });
        self.outputs.push_back(CallOutput::DropAgentBinding(leg));
        self.outputs
            .push_back(CallOutput::Acd(AcdReport::AgentLost(agent)));
        self.back_to_queue();
    }

    /// The bridged agent blind-transferred the caller (the ACD took the call back): the
    /// agent's leg ends, the caller hears hold music until the ACD's next word (another
    /// agent rings, the survey, a unit).
    pub(super) fn on_blind_transfer(&mut self, to: String) {
        let Phase::Bridged { leg, .. } = self.phase else {
            return;
        };
        self.note(RecordNote::PeerHungUp);
        self.note(RecordNote::BlindTransfer { leg, to });
        self.end_all_legs();
        self.back_to_queue();
    }

    /// The ACD released the call to a unit: any agent leg ends, hold music while the
    /// unit's number is dialled.
    pub(super) fn on_to_unit(&mut self, now: Instant, unit: UnitId) {
        if !matches!(self.phase, Phase::Queued { .. } | Phase::Bridged { .. }) {
            return;
        }
        let choice = self.choice();
        self.end_all_legs();
        self.note(RecordNote::TransferredToUnit(unit.clone()));
        let leg = self.dial(now, LegTarget::Unit(unit));
        self.phase = Phase::ToUnit { choice, leg };
        self.play_hold_music();
    }

    /// The unit was not reached: the caller waits in the queue again (the ACD let go at
    /// the transfer: a fresh entry); a call that never was queued ends.
    fn unit_failed(&mut self, leg: LegId) {
        if !matches!(self.phase, Phase::ToUnit { leg: l, .. } if l == leg) {
            return;
        }
        match self.choice() {
            Some(choice) => self.enqueue(choice),
            None => self.hang_up(),
        }
    }

    fn back_to_queue(&mut self) {
        match self.choice() {
            Some(choice) => {
                self.phase = Phase::Queued {
                    choice,
                    announcing: false,
                };
                self.play_hold_music();
            }
            None => self.hang_up(),
        }
    }

    /// CANCEL or BYE every leg still up; the core forgets them (their ends are no news).
    pub(super) fn end_all_legs(&mut self) {
        for leg in std::mem::take(&mut self.legs.legs) {
            if !leg.ending {
                self.outputs.push_back(CallOutput::EndLeg(leg.id));
            }
        }
    }

    /// Our backstop ring timeouts: the leg is cancelled, and its end counts as no answer.
    pub(super) fn leg_timers(&mut self, now: Instant) {
        let due: Vec<LegId> = self
            .legs
            .legs
            .iter_mut()
            .filter(|l| l.ring_until.is_some_and(|t| now >= t))
            .map(|l| {
                l.ring_until = None;
                l.id
            })
            .collect();
        for leg in due {
            self.outputs.push_back(CallOutput::EndLeg(leg));
        }
    }

    fn note(&mut self, note: RecordNote) {
        self.outputs.push_back(CallOutput::Record(note));
    }
}

/// How a failed agent leg counts for the ACD.
pub fn leg_failure(reason: EndReason) -> LegFailure {
    match reason {
        EndReason::Rejected { status: 486 | 600 } => LegFailure::Busy,
        EndReason::Rejected { status: 603 } => LegFailure::Rejected,
        EndReason::Rejected {
            status: 408 | 480 | 487,
        }
        | EndReason::Cancelled
        | EndReason::LocalHangup => LegFailure::NoAnswer,
        _ => LegFailure::Unreachable,
    }
}
