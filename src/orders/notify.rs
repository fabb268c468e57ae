//! Notices of committed order events that someone must act on — reminders (催办,
//! TK-REMIND) and supervision presses (督办, TK-SUPERVISE) — and the notifiers that
//! carry them: the log, and an optional webhook (`[notify] webhook_url`).
//!
//! A notice is made only from events whose transaction has committed (the callers
//! notify after [`crate::store::Store::append_order_events`] returned `Ok`). The webhook
//! notifier never blocks its caller: [`Notifier::notify`] puts the notice on a bounded
//! queue (full → dropped, logged and counted); a delivery task POSTs each notice as
//! JSON with bounded retries and exponential backoff; failures are logged and counted
//! in `/metrics`. The ledger keeps every reminder and press whatever happens to its
//! notice, so a receiver that was down can catch up from `GET /api/orders/{id}/events`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tracing::{info, warn};

use crate::config::NotifyConfig;
use crate::http_client::{self, HttpUrl, Request};
use crate::metrics::{Metrics, NoticeDrop};
use crate::shutdown::Shutdown;
use crate::ticket::{
    Category, DeadlineKind, Event, EventKind, LeaderAlert, Order, ReminderLevel, Role, Urgency,
};

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// 催办: a limit near (yellow) or past (red), automatic or pressed by a person.
    Reminder,
    /// 督办: a supervisor pressed the order.
    Supervision,
    /// 特殊标记: still dissatisfied after the second callback; the order waits for the
    /// supervising unit's study (W-14).
    SpecialFlag,
    /// 报告领导: the city's leaders are told of an urgent order (H-13-2); `alert`
    /// says why, `leaders` who.
    Leaders,
    /// A limit passed unmet (the urgent hour for the transfer, the dissatisfaction
    /// report, H-9), recorded by the scheduler.
    LimitMissed,
}

/// One notice: the webhook's JSON body. The caller's contact is never in it
/// (TK-PRIVACY).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// Kind.
    pub event: NoticeKind,
    /// `<order id>:<event seq>`, unique per notice: a receiver drops repeats (a delivery
    /// retried after its answer was lost arrives twice).
    pub id: String,
    /// The order.
    pub order_id: String,
    /// Position of the event in the order's ledger.
    pub seq: u64,
    /// When the event was recorded.
    pub at: DateTime<FixedOffset>,
    /// Who: a user id, or `system` for the scheduler.
    pub actor: String,
    /// In which role.
    pub role: Role,
    /// The actor's unit.
    pub actor_unit: String,
    /// The order's state after the event.
    pub state: String,
    /// The order's category.
    pub category: Category,
    /// Its urgency.
    pub urgency: Urgency,
    /// Its city.
    pub city: String,
    /// The units handling it now (empty before dispatch).
    pub units: Vec<String>,
    /// For reminders: the limit.
    pub deadline: Option<DeadlineKind>,
    /// For reminders: yellow (within a working day) or red (past).
    pub level: Option<ReminderLevel>,
    /// For reminders: when the limit falls.
    pub due: Option<DateTime<FixedOffset>>,
    /// The note given.
    pub note: String,
    /// The unit the notice is addressed to, when it is not the handling units: the
    /// supervising unit that must study a flagged order (W-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_unit: Option<String>,
    /// For leader alerts: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<LeaderAlert>,
    /// For leader alerts: the leaders told (their names as configured).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leaders: Vec<String>,
}

