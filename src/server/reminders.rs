//! Reminder scheduler (TK-REMIND, H-13-4): every minute, open orders whose running
//! limit is near or past get a `Remind` event by the system actor (yellow one working
//! day before, red at the limit), and the notifier is told, after the commit.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use tracing::{info, warn};

use super::sip::Shutdown;
use crate::api::orders::OrdersContext;
use crate::store::orders::AppendError;
use crate::store::{Store, StoreError};
use crate::ticket::{Actor, Command, Context, DueReminder, Order, apply, reminders_due};

/// Where reminders go besides the ledger (SMS, webhook, …).
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// A reminder was recorded for `order`.
    fn reminder(&self, order: &Order, reminder: &DueReminder);
}

/// Writes reminders to the log.
#[derive(Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn reminder(&self, order: &Order, reminder: &DueReminder) {
        info!(
            order = %order.id,
            deadline = ?reminder.deadline,
            level = ?reminder.level,
            due = %reminder.due.display(),
            units = ?order.assignments.iter().map(|a| a.unit.as_str()).collect::<Vec<_>>(),
            "催办 reminder"
        );
    }
}

/// One pass: raise every reminder due at `now`. Returns how many were recorded.
/// An order changed concurrently is skipped until the next pass.
///
/// # Errors
/// Database errors reading candidates (a failed append is logged and skipped).
pub async fn remind_once(
    store: &Store,
    orders: &OrdersContext,
    notifier: &dyn Notifier,
    now: DateTime<FixedOffset>,
) -> Result<usize, StoreError> {
    let ctx = Context {
        calendar: &orders.calendar,
        units: &orders.units,
        routing: &orders.routing,
    };
    let mut raised = 0;
    for order in store.reminder_candidates(now.timestamp_millis()).await? {
        for due in reminders_due(&order, now) {
            let unit = order
                .dispatch_unit
                .clone()
                .unwrap_or_else(|| order.fields.city.clone());
            let command = Command::Remind {
                deadline: due.deadline,
                level: due.level,
                note: "automatic reminder".to_owned(),
            };
            let (next, events) = match apply(&order, command, &Actor::system(unit), now, &ctx) {
                Ok(done) => done,
                Err(e) => {
                    warn!(order = %order.id, %e, "reminder refused by the work-order rules");
                    continue;
                }
            };
            match store
                .append_order_events(&next, order.version, &events, None, now.timestamp_millis())
                .await
            {
                Ok(()) => {
                    raised += 1;
                    notifier.reminder(&next, &due);
                }
                Err(AppendError::Conflict) => {}
                Err(e) => warn!(order = %order.id, %e, "cannot record reminder"),
            }
        }
    }
    Ok(raised)
}

/// Run [`remind_once`] every minute until shutdown.
pub async fn reminder_loop(
    store: Store,
    orders: Arc<OrdersContext>,
    notifier: Arc<dyn Notifier>,
    shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.cancelled() => return,
        }
        let now = chrono::Utc::now().with_timezone(&crate::calendar::shanghai());
        if let Err(e) = remind_once(&store, &orders, notifier.as_ref(), now).await {
            warn!(%e, "reminder pass failed");
        }
    }
}
