//! Telephone facts on work orders: callbacks in queue and live transfers to units
//! (`CALL-CALLBACK`, `CALL-TRANSFER`, TK-LEDGER).
//!
//! The call shell hands each fact to [`CallOrders`]; one worker task writes them in the
//! order they happened, as the system actor:
//!
//! - the order of a call is the order an agent (or the voice-message flow) already
//!   opened with that call's id (`call_id`, found by the caller's phone), or else one
//!   this worker opens: channel phone, the IVR's category and urgency, the queue's city,
//!   contact phone = the caller, submitted for dispatch; created once per call (the
//!   idempotency key `callback:<call id>` / `transfer:<call id>` of [`IDEMPOTENCY_ACTOR`]);
//! - each fact is one `call_logged` event ([`CallLog`]): callback requested (with the
//!   place kept), each attempt (its time, the agent, the result, the recording), the
//!   callback given up, the transfer to a unit.
//!
//! A database that does not answer loses no call: the fact is logged (warn) and the
//! calls go on; the `queue_log` table has the same attempts.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::orders::OrdersContext;
use crate::store::Store;
use crate::store::orders::{AppendError, IdempotencyRecord, OrderFilter};
use crate::ticket::{
    Actor, CallAttemptResult, CallId, CallLog, Channel, Command, Contact, Context, Order,
    OrderFields, OrderId, UnitId, apply,
};

/// The user id idempotency keys of these orders are recorded under.
pub const IDEMPOTENCY_ACTOR: &str = "system:calls";
/// Description of an order opened for a callback request.
pub const CALLBACK_DESCRIPTION: &str = "来电排队时要求回电 (callback requested in queue)";
/// Description of an order opened for a live transfer without an order.
pub const TRANSFER_DESCRIPTION: &str = "来电转接相关单位 (call transferred live to a unit)";

/// What is known about a call when its order may have to be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOrderSeed {
    /// The call.
    pub call: CallId,
    /// The caller's number as received.
    pub caller: String,
    /// The city (queue) of the call.
    pub city: Option<String>,
    /// From the IVR.
    pub category: crate::domain::CallCategory,
    /// From the IVR.
    pub urgency: crate::domain::Urgency,
    /// When the call came in.
    pub received_at: DateTime<FixedOffset>,
}

#[derive(Debug)]
enum Job {
    /// Open (or find) the order and log `log`.
    Open {
        seed: CallOrderSeed,
        key: &'static str,
        description: &'static str,
        log: CallLog,
        at: DateTime<FixedOffset>,
    },
    /// A callback attempt of a call whose callback was requested before.
    Attempt {
        call: CallId,
        agent: String,
        result: CallAttemptResult,
        recording: Option<String>,
        at: DateTime<FixedOffset>,
    },
    /// A fact for the orders the call already has (none is opened for it).
    Append {
        seed: CallOrderSeed,
        log: CallLog,
        at: DateTime<FixedOffset>,
    },
    /// A fact for a known order (an order's callback call).
    Log {
        order: OrderId,
        log: CallLog,
        at: DateTime<FixedOffset>,
    },
    /// The callback of a call is over (answered and ended, or given up).
    CallbackOver {
        call: CallId,
        gave_up: Option<u32>,
        at: DateTime<FixedOffset>,
    },
}

/// The work-order side of calls: see the module docs.
#[derive(Debug, Clone)]
pub struct CallOrders {
    tx: mpsc::UnboundedSender<Job>,
}

impl CallOrders {
    /// Start the worker. `province_center` takes orders of calls without a known city.
    #[must_use]
    pub fn start(store: Store, orders: Arc<OrdersContext>, province_center: UnitId) -> CallOrders {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(worker(store, orders, province_center, rx));
        CallOrders { tx }
    }

    fn send(&self, job: Job) {
        if self.tx.send(job).is_err() {
            warn!("call-orders worker gone: a call fact is not on its work order");
        }
    }

