//! An order's callback call (H-11 / H-12-3 回拨解答): the callback clerk, or the agent or
//! unit replying, calls the order's contact back from the console, and the hotline
//! places the call — not a private phone:
//!
//! 1. the person's own registered phone (their agent extension) rings first, showing
//!    the number about to be called (masked for roles that may not see it);
//! 2. once they answer they hear hold music while the **order's stored contact number**
//!    is dialled through the outbound trunk ([`Dial::OrderContact`]: the number comes
//!    from the order, never from the request);
//! 3. the contact answers: both are bridged and recorded in stereo like any call (the
//!    contact left, the person right) until either hangs up.
//!
//! Each call is a call record (path `order_callback`, the person's extension as its
//! agent, the recording: playable through `GET /api/recordings/{call_id}` with that
//! route's rules and audit) and, once the contact was dialled, one `call_logged`
//! `order_callback` event on the order: who, when, the outcome (answered / no answer
//! / busy / failed), the seconds talked and the recording's URL. While it runs the
//! console reads its state from [`OrderCalls::progress`] (ringing your phone → calling
//! the caller → connected → ended with its outcome).
//!
//! A person signed in to a queue is paused (reason `order-callback`) while the call
//! runs, and made available again after it, so that no queue call is offered to a
//! phone that is busy calling back; one ringing or talking on a queue call is refused.
//!
//! The legs, relay and recording are the callback-in-queue's ([`TwoLegs`]); what
//! differs is who asks (a person from an order, not the ACD) and where the facts go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::call::placed::{PlacedCall, PlacedEnd, PlacedInput, PlacedOutput};
use crate::ivr::cdr::{CallDetailRecord, CallPath, HangupParty};
use crate::queue::{AgentState, Party, PauseReason, QueueInput};
use crate::server::calls::MediaContext;
use crate::server::outbound::{Dial, DialPermit, OutboundRefused};
use crate::server::outleg::{PlaceError, TwoLegs, Wake, lost_audio};
use crate::server::sip::SipShell;
use crate::sip::call_leg::LegEvent;
use crate::ticket::model::{CallAttemptResult, CallId, CallLog};
use crate::ticket::{Order, OrderId};

/// The pause reason of a queue agent while their order callback call runs.
pub const PAUSE_REASON: &str = "order-callback";

/// How long the person's own phone rings before the call is given up.
const PHONE_RING: Duration = Duration::from_secs(30);
/// How long the contact's phone rings.
const CONTACT_RING: Duration = Duration::from_secs(45);
/// Ended calls are shown (to a console polling the order) this long.
const KEEP_ENDED: Duration = Duration::from_secs(3600);

/// Where an order's callback call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// The person's own phone rings.
    RingingPhone,
    /// They answered; the contact's phone rings.
    CallingCaller,
    /// The contact answered: they talk.
    Connected,
    /// Over: see the outcome.
    Ended,
}

/// How an order's callback call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The contact answered and talked.
    Answered,
    /// The contact's phone rang out, or the person hung up first.
    NoAnswer,
    /// The contact was busy.
    Busy,
    /// The contact's leg failed (network, refused number, media).
    Failed,
    /// The person's own phone did not answer: nobody was dialled.
    PhoneNotAnswered,
}

impl CallOutcome {
    fn of(result: CallAttemptResult) -> CallOutcome {
        match result {
            CallAttemptResult::Answered => CallOutcome::Answered,
            CallAttemptResult::NoAnswer => CallOutcome::NoAnswer,
            CallAttemptResult::Busy => CallOutcome::Busy,
            CallAttemptResult::Unreachable => CallOutcome::Failed,
        }
    }
}

/// An order's callback call as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CallProgress {
    /// The call's id (its call record and recording).
    pub call_id: String,
    /// The user who placed it.
    pub by: String,
    /// The extension rung first.
    pub phone: String,
    pub state: CallState,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<FixedOffset>,
    /// Set once ended.
    pub outcome: Option<CallOutcome>,
    /// Seconds the contact was on the line, once ended.
    pub talk_secs: Option<u64>,
    /// Where the recording plays, once there is one.
    pub recording_url: Option<String>,
    #[serde(skip)]
    ended_at: Option<Instant>,
}

