//! The hotline call's control, sans-IO: what the caller hears, when a voice message is
//! recorded, when the call goes to the ACD, the duty list or the survey, and when the
//! server ends it. Fed `(now, CallInput)`; the tokio shell (`server/calls.rs`) carries
//! out the [`CallOutput`]s with its sockets, player and recorders and feeds back what
//! happened. Tested in simulated time (`tests.rs`), with the real IVR flow, survey and
//! ACD.
//!
//! One [`Phase`] at a time, each holding only its own data: the IVR menu (and after hours
//! its voice message), ringing the after-hours duty list, waiting in the ACD, bridged to
//! an agent or a unit, the survey, a voice message the ACD asked for, the last words
//! before the server hangs up, and over.
//!
//! The outgoing legs are decided here too (`legs.rs`): which agents ring (ring-all), the
//! first answer wins, misses and vanished phones go to the ACD and the call record, the
//! duty list, blind transfers and transfers to a unit. The shell places and ends the legs
//! and reports their events. Attended transfers are decided here too (`transfer.rs`):
//! whose REFER is taken, how long the consultation's leg may take, what replaces the
//! bridged leg; the shell finds the dialogs and moves the legs between its tasks. The
//! calls the hotline places itself (the callback in queue, an order's 回拨: the person
//! first, then the outside party) are [`placed::PlacedCall`]s.
//!
//! Never silence: every way out of a call the server ends says why first (the IVR's own
//! prompts, the ACD's no-agents / all-busy message, the thanks after a message, the
//! callback confirmation); a call with no ACD to take it gets the voice message.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ivr::city::{CityId, ResolvedBy};
use crate::ivr::flow::{
    CallCategory, CallCityInfo, IvrAction, IvrConfig, IvrFlow, IvrInput, SurveyFlow, SurveyResult,
    Urgency,
};
use crate::ivr::prompt::{PromptId, PromptRef};
use crate::queue::{AgentId, LegFailure, VoiceMessageReason};
use crate::sip::call_leg::EndReason;
use crate::ticket::units::UnitId;

mod legs;
pub mod placed;
#[cfg(test)]
mod tests;
mod transfer;

pub use legs::{
    ACD_RING_BACKSTOP, AcdReport, DUTY_RING, LegId, LegTarget, RecordNote, SILENT_PHONE, UNIT_RING,
    leg_failure,
};
pub use transfer::{HANDOVER_TIMEOUT, ReplacesTarget, TransferStep};

/// A message shorter than this is no message (a click, a breath): the caller hears
/// "no message was left" and no work order is made.
const MIN_QUEUE_MESSAGE: Duration = Duration::from_secs(1);
/// After the last prompt's end, before the BYE: its last packets still play out.
const PLAY_OUT: Duration = Duration::from_millis(300);
/// A last prompt that never reports its end (a stuck player) still ends the call.
const ENDING_BACKSTOP: Duration = Duration::from_secs(30);

/// How a play list is played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Once; `PlaybackDone` at its end.
    Once,
    /// Over and over (hold music) until something else plays.
    Loop,
}

/// The caller-facing part of the ACD's commands for this call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueCue {
    /// Hold music.
    HoldMusic,
    /// These prompts (position, callback offer), then hold music again.
    Announce(Vec<PromptRef>),
    /// "Please hold", then hold music again.
    PleaseHold,
    /// An agent answers: cut the announcement.
    StopAnnouncement,
    /// Nobody can take the call now: say why and take a voice message.
    VoiceMessage(VoiceMessageReason),
    /// The agent transferred the caller to the satisfaction survey.
    Survey,
    /// The caller's callback is registered: confirm and hang up.
    CallbackRegistered,
    /// The ACD released the call to this unit's outside number: any agent leg ends,
    /// hold music while it is dialled.
    ToUnit(UnitId),
}

/// Who the caller talks to when bridged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// An agent the ACD chose: the survey follows when the agent hangs up.
    QueueAgent,
    /// After hours, an agent of the duty list.
    DutyAgent,
    /// A unit's outside number (transfer through the trunk).
    Unit,
}

