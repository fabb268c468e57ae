//! The ACD state machine. See the module docs of [`crate::queue`] for the contract.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeDelta};

use super::config::{
    DutyPolicy, QueueAgentConfig, QueueConfig, QueueConfigError, QueuesConfig, RosterEntry,
    Strategy, TierRule, span,
};
use super::roster::{self, SignInRate};
use super::stats::{AgentSnapshot, QueueLogEntry, QueueLogEvent, QueueSnapshot, WaitingCall};
use super::strategy::{Candidate, SplitMix64, pick};
use super::types::{
    AgentId, AgentState, CallbackGiveUp, CallbackResult, LegFailure, Party, PauseReason,
    QueueAction, QueueError, QueueInput, ReleaseReason, Time, TransferTarget, TransitionReason,
    VoiceMessageReason,
};
use crate::calendar::{Calendar, shanghai};
use crate::domain::{CallCategory, Urgency};
use crate::ivr::city::CityId;
use crate::ticket::model::{BusinessArea, CallId};

/// How soon a time-based overflow is tried again when no target had agents.
const OVERFLOW_RECHECK: TimeDelta = TimeDelta::seconds(15);

fn later(at: Time, by: TimeDelta) -> Time {
    at.checked_add_signed(by).unwrap_or(at)
}

/// Rounds up to a whole second, so that the periodic prompts of many waiting callers
/// share one wake-up instead of one each.
fn on_second(at: Time) -> Time {
    let nanos = at.timestamp_subsec_nanos();
    if nanos == 0 {
        return at;
    }
    later(at, TimeDelta::nanoseconds(i64::from(1_000_000_000 - nanos)))
}

fn millis(from: Time, to: Time) -> i64 {
    (to - from).num_milliseconds().max(0)
}