/// Who asks for the call, from which order.
#[derive(Debug, Clone)]
pub struct OrderCallRequest<'a> {
    /// The order as stored: its contact number is the one dialled.
    pub order: &'a Order,
    /// The user asking.
    pub user_id: &'a str,
    /// Their name (for the order's history).
    pub user_name: &'a str,
    /// Their phone: the agent extension they registered.
    pub phone: &'a str,
    /// What their phone shows as the caller (the number, masked unless they may see it).
    pub display: &'a str,
}

/// Why an order's callback call is not placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderCallRefused {
    /// No outbound trunk is configured.
    #[error("no outbound trunk is configured: the hotline cannot call out")]
    NoTrunk,
    /// The order's number may not be dialled.
    #[error("the order's number cannot be called: {0}")]
    Number(OutboundRefused),
    /// The person's extension has no registration.
    #[error("no phone is registered for extension {0}: sign your phone in first")]
    NoPhone(String),
    /// The person's phone is ringing or talking: a queue call, or another order's
    /// callback call.
    #[error("extension {0} is on another call")]
    PhoneBusy(String),
    /// A callback call of this order is running.
    #[error("a callback call of this order is already running ({0})")]
    InProgress(String),
    /// The server could not place the leg.
    #[error("the call could not be placed: {0}")]
    Unavailable(PlaceError),
}

/// The order callback calls of the server (see the module docs).
pub struct OrderCalls {
    shell: Weak<SipShell>,
    ctx: Arc<MediaContext>,
    calls: Mutex<HashMap<OrderId, CallProgress>>,
}

impl std::fmt::Debug for OrderCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderCalls").finish_non_exhaustive()
    }
}