    /// The caller pressed the callback key, keeping place `position`.
    pub fn callback_requested(
        &self,
        seed: CallOrderSeed,
        position: u32,
        at: DateTime<FixedOffset>,
    ) {
        let call_id = seed.call.clone();
        self.send(Job::Open {
            seed,
            key: "callback",
            description: CALLBACK_DESCRIPTION,
            log: CallLog::CallbackRequested { call_id, position },
            at,
        });
    }

    /// One callback attempt ended (numbered by the worker, 1, 2, …).
    pub fn callback_attempt(
        &self,
        call: &CallId,
        agent: &str,
        result: CallAttemptResult,
        recording: Option<String>,
        at: DateTime<FixedOffset>,
    ) {
        self.send(Job::Attempt {
            call: call.clone(),
            agent: agent.to_string(),
            result,
            recording,
            at,
        });
    }

    /// The callback was given up after `attempts`.
    pub fn callback_gave_up(&self, call: &CallId, attempts: u32, at: DateTime<FixedOffset>) {
        self.send(Job::CallbackOver {
            call: call.clone(),
            gave_up: Some(attempts),
            at,
        });
    }

    /// The answered callback ended: the worker forgets the call.
    pub fn callback_completed(&self, call: &CallId, at: DateTime<FixedOffset>) {
        self.send(Job::CallbackOver {
            call: call.clone(),
            gave_up: None,
            at,
        });
    }

    /// A call placed from `order` itself (its callback call, H-11 / H-12-3) ended.
    pub fn order_call(&self, order: OrderId, log: CallLog, at: DateTime<FixedOffset>) {
        self.send(Job::Log { order, log, at });
    }

    /// Attended transfer: agent `from` handed the caller to agent `to`. Logged on the
    /// call's order if one was opened already (the agents open it: none is opened here,
    /// so the agent who took the call does not get a second one); the CDR's
    /// `transfers` has it in any case.
    pub fn transferred_to_agent(
        &self,
        seed: CallOrderSeed,
        from: Option<String>,
        to: String,
        at: DateTime<FixedOffset>,
    ) {
        let call_id = seed.call.clone();
        self.send(Job::Append {
            seed,
            log: CallLog::TransferredToAgent { call_id, from, to },
            at,
        });
    }

    /// An agent transferred the caller live to `unit`.
    pub fn transferred_to_unit(
        &self,
        seed: CallOrderSeed,
        unit: UnitId,
        agent: Option<String>,
        at: DateTime<FixedOffset>,
    ) {
        let call_id = seed.call.clone();
        self.send(Job::Open {
            seed,
            key: "transfer",
            description: TRANSFER_DESCRIPTION,
            log: CallLog::TransferredToUnit {
                call_id,
                unit,
                agent,
            },
            at,
        });
    }
}

/// Per call with a callback under way: what opens its order, the order once known, and
/// the attempts logged so far.
struct Pending {
    seed: CallOrderSeed,
    order: Option<OrderId>,
    attempts: u32,
}

