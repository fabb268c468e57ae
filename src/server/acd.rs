//! The ACD in the shell: one [`Acd`] (sans-IO, `src/queue`) behind a short std mutex,
//! fed by the call tasks (calls arriving, agent legs, hang-ups), the registrar (binding
//! changes reported by [`crate::server::sip::SipShell::drive`]), feature codes and the
//! API; a timer task fires its timeouts, reconciles live legs and registrations.
//!
//! Its actions go to the call task that owns the call ([`AcdCommand`] through the
//! call's channel), to the `queue_log` table, and to the consoles' event stream
//! ([`ConsoleEvent`], `GET /api/events`).
//!
//! Feature codes: an authenticated agent's INVITE to `*11` (sign in), `*12` (sign out),
//! `*13[digits]` (pause, digits = reason) or `*14` (unpause) is answered 200 with a
//! short confirmation tone and then BYE (the softphone shows a normal short call); a
//! code the ACD refuses (not a queue agent) gets 403 Forbidden. Feature codes are
//! authenticated by digest even from a trunk's address.
//!
//! Live legs for the reconcile: a leg counts from the moment the ACD asks for it
//! (`RingAgent`) until the call task reports its end or the task itself ends, so an
//! agent whose leg vanished without a report is freed within [`RECONCILE_EVERY`].
//!
//! Callback in queue (`CALL-CALLBACK`): the call task routes the queue's callback key
//! (`callback_digit`, e.g. `*`) to the ACD as `CallbackRequested` (only when an outbound
//! trunk is configured; the position announcement then offers it), records the caller's
//! number for the outbound rule and the request on the work order, plays the
//! confirmation and hangs up; the call keeps its place (`Inner::callbacks`: the
//! inbound task ending no longer ends the call). On `PlaceCallback` (an agent is
//! reserved) this shell starts one attempt task ([`crate::server::callback`]): the
//! agent's phone first, then the caller through the trunk, bridged and recorded; its
//! outcome goes back to the ACD (retries, give-up) and onto the work order
//! ([`crate::server::call_orders`]).
//!
//! Transfers (`CALL-TRANSFER`): REFER targets are parsed by one function,
//! [`AcdShell::transfer_target`] (= [`crate::queue::TransferTarget::parse`] with the
//! units' numbers); a transfer to a unit is released by the ACD and carried out by the
//! call task ([`AcdCommand::ToUnit`]): the unit's configured number through the trunk,
//! bridged to the caller, the transfer on the work order.
//!
//! Ring-all: the call task rings every offered agent in parallel (`calls/ring_all.rs`).
//! Attended transfer: a consultation call holds the consulted agent
//! (`QueueInput::DirectCall`), and the transfer moves the call to them
//! (`QueueInput::AttendedTransfer`, `calls/attended.rs`).
//!
//! Why a mutex and not a task with a channel: every input is short and synchronous,
//! the API needs snapshots with no round trip, and the lock is never held across an
//! `.await` nor while a call task runs.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use crate::clock::WallClock;
use crate::ivr::city::CityId;
use crate::queue::{
    Acd, AgentId, AgentState, QueueAction, QueueError, QueueInput, QueueLogEntry, QueueSnapshot,
    QueuesConfig, Time, TransitionReason,
};
use crate::server::sip::SipShell;
use crate::store::Store;
use crate::ticket::model::CallId;

/// How often the legs the call tasks hold and the registrations are reconciled.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// What the ACD asks of the call task that owns a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcdCommand {
    /// Hold music (loop).
    HoldMusic,
    /// Position announcement over the hold music (then hold music again).
    Announce { position: u32 },
    /// "Please hold", then hold music again.
    PleaseHold,
    /// Cut any announcement (an agent answered).
    StopAnnouncement,
    /// Ring this agent (the call task dials its registered contacts).
    Ring { agent: AgentId },
    /// Cancel the ringing leg to this agent; the ACD already counts it gone.
    CancelRing { agent: AgentId },
    /// Bridge to this agent (the call task bridges at the answer already).
    Bridge { agent: AgentId },
    /// Hang up this agent's leg (an answer that crossed a cancel).
    HangupAgent { agent: AgentId },
    /// The caller's callback is registered: confirm and hang up.
    CallbackRegistered { position: u32 },
    /// The agent transferred the caller to this unit's outside number: dial it through
    /// the trunk and bridge (the ACD is done with the call).
    ToUnit { unit: crate::ticket::units::UnitId },
    /// The call moved to another city's queue.
    Overflowed { to: CityId },
    /// Nobody can take the call now: say why, take a voice message (as after hours)
    /// and end the call.
    VoiceMessage {
        reason: crate::queue::VoiceMessageReason,
    },
    /// The agent transferred the caller to the satisfaction survey.
    Survey,
    /// Blind-transfer the bridged caller as the agent's REFER would
    /// (`POST /api/calls/{id}/transfer`); the call task answers on `reply`.
    Transfer {
        to: crate::queue::TransferTarget,
        reply: crate::server::transfer::TransferReply,
    },
}

