//! Ids, agent states, and the inputs and actions of the ACD.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::stats::QueueLogEntry;
use crate::calendar::Calendar;
use crate::domain::{CallCategory, Urgency};
use crate::ivr::city::CityId;
use crate::ticket::model::{BusinessArea, CallId};
use crate::ticket::units::UnitId;

pub use crate::domain::AgentId;

/// Wall-clock time as the ACD sees it (the shell passes the current time, normally in
/// Asia/Shanghai; the ACD converts where a local date matters).
pub type Time = DateTime<FixedOffset>;

/// Why an agent is paused: free text from the console or a feature-code digit
/// (`*13` + reason), or [`PauseReason::MAX_NO_ANSWER`] when the ACD paused them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PauseReason(pub String);

impl PauseReason {
    /// The reason the ACD gives when an agent missed too many offers in a row.
    pub const MAX_NO_ANSWER: &'static str = "max-no-answer";

    /// A reason from text.
    #[must_use]
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }

    /// The auto-pause reason.
    #[must_use]
    pub fn max_no_answer() -> Self {
        Self::new(Self::MAX_NO_ANSWER)
    }
}

/// What an agent is doing, as shown on consoles and logged in `queue_log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentState {
    /// Not signed in (签退 or never signed in).
    LoggedOut,
    /// Signed in, registered, ready for a queue call.
    Available,
    /// Reserved for a call: its leg to the agent is ringing (or, for a callback, the
    /// agent's leg is being set up).
    Ringing {
        /// The call offered.
        call: CallId,
    },
    /// Talking on a queue call (or a callback).
    OnCall {
        /// The call.
        call: CallId,
    },
    /// After-call work until `until`; no calls are offered.
    WrapUp {
        /// When wrap-up ends.
        until: Time,
    },
    /// Signed in but not taking calls.
    Paused {
        /// Why.
        reason: PauseReason,
    },
    /// Signed in but the softphone's registration is gone (离线).
    Offline,
}

impl AgentState {
    /// The state's name as logged (`logged_out`, `available`, …).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::LoggedOut => "logged_out",
            Self::Available => "available",
            Self::Ringing { .. } => "ringing",
            Self::OnCall { .. } => "on_call",
            Self::WrapUp { .. } => "wrap_up",
            Self::Paused { .. } => "paused",
            Self::Offline => "offline",
        }
    }

    /// The call this state holds an agent leg for, if any.
    #[must_use]
    pub fn leg_call(&self) -> Option<&CallId> {
        match self {
            Self::Ringing { call } | Self::OnCall { call } => Some(call),
            _ => None,
        }
    }
}

/// Why an agent changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionReason {
    /// Signed in (`*11` or API).
    SignIn,
    /// Signed out (`*12` or API).
    SignOut,
    /// Paused (`*13` or API, or auto-pause).
    Pause,
    /// Unpaused.
    Unpause,
    /// A call was offered (the agent's leg is ringing).
    Offered,
    /// The agent answered.
    Answered,
    /// The offer was withdrawn: another agent answered, the caller left, or the call
    /// moved on.
    OfferWithdrawn,
    /// The agent's leg failed.
    LegFailed(LegFailure),
    /// The agent's leg rang for the whole ring timeout.
    RingTimeout,
    /// The call ended.
    CallEnded,
    /// The agent transferred the call away (blind or attended).
    Transferred,
    /// The agent took a call another agent transferred to them (attended transfer).
    TransferredIn,
    /// The agent's phone is on a call the ACD did not offer (a consultation call from
    /// another agent): not offered queue calls meanwhile.
    DirectCall,
    /// A callback's caller leg failed; the agent is released.
    CallbackFailed,
    /// Wrap-up time is over.
    WrapUpEnded,
    /// The softphone's registration expired or was removed.
    RegistrationLost,
    /// The agent's phone vanished mid-offer or mid-call ([`QueueInput::AgentLost`]).
    AgentLost,
    /// The softphone registered again.
    Registered,
    /// The dialog layer reported no live leg for this agent's call (stuck-agent repair).
    Reconciled,
    /// Signed in (and paused) again after a restart, from the durable log.
    Restored,
}

/// Why an agent leg failed (final response or transport outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegFailure {
    /// 408/480, or the agent's phone rang out on its own.
    NoAnswer,
    /// 486/600.
    Busy,
    /// 603 Decline (the agent pressed reject).
    Rejected,
    /// No contact, transport error, 404/503.
    Unreachable,
}

/// Who ended a call (`CALL-ETIQUETTE`: normally the caller hangs up first, H-12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// The caller (BYE or CANCEL from the A side).
    Caller,
    /// The agent.
    Agent,
    /// The system (shutdown, media timeout, reconcile).
    System,
}

