//! Reminder scheduler (TK-REMIND, H-13-4; leaders' alerts and missed limits, H-13-2,
//! H-9): every minute (`[notify]
//! reminder_interval_secs`), open orders whose running limit is near or past get a
//! `Remind` event by the system actor (yellow one working day before, red at the
//! limit), and the notifier is told, after the commit. It reads the server's clock
//! (`--now` shifts it, as for calls).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use tracing::{info, warn};

use crate::calendar::Reload;
use crate::clock::WallClock;
use crate::orders::OrdersContext;
use crate::orders::notify::notices;
use crate::shutdown::Shutdown;
use crate::store::orders::AppendError;
use crate::store::{Store, StoreError};
use crate::ticket::{
    Actor, Command, Context, apply, leader_alerts_due, limits_missed, reminders_due,
};

/// The note of a reminder the scheduler raises, as the ledger shows it. (Events
/// recorded before it was Chinese say "automatic reminder".)
pub const AUTOMATIC_REMINDER_NOTE: &str = "系统自动催办";

pub use crate::orders::notify::{LogNotifier, Notifier};

/// One pass over the orders with work due at `now`, by the system actor, each step
/// its own commit, notifying after it:
/// 1. the city's leaders told of an urgent order received and of its hour for the
///    transfer missed (H-13-2), once each ([`leader_alerts_due`]);
/// 2. a missed limit recorded once ([`limits_missed`]: the urgent transfer, the
///    dissatisfaction report of H-9);
/// 3. the reminders due ([`reminders_due`]).
///
/// Returns how many events were recorded. An order changed concurrently is skipped
/// until the next pass.
///
/// # Errors
/// Database errors reading candidates (a failed append is logged and skipped).
pub async fn remind_once(
    store: &Store,
    orders: &OrdersContext,
    notifier: &dyn Notifier,
    now: DateTime<FixedOffset>,
) -> Result<usize, StoreError> {
    let calendar = orders.calendar.current();
    let ctx = Context {
        calendar: &calendar,
        units: &orders.units,
        routing: &orders.routing,
    };
    let mut raised = 0;
    for order in store.reminder_candidates(now.timestamp_millis()).await? {
        if order.last_event_at.is_some_and(|last| now < last) {
            // The clock reads earlier than the order's history (`--now` in the past
            // while the consoles keep the wall clock): nothing can be recorded before it.
            continue;
        }
        let leaders: Vec<String> = orders
            .leaders
            .get(order.fields.city.as_str())
            .map(|l| l.iter().map(|l| l.name.clone()).collect())
            .unwrap_or_default();
        let mut commands: Vec<Command> = leader_alerts_due(&order, now)
            .into_iter()
            .map(|alert| Command::AlertLeaders {
                alert,
                leaders: leaders.clone(),
            })
            .collect();
        commands.extend(
            limits_missed(&order, now)
                .into_iter()
                .map(|(deadline, _)| Command::RecordMissedLimit { deadline }),
        );
        commands.extend(
            reminders_due(&order, now)
                .into_iter()
                .map(|due| Command::Remind {
                    deadline: due.deadline,
                    level: due.level,
                    note: AUTOMATIC_REMINDER_NOTE.to_owned(),
                }),
        );
        let unit = order
            .dispatch_unit
            .clone()
            .unwrap_or_else(|| order.fields.city.clone());
        let system = Actor::system(unit);
        let mut current = order;
        for command in commands {
            let (next, events) = match apply(&current, command, &system, now, &ctx) {
                Ok(done) => done,
                Err(e) => {
                    warn!(order = %current.id, %e, "scheduler step refused by the work-order rules");
                    continue;
                }
            };
            match store
                .append_order_events(
                    &next,
                    current.version,
                    &events,
                    None,
                    now.timestamp_millis(),
                )
                .await
            {
                Ok(()) => {
                    raised += events.len();
                    for notice in notices(&next, &events) {
                        notifier.notify(&notice);
                    }
                    current = next;
                }
                Err(AppendError::Conflict) => break,
                Err(e) => {
                    warn!(order = %current.id, %e, "cannot record a scheduler step");
                    break;
                }
            }
        }
    }
    Ok(raised)
}

/// Deadlines computed while the calendar lacked a year are provisional (Mon–Fri
/// assumed). At start-up — after an operator added the year to the calendar file and
/// restarted — every open order with a provisional deadline is recomputed by the system
/// actor; only orders whose deadlines actually change get an event. Returns how many.
///
/// # Errors
/// Database errors reading the open orders.
pub async fn recompute_provisional_once(
    store: &Store,
    orders: &OrdersContext,
    now: DateTime<FixedOffset>,
) -> Result<usize, StoreError> {
    let calendar = orders.calendar.current();
    let ctx = Context {
        calendar: &calendar,
        units: &orders.units,
        routing: &orders.routing,
    };
    let mut changed = 0;
    for order in store.open_orders_with_provisional_deadlines().await? {
        let Some(deadlines) = order.deadlines.as_ref() else {
            continue;
        };
        let provisional = deadlines.transfer.due.provisional
            || deadlines.feedback.due.provisional
            || deadlines.callback.is_some_and(|c| c.due.provisional);
        if !provisional {
            continue;
        }
        let actor = Actor::system(order.fields.city.clone());
        let (next, events) = match apply(&order, Command::RecomputeDeadlines, &actor, now, &ctx) {
            Ok(done) => done,
            Err(e) => {
                warn!(order = %order.id, %e, "recompute refused by the work-order rules");
                continue;
            }
        };
        if next.deadlines == order.deadlines {
            continue; // the year is still missing: nothing to record
        }
        match store
            .append_order_events(&next, order.version, &events, None, now.timestamp_millis())
            .await
        {
            Ok(()) => changed += 1,
            Err(AppendError::Conflict) => {}
            Err(e) => warn!(order = %order.id, %e, "cannot record recomputed deadlines"),
        }
    }
    if changed > 0 {
        info!(
            changed,
            "provisional deadlines recomputed with the calendar now loaded"
        );
    }
    Ok(changed)
}