/// What consoles see on `GET /api/events`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConsoleEvent {
    /// An agent changed state.
    AgentState {
        agent: String,
        city: Option<String>,
        from: String,
        to: String,
        reason: String,
        at: String,
        /// The call of a ringing / on-call agent.
        call: Option<String>,
        /// When wrap-up ends (RFC 3339), in wrap-up.
        until: Option<String>,
    },
    /// A call is offered to an agent (screen-pop).
    CallOffered {
        call_id: String,
        agent: String,
        caller_masked: String,
        city: Option<String>,
        category: String,
        urgency: String,
        draft_order_id: Option<String>,
        previous_orders: Vec<String>,
    },
    /// Something happened in a queue (overflow, voice message, absent, offline, …).
    Queue {
        city: Option<String>,
        call_id: Option<String>,
        event: String,
    },
}

impl ConsoleEvent {
    /// The SSE `event:` name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::AgentState { .. } => "agent_state",
            Self::CallOffered { .. } => "call_offered",
            Self::Queue { .. } => "queue",
        }
    }
}

/// Why an ACD input from the API or a feature code was refused.
#[derive(Debug, thiserror::Error)]
pub enum AcdShellError {
    #[error("the ACD refused: {0}")]
    Queue(#[from] QueueError),
    #[error("the ACD is unavailable")]
    Poisoned,
}

struct Inner {
    acd: Acd,
    /// The call task of each call in the ACD.
    calls: HashMap<CallId, mpsc::UnboundedSender<AcdCommand>>,
    /// Agent legs the call tasks hold (`(call, agent)`), for [`QueueInput::LiveLegs`].
    legs: BTreeSet<(CallId, AgentId)>,
    /// Agents the registrar had a live binding for at the last check.
    registered: BTreeSet<AgentId>,
    /// Calls whose caller asked for a callback: their inbound task ending means
    /// nothing to the ACD any more (callback tasks own them).
    callbacks: BTreeSet<CallId>,
}

/// The shared ACD of the server.
pub struct AcdShell {
    /// Itself, for the callback tasks it starts.
    me: Weak<AcdShell>,
    inner: Mutex<Inner>,
    clock: WallClock,
    store: Option<Store>,
    events: broadcast::Sender<ConsoleEvent>,
    wake: tokio::sync::Notify,
    /// Agent → city, for events.
    cities: HashMap<AgentId, CityId>,
    agents: Vec<AgentId>,
    /// Agent → display name (`[[agents]] name`).
    names: HashMap<AgentId, String>,
    sip: Mutex<Weak<SipShell>>,
    /// Started at the first row (inside the runtime).
    queue_log: std::sync::OnceLock<crate::server::queue_log_writer::QueueLogWriter>,
    /// Where answers, abandons and waits are counted (set by `serve`).
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
    /// The calendar in force, reloaded when its file changes: fed to the ACD when it
    /// does ([`AcdShell::follow_calendar`]).
    calendar: crate::calendar::SharedCalendar,
}

impl std::fmt::Debug for AcdShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcdShell").finish_non_exhaustive()
    }
}

impl AcdShell {
    /// The ACD of `config`, every agent logged out and unregistered; its duty rosters
    /// follow `calendar` (a [`crate::calendar::SharedCalendar`] the server reloads, or
    /// a fixed [`crate::calendar::Calendar`]).
    ///
    /// # Errors
    /// The queue configuration is inconsistent.
    pub fn new(
        config: QueuesConfig,
        calendar: impl Into<crate::calendar::SharedCalendar>,
        clock: WallClock,
        store: Option<Store>,
        names: HashMap<AgentId, String>,
    ) -> Result<Arc<AcdShell>, crate::queue::QueueConfigError> {
        let cities = config
            .agents
            .iter()
            .map(|a| (a.id.clone(), a.city.clone()))
            .collect();
        let agents = config.agents.iter().map(|a| a.id.clone()).collect();
        let calendar = calendar.into();
        let acd = Acd::new(config, calendar.current(), clock.now(), rand::random())?;
        let (events, _) = broadcast::channel(1024);
        Ok(Arc::new_cyclic(|me| AcdShell {
            me: me.clone(),
            inner: Mutex::new(Inner {
                acd,
                calls: HashMap::new(),
                legs: BTreeSet::new(),
                registered: BTreeSet::new(),
                callbacks: BTreeSet::new(),
            }),
            clock,
            store,
            events,
            wake: tokio::sync::Notify::new(),
            cities,
            agents,
            names,
            sip: Mutex::new(Weak::new()),
            queue_log: std::sync::OnceLock::new(),
            metrics: std::sync::OnceLock::new(),
            calendar,
        }))
    }

    /// Feeds the ACD the calendar in force when it is not the one the ACD has: the
    /// server reloads the calendar file when it changes (`hotline calendar add-year`,
    /// [`crate::server::reminders::reload_calendar`]) and the duty rosters follow it
    /// without a restart. Called on every pass of the timer loop (at most
    /// [`RECONCILE_EVERY`] apart).
    pub fn follow_calendar(&self) {
        let current = self.calendar.current();
        let fed = self
            .inner
            .lock()
            .map(|i| Arc::ptr_eq(i.acd.calendar(), &current))
            .unwrap_or(true);
        if !fed {
            info!(
                years = ?current.loaded_years(),
                "the duty rosters follow the calendar reloaded"
            );
            let _ = self.input(QueueInput::CalendarChanged(current));
        }
    }