/// The notices carried by `events`, just committed; `order` is the order after them.
#[must_use]
pub fn notices(order: &Order, events: &[Event]) -> Vec<Notice> {
    events
        .iter()
        .filter_map(|event| {
            let mut to_unit = None;
            let mut alert = None;
            let mut leaders = Vec::new();
            let (kind, deadline, level, due, note) = match &event.kind {
                EventKind::Reminded {
                    deadline,
                    level,
                    due,
                    note,
                } => (
                    NoticeKind::Reminder,
                    Some(*deadline),
                    Some(*level),
                    Some(*due),
                    note.clone(),
                ),
                EventKind::Supervised { note } => {
                    (NoticeKind::Supervision, None, None, None, note.clone())
                }
                EventKind::SpecialFlagged { reason } => {
                    to_unit = order
                        .second_callback_unit
                        .as_ref()
                        .map(|u| u.as_str().to_owned());
                    (NoticeKind::SpecialFlag, None, None, None, reason.clone())
                }
                EventKind::LeadersAlerted {
                    alert: why,
                    leaders: names,
                } => {
                    alert = Some(*why);
                    leaders.clone_from(names);
                    let transfer = order.deadlines.map(|d| d.transfer.due.at);
                    let note = match why {
                        LeaderAlert::UrgentReceived => "urgent order received (应急类工单)",
                        LeaderAlert::UrgentTransferMissed => {
                            "urgent order not transferred within 1 hour (超时未转办)"
                        }
                    };
                    let deadline = Some(DeadlineKind::Transfer);
                    (
                        NoticeKind::Leaders,
                        deadline,
                        None,
                        transfer,
                        note.to_owned(),
                    )
                }
                EventKind::LimitMissed { deadline, due } => (
                    NoticeKind::LimitMissed,
                    Some(*deadline),
                    Some(ReminderLevel::Red),
                    Some(*due),
                    String::new(),
                ),
                _ => return None,
            };
            Some(Notice {
                event: kind,
                id: format!("{}:{}", event.order_id.0, event.seq),
                order_id: event.order_id.0.clone(),
                seq: event.seq,
                at: event.at,
                actor: event.actor.0.clone(),
                role: event.role,
                actor_unit: event.unit.as_str().to_owned(),
                state: event.state_after.as_str().to_owned(),
                category: order.fields.category,
                urgency: order.fields.urgency,
                city: order.fields.city.as_str().to_owned(),
                units: order
                    .active_units()
                    .map(|u| u.as_str().to_owned())
                    .collect(),
                deadline,
                level,
                due,
                note,
                to_unit,
                alert,
                leaders,
            })
        })
        .collect()
}

/// Where notices go besides the ledger.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// A notice whose events have committed. Must not block.
    fn notify(&self, notice: &Notice);
}

/// Writes notices to the log.
#[derive(Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn notify(&self, notice: &Notice) {
        info!(
            order = %notice.order_id,
            event = %crate::logfmt::word(&notice.event),
            deadline = %crate::logfmt::word(&notice.deadline),
            level = %crate::logfmt::word(&notice.level),
            due = notice
                .due
                .map_or_else(|| "none".to_owned(), |d| crate::logfmt::deadline(&d)),
            units = %crate::logfmt::word(&notice.units),
            to_unit = %crate::logfmt::word(&notice.to_unit),
            alert = %crate::logfmt::word(&notice.alert),
            leaders = %crate::logfmt::word(&notice.leaders),
            actor = %notice.actor,
            "{}",
            match notice.event {
                NoticeKind::Reminder => "催办 reminder",
                NoticeKind::Supervision => "督办 supervision",
                NoticeKind::SpecialFlag => "特殊标记 special flag for study",
                NoticeKind::Leaders => "报告领导 leaders alerted of an urgent order",
                NoticeKind::LimitMissed => "超时 limit missed",
            }
        );
    }
}

/// Several notifiers, each told every notice.
#[derive(Debug, Default)]
pub struct FanOut(pub Vec<Arc<dyn Notifier>>);

impl Notifier for FanOut {
    fn notify(&self, notice: &Notice) {
        for notifier in &self.0 {
            notifier.notify(notice);
        }
    }
}

/// Deliveries in flight at once.
const PARALLEL_DELIVERIES: usize = 4;
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// POSTs each notice as JSON to `[notify] webhook_url`, from a task of its own.
#[derive(Debug)]
pub struct WebhookNotifier {
    queue: mpsc::Sender<Notice>,
    metrics: Arc<Metrics>,
}

/// The delivery policy.
#[derive(Debug, Clone)]
struct Delivery {
    url: HttpUrl,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
}

