//! The post-call survey answer goes onto the call's work orders (CALL-ETIQUETTE: "the
//! answer is stored against the call and its work order").
//!
//! The call shell stores the answer in the call's CDR when the call ends; the agent
//! may save the order before that (during the call) or after (in wrap-up). Creating an
//! order with a `call_id` writes an `order_calls` link in the order's own
//! transaction. This task, at start-up and then every few seconds, reads the unsettled
//! links with their CDR and, for a call that has ended with an answer, appends a
//! `call_survey_recorded` event to the order as the system actor; a call that ended
//! without a survey settles the link with nothing to add. Either order of events ends
//! the same way, and a crash anywhere is repaired by the next pass: the transition
//! refuses a second answer, which settles the link.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use tracing::{info, warn};

use crate::clock::WallClock;
use crate::ivr::cdr::CallDetailRecord;
use crate::ivr::flow::SurveyResult;
use crate::orders::OrdersContext;
use crate::shutdown::Shutdown;
use crate::store::orders::AppendError;
use crate::store::surveys::UnsettledCallOrder;
use crate::store::{Store, StoreError};
use crate::ticket::{Actor, CallId, CallSurveyAnswer, Command, Context, apply};

/// How often the task looks for ended calls.
pub const INTERVAL: Duration = Duration::from_secs(3);
/// Links handled per pass.
const BATCH: i64 = 200;
/// A link whose call never produced a CDR (an id typed by hand, a call lost before the
/// record was written) is given up after this long.
const NO_CALL_RECORD_MS: i64 = 24 * 3600 * 1000;

/// The order-side name of a survey result.
#[must_use]
pub fn answer(result: SurveyResult) -> CallSurveyAnswer {
    match result {
        SurveyResult::Satisfied => CallSurveyAnswer::Satisfied,
        SurveyResult::BasicallySatisfied => CallSurveyAnswer::BasicallySatisfied,
        SurveyResult::Dissatisfied => CallSurveyAnswer::Dissatisfied,
        SurveyResult::NoAnswer => CallSurveyAnswer::NoAnswer,
    }
}

/// What to do with one link, decided from the call's record alone (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStep {
    /// The call is still going (or its record is not written yet): look again later.
    Wait,
    /// Nothing to add: the call ended without a survey, or never left a record.
    Settle,
    /// Append this answer to the order.
    Record(CallSurveyAnswer),
}