/// What the shell tells the call.
#[derive(Debug, Clone, PartialEq)]
pub enum CallInput {
    /// The call is answered: the IVR begins.
    Start,
    /// A digit from the caller (RFC 4733 or in-band).
    Digit(char),
    /// The play list played to its end.
    PlaybackDone,
    /// The city asked for by [`CallOutput::LookUpCity`].
    CityInfo(CallCityInfo),
    /// The message recording asked for by [`CallOutput::StartMessage`] ended (or could
    /// not start: zero) after [`CallOutput::StopMessage`].
    MessageDone {
        /// Audio recorded.
        duration: Duration,
    },
    /// From the ACD.
    Queue(QueueCue),
    /// The ACD offers the call to this agent: ring them (ring-all: in parallel).
    RingAgent(AgentId),
    /// The ACD withdraws its offer to this agent (it already counts the leg gone).
    CancelRing(AgentId),
    /// The ACD hangs up this agent's leg (an answer that crossed its cancel).
    HangUpAgent(AgentId),
    /// The leg's phone rings (180/183).
    LegRinging(LegId),
    /// The leg answered with usable media.
    LegAnswered(LegId),
    /// The leg could not be placed (no contact, no ports, no permit).
    LegFailed {
        /// The leg.
        leg: LegId,
        /// How it counts for the ACD.
        failure: LegFailure,
    },
    /// The leg's dialog ended.
    LegEnded {
        /// The leg.
        leg: LegId,
        /// How.
        reason: EndReason,
    },
    /// The bridged leg's audio stopped; the shell ended its dialog.
    LegMediaLost(LegId),
    /// The bridged agent put the caller on hold (`true`) or resumed (`false`).
    AgentHeld(bool),
    /// The ACD took the call back from the bridged agent (blind transfer to `to`, as
    /// the record names it).
    BlindTransfer {
        /// The target.
        to: String,
    },
    /// The bridged agent (`from`, on `leg`) sent REFER with Replaces naming `target`
    /// (attended transfer, `transfer.rs`).
    AttendedRefer {
        /// The leg the REFER came on.
        leg: LegId,
        /// Its agent.
        from: AgentId,
        /// What the Replaces names.
        target: ReplacesTarget,
    },
    /// The consultation's leg to this agent came, as asked by
    /// [`TransferStep::TakeConsultedLeg`] (`None`: it could not be given).
    ConsultedLeg(Option<AgentId>),
    /// Agent `by` offers a leg (answered or to answer) in place of `leg`.
    Replace {
        /// The leg to replace.
        leg: LegId,
        /// Whose the new leg is.
        by: AgentId,
    },
    /// The call ended by signalling (`caller`: the caller hung up; otherwise the server
    /// or the network did): open recordings are closed, nothing more is played.
    Ended {
        /// The caller hung up.
        caller: bool,
    },
}