    /// Count queue answers, abandons and waits in `metrics` from now on.
    pub fn count_in(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Start the timer/reconcile task once the SIP shell exists.
    pub fn start(self: &Arc<Self>, sip: &Arc<SipShell>, shutdown: crate::shutdown::Shutdown) {
        if let Ok(mut s) = self.sip.lock() {
            *s = Arc::downgrade(sip);
        }
        tokio::spawn(self.clone().timer_loop(shutdown));
    }

    /// Whether `agent` is a queue agent.
    #[must_use]
    pub fn knows_agent(&self, agent: &str) -> bool {
        self.cities.contains_key(&AgentId::new(agent))
    }

    /// An agent's display name (the id when none is configured).
    #[must_use]
    pub fn agent_name(&self, agent: &AgentId) -> String {
        self.names
            .get(agent)
            .cloned()
            .unwrap_or_else(|| agent.0.clone())
    }

    /// The city of a queue agent.
    #[must_use]
    pub fn agent_city(&self, agent: &AgentId) -> Option<&CityId> {
        self.cities.get(agent)
    }

    /// The ACD's wall clock (shifted by `HOTLINE_FAKE_NOW` in tests).
    #[must_use]
    pub fn now(&self) -> Time {
        self.clock.now()
    }

    /// Subscribe to console events.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<ConsoleEvent> {
        self.events.subscribe()
    }

    /// Live state of every queue.
    #[must_use]
    pub fn snapshots(&self) -> Vec<QueueSnapshot> {
        let now = self.clock.now();
        self.inner
            .lock()
            .map(|i| i.acd.snapshots(now))
            .unwrap_or_default()
    }

    /// One agent's state.
    #[must_use]
    pub fn agent_state(&self, agent: &AgentId) -> Option<AgentState> {
        self.inner
            .lock()
            .ok()
            .and_then(|i| i.acd.agent_state(agent).cloned())
    }

    /// The queue (city) of a call the ACD holds, and the agent bridged to it if any.
    #[must_use]
    pub fn call_parties(&self, call: &CallId) -> Option<(CityId, Option<AgentId>)> {
        let inner = self.inner.lock().ok()?;
        let city = inner.acd.queue_of(call)?.clone();
        let agent = inner
            .acd
            .agent_states()
            .into_iter()
            .find(|(_, state)| matches!(state, AgentState::OnCall { call: c } if c == call))
            .map(|(agent, _)| agent);
        Some((city, agent))
    }

    /// Ask the task of `call` to blind-transfer it (the same transfer as an agent's
    /// REFER); the answer arrives on the returned receiver. `None` when no call task
    /// holds that call.
    #[must_use]
    pub fn request_transfer(
        &self,
        call: &CallId,
        to: crate::queue::TransferTarget,
    ) -> Option<tokio::sync::oneshot::Receiver<crate::server::transfer::TransferResult>> {
        let tx = self.inner.lock().ok()?.calls.get(call).cloned()?;
        let (reply, rx) = crate::server::transfer::TransferReply::channel();
        tx.send(AcdCommand::Transfer { to, reply }).ok()?;
        Some(rx)
    }

    /// The callback key of the queue `call` waits in, while its caller listens to the
    /// queue (`[[queues.queue]] callback_digit`); `None` otherwise.
    #[must_use]
    pub fn callback_key(&self, call: &CallId) -> Option<char> {
        self.inner
            .lock()
            .ok()
            .and_then(|i| i.acd.callback_key(call))
    }

    /// A callback task is over: forget its command channel, unless a newer attempt
    /// of the same call registered its own meanwhile.
    pub(crate) fn callback_task_ended(
        &self,
        call: &CallId,
        tx: &mpsc::UnboundedSender<AcdCommand>,
    ) {
        if let Ok(mut inner) = self.inner.lock()
            && inner.calls.get(call).is_some_and(|t| t.same_channel(tx))
        {
            inner.calls.remove(call);
        }
    }

    /// After a callback attempt's last report: a callback the ACD no longer holds
    /// (answered and ended) is forgotten.
    pub(crate) fn callback_settled(&self, call: &CallId) {
        if let Ok(mut inner) = self.inner.lock()
            && inner.acd.queue_of(call).is_none()
        {
            inner.callbacks.remove(call);
        }
    }

    /// Calls whose caller asked for a callback and that the ACD still holds.
    #[must_use]
    pub fn callbacks_pending(&self) -> usize {
        self.inner.lock().map(|i| i.callbacks.len()).unwrap_or(0)
    }

