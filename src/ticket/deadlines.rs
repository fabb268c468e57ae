//! Work-order deadlines (TK-DEADLINE, TK-VISIT, TK-EXTEND) and due reminders
//! (TK-REMIND).
//!
//! All limits run from `received_at` with the calendar's counting rule (see
//! [`crate::calendar`]): transfer 1 working day (urgent: 1 hour wall clock), feedback
//! 5 working days (extendable, never beyond 15), urgent callback 3 working days.
//! Each limit is stored with the moment its yellow reminder starts ("one day before",
//! H-13-4): 24 hours before a working-day limit (the start of the limit's own working
//! day, since such limits fall at 24:00); 30 minutes before the 1-hour limit. They are computed when the order is
//! created or an extension approved and stored in the events, so replaying needs no
//! calendar.

use chrono::{DateTime, FixedOffset, TimeDelta};
use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, Deadline};

use super::model::{LeaderAlert, Order, State, Urgency};

/// Transfer limit in working days (H-8).
pub const TRANSFER_WORKING_DAYS: u32 = 1;
/// Urgent transfer limit in hours (H-13-2).
pub const URGENT_TRANSFER_HOURS: u32 = 1;
/// Feedback limit in working days (H-9).
pub const FEEDBACK_WORKING_DAYS: u32 = 5;
/// Feedback limit with every extension, in working days (H-9).
pub const FEEDBACK_CAP_WORKING_DAYS: u32 = 15;
/// Urgent callback limit in working days (H-11).
pub const URGENT_CALLBACK_WORKING_DAYS: u32 = 3;
/// A caller's dissatisfaction is reported to the unit within this many working days (H-9).
pub const REPORT_WORKING_DAYS: u32 = 1;

/// Which limit.
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
pub enum DeadlineKind {
    /// Transfer to a unit.
    Transfer,
    /// Result fed back to the caller.
    Feedback,
    /// Urgent callback.
    Callback,
    /// A caller's dissatisfaction reported to the unit (1 working day, H-9).
    Report,
}

/// Reminder colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderLevel {
    /// One working day before the deadline.
    Yellow,
    /// At or after the deadline.
    Red,
}

/// A deadline and when its yellow reminder starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineWindow {
    /// The limit.
    pub due: Deadline,
    /// Start of the yellow period.
    pub warn_from: DateTime<FixedOffset>,
}

impl DeadlineWindow {
    /// `n` working days from `received_at`; yellow from the start of the deadline's
    /// own day (the deadline is 24:00, so that is one day before it, H-13-4).
    #[must_use]
    pub fn working_days(calendar: &Calendar, received_at: DateTime<FixedOffset>, n: u32) -> Self {
        Self::from_due(calendar.add_working_days(received_at, n))
    }

    /// A working-day limit already computed: yellow from the start of its own day.
    #[must_use]
    pub fn from_due(due: Deadline) -> Self {
        let warn_from = due
            .at
            .checked_sub_signed(TimeDelta::days(1))
            .unwrap_or(due.at);
        Self { due, warn_from }
    }

    /// `h` hours from `received_at`, yellow for the last 30 minutes.
    #[must_use]
    pub fn hours(received_at: DateTime<FixedOffset>, h: u32) -> Self {
        let due = Deadline::hours(received_at, h);
        let warn_from = due
            .at
            .checked_sub_signed(TimeDelta::minutes(30))
            .unwrap_or(due.at);
        Self { due, warn_from }
    }
}

/// The limits of one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// Transfer.
    pub transfer: DeadlineWindow,
    /// Feedback (moved by approved extensions).
    pub feedback: DeadlineWindow,
    /// Working days the feedback limit currently counts (5 plus extensions).
    pub feedback_working_days: u32,
    /// The feedback limit's cap: 15 working days from receipt.
    pub feedback_cap: Deadline,
    /// Mandatory callback, urgent orders only.
    pub callback: Option<DeadlineWindow>,
}

