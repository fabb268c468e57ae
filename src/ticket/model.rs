//! The work-order data: ids, enums, fields, roles and the [`Order`] projection.

use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::deadlines::Deadlines;
use super::units::UnitId;

/// The shared ids and vocabulary, where the ticket core has always named them.
pub use crate::domain::{BusinessArea, CallId, Category, Channel, OrderId, Urgency, UserId};

/// How one outbound call attempt ended (a callback to the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallAttemptResult {
    /// The caller answered and was bridged to the agent.
    Answered,
    /// The caller's phone rang out.
    NoAnswer,
    /// The caller's line was busy.
    Busy,
    /// The number could not be reached (network, carrier refusal).
    Unreachable,
}

/// A telephone fact about an order's call, logged by the system on the order
/// (CALL-CALLBACK, CALL-TRANSFER). Logging one never changes the order's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum CallLog {
    /// The caller pressed the callback key in the queue and hung up, keeping the place.
    CallbackRequested {
        /// The call.
        call_id: CallId,
        /// The place kept (1 = next).
        position: u32,
    },
    /// One callback attempt: an agent was reserved, then the caller dialled.
    CallbackAttempt {
        /// The call.
        call_id: CallId,
        /// 1-based.
        attempt: u32,
        /// The agent reserved for it.
        agent: String,
        /// How the caller leg ended.
        result: CallAttemptResult,
        /// The recording of the answered callback.
        recording: Option<String>,
    },
    /// The callback was given up (every attempt failed, or no agent in time): someone
    /// calls back by hand.
    CallbackGaveUp {
        /// The call.
        call_id: CallId,
        /// Attempts made.
        attempts: u32,
    },
    /// An agent transferred the caller live to a unit's outside number (H-8).
    TransferredToUnit {
        /// The call.
        call_id: CallId,
        /// The unit.
        unit: UnitId,
        /// The agent who transferred.
        agent: Option<String>,
    },
    /// An agent handed the caller to another agent after consulting them (attended
    /// transfer): that agent now handles the call.
    TransferredToAgent {
        /// The call.
        call_id: CallId,
        /// The agent who transferred.
        from: Option<String>,
        /// The agent who took the call.
        to: String,
    },
    /// Someone acting on the order called its contact back from the console (H-11,
    /// H-12-3 回拨解答): the server rang their own phone, then dialled the order's stored
    /// number through the trunk, bridged and recorded them.
    OrderCallback {
        /// The call (its record and recording are under this id).
        call_id: CallId,
        /// The user who placed it.
        by: String,
        /// Their name.
        by_name: String,
        /// The phone (agent extension) that was rung first.
        phone: String,
        /// How the contact's leg ended.
        result: CallAttemptResult,
        /// Seconds the contact was on the line (0 unless answered).
        talk_secs: u64,
        /// Where the console plays the recording (an API path, never a file path).
        recording_url: Option<String>,
    },
}

impl CallLog {
    /// A line for people (the ledger's `reason` column).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::CallbackRequested { position, .. } => {
                format!("来电人在队列第{position}位要求回电 (callback requested in queue)")
            }
            Self::CallbackAttempt {
                attempt,
                agent,
                result,
                ..
            } => {
                let result = match result {
                    CallAttemptResult::Answered => "已接通 answered",
                    CallAttemptResult::NoAnswer => "无人接听 no answer",
                    CallAttemptResult::Busy => "占线 busy",
                    CallAttemptResult::Unreachable => "无法接通 unreachable",
                };
                format!("第{attempt}次回电 callback attempt {attempt} (agent {agent}): {result}")
            }
            Self::CallbackGaveUp { attempts, .. } => {
                format!(
                    "回电未成功，共{attempts}次，请人工回电 (callback given up after {attempts} attempts)"
                )
            }
            Self::TransferredToUnit { unit, .. } => {
                format!("来电已转接至{unit} (transferred live to unit {unit})")
            }
            Self::TransferredToAgent { from, to, .. } => match from {
                Some(from) => format!(
                    "来电由坐席{from}转接至坐席{to} (transferred by agent {from} to agent {to})"
                ),
                None => format!("来电转接至坐席{to} (transferred to agent {to})"),
            },
            Self::OrderCallback {
                by_name,
                result,
                talk_secs,
                ..
            } => {
                let result = match result {
                    CallAttemptResult::Answered => {
                        format!("已接通，通话{talk_secs}秒 answered, {talk_secs} s")
                    }
                    CallAttemptResult::NoAnswer => "无人接听 no answer".to_owned(),
                    CallAttemptResult::Busy => "占线 busy".to_owned(),
                    CallAttemptResult::Unreachable => "无法接通 failed".to_owned(),
                };
                format!("{by_name}回拨解答 called the caller back: {result}")
            }
        }
    }
}

