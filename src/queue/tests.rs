//! ACD tests in simulated time (milliseconds, no sleeps).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, TimeDelta};

use super::*;
use crate::calendar::Calendar;
use crate::domain::{CallCategory, Urgency};
use crate::ivr::city::CityId;
use crate::ivr::hours::{ClockTime, Days};
use crate::ticket::model::{BusinessArea, CallId};
use crate::ticket::units::UnitId;

pub(super) const CITY: &str = "jinan";
pub(super) const PROVINCE: &str = "shandong";

pub(super) fn at(text: &str) -> Time {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Thursday 2025-10-09 09:00 in Jinan: a working day.
pub(super) fn start() -> Time {
    at("2025-10-09T09:00:00+08:00")
}

pub(super) fn calendar() -> Calendar {
    Calendar::from_toml_str(include_str!("../../config/calendar/cn-workdays.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn city() -> CityId {
    CityId::new(CITY)
}

pub(super) fn province() -> CityId {
    CityId::new(PROVINCE)
}

pub(super) fn agent(id: &str) -> AgentId {
    AgentId::new(id)
}

pub(super) fn call(id: &str) -> CallId {
    CallId(id.to_owned())
}

/// A Jinan queue with `agents` ("a0", "a1", …), no roster needed, and an empty
/// province-center queue; announcements and "please hold" off unless a test turns them on.
pub(super) fn config(strategy: Strategy, agents: usize) -> QueuesConfig {
    let mut jinan = QueueConfig::new(city());
    jinan.strategy = strategy;
    jinan.duty = DutyPolicy::AnySignedIn;
    jinan.announce_frequency_secs = 0;
    jinan.please_hold_secs = 0;
    let mut center = QueueConfig::new(province());
    center.duty = DutyPolicy::AnySignedIn;
    center.announce_frequency_secs = 0;
    center.please_hold_secs = 0;
    QueuesConfig {
        province_center: province(),
        queues: vec![jinan, center],
        agents: (0..agents)
            .map(|i| QueueAgentConfig::new(agent(&format!("a{i}")), city()))
            .collect(),
        roster: Vec::new(),
        absent_grace_secs: 0,
    }
}

pub(super) struct Sim {
    pub(super) acd: Acd,
    pub(super) now: Time,
}

impl Sim {
    pub(super) fn new(config: QueuesConfig) -> Self {
        Self::at(config, start())
    }

    pub(super) fn at(config: QueuesConfig, now: Time) -> Self {
        let acd = Acd::new(config, calendar(), now, 7).unwrap_or_else(|e| panic!("{e}"));
        Self { acd, now }
    }

    pub(super) fn drain(&mut self) -> Vec<QueueAction> {
        std::iter::from_fn(|| self.acd.poll_output()).collect()
    }

    pub(super) fn input(&mut self, input: QueueInput) -> Vec<QueueAction> {
        if let Err(error) = self.acd.handle(self.now, input) {
            panic!("unexpected error: {error}");
        }
        self.drain()
    }

    pub(super) fn try_input(&mut self, input: QueueInput) -> Result<Vec<QueueAction>, QueueError> {
        let result = self.acd.handle(self.now, input);
        let out = self.drain();
        result.map(|()| out)
    }

    /// Moves simulated time forward by `ms`, firing every timer on the way.
    pub(super) fn advance(&mut self, ms: i64) -> Vec<QueueAction> {
        let target = self.now + TimeDelta::milliseconds(ms);
        let mut out = Vec::new();
        while let Some(due) = self.acd.poll_timeout() {
            if due > target {
                break;
            }
            assert!(due > self.now, "timer at {due} not after now {}", self.now);
            self.now = due;
            self.acd.handle_timeout(due);
            out.extend(self.drain());
        }
        self.now = target;
        self.acd.handle_timeout(target);
        out.extend(self.drain());
        out
    }

    pub(super) fn ready(&mut self, id: &str) -> Vec<QueueAction> {
        let mut out = self.input(QueueInput::Registered { agent: agent(id) });
        out.extend(self.input(QueueInput::SignIn { agent: agent(id) }));
        out
    }

    pub(super) fn arrive(&mut self, id: &str) -> Vec<QueueAction> {
        self.arrive_with(id, Urgency::Normal, None)
    }

    pub(super) fn arrive_with(
        &mut self,
        id: &str,
        urgency: Urgency,
        area: Option<BusinessArea>,
    ) -> Vec<QueueAction> {
        self.input(QueueInput::CallArrived {
            call: call(id),
            city: city(),
            category: CallCategory::Consultation,
            urgency,
            area,
            caller: format!("1390531{id:0>4}"),
        })
    }

    pub(super) fn state(&self, id: &str) -> AgentState {
        self.acd
            .agent_state(&agent(id))
            .cloned()
            .unwrap_or_else(|| panic!("no agent {id}"))
    }

    /// Answer, then hang up from the caller side.
    pub(super) fn answer_and_end(&mut self, call_id: &str, agent_id: &str) {
        let out = self.input(QueueInput::AgentAnswered {
            call: call(call_id),
            agent: agent(agent_id),
        });
        assert!(out.contains(&QueueAction::Bridge {
            call: call(call_id),
            agent: agent(agent_id)
        }));
        self.input(QueueInput::CallEnded {
            call: call(call_id),
            who_hung_up: Party::Caller,
        });
    }
}

/// `(call, agent)` of every `RingAgent` in `out`.
pub(super) fn rings(out: &[QueueAction]) -> Vec<(String, String)> {
    out.iter()
        .filter_map(|a| match a {
            QueueAction::RingAgent { call, agent, .. } => Some((call.0.clone(), agent.0.clone())),
            _ => None,
        })
        .collect()
}

fn rung_agent(out: &[QueueAction]) -> String {
    match rings(out).as_slice() {
        [(_, agent)] => agent.clone(),
        other => panic!("expected one ring, got {other:?}"),
    }
}

fn has(out: &[QueueAction], wanted: impl Fn(&QueueAction) -> bool) -> bool {
    out.iter().any(wanted)
}

/// Runs `calls` calls one after another, each answered by whoever is rung and ended
/// after 60 s; counts answers per agent.
fn distribution(strategy: Strategy, agents: usize, calls: usize) -> BTreeMap<String, usize> {
    let mut cfg = config(strategy, agents);
    if let Some(q) = cfg.queues.first_mut() {
        q.wrap_up_secs = 0;
    }
    let mut sim = Sim::new(cfg);
    for i in 0..agents {
        sim.ready(&format!("a{i}"));
        sim.advance(1000);
    }
    let mut counts = BTreeMap::new();
    for n in 0..calls {
        let id = format!("c{n}");
        let out = sim.arrive(&id);
        let who = rung_agent(&out);
        sim.advance(500);
        sim.answer_and_end(&id, &who);
        *counts.entry(who).or_insert(0) += 1;
        sim.advance(1000);
    }
    counts
}

#[test]
fn longest_idle_rings_the_agent_idle_longest_and_spreads_evenly() {
    // a0 signed in first, so it is idle longest and gets the first call.
    let mut sim = Sim::new(config(Strategy::LongestIdle, 3));
    for id in ["a0", "a1", "a2"] {
        sim.ready(id);
        sim.advance(1000);
    }
    assert_eq!(rung_agent(&sim.arrive("c1")), "a0");
    let counts = distribution(Strategy::LongestIdle, 3, 30);
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [10, 10, 10]);
}

#[test]
fn round_robin_remembers_the_last_agent() {
    let mut sim = Sim::new(config(Strategy::RoundRobin, 3));
    for id in ["a2", "a1", "a0"] {
        sim.ready(id);
    }
    let order: Vec<String> = (0..4)
        .map(|n| {
            let id = format!("c{n}");
            let who = rung_agent(&sim.arrive(&id));
            sim.answer_and_end(&id, &who);
            sim.advance(31_000);
            who
        })
        .collect();
    assert_eq!(order, ["a0", "a1", "a2", "a0"]);
}

#[test]
fn fewest_calls_prefers_the_agent_with_fewest_answers_today() {
    let mut cfg = config(Strategy::FewestCalls, 2);
    if let Some(q) = cfg.queues.first_mut() {
        q.wrap_up_secs = 0;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    // a0 takes two calls before a1 signs in.
    for id in ["c1", "c2"] {
        assert_eq!(rung_agent(&sim.arrive(id)), "a0");
        sim.answer_and_end(id, "a0");
        sim.advance(1000);
    }
    sim.ready("a1");
    sim.advance(60_000);
    // a0 has now been idle longer, but a1 has fewer calls: a1, a1, then tie → longest idle.
    let mut got = Vec::new();
    for id in ["c3", "c4", "c5"] {
        let who = rung_agent(&sim.arrive(id));
        sim.answer_and_end(id, &who);
        sim.advance(1000);
        got.push(who);
    }
    assert_eq!(got, ["a1", "a1", "a0"]);
}

#[test]
fn linear_always_starts_from_the_top() {
    let counts = distribution(Strategy::Linear, 3, 5);
    assert_eq!(counts.get("a0"), Some(&5));
    assert_eq!(counts.len(), 1);
}

#[test]
fn random_is_seeded_and_reaches_every_agent() {
    let first = distribution(Strategy::Random, 4, 200);
    let second = distribution(Strategy::Random, 4, 200);
    assert_eq!(first, second, "same seed, same choices");
    assert_eq!(first.len(), 4);
    assert!(first.values().all(|n| *n >= 25), "{first:?}");
}

#[test]
fn ring_all_rings_everyone_and_the_first_answer_wins() {
    let mut sim = Sim::new(config(Strategy::RingAll, 3));
    for id in ["a0", "a1", "a2"] {
        sim.ready(id);
    }
    let out = sim.arrive("c1");
    assert_eq!(rings(&out).len(), 3);
    let out = sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a1"),
    });
    assert!(has(&out, |a| *a
        == QueueAction::Bridge {
            call: call("c1"),
            agent: agent("a1")
        }));
    for other in ["a0", "a2"] {
        assert!(has(&out, |a| *a
            == QueueAction::CancelRing {
                call: call("c1"),
                agent: agent(other)
            }));
        assert_eq!(sim.state(other), AgentState::Available);
    }
    // A late answer from a0 (crossed the CANCEL) is hung up, and a0 stays available.
    let out = sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    assert_eq!(
        out,
        [QueueAction::HangupAgentLeg {
            call: call("c1"),
            agent: agent("a0")
        }]
    );
    assert_eq!(sim.state("a0"), AgentState::Available);
}

#[test]
fn ring_all_counts_a_no_answer_only_on_the_ring_timeout_as_asterisk_does() {
    // app_queue `wait_for_answer`: members hung up because another member answered are
    // not "ring no answer" (no auto-pause); every member still ringing at the timeout is.
    let mut cfg = config(Strategy::RingAll, 3);
    if let Some(q) = cfg.queues.first_mut() {
        q.max_no_answer = 1;
        q.ring_timeout_secs = 15;
        q.wrap_up_secs = 0;
    }
    let mut sim = Sim::new(cfg);
    for id in ["a0", "a1", "a2"] {
        sim.ready(id);
    }
    sim.arrive("c1");
    let out = sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a1"),
    });
    assert!(!has(&out, |a| matches!(a, QueueAction::Log(e)
        if matches!(e.event, QueueLogEvent::RingNoAnswer { .. }))));
    for id in ["a0", "a2"] {
        assert_eq!(sim.state(id), AgentState::Available, "{id}");
    }
    sim.input(QueueInput::CallEnded {
        call: call("c1"),
        who_hung_up: Party::Caller,
    });
    // Nobody answers the next call: at the ring timeout every ringing agent misses it.
    let out = sim.arrive("c2");
    assert_eq!(rings(&out).len(), 3);
    let out = sim.advance(15_000);
    let misses = out
        .iter()
        .filter(|a| {
            matches!(a, QueueAction::Log(e)
            if matches!(e.event, QueueLogEvent::RingNoAnswer { .. }))
        })
        .count();
    assert_eq!(misses, 3, "{out:?}");
    for id in ["a0", "a1", "a2"] {
        assert_eq!(
            sim.state(id),
            AgentState::Paused {
                reason: PauseReason::max_no_answer()
            },
            "{id}"
        );
    }
}