/// Where an agent blind-transfers a call (the shell sends the SIP REFER when needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferTarget {
    /// Another city's queue (or the same one, to requeue).
    Queue(CityId),
    /// A configured unit number (the competent unit, H-8).
    Unit(UnitId),
    /// The post-call satisfaction survey.
    Survey,
    /// Another agent, after a consultation call (attended transfer, RFC 3891 Replaces).
    Agent(AgentId),
}

/// Why a transfer address is not a [`TransferTarget`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferTargetError {
    /// Nothing to transfer to.
    #[error("empty transfer target")]
    Empty,
    /// Not one of the documented forms.
    #[error("{0:?} is not a transfer target (survey, a city id, unit-<id> or a unit's number)")]
    Malformed(String),
    /// A telephone number that is no configured unit's: the hotline never dials
    /// arbitrary numbers (no open dialling, toll-fraud safe).
    #[error("{0} is not a configured unit number (no open dialling)")]
    NotAUnitNumber(String),
}

impl TransferTarget {
    /// How the target is written in CDRs and the transfer API: `survey`,
    /// `queue:<city>`, `unit:<id>`, `agent:<id>`.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Survey => "survey".to_string(),
            Self::Queue(city) => format!("queue:{}", city.as_str()),
            Self::Unit(unit) => format!("unit:{}", unit.0),
            Self::Agent(agent) => format!("agent:{agent}"),
        }
    }

    /// The one parser of transfer addresses, for an agent's REFER (the Refer-To user
    /// part) and the transfer API alike:
    ///
    /// - `survey` → [`TransferTarget::Survey`];
    /// - `unit-<unit id>` → [`TransferTarget::Unit`];
    /// - a telephone number (digits, optional leading `+`) → the unit whose configured
    ///   `phone` it is, found by `unit_by_number`; any other number is refused
    ///   ([`TransferTargetError::NotAUnitNumber`]): agents cannot dial out freely;
    /// - `queue-<city id>` or a bare city id (`qingdao`) → [`TransferTarget::Queue`].
    ///
    /// Whether the city has a queue or the unit a number is checked by whoever carries
    /// the transfer out (the ACD, the outbound rule).
    ///
    /// # Errors
    /// See [`TransferTargetError`].
    pub fn parse(
        user: &str,
        unit_by_number: impl Fn(&str) -> Option<UnitId>,
    ) -> Result<TransferTarget, TransferTargetError> {
        let user = user.trim();
        if user.is_empty() {
            return Err(TransferTargetError::Empty);
        }
        let id_like = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        let lower = user.to_ascii_lowercase();
        if lower == "survey" {
            return Ok(TransferTarget::Survey);
        }
        if let Some(unit) = lower.strip_prefix("unit-") {
            return if id_like(unit) {
                Ok(TransferTarget::Unit(UnitId::new(unit)))
            } else {
                Err(TransferTargetError::Malformed(user.to_string()))
            };
        }
        let digits = user.strip_prefix('+').unwrap_or(user);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return unit_by_number(user)
                .map(TransferTarget::Unit)
                .ok_or_else(|| {
                    TransferTargetError::NotAUnitNumber(crate::ticket::privacy::mask_phone(user))
                });
        }
        let city = lower.strip_prefix("queue-").unwrap_or(&lower);
        if id_like(city) && city.bytes().next().is_some_and(|b| b.is_ascii_lowercase()) {
            return Ok(TransferTarget::Queue(CityId::new(city)));
        }
        Err(TransferTargetError::Malformed(user.to_string()))
    }
}

/// How the caller leg of a callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackResult {
    /// The caller answered; the shell bridged them to the agent.
    Answered,
    /// The caller did not answer.
    NoAnswer,
    /// The caller's line was busy.
    Busy,
    /// The number could not be reached.
    Unreachable,
}