/// What the call asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutput {
    /// Play these prompts (replacing anything playing).
    Play {
        /// The prompts.
        prompts: Vec<PromptRef>,
        /// Once or looping.
        repeat: Repeat,
    },
    /// Stop playing.
    StopPlayback,
    /// Record the caller's voice message (answer with `MessageDone` after `StopMessage`,
    /// or at once with zero when it cannot start).
    StartMessage,
    /// Stop the message recording and answer with `MessageDone`.
    StopMessage,
    /// Look the city up and answer with `CityInfo`.
    LookUpCity {
        /// The city.
        city: CityId,
        /// How it was chosen.
        how: ResolvedBy,
    },
    /// Hand the call to the city's queue. A shell without an ACD, or whose ACD refuses,
    /// answers with `Queue(VoiceMessage(NoAgents))`.
    Enqueue {
        /// Category chosen.
        category: CallCategory,
        /// Urgency chosen.
        urgency: Urgency,
    },
    /// The city's after-hours duty list is rung (a [`CallOutput::Dial`] of
    /// [`LegTarget::DutyList`] follows): for the record.
    RingDutyList {
        /// Category chosen.
        category: CallCategory,
        /// Urgency (urgent).
        urgency: Urgency,
    },
    /// A voice message was left: it becomes a work order due for callback.
    VoiceMessageTaken {
        /// Category chosen.
        category: CallCategory,
        /// Urgency chosen.
        urgency: Urgency,
        /// Its length.
        duration: Duration,
    },
    /// A digit while waiting in the queue (the shell checks the queue's callback key).
    QueueDigit(char),
    /// Place this leg; report its events with its id.
    Dial {
        /// Its id.
        leg: LegId,
        /// Whom it rings.
        target: LegTarget,
    },
    /// End this leg (CANCEL before the answer, BYE after).
    EndLeg(LegId),
    /// Bridge the caller to this answered leg (and record the call).
    Bridge(LegId),
    /// This leg's phone is gone: drop its registration (offline until it registers).
    DropAgentBinding(LegId),
    /// Tell the ACD.
    Acd(AcdReport),
    /// Put this on the call record.
    Record(RecordNote),
    /// The SIP side of an attended transfer (`transfer.rs`).
    Transfer(TransferStep),
    /// The server hangs up now.
    HangUp,
}

/// The prompts this core picks itself (the IVR flow and the survey pick theirs).
#[derive(Debug, Clone)]
pub struct CallPrompts {
    /// Hold music (looped).
    pub hold_music: PromptId,
    /// "Please hold".
    pub please_hold: PromptId,
    /// Why a voice message: nobody signed in.
    pub no_agents: PromptId,
    /// Why a voice message: waited too long.
    pub all_busy: PromptId,
    /// "Please leave a message after the tone".
    pub voice_message_intro: PromptId,
    /// The tone.
    pub beep: PromptId,
    /// Thanks for the message.
    pub thanks: PromptId,
    /// No message was left.
    pub no_message: PromptId,
    /// The callback confirmation.
    pub callback_registered: PromptId,
}

impl CallPrompts {
    /// The IVR's prompts; `callback_registered` when that prompt is loaded, else the
    /// goodbye.
    pub fn from_ivr(ivr: &IvrConfig, callback_registered: Option<PromptId>) -> CallPrompts {
        CallPrompts {
            hold_music: ivr.hold_music.clone(),
            please_hold: ivr.please_hold.clone(),
            no_agents: ivr.no_agents.clone(),
            all_busy: ivr.all_busy.clone(),
            voice_message_intro: ivr.voice_message_intro.clone(),
            beep: ivr.beep.clone(),
            thanks: ivr.thanks.clone(),
            no_message: ivr.no_message.clone(),
            callback_registered: callback_registered.unwrap_or_else(|| ivr.goodbye.clone()),
        }
    }
}

/// A call's work-order choice (from the IVR menu), carried while it is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Choice {
    category: CallCategory,
    urgency: Urgency,
}

/// What the IVR phase plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IvrPlaying {
    Nothing,
    /// The flow's prompts: it hears `PromptDone` at their end.
    Flow,
}

/// Where the call is.
#[derive(Debug)]
enum Phase {
    /// The IVR menu, and after hours its voice message.
    Ivr {
        playing: IvrPlaying,
        recording: Option<MessageStep>,
    },
    /// After hours, urgent: hold music while the duty list's leg rings.
    DutyRing,
    /// In the ACD, waiting (agents may be ringing): hold music and announcements.
    Queued { choice: Choice, announcing: bool },
    /// Talking to `peer` on `leg`; `choice` when the call came through the queue;
    /// `consulted_leg_due` while an attended transfer waits for the consultation's leg.
    Bridged {
        peer: Peer,
        choice: Option<Choice>,
        leg: LegId,
        consulted_leg_due: Option<Instant>,
    },
    /// A unit's number is being dialled on `leg`; hold music.
    ToUnit { choice: Option<Choice>, leg: LegId },
    /// The satisfaction survey.
    Survey {
        survey: Box<SurveyFlow>,
        playing: bool,
    },
    /// The voice message the ACD asked for: why, the intro and the tone, then recording.
    Message { choice: Choice, step: MessageStep },
    /// The last prompt plays; then the server hangs up.
    Ending { hang_up_at: Instant },
    /// Over (hung up by the server, the caller or the network).
    Over,
}