async fn worker(
    store: Store,
    orders: Arc<OrdersContext>,
    province_center: UnitId,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut pending: HashMap<CallId, Pending> = HashMap::new();
    let writer = Writer {
        store: &store,
        orders: &orders,
        province_center: &province_center,
    };
    while let Some(job) = rx.recv().await {
        match job {
            Job::Open {
                seed,
                key,
                description,
                log,
                at,
            } => {
                let order = writer.order_for(&seed, key, description, at).await;
                if let Some(order) = &order {
                    writer.log(order, log, at).await;
                }
                if key == "callback" {
                    pending.insert(
                        seed.call.clone(),
                        Pending {
                            seed,
                            order,
                            attempts: 0,
                        },
                    );
                }
            }
            Job::Log { order, log, at } => writer.log(&order, log, at).await,
            Job::Append { seed, log, at } => match writer.existing_order(&seed).await {
                Some(order) => writer.log(&order, log, at).await,
                None => {
                    debug!(call = %seed.call.0, "no order for the call yet; the CDR has the fact")
                }
            },
            Job::Attempt {
                call,
                agent,
                result,
                recording,
                at,
            } => {
                let Some(p) = pending.get_mut(&call) else {
                    debug!(call = %call.0, "callback attempt of an unknown callback; not on an order");
                    continue;
                };
                p.attempts += 1;
                if p.order.is_none() {
                    p.order = writer
                        .order_for(&p.seed, "callback", CALLBACK_DESCRIPTION, at)
                        .await;
                }
                if let Some(order) = p.order.clone() {
                    let log = CallLog::CallbackAttempt {
                        call_id: call.clone(),
                        attempt: p.attempts,
                        agent,
                        result,
                        recording,
                    };
                    writer.log(&order, log, at).await;
                }
            }
            Job::CallbackOver { call, gave_up, at } => {
                let Some(p) = pending.remove(&call) else {
                    continue;
                };
                if let Some(attempts) = gave_up {
                    let order = match p.order {
                        Some(order) => Some(order),
                        None => {
                            writer
                                .order_for(&p.seed, "callback", CALLBACK_DESCRIPTION, at)
                                .await
                        }
                    };
                    if let Some(order) = order {
                        let log = CallLog::CallbackGaveUp {
                            call_id: call.clone(),
                            attempts,
                        };
                        writer.log(&order, log, at).await;
                    }
                }
            }
        }
    }
}

struct Writer<'a> {
    store: &'a Store,
    orders: &'a OrdersContext,
    province_center: &'a UnitId,
}