/// Events the shell feeds to the ACD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueInput {
    /// The IVR handed a call to the city's queue (`IvrAction::Enqueue`).
    CallArrived {
        /// The call.
        call: CallId,
        /// The city whose queue takes it.
        city: CityId,
        /// Category chosen in the IVR.
        category: CallCategory,
        /// Urgency chosen in the IVR.
        urgency: Urgency,
        /// Business area when known (skill routing).
        area: Option<BusinessArea>,
        /// The caller's number as received: the only number a callback ever dials.
        caller: String,
    },
    /// The call ended: the caller hung up while waiting (abandon) or either side hung
    /// up a bridged call. Unknown calls are ignored (races with transfers are normal).
    CallEnded {
        /// The call.
        call: CallId,
        /// Who hung up.
        who_hung_up: Party,
    },
    /// The caller pressed the callback key: keep the place, hang up, be called back.
    CallbackRequested {
        /// The call.
        call: CallId,
    },
    /// How the caller leg of a callback ended (after [`QueueAction::PlaceCallback`]
    /// and the agent answering).
    CallbackOutcome {
        /// The call.
        call: CallId,
        /// The caller leg's result.
        result: CallbackResult,
    },
    /// An announcement or "please hold" prompt finished playing.
    AnnouncementDone {
        /// The call.
        call: CallId,
    },
    /// The agent leg of an offer failed.
    AgentLegFailed {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
        /// How it failed.
        reason: LegFailure,
    },
    /// The agent answered the offered call (200 OK on the agent leg).
    AgentAnswered {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
    },
    /// The agent on a bridged call blind-transferred it; the agent leg is gone.
    Transfer {
        /// The call.
        call: CallId,
        /// Where to.
        to: TransferTarget,
    },
    /// Sign in (签到): feature code `*11` or the API.
    SignIn {
        /// The agent.
        agent: AgentId,
    },
    /// Sign out (签退): feature code `*12` or the API.
    SignOut {
        /// The agent.
        agent: AgentId,
    },
    /// Pause with a reason: feature code `*13` or the API.
    Pause {
        /// The agent.
        agent: AgentId,
        /// Why.
        reason: PauseReason,
    },
    /// After a restart: the agent was signed in (and paused with `pause`) when the server
    /// stopped, as its last `queue_log` presence row says. Restored without new rows.
    Restore {
        /// The agent.
        agent: AgentId,
        /// Still paused for this reason.
        pause: Option<PauseReason>,
    },
    /// End a pause (also resets the no-answer count).
    Unpause {
        /// The agent.
        agent: AgentId,
    },
    /// The agent's phone vanished while it rang or talked on `call` (no audio on a
    /// bridged leg, no answer at all to the INVITE): the agent goes offline (离线) until
    /// its phone registers again, and a bridged caller goes back to the queue, ahead of
    /// later callers.
    AgentLost {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
    },
    /// The agent ends the after-call work (整理) early from the console: ready for the
    /// next call now. Ignored when the agent is not in wrap-up.
    EndWrapUp {
        /// The agent.
        agent: AgentId,
    },
    /// The agent's softphone registration expired or was removed.
    RegistrationLost {
        /// The agent.
        agent: AgentId,
    },
    /// The agent's softphone registered (again).
    Registered {
        /// The agent.
        agent: AgentId,
    },
    /// An agent's phone is on a call the ACD did not offer: another agent's consultation
    /// call before an attended transfer. The agent counts as on a call (no queue call is
    /// offered) until [`QueueInput::DirectCallEnded`] or a [`QueueInput::AttendedTransfer`]
    /// to them. Refused with [`QueueError::AgentBusy`] while the agent rings for or talks
    /// on another call; taken during wrap-up, it ends the wrap-up (the agent chose to
    /// take a call).
    DirectCall {
        /// The agent called.
        agent: AgentId,
        /// The direct call's id (its Call-ID); its leg counts in [`QueueInput::LiveLegs`].
        call: CallId,
    },
    /// The direct call ended without a transfer: the agent is free again (no wrap-up).
    DirectCallEnded {
        /// The agent.
        agent: AgentId,
        /// The direct call.
        call: CallId,
    },
    /// Attended transfer: the caller of a bridged call is now bridged to `to` (who took
    /// the consultation call); the agent who had the call goes to wrap-up.
    AttendedTransfer {
        /// The call.
        call: CallId,
        /// The agent now talking to the caller.
        to: AgentId,
    },
    /// Reconcile: every agent leg the dialog layer still has, as `(call, agent)`.
    /// Any agent the ACD holds ringing or on a call without a live leg is released.
    LiveLegs(BTreeSet<(CallId, AgentId)>),
    /// The working-day calendar in force changed (`hotline calendar add-year`, an edit
    /// of the calendar file the running server reloaded): duty rosters of
    /// `days = "working_days"` follow it from now on. Shifts already checked for
    /// absence are not checked again.
    CalendarChanged(Arc<Calendar>),
}

/// Why a call goes to the voice-message flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoiceMessageReason {
    /// Waited the queue's `max_wait_secs`.
    MaxWait,
    /// No signed-in agent in the city nor anywhere it could overflow to.
    NoAgents,
}

/// Why a callback was given up (the shell makes a work order to call back by hand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackGiveUp {
    /// Every attempt failed.
    AttemptsExhausted,
    /// No agent became free within `callback_max_wait_secs`.
    Expired,
}

/// Why the ACD let go of a call that was not simply answered and ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// Blind transfer to a unit's number.
    TransferredToUnit(UnitId),
    /// Transfer to the satisfaction survey.
    TransferredToSurvey,
}