/// A voice message being taken (the IVR's after hours, or the one the ACD asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageStep {
    /// The prompts (or just the tone) play; then record for `max`.
    Prompting { max: Duration },
    /// Recording until `stop_at` (or the stop digit).
    Recording { stop_at: Instant },
    /// `StopMessage` was asked; waiting for `MessageDone`.
    Stopping,
}

/// One hotline call's control (see the module docs).
#[derive(Debug)]
pub struct Call {
    phase: Phase,
    flow: IvrFlow,
    ivr: IvrConfig,
    prompts: CallPrompts,
    /// The survey's result, kept once it is over.
    survey_result: Option<SurveyResult>,
    /// The caller is gone: nothing is played any more, open recordings still end.
    caller_gone: bool,
    /// The legs dialled for this call (`legs.rs`).
    legs: legs::Legs,
    outputs: VecDeque<CallOutput>,
}

impl Call {
    /// A call whose IVR flow is `flow` (not yet started: `Start` starts it).
    pub fn new(ivr: IvrConfig, flow: IvrFlow, prompts: CallPrompts) -> Call {
        Call {
            phase: Phase::Ivr {
                playing: IvrPlaying::Nothing,
                recording: None,
            },
            flow,
            ivr,
            prompts,
            survey_result: None,
            caller_gone: false,
            legs: legs::Legs::default(),
            outputs: VecDeque::new(),
        }
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.outputs.pop_front()
    }