    /// Parse a transfer address (`survey`, a city id, `unit-<id>`, a unit's number)
    /// with the one parser, [`crate::queue::TransferTarget::parse`], and check that a
    /// unit transfer can be dialled ([`crate::server::outbound::Outbound::transfer_target`]).
    /// For REFER and the transfer API alike; without a running SIP shell no number is
    /// a unit's.
    ///
    /// # Errors
    /// Not a transfer address, or a unit the outbound rule cannot dial.
    pub fn transfer_target(
        &self,
        user: &str,
    ) -> Result<crate::queue::TransferTarget, crate::server::outbound::TransferRefused> {
        match self.media() {
            Some((_, media)) => media.outbound.transfer_target(user),
            // No SIP shell, no outbound leg: a unit cannot be dialled.
            None => match crate::queue::TransferTarget::parse(user, |_| None)? {
                crate::queue::TransferTarget::Unit(_) => {
                    Err(crate::server::outbound::OutboundRefused::NoTrunk.into())
                }
                target => Ok(target),
            },
        }
    }

    /// The place of a call in its queue (1 = next).
    #[must_use]
    pub fn position(&self, call: &CallId) -> Option<u32> {
        self.inner.lock().ok().and_then(|i| i.acd.position(call))
    }

    fn media(&self) -> Option<(Arc<SipShell>, Arc<crate::server::calls::MediaContext>)> {
        let sip = self.sip.lock().ok().and_then(|s| s.upgrade())?;
        let media = sip.calls().media().clone();
        Some((sip, media))
    }

