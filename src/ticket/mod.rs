//! Work orders (工单): model, pure transition function, deadlines, routing rules,
//! callbacks and satisfaction, supervision, privacy and assessment metrics.
//!
//! Everything here is pure: no IO, no clock. [`apply`] takes an order, a command, the
//! actor, `now` and a [`Context`] (calendar, unit tree, routing rules) and returns the
//! new order with the events to append; [`Order::replay`] folds stored events back
//! into the order. Storage persists the events (hash-chained, using
//! [`Event::canonical_bytes`]) and a projection.
//!
//! # Lifecycle
//! ```text
//! draft ─submit─▶ pending_dispatch ─dispatch (manual, or automatic on submit)─▶ dispatched
//! dispatched ─sign (first signer = lead)─▶ signed ─start─▶ in_progress
//! in_progress ─reply─▶ replied                         (consultation, suggestion)
//! in_progress ─draft_reply─▶ reply_drafted ─review approve─▶ reviewed
//!             ◀──────────── review reject ─┘      reviewed ─send_reviewed_reply─▶ replied
//!                                                   (complaint, case: TK-REVIEW, W-13)
//! replied ─feed_back─▶ fed_back ─▶ closed              (complaint, suggestion, case)
//! consultation: reply (or the agent's answer_directly) is the answer ─▶ closed
//! draft / pending_dispatch ─explain_outside_remit─▶ closed   (any category, H-8 解释说明)
//! any open state ─withdraw─▶ closed   (caller's confirming call on record, or a supervisor)
//! ```
//! Dispatch may correct category, area, urgency and contact (H-13-1): each dispatch
//! that changes one records a `fields_corrected` event (before and after); a new
//! urgency moves the transfer and callback limits.
//!
//! A withdrawal (W-19, H-17-5) names the call on which the caller confirmed it (the
//! order's own call, or one logged on it with the caller on the line), or is issued by
//! a supervisor; the order stays in its period's figures, as withdrawn, overdue if it
//! was withdrawn after its limit ([`is_overdue`]).
//! Returns (`return`, reason required) go back to `pending_dispatch` when the lead
//! returns or the last dispatched unit does; the dispatcher dispatches again or sends
//! the order up to the dispatch center above (`return_upward`, H-13-3).
//!
//! # Closing and callbacks (H-10, H-11, H-14, W-14)
//! * **Closing (办结) follows H-10**: a consultation is closed once answered; a
//!   complaint, suggestion or case once the result is fed back to the caller. That
//!   moment is `completed_at`, used for timeliness.
//! * **Urgent orders** (应急类) need a callback by a named person within 3 working
//!   days (H-11): they stay in `fed_back` after the answer / feedback, and close
//!   only through that callback.
//! * **Other orders are sampled** (抽查回访, W-14/H-11): a callback may be recorded on
//!   a closed order. Satisfied keeps it closed with the satisfaction recorded.
//! * **Outcomes** (H-14): satisfied → closed; basically satisfied / dissatisfied for
//!   reasons of law or policy or an unreasonable demand → closed on judgement (note
//!   required); the agent's answer unlawful → redo by the agents (back to
//!   `pending_dispatch`, where the agent answers again); the unit's result seriously
//!   wrong → redo by the lead unit (back to `in_progress`); dissatisfied → the order
//!   (re)opens in `second_callback` at the supervising unit (the lead unit's parent),
//!   with the report to the unit due within 1 working day (H-9).
//! * **Second callback** (W-14) by the supervising unit: the same outcomes, except
//!   that still dissatisfied → special flag (特殊标记) and **closed** with reason
//!   `special_flag`: the caller's matter is finished for timeliness, and the flag
//!   keeps it in the list studied by the responsible people (改善服务) rather than
//!   holding the order open indefinitely.
//! * A redo does not reset `completed_at`: timeliness is judged on the first result;
//!   the redo counts against quality (`redo_count`).
//!
//! Every closed order has a [`Closing`] whose [`CloseReason::rule`] names the rule;
//! it has a satisfaction unless [`CloseReason::allows_without_satisfaction`].
//!
//! # Deadlines
//! See [`deadlines`]: transfer 1 working day (urgent 1 hour), feedback 5 working days
//! (extendable by the unit head to at most 15), urgent callback 3 working days, all
//! from `received_at` with the calendar's counting rule; `provisional` when the
//! calendar lacks a year. Done within an approved extension is not overdue.
//!
//! # Authority
//! Each command names the roles allowed and the unit scope each needs (a unit acts
//! on orders dispatched to it; the lead for handling; a reviewer over the lead's
//! subtree; a supervisor over its subtree; dispatch over its dispatch center;
//! agents and first callbacks over their city). Role errors
//! ([`TransitionError::RoleNotPermitted`], [`TransitionError::OutOfScope`]) are
//! distinct from state errors ([`TransitionError::NotAllowed`]). `NotAllowed` names
//! the requirement id that forbids the step (`TK-REVIEW`, `TK-RETURN`, `H-8`, …), or
//! `TK-LIFECYCLE` when the command simply comes at the wrong point of the lifecycle
//! drawn above. `now` earlier than the order's last event is refused (no back-dating).
//!
//! # Calendar reloads
//! Limits are stored in the events. When data for a missing year is added, the
//! scheduler issues [`Command::RecomputeDeadlines`] (as the system actor) for each
//! order whose limits are provisional; approved extensions are kept.

pub mod command;
pub mod deadlines;
pub mod event;
pub mod metrics;
pub mod model;
pub mod privacy;
pub mod routing;
pub mod timeliness;
pub mod transition;
pub mod units;

pub use command::{CallbackOutcome, Command, Decision};
pub use deadlines::{
    DeadlineKind, DeadlineWindow, Deadlines, DueReminder, ReminderLevel, is_overdue,
    leader_alerts_due, limits_missed, reminders_due, scheduler_due, transfer_on_time,
    watched_deadlines,
};
pub use event::{DispatchMode, Event, EventKind};
pub use metrics::{
    Period, RankBy, RankGroup, Ranked, RankingWeights, Rate, UnitScore, rank, unit_scores,
};
pub use model::{
    Actor, Assignment, AssignmentStatus, BusinessArea, CallAttemptResult, CallId, CallLog,
    CallSurveyAnswer, CallbackRecord, CallbackRound, Category, Channel, CloseReason, Closing,
    Contact, DissatisfactionReport, FieldValues, JudgementGround, LeaderAlert, MissedLimit, Order,
    OrderFields, OrderId, RedoTarget, Role, Satisfaction, State, Urgency, UserId,
    WithdrawalConfirmation, hidden_character,
};
pub use privacy::{can_see_contact, contact_for, mask_name, mask_phone, may_search_by_number};
pub use routing::{RoutingRule, RoutingRules};
pub use timeliness::{TransferCount, TransferTimeliness, transfer_timeliness};
pub use transition::{Context, TransitionError, apply};
pub use units::{Unit, UnitError, UnitId, UnitKind, UnitTree};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