impl OrderCalls {
    /// The service for `shell`'s endpoint and media.
    #[must_use]
    pub fn new(shell: &Arc<SipShell>, ctx: Arc<MediaContext>) -> Arc<OrderCalls> {
        Arc::new(OrderCalls {
            shell: Arc::downgrade(shell),
            ctx,
            calls: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the hotline can call out at all.
    #[must_use]
    pub fn has_trunk(&self) -> bool {
        self.ctx.outbound.has_trunk()
    }

    /// The order's running call, or its last one (kept an hour after its end).
    #[must_use]
    pub fn progress(&self, order: &OrderId) -> Option<CallProgress> {
        self.calls.lock().ok()?.get(order).cloned()
    }

    fn update(&self, order: &OrderId, change: impl FnOnce(&mut CallProgress)) {
        if let Ok(mut calls) = self.calls.lock()
            && let Some(progress) = calls.get_mut(order)
        {
            change(progress);
        }
    }

    /// Check the request, ring the person's phone and start the call's task.
    ///
    /// # Errors
    /// See [`OrderCallRefused`].
    pub async fn start(
        self: &Arc<Self>,
        request: OrderCallRequest<'_>,
    ) -> Result<CallProgress, OrderCallRefused> {
        let permit = self
            .ctx
            .outbound
            .permit(Dial::OrderContact(request.order))
            .map_err(|e| match e {
                OutboundRefused::NoTrunk => OrderCallRefused::NoTrunk,
                other => OrderCallRefused::Number(other),
            })?;
        let shell = self
            .shell
            .upgrade()
            .ok_or(OrderCallRefused::Unavailable(PlaceError::Endpoint))?;
        let now = Instant::now();
        let phone = request.phone.to_owned();
        let contact = shell
            .drive(|ep| ep.agent_contacts(now, std::slice::from_ref(&phone)))
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or_else(|| OrderCallRefused::NoPhone(phone.clone()))?;
        let agent = crate::queue::AgentId::new(phone.clone());
        let queue_state = self
            .ctx
            .acd
            .as_ref()
            .and_then(|acd| acd.agent_state(&agent));
        if matches!(
            queue_state,
            Some(AgentState::Ringing { .. } | AgentState::OnCall { .. })
        ) {
            return Err(OrderCallRefused::PhoneBusy(phone));
        }
        let order = request.order.id.clone();
        let call_id = format!("ordercall-{:016x}", rand::random::<u64>());
        let progress = CallProgress {
            call_id: call_id.clone(),
            by: request.user_id.to_owned(),
            phone: phone.clone(),
            state: CallState::RingingPhone,
            started_at: self.ctx.clock.now(),
            outcome: None,
            talk_secs: None,
            recording_url: None,
            ended_at: None,
        };
        {
            let mut calls = self
                .calls
                .lock()
                .map_err(|_| OrderCallRefused::Unavailable(PlaceError::Endpoint))?;
            calls.retain(|_, p| {
                p.ended_at
                    .is_none_or(|t| now.duration_since(t) < KEEP_ENDED)
            });
            if let Some(running) = calls.get(&order).filter(|p| p.state != CallState::Ended) {
                return Err(OrderCallRefused::InProgress(running.call_id.clone()));
            }
            // One phone places one call at a time (another order's, here).
            if calls
                .values()
                .any(|p| p.state != CallState::Ended && p.phone == phone)
            {
                return Err(OrderCallRefused::PhoneBusy(phone));
            }
            calls.insert(order.clone(), progress.clone());
        }
        // While the call runs the queue offers this agent nothing.
        let paused = queue_state == Some(AgentState::Available) && self.pause(&agent);
        let mut legs = TwoLegs::new(call_id.clone());
        if let Err(e) = legs
            .ring_agent(
                &shell,
                &self.ctx,
                now,
                &contact,
                request.display,
                PHONE_RING,
            )
            .await
        {
            if let Ok(mut calls) = self.calls.lock() {
                calls.remove(&order);
            }
            if paused {
                self.unpause(&agent);
            }
            return Err(OrderCallRefused::Unavailable(e));
        }
        info!(call = %call_id, %order, user = %request.user_id, %phone, "order callback: ringing the person's phone");
        let mut core = PlacedCall::new(PHONE_RING, CONTACT_RING);
        core.handle(now, PlacedInput::Start);
        // Its first output, ringing the person, was carried out just above.
        while core.poll_output().is_some() {}
        let task = OrderCall {
            service: self.clone(),
            shell,
            order,
            city: request.order.fields.city.as_str().to_owned(),
            call_id,
            by: request.user_id.to_owned(),
            by_name: request.user_name.to_owned(),
            phone,
            permit,
            legs,
            paused: paused.then_some(agent),
            started: progress.started_at,
            core,
            answered: None,
            dialled: false,
            outcome: None,
            who_hung_up: None,
        };
        tokio::spawn(task.run());
        Ok(progress)
    }

    /// Pause `agent` in the queue for the call; whether it was paused.
    fn pause(&self, agent: &crate::queue::AgentId) -> bool {
        let Some(acd) = &self.ctx.acd else {
            return false;
        };
        let input = QueueInput::Pause {
            agent: agent.clone(),
            reason: PauseReason::new(PAUSE_REASON),
        };
        match acd.input(input) {
            Ok(()) => true,
            Err(e) => {
                warn!(%agent, %e, "order callback: the agent could not be paused in the queue");
                false
            }
        }
    }

    /// Make `agent` available again, unless they paused (or signed out) themselves since.
    fn unpause(&self, agent: &crate::queue::AgentId) {
        let Some(acd) = &self.ctx.acd else {
            return;
        };
        let ours = AgentState::Paused {
            reason: PauseReason::new(PAUSE_REASON),
        };
        if acd.agent_state(agent) == Some(ours)
            && let Err(e) = acd.input(QueueInput::Unpause {
                agent: agent.clone(),
            })
        {
            warn!(%agent, %e, "order callback: the agent could not be made available again");
        }
    }
}

/// One running call.
struct OrderCall {
    service: Arc<OrderCalls>,
    shell: Arc<SipShell>,
    order: OrderId,
    city: String,
    call_id: String,
    by: String,
    by_name: String,
    phone: String,
    permit: DialPermit,
    /// What the call does next, decided sans-IO (`crate::call::placed`).
    core: PlacedCall,
    legs: TwoLegs,
    /// The queue agent paused for the call (made available again at its end).
    paused: Option<crate::queue::AgentId>,
    started: DateTime<FixedOffset>,
    /// When the contact answered (wall time, and the monotonic instant).
    answered: Option<(DateTime<FixedOffset>, Instant)>,
    /// Whether the contact was dialled.
    dialled: bool,
    outcome: Option<CallAttemptResult>,
    who_hung_up: Option<HangupParty>,
}

impl OrderCall {
    fn ctx(&self) -> &MediaContext {
        &self.service.ctx
    }

    async fn run(mut self) {
        while !self.core.is_over() {
            let core_due = self
                .core
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                wake = self.legs.wait() => match wake {
                    Wake::Event(leg, event) => self.on_event(Instant::now(), leg, event).await,
                    Wake::Timers { agent, caller, .. } => {
                        // Ring timeouts and the longest call are the core's own timers.
                        let now = Instant::now();
                        for lost in lost_audio(agent, caller) {
                            self.feed(now, lost).await;
                        }
                        self.core.handle_timeout(now);
                        self.carry_out(now).await;
                    }
                    Wake::Closed => self.feed(Instant::now(), PlacedInput::Withdraw).await,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(core_due)) => {
                    let now = Instant::now();
                    self.core.handle_timeout(now);
                    self.carry_out(now).await;
                }
            }
        }
        self.finish(Instant::now()).await;
    }

    fn set_state(&self, state: CallState) {
        self.service.update(&self.order, |p| p.state = state);
    }

    async fn feed(&mut self, now: Instant, input: PlacedInput) {
        self.core.handle(now, input);
        self.carry_out(now).await;
    }

    async fn carry_out(&mut self, now: Instant) {
        while let Some(output) = self.core.poll_output() {
            let answer = match output {
                // Rung by `start`, which answers the console at once.
                PlacedOutput::RingPerson => None,
                // Nobody else holds this person: go on.
                PlacedOutput::PersonOn => Some(PlacedInput::Proceed),
                PlacedOutput::HoldPerson => {
                    self.legs.hold(&self.service.ctx, now);
                    None
                }
                PlacedOutput::DialOther => self.dial_contact(now).await,
                PlacedOutput::Bridge => self.bridge(now),
                PlacedOutput::HangUp(side) => {
                    self.legs.hang_up(&self.shell, now, side.into());
                    None
                }
                PlacedOutput::Ended(how) => {
                    self.ended(how);
                    None
                }
            };
            if let Some(input) = answer {
                self.core.handle(now, input);
            }
        }
    }

    async fn dial_contact(&mut self, now: Instant) -> Option<PlacedInput> {
        let dialled = self
            .legs
            .dial_caller(
                &self.shell,
                &self.service.ctx,
                now,
                &self.permit,
                CONTACT_RING,
            )
            .await;
        self.dialled = true;
        if let Err(e) = dialled {
            warn!(call = %self.call_id, %e, "order callback: the contact was not dialled");
            return Some(PlacedInput::OtherNotPlaced);
        }
        info!(
            call = %self.call_id,
            order = %self.order,
            number = %crate::ticket::privacy::mask_phone(self.permit.number()),
            "order callback: the phone answered; dialling the order's contact through the trunk"
        );
        self.set_state(CallState::CallingCaller);
        None
    }

    fn bridge(&mut self, now: Instant) -> Option<PlacedInput> {
        let ctx = self.service.ctx.clone();
        if !self.legs.bridge(&ctx, now, &self.call_id) {
            return Some(PlacedInput::BridgeFailed);
        }
        self.answered = Some((ctx.clock.now(), now));
        let url = self
            .legs
            .recording
            .as_ref()
            .map(|_| crate::orders::recording_url(&self.call_id));
        self.service.update(&self.order, |p| {
            p.state = CallState::Connected;
            p.recording_url = url;
        });
        info!(call = %self.call_id, order = %self.order, "order callback: the contact answered; bridged");
        None
    }

    fn ended(&mut self, how: PlacedEnd) {
        info!(call = %self.call_id, end = ?how, "order callback: call over");
        let (outcome, who) = match how {
            PlacedEnd::PersonFailed(_) | PlacedEnd::Withdrawn => (None, None),
            PlacedEnd::OtherFailed(result) => (Some(result.into()), None),
            PlacedEnd::PersonLeft => (Some(CallAttemptResult::NoAnswer), Some(HangupParty::Agent)),
            PlacedEnd::Talked { who } => (
                Some(CallAttemptResult::Answered),
                Some(match who {
                    Party::Agent => HangupParty::Agent,
                    Party::Caller => HangupParty::Caller,
                    Party::System => HangupParty::System,
                }),
            ),
        };
        self.outcome = outcome;
        self.who_hung_up = who;
    }

    async fn on_event(
        &mut self,
        now: Instant,
        leg: crate::sip::endpoint::CallHandle,
        event: LegEvent,
    ) {
        let Some(side) = self.legs.side_of(leg) else {
            debug!(call = %self.call_id, ?event, "order callback: event of an unknown leg");
            return;
        };
        let media_timeout = self.ctx().media_timeout;
        if let Some(input) = self
            .legs
            .placed_input(&self.shell, now, side, event, media_timeout)
        {
            self.feed(now, input).await;
        }
    }

    /// Let the legs go, then write the call record and the order's history.
    async fn finish(self, now: Instant) {
        let OrderCall {
            service,
            shell,
            order,
            city,
            call_id,
            by,
            by_name,
            phone,
            permit,
            legs,
            paused,
            started,
            answered,
            dialled,
            outcome,
            who_hung_up,
            ..
        } = self;
        let recording = legs.recording.clone();
        legs.finish(&shell, &service.ctx, now);
        if let Some(agent) = &paused {
            service.unpause(agent);
        }
        let ctx = &service.ctx;
        let ended = ctx.clock.now();
        let talk_secs = answered.map_or(0, |(_, at)| now.saturating_duration_since(at).as_secs());
        let outcome_shown = match (dialled, outcome) {
            (false, _) => CallOutcome::PhoneNotAnswered,
            (true, Some(result)) => CallOutcome::of(result),
            (true, None) => CallOutcome::Failed,
        };
        let recording_url = recording
            .as_ref()
            .map(|_| crate::orders::recording_url(&call_id));
        service.update(&order, |p| {
            p.state = CallState::Ended;
            p.outcome = Some(outcome_shown);
            p.talk_secs = Some(talk_secs);
            p.recording_url.clone_from(&recording_url);
            p.ended_at = Some(now);
        });
        info!(call = %call_id, %order, outcome = %crate::logfmt::word(&outcome_shown), talk_secs, "order callback: ended");
        if !dialled {
            return;
        }
        let record = CallDetailRecord {
            call_id: call_id.clone(),
            caller: permit.number().to_owned(),
            dialled: permit.number().to_owned(),
            arrival: started,
            ivr_answer: None,
            queue_entry: None,
            agent_answer: answered.map(|(at, _)| at),
            end: Some(ended),
            city: Some(crate::ivr::city::CityId::new(city)),
            city_resolved_by: None,
            category: None,
            urgency: None,
            path: vec![CallPath::OrderCallback],
            hung_up_first: who_hung_up,
            agent: Some(phone.clone()),
            recordings: recording.iter().map(|p| p.display().to_string()).collect(),
            work_order: Some(order.0.clone()),
            survey: None,
            transfers: Vec::new(),
            end_reason: None,
            agent_failures: Vec::new(),
        };
        ctx.store_call_record(&call_id, &record, None).await;
        if let Some(orders) = ctx.call_orders() {
            let log = CallLog::OrderCallback {
                call_id: CallId(call_id),
                by,
                by_name,
                phone,
                result: outcome.unwrap_or(CallAttemptResult::Unreachable),
                talk_secs,
                recording_url,
            };
            orders.order_call(order, log, ended);
        }
    }
}
