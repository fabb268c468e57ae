//! Property tests: random event sequences never leave an agent stale, and the ACD
//! never rings an agent who already has a leg.
//!
//! A small model of the shell keeps the agent legs it holds, created by `RingAgent` /
//! `PlaceCallback` and removed by `CancelRing` / `HangupAgentLeg` or by the events it
//! reports. It can also "lose" a leg without telling the ACD (the stuck-agent bug).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::config::Strategy as Pick;
use super::tests::{Sim, agent, call, city, config};
use super::{
    AgentId, AgentState, CallbackResult, LegFailure, Party, PauseReason, QueueAction, QueueInput,
    TransferTarget,
};
use crate::domain::{CallCategory, Urgency};
use crate::ticket::model::CallId;

const AGENTS: usize = 4;
const CALLS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Leg {
    answered: bool,
    callback: bool,
    /// A consultation call to the agent (`DirectCall`), not a queue call.
    consult: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Arrive(usize, bool),
    CallerHangup(usize),
    AgentHangup(usize),
    Answer(usize),
    LegFail(usize, LegFailure),
    CallbackRequest(usize),
    CallbackResult(usize, CallbackResult),
    Transfer(usize, u8),
    SignIn(usize),
    SignOut(usize),
    Pause(usize),
    Unpause(usize),
    EndWrapUp(usize),
    RegistrationLost(usize),
    Registered(usize),
    Advance(i64),
    /// The caller of the call bridged to this agent hangs up.
    CallerHangupOf(usize),
    LoseLeg(usize),
    Reconcile,
    /// Another agent's consultation call reaches this agent.
    Consult(usize),
    /// That consultation ends without a transfer.
    ConsultEnd(usize),
    /// Attended transfer of the first agent's call to the second (consulted or idle).
    AttendedTransfer(usize, usize),
    /// The agent's phone vanishes (leg silent or unanswered): reported as lost.
    AgentVanishes(usize),
}

fn leg_failure() -> impl Strategy<Value = LegFailure> {
    prop_oneof![
        Just(LegFailure::NoAnswer),
        Just(LegFailure::Busy),
        Just(LegFailure::Rejected),
        Just(LegFailure::Unreachable),
    ]
}

