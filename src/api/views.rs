//! The JSON answers of the work-order, ranking and call endpoints as types: the
//! handlers build these, serde writes them, and `utoipa` generates their schemas for
//! `/api/openapi.json` from the same definitions, so the document cannot drift from the
//! wire.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use serde_json::Value;

use crate::store::calls::StoredCall;
use crate::ticket::model::ExtensionRequest;
use crate::ticket::{
    Assignment, BusinessArea, CallId, CallSurveyAnswer, CallbackRecord, Category, Channel, Closing,
    LeaderAlert, MissedLimit, OrderId, RankingWeights, Satisfaction, State as OrderState, UnitId,
    Urgency, UserId,
};

/// The colour of the reminder of the order's running limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReminderShown {
    /// No reminder yet.
    #[serde(rename = "none")]
    Quiet,
    /// Within a working day of the limit.
    Yellow,
    /// At or past the limit.
    Red,
}

/// An order as the consoles show it, contact masked per role.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: OrderId,
    /// Short number read out on the phone, 鲁12348-20261207-0042 (prefix, day of receipt
    /// in Asia/Shanghai, sequence per day); null on orders created before numbering.
    pub number: Option<String>,
    /// Events applied (the version a command names in If-Match).
    pub version: u64,
    pub state: OrderState,
    pub fields: OrderFieldsView,
    /// The units handling, signed or not yet.
    pub units: Vec<Assignment>,
    /// The first unit to sign: replies for all (W-11).
    pub lead_unit: Option<UnitId>,
    /// 协办单位 (W-11): every unit handling besides the lead, signed or not yet.
    pub helping_units: Vec<Assignment>,
    /// The unit whose dispatchers handle the order.
    pub dispatch_unit: Option<UnitId>,
    pub deadlines: Option<DeadlinesView>,
    pub reminder: ReminderShown,
    pub overdue: bool,
    /// Flagged for study after a second dissatisfied callback (W-14).
    pub special_flag: bool,
    pub closing: Option<Closing>,
    pub pending_extension: Option<ExtensionRequest>,
    pub draft_reply: Option<String>,
    pub reply: Option<String>,
    pub satisfaction: Option<Satisfaction>,
    /// The post-call survey of the linked call.
    pub call_survey: Option<CallSurveyAnswer>,
    pub callbacks: Vec<CallbackRecord>,
    /// Units that returned the order, in order (W-10).
    pub returned_by: Vec<UnitId>,
    pub redo_count: u32,
    /// Supervision presses (督办).
    pub supervisions: u32,
    /// The supervising unit doing the second callback (W-14).
    pub second_callback_unit: Option<UnitId>,
    pub completed_at: Option<DateTime<FixedOffset>>,
    /// Time of the last event.
    pub updated_at: Option<DateTime<FixedOffset>>,
    /// Whether the contact in `fields` is masked for this user.
    pub contact_masked: bool,
    pub dissatisfaction_report: Option<DissatisfactionReportView>,
    /// Transferred within its limit (1 working day, urgent 1 hour); null while undecided.
    pub transfer_on_time: Option<bool>,
    /// Who made the first dispatch (`system` for automatic routing).
    pub dispatched_by: Option<UserId>,
    /// Limits missed, as the scheduler recorded them.
    pub missed_limits: Vec<MissedLimit>,
    /// Alerts the city's leaders were sent (H-13-2).
    pub leader_alerts: Vec<LeaderAlert>,
    pub voice_message: Option<VoiceMessageLink>,
    /// The commands this user may run on the order now.
    pub allowed_commands: Vec<String>,
}

/// A create accepted while the database is unavailable (202): the order as it will be
/// stored, and `queued: true`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueuedOrderView {
    #[serde(flatten)]
    pub order: OrderView,
    /// Always true: queued in the outbox journal, written once the database answers.
    pub queued: bool,
}

/// The intake fields of an order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderFieldsView {
    pub contact_name: String,
    pub contact_phone: String,
    pub category: Category,
    pub urgency: Urgency,
    pub business_area: BusinessArea,
    /// Units involved (涉及单位) as told by the caller.
    pub units: Vec<UnitId>,
    pub description: String,
    pub remarks: String,
    pub channel: Channel,
    /// The city (answering center) the demand belongs to.
    pub city: UnitId,
    /// The call the order came from.
    pub call_id: Option<CallId>,
    /// When the demand was received (a call's arrival).
    pub received_at: DateTime<FixedOffset>,
}

/// The order's limits: each instant, its display (`24:00` of a day), its span (working
/// days, or hours for the urgent transfer, H-8/H-9/H-11) and, for working-day limits,
/// the working days left now by the calendar.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadlinesView {
    pub transfer_due: DateTime<FixedOffset>,
    pub transfer_due_display: String,
    /// Null for urgent orders (their limit is in hours).
    pub transfer_working_days: Option<u32>,
    /// Urgent orders only.
    pub transfer_hours: Option<u32>,
    pub transfer_working_days_left: Option<i64>,
    pub feedback_due: DateTime<FixedOffset>,
    pub feedback_due_display: String,
    pub feedback_working_days: u32,
    pub feedback_working_days_left: i64,
    /// The 15-working-day cap extensions cannot pass.
    pub feedback_cap: DateTime<FixedOffset>,
    /// Urgent orders only (the mandatory callback, H-11).
    pub callback_due: Option<DateTime<FixedOffset>>,
    pub callback_due_display: Option<String>,
    pub callback_working_days: Option<u32>,
    pub callback_working_days_left: Option<i64>,
    /// A limit falls in a year whose holidays are not loaded (Monday–Friday assumed).
    pub provisional: bool,
}

