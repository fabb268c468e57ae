//! Transfer timeliness (转办及时率; H-8 1 working day, H-13-2 1 hour for urgent
//! orders) of dispatch centers and dispatchers, from [`transfer_on_time`], the one
//! definition the scheduler's `limit_missed` events use too. `/api/stats/orders`
//! counts the same in SQL over the projection (`Store::transfer_counts`; its API test
//! compares the two); rankings may read the same figures per unit.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::deadlines::{DeadlineKind, transfer_on_time};
use super::model::{Order, Urgency};

/// On time and late transfers of one unit, one dispatcher or everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TransferCount {
    /// Orders whose transfer is judged: dispatched, or still waiting past the limit.
    pub judged: u64,
    /// Dispatched within the limit.
    pub on_time: u64,
    /// Dispatched after the limit or still waiting past it.
    pub late: u64,
    /// Of the late, urgent orders (1-hour limit, H-13-2).
    pub urgent_late: u64,
    /// Late transfers the ledger holds a `limit_missed` event for.
    pub recorded_missed: u64,
    /// `on_time / judged` in per mille, rounded down; `None` when nothing is judged.
    pub on_time_permille: Option<u64>,
}

impl TransferCount {
    /// Adds counts made elsewhere (the database's, see `Store::transfer_counts`).
    pub fn add_counts(&mut self, on_time: u64, late: u64, urgent_late: u64, recorded: u64) {
        self.on_time += on_time;
        self.late += late;
        self.urgent_late += urgent_late;
        self.recorded_missed += recorded;
        self.judged = self.on_time + self.late;
        self.on_time_permille = (self.judged > 0).then(|| self.on_time * 1000 / self.judged);
    }

    fn add(&mut self, order: &Order, on_time: bool) {
        self.judged += 1;
        if on_time {
            self.on_time += 1;
        } else {
            self.late += 1;
            if order.fields.urgency == Urgency::Urgent {
                self.urgent_late += 1;
            }
            if order
                .missed_limits
                .iter()
                .any(|m| m.deadline == DeadlineKind::Transfer)
            {
                self.recorded_missed += 1;
            }
        }
        self.on_time_permille = Some(self.on_time * 1000 / self.judged);
    }
}

/// The figures: overall, per dispatch center (the order's dispatch unit), per
/// dispatcher (who made the first dispatch; `system` for automatic routing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TransferTimeliness {
    /// Every judged order.
    pub total: TransferCount,
    /// By dispatch unit id.
    pub by_unit: BTreeMap<String, TransferCount>,
    /// By the dispatcher's user id (orders never dispatched have none).
    pub by_dispatcher: BTreeMap<String, TransferCount>,
}

impl TransferTimeliness {
    /// Adds the counts of one dispatch unit and dispatcher (`""`: none).
    pub fn add_counts(&mut self, unit: &str, dispatcher: &str, counts: (u64, u64, u64, u64)) {
        let (on_time, late, urgent, recorded) = counts;
        self.total.add_counts(on_time, late, urgent, recorded);
        self.by_unit
            .entry(unit.to_owned())
            .or_default()
            .add_counts(on_time, late, urgent, recorded);
        if !dispatcher.is_empty() {
            self.by_dispatcher
                .entry(dispatcher.to_owned())
                .or_default()
                .add_counts(on_time, late, urgent, recorded);
        }
    }
}

/// Transfer timeliness of `orders` at `now`.
#[must_use]
pub fn transfer_timeliness<'a>(
    orders: impl IntoIterator<Item = &'a Order>,
    now: DateTime<FixedOffset>,
) -> TransferTimeliness {
    let mut figures = TransferTimeliness::default();
    for order in orders {
        let Some(on_time) = transfer_on_time(order, now) else {
            continue;
        };
        figures.total.add(order, on_time);
        let unit = order
            .dispatch_unit
            .as_ref()
            .unwrap_or(&order.fields.city)
            .as_str()
            .to_owned();
        figures.by_unit.entry(unit).or_default().add(order, on_time);
        if let Some(user) = &order.dispatched_by {
            figures
                .by_dispatcher
                .entry(user.0.clone())
                .or_default()
                .add(order, on_time);
        }
    }
    figures
}