/// What makes a withdrawal legitimate (TK-LEDGER, H-17-5): nobody may make an order
/// disappear on their own; the caller confirmed it on a recorded call, or a
/// supervisor approved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum WithdrawalConfirmation {
    /// The caller confirmed on this call, which is in the order's history.
    CallerOnCall {
        /// The call.
        call_id: CallId,
    },
    /// A supervisor (督办岗) withdrew it: the approval is theirs, under their name.
    SupervisorApproval,
}

impl CallLog {
    /// The call this fact is about, when the caller was on the line for it: the
    /// queue callback request, an answered callback, a live transfer. Failed callback
    /// attempts are not a contact with the caller.
    #[must_use]
    pub fn caller_reached_on(&self) -> Option<&CallId> {
        match self {
            Self::CallbackRequested { call_id, .. }
            | Self::TransferredToUnit { call_id, .. }
            | Self::TransferredToAgent { call_id, .. }
            | Self::CallbackAttempt {
                call_id,
                result: CallAttemptResult::Answered,
                ..
            }
            | Self::OrderCallback {
                call_id,
                result: CallAttemptResult::Answered,
                ..
            } => Some(call_id),
            Self::CallbackAttempt { .. }
            | Self::CallbackGaveUp { .. }
            | Self::OrderCallback { .. } => None,
        }
    }
}
/// A role a user holds.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Duty agent answering calls (值班人员).
    Agent,
    /// Dispatch staff (转办人员).
    Dispatcher,
    /// Staff of a handling unit (承办人员).
    UnitHandler,
    /// Head of a handling unit (approves extensions, W-12).
    UnitHead,
    /// Reviewer at the competent department (审核, W-13).
    Reviewer,
    /// Supervision post (督办岗, W-15).
    Supervisor,
    /// Callback staff (回访).
    CallbackStaff,
    /// Province platform administrator.
    ProvinceAdmin,
    /// The server itself (automatic routing, scheduler reminders, web intake).
    System,
}

/// Who issues a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// User.
    pub user_id: UserId,
    /// Roles held.
    pub roles: Vec<Role>,
    /// The unit the user belongs to.
    pub unit: UnitId,
}

impl Actor {
    /// The server acting on behalf of `unit`.
    #[must_use]
    pub fn system(unit: UnitId) -> Self {
        Self {
            user_id: UserId("system".to_owned()),
            roles: vec![Role::System],
            unit,
        }
    }
}

/// The first invisible format character in `text`, if any: zero-width characters
/// (U+200B–U+200D, U+2060, U+FEFF) and bidirectional controls (U+200E, U+200F, U+061C,
/// U+202A–U+202E, U+2066–U+2069). In a name shown in lists they make two names look
/// alike or reorder what is displayed (a reversed name, a spoofed suffix), so names
/// carrying them are refused rather than cleaned.
#[must_use]
pub fn hidden_character(text: &str) -> Option<char> {
    text.chars().find(|c| {
        matches!(
            c,
            '\u{200B}'..='\u{200F}'
                | '\u{2060}'
                | '\u{FEFF}'
                | '\u{061C}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
    })
}

/// The caller (contact person).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Name (may be empty: anonymous).
    pub name: String,
    /// Phone number.
    pub phone: String,
}

/// The fields registered at intake (TK-FIELDS, H-13-1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFields {
    /// Contact person and phone.
    pub contact: Contact,
    /// Category.
    pub category: Category,
    /// Urgency.
    pub urgency: Urgency,
    /// Business area.
    pub area: BusinessArea,
    /// Units involved (涉及单位) as told by the caller.
    pub units_involved: Vec<UnitId>,
    /// Problem description.
    pub description: String,
    /// Remarks.
    pub remarks: String,
    /// Channel.
    pub channel: Channel,
    /// City (answering center) the demand belongs to.
    pub city: UnitId,
    /// Call the order came from.
    pub call_id: Option<CallId>,
    /// Recording / voice-message paths.
    pub recordings: Vec<String>,
    /// When the demand was received (its own channel's time for other channels).
    pub received_at: DateTime<FixedOffset>,
}