/// The report of the caller's dissatisfaction to the unit (H-9): to whom, by when
/// (1 working day from the callback), whether made, whether late.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DissatisfactionReportView {
    pub unit: UnitId,
    pub due: DateTime<FixedOffset>,
    pub due_display: String,
    pub working_days: u32,
    pub working_days_left: i64,
    pub provisional: bool,
    pub reported_at: Option<DateTime<FixedOffset>>,
    pub reported_by: Option<UserId>,
    pub overdue: bool,
}

/// An order opened from a voice message: the URL its player reads (the server's file
/// path stays on the server).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VoiceMessageLink {
    pub call_id: CallId,
    pub play_url: String,
}

/// One page of `GET /api/orders`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderView>,
    /// Exact number of orders matching the filters in the caller's scope.
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

/// One row of an order's ledger timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// Position in the order, from 1.
    pub seq: i64,
    /// RFC 3339.
    pub at: String,
    /// Login id of who acted (`system` for the server).
    pub actor: String,
    /// The name people know the actor by (系统 for the server); null for an id no
    /// longer configured.
    pub actor_name: Option<String>,
    pub role: String,
    pub unit: String,
    pub state_before: String,
    pub state_after: String,
    /// The event as recorded (src/ticket/event.rs, tagged by `type`), with people named
    /// beside their ids (`by_name`; a logged call's `agent_name`, `from_name`, `to_name`),
    /// the contact masked per role and the server's recording paths left out.
    #[schema(value_type = Object)]
    pub kind: Value,
    pub reason: String,
    /// The ledger's hash chain link.
    pub hash: String,
}

/// How the sign-in rate is computed (AS-METRICS; `src/queue/attendance.rs`): sign-in
/// rate (签到率) of a unit's agents (an agent belongs to the unit of its
/// `[[queues.agent]]` city) over the period: duty shifts signed in on time / duty shifts
/// scheduled. A scheduled shift is a roster shift (`[[queues.roster]]`) starting in the
/// period whose check moment (start + `[queues] absent_grace_secs`, when the ACD reports
/// absence) has passed; it is signed in on time when at that moment the agent's latest
/// sign_in/sign_out row in queue_log is a sign_in and no absent row was logged for it.
/// Null when the unit had no scheduled shift (no roster data): never a made-up 100 %.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct SignIn {
    /// 0..1.
    pub sign_in_rate: Option<f64>,
    pub shifts_scheduled: Option<u32>,
    pub shifts_signed_in: Option<u32>,
}

/// A unit level, ranked separately (W-19, H-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Province,
    City,
    County,
    Township,
    Institution,
}

/// One ranked unit (or, by=category / by=area, one category or business area).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RankingRow {
    /// Position within its level (by=unit) or within the table.
    pub rank: u32,
    pub unit: UnitId,
    pub unit_name: String,
    pub orders: u32,
    pub completed: u32,
    pub completion_rate: Option<f64>,
    pub on_time_rate: Option<f64>,
    pub satisfaction_rate: Option<f64>,
    pub returns: u32,
    /// Finished (completed or withdrawn) after the limit, or open past it now: as
    /// /api/stats/orders counts.
    pub overdue: u32,
    /// Withdrawn orders, still counted in the period received.
    pub withdrawn: u32,
    /// First dispatch within 1 working day (urgent: 1 hour) of receipt, over the orders
    /// whose transfer is decided; counted for the city whose center received them.
    pub transfer_rate: Option<f64>,
    pub transfers_on_time: u32,
    /// Dispatched late, or waiting (or withdrawn) past the limit.
    pub transfers_late: u32,
    /// Σ weight × rate / Σ weight over the figures the unit has data for.
    pub combined_score: Option<f64>,
    #[serde(flatten)]
    pub sign_in: SignIn,
    /// by=unit: the level the rank is a position within.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// by=area: the area (unit_name is its Chinese name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_area: Option<BusinessArea>,
}

/// The sign-in rate of one unit whose agents had duty shifts due in the period.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnitSignIn {
    pub unit: String,
    pub unit_name: String,
    #[serde(flatten)]
    pub sign_in: SignIn,
}

/// `GET /api/rankings` (AS-RANK).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rankings {
    /// 2026-11, 2026-Q4 or 2026.
    pub period: String,
    /// case, consultation or complaint_suggestion.
    pub group: String,
    /// unit, category or area.
    pub by: String,
    /// What rank orders by.
    pub metric: String,
    /// The business-area filter: all or one area.
    pub business_area: String,
    /// The `[ranking.weights]` the combined score used (W-19: nothing else is set by
    /// hand).
    pub weights: RankingWeights,
    /// The level filter: all or one level.
    pub level: String,
    /// Every row, the levels in order (by=unit), province first.
    pub rows: Vec<RankingRow>,
    /// The rows by unit level (by=unit; empty otherwise).
    pub levels: BTreeMap<Level, Vec<RankingRow>>,
    /// Every unit whose agents had duty shifts due in the period.
    pub sign_in: Vec<UnitSignIn>,
}

/// One call of `GET /api/calls`: the record, its voice message, whether it is up now,
/// and who answered by name.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallView {
    #[serde(flatten)]
    pub call: StoredCall,
    /// The answering agent's name (`[[users]] agent`), beside the extension in
    /// `record.agent`.
    pub agent_name: Option<String>,
}