fn skilled(id: &str, level: u8, skills: Vec<BusinessArea>) -> QueueAgentConfig {
    let mut a = QueueAgentConfig::new(agent(id), city());
    a.level = level;
    a.skills = skills;
    a
}

#[test]
fn tier_rules_prefer_skill_then_widen_after_the_configured_waits() {
    let mut cfg = config(Strategy::LongestIdle, 0);
    cfg.agents = vec![
        skilled("legal", 1, vec![BusinessArea::LegalAid]),
        skilled("notary2", 2, vec![BusinessArea::Notary]),
    ];
    if let Some(q) = cfg.queues.first_mut() {
        q.widen_when_no_match = false;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("legal");
    sim.ready("notary2");
    // A notary question: no level-1 notary agent; level 2 only after 30 s.
    let out = sim.arrive_with("c1", Urgency::Normal, Some(BusinessArea::Notary));
    assert!(rings(&out).is_empty());
    assert!(rings(&sim.advance(29_999)).is_empty());
    let out = sim.advance(1);
    assert_eq!(rings(&out), [("c1".to_owned(), "notary2".to_owned())]);
    // A legal-aid question goes straight to the level-1 legal-aid agent.
    let out = sim.arrive_with("c2", Urgency::Normal, Some(BusinessArea::LegalAid));
    assert_eq!(rings(&out), [("c2".to_owned(), "legal".to_owned())]);
}

#[test]
fn tier_rules_widen_at_once_when_no_matching_agent_is_signed_in() {
    let mut cfg = config(Strategy::LongestIdle, 0);
    cfg.agents = vec![
        skilled("legal", 1, vec![BusinessArea::LegalAid]),
        skilled("notary2", 2, vec![BusinessArea::Notary]),
    ];
    let mut sim = Sim::new(cfg);
    sim.ready("legal");
    sim.ready("notary2");
    let out = sim.arrive_with("c1", Urgency::Normal, Some(BusinessArea::Notary));
    assert_eq!(rings(&out), [("c1".to_owned(), "notary2".to_owned())]);
}

#[test]
fn tier_rules_fall_back_to_anyone_after_sixty_seconds() {
    let mut cfg = config(Strategy::LongestIdle, 0);
    cfg.agents = vec![skilled("legal", 1, vec![BusinessArea::LegalAid])];
    if let Some(q) = cfg.queues.first_mut() {
        q.widen_when_no_match = false;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("legal");
    sim.arrive_with("c1", Urgency::Normal, Some(BusinessArea::Mediation));
    assert!(rings(&sim.advance(59_999)).is_empty());
    assert_eq!(rings(&sim.advance(1)).len(), 1);
}

#[test]
fn wrap_up_lasts_exactly_its_length_and_the_agent_override_wins() {
    let mut cfg = config(Strategy::LongestIdle, 2);
    cfg.agents[1].wrap_up_secs = Some(90);
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    sim.arrive("c1");
    sim.answer_and_end("c1", "a0");
    let until = sim.now + TimeDelta::seconds(30);
    assert_eq!(sim.state("a0"), AgentState::WrapUp { until });
    // A call waiting during wrap-up is not offered to a0 before the end.
    assert!(rings(&sim.arrive("c2")).is_empty());
    assert!(rings(&sim.advance(29_999)).is_empty());
    assert!(matches!(sim.state("a0"), AgentState::WrapUp { .. }));
    let out = sim.advance(1);
    assert_eq!(sim.now, until);
    assert_eq!(rings(&out), [("c2".to_owned(), "a0".to_owned())]);

    sim.input(QueueInput::SignOut { agent: agent("a0") });
    sim.ready("a1");
    sim.arrive("c3");
    sim.answer_and_end("c3", "a1");
    assert_eq!(
        sim.state("a1"),
        AgentState::WrapUp {
            until: sim.now + TimeDelta::seconds(90)
        }
    );
}

#[test]
fn ending_wrap_up_early_offers_the_waiting_call_at_once() {
    let mut sim = Sim::new(config(Strategy::LongestIdle, 1));
    sim.ready("a0");
    sim.arrive("c1");
    sim.answer_and_end("c1", "a0");
    assert!(matches!(sim.state("a0"), AgentState::WrapUp { .. }));
    assert!(rings(&sim.arrive("c2")).is_empty(), "still in wrap-up");
    let out = sim.input(QueueInput::EndWrapUp { agent: agent("a0") });
    assert_eq!(rings(&out), [("c2".to_owned(), "a0".to_owned())]);
    assert!(matches!(sim.state("a0"), AgentState::Ringing { .. }));
    // Outside wrap-up it changes nothing.
    let out = sim.input(QueueInput::EndWrapUp { agent: agent("a0") });
    assert!(rings(&out).is_empty());
    assert!(matches!(sim.state("a0"), AgentState::Ringing { .. }));
}

#[test]
fn ring_timeout_moves_on_and_max_no_answer_pauses_the_agent() {
    let mut cfg = config(Strategy::LongestIdle, 1);
    if let Some(q) = cfg.queues.first_mut() {
        // Keep the call here when its only agent is paused.
        q.overflow_when_no_agents = false;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    assert_eq!(rung_agent(&sim.arrive("c1")), "a0");
    // 20 s ring, 5 s retry, three times.
    let mut out = Vec::new();
    out.extend(sim.advance(20_000));
    assert!(has(&out, |a| *a
        == QueueAction::CancelRing {
            call: call("c1"),
            agent: agent("a0")
        }));
    assert_eq!(sim.state("a0"), AgentState::Available);
    assert!(
        rings(&sim.advance(4_999)).is_empty(),
        "retry delay respected"
    );
    assert_eq!(rings(&sim.advance(1)).len(), 1);
    sim.advance(25_000);
    assert_eq!(sim.state("a0"), AgentState::Ringing { call: call("c1") });
    let out = sim.advance(20_000);
    assert_eq!(
        sim.state("a0"),
        AgentState::Paused {
            reason: PauseReason::max_no_answer()
        }
    );
    assert!(has(&out, |a| matches!(
        a,
        QueueAction::AgentStateChanged {
            to: AgentState::Paused { .. },
            reason: TransitionReason::RingTimeout,
            ..
        }
    )));
    // Unpausing resets the count: the agent is offered again.
    let out = sim.input(QueueInput::Unpause { agent: agent("a0") });
    assert!(rings(&out).is_empty(), "retry delay still runs");
    assert_eq!(rings(&sim.advance(5_000)).len(), 1);
}

#[test]
fn busy_agent_is_skipped_for_the_busy_delay() {
    let mut cfg = config(Strategy::Linear, 2);
    if let Some(q) = cfg.queues.first_mut() {
        q.retry_delay_secs = 0;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    sim.ready("a1");
    assert_eq!(rung_agent(&sim.arrive("c1")), "a0");
    let out = sim.input(QueueInput::AgentLegFailed {
        call: call("c1"),
        agent: agent("a0"),
        reason: LegFailure::Busy,
    });
    assert_eq!(rung_agent(&out), "a1");
    sim.answer_and_end("c1", "a1");
    // a1 in wrap-up, a0 in busy delay for 30 s: a new call waits until the delay ends.
    assert!(rings(&sim.arrive("c2")).is_empty());
    assert!(rings(&sim.advance(29_000)).is_empty());
    let out = sim.advance(1_000);
    assert_eq!(rings(&out), [("c2".to_owned(), "a0".to_owned())]);
}

#[test]
fn urgent_calls_jump_ahead_fifo_otherwise() {
    let mut sim = Sim::new(config(Strategy::LongestIdle, 1));
    sim.ready("a0");
    sim.arrive("c0");
    sim.input(QueueInput::AgentAnswered {
        call: call("c0"),
        agent: agent("a0"),
    });
    sim.arrive("c1");
    sim.arrive("c2");
    sim.arrive_with("u1", Urgency::Urgent, None);
    assert_eq!(sim.acd.position(&call("u1")), Some(1));
    assert_eq!(sim.acd.position(&call("c1")), Some(2));
    assert_eq!(sim.acd.position(&call("c2")), Some(3));
    sim.input(QueueInput::CallEnded {
        call: call("c0"),
        who_hung_up: Party::Caller,
    });
    let out = sim.advance(30_000);
    assert_eq!(rings(&out), [("u1".to_owned(), "a0".to_owned())]);
}

fn with_province_agent(mut cfg: QueuesConfig) -> QueuesConfig {
    cfg.agents
        .push(QueueAgentConfig::new(agent("p0"), province()));
    cfg
}

#[test]
fn overflow_after_the_configured_wait_to_the_province_center() {
    let mut sim = Sim::new(with_province_agent(config(Strategy::LongestIdle, 1)));
    sim.ready("a0");
    sim.ready("p0");
    sim.arrive("c0");
    sim.input(QueueInput::AgentAnswered {
        call: call("c0"),
        agent: agent("a0"),
    });
    sim.arrive("c1");
    let out = sim.advance(119_999);
    assert!(!has(&out, |a| matches!(a, QueueAction::Overflowed { .. })));
    let out = sim.advance(1);
    assert!(has(&out, |a| *a
        == QueueAction::Overflowed {
            call: call("c1"),
            from: city(),
            to: province()
        }));
    assert_eq!(rings(&out), [("c1".to_owned(), "p0".to_owned())]);
}

#[test]
fn overflow_at_once_when_the_city_has_no_signed_in_agent() {
    let mut sim = Sim::new(with_province_agent(config(Strategy::LongestIdle, 1)));
    sim.ready("p0");
    let out = sim.arrive("c1");
    assert!(has(
        &out,
        |a| matches!(a, QueueAction::Overflowed { to, .. } if *to == province())
    ));
    assert_eq!(rings(&out), [("c1".to_owned(), "p0".to_owned())]);
    // Paused agents do not count as signed in for this purpose.
    sim.ready("a0");
    sim.input(QueueInput::Pause {
        agent: agent("a0"),
        reason: PauseReason::new("meal"),
    });
    let out = sim.arrive("c2");
    assert!(has(&out, |a| matches!(a, QueueAction::Overflowed { .. })));
}

#[test]
fn partner_city_is_tried_before_the_province_center() {
    let mut cfg = with_province_agent(config(Strategy::LongestIdle, 1));
    let mut zibo = QueueConfig::new(CityId::new("zibo"));
    zibo.duty = DutyPolicy::AnySignedIn;
    cfg.queues.push(zibo);
    cfg.agents
        .push(QueueAgentConfig::new(agent("z0"), CityId::new("zibo")));
    if let Some(q) = cfg.queues.first_mut() {
        q.overflow_to = Some(CityId::new("zibo"));
    }
    let mut sim = Sim::new(cfg);
    sim.ready("p0");
    sim.ready("z0");
    let out = sim.arrive("c1");
    assert!(has(
        &out,
        |a| matches!(a, QueueAction::Overflowed { to, .. } if to.as_str() == "zibo")
    ));
    // Without zibo agents, the chain continues to the province center.
    sim.input(QueueInput::SignOut { agent: agent("z0") });
    let out = sim.arrive("c2");
    assert!(has(
        &out,
        |a| matches!(a, QueueAction::Overflowed { to, .. } if *to == province())
    ));
}

#[test]
fn nobody_anywhere_sends_the_caller_to_a_voice_message() {
    let mut sim = Sim::new(with_province_agent(config(Strategy::LongestIdle, 1)));
    let out = sim.arrive("c1");
    assert!(has(&out, |a| *a
        == QueueAction::ToVoiceMessage {
            call: call("c1"),
            reason: VoiceMessageReason::NoAgents
        }));
    assert_eq!(sim.acd.call_count(), 0);
}

#[test]
fn max_wait_sends_the_caller_to_a_voice_message() {
    let mut cfg = config(Strategy::LongestIdle, 1);
    if let Some(q) = cfg.queues.first_mut() {
        q.overflow_after_secs = None;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    sim.arrive("c0");
    sim.input(QueueInput::AgentAnswered {
        call: call("c0"),
        agent: agent("a0"),
    });
    sim.arrive("c1");
    assert!(!has(&sim.advance(599_999), |a| matches!(
        a,
        QueueAction::ToVoiceMessage { .. }
    )));
    let out = sim.advance(1);
    assert!(has(&out, |a| *a
        == QueueAction::ToVoiceMessage {
            call: call("c1"),
            reason: VoiceMessageReason::MaxWait
        }));
}

#[test]
fn callback_keeps_its_place_reserves_the_agent_first_and_retries() {
    let mut cfg = config(Strategy::LongestIdle, 1);
    if let Some(q) = cfg.queues.first_mut() {
        q.overflow_after_secs = None;
        q.wrap_up_secs = 0;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    sim.arrive("c0");
    sim.input(QueueInput::AgentAnswered {
        call: call("c0"),
        agent: agent("a0"),
    });
    sim.arrive("c1");
    sim.arrive("c2");
    let out = sim.input(QueueInput::CallbackRequested { call: call("c1") });
    assert!(has(&out, |a| *a
        == QueueAction::CallbackRegistered {
            call: call("c1"),
            position: 1
        }));
    // The original caller leg hangs up: that is expected, the place is kept.
    sim.input(QueueInput::CallEnded {
        call: call("c1"),
        who_hung_up: Party::Caller,
    });
    assert_eq!(sim.acd.position(&call("c1")), Some(1));
    assert_eq!(sim.acd.position(&call("c2")), Some(2));
    sim.advance(10_000);
    let out = sim.input(QueueInput::CallEnded {
        call: call("c0"),
        who_hung_up: Party::Caller,
    });
    // The agent is reserved (state change) before the callback is placed, to the
    // caller's own number.
    let reserved = out.iter().position(|a| {
        matches!(a, QueueAction::AgentStateChanged { to: AgentState::Ringing { call: c }, .. } if *c == call("c1"))
    });
    let placed = out.iter().position(|a| {
        *a == QueueAction::PlaceCallback {
            call: call("c1"),
            agent: agent("a0"),
            number: format!("1390531{:0>4}", "c1"),
        }
    });
    assert!(
        reserved.is_some() && placed.is_some() && reserved < placed,
        "{out:?}"
    );
    assert!(rings(&out).is_empty(), "c2 must wait behind the callback");
    // Agent answers, the caller does not: retry after the retry delay, still first.
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    assert_eq!(sim.state("a0"), AgentState::OnCall { call: call("c1") });
    let out = sim.input(QueueInput::CallbackOutcome {
        call: call("c1"),
        result: CallbackResult::NoAnswer,
    });
    assert!(has(&out, |a| matches!(
        a,
        QueueAction::Log(QueueLogEntry {
            event: QueueLogEvent::CallbackAttempt {
                attempt: 1,
                result: CallbackResult::NoAnswer
            },
            ..
        })
    )));
    // Meanwhile c2 gets the free agent.
    assert_eq!(rings(&out), [("c2".to_owned(), "a0".to_owned())]);
    sim.answer_and_end("c2", "a0");
    let out = sim.advance(300_000);
    assert!(has(
        &out,
        |a| matches!(a, QueueAction::PlaceCallback { call: c, .. } if *c == call("c1"))
    ));
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    sim.input(QueueInput::CallbackOutcome {
        call: call("c1"),
        result: CallbackResult::Answered,
    });
    assert_eq!(sim.state("a0"), AgentState::OnCall { call: call("c1") });
    let out = sim.input(QueueInput::CallEnded {
        call: call("c1"),
        who_hung_up: Party::Caller,
    });
    assert!(has(&out, |a| matches!(
        a,
        QueueAction::Log(QueueLogEntry {
            event: QueueLogEvent::Complete {
                who_hung_up: Party::Caller,
                ..
            },
            ..
        })
    )));
}

#[test]
fn callback_gives_up_after_the_last_attempt() {
    let mut cfg = config(Strategy::LongestIdle, 1);
    if let Some(q) = cfg.queues.first_mut() {
        q.callback_max_attempts = 2;
        q.callback_retry_delay_secs = 60;
        q.overflow_after_secs = None;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    assert_eq!(rung_agent(&sim.arrive("c1")), "a0");
    // Asking for a callback withdraws the live offer; the agent is free, so the
    // callback is placed at once.
    let out = sim.input(QueueInput::CallbackRequested { call: call("c1") });
    assert!(
        has(&out, |a| matches!(a, QueueAction::PlaceCallback { .. })),
        "{out:?}"
    );
    for attempt in 1..=2 {
        sim.input(QueueInput::AgentAnswered {
            call: call("c1"),
            agent: agent("a0"),
        });
        let out = sim.input(QueueInput::CallbackOutcome {
            call: call("c1"),
            result: CallbackResult::Busy,
        });
        let gave_up = has(&out, |a| {
            *a == QueueAction::CallbackGaveUp {
                call: call("c1"),
                attempts: 2,
                reason: CallbackGiveUp::AttemptsExhausted,
            }
        });
        assert_eq!(gave_up, attempt == 2);
        if attempt == 1 {
            assert!(!has(&sim.advance(59_999), |a| matches!(
                a,
                QueueAction::PlaceCallback { .. }
            )));
            assert!(has(&sim.advance(1), |a| matches!(
                a,
                QueueAction::PlaceCallback { .. }
            )));
        }
    }
    assert_eq!(sim.acd.call_count(), 0);
    assert_eq!(sim.state("a0"), AgentState::Available);
}

#[test]
fn callback_is_refused_when_the_queue_has_no_callback_key() {
    let mut cfg = config(Strategy::LongestIdle, 1);
    if let Some(q) = cfg.queues.first_mut() {
        q.callback_digit = None;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    sim.arrive("c1");
    assert_eq!(
        sim.try_input(QueueInput::CallbackRequested { call: call("c1") }),
        Err(QueueError::CallbackDisabled(city()))
    );
}

#[test]
fn blind_transfer_requeues_or_releases_and_wraps_the_agent_up() {
    let mut sim = Sim::new(with_province_agent(config(Strategy::LongestIdle, 1)));
    sim.ready("a0");
    sim.ready("p0");
    sim.arrive("c1");
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    let out = sim.input(QueueInput::Transfer {
        call: call("c1"),
        to: TransferTarget::Queue(province()),
    });
    assert!(matches!(sim.state("a0"), AgentState::WrapUp { .. }));
    assert!(has(&out, |a| *a
        == QueueAction::PlayHoldMusic { call: call("c1") }));
    assert_eq!(rings(&out), [("c1".to_owned(), "p0".to_owned())]);
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("p0"),
    });
    let out = sim.input(QueueInput::Transfer {
        call: call("c1"),
        to: TransferTarget::Unit(UnitId::new("jinan-lixia")),
    });
    assert!(has(&out, |a| *a
        == QueueAction::CallReleased {
            call: call("c1"),
            reason: ReleaseReason::TransferredToUnit(UnitId::new("jinan-lixia"))
        }));
    // The BYE that follows the REFER is ignored.
    assert!(
        sim.input(QueueInput::CallEnded {
            call: call("c1"),
            who_hung_up: Party::Agent
        })
        .is_empty()
    );
    assert_eq!(
        sim.try_input(QueueInput::Transfer {
            call: call("c9"),
            to: TransferTarget::Survey
        }),
        Err(QueueError::UnknownCall(call("c9")))
    );
}

fn roster_config() -> QueuesConfig {
    let mut cfg = with_province_agent(config(Strategy::LongestIdle, 2));
    if let Some(q) = cfg.queues.first_mut() {
        q.duty = DutyPolicy::Roster;
    }
    let clock = |h, m| ClockTime::hm(h, m).unwrap_or_else(|| panic!("{h}:{m}"));
    cfg.roster = vec![RosterEntry {
        agent: agent("a0"),
        from: NaiveDate::from_ymd_opt(2025, 10, 1).unwrap_or_default(),
        until: NaiveDate::from_ymd_opt(2025, 10, 31).unwrap_or_default(),
        days: Days::WorkingDays,
        start: clock(9, 0),
        end: clock(17, 0),
    }];
    cfg
}

#[test]
fn only_on_duty_agents_take_calls_under_the_roster() {
    let mut sim = Sim::at(roster_config(), at("2025-10-09T10:00:00+08:00"));
    sim.ready("a1"); // signed in, but not on the roster
    sim.ready("p0");
    let out = sim.arrive("c1");
    assert!(rings(&out).iter().all(|(_, a)| a != "a1"));
    assert!(has(&out, |a| matches!(a, QueueAction::Overflowed { .. })));
    sim.ready("a0");
    assert_eq!(rung_agent(&sim.arrive("c2")), "a0");
}

#[test]
fn absent_is_reported_at_shift_start_for_agents_not_signed_in() {
    let mut sim = Sim::at(roster_config(), at("2025-10-09T08:00:00+08:00"));
    let out = sim.advance(3_600_000);
    assert!(has(&out, |a| *a
        == QueueAction::Absent {
            agent: agent("a0"),
            city: city(),
            shift_start: at("2025-10-09T09:00:00+08:00")
        }));
    // Next day, signed in before the shift: no report.
    sim.ready("a0");
    let out = sim.advance(24 * 3_600_000);
    assert!(!has(&out, |a| matches!(a, QueueAction::Absent { .. })));
}

/// A roster on working days across the turn of 2026 into 2027, the year the shipped
/// calendar does not have yet (Monday–Friday assumed for it).
fn roster_into_2027() -> QueuesConfig {
    let mut cfg = roster_config();
    for entry in &mut cfg.roster {
        entry.from = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default();
        entry.until = NaiveDate::from_ymd_opt(2027, 1, 31).unwrap_or_default();
    }
    cfg
}

/// The shipped calendar with 2027 added as `hotline calendar add-year` would: New
/// Year's Day (a Friday) off, Saturday 2027-01-09 worked in lieu.
fn calendar_with_2027() -> Calendar {
    let text = include_str!("../../config/calendar/cn-workdays.toml");
    Calendar::from_toml_str(&format!(
        "{text}\n[years.2027]\nholidays = [\"2027-01-01\"]\nworkdays = [\"2027-01-09\"]\nin_lieu = []\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn absences(out: &[QueueAction]) -> Vec<Time> {
    out.iter()
        .filter_map(|a| match a {
            QueueAction::Absent { shift_start, .. } => Some(*shift_start),
            _ => None,
        })
        .collect()
}

/// Issue 15 (calendar years): the duty rosters follow the calendar the running server
/// reloads. Before 2027 is loaded the roster assumes Friday 2027-01-01 is worked and
/// would report the agent absent; once `CalendarChanged` brings the year, New Year's
/// Day has no shift (no absence, not on duty) and the make-up Saturday has one.
#[test]
fn rosters_follow_the_calendar_reloaded_while_running() {
    let evening = at("2026-12-31T18:00:00+08:00");
    // Without the new year: Friday is a working day by assumption.
    let mut stale = Sim::at(roster_into_2027(), evening);
    let out = stale.advance(18 * 3_600_000);
    assert_eq!(absences(&out), vec![at("2027-01-01T09:00:00+08:00")]);

    let mut sim = Sim::at(roster_into_2027(), evening);
    sim.advance(3_600_000);
    let out = sim.input(QueueInput::CalendarChanged(std::sync::Arc::new(
        calendar_with_2027(),
    )));
    assert!(out.is_empty(), "{out:?}");
    assert!(sim.acd.calendar().loaded_years().contains(&2027));
    let out = sim.advance(17 * 3_600_000);
    assert_eq!(absences(&out), Vec::<Time>::new(), "New Year's Day is off");
    assert!(
        !sim.acd
            .on_duty(&agent("a0"), at("2027-01-01T10:00:00+08:00"))
    );
    // Saturday 2027-01-09 is worked in lieu: a shift, reported when missed.
    let out = sim.advance(8 * 24 * 3_600_000);
    assert!(
        absences(&out).contains(&at("2027-01-09T09:00:00+08:00")),
        "{:?}",
        absences(&out)
    );
    assert!(
        sim.acd
            .on_duty(&agent("a0"), at("2027-01-09T10:00:00+08:00"))
    );
    // A shift already checked is not reported twice when the calendar changes again.
    let out = sim.input(QueueInput::CalendarChanged(std::sync::Arc::new(
        calendar_with_2027(),
    )));
    assert_eq!(absences(&out), Vec::<Time>::new());
    assert_eq!(absences(&sim.advance(60_000)), Vec::<Time>::new());
}

#[test]
fn registration_lost_during_duty_is_offline_and_reported_then_recovers() {
    let mut sim = Sim::at(roster_config(), at("2025-10-09T10:00:00+08:00"));
    sim.ready("a0");
    let out = sim.input(QueueInput::RegistrationLost { agent: agent("a0") });
    assert_eq!(sim.state("a0"), AgentState::Offline);
    assert!(has(
        &out,
        |a| matches!(a, QueueAction::AgentOffline { agent: x, .. } if *x == agent("a0"))
    ));
    sim.input(QueueInput::Registered { agent: agent("a0") });
    assert_eq!(sim.state("a0"), AgentState::Available);
    // Sign-in rate: 10:00–11:00 present except nothing lost (instant), over an 8 h shift.
    sim.advance(3_600_000);
    let rate = sim.acd.sign_in_rate(
        &agent("a0"),
        at("2025-10-09T00:00:00+08:00"),
        at("2025-10-10T00:00:00+08:00"),
        sim.now,
    );
    assert_eq!(rate.scheduled_secs, 8 * 3600);
    assert_eq!(rate.present_secs, 3600);
}

#[test]
fn registration_lost_while_ringing_withdraws_the_offer() {
    let mut sim = Sim::new(config(Strategy::Linear, 2));
    sim.ready("a0");
    sim.ready("a1");
    assert_eq!(rung_agent(&sim.arrive("c1")), "a0");
    let out = sim.input(QueueInput::RegistrationLost { agent: agent("a0") });
    assert!(has(&out, |a| *a
        == QueueAction::CancelRing {
            call: call("c1"),
            agent: agent("a0")
        }));
    assert_eq!(sim.state("a0"), AgentState::Offline);
    assert_eq!(rung_agent(&out), "a1");
}

#[test]
fn an_agent_lost_mid_call_goes_offline_and_the_caller_is_requeued_ahead() {
    let mut cfg = config(Strategy::Linear, 2);
    if let Some(q) = cfg.queues.first_mut() {
        q.wrap_up_secs = 0;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    assert_eq!(rung_agent(&sim.arrive("c1")), "a0");
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    sim.advance(1000);
    // A later caller waits (nobody free).
    assert!(rings(&sim.arrive("c2")).is_empty());
    sim.advance(1000);
    // a1 signs in and takes c2.
    sim.ready("a1");
    sim.input(QueueInput::AgentAnswered {
        call: call("c2"),
        agent: agent("a1"),
    });
    sim.advance(1000);
    // a0's phone vanishes mid-call.
    let out = sim.input(QueueInput::AgentLost {
        call: call("c1"),
        agent: agent("a0"),
    });
    assert_eq!(sim.state("a0"), AgentState::Offline);
    assert!(has(&out, |a| *a
        == QueueAction::PlayHoldMusic { call: call("c1") }));
    assert!(has(&out, |a| matches!(a, QueueAction::Log(entry)
        if matches!(entry.event, QueueLogEvent::AgentLost { talk_ms: 3000, .. }))));
    assert!(has(&out, |a| matches!(a, QueueAction::AgentStateChanged {
        agent: x, to: AgentState::Offline, reason: TransitionReason::AgentLost, .. }
        if *x == agent("a0"))));
    assert_eq!(sim.acd.queue_of(&call("c1")), Some(&city()));
    // A third caller arrives later: c1 is still ahead of it.
    sim.arrive("c3");
    assert_eq!(sim.acd.position(&call("c1")), Some(1));
    assert_eq!(sim.acd.position(&call("c3")), Some(2));
    // a1 frees up: c1 is offered first; a0 is never offered while offline.
    let out = sim.input(QueueInput::CallEnded {
        call: call("c2"),
        who_hung_up: Party::Caller,
    });
    let out = [out, sim.advance(1000)].concat();
    assert_eq!(rings(&out), [("c1".to_owned(), "a1".to_owned())]);
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a1"),
    });
    // The phone registers again: back online, and c3 is offered to it.
    let out = sim.input(QueueInput::Registered { agent: agent("a0") });
    assert_eq!(rings(&out), [("c3".to_owned(), "a0".to_owned())]);
}

#[test]
fn an_agent_lost_while_ringing_fails_the_offer_and_goes_offline() {
    let mut sim = Sim::new(config(Strategy::Linear, 2));
    sim.ready("a0");
    sim.ready("a1");
    assert_eq!(rung_agent(&sim.arrive("c1")), "a0");
    let out = sim.input(QueueInput::AgentLost {
        call: call("c1"),
        agent: agent("a0"),
    });
    assert_eq!(sim.state("a0"), AgentState::Offline);
    let out = [out, sim.advance(5_000)].concat();
    assert_eq!(rings(&out), [("c1".to_owned(), "a1".to_owned())]);
    // A report about another call is ignored (a race), the agent stays offline.
    sim.input(QueueInput::AgentLost {
        call: call("zz"),
        agent: agent("a0"),
    });
    assert_eq!(sim.state("a0"), AgentState::Offline);
    assert!(
        sim.try_input(QueueInput::AgentLost {
            call: call("c1"),
            agent: agent("nobody"),
        })
        .is_err()
    );
}

#[test]
fn reconcile_releases_agents_whose_leg_is_gone() {
    let mut sim = Sim::new(config(Strategy::Linear, 2));
    sim.ready("a0");
    sim.ready("a1");
    sim.arrive("c1");
    sim.arrive("c2");
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    assert_eq!(sim.state("a1"), AgentState::Ringing { call: call("c2") });
    // The dialog layer lost both legs without telling us (the stuck-agent bug).
    let out = sim.input(QueueInput::LiveLegs(BTreeSet::new()));
    assert!(matches!(sim.state("a0"), AgentState::WrapUp { .. }));
    assert!(has(&out, |a| matches!(a, QueueAction::AgentStateChanged {
        agent: x, reason: TransitionReason::Reconciled, .. } if *x == agent("a1"))));
    // c2 is offered again (a1 is free; a0 in wrap-up).
    assert_eq!(rings(&out), [("c2".to_owned(), "a1".to_owned())]);
    // A live leg is left alone.
    let legs = BTreeSet::from([(call("c2"), agent("a1"))]);
    assert!(sim.input(QueueInput::LiveLegs(legs)).is_empty());
}

#[test]
fn announcements_only_when_the_position_changed_and_never_delay_the_bridge() {
    let mut cfg = config(Strategy::LongestIdle, 1);
    if let Some(q) = cfg.queues.first_mut() {
        q.announce_frequency_secs = 30;
        q.please_hold_secs = 45;
        q.overflow_after_secs = None;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    sim.arrive("c0");
    sim.input(QueueInput::AgentAnswered {
        call: call("c0"),
        agent: agent("a0"),
    });
    sim.arrive("c1");
    let out = sim.arrive("c2");
    assert_eq!(
        out.first(),
        Some(&QueueAction::PlayHoldMusic { call: call("c2") })
    );
    assert!(has(
        &out,
        |a| matches!(a, QueueAction::Announce { call: c, position: 2, .. } if *c == call("c2"))
    ));
    // 30 s later nothing moved: no announcement; 45 s: please hold.
    let out = sim.advance(30_000);
    assert!(!has(&out, |a| matches!(a, QueueAction::Announce { .. })));
    let out = sim.advance(15_000);
    assert!(has(&out, |a| *a == QueueAction::PleaseHold { call: call("c2") }));
    // c1 abandons: c2's next announcement says position 1.
    sim.input(QueueInput::CallEnded {
        call: call("c1"),
        who_hung_up: Party::Caller,
    });
    let out = sim.advance(15_000);
    assert!(has(
        &out,
        |a| matches!(a, QueueAction::Announce { call: c, position: 1, estimated_wait: None } if *c == call("c2"))
    ));
    // The agent frees up and answers while the announcement plays: stop + bridge at once.
    sim.input(QueueInput::CallEnded {
        call: call("c0"),
        who_hung_up: Party::Caller,
    });
    sim.advance(30_000);
    let out = sim.input(QueueInput::AgentAnswered {
        call: call("c2"),
        agent: agent("a0"),
    });
    let stop = out
        .iter()
        .position(|a| *a == QueueAction::StopAnnouncement { call: call("c2") });
    let bridge = out.iter().position(|a| {
        *a == QueueAction::Bridge {
            call: call("c2"),
            agent: agent("a0"),
        }
    });
    assert!(
        stop.is_some() && bridge.is_some() && stop < bridge,
        "{out:?}"
    );
}

#[test]
fn snapshot_counts_waiting_calls_agents_and_today() {
    let mut sim = Sim::new(config(Strategy::LongestIdle, 2));
    sim.ready("a0");
    sim.arrive("c0");
    sim.answer_and_end("c0", "a0");
    sim.arrive("c1");
    sim.advance(5_000);
    sim.input(QueueInput::CallEnded {
        call: call("c1"),
        who_hung_up: Party::Caller,
    });
    sim.arrive("c2");
    sim.advance(2_000);
    let snap = sim
        .acd
        .snapshot(&city(), sim.now)
        .unwrap_or_else(|| panic!("no snapshot"));
    assert_eq!(snap.answered_today, 1);
    assert_eq!(snap.abandoned_today, 1);
    assert_eq!(snap.waiting.len(), 1);
    assert_eq!(snap.longest_wait_ms, 2_000);
    assert_eq!(snap.agents_by_state.get("wrap_up"), Some(&1));
    assert_eq!(snap.agents_by_state.get("logged_out"), Some(&1));
    // Counters reset on the next local day.
    sim.advance(24 * 3_600_000);
    let snap = sim
        .acd
        .snapshot(&city(), sim.now)
        .unwrap_or_else(|| panic!("no snapshot"));
    assert_eq!((snap.answered_today, snap.abandoned_today), (0, 0));
}

#[test]
fn every_transition_is_reported_with_from_to_and_reason() {
    let mut sim = Sim::new(config(Strategy::LongestIdle, 1));
    let out = sim.ready("a0");
    let changes: Vec<(String, String)> = out
        .iter()
        .filter_map(|a| match a {
            QueueAction::AgentStateChanged { from, to, .. } => {
                Some((from.name().to_owned(), to.name().to_owned()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(changes, [("logged_out".to_owned(), "available".to_owned())]);
    let out = sim.input(QueueInput::SignOut { agent: agent("a0") });
    assert!(has(&out, |a| matches!(
        a,
        QueueAction::AgentStateChanged {
            to: AgentState::LoggedOut,
            reason: TransitionReason::SignOut,
            ..
        }
    )));
    assert_eq!(
        sim.try_input(QueueInput::SignIn {
            agent: agent("nobody")
        }),
        Err(QueueError::UnknownAgent(agent("nobody")))
    );
}

#[test]
fn sign_in_rate_from_the_log_matches_the_live_presence() {
    let mut sim = Sim::at(roster_config(), at("2025-10-09T08:00:00+08:00"));
    let mut log = Vec::new();
    let mut keep = |out: Vec<QueueAction>| {
        log.extend(out.into_iter().filter_map(|a| match a {
            QueueAction::Log(entry) => Some(entry),
            _ => None,
        }));
    };
    keep(sim.advance(2 * 3_600_000)); // 10:00, absent at 09:00
    keep(sim.input(QueueInput::SignIn { agent: agent("a0") })); // not registered yet
    keep(sim.advance(600_000));
    keep(sim.input(QueueInput::Registered { agent: agent("a0") })); // 10:10
    keep(sim.advance(3_600_000));
    keep(sim.input(QueueInput::RegistrationLost { agent: agent("a0") })); // 11:10
    keep(sim.advance(1_800_000));
    keep(sim.input(QueueInput::Registered { agent: agent("a0") })); // 11:40
    keep(sim.advance(3_600_000));
    keep(sim.input(QueueInput::SignOut { agent: agent("a0") })); // 12:40
    let (from, to) = (
        at("2025-10-09T00:00:00+08:00"),
        at("2025-10-10T00:00:00+08:00"),
    );
    let from_log = presence_from_log(&log, &agent("a0"), sim.now);
    let live = sim.acd.presence(&agent("a0"), sim.now);
    assert_eq!(from_log, live);
    let cfg = roster_config();
    let rate = sign_in_rate(&cfg.roster, &calendar(), &agent("a0"), &from_log, from, to);
    assert_eq!(rate.present_secs, 2 * 3600);
    assert_eq!(rate.scheduled_secs, 8 * 3600);
    assert_eq!(rate.rate(), Some(0.25));
}

#[test]
fn estimated_wait_uses_the_average_handling_time() {
    let mut cfg = config(Strategy::LongestIdle, 1);
    if let Some(q) = cfg.queues.first_mut() {
        q.announce_frequency_secs = 30;
        q.overflow_after_secs = None;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    sim.arrive("c0");
    sim.input(QueueInput::AgentAnswered {
        call: call("c0"),
        agent: agent("a0"),
    });
    sim.advance(90_000);
    sim.input(QueueInput::CallEnded {
        call: call("c0"),
        who_hung_up: Party::Caller,
    });
    // Handling time 90 s talk + 30 s wrap-up = 120 s; one agent; position 2 → 240 s.
    sim.arrive("c1");
    let out = sim.arrive("c2");
    assert!(has(&out, |a| *a
        == QueueAction::Announce {
            call: call("c2"),
            position: 2,
            estimated_wait: Some(std::time::Duration::from_secs(240))
        }));
}

// Regression tests named after the anchor projects' reported bugs.

#[test]
fn caller_hanging_up_while_the_agent_rings_cancels_the_agent_leg_no_zombie_call() {
    // mod_callcenter: "zombie call to agent" (signalwire/freeswitch#2529).
    let mut sim = Sim::new(config(Strategy::LongestIdle, 1));
    sim.ready("a0");
    sim.arrive("c1");
    let out = sim.input(QueueInput::CallEnded {
        call: call("c1"),
        who_hung_up: Party::Caller,
    });
    assert!(has(&out, |a| *a
        == QueueAction::CancelRing {
            call: call("c1"),
            agent: agent("a0")
        }));
    assert_eq!(sim.state("a0"), AgentState::Available);
    // The agent answering anyway gets that leg hung up.
    let out = sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    assert_eq!(
        out,
        [QueueAction::HangupAgentLeg {
            call: call("c1"),
            agent: agent("a0")
        }]
    );
}

#[test]
fn ring_all_answer_releases_every_other_reserved_agent_at_once() {
    // mod_callcenter: agents stuck "Reserved" with ring-all (signalwire/freeswitch#2540).
    let mut sim = Sim::new(config(Strategy::RingAll, 4));
    for id in ["a0", "a1", "a2", "a3"] {
        sim.ready(id);
    }
    sim.arrive("c1");
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a2"),
    });
    for id in ["a0", "a1", "a3"] {
        assert_eq!(sim.state(id), AgentState::Available, "{id}");
    }
    // Their legs failing afterwards (487 after our CANCEL) change nothing.
    let out = sim.input(QueueInput::AgentLegFailed {
        call: call("c1"),
        agent: agent("a0"),
        reason: LegFailure::NoAnswer,
    });
    assert!(out.is_empty());
    assert_eq!(sim.state("a0"), AgentState::Available);
}

#[test]
fn pausing_during_an_offer_withdraws_it_once_without_a_reoffer_loop() {
    // mod_callcenter: state change during an offer loops INVITE/CANCEL
    // (signalwire/freeswitch#800).
    let mut sim = Sim::new(config(Strategy::Linear, 2));
    sim.ready("a0");
    sim.ready("a1");
    assert_eq!(rung_agent(&sim.arrive("c1")), "a0");
    let out = sim.input(QueueInput::Pause {
        agent: agent("a0"),
        reason: PauseReason::new("meal"),
    });
    assert_eq!(rings(&out), [("c1".to_owned(), "a1".to_owned())]);
    let out = sim.advance(60_000);
    assert!(rings(&out).iter().all(|(_, a)| a != "a0"));
}

#[test]
fn linear_skips_an_unavailable_agent_instead_of_stalling() {
    // mod_callcenter: top-down stuck on an unavailable agent (signalwire/freeswitch#1216).
    let mut sim = Sim::new(config(Strategy::Linear, 3));
    sim.ready("a0");
    sim.ready("a1");
    sim.ready("a2");
    sim.input(QueueInput::RegistrationLost { agent: agent("a0") });
    sim.input(QueueInput::Pause {
        agent: agent("a1"),
        reason: PauseReason::new("training"),
    });
    assert_eq!(rung_agent(&sim.arrive("c1")), "a2");
}

#[test]
fn pause_or_sign_out_during_a_call_takes_effect_after_wrap_up() {
    let mut sim = Sim::new(config(Strategy::Linear, 2));
    sim.ready("a0");
    sim.ready("a1");
    sim.arrive("c1");
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    sim.input(QueueInput::Pause {
        agent: agent("a0"),
        reason: PauseReason::new("meal"),
    });
    assert_eq!(sim.state("a0"), AgentState::OnCall { call: call("c1") });
    sim.input(QueueInput::CallEnded {
        call: call("c1"),
        who_hung_up: Party::Agent,
    });
    assert!(matches!(sim.state("a0"), AgentState::WrapUp { .. }));
    sim.advance(30_000);
    assert_eq!(
        sim.state("a0"),
        AgentState::Paused {
            reason: PauseReason::new("meal")
        }
    );
    // Unpausing during wrap-up does not cut the wrap-up short.
    sim.arrive("c2");
    sim.input(QueueInput::AgentAnswered {
        call: call("c2"),
        agent: agent("a1"),
    });
    sim.input(QueueInput::CallEnded {
        call: call("c2"),
        who_hung_up: Party::Caller,
    });
    sim.input(QueueInput::Pause {
        agent: agent("a1"),
        reason: PauseReason::new("x"),
    });
    sim.input(QueueInput::Unpause { agent: agent("a1") });
    assert!(matches!(sim.state("a1"), AgentState::WrapUp { .. }));
    sim.input(QueueInput::SignOut { agent: agent("a1") });
    sim.input(QueueInput::SignIn { agent: agent("a1") });
    assert!(matches!(sim.state("a1"), AgentState::WrapUp { .. }));
}

#[test]
fn a_caller_cut_off_and_calling_straight_back_resumes_the_place() {
    let mut cfg = config(Strategy::LongestIdle, 1);
    if let Some(q) = cfg.queues.first_mut() {
        q.overflow_after_secs = None;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    sim.arrive("c0");
    sim.input(QueueInput::AgentAnswered {
        call: call("c0"),
        agent: agent("a0"),
    });
    sim.arrive("c1");
    sim.arrive("c2");
    sim.input(QueueInput::CallEnded {
        call: call("c1"),
        who_hung_up: Party::Caller,
    });
    sim.advance(30_000);
    // Same caller number, new call id, within 60 s: back in front of c2.
    sim.input(QueueInput::CallArrived {
        call: call("c1-again"),
        city: city(),
        category: CallCategory::Consultation,
        urgency: Urgency::Normal,
        area: None,
        caller: format!("1390531{:0>4}", "c1"),
    });
    assert_eq!(sim.acd.position(&call("c1-again")), Some(1));
    // Too late the second time: at the back.
    sim.input(QueueInput::CallEnded {
        call: call("c1-again"),
        who_hung_up: Party::Caller,
    });
    sim.advance(61_000);
    sim.input(QueueInput::CallArrived {
        call: call("c1-third"),
        city: city(),
        category: CallCategory::Consultation,
        urgency: Urgency::Normal,
        area: None,
        caller: format!("1390531{:0>4}", "c1"),
    });
    assert_eq!(sim.acd.position(&call("c1-third")), Some(2));
}

#[test]
fn feature_codes_map_to_sign_in_out_and_pause() {
    let a = || agent("a0");
    assert_eq!(
        feature_code_input(a(), "*11"),
        Some(QueueInput::SignIn { agent: a() })
    );
    assert_eq!(
        feature_code_input(a(), "*12"),
        Some(QueueInput::SignOut { agent: a() })
    );
    assert_eq!(
        feature_code_input(a(), "*132"),
        Some(QueueInput::Pause {
            agent: a(),
            reason: PauseReason::new("2")
        })
    );
    assert_eq!(
        feature_code_input(a(), "*13"),
        Some(QueueInput::Pause {
            agent: a(),
            reason: PauseReason::new("break")
        })
    );
    assert_eq!(
        feature_code_input(a(), "*14"),
        Some(QueueInput::Unpause { agent: a() })
    );
    assert_eq!(feature_code_input(a(), "*13x"), None);
    assert_eq!(feature_code_input(a(), "12348"), None);
}

#[test]
fn a_roster_edited_through_the_api_applies_from_now() {
    let mut sim = Sim::at(roster_config(), at("2025-10-09T10:00:00+08:00"));
    sim.ready("a1");
    assert!(!sim.acd.on_duty(&agent("a1"), sim.now));
    let mut roster = sim.acd.roster().to_vec();
    let mut entry = roster[0].clone();
    entry.agent = agent("a1");
    roster.push(entry.clone());
    if let Err(e) = sim.acd.replace_roster(roster.clone(), sim.now) {
        panic!("{e}");
    }
    assert!(sim.acd.on_duty(&agent("a1"), sim.now));
    assert_eq!(rung_agent(&sim.arrive("c1")), "a1");
    entry.agent = agent("ghost");
    roster.push(entry);
    assert_eq!(
        sim.acd.replace_roster(roster, sim.now),
        Err(QueueConfigError::RosterUnknownAgent(agent("ghost")))
    );
}

#[test]
fn signing_in_within_the_grace_period_is_not_absent() {
    let mut cfg = roster_config();
    cfg.absent_grace_secs = 300;
    let mut sim = Sim::at(cfg, at("2025-10-09T08:00:00+08:00"));
    sim.advance(3_780_000); // 09:03
    sim.ready("a0");
    let out = sim.advance(3_600_000);
    assert!(!has(&out, |a| matches!(a, QueueAction::Absent { .. })));
    // Not signed in the next morning: reported at 09:05, not before.
    sim.input(QueueInput::SignOut { agent: agent("a0") });
    let out = sim.advance(
        at("2025-10-10T09:04:59+08:00")
            .signed_duration_since(sim.now)
            .num_milliseconds(),
    );
    assert!(!has(&out, |a| matches!(a, QueueAction::Absent { .. })));
    let out = sim.advance(1_000);
    assert!(has(&out, |a| *a
        == QueueAction::Absent {
            agent: agent("a0"),
            city: city(),
            shift_start: at("2025-10-10T09:00:00+08:00")
        }));
}

#[test]
fn a_callback_no_agent_could_take_in_time_becomes_a_work_order() {
    let mut cfg = config(Strategy::LongestIdle, 1);
    if let Some(q) = cfg.queues.first_mut() {
        q.callback_max_wait_secs = 600;
        q.overflow_after_secs = None;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    sim.arrive("c0");
    sim.input(QueueInput::AgentAnswered {
        call: call("c0"),
        agent: agent("a0"),
    });
    sim.arrive("c1");
    sim.input(QueueInput::CallbackRequested { call: call("c1") });
    // The callback does not go to voice mail at max wait, nor overflow: it waits…
    assert!(!has(&sim.advance(599_999), |a| matches!(
        a,
        QueueAction::CallbackGaveUp { .. }
    )));
    // …until callback_max_wait_secs.
    let out = sim.advance(1);
    assert!(has(&out, |a| *a
        == QueueAction::CallbackGaveUp {
            call: call("c1"),
            attempts: 0,
            reason: CallbackGiveUp::Expired
        }));
    assert_eq!(sim.acd.call_count(), 1, "only the bridged c0 is left");
}

#[test]
fn reconcile_during_a_callback_counts_a_failed_attempt_and_frees_the_agent() {
    let mut sim = Sim::new(config(Strategy::LongestIdle, 1));
    sim.ready("a0");
    sim.arrive("c1");
    let out = sim.input(QueueInput::CallbackRequested { call: call("c1") });
    assert!(has(&out, |a| matches!(
        a,
        QueueAction::PlaceCallback { .. }
    )));
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    let out = sim.input(QueueInput::LiveLegs(BTreeSet::new()));
    assert_eq!(sim.state("a0"), AgentState::Available);
    assert!(has(&out, |a| matches!(
        a,
        QueueAction::Log(QueueLogEntry {
            event: QueueLogEvent::CallbackAttempt {
                attempt: 1,
                result: CallbackResult::Unreachable
            },
            ..
        })
    )));
    assert_eq!(
        sim.acd.position(&call("c1")),
        Some(1),
        "still waiting for a retry"
    );
}

/// The `queue_log` events of `out`, as `(event name, agent)`.
fn log_events(out: &[QueueAction]) -> Vec<(QueueLogEvent, Option<String>)> {
    out.iter()
        .filter_map(|a| match a {
            QueueAction::Log(e) => Some((e.event.clone(), e.agent.as_ref().map(|a| a.0.clone()))),
            _ => None,
        })
        .collect()
}

#[test]
fn attended_transfer_moves_the_call_to_the_consulted_agent_and_the_first_to_wrap_up() {
    let mut cfg = config(Strategy::Linear, 2);
    if let Some(q) = cfg.queues.first_mut() {
        q.wrap_up_secs = 30;
    }
    let mut sim = Sim::new(cfg);
    sim.ready("a0");
    assert_eq!(rung_agent(&sim.arrive("c1")), "a0");
    sim.advance(4_000);
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    sim.ready("a1");
    sim.advance(10_000);
    // a0 consults a1: a1 is on a call the ACD did not offer, and gets no queue call.
    sim.input(QueueInput::DirectCall {
        agent: agent("a1"),
        call: call("consult-1"),
    });
    assert_eq!(
        sim.state("a1"),
        AgentState::OnCall {
            call: call("consult-1")
        }
    );
    assert!(rings(&sim.arrive("c2")).is_empty(), "a1 is not offered c2");
    sim.input(QueueInput::CallEnded {
        call: call("c2"),
        who_hung_up: Party::Caller,
    });
    sim.advance(5_000);
    let out = sim.input(QueueInput::AttendedTransfer {
        call: call("c1"),
        to: agent("a1"),
    });
    assert!(matches!(sim.state("a0"), AgentState::WrapUp { .. }));
    assert_eq!(sim.state("a1"), AgentState::OnCall { call: call("c1") });
    let logged = log_events(&out);
    assert!(
        logged.contains(&(
            QueueLogEvent::Transfer {
                to: TransferTarget::Agent(agent("a1")),
                wait_ms: 4_000,
                talk_ms: 15_000,
            },
            Some("a0".into())
        )),
        "{logged:?}"
    );
    assert!(has(
        &out,
        |a| matches!(a, QueueAction::AgentStateChanged { agent, reason: TransitionReason::TransferredIn, .. } if agent.0 == "a1")
    ));
    // A consultation that ends after the transfer changes nothing for a1.
    assert!(
        sim.input(QueueInput::DirectCallEnded {
            agent: agent("a1"),
            call: call("consult-1"),
        })
        .is_empty()
    );
    sim.advance(20_000);
    let out = sim.input(QueueInput::CallEnded {
        call: call("c1"),
        who_hung_up: Party::Caller,
    });
    assert!(log_events(&out).contains(&(
        QueueLogEvent::Complete {
            wait_ms: 4_000,
            talk_ms: 20_000,
            who_hung_up: Party::Caller,
        },
        Some("a1".into())
    )));
    assert!(matches!(sim.state("a1"), AgentState::WrapUp { .. }));
    assert_eq!(sim.acd.call_count(), 0);
}

#[test]
fn a_direct_call_to_a_busy_agent_is_refused_and_one_that_ends_frees_without_wrap_up() {
    let mut sim = Sim::new(config(Strategy::Linear, 2));
    sim.ready("a0");
    sim.ready("a1");
    assert_eq!(rung_agent(&sim.arrive("c1")), "a0");
    assert_eq!(
        sim.try_input(QueueInput::DirectCall {
            agent: agent("a0"),
            call: call("k"),
        }),
        Err(QueueError::AgentBusy(agent("a0")))
    );
    sim.input(QueueInput::DirectCall {
        agent: agent("a1"),
        call: call("k"),
    });
    sim.input(QueueInput::DirectCallEnded {
        agent: agent("a1"),
        call: call("k"),
    });
    assert_eq!(sim.state("a1"), AgentState::Available);
    // Transfers need a bridged call and a free target.
    assert_eq!(
        sim.try_input(QueueInput::AttendedTransfer {
            call: call("c1"),
            to: agent("a1"),
        }),
        Err(QueueError::NotBridged(call("c1")))
    );
    sim.input(QueueInput::AgentAnswered {
        call: call("c1"),
        agent: agent("a0"),
    });
    assert_eq!(rung_agent(&sim.arrive("c2")), "a1");
    assert_eq!(
        sim.try_input(QueueInput::AttendedTransfer {
            call: call("c1"),
            to: agent("a1"),
        }),
        Err(QueueError::AgentBusy(agent("a1")))
    );
    assert_eq!(
        sim.try_input(QueueInput::AttendedTransfer {
            call: call("nope"),
            to: agent("a1"),
        }),
        Err(QueueError::UnknownCall(call("nope")))
    );
    // A direct call whose leg the dialog layer no longer has is released by reconcile.
    sim.input(QueueInput::CallEnded {
        call: call("c2"),
        who_hung_up: Party::Caller,
    });
    sim.advance(60_000);
    sim.input(QueueInput::DirectCall {
        agent: agent("a1"),
        call: call("k2"),
    });
    sim.input(QueueInput::LiveLegs(BTreeSet::from([(
        call("c1"),
        agent("a0"),
    )])));
    assert_eq!(sim.state("a1"), AgentState::Available);
    assert_eq!(sim.state("a0"), AgentState::OnCall { call: call("c1") });
}

#[test]
fn transfer_addresses_have_one_parser_and_numbers_must_be_units() {
    let units = |n: &str| (n == "053188880000").then(|| UnitId::new("jinan-legal-aid"));
    let parse = |user: &str| TransferTarget::parse(user, units);
    assert_eq!(parse("survey"), Ok(TransferTarget::Survey));
    assert_eq!(parse("SURVEY"), Ok(TransferTarget::Survey));
    assert_eq!(
        parse("qingdao"),
        Ok(TransferTarget::Queue(CityId::new("qingdao")))
    );
    assert_eq!(
        parse("queue-zibo"),
        Ok(TransferTarget::Queue(CityId::new("zibo")))
    );
    assert_eq!(
        parse("unit-jinan-legal-aid"),
        Ok(TransferTarget::Unit(UnitId::new("jinan-legal-aid")))
    );
    assert_eq!(
        parse("053188880000"),
        Ok(TransferTarget::Unit(UnitId::new("jinan-legal-aid")))
    );
    // Any other number: no open dialling.
    assert_eq!(
        parse("+8613900001111"),
        Err(TransferTargetError::NotAUnitNumber(
            crate::ticket::privacy::mask_phone("+8613900001111")
        ))
    );
    assert_eq!(parse(""), Err(TransferTargetError::Empty));
    for bad in ["unit-", "unit-a b", "a;b", "9city"] {
        assert!(
            matches!(parse(bad), Err(TransferTargetError::Malformed(_))),
            "{bad}"
        );
    }
}