    /// The ACD reserved `agent` for a callback of `call`: start the attempt (agent
    /// first, then the caller through the trunk, [`crate::server::callback`]). Without
    /// a running SIP shell the attempt fails at once.
    fn place_callback(&self, call: CallId, agent: AgentId, number: String) {
        let ring = self
            .inner
            .lock()
            .ok()
            .and_then(|i| {
                let city = i.acd.queue_of(&call)?.clone();
                i.acd.queue_config(&city).map(|q| q.callback_ring_secs)
            })
            .unwrap_or(30);
        let (Some(me), Some((sip, media))) = (self.me.upgrade(), self.media()) else {
            warn!(call = %call.0, %agent, "no SIP shell: the callback attempt fails");
            let _ = self.input(QueueInput::AgentLegFailed {
                call,
                agent,
                reason: crate::queue::LegFailure::Unreachable,
            });
            return;
        };
        // The leg counts as held from now; the attempt's commands go to its task.
        self.leg_held(&call, &agent, true);
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut inner) = self.inner.lock() {
            inner.calls.insert(call.clone(), tx.clone());
        }
        let job = crate::server::callback::CallbackJob {
            call,
            agent,
            number,
            caller_ring: Duration::from_secs(ring),
        };
        crate::server::callback::spawn(me, sip, media, job, tx, rx);
    }

    /// Sign in (and pause) again every agent whose durable log says it was signed in
    /// (and paused) when the server stopped, cleanly or not; returns how many.
    pub async fn restore_presence(&self) -> usize {
        use crate::queue::QueueLogEvent;
        use crate::store::queue_log::PresenceRow;
        let Some(store) = self.store.clone() else {
            return 0;
        };
        let mut restored = 0;
        for agent in &self.agents {
            let signed_in = match store
                .agent_last_presence(agent, PresenceRow::SignInOut)
                .await
            {
                Ok(Some(row)) if row.event == QueueLogEvent::SignIn => row,
                Ok(_) => continue,
                Err(e) => {
                    warn!(%e, agent = agent.as_str(), "agent presence not restored");
                    continue;
                }
            };
            // A sign-in ends any pause before it.
            let pause = match store.agent_last_presence(agent, PresenceRow::Pause).await {
                Ok(Some(row)) if row.at >= signed_in.at => match row.event {
                    QueueLogEvent::Pause { reason } => Some(reason),
                    _ => None,
                },
                _ => None,
            };
            let paused = pause.is_some();
            match self.input(QueueInput::Restore {
                agent: agent.clone(),
                pause,
            }) {
                Ok(()) => {
                    info!(
                        agent = agent.as_str(),
                        paused, "agent still signed in after the restart"
                    );
                    restored += 1;
                }
                Err(e) => warn!(%e, agent = agent.as_str(), "agent presence not restored"),
            }
        }
        restored
    }

    /// A call enters the ACD; its task receives [`AcdCommand`]s on `tx`.
    ///
    /// # Errors
    /// Unknown queue or duplicate call.
    pub fn enqueue(
        &self,
        input: QueueInput,
        tx: mpsc::UnboundedSender<AcdCommand>,
    ) -> Result<(), AcdShellError> {
        let QueueInput::CallArrived { call, .. } = &input else {
            return self.input(input);
        };
        if let Ok(mut inner) = self.inner.lock() {
            inner.calls.insert(call.clone(), tx);
        }
        let result = self.input(input.clone());
        if result.is_err()
            && let (QueueInput::CallArrived { call, .. }, Ok(mut inner)) =
                (&input, self.inner.lock())
        {
            inner.calls.remove(call);
        }
        result
    }

    /// Feed one input and carry out the actions.
    ///
    /// # Errors
    /// API misuse reported by the ACD (unknown agent, …).
    pub fn input(&self, input: QueueInput) -> Result<(), AcdShellError> {
        let now = self.clock.now();
        let (result, actions) = {
            let mut inner = self.inner.lock().map_err(|_| AcdShellError::Poisoned)?;
            let result = inner.acd.handle(now, input);
            let actions: Vec<QueueAction> =
                std::iter::from_fn(|| inner.acd.poll_output()).collect();
            (result, actions)
        };
        self.perform(actions);
        self.wake.notify_one();
        result.map_err(AcdShellError::from)
    }

    /// A call task holds (or no longer holds) a leg to `agent`.
    pub fn leg_held(&self, call: &CallId, agent: &AgentId, held: bool) {
        if let Ok(mut inner) = self.inner.lock() {
            let key = (call.clone(), agent.clone());
            if held {
                inner.legs.insert(key);
            } else {
                inner.legs.remove(&key);
            }
        }
    }

    /// The call's task is gone: forget its channel and legs; a call the ACD still
    /// holds (the task ended without reporting) ends now, by the system.
    pub fn call_task_ended(&self, call: &CallId) {
        let still_queued = match self.inner.lock() {
            // The caller hung up after asking for a callback: the call lives on.
            Ok(inner) if inner.callbacks.contains(call) => false,
            Ok(mut inner) => {
                inner.calls.remove(call);
                inner.legs.retain(|(c, _)| c != call);
                inner.acd.queue_of(call).is_some()
            }
            Err(_) => false,
        };
        if still_queued {
            let _ = self.input(QueueInput::CallEnded {
                call: call.clone(),
                who_hung_up: crate::queue::Party::System,
            });
        }
    }

    /// A binding of `aor_user` changed: compare with the registrar now.
    pub fn registration_changed(&self) {
        self.wake.notify_one();
    }

    fn check_registrations(&self) {
        let Some(sip) = self.sip.lock().ok().and_then(|s| s.upgrade()) else {
            return;
        };
        let names: Vec<String> = self.agents.iter().map(|a| a.0.clone()).collect();
        let now = Instant::now();
        let mut live: BTreeSet<AgentId> = sip
            .drive(|ep| ep.agent_contacts(now, &names))
            .unwrap_or_default()
            .into_iter()
            .map(|c| AgentId::new(c.agent))
            .collect();
        // A browser registered as the agent's phone counts as a registration.
        live.extend(
            sip.calls()
                .media()
                .browsers
                .agents()
                .into_iter()
                .map(AgentId::new)
                .filter(|a| self.agents.contains(a)),
        );
        let (gained, lost) = {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            let gained: Vec<AgentId> = live.difference(&inner.registered).cloned().collect();
            let lost: Vec<AgentId> = inner.registered.difference(&live).cloned().collect();
            inner.registered = live;
            (gained, lost)
        };
        for agent in gained {
            debug!(%agent, "agent registered");
            let _ = self.input(QueueInput::Registered { agent });
        }
        for agent in lost {
            debug!(%agent, "agent registration gone");
            let _ = self.input(QueueInput::RegistrationLost { agent });
        }
    }

    fn reconcile(&self) {
        let legs = match self.inner.lock() {
            Ok(inner) => inner.legs.clone(),
            Err(_) => return,
        };
        let _ = self.input(QueueInput::LiveLegs(legs));
    }

    async fn timer_loop(self: Arc<Self>, shutdown: crate::shutdown::Shutdown) {
        let mut next_reconcile = Instant::now();
        loop {
            let now_wall = self.clock.now();
            let due = self
                .inner
                .lock()
                .ok()
                .and_then(|i| i.acd.poll_timeout())
                .map(|t| {
                    (t - now_wall)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(RECONCILE_EVERY)
                })
                .unwrap_or(RECONCILE_EVERY);
            tokio::select! {
                _ = tokio::time::sleep(due) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            self.check_registrations();
            self.follow_calendar();
            let now = self.clock.now();
            let actions = match self.inner.lock() {
                Ok(mut inner) => {
                    if inner.acd.poll_timeout().is_some_and(|t| t <= now) {
                        inner.acd.handle_timeout(now);
                    }
                    std::iter::from_fn(|| inner.acd.poll_output()).collect::<Vec<_>>()
                }
                Err(_) => return,
            };
            self.perform(actions);
            if Instant::now() >= next_reconcile {
                next_reconcile = Instant::now() + RECONCILE_EVERY;
                self.reconcile();
            }
        }
    }

    fn send(&self, call: &CallId, command: AcdCommand) {
        let tx = self
            .inner
            .lock()
            .ok()
            .and_then(|i| i.calls.get(call).cloned());
        match tx {
            Some(tx) => {
                if tx.send(command).is_err() {
                    debug!(call = %call.0, "call task gone; command dropped");
                }
            }
            None => debug!(call = %call.0, ?command, "no call task for an ACD command"),
        }
    }

    fn emit(&self, event: ConsoleEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    /// Write out the `queue_log` rows decided so far (at shutdown).
    pub async fn flush_queue_log(&self) {
        if let Some(writer) = self.queue_log.get() {
            writer.flush().await;
        }
    }

    fn log(&self, entry: QueueLogEntry) {
        if let Some(metrics) = self.metrics.get() {
            use crate::metrics::WaitOutcome;
            use crate::queue::QueueLogEvent;
            match entry.event {
                QueueLogEvent::Connect { wait_ms, .. } => {
                    metrics.queue_wait_ended(entry.queue.as_str(), WaitOutcome::Answered, wait_ms);
                }
                QueueLogEvent::Abandon { wait_ms, .. } => {
                    metrics.queue_wait_ended(entry.queue.as_str(), WaitOutcome::Abandoned, wait_ms);
                }
                _ => {}
            }
        }
        if let Some(store) = &self.store {
            self.queue_log
                .get_or_init(|| {
                    crate::server::queue_log_writer::QueueLogWriter::start(store.clone())
                })
                .log(entry);
        }
    }

    fn perform(&self, actions: Vec<QueueAction>) {
        for action in actions {
            match action {
                QueueAction::PlayHoldMusic { call } => self.send(&call, AcdCommand::HoldMusic),
                QueueAction::Announce { call, position, .. } => {
                    self.send(&call, AcdCommand::Announce { position });
                }
                QueueAction::PleaseHold { call } => self.send(&call, AcdCommand::PleaseHold),
                QueueAction::StopAnnouncement { call } => {
                    self.send(&call, AcdCommand::StopAnnouncement);
                }
                QueueAction::RingAgent {
                    call,
                    agent,
                    caller,
                    category,
                    urgency,
                } => {
                    // The leg counts as held from now: the call task creates it next.
                    self.leg_held(&call, &agent, true);
                    self.send(
                        &call,
                        AcdCommand::Ring {
                            agent: agent.clone(),
                        },
                    );
                    self.screen_pop(&call, &agent, &caller, category, urgency);
                }
                QueueAction::CancelRing { call, agent } => {
                    self.leg_held(&call, &agent, false);
                    self.send(&call, AcdCommand::CancelRing { agent });
                }
                QueueAction::Bridge { call, agent } => {
                    self.send(&call, AcdCommand::Bridge { agent });
                }
                QueueAction::HangupAgentLeg { call, agent } => {
                    self.leg_held(&call, &agent, false);
                    self.send(&call, AcdCommand::HangupAgent { agent });
                }
                QueueAction::CallbackRegistered { call, position } => {
                    if let Ok(mut inner) = self.inner.lock() {
                        inner.callbacks.insert(call.clone());
                    }
                    self.send(&call, AcdCommand::CallbackRegistered { position });
                }
                QueueAction::PlaceCallback {
                    call,
                    agent,
                    number,
                } => self.place_callback(call, agent, number),
                QueueAction::CallbackGaveUp { call, attempts, .. } => {
                    info!(call = %call.0, attempts, "callback given up: a work order is needed");
                    if let Ok(mut inner) = self.inner.lock() {
                        inner.callbacks.remove(&call);
                    }
                    if let Some((_, media)) = self.media() {
                        media.outbound.callback_done(&call);
                        if let Some(orders) = media.call_orders() {
                            orders.callback_gave_up(&call, attempts, self.clock.now());
                        }
                    }
                    self.emit(ConsoleEvent::Queue {
                        city: None,
                        call_id: Some(call.0),
                        event: "callback_gave_up".into(),
                    });
                }
                QueueAction::Overflowed { call, from, to } => {
                    info!(call = %call.0, from = from.as_str(), to = to.as_str(), "call overflowed");
                    self.emit(ConsoleEvent::Queue {
                        city: Some(from.as_str().to_string()),
                        call_id: Some(call.0.clone()),
                        event: format!("overflow:{}", to.as_str()),
                    });
                    self.send(&call, AcdCommand::Overflowed { to });
                }
                QueueAction::ToVoiceMessage { call, reason } => {
                    info!(call = %call.0, reason = %crate::logfmt::word(&reason), "queue hands the call to a voice message");
                    self.send(&call, AcdCommand::VoiceMessage { reason });
                    if let Ok(mut inner) = self.inner.lock() {
                        inner.calls.remove(&call);
                    }
                }
                QueueAction::CallReleased { call, reason } => {
                    info!(call = %call.0, reason = %crate::logfmt::word(&reason), "call released by the ACD");
                    match reason {
                        crate::queue::ReleaseReason::TransferredToSurvey => {
                            self.send(&call, AcdCommand::Survey);
                        }
                        crate::queue::ReleaseReason::TransferredToUnit(unit) => {
                            self.send(&call, AcdCommand::ToUnit { unit });
                        }
                    }
                    if let Ok(mut inner) = self.inner.lock() {
                        inner.calls.remove(&call);
                    }
                }
                QueueAction::AgentStateChanged {
                    agent,
                    from,
                    to,
                    at,
                    reason,
                } => self.agent_state_changed(&agent, &from, &to, at, &reason),
                QueueAction::Absent {
                    agent,
                    city,
                    shift_start,
                } => {
                    warn!(%agent, city = city.as_str(), %shift_start, "on-duty agent absent at shift start");
                    self.emit(ConsoleEvent::Queue {
                        city: Some(city.as_str().to_string()),
                        call_id: None,
                        event: format!("absent:{agent}"),
                    });
                }
                QueueAction::AgentOffline { agent, city, at } => {
                    warn!(%agent, city = city.as_str(), %at, "signed-in agent went offline (离线)");
                    self.emit(ConsoleEvent::Queue {
                        city: Some(city.as_str().to_string()),
                        call_id: None,
                        event: format!("offline:{agent}"),
                    });
                }
                QueueAction::Log(entry) => self.log(entry),
            }
        }
    }

    fn agent_state_changed(
        &self,
        agent: &AgentId,
        from: &AgentState,
        to: &AgentState,
        at: Time,
        reason: &TransitionReason,
    ) {
        let reason_text = match serde_json::to_value(reason) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(_) => String::new(),
        };
        let what = match (from, to) {
            (AgentState::LoggedOut, AgentState::LoggedOut) => "agent state",
            (AgentState::LoggedOut, _) => "agent signed in",
            (_, AgentState::LoggedOut) => "agent signed out",
            _ => "agent state",
        };
        info!(
            %agent,
            from = from.name(),
            to = to.name(),
            reason = %crate::logfmt::word(reason),
            "{what}"
        );
        let to_text = match to {
            AgentState::Paused { reason } => format!("paused:{}", reason.0),
            other => other.name().to_string(),
        };
        self.emit(ConsoleEvent::AgentState {
            agent: agent.0.clone(),
            city: self.cities.get(agent).map(|c| c.as_str().to_string()),
            from: from.name().to_string(),
            to: to_text,
            reason: reason_text,
            at: at.to_rfc3339(),
            call: to.leg_call().map(|c| c.0.clone()),
            until: match to {
                AgentState::WrapUp { until } => Some(until.to_rfc3339()),
                _ => None,
            },
        });
    }

    /// An attended transfer moved `call` from agent `from` to `to`: `to`'s console gets
    /// the screen-pop (caller, category, the caller's earlier orders), and every
    /// console a `queue` event `transfer:<from>:<to>`.
    pub fn call_transferred(
        &self,
        call: &CallId,
        from: &AgentId,
        to: &AgentId,
        caller: &str,
        category: crate::domain::CallCategory,
        urgency: crate::domain::Urgency,
    ) {
        let city = self.city_of_call(call);
        self.emit(ConsoleEvent::Queue {
            city,
            call_id: Some(call.0.clone()),
            event: format!("transfer:{from}:{to}"),
        });
        self.screen_pop(call, to, caller, category, urgency);
    }

    /// The city whose queue holds `call`, for console events.
    fn city_of_call(&self, call: &CallId) -> Option<String> {
        self.inner
            .lock()
            .ok()
            .and_then(|i| i.acd.queue_of(call).map(|c| c.as_str().to_string()))
    }

    fn screen_pop(
        &self,
        call: &CallId,
        agent: &AgentId,
        caller: &str,
        category: crate::domain::CallCategory,
        urgency: crate::domain::Urgency,
    ) {
        let city = self.city_of_call(call);
        let name = |v: serde_json::Result<serde_json::Value>| match v {
            Ok(serde_json::Value::String(s)) => s,
            _ => String::new(),
        };
        let mut event = ConsoleEvent::CallOffered {
            call_id: call.0.clone(),
            agent: agent.0.clone(),
            caller_masked: crate::ticket::privacy::mask_phone(caller),
            city,
            category: name(serde_json::to_value(category)),
            urgency: name(serde_json::to_value(urgency)),
            draft_order_id: None,
            previous_orders: Vec::new(),
        };
        let Some(store) = self.store.clone() else {
            self.emit(event);
            return;
        };
        let events = self.events.clone();
        let caller = caller.to_string();
        tokio::spawn(async move {
            let filter = crate::store::orders::OrderFilter {
                phone: Some(caller),
                limit: 20,
                ..Default::default()
            };
            match store.list_orders(&filter).await {
                Ok((orders, _)) => {
                    if let ConsoleEvent::CallOffered {
                        previous_orders, ..
                    } = &mut event
                    {
                        *previous_orders = orders.iter().map(|o| o.id.0.clone()).collect();
                    }
                }
                Err(e) => debug!(%e, "previous orders unknown for the screen-pop"),
            }
            let _ = events.send(event);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> (crate::config::Config, crate::calendar::Calendar) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("config/hotline.toml")).expect("config");
        let config = crate::config::Config::from_toml(&text).expect("valid config");
        let calendar =
            crate::calendar::Calendar::load(root.join("config/calendar/cn-workdays.toml"))
                .expect("calendar");
        (config, calendar)
    }

    #[tokio::test]
    async fn shipped_config_has_queues_and_a_signed_in_registered_agent_becomes_available() {
        let (config, calendar) = shipped();
        let queues = config
            .queues
            .clone()
            .expect("[queues] in the shipped config");
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00+08:00").expect("t");
        let acd = AcdShell::new(
            queues,
            calendar,
            WallClock::starting_at(at),
            None,
            HashMap::new(),
        )
        .expect("ACD");
        let mut events = acd.subscribe();
        let agent = AgentId::new("1001");
        acd.input(QueueInput::Registered {
            agent: agent.clone(),
        })
        .expect("registered");
        acd.input(QueueInput::SignIn {
            agent: agent.clone(),
        })
        .expect("sign in");
        assert_eq!(acd.agent_state(&agent), Some(AgentState::Available));
        let snapshot = acd.snapshots();
        assert!(snapshot.iter().any(|q| q.city.as_str() == "qingdao"));
        let mut saw = false;
        while let Ok(event) = events.try_recv() {
            if let ConsoleEvent::AgentState { agent, to, .. } = event {
                saw |= agent == "1001" && to == "available";
            }
        }
        assert!(saw, "agent_state event for the sign-in");
        assert!(
            acd.input(QueueInput::SignIn {
                agent: AgentId::new("9999")
            })
            .is_err(),
            "unknown agents are refused"
        );
    }

    #[tokio::test]
    async fn the_callers_task_ending_after_a_callback_request_keeps_the_callback() {
        let (config, calendar) = shipped();
        let queues = config.queues.clone().expect("queues");
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00+08:00").expect("t");
        let acd = AcdShell::new(
            queues,
            calendar,
            WallClock::starting_at(at),
            None,
            HashMap::new(),
        )
        .expect("ACD");
        // Someone is signed in in Jinan (no overflow) but busy with another call.
        let agent = AgentId::new("1001");
        acd.input(QueueInput::Registered {
            agent: agent.clone(),
        })
        .expect("registered");
        acd.input(QueueInput::SignIn {
            agent: agent.clone(),
        })
        .expect("sign in");
        let arrive = |id: &str| {
            let (tx, rx) = mpsc::unbounded_channel();
            acd.enqueue(
                QueueInput::CallArrived {
                    call: CallId(id.into()),
                    city: CityId::new("jinan"),
                    category: crate::domain::CallCategory::Consultation,
                    urgency: crate::domain::Urgency::default(),
                    area: None,
                    caller: "13800001111".into(),
                },
                tx,
            )
            .expect("enqueued");
            rx
        };
        let _busy = arrive("c0");
        acd.input(QueueInput::AgentAnswered {
            call: CallId("c0".into()),
            agent: agent.clone(),
        })
        .expect("answered");
        let mut rx = arrive("c1");
        let call = CallId("c1".into());
        assert_eq!(acd.callback_key(&call), Some('*'), "shipped key");
        acd.input(QueueInput::CallbackRequested { call: call.clone() })
            .expect("callback");
        let mut registered = false;
        while let Ok(command) = rx.try_recv() {
            registered |= command == AcdCommand::CallbackRegistered { position: 1 };
        }
        assert!(registered);
        assert_eq!(acd.callback_key(&call), None, "no second request");
        // The caller's task ends (hung up after the confirmation): the place is kept.
        acd.call_task_ended(&call);
        assert_eq!(acd.position(&call), Some(1));
        assert_eq!(acd.callbacks_pending(), 1);
    }

    #[tokio::test]
    async fn a_queued_call_rings_the_available_agent_and_reconcile_frees_a_lost_leg() {
        let (config, calendar) = shipped();
        let queues = config.queues.clone().expect("queues");
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00+08:00").expect("t");
        let acd = AcdShell::new(
            queues,
            calendar,
            WallClock::starting_at(at),
            None,
            HashMap::new(),
        )
        .expect("ACD");
        let agent = AgentId::new("1001");
        acd.input(QueueInput::Registered {
            agent: agent.clone(),
        })
        .expect("registered");
        acd.input(QueueInput::SignIn {
            agent: agent.clone(),
        })
        .expect("sign in");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let call = CallId("c1".into());
        acd.enqueue(
            QueueInput::CallArrived {
                call: call.clone(),
                city: CityId::new("jinan"),
                category: crate::domain::CallCategory::Consultation,
                urgency: crate::domain::Urgency::default(),
                area: None,
                caller: "13800001111".into(),
            },
            tx,
        )
        .expect("enqueued");
        let mut rung = false;
        while let Ok(command) = rx.try_recv() {
            rung |= command
                == AcdCommand::Ring {
                    agent: agent.clone(),
                };
        }
        assert!(rung, "the available agent is rung");
        assert_eq!(acd.agent_state(&agent).map(|s| s.name()), Some("ringing"));
        // The agent leg is lost without a report: the reconcile frees the agent and
        // the call is offered again (a fresh leg).
        acd.leg_held(&call, &agent, false);
        acd.reconcile();
        let mut rung_again = false;
        while let Ok(command) = rx.try_recv() {
            rung_again |= command
                == AcdCommand::Ring {
                    agent: agent.clone(),
                };
        }
        assert!(rung_again, "offered again on a new leg after the reconcile");
        // The call task dies without reporting: the call ends, the agent is not held.
        acd.call_task_ended(&call);
        assert_ne!(acd.agent_state(&agent).map(|s| s.name()), Some("ringing"));
        acd.reconcile();
        assert!(acd.snapshots().iter().all(|q| q.waiting.is_empty()));
    }
}