fn local_date(at: Time) -> NaiveDate {
    at.with_timezone(&shanghai()).date_naive()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Activity {
    Idle,
    Ringing { call: CallId, since: Time },
    OnCall { call: CallId },
    WrapUp { until: Time },
}

#[derive(Debug, Clone)]
struct Agent {
    config: QueueAgentConfig,
    order: usize,
    signed_in: bool,
    registered: bool,
    pause: Option<PauseReason>,
    activity: Activity,
    /// Not offered calls before this (busy / reject / no-answer delays).
    ready_at: Option<Time>,
    idle_since: Time,
    no_answer_count: u32,
    calls_today: u32,
    state: AgentState,
    present_since: Option<Time>,
    presence: Vec<(Time, Time)>,
}

impl Agent {
    fn derived_state(&self) -> AgentState {
        match &self.activity {
            Activity::Ringing { call, .. } => AgentState::Ringing { call: call.clone() },
            Activity::OnCall { call } => AgentState::OnCall { call: call.clone() },
            _ if !self.signed_in => AgentState::LoggedOut,
            _ if !self.registered => AgentState::Offline,
            Activity::WrapUp { until } => AgentState::WrapUp { until: *until },
            Activity::Idle => match &self.pause {
                Some(reason) => AgentState::Paused {
                    reason: reason.clone(),
                },
                None => AgentState::Available,
            },
        }
    }

    fn ringing_call(&self) -> Option<&CallId> {
        match &self.activity {
            Activity::Ringing { call, .. } => Some(call),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Queue {
    config: QueueConfig,
    rr_last: Option<usize>,
    answered_today: u32,
    abandoned_today: u32,
    /// Moving average of talk + wrap-up, for the estimated wait.
    avg_handle_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Waiting for an agent (also between offers).
    Waiting,
    /// Offered: these agents' legs ring (several for `ring_all`).
    Ringing {
        agents: BTreeMap<AgentId, Time>,
        until: Time,
    },
    /// Bridged to an agent.
    Bridged { agent: AgentId, answered_at: Time },
    /// The caller hung up and waits for a callback, keeping the place.
    Callback {
        attempts: u32,
        not_before: Time,
        requested_at: Time,
    },
    /// Callback turn: the reserved agent's leg rings.
    CallbackAgent {
        agent: AgentId,
        attempts: u32,
        requested_at: Time,
        until: Time,
    },
    /// The agent is on; the caller is being dialled.
    CallbackDialing {
        agent: AgentId,
        attempts: u32,
        requested_at: Time,
    },
}

impl Phase {
    /// Holds a place in the queue (counts for positions).
    fn in_line(&self) -> bool {
        matches!(
            self,
            Self::Waiting
                | Self::Ringing { .. }
                | Self::Callback { .. }
                | Self::CallbackAgent { .. }
        )
    }

    /// The caller is on the line, listening to the queue.
    fn caller_listening(&self) -> bool {
        matches!(self, Self::Waiting | Self::Ringing { .. })
    }
}

#[derive(Debug, Clone)]
struct Call {
    id: CallId,
    queue: CityId,
    category: CallCategory,
    urgency: Urgency,
    area: Option<BusinessArea>,
    caller: String,
    seq: u64,
    arrived_at: Time,
    queue_entered_at: Time,
    phase: Phase,
    next_offer_at: Time,
    tried: BTreeSet<AgentId>,
    visited: BTreeSet<CityId>,
    overflow_due: Option<Time>,
    original_position: u32,
    /// The first agent's answer (a transferred call keeps its wait).
    first_answered_at: Option<Time>,
    last_position: Option<u32>,
    next_announce_at: Option<Time>,
    next_hold_at: Option<Time>,
    announcing: bool,
}

impl Call {
    fn order_key(&self) -> (u8, u64) {
        let rank = match self.urgency {
            Urgency::Urgent => 0,
            Urgency::Normal => 1,
        };
        (rank, self.seq)
    }
}

/// The ACD: agents, rosters, queues and calls of the whole province.
///
/// Feed [`Acd::handle`] / [`Acd::handle_timeout`]; drain [`Acd::poll_output`]; sleep
/// until [`Acd::poll_timeout`].
#[derive(Debug, Clone)]
pub struct Acd {
    config: QueuesConfig,
    /// The calendar in force ([`QueueInput::CalendarChanged`] replaces it).
    calendar: Arc<Calendar>,
    queues: BTreeMap<CityId, Queue>,
    agents: BTreeMap<AgentId, Agent>,
    calls: BTreeMap<CallId, Call>,
    next_seq: u64,
    rng: SplitMix64,
    outputs: VecDeque<QueueAction>,
    last_now: Time,
    today: NaiveDate,
    roster_checked_until: Time,
    next_roster_check: Option<Time>,
    /// Callers who hung up while waiting: number → (place, when, queue), so that a
    /// caller cut off (mobile signal) and calling straight back resumes their place.
    abandoned: BTreeMap<String, (u64, Time, CityId)>,
}

impl Acd {
    /// An ACD with every agent logged out and unregistered; `now` is the start time
    /// (shifts that started before it are not reported absent); `seed` drives the
    /// `random` strategy.
    ///
    /// # Errors
    /// The configuration's first inconsistency ([`QueuesConfig::validate`]).
    pub fn new(
        config: QueuesConfig,
        calendar: impl Into<Arc<Calendar>>,
        now: Time,
        seed: u64,
    ) -> Result<Self, QueueConfigError> {
        let calendar = calendar.into();
        config.validate()?;
        let queues = config
            .queues
            .iter()
            .map(|q| {
                (
                    q.city.clone(),
                    Queue {
                        config: q.clone(),
                        rr_last: None,
                        answered_today: 0,
                        abandoned_today: 0,
                        avg_handle_ms: None,
                    },
                )
            })
            .collect();
        let agents = config
            .agents
            .iter()
            .enumerate()
            .map(|(order, a)| {
                (
                    a.id.clone(),
                    Agent {
                        config: a.clone(),
                        order,
                        signed_in: false,
                        registered: false,
                        pause: None,
                        activity: Activity::Idle,
                        ready_at: None,
                        idle_since: now,
                        no_answer_count: 0,
                        calls_today: 0,
                        state: AgentState::LoggedOut,
                        present_since: None,
                        presence: Vec::new(),
                    },
                )
            })
            .collect();
        let grace = span(config.absent_grace_secs);
        let next_roster_check =
            roster::next_shift_start(&config.roster, &calendar, now - grace).map(|s| s + grace);
        Ok(Self {
            config,
            calendar,
            queues,
            agents,
            calls: BTreeMap::new(),
            next_seq: 0,
            rng: SplitMix64::new(seed),
            outputs: VecDeque::new(),
            last_now: now,
            today: local_date(now),
            roster_checked_until: now,
            next_roster_check,
            abandoned: BTreeMap::new(),
        })
    }

    /// Replaces the duty roster (API edit of the 值班表); takes effect at `now`
    /// (shifts that already started are not reported absent again).
    ///
    /// # Errors
    /// A roster entry for an unknown agent or ending before it starts; the roster is
    /// unchanged then.
    pub fn replace_roster(
        &mut self,
        roster: Vec<RosterEntry>,
        now: Time,
    ) -> Result<(), QueueConfigError> {
        let mut config = self.config.clone();
        config.roster = roster;
        config.validate()?;
        self.config = config;
        self.reschedule_roster_check(now);
        Ok(())
    }

    /// The next absence check after the roster or the calendar changed at `now`: the
    /// shifts checked up to now stay checked; the next start is found afresh.
    fn reschedule_roster_check(&mut self, now: Time) {
        let grace = span(self.config.absent_grace_secs);
        self.roster_checked_until = self.roster_checked_until.max(now);
        self.next_roster_check = roster::next_shift_start(
            &self.config.roster,
            &self.calendar,
            self.roster_checked_until - grace,
        )
        .map(|s| s + grace);
    }

    /// The calendar the rosters follow now.
    #[must_use]
    pub fn calendar(&self) -> &Arc<Calendar> {
        &self.calendar
    }

    /// The duty roster in force.
    #[must_use]
    pub fn roster(&self) -> &[RosterEntry] {
        &self.config.roster
    }

    /// The next action for the shell, in order; `None` when drained.
    pub fn poll_output(&mut self) -> Option<QueueAction> {
        self.outputs.pop_front()
    }

    /// Feeds one input at `now` (timers due by `now` fire first).
    ///
    /// # Errors
    /// API misuse only ([`QueueError`]); the state is unchanged then. Events about calls
    /// or legs the ACD no longer knows (network races) are ignored, not errors.
    pub fn handle(&mut self, now: Time, input: QueueInput) -> Result<(), QueueError> {
        self.run(now);
        let result = self.apply(now, input);
        self.run(now);
        result
    }

    /// Fires every timer due by `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.run(now);
    }

    /// The earliest moment something is due (strictly after the last `now` seen).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut times: Vec<Time> = Vec::new();
        times.extend(self.next_roster_check);
        for agent in self.agents.values() {
            if let Activity::WrapUp { until } = agent.activity {
                times.push(until);
            }
            times.extend(agent.ready_at);
        }
        for call in self.calls.values() {
            let Some(queue) = self.queues.get(&call.queue) else {
                continue;
            };
            let q = &queue.config;
            match &call.phase {
                Phase::Waiting => {
                    times.push(call.next_offer_at);
                    times.push(later(call.arrived_at, span(q.max_wait_secs)));
                    times.extend(call.overflow_due);
                    let waited = call.queue_entered_at;
                    times.extend(
                        q.tier_rules
                            .iter()
                            .map(|rule| later(waited, span(rule.after_secs))),
                    );
                }
                Phase::Ringing { until, .. } | Phase::CallbackAgent { until, .. } => {
                    times.push(*until);
                }
                Phase::Callback {
                    not_before,
                    requested_at,
                    ..
                } => {
                    times.push(*not_before);
                    times.push(later(*requested_at, span(q.callback_max_wait_secs)));
                    let waited = call.queue_entered_at;
                    times.extend(
                        q.tier_rules
                            .iter()
                            .map(|rule| later(waited, span(rule.after_secs))),
                    );
                }
                Phase::Bridged { .. } | Phase::CallbackDialing { .. } => {}
            }
            if call.phase.caller_listening() {
                times.extend(call.next_announce_at);
                times.extend(call.next_hold_at);
            }
        }
        times.into_iter().filter(|t| *t > self.last_now).min()
    }

    /// An agent's current state.
    #[must_use]
    pub fn agent_state(&self, agent: &AgentId) -> Option<&AgentState> {
        self.agents.get(agent).map(|a| &a.state)
    }

    /// Every agent and their state, in config order.
    #[must_use]
    pub fn agent_states(&self) -> Vec<(AgentId, AgentState)> {
        let mut all: Vec<&Agent> = self.agents.values().collect();
        all.sort_by_key(|a| a.order);
        all.into_iter()
            .map(|a| (a.config.id.clone(), a.state.clone()))
            .collect()
    }

    /// The call's 1-based place in its queue, while it holds one.
    #[must_use]
    pub fn position(&self, call: &CallId) -> Option<u32> {
        let c = self.calls.get(call)?;
        self.line(&c.queue)
            .iter()
            .position(|id| id == call)
            .and_then(|i| u32::try_from(i + 1).ok())
    }

    /// The queue a call is in now (after overflows and transfers).
    #[must_use]
    pub fn queue_of(&self, call: &CallId) -> Option<&CityId> {
        self.calls.get(call).map(|c| &c.queue)
    }

    /// The configuration of `city`'s queue.
    #[must_use]
    pub fn queue_config(&self, city: &CityId) -> Option<&QueueConfig> {
        self.queues.get(city).map(|q| &q.config)
    }

    /// The callback key of the queue `call` waits in, while its caller is listening
    /// to the queue (waiting or ringing an agent); `None` otherwise or when the queue
    /// has no callback key.
    #[must_use]
    pub fn callback_key(&self, call: &CallId) -> Option<char> {
        let c = self.calls.get(call)?;
        if !c.phase.caller_listening() {
            return None;
        }
        self.queues.get(&c.queue)?.config.callback_digit
    }

    /// Number of calls the ACD holds (waiting, ringing, bridged, callbacks).
    #[must_use]
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Whether `agent` is on duty at `now` per the roster (`on_duty`, `CALL-QUEUE`).
    #[must_use]
    pub fn on_duty(&self, agent: &AgentId, now: Time) -> bool {
        roster::on_duty(&self.config.roster, agent, now, &self.calendar)
    }

    /// Intervals the agent was signed in with a live registration, up to `now`.
    #[must_use]
    pub fn presence(&self, agent: &AgentId, now: Time) -> Vec<(Time, Time)> {
        let Some(a) = self.agents.get(agent) else {
            return Vec::new();
        };
        let mut out = a.presence.clone();
        if let Some(since) = a.present_since {
            out.push((since, now));
        }
        out
    }

    /// Sign-in rate over `[from, to)` from the presence the ACD saw (`AS-METRICS`).
    #[must_use]
    pub fn sign_in_rate(&self, agent: &AgentId, from: Time, to: Time, now: Time) -> SignInRate {
        roster::sign_in_rate(
            &self.config.roster,
            &self.calendar,
            agent,
            &self.presence(agent, now),
            from,
            to,
        )
    }

    /// Live state of every queue (`GET /api/queues`).
    #[must_use]
    pub fn snapshots(&self, now: Time) -> Vec<QueueSnapshot> {
        self.queues
            .keys()
            .filter_map(|city| self.snapshot(city, now))
            .collect()
    }

    /// Live state of one queue.
    #[must_use]
    pub fn snapshot(&self, city: &CityId, now: Time) -> Option<QueueSnapshot> {
        let queue = self.queues.get(city)?;
        let waiting: Vec<WaitingCall> = self
            .line(city)
            .iter()
            .enumerate()
            .filter_map(|(i, id)| {
                let call = self.calls.get(id)?;
                Some(WaitingCall {
                    call: id.clone(),
                    position: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    since: call.arrived_at,
                    urgency: call.urgency,
                    callback: matches!(
                        call.phase,
                        Phase::Callback { .. } | Phase::CallbackAgent { .. }
                    ),
                })
            })
            .collect();
        let longest_wait_ms = waiting
            .iter()
            .map(|w| millis(w.since, now))
            .max()
            .unwrap_or(0);
        let mut members: Vec<&Agent> = self
            .agents
            .values()
            .filter(|a| &a.config.city == city)
            .collect();
        members.sort_by_key(|a| a.order);
        let mut agents_by_state = BTreeMap::new();
        for agent in &members {
            *agents_by_state
                .entry(agent.state.name().to_owned())
                .or_insert(0) += 1;
        }
        Some(QueueSnapshot {
            city: city.clone(),
            waiting,
            longest_wait_ms,
            agents_by_state,
            agents: members
                .iter()
                .map(|a| AgentSnapshot {
                    agent: a.config.id.clone(),
                    state: a.state.clone(),
                    on_duty: self.on_duty(&a.config.id, now),
                    answered_today: a.calls_today,
                    no_answer_count: a.no_answer_count,
                })
                .collect(),
            answered_today: queue.answered_today,
            abandoned_today: queue.abandoned_today,
        })
    }

    // ----- inputs -------------------------------------------------------------------

    fn apply(&mut self, now: Time, input: QueueInput) -> Result<(), QueueError> {
        match input {
            QueueInput::CallArrived {
                call,
                city,
                category,
                urgency,
                area,
                caller,
            } => self.call_arrived(now, call, city, category, urgency, area, caller),
            QueueInput::CallEnded { call, who_hung_up } => {
                self.call_ended(now, &call, who_hung_up);
                Ok(())
            }
            QueueInput::CalendarChanged(calendar) => {
                self.calendar = calendar;
                self.reschedule_roster_check(now);
                Ok(())
            }
            QueueInput::CallbackRequested { call } => self.callback_requested(now, &call),
            QueueInput::CallbackOutcome { call, result } => {
                self.callback_outcome(now, &call, result);
                Ok(())
            }
            QueueInput::AnnouncementDone { call } => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.announcing = false;
                }
                Ok(())
            }
            QueueInput::AgentLegFailed {
                call,
                agent,
                reason,
            } => {
                if self.agents.get(&agent).and_then(Agent::ringing_call) == Some(&call) {
                    self.offer_failed(now, &agent, Some(reason));
                }
                Ok(())
            }
            QueueInput::AgentAnswered { call, agent } => {
                self.agent_answered(now, &call, &agent);
                Ok(())
            }
            QueueInput::Transfer { call, to } => self.transfer(now, &call, to),
            QueueInput::DirectCall { agent, call } => self.direct_call(now, &agent, call),
            QueueInput::DirectCallEnded { agent, call } => {
                self.direct_call_ended(now, &agent, &call);
                Ok(())
            }
            QueueInput::AttendedTransfer { call, to } => self.attended_transfer(now, &call, &to),
            QueueInput::SignIn { agent } => self.sign_in(now, &agent),
            QueueInput::Restore { agent, pause } => self.restore(now, &agent, pause),
            QueueInput::SignOut { agent } => self.sign_out(now, &agent),
            QueueInput::Pause { agent, reason } => self.pause(now, &agent, reason),
            QueueInput::Unpause { agent } => self.unpause(now, &agent),
            QueueInput::AgentLost { call, agent } => self.agent_lost(now, &call, &agent),
            QueueInput::EndWrapUp { agent } => self.end_wrap_up(now, &agent),
            QueueInput::RegistrationLost { agent } => self.registration_lost(now, &agent),
            QueueInput::Registered { agent } => self.registered(now, &agent),
            QueueInput::LiveLegs(legs) => {
                self.reconcile(now, &legs);
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call_arrived(
        &mut self,
        now: Time,
        call: CallId,
        city: CityId,
        category: CallCategory,
        urgency: Urgency,
        area: Option<BusinessArea>,
        caller: String,
    ) -> Result<(), QueueError> {
        if self.calls.contains_key(&call) {
            return Err(QueueError::DuplicateCall(call));
        }
        // A city without a queue of its own is answered by the province center.
        let queue = if self.queues.contains_key(&city) {
            city
        } else {
            self.config.province_center.clone()
        };
        let Some(q) = self.queues.get(&queue).map(|q| q.config.clone()) else {
            return Err(QueueError::UnknownQueue(queue));
        };
        let resume = span(q.resume_abandoned_secs);
        self.abandoned
            .retain(|_, (_, at, _)| later(*at, resume) >= now && q.resume_abandoned_secs > 0);
        let seq = match self.abandoned.remove(&caller) {
            Some((seq, _, old_queue)) if old_queue == queue && !caller.is_empty() => seq,
            _ => {
                self.next_seq += 1;
                self.next_seq - 1
            }
        };
        let entry = Call {
            id: call.clone(),
            queue: queue.clone(),
            category,
            urgency,
            area,
            caller,
            seq,
            arrived_at: now,
            queue_entered_at: now,
            phase: Phase::Waiting,
            next_offer_at: now,
            tried: BTreeSet::new(),
            visited: BTreeSet::from([queue.clone()]),
            overflow_due: q.overflow_after_secs.map(|s| later(now, span(s))),
            original_position: 0,
            first_answered_at: None,
            last_position: None,
            next_announce_at: (q.announce_frequency_secs > 0).then_some(now),
            next_hold_at: (q.please_hold_secs > 0)
                .then(|| on_second(later(now, span(q.please_hold_secs)))),
            announcing: false,
        };
        self.calls.insert(call.clone(), entry);
        let position = self.position(&call).unwrap_or(1);
        if let Some(c) = self.calls.get_mut(&call) {
            c.original_position = position;
        }
        self.emit(QueueAction::PlayHoldMusic { call: call.clone() });
        self.log(
            now,
            &queue,
            Some(&call),
            None,
            QueueLogEvent::Enter {
                category,
                urgency,
                position,
            },
        );
        Ok(())
    }

    fn call_ended(&mut self, now: Time, call_id: &CallId, who: Party) {
        let Some(call) = self.calls.get(call_id).cloned() else {
            return;
        };
        match &call.phase {
            Phase::Waiting | Phase::Ringing { .. } => {
                let position = self.position(call_id).unwrap_or(0);
                self.withdraw_all_offers(now, call_id, TransitionReason::OfferWithdrawn);
                self.calls.remove(call_id);
                if let Some(q) = self.queues.get_mut(&call.queue) {
                    q.abandoned_today += 1;
                    if who == Party::Caller && q.config.resume_abandoned_secs > 0 {
                        self.abandoned
                            .insert(call.caller.clone(), (call.seq, now, call.queue.clone()));
                    }
                }
                self.log(
                    now,
                    &call.queue,
                    Some(call_id),
                    None,
                    QueueLogEvent::Abandon {
                        position,
                        original_position: call.original_position,
                        wait_ms: millis(call.arrived_at, now),
                    },
                );
            }
            Phase::Bridged { agent, answered_at } => {
                self.calls.remove(call_id);
                self.complete(
                    now,
                    &call,
                    agent,
                    *answered_at,
                    who,
                    TransitionReason::CallEnded,
                );
            }
            // The original caller leg of a callback hangs up by design; ignore it.
            Phase::Callback { .. } | Phase::CallbackAgent { .. } => {}
            Phase::CallbackDialing { .. } => {
                self.callback_outcome(now, call_id, CallbackResult::NoAnswer);
            }
        }
    }

    /// A bridged call is over: log it, send the agent to wrap-up.
    fn complete(
        &mut self,
        now: Time,
        call: &Call,
        agent_id: &AgentId,
        answered_at: Time,
        who: Party,
        reason: TransitionReason,
    ) {
        let talk_ms = millis(answered_at, now);
        let wrap = self.wrap_up_of(agent_id, &call.queue);
        if let Some(agent) = self.agents.get_mut(agent_id) {
            if agent.activity
                == (Activity::OnCall {
                    call: call.id.clone(),
                })
            {
                agent.activity = Activity::WrapUp {
                    until: later(now, wrap),
                };
                self.refresh(now, agent_id, reason);
            }
        }
        if let Some(q) = self.queues.get_mut(&call.queue) {
            let handle = talk_ms + wrap.num_milliseconds();
            q.avg_handle_ms = Some(match q.avg_handle_ms {
                None => handle,
                Some(avg) => (avg * 3 + handle) / 4,
            });
        }
        self.log(
            now,
            &call.queue,
            Some(&call.id),
            Some(agent_id),
            QueueLogEvent::Complete {
                wait_ms: millis(
                    call.arrived_at,
                    call.first_answered_at.unwrap_or(answered_at),
                ),
                talk_ms,
                who_hung_up: who,
            },
        );
    }

    fn wrap_up_of(&self, agent: &AgentId, queue: &CityId) -> TimeDelta {
        let own = self.agents.get(agent).and_then(|a| a.config.wrap_up_secs);
        let queue = self.queues.get(queue).map_or(0, |q| q.config.wrap_up_secs);
        span(own.unwrap_or(queue))
    }

    fn callback_requested(&mut self, now: Time, call_id: &CallId) -> Result<(), QueueError> {
        let Some(call) = self.calls.get(call_id) else {
            return Err(QueueError::UnknownCall(call_id.clone()));
        };
        if !call.phase.caller_listening() {
            return Err(QueueError::NotWaiting(call_id.clone()));
        }
        let queue = call.queue.clone();
        if self
            .queues
            .get(&queue)
            .is_none_or(|q| q.config.callback_digit.is_none())
        {
            return Err(QueueError::CallbackDisabled(queue));
        }
        self.withdraw_all_offers(now, call_id, TransitionReason::OfferWithdrawn);
        let position = self.position(call_id).unwrap_or(1);
        if let Some(call) = self.calls.get_mut(call_id) {
            call.phase = Phase::Callback {
                attempts: 0,
                not_before: now,
                requested_at: now,
            };
            call.announcing = false;
        }
        self.emit(QueueAction::CallbackRegistered {
            call: call_id.clone(),
            position,
        });
        self.log(
            now,
            &queue,
            Some(call_id),
            None,
            QueueLogEvent::CallbackRequested { position },
        );
        Ok(())
    }

    fn callback_outcome(&mut self, now: Time, call_id: &CallId, result: CallbackResult) {
        let Some(call) = self.calls.get(call_id).cloned() else {
            return;
        };
        let Phase::CallbackDialing {
            agent,
            attempts,
            requested_at,
        } = &call.phase
        else {
            return;
        };
        let attempt = attempts + 1;
        self.log(
            now,
            &call.queue,
            Some(call_id),
            Some(agent),
            QueueLogEvent::CallbackAttempt { attempt, result },
        );
        if result == CallbackResult::Answered {
            if let Some(c) = self.calls.get_mut(call_id) {
                c.phase = Phase::Bridged {
                    agent: agent.clone(),
                    answered_at: now,
                };
            }
            if let Some(q) = self.queues.get_mut(&call.queue) {
                q.answered_today += 1;
            }
            if let Some(a) = self.agents.get_mut(agent) {
                a.calls_today += 1;
            }
            self.log(
                now,
                &call.queue,
                Some(call_id),
                Some(agent),
                QueueLogEvent::Connect {
                    wait_ms: millis(call.arrived_at, now),
                    ring_ms: 0,
                },
            );
            return;
        }
        // The caller leg failed: the agent is free again (no talk, so no wrap-up).
        if let Some(a) = self.agents.get_mut(agent) {
            if a.activity
                == (Activity::OnCall {
                    call: call_id.clone(),
                })
            {
                a.activity = Activity::Idle;
                self.refresh(now, agent, TransitionReason::CallbackFailed);
            }
        }
        let Some(q) = self.queues.get(&call.queue).map(|q| q.config.clone()) else {
            return;
        };
        if attempt >= q.callback_max_attempts {
            self.give_up_callback(now, &call, attempt, CallbackGiveUp::AttemptsExhausted);
        } else if let Some(c) = self.calls.get_mut(call_id) {
            c.phase = Phase::Callback {
                attempts: attempt,
                not_before: later(now, span(q.callback_retry_delay_secs)),
                requested_at: *requested_at,
            };
        }
    }

    fn give_up_callback(&mut self, now: Time, call: &Call, attempts: u32, reason: CallbackGiveUp) {
        self.calls.remove(&call.id);
        self.emit(QueueAction::CallbackGaveUp {
            call: call.id.clone(),
            attempts,
            reason,
        });
        self.log(
            now,
            &call.queue,
            Some(&call.id),
            None,
            QueueLogEvent::CallbackGaveUp { attempts },
        );
    }

    fn agent_answered(&mut self, now: Time, call_id: &CallId, agent_id: &AgentId) {
        let offered = self.agents.get(agent_id).and_then(Agent::ringing_call) == Some(call_id);
        let call = self.calls.get(call_id).cloned();
        let (Some(call), true) = (call, offered) else {
            // An answer that crossed our cancel, or for a call we let go: drop that leg.
            self.emit(QueueAction::HangupAgentLeg {
                call: call_id.clone(),
                agent: agent_id.clone(),
            });
            return;
        };
        let ring_since = match self.agents.get(agent_id).map(|a| &a.activity) {
            Some(Activity::Ringing { since, .. }) => *since,
            _ => now,
        };
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.activity = Activity::OnCall {
                call: call_id.clone(),
            };
            a.no_answer_count = 0;
            a.ready_at = None;
        }
        match &call.phase {
            Phase::Ringing { agents, .. } => {
                for other in agents.keys().filter(|a| *a != agent_id) {
                    self.withdraw_offer(now, other, TransitionReason::OfferWithdrawn);
                }
                if let Some(a) = self.agents.get_mut(agent_id) {
                    a.calls_today += 1;
                }
                self.refresh(now, agent_id, TransitionReason::Answered);
                // Bridge at once: an announcement in progress is cut, never waited for.
                if call.announcing {
                    self.emit(QueueAction::StopAnnouncement {
                        call: call_id.clone(),
                    });
                }
                self.emit(QueueAction::Bridge {
                    call: call_id.clone(),
                    agent: agent_id.clone(),
                });
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.phase = Phase::Bridged {
                        agent: agent_id.clone(),
                        answered_at: now,
                    };
                    c.announcing = false;
                    c.first_answered_at.get_or_insert(now);
                }
                if let Some(q) = self.queues.get_mut(&call.queue) {
                    q.answered_today += 1;
                }
                self.log(
                    now,
                    &call.queue,
                    Some(call_id),
                    Some(agent_id),
                    QueueLogEvent::Connect {
                        wait_ms: millis(call.arrived_at, now),
                        ring_ms: millis(ring_since, now),
                    },
                );
            }
            Phase::CallbackAgent {
                attempts,
                requested_at,
                ..
            } => {
                self.refresh(now, agent_id, TransitionReason::Answered);
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.phase = Phase::CallbackDialing {
                        agent: agent_id.clone(),
                        attempts: *attempts,
                        requested_at: *requested_at,
                    };
                }
            }
            _ => {
                // Inconsistent (cannot happen by construction): free the agent, drop the leg.
                if let Some(a) = self.agents.get_mut(agent_id) {
                    a.activity = Activity::Idle;
                }
                self.refresh(now, agent_id, TransitionReason::Reconciled);
                self.emit(QueueAction::HangupAgentLeg {
                    call: call_id.clone(),
                    agent: agent_id.clone(),
                });
            }
        }
    }

    fn transfer(
        &mut self,
        now: Time,
        call_id: &CallId,
        to: TransferTarget,
    ) -> Result<(), QueueError> {
        let Some(call) = self.calls.get(call_id).cloned() else {
            return Err(QueueError::UnknownCall(call_id.clone()));
        };
        let Phase::Bridged { agent, answered_at } = &call.phase else {
            return Err(QueueError::NotBridged(call_id.clone()));
        };
        match &to {
            TransferTarget::Queue(city) if !self.queues.contains_key(city) => {
                return Err(QueueError::UnknownQueue(city.clone()));
            }
            // Bridging to another agent needs their leg: `AttendedTransfer`.
            TransferTarget::Agent(_) => return Err(QueueError::NotBridged(call_id.clone())),
            _ => {}
        }
        let wrap = self.wrap_up_of(agent, &call.queue);
        if let Some(a) = self.agents.get_mut(agent) {
            if a.activity
                == (Activity::OnCall {
                    call: call_id.clone(),
                })
            {
                a.activity = Activity::WrapUp {
                    until: later(now, wrap),
                };
            }
        }
        self.refresh(now, agent, TransitionReason::Transferred);
        self.log(
            now,
            &call.queue,
            Some(call_id),
            Some(agent),
            QueueLogEvent::Transfer {
                to: to.clone(),
                wait_ms: millis(
                    call.arrived_at,
                    call.first_answered_at.unwrap_or(*answered_at),
                ),
                talk_ms: millis(*answered_at, now),
            },
        );
        match to {
            TransferTarget::Agent(_) => {
                // Attended transfers come as `QueueInput::AttendedTransfer` (refused
                // before this point); nothing else to do here.
            }
            TransferTarget::Queue(city) => {
                self.move_to_queue(now, call_id, &city);
                self.emit(QueueAction::PlayHoldMusic {
                    call: call_id.clone(),
                });
                let position = self.position(call_id).unwrap_or(1);
                if let Some(c) = self.calls.get(call_id) {
                    let (category, urgency) = (c.category, c.urgency);
                    self.log(
                        now,
                        &city,
                        Some(call_id),
                        None,
                        QueueLogEvent::Enter {
                            category,
                            urgency,
                            position,
                        },
                    );
                }
            }
            TransferTarget::Unit(unit) => {
                self.calls.remove(call_id);
                self.emit(QueueAction::CallReleased {
                    call: call_id.clone(),
                    reason: ReleaseReason::TransferredToUnit(unit),
                });
            }
            TransferTarget::Survey => {
                self.calls.remove(call_id);
                self.emit(QueueAction::CallReleased {
                    call: call_id.clone(),
                    reason: ReleaseReason::TransferredToSurvey,
                });
            }
        }
        Ok(())
    }

    /// A call the ACD did not offer reaches `agent` (a consultation call).
    fn direct_call(
        &mut self,
        now: Time,
        agent_id: &AgentId,
        call: CallId,
    ) -> Result<(), QueueError> {
        let agent = self.agent_mut(agent_id)?;
        match &agent.activity {
            Activity::Ringing { .. } | Activity::OnCall { .. } => {
                return Err(QueueError::AgentBusy(agent_id.clone()));
            }
            Activity::Idle | Activity::WrapUp { .. } => {}
        }
        agent.activity = Activity::OnCall { call };
        agent.ready_at = None;
        self.refresh(now, agent_id, TransitionReason::DirectCall);
        Ok(())
    }

    fn direct_call_ended(&mut self, now: Time, agent_id: &AgentId, call: &CallId) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        if agent.activity != (Activity::OnCall { call: call.clone() }) {
            return;
        }
        agent.activity = Activity::Idle;
        self.refresh(now, agent_id, TransitionReason::CallEnded);
    }

    /// Attended transfer: the bridged call's caller now talks to `to`.
    fn attended_transfer(
        &mut self,
        now: Time,
        call_id: &CallId,
        to: &AgentId,
    ) -> Result<(), QueueError> {
        let Some(call) = self.calls.get(call_id).cloned() else {
            return Err(QueueError::UnknownCall(call_id.clone()));
        };
        let Phase::Bridged { agent, answered_at } = &call.phase else {
            return Err(QueueError::NotBridged(call_id.clone()));
        };
        let from = agent.clone();
        let target = self
            .agents
            .get(to)
            .ok_or_else(|| QueueError::UnknownAgent(to.clone()))?;
        let busy = match &target.activity {
            Activity::Ringing { .. } => true,
            // On another queue call (a direct call is what is being transferred into).
            Activity::OnCall { call: other } => self.calls.contains_key(other) || *to == from,
            Activity::Idle | Activity::WrapUp { .. } => false,
        };
        if busy {
            return Err(QueueError::AgentBusy(to.clone()));
        }
        let wrap = self.wrap_up_of(&from, &call.queue);
        if let Some(a) = self.agents.get_mut(&from) {
            if a.activity
                == (Activity::OnCall {
                    call: call_id.clone(),
                })
            {
                a.activity = Activity::WrapUp {
                    until: later(now, wrap),
                };
            }
        }
        self.refresh(now, &from, TransitionReason::Transferred);
        self.log(
            now,
            &call.queue,
            Some(call_id),
            Some(&from),
            QueueLogEvent::Transfer {
                to: TransferTarget::Agent(to.clone()),
                wait_ms: millis(
                    call.arrived_at,
                    call.first_answered_at.unwrap_or(*answered_at),
                ),
                talk_ms: millis(*answered_at, now),
            },
        );
        if let Some(a) = self.agents.get_mut(to) {
            a.activity = Activity::OnCall {
                call: call_id.clone(),
            };
            a.no_answer_count = 0;
            a.ready_at = None;
            a.calls_today += 1;
        }
        self.refresh(now, to, TransitionReason::TransferredIn);
        if let Some(c) = self.calls.get_mut(call_id) {
            c.phase = Phase::Bridged {
                agent: to.clone(),
                answered_at: now,
            };
        }
        Ok(())
    }

    /// Puts a call (back) in `city`'s queue as a waiting call, keeping its arrival
    /// order (it has waited longer than later callers).
    fn move_to_queue(&mut self, now: Time, call_id: &CallId, city: &CityId) {
        let Some(q) = self.queues.get(city).map(|q| q.config.clone()) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(call_id) {
            c.queue = city.clone();
            c.queue_entered_at = now;
            c.phase = Phase::Waiting;
            c.next_offer_at = now;
            c.tried.clear();
            c.visited.insert(city.clone());
            c.overflow_due = q.overflow_after_secs.map(|s| later(now, span(s)));
            c.last_position = None;
            c.next_announce_at = (q.announce_frequency_secs > 0).then_some(now);
            c.next_hold_at =
                (q.please_hold_secs > 0).then(|| on_second(later(now, span(q.please_hold_secs))));
        }
    }

    fn agent_mut(&mut self, agent: &AgentId) -> Result<&mut Agent, QueueError> {
        self.agents
            .get_mut(agent)
            .ok_or_else(|| QueueError::UnknownAgent(agent.clone()))
    }

    fn sign_in(&mut self, now: Time, agent_id: &AgentId) -> Result<(), QueueError> {
        let agent = self.agent_mut(agent_id)?;
        if agent.signed_in {
            return Ok(());
        }
        agent.signed_in = true;
        agent.pause = None;
        agent.no_answer_count = 0;
        let city = agent.config.city.clone();
        let registered = agent.registered;
        self.log(now, &city, None, Some(agent_id), QueueLogEvent::SignIn);
        if !registered {
            // Signed in from the console without a softphone: present only once it
            // registers (the log alone must give the sign-in rate).
            self.log(now, &city, None, Some(agent_id), QueueLogEvent::Offline);
        }
        self.refresh(now, agent_id, TransitionReason::SignIn);
        Ok(())
    }

    /// Back to the presence the durable log holds, without logging it again (the rows
    /// of the sign-in and pause are there already).
    fn restore(
        &mut self,
        now: Time,
        agent_id: &AgentId,
        pause: Option<PauseReason>,
    ) -> Result<(), QueueError> {
        let agent = self.agent_mut(agent_id)?;
        agent.signed_in = true;
        agent.pause = pause;
        self.refresh(now, agent_id, TransitionReason::Restored);
        Ok(())
    }

    fn sign_out(&mut self, now: Time, agent_id: &AgentId) -> Result<(), QueueError> {
        let agent = self.agent_mut(agent_id)?;
        if !agent.signed_in {
            return Ok(());
        }
        let city = agent.config.city.clone();
        self.withdraw_offer(now, agent_id, TransitionReason::SignOut);
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.signed_in = false;
            agent.pause = None;
        }
        self.log(now, &city, None, Some(agent_id), QueueLogEvent::SignOut);
        self.refresh(now, agent_id, TransitionReason::SignOut);
        Ok(())
    }

    fn pause(
        &mut self,
        now: Time,
        agent_id: &AgentId,
        reason: PauseReason,
    ) -> Result<(), QueueError> {
        let agent = self.agent_mut(agent_id)?;
        let city = agent.config.city.clone();
        self.withdraw_offer(now, agent_id, TransitionReason::Pause);
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.pause = Some(reason.clone());
        }
        self.log(
            now,
            &city,
            None,
            Some(agent_id),
            QueueLogEvent::Pause { reason },
        );
        self.refresh(now, agent_id, TransitionReason::Pause);
        Ok(())
    }

    fn unpause(&mut self, now: Time, agent_id: &AgentId) -> Result<(), QueueError> {
        let agent = self.agent_mut(agent_id)?;
        if agent.pause.is_none() {
            return Ok(());
        }
        agent.pause = None;
        agent.no_answer_count = 0;
        let city = agent.config.city.clone();
        self.log(now, &city, None, Some(agent_id), QueueLogEvent::Unpause);
        self.refresh(now, agent_id, TransitionReason::Unpause);
        Ok(())
    }

    fn end_wrap_up(&mut self, now: Time, agent_id: &AgentId) -> Result<(), QueueError> {
        let agent = self.agent_mut(agent_id)?;
        if !matches!(agent.activity, Activity::WrapUp { .. }) {
            return Ok(());
        }
        agent.activity = Activity::Idle;
        self.refresh(now, agent_id, TransitionReason::WrapUpEnded);
        Ok(())
    }

    fn registration_lost(&mut self, now: Time, agent_id: &AgentId) -> Result<(), QueueError> {
        self.go_offline(now, agent_id, TransitionReason::RegistrationLost)
    }

    /// The agent's phone is gone (registration lost, or the phone vanished): offline
    /// (离线) until it registers again.
    fn go_offline(
        &mut self,
        now: Time,
        agent_id: &AgentId,
        reason: TransitionReason,
    ) -> Result<(), QueueError> {
        let agent = self.agent_mut(agent_id)?;
        if !agent.registered {
            self.refresh(now, agent_id, reason);
            return Ok(());
        }
        let signed_in = agent.signed_in;
        let city = agent.config.city.clone();
        // A ringing offer cannot succeed without a contact: withdraw it now rather than
        // wait for the leg to fail.
        self.withdraw_offer(now, agent_id, reason.clone());
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.registered = false;
        }
        if signed_in {
            if self.duty_ok(agent_id, &city, now) {
                self.emit(QueueAction::AgentOffline {
                    agent: agent_id.clone(),
                    city: city.clone(),
                    at: now,
                });
            }
            self.log(now, &city, None, Some(agent_id), QueueLogEvent::Offline);
        }
        self.refresh(now, agent_id, reason);
        Ok(())
    }

    /// The agent's phone vanished on `call_id`: a ringing offer fails (unreachable), a
    /// bridged caller goes back to its queue at its place (the seq it arrived with), and
    /// the agent is offline until its phone registers again.
    fn agent_lost(
        &mut self,
        now: Time,
        call_id: &CallId,
        agent_id: &AgentId,
    ) -> Result<(), QueueError> {
        let activity = self.agent_mut(agent_id)?.activity.clone();
        match activity {
            Activity::Ringing { call, .. } if call == *call_id => {
                self.offer_failed(now, agent_id, Some(LegFailure::Unreachable));
            }
            Activity::OnCall { call } if call == *call_id => {
                if let Some(a) = self.agents.get_mut(agent_id) {
                    a.activity = Activity::Idle;
                }
                let bridged = self.calls.get(call_id).and_then(|c| match &c.phase {
                    Phase::Bridged { agent, answered_at } if agent == agent_id => {
                        Some((c.clone(), *answered_at))
                    }
                    _ => None,
                });
                if let Some((call, answered_at)) = bridged {
                    self.log(
                        now,
                        &call.queue,
                        Some(call_id),
                        Some(agent_id),
                        QueueLogEvent::AgentLost {
                            wait_ms: millis(call.arrived_at, answered_at),
                            talk_ms: millis(answered_at, now),
                        },
                    );
                    self.move_to_queue(now, call_id, &call.queue);
                    self.emit(QueueAction::PlayHoldMusic {
                        call: call_id.clone(),
                    });
                    let position = self.position(call_id).unwrap_or(1);
                    self.log(
                        now,
                        &call.queue,
                        Some(call_id),
                        None,
                        QueueLogEvent::Enter {
                            category: call.category,
                            urgency: call.urgency,
                            position,
                        },
                    );
                }
            }
            _ => {}
        }
        self.go_offline(now, agent_id, TransitionReason::AgentLost)
    }

    fn registered(&mut self, now: Time, agent_id: &AgentId) -> Result<(), QueueError> {
        let agent = self.agent_mut(agent_id)?;
        if agent.registered {
            return Ok(());
        }
        agent.registered = true;
        let signed_in = agent.signed_in;
        let city = agent.config.city.clone();
        if signed_in {
            self.log(now, &city, None, Some(agent_id), QueueLogEvent::Online);
        }
        self.refresh(now, agent_id, TransitionReason::Registered);
        Ok(())
    }

    /// Releases every agent the ACD holds ringing or on a call without a live leg.
    fn reconcile(&mut self, now: Time, legs: &BTreeSet<(CallId, AgentId)>) {
        let stale: Vec<(AgentId, Activity)> = self
            .agents
            .values()
            .filter_map(|a| match &a.activity {
                Activity::Ringing { call, .. } | Activity::OnCall { call }
                    if !legs.contains(&(call.clone(), a.config.id.clone())) =>
                {
                    Some((a.config.id.clone(), a.activity.clone()))
                }
                _ => None,
            })
            .collect();
        for (agent_id, activity) in stale {
            match activity {
                Activity::Ringing { call, .. } => {
                    if let Some(a) = self.agents.get_mut(&agent_id) {
                        a.activity = Activity::Idle;
                    }
                    self.refresh(now, &agent_id, TransitionReason::Reconciled);
                    self.remove_from_offer(now, &call, &agent_id, now);
                }
                Activity::OnCall { call: call_id } => {
                    let call = self.calls.get(&call_id).cloned();
                    match call.as_ref().map(|c| &c.phase) {
                        Some(Phase::Bridged { agent, answered_at }) if *agent == agent_id => {
                            let answered_at = *answered_at;
                            self.calls.remove(&call_id);
                            if let Some(call) = &call {
                                self.complete(
                                    now,
                                    call,
                                    &agent_id,
                                    answered_at,
                                    Party::System,
                                    TransitionReason::Reconciled,
                                );
                            }
                        }
                        Some(Phase::CallbackDialing { .. }) => {
                            self.callback_outcome(now, &call_id, CallbackResult::Unreachable);
                        }
                        _ => {}
                    }
                    // Whatever the call's record said, the agent has no leg: free them.
                    if let Some(a) = self.agents.get_mut(&agent_id) {
                        if a.activity
                            == (Activity::OnCall {
                                call: call_id.clone(),
                            })
                        {
                            a.activity = Activity::Idle;
                        }
                    }
                    self.refresh(now, &agent_id, TransitionReason::Reconciled);
                }
                Activity::Idle | Activity::WrapUp { .. } => {}
            }
        }
    }

    // ----- offers -------------------------------------------------------------------

    /// Withdraws a ringing offer from this agent without penalty (the agent's leg is
    /// cancelled; the call is offered again at once).
    fn withdraw_offer(&mut self, now: Time, agent_id: &AgentId, reason: TransitionReason) {
        let Some(call) = self
            .agents
            .get(agent_id)
            .and_then(Agent::ringing_call)
            .cloned()
        else {
            return;
        };
        if let Some(a) = self.agents.get_mut(agent_id) {
            a.activity = Activity::Idle;
        }
        self.refresh(now, agent_id, reason);
        self.emit(QueueAction::CancelRing {
            call: call.clone(),
            agent: agent_id.clone(),
        });
        self.remove_from_offer(now, &call, agent_id, now);
    }

    /// Withdraws every offer of a call (it is leaving or changing mode).
    fn withdraw_all_offers(&mut self, now: Time, call_id: &CallId, reason: TransitionReason) {
        let agents: Vec<AgentId> = match self.calls.get(call_id).map(|c| &c.phase) {
            Some(Phase::Ringing { agents, .. }) => agents.keys().cloned().collect(),
            Some(Phase::CallbackAgent { agent, .. }) => vec![agent.clone()],
            _ => Vec::new(),
        };
        for agent in agents {
            self.withdraw_offer(now, &agent, reason.clone());
        }
    }

    /// The call side of an offer ending: drop the agent from the ringing set; when none
    /// is left the call waits again from `next_offer_at`.
    fn remove_from_offer(
        &mut self,
        _now: Time,
        call_id: &CallId,
        agent_id: &AgentId,
        next_offer_at: Time,
    ) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        match &mut call.phase {
            Phase::Ringing { agents, .. } => {
                agents.remove(agent_id);
                if agents.is_empty() {
                    call.phase = Phase::Waiting;
                    call.next_offer_at = next_offer_at;
                }
            }
            Phase::CallbackAgent {
                agent,
                attempts,
                requested_at,
                ..
            } if agent == agent_id => {
                call.phase = Phase::Callback {
                    attempts: *attempts,
                    not_before: next_offer_at,
                    requested_at: *requested_at,
                };
            }
            _ => {}
        }
    }

    /// An offer to this agent failed (`None` = our ring timeout): apply the delays and
    /// the no-answer count, and put the call back after the retry delay.
    fn offer_failed(&mut self, now: Time, agent_id: &AgentId, failure: Option<LegFailure>) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        let Activity::Ringing { call, since } = agent.activity.clone() else {
            return;
        };
        let city = agent.config.city.clone();
        let Some(q) = self.queues.get(&city).map(|q| q.config.clone()) else {
            return;
        };
        let mut auto_pause = false;
        if let Some(agent) = self.agents.get_mut(agent_id) {
            agent.activity = Activity::Idle;
            let (delay, counts) = match failure {
                None | Some(LegFailure::NoAnswer) => (q.no_answer_delay_secs, true),
                Some(LegFailure::Busy) => (q.busy_delay_secs, false),
                Some(LegFailure::Unreachable) => (q.busy_delay_secs, true),
                Some(LegFailure::Rejected) => (q.reject_delay_secs, false),
            };
            agent.ready_at = (delay > 0).then(|| later(now, span(delay)));
            if counts {
                agent.no_answer_count += 1;
                if q.max_no_answer > 0
                    && agent.no_answer_count >= q.max_no_answer
                    && agent.pause.is_none()
                {
                    agent.pause = Some(PauseReason::max_no_answer());
                    auto_pause = true;
                }
            }
        }
        let reason = match failure {
            None => TransitionReason::RingTimeout,
            Some(f) => TransitionReason::LegFailed(f),
        };
        if failure.is_none() {
            self.emit(QueueAction::CancelRing {
                call: call.clone(),
                agent: agent_id.clone(),
            });
        }
        let queue = self
            .calls
            .get(&call)
            .map_or(city.clone(), |c| c.queue.clone());
        self.log(
            now,
            &queue,
            Some(&call),
            Some(agent_id),
            QueueLogEvent::RingNoAnswer {
                ring_ms: millis(since, now),
            },
        );
        if auto_pause {
            self.log(
                now,
                &city,
                None,
                Some(agent_id),
                QueueLogEvent::Pause {
                    reason: PauseReason::max_no_answer(),
                },
            );
        }
        self.refresh(now, agent_id, reason);
        let retry = self
            .calls
            .get(&call)
            .and_then(|c| self.queues.get(&c.queue))
            .map_or(0, |q| q.config.retry_delay_secs);
        self.remove_from_offer(now, &call, agent_id, later(now, span(retry)));
    }

    // ----- the clock ----------------------------------------------------------------

    fn run(&mut self, now: Time) {
        if now > self.last_now {
            self.last_now = now;
        }
        self.roll_day(now);
        self.check_roster(now);
        self.expire_offers(now);
        self.end_wrap_ups(now);
        self.expire_callbacks(now);
        self.overflow_and_timeouts(now);
        self.dispatch(now);
        self.announce(now);
    }

    fn roll_day(&mut self, now: Time) {
        let today = local_date(now);
        if today == self.today {
            return;
        }
        self.today = today;
        for q in self.queues.values_mut() {
            q.answered_today = 0;
            q.abandoned_today = 0;
        }
        for a in self.agents.values_mut() {
            a.calls_today = 0;
        }
    }

    fn check_roster(&mut self, now: Time) {
        if now <= self.roster_checked_until {
            return;
        }
        // Scanning the roster is the expensive part: only when a shift start is due.
        if self.config.roster.is_empty() || self.next_roster_check.is_some_and(|t| t > now) {
            self.roster_checked_until = now;
            return;
        }
        let grace = span(self.config.absent_grace_secs);
        let after = self.roster_checked_until - grace;
        let up_to = now - grace;
        let mut absent = Vec::new();
        for entry in &self.config.roster {
            for shift in roster::shift_starts_between(entry, &self.calendar, after, up_to) {
                if self.agents.get(&entry.agent).is_some_and(|a| !a.signed_in) {
                    absent.push((entry.agent.clone(), shift.start));
                }
            }
        }
        absent.sort();
        absent.dedup();
        for (agent, shift_start) in absent {
            let Some(city) = self.agents.get(&agent).map(|a| a.config.city.clone()) else {
                continue;
            };
            self.emit(QueueAction::Absent {
                agent: agent.clone(),
                city: city.clone(),
                shift_start,
            });
            self.log(
                now,
                &city,
                None,
                Some(&agent),
                QueueLogEvent::Absent { shift_start },
            );
        }
        self.roster_checked_until = now;
        // No shift within the look-ahead: look again tomorrow.
        self.next_roster_check =
            roster::next_shift_start(&self.config.roster, &self.calendar, up_to)
                .map(|s| s + grace)
                .or_else(|| Some(later(now, TimeDelta::days(1))));
    }

    fn expire_offers(&mut self, now: Time) {
        let expired: Vec<AgentId> = self
            .calls
            .values()
            .flat_map(|c| match &c.phase {
                Phase::Ringing { agents, until } if *until <= now => {
                    agents.keys().cloned().collect()
                }
                Phase::CallbackAgent { agent, until, .. } if *until <= now => vec![agent.clone()],
                _ => Vec::new(),
            })
            .collect();
        for agent in expired {
            self.offer_failed(now, &agent, None);
        }
    }

    fn end_wrap_ups(&mut self, now: Time) {
        let done: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| matches!(a.activity, Activity::WrapUp { until } if until <= now))
            .map(|a| a.config.id.clone())
            .collect();
        for agent in done {
            if let Some(a) = self.agents.get_mut(&agent) {
                a.activity = Activity::Idle;
            }
            self.refresh(now, &agent, TransitionReason::WrapUpEnded);
        }
        for a in self.agents.values_mut() {
            if a.ready_at.is_some_and(|t| t <= now) {
                a.ready_at = None;
            }
        }
    }

    fn expire_callbacks(&mut self, now: Time) {
        let expired: Vec<(Call, u32)> = self
            .calls
            .values()
            .filter_map(|c| match &c.phase {
                Phase::Callback {
                    attempts,
                    requested_at,
                    ..
                } => {
                    let max = self
                        .queues
                        .get(&c.queue)
                        .map_or(0, |q| q.config.callback_max_wait_secs);
                    (later(*requested_at, span(max)) <= now).then(|| (c.clone(), *attempts))
                }
                _ => None,
            })
            .collect();
        for (call, attempts) in expired {
            self.give_up_callback(now, &call, attempts, CallbackGiveUp::Expired);
        }
    }

    /// Max wait → voice message; no agents here → overflow or voice message; waited
    /// `overflow_after_secs` → overflow if a target has agents. Only waiting calls
    /// (a ringing offer is let finish first).
    fn overflow_and_timeouts(&mut self, now: Time) {
        // Decide on references first; clone only the calls that move.
        let mut due: Vec<(u8, u64, CallId)> = self
            .calls
            .values()
            .filter(|c| c.phase == Phase::Waiting)
            .filter(|c| {
                let Some(q) = self.queues.get(&c.queue) else {
                    return false;
                };
                later(c.arrived_at, span(q.config.max_wait_secs)) <= now
                    || c.overflow_due.is_some_and(|t| t <= now)
                    || (q.config.overflow_when_no_agents && !self.staffed(&c.queue, now))
            })
            .map(|c| {
                let (rank, seq) = c.order_key();
                (rank, seq, c.id.clone())
            })
            .collect();
        if due.is_empty() {
            return;
        }
        due.sort();
        for (_, _, call_id) in due {
            let Some(call) = self.calls.get(&call_id).cloned() else {
                continue;
            };
            let Some(q) = self.queues.get(&call.queue).map(|q| q.config.clone()) else {
                continue;
            };
            if later(call.arrived_at, span(q.max_wait_secs)) <= now {
                self.send_to_voice_message(now, &call, VoiceMessageReason::MaxWait);
                continue;
            }
            if q.overflow_when_no_agents && !self.staffed(&call.queue, now) {
                match self.overflow_target(&call, now) {
                    Some(target) => self.overflow(now, &call, &target),
                    None => self.send_to_voice_message(now, &call, VoiceMessageReason::NoAgents),
                }
                continue;
            }
            if call.overflow_due.is_some_and(|due| due <= now) {
                match self.overflow_target(&call, now) {
                    Some(target) => self.overflow(now, &call, &target),
                    None => {
                        if let Some(c) = self.calls.get_mut(&call_id) {
                            c.overflow_due = Some(later(now, OVERFLOW_RECHECK));
                        }
                    }
                }
            }
        }
    }

    /// The first queue along the overflow chain (partner city, then the province
    /// center, …) not yet visited and with a ready agent.
    fn overflow_target(&self, call: &Call, now: Time) -> Option<CityId> {
        let mut current = call.queue.clone();
        let mut seen = call.visited.clone();
        loop {
            let q = self.queues.get(&current)?;
            let next = q
                .config
                .overflow_to
                .clone()
                .unwrap_or_else(|| self.config.province_center.clone());
            if !seen.insert(next.clone()) {
                return None;
            }
            if self.staffed(&next, now) {
                return Some(next);
            }
            current = next;
        }
    }

    fn overflow(&mut self, now: Time, call: &Call, target: &CityId) {
        self.log(
            now,
            &call.queue,
            Some(&call.id),
            None,
            QueueLogEvent::Overflow { to: target.clone() },
        );
        self.move_to_queue(now, &call.id, target);
        self.emit(QueueAction::Overflowed {
            call: call.id.clone(),
            from: call.queue.clone(),
            to: target.clone(),
        });
    }

    fn send_to_voice_message(&mut self, now: Time, call: &Call, reason: VoiceMessageReason) {
        self.calls.remove(&call.id);
        self.emit(QueueAction::ToVoiceMessage {
            call: call.id.clone(),
            reason,
        });
        self.log(
            now,
            &call.queue,
            Some(&call.id),
            None,
            QueueLogEvent::VoiceMessage {
                reason,
                wait_ms: millis(call.arrived_at, now),
            },
        );
    }

    fn duty_ok(&self, agent: &AgentId, city: &CityId, now: Time) -> bool {
        match self.queues.get(city).map(|q| q.config.duty) {
            Some(DutyPolicy::AnySignedIn) => true,
            Some(DutyPolicy::Roster) => self.on_duty(agent, now),
            None => false,
        }
    }

    /// Signed in, registered, not paused and on duty: will take calls when free.
    fn is_staffed(&self, agent: &Agent, now: Time) -> bool {
        agent.signed_in
            && agent.registered
            && agent.pause.is_none()
            && self.duty_ok(&agent.config.id, &agent.config.city, now)
    }

    fn staffed(&self, city: &CityId, now: Time) -> bool {
        self.agents
            .values()
            .any(|a| &a.config.city == city && self.is_staffed(a, now))
    }

    /// Calls holding a place in `city`'s queue, in order: urgent first, then arrival.
    fn line(&self, city: &CityId) -> Vec<CallId> {
        let mut line: Vec<&Call> = self
            .calls
            .values()
            .filter(|c| &c.queue == city && c.phase.in_line())
            .collect();
        line.sort_by_key(|c| c.order_key());
        line.into_iter().map(|c| c.id.clone()).collect()
    }

    fn rule_matches(rule: &TierRule, agent: &Agent, call: &Call) -> bool {
        if agent.config.level > rule.max_level {
            return false;
        }
        if !rule.skill_match {
            return true;
        }
        let area_ok = match call.area {
            None | Some(BusinessArea::Unknown) => true,
            Some(area) => agent.config.skills.is_empty() || agent.config.skills.contains(&area),
        };
        let category_ok =
            agent.config.categories.is_empty() || agent.config.categories.contains(&call.category);
        area_ok && category_ok
    }

    /// The tier rule in force for a call: the last one whose wait has passed, widened
    /// further while no signed-in agent matches it (`widen_when_no_match`).
    fn active_rule(&self, call: &Call, q: &QueueConfig, now: Time) -> Option<TierRule> {
        let waited = (now - call.queue_entered_at).num_seconds().max(0);
        let waited = u64::try_from(waited).unwrap_or(0);
        let mut index = q
            .tier_rules
            .iter()
            .rposition(|r| r.after_secs <= waited)
            .unwrap_or(0);
        if q.widen_when_no_match {
            while index + 1 < q.tier_rules.len() {
                let rule = q.tier_rules.get(index)?;
                let matched = self.agents.values().any(|a| {
                    a.config.city == q.city
                        && self.is_staffed(a, now)
                        && Self::rule_matches(rule, a, call)
                });
                if matched {
                    break;
                }
                index += 1;
            }
        }
        q.tier_rules.get(index).copied()
    }

    fn eligible(&self, call: &Call, q: &QueueConfig, now: Time) -> Vec<Candidate> {
        let rule = self.active_rule(call, q, now);
        self.agents
            .values()
            .filter(|a| {
                a.config.city == q.city
                    && a.state == AgentState::Available
                    && a.activity == Activity::Idle
                    && a.ready_at.is_none_or(|t| t <= now)
                    && self.duty_ok(&a.config.id, &q.city, now)
                    && rule.is_none_or(|r| Self::rule_matches(&r, a, call))
            })
            .map(|a| Candidate {
                id: a.config.id.clone(),
                order: a.order,
                idle_since: a.idle_since,
                calls_today: a.calls_today,
            })
            .collect()
    }

    fn dispatch(&mut self, now: Time) {
        let cities: Vec<CityId> = self.queues.keys().cloned().collect();
        for city in cities {
            let free = |a: &Agent| {
                a.config.city == city
                    && a.state == AgentState::Available
                    && a.ready_at.is_none_or(|t| t <= now)
            };
            if !self.agents.values().any(free) {
                continue;
            }
            let Some(q) = self.queues.get(&city).map(|q| q.config.clone()) else {
                continue;
            };
            for call_id in self.line(&city) {
                if !self.agents.values().any(free) {
                    break;
                }
                let Some(call) = self.calls.get(&call_id) else {
                    continue;
                };
                let (ready, callback) = match call.phase {
                    Phase::Waiting => (call.next_offer_at <= now, false),
                    Phase::Callback { not_before, .. } => (not_before <= now, true),
                    _ => (false, false),
                };
                if !ready {
                    continue;
                }
                let call = call.clone();
                let eligible = self.eligible(&call, &q, now);
                if eligible.is_empty() {
                    continue;
                }
                // Prefer agents this call has not rung yet this round.
                let untried: Vec<Candidate> = eligible
                    .iter()
                    .filter(|c| !call.tried.contains(&c.id))
                    .cloned()
                    .collect();
                let pool = if untried.is_empty() || q.strategy == Strategy::RingAll {
                    if let Some(c) = self.calls.get_mut(&call_id) {
                        c.tried.clear();
                    }
                    eligible
                } else {
                    untried
                };
                let rr_last = self.queues.get(&city).and_then(|q| q.rr_last);
                let chosen = pick(q.strategy, &pool, rr_last, &mut self.rng, callback);
                if chosen.is_empty() {
                    continue;
                }
                self.offer(now, &call, &q, &chosen, callback);
            }
        }
    }

    fn offer(
        &mut self,
        now: Time,
        call: &Call,
        q: &QueueConfig,
        agents: &[AgentId],
        callback: bool,
    ) {
        let until = later(now, span(q.ring_timeout_secs));
        let mut ringing = BTreeMap::new();
        for agent_id in agents {
            if let Some(a) = self.agents.get_mut(agent_id) {
                a.activity = Activity::Ringing {
                    call: call.id.clone(),
                    since: now,
                };
                let order = a.order;
                if let Some(queue) = self.queues.get_mut(&q.city) {
                    queue.rr_last = Some(order);
                }
            }
            self.refresh(now, agent_id, TransitionReason::Offered);
            if callback {
                self.emit(QueueAction::PlaceCallback {
                    call: call.id.clone(),
                    agent: agent_id.clone(),
                    number: call.caller.clone(),
                });
            } else {
                self.emit(QueueAction::RingAgent {
                    call: call.id.clone(),
                    agent: agent_id.clone(),
                    caller: call.caller.clone(),
                    category: call.category,
                    urgency: call.urgency,
                });
            }
            ringing.insert(agent_id.clone(), now);
        }
        let Some(c) = self.calls.get_mut(&call.id) else {
            return;
        };
        c.tried.extend(agents.iter().cloned());
        c.phase = match (&c.phase, agents.first()) {
            (
                Phase::Callback {
                    attempts,
                    requested_at,
                    ..
                },
                Some(agent),
            ) => Phase::CallbackAgent {
                agent: agent.clone(),
                attempts: *attempts,
                requested_at: *requested_at,
                until,
            },
            _ => Phase::Ringing {
                agents: ringing,
                until,
            },
        };
    }

    fn announce(&mut self, now: Time) {
        let cities: Vec<CityId> = self.queues.keys().cloned().collect();
        for city in cities {
            let Some(queue) = self.queues.get(&city) else {
                continue;
            };
            let something_due = self.calls.values().any(|c| {
                c.queue == city
                    && c.phase.caller_listening()
                    && (c.next_announce_at.is_some_and(|t| t <= now)
                        || c.next_hold_at.is_some_and(|t| t <= now))
            });
            if !something_due {
                continue;
            }
            let q = queue.config.clone();
            let avg = queue.avg_handle_ms;
            let staffed = self
                .agents
                .values()
                .filter(|a| a.config.city == city && self.is_staffed(a, now))
                .count();
            for (index, call_id) in self.line(&city).into_iter().enumerate() {
                let position = u32::try_from(index + 1).unwrap_or(u32::MAX);
                let Some(call) = self.calls.get_mut(&call_id) else {
                    continue;
                };
                if !call.phase.caller_listening() {
                    continue;
                }
                let mut spoke = false;
                if call.next_announce_at.is_some_and(|t| t <= now) {
                    call.next_announce_at =
                        Some(on_second(later(now, span(q.announce_frequency_secs))));
                    if call.last_position != Some(position) {
                        call.last_position = Some(position);
                        call.announcing = true;
                        spoke = true;
                        let estimated_wait = estimate(avg, position, staffed);
                        self.outputs.push_back(QueueAction::Announce {
                            call: call_id.clone(),
                            position,
                            estimated_wait,
                        });
                    }
                }
                let Some(call) = self.calls.get_mut(&call_id) else {
                    continue;
                };
                if call.next_hold_at.is_some_and(|t| t <= now) {
                    call.next_hold_at = Some(on_second(later(now, span(q.please_hold_secs))));
                    if !spoke {
                        call.announcing = true;
                        self.outputs
                            .push_back(QueueAction::PleaseHold { call: call_id });
                    }
                }
            }
        }
    }

    // ----- output helpers -----------------------------------------------------------

    /// Recomputes the agent's visible state and reports a change.
    fn refresh(&mut self, now: Time, agent_id: &AgentId, reason: TransitionReason) {
        let Some(agent) = self.agents.get_mut(agent_id) else {
            return;
        };
        let present = agent.signed_in && agent.registered;
        match (present, agent.present_since) {
            (true, None) => agent.present_since = Some(now),
            (false, Some(since)) => {
                if since < now {
                    agent.presence.push((since, now));
                }
                agent.present_since = None;
            }
            _ => {}
        }
        let new = agent.derived_state();
        if new == agent.state {
            return;
        }
        if new == AgentState::Available {
            agent.idle_since = now;
        }
        let from = std::mem::replace(&mut agent.state, new.clone());
        self.outputs.push_back(QueueAction::AgentStateChanged {
            agent: agent_id.clone(),
            from,
            to: new,
            at: now,
            reason,
        });
    }

    fn emit(&mut self, action: QueueAction) {
        self.outputs.push_back(action);
    }

    fn log(
        &mut self,
        at: Time,
        queue: &CityId,
        call: Option<&CallId>,
        agent: Option<&AgentId>,
        event: QueueLogEvent,
    ) {
        self.outputs.push_back(QueueAction::Log(QueueLogEntry {
            at,
            queue: queue.clone(),
            call: call.cloned(),
            agent: agent.cloned(),
            event,
        }));
    }
}

/// Estimated wait at `position`: average handling time × position ÷ agents staffed.
fn estimate(avg_handle_ms: Option<i64>, position: u32, staffed: usize) -> Option<Duration> {
    let avg = u64::try_from(avg_handle_ms?).ok()?;
    let staffed = u64::try_from(staffed).ok().filter(|n| *n > 0)?;
    Some(Duration::from_millis(
        avg.saturating_mul(u64::from(position)) / staffed,
    ))
}