/// Intake fields as dispatch corrected them on review (H-13-1): only the fields that
/// changed are present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldValues {
    /// Category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// Business area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<BusinessArea>,
    /// Urgency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<Urgency>,
    /// Contact person and phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
}

impl FieldValues {
    /// Whether nothing is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Lifecycle state.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[schema(as = OrderState)]
pub enum State {
    /// Being written by an agent.
    #[default]
    Draft,
    /// Waiting for a dispatcher (W-9).
    PendingDispatch,
    /// Pushed to one or more units, none signed yet.
    Dispatched,
    /// Signed for (签收) by the lead unit.
    Signed,
    /// Being handled.
    InProgress,
    /// Complaint / case: reply drafted, waiting for review (W-13).
    ReplyDrafted,
    /// Complaint / case: reply approved by the reviewer.
    Reviewed,
    /// Unit replied; the result still has to be fed back to the caller.
    Replied,
    /// Result fed back to the caller (办结 for timeliness) and the order is urgent:
    /// it waits for the mandatory callback (H-11).
    FedBack,
    /// Caller dissatisfied at callback: waiting for the supervising unit's second
    /// callback (W-14).
    SecondCallback,
    /// Still dissatisfied after the second callback: flagged (特殊标记) and kept open
    /// while the supervising unit studies it and decides its end (W-14).
    SpecialStudy,
    /// Closed (办结).
    Closed,
}

impl State {
    /// snake_case name, as serialized.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::PendingDispatch => "pending_dispatch",
            Self::Dispatched => "dispatched",
            Self::Signed => "signed",
            Self::InProgress => "in_progress",
            Self::ReplyDrafted => "reply_drafted",
            Self::Reviewed => "reviewed",
            Self::Replied => "replied",
            Self::FedBack => "fed_back",
            Self::SecondCallback => "second_callback",
            Self::SpecialStudy => "special_study",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A unit's part in an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentStatus {
    /// Dispatched to it, not signed.
    Assigned,
    /// Signed for.
    Signed,
}

/// A unit the order is currently dispatched to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assignment {
    /// Unit.
    pub unit: UnitId,
    /// Status.
    pub status: AssignmentStatus,
}

/// Caller's satisfaction (满意 / 基本满意 / 不满意).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Satisfaction {
    /// 满意.
    Satisfied,
    /// 基本满意.
    BasicallySatisfied,
    /// 不满意.
    Dissatisfied,
}

/// The caller's answer to the post-call satisfaction survey of the linked call
/// (CALL-ETIQUETTE): a record on the order, not the callback's satisfaction (TK-VISIT),
/// which the callback staff still take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallSurveyAnswer {
    /// 满意 (1).
    Satisfied,
    /// 基本满意 (2).
    BasicallySatisfied,
    /// 不满意 (3).
    Dissatisfied,
    /// The survey was offered and no valid digit came.
    NoAnswer,
}

/// Why an order was closed on judgement although the caller is not satisfied (H-14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JudgementGround {
    /// Limits of laws, regulations or policy (法律法规、政策所限).
    LawOrPolicy,
    /// The caller's demand is unreasonable (不合理诉求).
    UnreasonableDemand,
}

/// Who must redo the work after a callback (H-14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedoTarget {
    /// The duty agent's answer was unlawful: back to the hotline agents.
    Agent,
    /// The unit's result has a serious error: back to the lead unit.
    Unit,
}

/// First callback by the hotline, or second by the supervising unit (W-14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackRound {
    /// By the city's callback staff (sampled, or mandatory for urgent orders).
    First,
    /// By the supervising unit after a dissatisfied first callback.
    Second,
}