impl Deadlines {
    /// The limits for an order received at `received_at`.
    #[must_use]
    pub fn compute(
        calendar: &Calendar,
        received_at: DateTime<FixedOffset>,
        urgency: Urgency,
    ) -> Self {
        let transfer = match urgency {
            Urgency::Urgent => DeadlineWindow::hours(received_at, URGENT_TRANSFER_HOURS),
            Urgency::Normal => {
                DeadlineWindow::working_days(calendar, received_at, TRANSFER_WORKING_DAYS)
            }
        };
        let callback = (urgency == Urgency::Urgent).then(|| {
            DeadlineWindow::working_days(calendar, received_at, URGENT_CALLBACK_WORKING_DAYS)
        });
        Self {
            transfer,
            feedback: DeadlineWindow::working_days(calendar, received_at, FEEDBACK_WORKING_DAYS),
            feedback_working_days: FEEDBACK_WORKING_DAYS,
            feedback_cap: calendar.add_working_days(received_at, FEEDBACK_CAP_WORKING_DAYS),
            callback,
        }
    }

    /// Whether any limit rests on a calendar year without data.
    #[must_use]
    pub fn provisional(&self) -> bool {
        self.transfer.due.provisional
            || self.feedback.due.provisional
            || self.callback.is_some_and(|c| c.due.provisional)
    }
}

/// A reminder the scheduler should raise now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueReminder {
    /// Which limit.
    pub deadline: DeadlineKind,
    /// Colour.
    pub level: ReminderLevel,
    /// The limit.
    pub due: Deadline,
}

/// The limit an order is currently running against, if any.
#[must_use]
pub fn running_deadline(order: &Order) -> Option<(DeadlineKind, DeadlineWindow)> {
    let deadlines = order.deadlines?;
    match order.state {
        State::Draft | State::PendingDispatch => Some((DeadlineKind::Transfer, deadlines.transfer)),
        State::Dispatched
        | State::Signed
        | State::InProgress
        | State::ReplyDrafted
        | State::Reviewed
        | State::Replied
            if order.completed_at.is_none() =>
        {
            Some((DeadlineKind::Feedback, deadlines.feedback))
        }
        State::FedBack => deadlines.callback.map(|c| (DeadlineKind::Callback, c)),
        _ => None,
    }
}

/// The limits the scheduler watches now: the running one ([`running_deadline`]) and,
/// while open and not closed, the dissatisfaction report to the unit (H-9), which runs
/// beside the second callback.
#[must_use]
pub fn watched_deadlines(order: &Order) -> Vec<(DeadlineKind, DeadlineWindow)> {
    let mut watched: Vec<_> = running_deadline(order).into_iter().collect();
    if let Some(report) = open_report(order) {
        watched.push((DeadlineKind::Report, report));
    }
    watched
}

/// The dissatisfaction report still to be made on an open order.
fn open_report(order: &Order) -> Option<DeadlineWindow> {
    order
        .dissatisfaction_report
        .as_ref()
        .filter(|r| r.reported_at.is_none() && order.state != State::Closed)
        .map(|r| r.window)
}

/// The window of `kind` on `order`, if it has one.
#[must_use]
pub fn window_of(order: &Order, kind: DeadlineKind) -> Option<DeadlineWindow> {
    let deadlines = order.deadlines?;
    match kind {
        DeadlineKind::Transfer => Some(deadlines.transfer),
        DeadlineKind::Feedback => Some(deadlines.feedback),
        DeadlineKind::Callback => deadlines.callback,
        DeadlineKind::Report => order.dissatisfaction_report.as_ref().map(|r| r.window),
    }
}

/// Reminders (催办, H-13-4) due at `now` and not yet raised for the watched limits:
/// yellow from one working day before the limit, red at or after it. At most one per
/// limit: the highest level reached.
#[must_use]
pub fn reminders_due(order: &Order, now: DateTime<FixedOffset>) -> Vec<DueReminder> {
    watched_deadlines(order)
        .into_iter()
        .filter_map(|(kind, window)| {
            let level = if now >= window.due.at {
                ReminderLevel::Red
            } else if now >= window.warn_from {
                ReminderLevel::Yellow
            } else {
                return None;
            };
            let already = order
                .reminders
                .iter()
                .any(|r| r.deadline == kind && r.due == window.due.at && r.level >= level);
            (!already).then_some(DueReminder {
                deadline: kind,
                level,
                due: window.due,
            })
        })
        .collect()
}