impl WebhookNotifier {
    /// Starts the delivery task (it ends at `shutdown`; notices not delivered by then
    /// stay in the ledger only).
    #[must_use]
    pub fn start(
        url: HttpUrl,
        config: &NotifyConfig,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Self {
        let (queue, rx) = mpsc::channel(config.webhook_queue.max(1));
        let delivery = Delivery {
            url,
            timeout: Duration::from_secs(config.webhook_timeout_secs.max(1)),
            max_attempts: config.webhook_max_attempts.max(1),
            backoff: Duration::from_millis(config.webhook_backoff_ms),
        };
        tokio::spawn(deliver_loop(rx, delivery, metrics.clone(), shutdown));
        Self { queue, metrics }
    }
}

impl Notifier for WebhookNotifier {
    fn notify(&self, notice: &Notice) {
        if let Err(e) = self.queue.try_send(notice.clone()) {
            self.metrics.notice_dropped(NoticeDrop::QueueFull);
            warn!(
                notice = %notice.id,
                closed = matches!(e, mpsc::error::TrySendError::Closed(_)),
                "webhook queue full: notice dropped (the ledger has the event)"
            );
        }
    }
}

async fn deliver_loop(
    mut rx: mpsc::Receiver<Notice>,
    delivery: Delivery,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let slots = Arc::new(Semaphore::new(PARALLEL_DELIVERIES));
    loop {
        let notice = tokio::select! {
            n = rx.recv() => match n {
                Some(n) => n,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (delivery, metrics, shutdown) = (delivery.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = deliver(&notice, &delivery, &metrics) => {}
                () = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
}

/// Attempts until a 2xx answer or `max_attempts`; waits `backoff`, doubled each time.
async fn deliver(notice: &Notice, delivery: &Delivery, metrics: &Metrics) {
    let body = match serde_json::to_value(notice) {
        Ok(body) => body,
        Err(e) => {
            warn!(notice = %notice.id, %e, "notice not serializable");
            return;
        }
    };
    let request =
        Request::post_json(delivery.url.clone(), &body).header("X-Hotline-Event", &notice.id);
    let mut wait = delivery.backoff;
    for attempt in 1..=delivery.max_attempts {
        let failure = match http_client::send(&request, delivery.timeout).await {
            Ok(response) if response.is_success() => {
                metrics.notice_delivered();
                if attempt > 1 {
                    info!(notice = %notice.id, attempt, "webhook notice delivered after retries");
                }
                return;
            }
            Ok(response) => format!("answered {}", response.status),
            Err(e) => e.to_string(),
        };
        metrics.notice_attempt_failed();
        warn!(
            notice = %notice.id,
            attempt,
            of = delivery.max_attempts,
            url = %delivery.url,
            %failure,
            "webhook delivery failed"
        );
        if attempt < delivery.max_attempts {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }
    metrics.notice_dropped(NoticeDrop::GaveUp);
    warn!(
        notice = %notice.id,
        attempts = delivery.max_attempts,
        "webhook notice given up (the ledger has the event)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::Calendar;
    use crate::ticket::{
        Actor, Command, Contact, Context, OrderFields, OrderId, RoutingRules, UnitId, UnitTree,
        UserId, apply,
    };

    #[test]
    fn reminders_and_presses_make_notices_other_events_do_not() {
        let calendar =
            Calendar::from_toml_str(include_str!("../../config/calendar/cn-workdays.toml"))
                .expect("calendar");
        let units = UnitTree::shandong_default();
        let routing = RoutingRules::default();
        let ctx = Context {
            calendar: &calendar,
            units: &units,
            routing: &routing,
        };
        let at = |t: &str| DateTime::parse_from_rfc3339(t).expect("time");
        let received = at("2025-09-30T16:00:00+08:00");
        let agent = Actor {
            user_id: UserId("a".into()),
            roles: vec![Role::Agent, Role::Dispatcher],
            unit: UnitId::new("jinan"),
        };
        let fields = OrderFields {
            contact: Contact {
                name: "张三".into(),
                phone: "13812345678".into(),
            },
            category: Category::Complaint,
            description: "d".into(),
            city: UnitId::new("jinan"),
            received_at: received,
            ..OrderFields::default()
        };
        let (o, created) = apply(
            &Order::new(OrderId("GD1".into())),
            Command::Create { fields },
            &agent,
            received,
            &ctx,
        )
        .expect("create");
        let (o, submitted) = apply(&o, Command::Submit, &agent, received, &ctx).expect("submit");
        assert!(notices(&o, &created).is_empty() && notices(&o, &submitted).is_empty());
        let supervisor = Actor {
            user_id: UserId("boss".into()),
            roles: vec![Role::Supervisor],
            unit: UnitId::new("shandong"),
        };
        let later = at("2025-10-10T09:00:00+08:00");
        let (o, pressed) = apply(
            &o,
            Command::Supervise {
                note: "尽快".into(),
            },
            &supervisor,
            later,
            &ctx,
        )
        .expect("supervise");
        let made = notices(&o, &pressed);
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].event, NoticeKind::Supervision);
        assert_eq!(made[0].id, format!("GD1:{}", made[0].seq));
        assert_eq!(
            (made[0].actor.as_str(), made[0].note.as_str()),
            ("boss", "尽快")
        );
        let json = serde_json::to_string(&made[0]).expect("json");
        assert!(
            !json.contains("13812345678") && !json.contains("张三"),
            "{json}"
        );
    }
}