/// Why and under which rule an order was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Consultation answered (H-10).
    Answered,
    /// Complaint / suggestion / case result fed back to the caller (H-10).
    FedBack,
    /// Caller satisfied at callback (H-14).
    Satisfied,
    /// Closed on judgement: satisfied with the service, not the result (H-14).
    Judgement(JudgementGround),
    /// Still dissatisfied after the second callback: flagged for study (W-14).
    SpecialFlag,
    /// Withdrawn by the caller; kept, never deleted (TK-LEDGER).
    Withdrawn,
    /// Outside the justice system's remit, explained to the caller (H-8).
    OutsideRemit,
}

impl CloseReason {
    /// The rule that allows this closing.
    #[must_use]
    pub fn rule(self) -> &'static str {
        match self {
            Self::Answered | Self::FedBack => "H-10",
            Self::Satisfied | Self::Judgement(_) => "H-14",
            Self::SpecialFlag => "W-14",
            Self::Withdrawn => "TK-LEDGER",
            Self::OutsideRemit => "H-8",
        }
    }

    /// Whether this closing needs no satisfaction: closing on answer / feedback
    /// (H-10) happens before any callback; a withdrawal has none.
    #[must_use]
    pub fn allows_without_satisfaction(self) -> bool {
        matches!(
            self,
            Self::Answered | Self::FedBack | Self::Withdrawn | Self::OutsideRemit
        )
    }
}

/// How an order was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Closing {
    /// Reason (carries the rule).
    pub reason: CloseReason,
    /// Free-text note (mandatory for judgement, special flag, withdrawal).
    pub note: String,
    /// When.
    pub at: DateTime<FixedOffset>,
    /// Callbacks recorded before this closing: a sampled callback is allowed once per
    /// closing (so a redone order can be sampled again).
    pub callbacks_before: u32,
}

/// A pending extension request (W-12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExtensionRequest {
    /// Requesting unit (its head decides).
    pub unit: UnitId,
    /// Working days added to the current feedback limit.
    pub extra_working_days: u32,
    /// Why.
    pub reason: String,
    /// When requested.
    pub at: DateTime<FixedOffset>,
    /// Who asked: they may not decide their own request, even as unit head (W-12).
    /// Absent for requests recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<UserId>,
}

/// One callback made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallbackRecord {
    /// First or second.
    pub round: CallbackRound,
    /// Caller's satisfaction.
    pub satisfaction: Satisfaction,
    /// When.
    pub at: DateTime<FixedOffset>,
    /// Who recorded it: the second callback must be someone else (W-14). Absent for
    /// callbacks recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<UserId>,
}

/// A reminder already raised (so the scheduler does not repeat it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedReminder {
    /// Which deadline.
    pub deadline: super::deadlines::DeadlineKind,
    /// Yellow or red.
    pub level: super::deadlines::ReminderLevel,
    /// The deadline instant it was raised for (an extension moves it).
    pub due: DateTime<FixedOffset>,
}

/// A limit the order missed, recorded once by the scheduler (H-13-2 for the urgent
/// transfer, H-9 for the dissatisfaction report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MissedLimit {
    /// Which limit.
    pub deadline: super::deadlines::DeadlineKind,
    /// When it fell.
    pub due: DateTime<FixedOffset>,
}

/// Why the city's leaders are told of an order (H-13-2 "报告领导").
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LeaderAlert {
    /// An urgent order was received.
    UrgentReceived,
    /// An urgent order was not transferred within its hour.
    UrgentTransferMissed,
}

/// The report of a caller's dissatisfaction to the handling unit, due within one
/// working day of the callback that recorded it (H-9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DissatisfactionReport {
    /// The unit told.
    pub unit: UnitId,
    /// The limit and when its reminder starts.
    pub window: super::deadlines::DeadlineWindow,
    /// When it was made, once made.
    pub reported_at: Option<DateTime<FixedOffset>>,
    /// By whom.
    pub reported_by: Option<UserId>,
}