/// Whether the order was transferred in time (H-8: 1 working day; H-13-2 urgent: 1
/// hour; both from receipt), judged at `now`: `Some(true)` first dispatched within the
/// limit; `Some(false)` dispatched after it, or not dispatched and past it (waiting, or
/// withdrawn after it: a withdrawal does not hide a late transfer, W-19); `None` while
/// the limit runs, or when the order needed no transfer (answered or explained by the
/// agent, closed otherwise before the limit). The one definition used by the
/// scheduler's missed-limit events, the stats' transfer timeliness and the rankings.
#[must_use]
pub fn transfer_on_time(order: &Order, now: DateTime<FixedOffset>) -> Option<bool> {
    let due = order.deadlines?.transfer.due.at;
    if let Some(at) = order.dispatched_at {
        return Some(at <= due);
    }
    if order.completed_at.is_some() {
        return None;
    }
    match order.finished_at() {
        Some(done) => (done > due).then_some(false),
        None => (order.state != State::Closed && now > due).then_some(false),
    }
}

/// Limits missed at `now` that the ledger does not hold yet: the urgent order's hour
/// for the transfer (H-13-2) and the dissatisfaction report (H-9). Each is recorded
/// once ([`super::Command::RecordMissedLimit`]).
#[must_use]
pub fn limits_missed(order: &Order, now: DateTime<FixedOffset>) -> Vec<(DeadlineKind, Deadline)> {
    let mut missed = Vec::new();
    if order.fields.urgency == Urgency::Urgent
        && transfer_on_time(order, now) == Some(false)
        && let Some(d) = order.deadlines
    {
        missed.push((DeadlineKind::Transfer, d.transfer.due));
    }
    if let Some(report) = &order.dissatisfaction_report {
        let late = match report.reported_at {
            Some(at) => at > report.window.due.at,
            None => order.state != State::Closed && now > report.window.due.at,
        };
        if late {
            missed.push((DeadlineKind::Report, report.window.due));
        }
    }
    missed.retain(|(kind, due)| {
        !order
            .missed_limits
            .iter()
            .any(|m| m.deadline == *kind && m.due == due.at)
    });
    missed
}

/// Alerts the city's leaders are owed at `now` (H-13-2): an urgent order received, and
/// its hour for the transfer missed; each once per order.
#[must_use]
pub fn leader_alerts_due(order: &Order, now: DateTime<FixedOffset>) -> Vec<LeaderAlert> {
    if order.fields.urgency != Urgency::Urgent || !order.exists() {
        return Vec::new();
    }
    let mut due = vec![LeaderAlert::UrgentReceived];
    if transfer_on_time(order, now) == Some(false) {
        due.push(LeaderAlert::UrgentTransferMissed);
    }
    due.retain(|a| !order.leader_alerts.contains(a));
    due
}

/// When the scheduler next has something to do for the order: the earliest watched
/// limit, an urgent order's receipt while its leaders are not told, its hour while
/// the missed transfer is not recorded. The projection's `next_due`.
#[must_use]
pub fn scheduler_due(order: &Order) -> Option<DateTime<FixedOffset>> {
    let mut at: Vec<DateTime<FixedOffset>> = watched_deadlines(order)
        .into_iter()
        .map(|(_, w)| w.due.at)
        .collect();
    if order.fields.urgency == Urgency::Urgent && order.exists() {
        if !order.leader_alerts.contains(&LeaderAlert::UrgentReceived) {
            at.push(order.fields.received_at);
        }
        if let Some(d) = order.deadlines {
            let recorded = order
                .missed_limits
                .iter()
                .any(|m| m.deadline == DeadlineKind::Transfer);
            let late = order.dispatched_at.is_some_and(|t| t > d.transfer.due.at);
            let told = order
                .leader_alerts
                .contains(&LeaderAlert::UrgentTransferMissed);
            if late && !(recorded && told) {
                at.push(d.transfer.due.at);
            }
        }
    }
    if let Some(report) = &order.dissatisfaction_report
        && report.reported_at.is_some_and(|t| t > report.window.due.at)
        && !order
            .missed_limits
            .iter()
            .any(|m| m.deadline == DeadlineKind::Report && m.due == report.window.due.at)
    {
        at.push(report.window.due.at);
    }
    at.into_iter().min()
}

/// Whether the order missed its feedback limit (as extended): the one definition of
/// overdue used by the order view, the rankings and `/api/stats/orders`. Finished
/// ([`Order::finished_at`]: completed, or withdrawn) after the limit, or still open
/// past it at `now`. Done within an approved extension is not overdue (W-12).
#[must_use]
pub fn is_overdue(order: &Order, now: DateTime<FixedOffset>) -> bool {
    let Some(deadlines) = order.deadlines else {
        return false;
    };
    match order.finished_at() {
        Some(done) => done > deadlines.feedback.due.at,
        None => order.state != State::Closed && now > deadlines.feedback.due.at,
    }
}
