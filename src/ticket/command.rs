//! Commands: what a user (or the system) asks to do to an order.

use serde::{Deserialize, Serialize};

use super::deadlines::{DeadlineKind, ReminderLevel};
use super::model::{
    BusinessArea, CallId, CallLog, CallSurveyAnswer, Category, JudgementGround, LeaderAlert,
    OrderFields, RedoTarget, Satisfaction, Urgency,
};
use super::units::UnitId;

/// Approve or reject (extensions, reviews).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Approve.
    Approve,
    /// Reject (a reason is required).
    Reject,
}

/// What the caller said at a callback, as judged by the callback staff (H-14, W-14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CallbackOutcome {
    /// Satisfied with the result and the service: closed.
    Satisfied,
    /// Satisfied with the service, not the result, because of the law or an
    /// unreasonable demand: closed on judgement (note required).
    ClosedOnJudgement {
        /// Basically satisfied or dissatisfied.
        satisfaction: Satisfaction,
        /// Ground.
        ground: JudgementGround,
    },
    /// The agent's answer was unlawful, or the unit's result seriously wrong: redo
    /// (note required).
    Redo {
        /// Who redoes it.
        target: RedoTarget,
    },
    /// Dissatisfied: first time → second callback by the supervising unit; at the
    /// second callback → special flag (note required).
    Dissatisfied,
}

/// A command on an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Register a demand (draft).
    Create {
        /// Intake fields.
        fields: OrderFields,
    },
    /// Submit a draft for dispatch; routed automatically when the area is clear.
    Submit,
    /// Agent answers a simple consultation at once (H-8).
    AnswerDirectly {
        /// The answer.
        answer: String,
    },
    /// The matter is outside the justice system's remit: the agent or dispatcher
    /// explained so to the caller (解释说明, H-8), which closes it, whatever its
    /// category (an urgent one still waits for its callback, H-11).
    ExplainOutsideRemit {
        /// What the caller was told (where to turn).
        explanation: String,
    },
    /// Dispatcher pushes the order to one or more units (first signer leads).
    Dispatch {
        /// Units.
        units: Vec<UnitId>,
        /// Corrected category, if any.
        category: Option<Category>,
        /// Corrected business area, if any.
        area: Option<BusinessArea>,
        /// Corrected urgency, if any (H-13-1): moves the transfer and callback limits.
        #[serde(default)]
        urgency: Option<Urgency>,
        /// Corrected contact person, if any (H-13-1).
        #[serde(default)]
        contact_name: Option<String>,
        /// Corrected contact phone, if any (H-13-1).
        #[serde(default)]
        contact_phone: Option<String>,
    },
    /// Dispatcher adds helping units (协办单位) to co-handle an order the lead unit has
    /// signed for (W-11 "承办单位签收后…可增加协办单位"): each must sign, may add notes or
    /// return it, and the lead still replies for all.
    AddHelpingUnits {
        /// Units to add (not already handling the order).
        units: Vec<UnitId>,
        /// Why they are needed (required, on the record).
        reason: String,
    },
    /// Dispatcher sends a returned order up to the dispatch center above (H-13-3).
    ReturnUpward {
        /// Why.
        reason: String,
    },
    /// A unit signs for the order (签收).
    Sign,
    /// A unit returns the order as not its business (退回, W-10).
    Return {
        /// Why (required).
        reason: String,
    },
    /// The lead unit starts handling.
    Start,
    /// The lead unit asks for more time (W-12).
    RequestExtension {
        /// Working days to add to the current feedback limit.
        extra_working_days: u32,
        /// Why (required).
        reason: String,
    },
    /// The unit head decides on the pending extension.
    DecideExtension {
        /// Approve or reject.
        decision: Decision,
        /// Why (required to reject).
        reason: String,
    },
    /// Complaint / case: draft the reply for review (W-13).
    DraftReply {
        /// Draft.
        text: String,
    },
    /// Reviewer decides on the draft.
    Review {
        /// Approve or reject.
        decision: Decision,
        /// Why (required to reject).
        reason: String,
    },
    /// Consultation / suggestion: the unit replies directly (W-13).
    Reply {
        /// Reply.
        text: String,
    },
    /// Complaint / case: send the approved reply.
    SendReviewedReply,
    /// The result is fed back to the caller (H-9, H-10).
    FeedBack {
        /// Note.
        note: String,
    },
    /// Record a callback (回访).
    RecordCallback {
        /// Outcome.
        outcome: CallbackOutcome,
        /// Note (required unless satisfied).
        note: String,
    },
    /// Reminder (催办).
    Remind {
        /// Limit.
        deadline: DeadlineKind,
        /// Level.
        level: ReminderLevel,
        /// Note.
        note: String,
    },
    /// Supervision press (督办).
    Supervise {
        /// Note (required).
        note: String,
    },
    /// A handling unit adds a note (co-handlers' contributions).
    AddNote {
        /// Note (required).
        note: String,
    },
    /// Show a caller's full contact to a role that sees it masked, for a reason that
    /// goes into the order's history and the audit (H-12-4).
    RevealContact {
        /// Why the number is needed.
        reason: String,
    },
    /// A supervisor's study note on a flagged order (W-14).
    StudyNote {
        /// Note.
        note: String,
    },
    /// The supervising unit ends the study of a flagged order and closes it (W-14).
    ConcludeStudy {
        /// The decision and what was done (`explanation` accepted too).
        #[serde(alias = "explanation")]
        result: String,
    },
    /// The server records the post-call survey answer of the order's linked call.
    RecordCallSurvey {
        /// The call (must be the order's `call_id`).
        call_id: CallId,
        /// The caller's answer.
        answer: CallSurveyAnswer,
    },
    /// Recompute provisional deadlines after calendar data for a missing year was
    /// added (`hotline calendar reload`); keeps approved extensions.
    RecomputeDeadlines,
    /// The caller withdrew the demand (TK-LEDGER, H-17-5). Needs the caller's
    /// confirmation on record — `call_id` naming a call in the order's history (the
    /// call it was opened from, an answered callback, a live transfer) — or a
    /// supervisor's approval (a supervisor issuing the command without `call_id`).
    Withdraw {
        /// Why (required).
        reason: String,
        /// The call on which the caller confirmed the withdrawal.
        #[serde(default)]
        call_id: Option<CallId>,
    },
    /// The callback clerk or the supervising unit reports the caller's dissatisfaction
    /// to the handling unit (H-9), within a working day of the callback.
    ReportDissatisfaction {
        /// What the unit is told (required).
        note: String,
    },
    /// The scheduler records a limit missed ([`super::deadlines::limits_missed`]).
    RecordMissedLimit {
        /// Which limit.
        deadline: DeadlineKind,
    },
    /// The scheduler records that the city's leaders were told (H-13-2).
    AlertLeaders {
        /// Why.
        alert: LeaderAlert,
        /// The leaders' names (from the configuration).
        leaders: Vec<String>,
    },
    /// The system logs a telephone fact about the order's call (a callback attempt, a
    /// live transfer to a unit). Does not change state.
    LogCall {
        /// What happened.
        call: CallLog,
    },
}