fn callback_result() -> impl Strategy<Value = CallbackResult> {
    prop_oneof![
        Just(CallbackResult::Answered),
        Just(CallbackResult::NoAnswer),
        Just(CallbackResult::Busy),
        Just(CallbackResult::Unreachable),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let a = 0..AGENTS;
    let c = 0..CALLS;
    prop_oneof![
        4 => (c.clone(), any::<bool>()).prop_map(|(c, u)| Op::Arrive(c, u)),
        2 => c.clone().prop_map(Op::CallerHangup),
        2 => a.clone().prop_map(Op::AgentHangup),
        4 => a.clone().prop_map(Op::Answer),
        2 => (a.clone(), leg_failure()).prop_map(|(a, f)| Op::LegFail(a, f)),
        1 => c.clone().prop_map(Op::CallbackRequest),
        2 => (c.clone(), callback_result()).prop_map(|(c, r)| Op::CallbackResult(c, r)),
        1 => (c, 0u8..3).prop_map(|(c, t)| Op::Transfer(c, t)),
        2 => a.clone().prop_map(Op::SignIn),
        1 => a.clone().prop_map(Op::SignOut),
        1 => a.clone().prop_map(Op::Pause),
        1 => a.clone().prop_map(Op::Unpause),
        1 => a.clone().prop_map(Op::EndWrapUp),
        1 => a.clone().prop_map(Op::RegistrationLost),
        2 => a.clone().prop_map(Op::Registered),
        3 => (0i64..40_000).prop_map(Op::Advance),
        1 => (0usize..16).prop_map(Op::LoseLeg),
        1 => Just(Op::Reconcile),
        2 => a.clone().prop_map(Op::Consult),
        1 => a.clone().prop_map(Op::ConsultEnd),
        2 => (a.clone(), a.clone()).prop_map(|(f, t)| Op::AttendedTransfer(f, t)),
        1 => a.clone().prop_map(Op::AgentVanishes),
    ]
}

/// The shell's side: legs it holds, and those it lost without telling the ACD.
struct Shell {
    sim: Sim,
    legs: BTreeMap<(CallId, AgentId), Leg>,
    lost: BTreeSet<(CallId, AgentId)>,
    /// Calls bridged to an agent (queue calls and answered callbacks).
    bridged: usize,
    /// Calls that ended in the ACD's log as completed.
    completed: usize,
}

impl Shell {
    fn new(sim: Sim) -> Self {
        Self {
            sim,
            legs: BTreeMap::new(),
            lost: BTreeSet::new(),
            bridged: 0,
            completed: 0,
        }
    }

    fn leg_of(&self, agent: &AgentId) -> Option<((CallId, AgentId), Leg)> {
        self.legs
            .iter()
            .find(|((_, a), _)| a == agent)
            .map(|(k, v)| (k.clone(), *v))
    }

    fn drop_answered_legs_of(&mut self, c: &CallId) {
        self.legs.retain(|(lc, _), leg| !(lc == c && leg.answered));
    }

    /// Carries out the ACD's actions, checking the invariants on the way.
    fn process(&mut self, actions: Vec<QueueAction>) -> Result<(), TestCaseError> {
        for action in actions {
            match action {
                QueueAction::RingAgent { call, agent, .. } => {
                    prop_assert!(
                        self.leg_of(&agent).is_none(),
                        "ACD rang {agent} for {call:?} while the shell holds a leg for them"
                    );
                    let leg = Leg {
                        answered: false,
                        callback: false,
                        consult: false,
                    };
                    self.legs.insert((call, agent), leg);
                }
                QueueAction::PlaceCallback { call, agent, .. } => {
                    prop_assert!(
                        self.leg_of(&agent).is_none(),
                        "ACD reserved {agent} for callback {call:?} while the shell holds a leg"
                    );
                    let leg = Leg {
                        answered: false,
                        callback: true,
                        consult: false,
                    };
                    self.legs.insert((call, agent), leg);
                }
                QueueAction::CancelRing { call, agent } => {
                    let leg = self.legs.remove(&(call.clone(), agent.clone()));
                    self.lost.remove(&(call.clone(), agent.clone()));
                    prop_assert!(
                        leg.is_none_or(|l| !l.answered),
                        "cancelled an answered leg {call:?}/{agent}"
                    );
                }
                QueueAction::HangupAgentLeg { call, agent } => {
                    self.legs.remove(&(call.clone(), agent.clone()));
                    self.lost.remove(&(call, agent));
                }
                QueueAction::Bridge { .. } => self.bridged += 1,
                QueueAction::Log(entry) => {
                    if matches!(entry.event, super::QueueLogEvent::Complete { .. }) {
                        self.completed += 1;
                    }
                }
                QueueAction::AgentStateChanged { from, to, .. } => {
                    if matches!(to, AgentState::Ringing { .. }) {
                        prop_assert_eq!(from, AgentState::Available);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn send(&mut self, input: QueueInput) -> Result<bool, TestCaseError> {
        let result = self.sim.acd.handle(self.sim.now, input);
        let out = self.sim.drain();
        self.process(out)?;
        Ok(result.is_ok())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Arrive(c, urgent) => {
                let _ = self.send(QueueInput::CallArrived {
                    call: call(&format!("c{c}")),
                    city: city(),
                    category: CallCategory::Consultation,
                    urgency: if *urgent {
                        Urgency::Urgent
                    } else {
                        Urgency::Normal
                    },
                    area: None,
                    caller: format!("1390000000{c}"),
                })?;
            }
            Op::CallerHangup(c) => {
                let c = call(&format!("c{c}"));
                // The caller's BYE tears down a bridge: the agent leg goes with it.
                let bridged: Vec<AgentId> = self
                    .legs
                    .iter()
                    .filter(|((lc, _), leg)| *lc == c && leg.answered)
                    .map(|((_, a), _)| a.clone())
                    .collect();
                let result = self.sim.acd.handle(
                    self.sim.now,
                    QueueInput::CallEnded {
                        call: c.clone(),
                        who_hung_up: Party::Caller,
                    },
                );
                prop_assert!(result.is_ok());
                if !bridged.is_empty() {
                    self.drop_answered_legs_of(&c);
                }
                let out = self.sim.drain();
                self.process(out)?;
            }
            Op::AgentHangup(n) => {
                let a = agent(&format!("a{n}"));
                if self.leg_of(&a).is_some_and(|(_, leg)| leg.consult) {
                    return self.step(&Op::ConsultEnd(*n));
                }
                if let Some(((c, _), leg)) = self.leg_of(&a) {
                    if leg.answered {
                        let result = self.sim.acd.handle(
                            self.sim.now,
                            QueueInput::CallEnded {
                                call: c.clone(),
                                who_hung_up: Party::Agent,
                            },
                        );
                        prop_assert!(result.is_ok());
                        self.drop_answered_legs_of(&c);
                        let out = self.sim.drain();
                        self.process(out)?;
                    }
                }
            }
            Op::Answer(a) => {
                let a = agent(&format!("a{a}"));
                if let Some(((c, _), leg)) = self.leg_of(&a) {
                    if !leg.answered {
                        if let Some(l) = self.legs.get_mut(&(c.clone(), a.clone())) {
                            l.answered = true;
                        }
                        self.send(QueueInput::AgentAnswered { call: c, agent: a })?;
                    }
                }
            }
            Op::LegFail(a, reason) => {
                let a = agent(&format!("a{a}"));
                if let Some(((c, _), leg)) = self.leg_of(&a) {
                    if !leg.answered {
                        self.legs.remove(&(c.clone(), a.clone()));
                        self.send(QueueInput::AgentLegFailed {
                            call: c,
                            agent: a,
                            reason: *reason,
                        })?;
                    }
                }
            }
            Op::CallbackRequest(c) => {
                let _ = self.send(QueueInput::CallbackRequested {
                    call: call(&format!("c{c}")),
                })?;
            }
            Op::CallbackResult(c, result) => {
                let c = call(&format!("c{c}"));
                let dialing = self
                    .legs
                    .iter()
                    .any(|((lc, _), leg)| *lc == c && leg.answered && leg.callback);
                if dialing {
                    let ok = self.sim.acd.handle(
                        self.sim.now,
                        QueueInput::CallbackOutcome {
                            call: c.clone(),
                            result: *result,
                        },
                    );
                    prop_assert!(ok.is_ok());
                    if *result == CallbackResult::Answered {
                        for ((lc, _), leg) in &mut self.legs {
                            if *lc == c {
                                leg.callback = false;
                            }
                        }
                    } else {
                        self.drop_answered_legs_of(&c);
                    }
                    let out = self.sim.drain();
                    self.process(out)?;
                }
            }
            Op::Transfer(c, target) => {
                let c = call(&format!("c{c}"));
                let to = match target {
                    0 => TransferTarget::Queue(city()),
                    1 => TransferTarget::Unit(crate::ticket::units::UnitId::new("u")),
                    _ => TransferTarget::Survey,
                };
                let result = self.sim.acd.handle(
                    self.sim.now,
                    QueueInput::Transfer {
                        call: c.clone(),
                        to,
                    },
                );
                if result.is_ok() {
                    self.drop_answered_legs_of(&c);
                }
                let out = self.sim.drain();
                self.process(out)?;
            }
            Op::SignIn(a) => {
                self.send(QueueInput::SignIn {
                    agent: agent(&format!("a{a}")),
                })?;
            }
            Op::SignOut(a) => {
                self.send(QueueInput::SignOut {
                    agent: agent(&format!("a{a}")),
                })?;
            }
            Op::Pause(a) => {
                self.send(QueueInput::Pause {
                    agent: agent(&format!("a{a}")),
                    reason: PauseReason::new("break"),
                })?;
            }
            Op::Unpause(a) => {
                self.send(QueueInput::Unpause {
                    agent: agent(&format!("a{a}")),
                })?;
            }
            Op::EndWrapUp(a) => {
                self.send(QueueInput::EndWrapUp {
                    agent: agent(&format!("a{a}")),
                })?;
            }
            Op::RegistrationLost(a) => {
                self.send(QueueInput::RegistrationLost {
                    agent: agent(&format!("a{a}")),
                })?;
            }
            Op::Registered(a) => {
                self.send(QueueInput::Registered {
                    agent: agent(&format!("a{a}")),
                })?;
            }
            Op::Advance(ms) => {
                let out = self.sim.advance(*ms);
                self.process(out)?;
            }
            Op::AgentVanishes(a) => {
                let a = agent(&format!("a{a}"));
                if let Some(((c, _), leg)) = self.leg_of(&a)
                    && !leg.callback
                {
                    self.legs.remove(&(c.clone(), a.clone()));
                    self.send(QueueInput::AgentLost {
                        call: c,
                        agent: a.clone(),
                    })?;
                    // Never left ringing or on a call: offline until it registers again.
                    let state = self.sim.acd.agent_state(&a).cloned();
                    prop_assert!(
                        matches!(state, Some(AgentState::Offline | AgentState::LoggedOut)),
                        "{a} is {state:?} after vanishing"
                    );
                }
            }
            Op::CallerHangupOf(a) => {
                let a = agent(&format!("a{a}"));
                if let Some(((c, _), leg)) = self.leg_of(&a) {
                    if leg.answered && !leg.callback && !leg.consult {
                        let n = c.0.trim_start_matches('c').parse().unwrap_or(0);
                        self.step(&Op::CallerHangup(n))?;
                    }
                }
            }
            Op::LoseLeg(i) => {
                let key = self.legs.keys().nth(*i % self.legs.len().max(1)).cloned();
                if let Some(key) = key {
                    self.legs.remove(&key);
                    self.lost.insert(key);
                }
            }
            Op::Reconcile => {
                self.reconcile()?;
            }
            Op::Consult(n) => {
                let a = agent(&format!("a{n}"));
                let key = (call(&format!("k{n}")), a.clone());
                let busy = self.leg_of(&a).is_some();
                let ok = self.send(QueueInput::DirectCall {
                    agent: a.clone(),
                    call: key.0.clone(),
                })?;
                prop_assert!(!(ok && busy), "{a} took a consultation while holding a leg");
                if ok {
                    let leg = Leg {
                        answered: true,
                        callback: false,
                        consult: true,
                    };
                    self.legs.insert(key, leg);
                }
            }
            Op::ConsultEnd(n) => {
                let a = agent(&format!("a{n}"));
                if let Some(((k, _), leg)) = self.leg_of(&a)
                    && leg.consult
                {
                    self.legs.remove(&(k.clone(), a.clone()));
                    self.send(QueueInput::DirectCallEnded { agent: a, call: k })?;
                }
            }
            Op::AttendedTransfer(f, t) => {
                let from = agent(&format!("a{f}"));
                let to = agent(&format!("a{t}"));
                let Some(((c, _), leg)) = self.leg_of(&from) else {
                    return self.check_legs(true);
                };
                if !leg.answered || leg.callback || leg.consult {
                    return self.check_legs(true);
                }
                let consult = self.leg_of(&to).filter(|(_, l)| l.consult);
                let ok = self.send(QueueInput::AttendedTransfer {
                    call: c.clone(),
                    to: to.clone(),
                })?;
                if ok {
                    self.legs.remove(&(c.clone(), from));
                    if let Some((key, _)) = consult {
                        self.legs.remove(&key);
                    }
                    let leg = Leg {
                        answered: true,
                        callback: false,
                        consult: false,
                    };
                    self.legs.insert((c, to), leg);
                }
            }
        }
        self.check_legs(true)
    }

    fn reconcile(&mut self) -> Result<(), TestCaseError> {
        let live: BTreeSet<(CallId, AgentId)> = self.legs.keys().cloned().collect();
        self.send(QueueInput::LiveLegs(live))?;
        self.lost.clear();
        self.check_legs(false)
    }

    /// Every agent the ACD holds ringing or on a call has a leg in the shell (or one
    /// the shell lost silently, when `allow_lost`).
    fn check_legs(&self, allow_lost: bool) -> Result<(), TestCaseError> {
        for (id, state) in self.sim.acd.agent_states() {
            if let Some(c) = state.leg_call() {
                let key = (c.clone(), id.clone());
                prop_assert!(
                    self.legs.contains_key(&key) || (allow_lost && self.lost.contains(&key)),
                    "{id} is {} for {c:?} without a live leg",
                    state.name()
                );
            }
        }
        Ok(())
    }
}

fn shell() -> Shell {
    Shell::new(Sim::new(stress_config()))
}

fn stress_config() -> super::QueuesConfig {
    let mut cfg = config(Pick::LongestIdle, AGENTS);
    for q in &mut cfg.queues {
        q.announce_frequency_secs = 20;
        q.please_hold_secs = 30;
        q.callback_retry_delay_secs = 10;
        q.busy_delay_secs = 3;
        q.reject_delay_secs = 3;
    }
    cfg
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_events_never_ring_a_busy_agent_and_reconcile_leaves_no_stale_agent(
        ops in proptest::collection::vec(op(), 1..120)
    ) {
        let mut shell = shell();
        for op in &ops {
            shell.step(op)?;
        }
        shell.reconcile()?;
    }

    #[test]
    fn strategies_never_ring_a_busy_agent(
        strategy in prop_oneof![
            Just(Pick::LongestIdle),
            Just(Pick::RoundRobin),
            Just(Pick::FewestCalls),
            Just(Pick::RingAll),
            Just(Pick::Linear),
            Just(Pick::Random),
        ],
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        let mut cfg = config(strategy, AGENTS);
        if let Some(q) = cfg.queues.first_mut() {
            q.callback_retry_delay_secs = 10;
        }
        let mut shell = Shell::new(Sim::new(cfg));
        for op in &ops {
            shell.step(op)?;
        }
        shell.reconcile()?;
    }
}

fn run_thousand_calls(seed: u64) -> Result<(), TestCaseError> {
    let mut cfg = stress_config();
    for q in &mut cfg.queues {
        // Callers wait for the agents here rather than leave for voice mail, so that
        // most calls are answered and hung up by one side or the other.
        q.overflow_when_no_agents = false;
        q.max_wait_secs = 3600;
        q.wrap_up_secs = 5;
    }
    let mut shell = Shell::new(Sim::new(cfg));

    for a in 0..AGENTS {
        shell.step(&Op::Registered(a))?;
        shell.step(&Op::SignIn(a))?;
    }
    let mut rng = super::strategy::SplitMix64::new(seed);
    let mut roll = |n: u64| usize::try_from(rng.next_u64() % n).unwrap_or(0);
    let mut arrived = 0;
    while arrived < 1000 {
        let op = match roll(100) {
            0..=9 => {
                arrived += 1;
                Op::Arrive(arrived, roll(10) == 0)
            }
            10..=17 => Op::CallerHangup(arrived.saturating_sub(roll(8))),
            18..=44 => Op::Answer(roll(AGENTS as u64)),
            45..=54 => Op::AgentHangup(roll(AGENTS as u64)),
            55..=64 => Op::CallerHangupOf(roll(AGENTS as u64)),
            65..=66 => Op::LegFail(roll(AGENTS as u64), LegFailure::Busy),
            67 => Op::LegFail(roll(AGENTS as u64), LegFailure::NoAnswer),
            68 => Op::CallbackRequest(arrived.saturating_sub(roll(5))),
            69..=71 => Op::CallbackResult(
                arrived.saturating_sub(roll(20)),
                [CallbackResult::Answered, CallbackResult::NoAnswer][roll(2)],
            ),
            72 => Op::Pause(roll(AGENTS as u64)),
            73..=75 => Op::Unpause(roll(AGENTS as u64)),
            76 => Op::RegistrationLost(roll(AGENTS as u64)),
            77..=79 => Op::Registered(roll(AGENTS as u64)),
            80 => Op::SignOut(roll(AGENTS as u64)),
            81..=83 => Op::SignIn(roll(AGENTS as u64)),
            84 => Op::Transfer(arrived.saturating_sub(roll(5)), 0),
            _ => Op::Advance(i64::try_from(roll(15_000)).unwrap_or(0)),
        };
        shell.step(&op)?;
    }
    // Wind down: everyone back, every ringing leg answered, every call hung up by a
    // random side, until the ACD and the shell hold nothing.
    for _ in 0..5_000 {
        if shell.sim.acd.call_count() == 0 && shell.legs.is_empty() {
            break;
        }
        for a in 0..AGENTS {
            shell.step(&Op::Registered(a))?;
            shell.step(&Op::SignIn(a))?;
            shell.step(&Op::Unpause(a))?;
            let id = agent(&format!("a{a}"));
            match shell.leg_of(&id) {
                Some(((c, _), leg)) if leg.answered && leg.callback => {
                    let n = c.0.trim_start_matches('c').parse().unwrap_or(0);
                    shell.step(&Op::CallbackResult(n, CallbackResult::Answered))?;
                }
                Some(((c, _), leg)) if leg.answered => {
                    if roll(2) == 0 {
                        shell.step(&Op::AgentHangup(a))?;
                    } else {
                        let n = c.0.trim_start_matches('c').parse().unwrap_or(0);
                        shell.step(&Op::CallerHangup(n))?;
                    }
                }
                Some(_) => shell.step(&Op::Answer(a))?,
                None => {}
            }
        }
        shell.step(&Op::Advance(10_000))?;
    }
    shell.step(&Op::Advance(3_600_000))?;
    prop_assert_eq!(shell.sim.acd.call_count(), 0);
    prop_assert!(shell.legs.is_empty());
    prop_assert!(shell.bridged >= 300, "only {} calls bridged", shell.bridged);
    prop_assert!(
        shell.completed >= 300,
        "only {} calls completed",
        shell.completed
    );
    for (id, state) in shell.sim.acd.agent_states() {
        prop_assert!(
            matches!(state, AgentState::Available | AgentState::Paused { .. }),
            "{id} left {}",
            state.name()
        );
    }
    Ok(())
}

#[test]
fn a_thousand_calls_with_random_hangups_by_either_side_leave_no_agent_stale() {
    for seed in [1, 2] {
        if let Err(error) = run_thousand_calls(seed) {
            panic!("seed {seed}: {error}");
        }
    }
}