/// Reloads the calendar when its file changed (`hotline calendar add-year`, an edit;
/// see [`crate::calendar::live`] for why the file is watched rather than SIGHUP
/// awaited) and, when it did, recomputes the provisional deadlines of open orders with
/// it ([`recompute_provisional_once`]). An invalid file keeps the calendar in force.
/// Returns how many orders had their deadlines recomputed.
pub async fn reload_calendar(
    store: &Store,
    orders: &OrdersContext,
    now: DateTime<FixedOffset>,
) -> usize {
    match orders.calendar.reload_if_changed() {
        Ok(Reload::Unchanged) => 0,
        Ok(Reload::Reloaded { years, added }) => {
            info!(?years, ?added, "calendar file changed: reloaded");
            match recompute_provisional_once(store, orders, now).await {
                Ok(changed) => changed,
                Err(e) => {
                    warn!(%e, "recomputing provisional deadlines failed");
                    0
                }
            }
        }
        Err(e) => {
            warn!(%e, "calendar file changed but does not load: the calendar in force is kept");
            0
        }
    }
}

/// Run [`remind_once`] every `interval`, and when a commit wakes it
/// ([`OrdersContext::wake_scheduler_for`]), until shutdown, on `clock`.
pub async fn reminder_loop(
    store: Store,
    orders: Arc<OrdersContext>,
    notifier: Arc<dyn Notifier>,
    clock: WallClock,
    interval: Duration,
    shutdown: Shutdown,
) {
    if let Err(e) = recompute_provisional_once(&store, &orders, clock.now()).await {
        warn!(%e, "recomputing provisional deadlines failed");
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = orders.scheduler_wake.notified() => {}
            () = shutdown.cancelled() => return,
        }
        reload_calendar(&store, &orders, clock.now()).await;
        if let Err(e) = remind_once(&store, &orders, notifier.as_ref(), clock.now()).await {
            warn!(%e, "reminder pass failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Calendar;
    use crate::config::Config;
    use crate::ticket::{Category, Contact, Order, OrderFields, OrderId, UnitId};

    fn root() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn context(extra_calendar: &str) -> OrdersContext {
        let config = Config::load(&root().join("config/hotline.toml")).expect("config");
        let text = std::fs::read_to_string(root().join("config/calendar/cn-workdays.toml"))
            .expect("calendar");
        let calendar =
            Calendar::from_toml_str(&format!("{text}\n{extra_calendar}")).expect("calendar");
        OrdersContext::from_config(&config, calendar)
    }

    #[tokio::test]
    async fn provisional_deadlines_are_recomputed_once_the_year_is_loaded() {
        let (store, _dir) = crate::store::test_support::sqlite().await;
        let before = context("");
        let received = DateTime::parse_from_rfc3339("2026-12-30T10:00:00+08:00").expect("time");
        let before_calendar = before.calendar.current();
        let ctx = Context {
            calendar: &before_calendar,
            units: &before.units,
            routing: &before.routing,
        };
        let fields = OrderFields {
            contact: Contact {
                name: "张三".into(),
                phone: "13812345678".into(),
            },
            category: Category::Complaint,
            description: "跨年投诉".into(),
            city: UnitId::new("jinan"),
            received_at: received,
            ..OrderFields::default()
        };
        let system = Actor::system(UnitId::new("jinan"));
        let (order, mut events) = apply(
            &Order::new(OrderId("GD-PROV".into())),
            Command::Create { fields },
            &system,
            received,
            &ctx,
        )
        .expect("create");
        let (order, more) =
            apply(&order, Command::Submit, &system, received, &ctx).expect("submit");
        events.extend(more);
        let feedback = order.deadlines.expect("deadlines").feedback.due;
        assert!(
            feedback.provisional,
            "5 working days from 2026-12-30 reach 2027"
        );
        store
            .append_order_events(&order, 0, &events, None, received.timestamp_millis())
            .await
            .expect("store");

        // Still no 2027 data: nothing changes, nothing is recorded.
        let later = received + chrono::Duration::hours(1);
        assert_eq!(
            recompute_provisional_once(&store, &before, later)
                .await
                .unwrap(),
            0
        );

        // The operator adds 2027 (here: 1 January off) and restarts.
        let after =
            context("[years.2027]\nholidays = [\"2027-01-01\"]\nworkdays = []\nin_lieu = []\n");
        assert_eq!(
            recompute_provisional_once(&store, &after, later)
                .await
                .unwrap(),
            1
        );
        let stored = store.load_order("GD-PROV").await.unwrap().expect("order");
        let recomputed = stored.deadlines.expect("deadlines").feedback.due;
        assert!(!recomputed.provisional, "{recomputed:?}");
        // 12-31 (Thu), then 01-01 off: 01-04..01-07 → the 5th working day is 2027-01-07.
        assert_eq!(recomputed.display().to_string(), "2027-01-07T24:00+08:00");
        assert_eq!(
            recompute_provisional_once(&store, &after, later)
                .await
                .unwrap(),
            0
        );
    }
}