/// The step for `link` at `now_ms`.
#[must_use]
pub fn step(link: &UnsettledCallOrder, now_ms: i64) -> LinkStep {
    let Some(json) = link.call_record.as_deref() else {
        return if now_ms - link.created_ms > NO_CALL_RECORD_MS {
            LinkStep::Settle
        } else {
            LinkStep::Wait
        };
    };
    let Ok(record) = serde_json::from_str::<CallDetailRecord>(json) else {
        warn!(call = %link.call_id, "unreadable call record: survey link settled");
        return LinkStep::Settle;
    };
    match (record.end, record.survey) {
        (None, _) => LinkStep::Wait,
        (Some(_), None) => LinkStep::Settle,
        (Some(_), Some(result)) => LinkStep::Record(answer(result)),
    }
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum SurveyTaskError {
    #[error("database")]
    Store(#[from] StoreError),
    #[error("cannot append the survey to the order")]
    Append(#[from] AppendError),
}

/// Append `answer` to the order of `link`. `Ok(true)` once the link can be settled;
/// `Ok(false)` when a concurrent command moved the order (next pass retries).
async fn record(
    store: &Store,
    orders: &OrdersContext,
    link: &UnsettledCallOrder,
    answer: CallSurveyAnswer,
    now: DateTime<FixedOffset>,
) -> Result<bool, SurveyTaskError> {
    let Some(order) = store.load_order(&link.order_id).await? else {
        warn!(order = %link.order_id, "survey link to a missing order settled");
        return Ok(true);
    };
    let calendar = orders.calendar.current();
    let ctx = Context {
        calendar: &calendar,
        units: &orders.units,
        routing: &orders.routing,
    };
    let command = Command::RecordCallSurvey {
        call_id: CallId(link.call_id.clone()),
        answer,
    };
    let actor = Actor::system(order.fields.city.clone());
    // Never before the order's last event (a clock stepped back, or the API and the
    // call shell on different clocks): the ledger refuses back-dating.
    let now = order.last_event_at.map_or(now, |last| now.max(last));
    let (updated, events) = match apply(&order, command, &actor, now, &ctx) {
        Ok(applied) => applied,
        // Already recorded (a pass that died before settling), or refused for good:
        // nothing a retry could change.
        Err(e) => {
            if order.call_survey.is_none() {
                warn!(order = %order.id, call = %link.call_id, error = %e,
                    "survey not recorded on the order");
            }
            return Ok(true);
        }
    };
    match store
        .append_order_events(
            &updated,
            order.version,
            &events,
            None,
            now.timestamp_millis(),
        )
        .await
    {
        Ok(()) => {
            info!(order = %order.id, call = %link.call_id, answer = %crate::logfmt::word(&answer), "call survey → work order");
            Ok(true)
        }
        Err(AppendError::Conflict) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// One pass over the unsettled links. Returns how many were settled.
///
/// # Errors
/// Database errors; the links not reached are handled by the next pass.
pub async fn settle_once(
    store: &Store,
    orders: &OrdersContext,
    now: DateTime<FixedOffset>,
) -> Result<usize, SurveyTaskError> {
    let mut settled = 0;
    for link in store.unsettled_call_orders(BATCH).await? {
        let done = match step(&link, now.timestamp_millis()) {
            LinkStep::Wait => false,
            LinkStep::Settle => true,
            LinkStep::Record(answer) => record(store, orders, &link, answer, now).await?,
        };
        if done {
            store
                .settle_call_order(&link.call_id, &link.order_id)
                .await?;
            settled += 1;
        }
    }
    Ok(settled)
}

/// Run [`settle_once`] at start-up and every [`INTERVAL`] until shutdown. `clock` is
/// the server's wall clock (shifted by `HOTLINE_FAKE_NOW` in tests and demos).
pub async fn survey_loop(
    store: Store,
    orders: Arc<OrdersContext>,
    clock: WallClock,
    shutdown: Shutdown,
) {
    loop {
        if let Err(e) = settle_once(&store, &orders, clock.now()).await {
            warn!(cause = %crate::logfmt::chain(&e), "survey pass failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivr::cdr::CdrBuilder;
    use crate::ticket::{
        Category, Contact, EventKind, Order, OrderFields, OrderId, Role, UnitId, UserId,
    };

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).expect("time")
    }

    fn orders_context() -> OrdersContext {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config =
            crate::config::Config::load(&root.join("config/hotline.toml")).expect("config");
        let calendar =
            crate::calendar::Calendar::load(root.join("config/calendar/cn-workdays.toml"))
                .expect("calendar");
        OrdersContext::from_config(&config, calendar)
    }

    /// A finished (or, with `ended` false, still running) call record.
    fn call(id: &str, survey: Option<SurveyResult>, ended: bool) -> CallDetailRecord {
        let arrival = at("2026-03-02T10:00:00+08:00");
        let mut cdr = CdrBuilder::new(id, "13812345678", "12348", arrival);
        if let Some(result) = survey {
            cdr.survey(result);
        }
        let mut record = cdr.finish(at("2026-03-02T10:05:00+08:00"));
        if !ended {
            record.end = None;
        }
        record
    }

    /// An agent saves a draft order linked to `call_id`.
    async fn order_for(store: &Store, ctx: &OrdersContext, id: &str, call_id: &str) {
        let actor = Actor {
            user_id: UserId("1001".into()),
            roles: vec![Role::Agent],
            unit: UnitId::new("jinan"),
        };
        let now = at("2026-03-02T10:01:00+08:00");
        let fields = OrderFields {
            contact: Contact {
                name: "张三".into(),
                phone: "13812345678".into(),
            },
            category: Category::Consultation,
            description: "劳动合同咨询".into(),
            city: UnitId::new("jinan"),
            call_id: Some(CallId(call_id.into())),
            received_at: now,
            ..OrderFields::default()
        };
        let rules = Context {
            calendar: &ctx.calendar.current(),
            units: &ctx.units,
            routing: &ctx.routing,
        };
        let (order, events) = apply(
            &Order::new(OrderId(id.into())),
            Command::Create { fields },
            &actor,
            now,
            &rules,
        )
        .expect("create");
        store
            .append_order_events(&order, 0, &events, None, now.timestamp_millis())
            .await
            .expect("append");
    }

    async fn survey_events(store: &Store, id: &str) -> Vec<String> {
        store
            .order_events(id)
            .await
            .expect("events")
            .into_iter()
            .filter_map(|e| match serde_json::from_str(&e.kind) {
                Ok(EventKind::CallSurveyRecorded { answer, .. }) => Some(format!("{answer:?}")),
                _ => None,
            })
            .collect()
    }

    async fn exercise(store: &Store) {
        let ctx = orders_context();
        let now = at("2026-03-02T10:10:00+08:00");
        // Saved during the call: nothing to do until the call has ended.
        order_for(store, &ctx, "o-during", "c-during").await;
        assert_eq!(settle_once(store, &ctx, now).await.expect("pass"), 0);
        // The record written at the answer, still in progress.
        store
            .open_call(&call("c-during", None, false))
            .await
            .expect("cdr");
        assert_eq!(settle_once(store, &ctx, now).await.expect("pass"), 0);
        store
            .insert_call(&call("c-during", Some(SurveyResult::Satisfied), true), None)
            .await
            .expect("cdr");
        // Saved after the call (wrap-up), and a call that ended without a survey.
        store
            .insert_call(
                &call("c-after", Some(SurveyResult::Dissatisfied), true),
                None,
            )
            .await
            .expect("cdr");
        order_for(store, &ctx, "o-after", "c-after").await;
        store
            .insert_call(&call("c-none", None, true), None)
            .await
            .expect("cdr");
        order_for(store, &ctx, "o-none", "c-none").await;

        assert_eq!(settle_once(store, &ctx, now).await.expect("pass"), 3);
        assert_eq!(survey_events(store, "o-during").await, ["Satisfied"]);
        assert_eq!(survey_events(store, "o-after").await, ["Dissatisfied"]);
        assert!(survey_events(store, "o-none").await.is_empty());
        let during = store
            .load_order("o-during")
            .await
            .expect("load")
            .expect("order");
        assert_eq!(during.call_survey, Some(CallSurveyAnswer::Satisfied));
        assert!(
            store
                .unsettled_call_orders(10)
                .await
                .expect("links")
                .is_empty()
        );

        // A pass that died after appending but before settling: the next pass settles
        // the link without a second answer.
        store
            .unsettle_call_order("c-during", "o-during")
            .await
            .expect("unsettle");
        assert_eq!(settle_once(store, &ctx, now).await.expect("pass"), 1);
        assert_eq!(survey_events(store, "o-during").await, ["Satisfied"]);
        assert!(
            store.verify_ledger().await.expect("verify").ok,
            "the chain holds"
        );
    }

    #[tokio::test]
    async fn survey_answers_reach_the_orders_of_their_call_sqlite() {
        let (store, _dir) = crate::store::test_support::sqlite().await;
        exercise(&store).await;
    }

    #[tokio::test]
    async fn survey_answers_reach_the_orders_of_their_call_postgres() {
        let store = crate::store::test_support::postgres().await;
        exercise(&store).await;
    }

    #[test]
    fn a_link_without_a_call_record_waits_a_day_then_settles() {
        let link = UnsettledCallOrder {
            call_id: "typed-by-hand".into(),
            order_id: "o".into(),
            created_ms: 0,
            call_record: None,
        };
        assert_eq!(step(&link, NO_CALL_RECORD_MS), LinkStep::Wait);
        assert_eq!(step(&link, NO_CALL_RECORD_MS + 1), LinkStep::Settle);
        let unreadable = UnsettledCallOrder {
            call_record: Some("{".into()),
            ..link
        };
        assert_eq!(step(&unreadable, 0), LinkStep::Settle);
    }
}