/// The work order as derived from its events ([`Order::replay`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Identifier.
    pub id: OrderId,
    /// Short number read out on the phone (`鲁12348-20261207-0042`); `None` on orders
    /// created before numbers were assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// Number of events applied (optimistic-concurrency version).
    pub version: u64,
    /// Lifecycle state.
    pub state: State,
    /// Intake fields (category / area may be corrected at dispatch).
    pub fields: OrderFields,
    /// Unit whose dispatchers handle the order (the city center, or higher after a
    /// return upward).
    pub dispatch_unit: Option<UnitId>,
    /// Units currently handling.
    pub assignments: Vec<Assignment>,
    /// The first unit to sign: replies for all (W-11).
    pub lead_unit: Option<UnitId>,
    /// Deadlines, computed at creation and on extension.
    pub deadlines: Option<Deadlines>,
    /// Pending extension request.
    pub pending_extension: Option<ExtensionRequest>,
    /// Reply drafted for review.
    pub draft_reply: Option<String>,
    /// Reply given (or the agent's direct answer).
    pub reply: Option<String>,
    /// First dispatch (for transfer timeliness).
    pub dispatched_at: Option<DateTime<FixedOffset>>,
    /// First answer / feedback to the caller (办结 for timeliness); a redo does not
    /// reset it.
    pub completed_at: Option<DateTime<FixedOffset>>,
    /// Units that returned the order, in order (W-10).
    pub returned_by: Vec<UnitId>,
    /// Redo count (H-14).
    pub redo_count: u32,
    /// Callbacks made.
    pub callbacks: Vec<CallbackRecord>,
    /// Latest satisfaction.
    pub satisfaction: Option<Satisfaction>,
    /// Supervising unit doing the second callback.
    pub second_callback_unit: Option<UnitId>,
    /// Special flag for study (W-14).
    pub special_flag: bool,
    /// Closing, while closed.
    pub closing: Option<Closing>,
    /// Reminders raised.
    pub reminders: Vec<IssuedReminder>,
    /// Supervision presses (督办).
    pub supervisions: u32,
    /// The post-call survey of the linked call, once the call ended with one.
    #[serde(default)]
    pub call_survey: Option<CallSurveyAnswer>,
    /// Calls logged on the order on which the caller was on the line (answered
    /// callbacks, transfers, a queue callback request; [`CallLog::caller_reached_on`]).
    /// With the call the order was opened from (`fields.call_id`), these are the calls
    /// a withdrawal may name as the caller's confirmation.
    #[serde(default)]
    pub caller_calls: Vec<CallId>,
    /// Time of the last event (no back-dating).
    pub last_event_at: Option<DateTime<FixedOffset>>,
    /// Who made the first dispatch (`system` for automatic routing), for the
    /// dispatcher's transfer timeliness. Absent from snapshots without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_by: Option<UserId>,
    /// The last dissatisfaction report to the unit (H-9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dissatisfaction_report: Option<DissatisfactionReport>,
    /// Limits missed, as the scheduler recorded them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missed_limits: Vec<MissedLimit>,
    /// Alerts the city's leaders were sent (H-13-2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leader_alerts: Vec<LeaderAlert>,
}

impl Order {
    /// A blank order to apply [`super::Command::Create`] to.
    #[must_use]
    pub fn new(id: OrderId) -> Self {
        Self {
            id,
            ..Self::default()
        }
    }

    /// Whether the order has been created (has events).
    #[must_use]
    pub fn exists(&self) -> bool {
        self.version > 0
    }

    /// Units with a live assignment.
    pub fn active_units(&self) -> impl Iterator<Item = &UnitId> {
        self.assignments.iter().map(|a| &a.unit)
    }

    /// Whether `unit` currently has the order.
    #[must_use]
    pub fn is_assigned_to(&self, unit: &UnitId) -> bool {
        self.assignments.iter().any(|a| &a.unit == unit)
    }

    /// Whether `call` is in the order's history with the caller on the line.
    #[must_use]
    pub fn has_caller_call(&self, call: &CallId) -> bool {
        self.fields.call_id.as_ref() == Some(call) || self.caller_calls.contains(call)
    }

    /// Whether the order was withdrawn (closed as such).
    #[must_use]
    pub fn is_withdrawn(&self) -> bool {
        self.closing
            .as_ref()
            .is_some_and(|c| c.reason == CloseReason::Withdrawn)
    }

    /// When the order's handling ended for timeliness: its first answer / feedback
    /// (办结), else — withdrawn — the withdrawal. `None` while open.
    #[must_use]
    pub fn finished_at(&self) -> Option<DateTime<FixedOffset>> {
        self.completed_at.or_else(|| {
            self.closing
                .as_ref()
                .filter(|c| c.reason == CloseReason::Withdrawn)
                .map(|c| c.at)
        })
    }
}
