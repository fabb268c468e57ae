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

use super::model::{Order, State, Urgency};

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

/// Which limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    /// Transfer to a unit.
    Transfer,
    /// Result fed back to the caller.
    Feedback,
    /// Urgent callback.
    Callback,
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
        let due = calendar.add_working_days(received_at, n);
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

/// Reminders (催办, H-13-4) due at `now` and not yet raised for the current limit:
/// yellow from one working day before the limit, red at or after it. At most one: the
/// highest level reached.
#[must_use]
pub fn reminders_due(order: &Order, now: DateTime<FixedOffset>) -> Vec<DueReminder> {
    let Some((kind, window)) = running_deadline(order) else {
        return Vec::new();
    };
    let level = if now >= window.due.at {
        ReminderLevel::Red
    } else if now >= window.warn_from {
        ReminderLevel::Yellow
    } else {
        return Vec::new();
    };
    let already = order
        .reminders
        .iter()
        .any(|r| r.deadline == kind && r.due == window.due.at && r.level >= level);
    if already {
        Vec::new()
    } else {
        vec![DueReminder {
            deadline: kind,
            level,
            due: window.due,
        }]
    }
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