    /// When [`Call::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Ivr { recording, .. } => {
                let stop = match recording {
                    Some(MessageStep::Recording { stop_at }) => Some(*stop_at),
                    _ => None,
                };
                [self.flow.poll_timeout(), stop].into_iter().flatten().min()
            }
            Phase::Survey { survey, .. } => survey.poll_timeout(),
            Phase::Message {
                step: MessageStep::Recording { stop_at },
                ..
            } => Some(*stop_at),
            Phase::Ending { hang_up_at } => Some(*hang_up_at),
            Phase::Bridged {
                consulted_leg_due, ..
            } => *consulted_leg_due,
            _ => None,
        };
        [phase, self.legs.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The IVR flow (its outcome and choice go on the call record).
    pub fn flow(&self) -> &IvrFlow {
        &self.flow
    }

    /// The survey's answer, once given.
    pub fn survey_result(&self) -> Option<SurveyResult> {
        self.survey_result.or_else(|| match &self.phase {
            Phase::Survey { survey, .. } => survey.result(),
            _ => None,
        })
    }

    /// True while the caller waits in the ACD (hold music, announcements).
    pub fn is_queued(&self) -> bool {
        matches!(self.phase, Phase::Queued { .. })
    }

    /// True while the ACD holds the call: waiting in a queue (agents may be ringing)
    /// or bridged to the agent it chose. False once it let go (voice message, callback,
    /// survey, unit) and for calls it never had.
    pub fn in_acd(&self) -> bool {
        matches!(
            self.phase,
            Phase::Queued { .. }
                | Phase::Bridged {
                    peer: Peer::QueueAgent,
                    ..
                }
        )
    }

    /// True while the caller talks to an agent or a unit.
    pub fn is_bridged(&self) -> bool {
        matches!(self.phase, Phase::Bridged { .. })
    }

    /// True once the server hung up or the call ended.
    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Over)
    }

    /// Timers: the IVR's digit timeouts, the message's maximum length, the survey's,
    /// the end of the last prompt.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.leg_timers(now);
        self.transfer_timers(now);
        match &mut self.phase {
            Phase::Ivr { recording, .. } => {
                if let Some(MessageStep::Recording { stop_at }) = *recording
                    && now >= stop_at
                {
                    *recording = Some(MessageStep::Stopping);
                    self.outputs.push_back(CallOutput::StopMessage);
                }
                self.flow.handle_timeout(now);
                self.drive_flow(now);
            }
            Phase::Survey { survey, .. } => {
                survey.handle_timeout(now);
                self.drive_survey();
            }
            Phase::Message { step, .. } => {
                if let MessageStep::Recording { stop_at } = *step
                    && now >= stop_at
                {
                    *step = MessageStep::Stopping;
                    self.outputs.push_back(CallOutput::StopMessage);
                }
            }
            Phase::Ending { hang_up_at } if now >= *hang_up_at => self.hang_up(),
            _ => {}
        }
    }

    /// Feed one input.
    pub fn handle(&mut self, now: Instant, input: CallInput) {
        match input {
            CallInput::Start => {
                self.flow.handle(now, IvrInput::Start);
                self.drive_flow(now);
            }
            CallInput::Digit(c) => self.on_digit(now, c),
            CallInput::PlaybackDone => self.on_playback_done(now),
            CallInput::CityInfo(info) => {
                self.flow.handle(now, IvrInput::CityInfo(info));
                self.drive_flow(now);
            }
            CallInput::MessageDone { duration } => self.on_message_done(now, duration),
            CallInput::Queue(cue) => self.on_queue_cue(now, cue),
            CallInput::RingAgent(agent) => self.on_ring_agent(now, agent),
            CallInput::CancelRing(agent) => self.on_cancel_ring(now, &agent),
            CallInput::HangUpAgent(agent) => self.on_hang_up_agent(&agent),
            CallInput::LegRinging(leg) => self.on_leg_ringing(leg),
            CallInput::LegAnswered(leg) => self.on_leg_answered(leg),
            CallInput::LegFailed { leg, failure } => self.on_leg_failed(now, leg, failure),
            CallInput::LegEnded { leg, reason } => self.on_leg_ended(now, leg, reason),
            CallInput::LegMediaLost(leg) => self.on_leg_media_lost(leg),
            CallInput::AgentHeld(held) => {
                if matches!(self.phase, Phase::Bridged { .. }) {
                    if held {
                        self.play_hold_music();
                    } else {
                        self.play_nothing();
                    }
                }
            }
            CallInput::BlindTransfer { to } => self.on_blind_transfer(to),
            CallInput::AttendedRefer { leg, from, target } => {
                self.on_attended_refer(now, leg, &from, target);
            }
            CallInput::ConsultedLeg(agent) => self.on_consulted_leg(now, agent),
            CallInput::Replace { leg, by } => self.on_replace(now, leg, by),
            CallInput::Ended { caller } => self.on_ended(now, caller),
        }
    }

    fn choice(&self) -> Option<Choice> {
        match &self.phase {
            Phase::Queued { choice, .. } | Phase::Message { choice, .. } => Some(*choice),
            Phase::Bridged { choice, .. } | Phase::ToUnit { choice, .. } => *choice,
            _ => None,
        }
    }

    fn on_digit(&mut self, now: Instant, c: char) {
        match &mut self.phase {
            Phase::Ivr { .. } => {
                self.flow.handle(now, IvrInput::Digit(c));
                self.drive_flow(now);
            }
            Phase::Queued { .. } => self.outputs.push_back(CallOutput::QueueDigit(c)),
            Phase::Survey { survey, .. } => {
                survey.handle(now, IvrInput::Digit(c));
                self.drive_survey();
            }
            // The stop digit ends the message, as in the IVR's own.
            Phase::Message { step, .. }
                if c == self.ivr.stop_digit && matches!(step, MessageStep::Recording { .. }) =>
            {
                *step = MessageStep::Stopping;
                self.outputs.push_back(CallOutput::StopMessage);
            }
            _ => {}
        }
    }

    fn on_playback_done(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Ivr { playing, recording } => {
                if let Some(MessageStep::Prompting { max }) = *recording {
                    *recording = Some(MessageStep::Recording { stop_at: now + max });
                    self.outputs.push_back(CallOutput::StartMessage);
                } else if *playing == IvrPlaying::Flow {
                    *playing = IvrPlaying::Nothing;
                    self.flow.handle(now, IvrInput::PromptDone);
                    self.drive_flow(now);
                }
            }
            Phase::Queued { announcing, .. } if *announcing => {
                *announcing = false;
                self.play_hold_music();
            }
            Phase::Survey { survey, playing } if *playing => {
                *playing = false;
                survey.handle(now, IvrInput::PromptDone);
                self.drive_survey();
            }
            Phase::Message { step, .. } => {
                if let MessageStep::Prompting { max } = *step {
                    *step = MessageStep::Recording { stop_at: now + max };
                    self.outputs.push_back(CallOutput::StartMessage);
                }
            }
            Phase::Ending { hang_up_at } => {
                *hang_up_at = (*hang_up_at).min(now + PLAY_OUT);
            }
            _ => {}
        }
    }

    fn on_message_done(&mut self, now: Instant, duration: Duration) {
        self.message_done(now, duration);
        if self.caller_gone && !self.recording_open() {
            self.phase = Phase::Over;
        }
    }

    fn message_done(&mut self, now: Instant, duration: Duration) {
        match &mut self.phase {
            Phase::Ivr {
                recording: recording @ Some(_),
                ..
            } => {
                *recording = None;
                self.flow.handle(now, IvrInput::RecordingDone { duration });
                self.drive_flow(now);
            }
            Phase::Message {
                choice,
                step: MessageStep::Stopping | MessageStep::Recording { .. },
            } => {
                let choice = *choice;
                let closing = if duration >= MIN_QUEUE_MESSAGE {
                    self.outputs.push_back(CallOutput::VoiceMessageTaken {
                        category: choice.category,
                        urgency: choice.urgency,
                        duration,
                    });
                    self.prompts.thanks.clone()
                } else {
                    self.prompts.no_message.clone()
                };
                self.say_then_hang_up(now, closing);
            }
            _ => {}
        }
    }

    fn on_queue_cue(&mut self, now: Instant, cue: QueueCue) {
        if let QueueCue::ToUnit(unit) = cue {
            self.on_to_unit(now, unit);
            return;
        }
        let Phase::Queued { choice, announcing } = &mut self.phase else {
            // Bridged, in the survey or ending: the ACD's cues for a waiting caller no
            // longer apply (a survey the agent transferred to comes as a cue too).
            if cue == QueueCue::Survey && matches!(self.phase, Phase::Bridged { .. }) {
                self.start_survey(now);
            }
            return;
        };
        let choice = *choice;
        match cue {
            QueueCue::HoldMusic => {
                *announcing = false;
                self.play_hold_music();
            }
            QueueCue::Announce(prompts) => {
                *announcing = true;
                self.play_once(prompts);
            }
            QueueCue::PleaseHold => {
                *announcing = true;
                let prompt = PromptRef::Prompt(self.prompts.please_hold.clone());
                self.play_once(vec![prompt]);
            }
            QueueCue::StopAnnouncement => {
                if *announcing {
                    *announcing = false;
                    self.play_hold_music();
                }
            }
            QueueCue::VoiceMessage(reason) => {
                let max = Duration::from_secs(self.ivr.max_message_secs);
                // Never silence: the caller hears why, what to do, then the tone.
                let why = match reason {
                    VoiceMessageReason::NoAgents => self.prompts.no_agents.clone(),
                    VoiceMessageReason::MaxWait => self.prompts.all_busy.clone(),
                };
                self.phase = Phase::Message {
                    choice,
                    step: MessageStep::Prompting { max },
                };
                self.play_once(vec![
                    PromptRef::Prompt(why),
                    PromptRef::Prompt(self.prompts.voice_message_intro.clone()),
                    PromptRef::Prompt(self.prompts.beep.clone()),
                ]);
            }
            QueueCue::Survey => self.start_survey(now),
            QueueCue::CallbackRegistered => {
                let prompt = self.prompts.callback_registered.clone();
                self.say_then_hang_up(now, prompt);
            }
            QueueCue::ToUnit(_) => {}
        }
    }

    fn on_ended(&mut self, now: Instant, caller: bool) {
        self.end_all_legs();
        if caller && matches!(self.phase, Phase::Ivr { .. }) {
            // The flow may still make a work order of the message being recorded.
            self.caller_gone = true;
            self.flow.handle(now, IvrInput::CallerHangup);
            self.drive_flow(now);
        }
        self.caller_gone = true;
        match &mut self.phase {
            // Whatever the flow did, a message still open is closed now.
            Phase::Ivr { recording, .. } => match recording {
                Some(MessageStep::Recording { .. }) => {
                    *recording = Some(MessageStep::Stopping);
                    self.outputs.push_back(CallOutput::StopMessage);
                }
                Some(MessageStep::Prompting { .. }) => *recording = None,
                _ => {}
            },
            Phase::Message { step, .. } => {
                if let MessageStep::Recording { .. } = step {
                    *step = MessageStep::Stopping;
                    self.outputs.push_back(CallOutput::StopMessage);
                }
            }
            Phase::Survey { survey, .. } => {
                if caller {
                    survey.handle(now, IvrInput::CallerHangup);
                }
                self.survey_result = survey.result();
            }
            _ => {}
        }
        if !self.recording_open() {
            self.phase = Phase::Over;
        }
    }

    /// A message recording the shell still has to close (`MessageDone` will come).
    fn recording_open(&self) -> bool {
        matches!(
            self.phase,
            Phase::Ivr {
                recording: Some(MessageStep::Stopping | MessageStep::Recording { .. }),
                ..
            } | Phase::Message {
                step: MessageStep::Stopping | MessageStep::Recording { .. },
                ..
            }
        )
    }

    /// Carry out the IVR flow's actions until it has none.
    fn drive_flow(&mut self, now: Instant) {
        while let Some(action) = self.flow.poll_output() {
            match action {
                IvrAction::Play(prompts) => {
                    if let Phase::Ivr { playing, .. } = &mut self.phase {
                        *playing = IvrPlaying::Flow;
                    }
                    self.play_once(prompts);
                }
                IvrAction::StopPlayback => {
                    if let Phase::Ivr { playing, .. } = &mut self.phase {
                        *playing = IvrPlaying::Nothing;
                    }
                    self.play_nothing();
                }
                IvrAction::StartRecording { max, beep, .. } => {
                    if let Phase::Ivr { playing, recording } = &mut self.phase {
                        if beep {
                            *playing = IvrPlaying::Nothing;
                            *recording = Some(MessageStep::Prompting { max });
                            let beep = PromptRef::Prompt(self.prompts.beep.clone());
                            self.play_once(vec![beep]);
                        } else {
                            *recording = Some(MessageStep::Recording { stop_at: now + max });
                            self.outputs.push_back(CallOutput::StartMessage);
                        }
                    }
                }
                IvrAction::StopRecording => {
                    if let Phase::Ivr { recording, .. } = &mut self.phase {
                        match recording {
                            Some(MessageStep::Recording { .. }) => {
                                *recording = Some(MessageStep::Stopping);
                                self.outputs.push_back(CallOutput::StopMessage);
                            }
                            Some(MessageStep::Prompting { .. }) => {
                                // Stopped before the tone ended: nothing recorded.
                                *recording = None;
                                self.flow.handle(
                                    now,
                                    IvrInput::RecordingDone {
                                        duration: Duration::ZERO,
                                    },
                                );
                            }
                            _ => {}
                        }
                    }
                }
                IvrAction::SelectCity { city, how } => {
                    self.outputs.push_back(CallOutput::LookUpCity { city, how });
                }
                IvrAction::Enqueue { category, urgency } => {
                    self.enqueue(Choice { category, urgency });
                }
                IvrAction::RingDutyList { category, urgency } => {
                    self.phase = Phase::DutyRing;
                    self.outputs
                        .push_back(CallOutput::RingDutyList { category, urgency });
                    self.dial(now, LegTarget::DutyList);
                    self.play_hold_music();
                }
                IvrAction::CreateVoiceMessageOrder {
                    category,
                    urgency,
                    recording_duration,
                } => self.outputs.push_back(CallOutput::VoiceMessageTaken {
                    category,
                    urgency,
                    duration: recording_duration,
                }),
                IvrAction::Hangup { .. } => self.hang_up(),
            }
        }
    }

    /// Nobody on the after-hours duty list could be reached: the IVR goes on (a
    /// message).
    fn duty_list_unavailable(&mut self, now: Instant) {
        if matches!(self.phase, Phase::DutyRing) {
            self.phase = Phase::Ivr {
                playing: IvrPlaying::Nothing,
                recording: None,
            };
            self.play_nothing();
            self.flow.handle(now, IvrInput::DutyListUnavailable);
            self.drive_flow(now);
        }
    }

    fn enqueue(&mut self, choice: Choice) {
        self.phase = Phase::Queued {
            choice,
            announcing: false,
        };
        self.outputs.push_back(CallOutput::Enqueue {
            category: choice.category,
            urgency: choice.urgency,
        });
        self.play_hold_music();
    }

    fn start_survey(&mut self, now: Instant) {
        self.end_all_legs();
        let mut survey = SurveyFlow::new(&self.ivr);
        survey.handle(now, IvrInput::Start);
        self.phase = Phase::Survey {
            survey: Box::new(survey),
            playing: false,
        };
        self.play_nothing();
        self.drive_survey();
    }

    fn drive_survey(&mut self) {
        loop {
            let Phase::Survey { survey, playing } = &mut self.phase else {
                return;
            };
            let Some(action) = survey.poll_output() else {
                return;
            };
            match action {
                IvrAction::Play(prompts) => {
                    *playing = true;
                    self.play_once(prompts);
                }
                IvrAction::StopPlayback => {
                    *playing = false;
                    self.play_nothing();
                }
                IvrAction::Hangup { .. } => {
                    self.survey_result = survey.result();
                    self.hang_up();
                }
                // The survey records nothing and selects nothing.
                _ => {}
            }
        }
    }

    /// `prompt`, then the server hangs up at its end.
    fn say_then_hang_up(&mut self, now: Instant, prompt: PromptId) {
        self.phase = Phase::Ending {
            hang_up_at: now + ENDING_BACKSTOP,
        };
        self.play_once(vec![PromptRef::Prompt(prompt)]);
    }

    fn hang_up(&mut self) {
        if let Phase::Survey { survey, .. } = &self.phase {
            self.survey_result = self.survey_result.or(survey.result());
        }
        if !matches!(self.phase, Phase::Over) {
            self.phase = Phase::Over;
            if !self.caller_gone {
                self.outputs.push_back(CallOutput::HangUp);
            }
        }
    }

    fn play_once(&mut self, prompts: Vec<PromptRef>) {
        if !self.caller_gone {
            self.outputs.push_back(CallOutput::Play {
                prompts,
                repeat: Repeat::Once,
            });
        }
    }

    fn play_hold_music(&mut self) {
        if !self.caller_gone {
            self.outputs.push_back(CallOutput::Play {
                prompts: vec![PromptRef::Prompt(self.prompts.hold_music.clone())],
                repeat: Repeat::Loop,
            });
        }
    }

    fn play_nothing(&mut self) {
        if !self.caller_gone {
            self.outputs.push_back(CallOutput::StopPlayback);
        }
    }
}