/// Commands and reports the ACD gives the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAction {
    /// Start the hold music (WAV loop) for a caller who just entered a queue.
    PlayHoldMusic {
        /// The call.
        call: CallId,
    },
    /// Announce the caller's position (1 = next) and estimated wait, then resume hold
    /// music. Play [`super::position_prompts`] for `position`.
    Announce {
        /// The call.
        call: CallId,
        /// Position in the queue, 1-based.
        position: u32,
        /// Estimated wait, when the queue has history to estimate from.
        estimated_wait: Option<Duration>,
    },
    /// Play the "please hold" prompt, then resume hold music.
    PleaseHold {
        /// The call.
        call: CallId,
    },
    /// Cut any announcement playing to this caller (an agent answered).
    StopAnnouncement {
        /// The call.
        call: CallId,
    },
    /// Place (ring) a leg to the agent's registered contact and show the screen-pop.
    RingAgent {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
        /// The caller's number (for the screen-pop; masked by the console as needed).
        caller: String,
        /// Category from the IVR.
        category: CallCategory,
        /// Urgency from the IVR.
        urgency: Urgency,
    },
    /// Cancel the ringing leg to this agent. The ACD already counts it as gone.
    CancelRing {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
    },
    /// Bridge the caller to the agent who answered. Emitted in the same batch as the
    /// answer, never after an announcement.
    Bridge {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
    },
    /// Hang up an agent leg the ACD does not (or no longer) offer this call on: an
    /// answer that crossed a cancel.
    HangupAgentLeg {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
    },
    /// The caller's callback was registered: confirm and hang up the caller.
    CallbackRegistered {
        /// The call.
        call: CallId,
        /// The place kept.
        position: u32,
    },
    /// Callback turn: the agent is reserved. Ring the agent, and when they answer dial
    /// `number` (always the caller's own number as received) and report
    /// [`QueueInput::CallbackOutcome`].
    PlaceCallback {
        /// The call.
        call: CallId,
        /// The reserved agent.
        agent: AgentId,
        /// The number to dial.
        number: String,
    },
    /// The callback is given up; make a work order so someone calls back by hand.
    CallbackGaveUp {
        /// The call.
        call: CallId,
        /// Attempts made.
        attempts: u32,
        /// Why.
        reason: CallbackGiveUp,
    },
    /// The call moved to another queue.
    Overflowed {
        /// The call.
        call: CallId,
        /// From this queue.
        from: CityId,
        /// To this queue.
        to: CityId,
    },
    /// Hand the call to the voice-message flow (a work order is made); the ACD is done
    /// with it.
    ToVoiceMessage {
        /// The call.
        call: CallId,
        /// Why.
        reason: VoiceMessageReason,
    },
    /// The call left the ACD by transfer (the shell does the REFER).
    CallReleased {
        /// The call.
        call: CallId,
        /// Why.
        reason: ReleaseReason,
    },
    /// An agent changed state: log to `queue_log` and push to consoles.
    AgentStateChanged {
        /// The agent.
        agent: AgentId,
        /// Old state.
        from: AgentState,
        /// New state.
        to: AgentState,
        /// When.
        at: Time,
        /// Why.
        reason: TransitionReason,
    },
    /// An on-duty agent was not signed in at shift start (report, H-17-2).
    Absent {
        /// The agent.
        agent: AgentId,
        /// The agent's city.
        city: CityId,
        /// When the shift started.
        shift_start: Time,
    },
    /// A signed-in agent lost registration during duty (离线, report, H-12-1).
    AgentOffline {
        /// The agent.
        agent: AgentId,
        /// The agent's city.
        city: CityId,
        /// When.
        at: Time,
    },
    /// A `queue_log` row.
    Log(QueueLogEntry),
}

/// Misuse of the ACD's API (unknown agent, transfer of a call that is not bridged, …).
/// Network races (events for calls already gone) are not errors: they are ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// No such agent in the queue configuration.
    #[error("unknown agent {0}")]
    UnknownAgent(AgentId),
    /// No queue for this city and no province center to fall back to.
    #[error("no queue for city {0}")]
    UnknownQueue(CityId),
    /// A call with this id is already in the ACD.
    #[error("call {0:?} is already queued")]
    DuplicateCall(CallId),
    /// The call is not in the ACD.
    #[error("call {0:?} is not in the ACD")]
    UnknownCall(CallId),
    /// The call is not waiting, so it cannot ask for a callback.
    #[error("call {0:?} is not waiting in a queue")]
    NotWaiting(CallId),
    /// The queue does not offer callback-in-queue.
    #[error("queue {0} does not offer callbacks")]
    CallbackDisabled(CityId),
    /// Only a bridged call can be transferred.
    #[error("call {0:?} is not bridged to an agent")]
    NotBridged(CallId),
    /// The agent rings for or talks on another call.
    #[error("agent {0} is busy")]
    AgentBusy(AgentId),
}