impl Writer<'_> {
    fn ctx<'a>(&'a self, calendar: &'a crate::calendar::Calendar) -> Context<'a> {
        Context {
            calendar,
            units: &self.orders.units,
            routing: &self.orders.routing,
        }
    }

    /// The order an agent (or this worker) opened with the call's id, if any.
    async fn existing_order(&self, seed: &CallOrderSeed) -> Option<OrderId> {
        let filter = OrderFilter {
            phone: Some(seed.caller.clone()),
            limit: 50,
            ..OrderFilter::default()
        };
        match self.store.list_orders(&filter).await {
            Ok((found, _)) => found
                .iter()
                .find(|o| o.fields.call_id.as_ref() == Some(&seed.call))
                .map(|o| o.id.clone()),
            Err(e) => {
                warn!(call = %seed.call.0, %e, "orders of the caller unreadable");
                None
            }
        }
    }

    /// The order of the call: one opened with its call id, else the one this worker
    /// opened before (idempotency key), else a new one. `None` (logged) on failure.
    async fn order_for(
        &self,
        seed: &CallOrderSeed,
        key: &str,
        description: &str,
        now: DateTime<FixedOffset>,
    ) -> Option<OrderId> {
        let filter = OrderFilter {
            phone: Some(seed.caller.clone()),
            limit: 50,
            ..OrderFilter::default()
        };
        match self.store.list_orders(&filter).await {
            Ok((found, _)) => {
                if let Some(order) = found
                    .iter()
                    .find(|o| o.fields.call_id.as_ref() == Some(&seed.call))
                {
                    return Some(order.id.clone());
                }
            }
            Err(e) => {
                warn!(call = %seed.call.0, %e, "orders of the caller unreadable");
                return None;
            }
        }
        let key = format!("{key}:{}", seed.call.0);
        match self.store.idempotent_order(IDEMPOTENCY_ACTOR, &key).await {
            Ok(Some((_, id))) => return Some(OrderId(id)),
            Ok(None) => {}
            Err(e) => {
                warn!(call = %seed.call.0, %e, "order of the call unreadable");
                return None;
            }
        }
        match self.create(seed, &key, description, now).await {
            Ok(id) => Some(id),
            Err(e) => {
                warn!(call = %seed.call.0, cause = %crate::logfmt::chain(&e), "no work order for the call");
                None
            }
        }
    }

    async fn create(
        &self,
        seed: &CallOrderSeed,
        key: &str,
        description: &str,
        now: DateTime<FixedOffset>,
    ) -> Result<OrderId, CallOrderError> {
        let city = seed
            .city
            .as_deref()
            .map(UnitId::new)
            .filter(|id| self.orders.units.get(id).is_some())
            .unwrap_or_else(|| self.province_center.clone());
        let fields = OrderFields {
            contact: Contact {
                name: String::new(),
                phone: seed.caller.clone(),
            },
            category: seed.category.into(),
            urgency: seed.urgency,
            description: description.to_owned(),
            remarks: format!("call {}", seed.call.0),
            channel: Channel::Phone,
            city: city.clone(),
            call_id: Some(seed.call.clone()),
            received_at: seed.received_at,
            ..OrderFields::default()
        };
        let calendar = self.orders.calendar.current();
        let ctx = self.ctx(&calendar);
        let actor = Actor::system(city);
        let (created, mut events) = apply(
            &Order::new(crate::orders::new_order_id(now)),
            Command::Create { fields },
            &actor,
            now,
            &ctx,
        )?;
        let (order, submitted) = apply(&created, Command::Submit, &actor, now, &ctx)?;
        events.extend(submitted);
        let body_hash = hex::encode(Sha256::digest(key.as_bytes()));
        let record = IdempotencyRecord {
            actor: IDEMPOTENCY_ACTOR,
            key,
            body_hash: &body_hash,
        };
        match self
            .store
            .append_order_events(&order, 0, &events, Some(record), now.timestamp_millis())
            .await
        {
            Ok(()) => {
                info!(order = %order.id, call = %seed.call.0, "call → work order");
                Ok(order.id)
            }
            Err(AppendError::IdempotencyKeyTaken) => {
                match self.store.idempotent_order(IDEMPOTENCY_ACTOR, key).await? {
                    Some((_, id)) => Ok(OrderId(id)),
                    None => Err(AppendError::IdempotencyKeyTaken.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Append one `call_logged` event (retried when another writer got there first).
    async fn log(&self, order: &OrderId, log: CallLog, at: DateTime<FixedOffset>) {
        for _ in 0..5 {
            match self.try_log(order, log.clone(), at).await {
                Ok(()) => {
                    debug!(order = %order, ?log, "call fact on the work order");
                    return;
                }
                Err(CallOrderError::Append(AppendError::Conflict)) => continue,
                Err(e) => {
                    warn!(order = %order, cause = %crate::logfmt::chain(&e), "call fact not on the work order");
                    return;
                }
            }
        }
        warn!(order = %order, "call fact not on the work order: the order kept changing");
    }

    async fn try_log(
        &self,
        id: &OrderId,
        log: CallLog,
        at: DateTime<FixedOffset>,
    ) -> Result<(), CallOrderError> {
        let order = self
            .store
            .load_order(&id.0)
            .await?
            .ok_or_else(|| CallOrderError::Missing(id.clone()))?;
        let actor = Actor::system(order.fields.city.clone());
        // The ledger never goes back in time: a fact reported after a later event (a
        // clock step, a slow worker) is written at that event's time.
        let at = order.last_event_at.map_or(at, |last| at.max(last));
        let calendar = self.orders.calendar.current();
        let (next, events) = apply(
            &order,
            Command::LogCall { call: log },
            &actor,
            at,
            &self.ctx(&calendar),
        )?;
        self.store
            .append_order_events(&next, order.version, &events, None, at.timestamp_millis())
            .await?;
        Ok(())
    }
}

/// Why a call fact could not be written.
#[derive(Debug, thiserror::Error)]
enum CallOrderError {
    #[error("the work-order rules refused")]
    Rules(#[from] crate::ticket::TransitionError),
    #[error("cannot record on the work order")]
    Append(#[from] AppendError),
    #[error("database")]
    Store(#[from] crate::store::StoreError),
    #[error("order {0} vanished")]
    Missing(OrderId),
}
