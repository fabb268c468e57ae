//! Attended transfers (RFC 3515 REFER with RFC 3891 Replaces), decided here; the shell
//! (`server/calls/attended.rs`) finds the dialogs, moves the legs between call tasks
//! and speaks SIP.
//!
//! Two ways in, both ending with the consulted agent bridged to the caller in place of
//! the agent who consulted:
//! - The bridged agent's phone sends REFER with Replaces naming the consultation it
//!   placed ([`CallInput::AttendedRefer`]). Accepted only from the bridged leg, for the
//!   agent's own consultation, with no other transfer under way; the call then asks the
//!   consultation for its leg to the consulted agent and waits [`HANDOVER_TIMEOUT`]
//!   for it ([`CallInput::ConsultedLeg`]). In time: adopted; too late or gone: the
//!   REFER's NOTIFY says 503 and the caller stays with the agent.
//! - A leg offered to replace the bridged one ([`CallInput::Replace`]): an agent's
//!   INVITE with Replaces, or the consultation's leg when the consulting agent sent
//!   the REFER to the consulted agent instead. Adopted if it names the bridged leg and
//!   no other transfer is under way; else 481.
//!
//! Adopting: the new leg gets its own [`LegId`] and is bridged; the REFER (if one) hears
//! 200, the old leg is hung up, hold music stops, the ACD moves the call to the new
//! agent (a queue call) and the record notes the transfer.

use std::time::{Duration, Instant};

use crate::queue::AgentId;

use super::legs::{Leg, LegState};
use super::{AcdReport, Call, CallOutput, LegId, LegTarget, Peer, Phase, RecordNote};

/// How long a REFER waits for the consultation's leg.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the dialog a REFER's Replaces names turned out to be (the shell looks it up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplacesTarget {
    /// A consultation call (agent to agent, through us) that `placed_by` placed.
    Consultation {
        /// The agent who called the consulted agent.
        placed_by: AgentId,
    },
    /// A dialog that is not a consultation (a caller's, our own leg, another task's).
    NotAConsultation,
    /// No usable dialog: the RFC 3891 §3 status the INVITE it asks for would get.
    NoDialog(u16),
}

/// The SIP side of a transfer, for the shell to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferStep {
    /// Refuse the REFER (403): not the bridged agent's, not their consultation, or a
    /// transfer is already under way.
    RefuseRefer,
    /// Accept the REFER (202) and ask the consultation for its leg to the consulted
    /// agent; [`CallInput::ConsultedLeg`] says what came.
    TakeConsultedLeg,
    /// The transfer failed: the REFER (accepted if not yet) gets a NOTIFY with this
    /// status; the caller stays with the agent.
    Failed(u16),
    /// The leg that came is not wanted any more (the call moved on): hang it up.
    DropOffered,
    /// Refuse the leg offered by [`CallInput::Replace`] with this status.
    RefuseReplacing(u16),
    /// The leg that came is the call's leg `0` from now on: bridge the caller to it
    /// (answering it first if it is an INVITE).
    Adopt(LegId),
    /// The REFER that asked for this transfer (if any) gets NOTIFY 200.
    Completed,
    /// Hang up the consultation's leg from the agent who consulted (after the BYE of
    /// their leg of this call).
    EndConsultation,
}

impl Call {
    /// The bridged agent (`from`, on `leg`) asks to hand the caller to the consultation
    /// the REFER's Replaces names.
    pub(super) fn on_attended_refer(
        &mut self,
        now: Instant,
        leg: LegId,
        from: &AgentId,
        target: ReplacesTarget,
    ) {
        let Phase::Bridged {
            leg: bridged,
            consulted_leg_due,
            peer,
            ..
        } = &mut self.phase
        else {
            self.transfer_step(TransferStep::RefuseRefer);
            return;
        };
        if *bridged != leg || consulted_leg_due.is_some() || *peer == Peer::Unit {
            self.transfer_step(TransferStep::RefuseRefer);
            return;
        }
        match target {
            ReplacesTarget::NoDialog(status) => self.transfer_step(TransferStep::Failed(status)),
            ReplacesTarget::NotAConsultation => self.transfer_step(TransferStep::RefuseRefer),
            ReplacesTarget::Consultation { placed_by } if placed_by != *from => {
                self.transfer_step(TransferStep::RefuseRefer);
            }
            ReplacesTarget::Consultation { .. } => {
                *consulted_leg_due = Some(now + HANDOVER_TIMEOUT);
                self.transfer_step(TransferStep::TakeConsultedLeg);
            }
        }
    }