impl Command {
    /// snake_case name, as serialized.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Submit => "submit",
            Self::AnswerDirectly { .. } => "answer_directly",
            Self::ExplainOutsideRemit { .. } => "explain_outside_remit",
            Self::Dispatch { .. } => "dispatch",
            Self::AddHelpingUnits { .. } => "add_helping_units",
            Self::ReturnUpward { .. } => "return_upward",
            Self::Sign => "sign",
            Self::Return { .. } => "return",
            Self::Start => "start",
            Self::RequestExtension { .. } => "request_extension",
            Self::DecideExtension { .. } => "decide_extension",
            Self::DraftReply { .. } => "draft_reply",
            Self::Review { .. } => "review",
            Self::Reply { .. } => "reply",
            Self::SendReviewedReply => "send_reviewed_reply",
            Self::FeedBack { .. } => "feed_back",
            Self::RecordCallback { .. } => "record_callback",
            Self::Remind { .. } => "remind",
            Self::Supervise { .. } => "supervise",
            Self::AddNote { .. } => "add_note",
            Self::StudyNote { .. } => "study_note",
            Self::RevealContact { .. } => "reveal_contact",
            Self::ConcludeStudy { .. } => "conclude_study",
            Self::RecordCallSurvey { .. } => "record_call_survey",
            Self::RecomputeDeadlines => "recompute_deadlines",
            Self::Withdraw { .. } => "withdraw",
            Self::LogCall { .. } => "log_call",
            Self::ReportDissatisfaction { .. } => "report_dissatisfaction",
            Self::RecordMissedLimit { .. } => "record_missed_limit",
            Self::AlertLeaders { .. } => "alert_leaders",
        }
    }
}