    /// The consultation's leg to `agent` came (`None`: the consultation could not give
    /// it).
    pub(super) fn on_consulted_leg(&mut self, now: Instant, agent: Option<AgentId>) {
        let waiting = match &mut self.phase {
            Phase::Bridged {
                consulted_leg_due,
                leg,
                ..
            } => consulted_leg_due.take().map(|_| *leg),
            _ => None,
        };
        match (waiting, agent) {
            (Some(old), Some(to)) => self.adopt(now, old, to),
            (Some(_), None) => self.transfer_step(TransferStep::Failed(503)),
            (None, Some(_)) => self.transfer_step(TransferStep::DropOffered),
            (None, None) => {}
        }
    }

    /// Agent `by` offers a leg to replace `leg`.
    pub(super) fn on_replace(&mut self, now: Instant, leg: LegId, by: AgentId) {
        let replaceable = matches!(
            &self.phase,
            Phase::Bridged { leg: l, consulted_leg_due: None, peer, .. } if *l == leg && *peer != Peer::Unit
        );
        if replaceable {
            self.adopt(now, leg, by);
        } else {
            self.transfer_step(TransferStep::RefuseReplacing(481));
        }
    }

    /// The transfer's deadline.
    pub(super) fn transfer_timers(&mut self, now: Instant) {
        if let Phase::Bridged {
            consulted_leg_due, ..
        } = &mut self.phase
            && consulted_leg_due.is_some_and(|t| now >= t)
        {
            *consulted_leg_due = None;
            self.transfer_step(TransferStep::Failed(503));
        }
    }

    /// Bridge the caller to `to`'s new leg in place of `old`.
    fn adopt(&mut self, now: Instant, old: LegId, to: AgentId) {
        let Phase::Bridged { peer, choice, .. } = self.phase else {
            return;
        };
        let from = self.legs.agent_of(old);
        // The old leg is forgotten: its end is no news (not the agent hanging up).
        let old_target = self.legs.forget(old).map(|l| l.to);
        self.legs.next += 1;
        let new = LegId(self.legs.next);
        // A duty agent's call stays one: the consulted agent takes the duty agent's place.
        let target = match old_target {
            Some(LegTarget::DutyList) => LegTarget::DutyList,
            _ => LegTarget::Agent(to.clone()),
        };
        self.legs.push_up(Leg::answered(new, target, now));
        self.transfer_step(TransferStep::Adopt(new));
        self.transfer_step(TransferStep::Completed);
        self.outputs.push_back(CallOutput::EndLeg(old));
        self.transfer_step(TransferStep::EndConsultation);
        self.phase = Phase::Bridged {
            peer,
            choice,
            leg: new,
            consulted_leg_due: None,
        };
        // The consulting agent's hold music stops.
        self.play_nothing();
        if peer == Peer::QueueAgent
            && let Some(from) = &from
        {
            self.outputs
                .push_back(CallOutput::Acd(AcdReport::AttendedTransfer {
                    from: from.clone(),
                    to: to.clone(),
                }));
        }
        self.outputs
            .push_back(CallOutput::Record(RecordNote::AttendedTransfer {
                leg: old,
                to,
            }));
    }

    fn transfer_step(&mut self, step: TransferStep) {
        self.outputs.push_back(CallOutput::Transfer(step));
    }
}

impl Leg {
    /// A leg that came up elsewhere (a transfer) and joins the call answered.
    fn answered(id: LegId, to: LegTarget, now: Instant) -> Leg {
        Leg {
            id,
            to,
            state: LegState::Up,
            dialled_at: now,
            ringing: true,
            ring_until: None,
            ending: false,
        }
    }
}
