//! The call in simulated time (milliseconds, no sleeps): a [`Call`], the real IVR flow
//! and survey, the real [`Acd`], and a fake shell standing in for sockets, player,
//! recorder and phones. Each test is what the caller would hear, in order.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta};

use super::*;
use crate::calendar::Calendar;
use crate::ivr::cdr::{AgentFailureCause, AgentStage};
use crate::ivr::flow::{CallCityInfo, IvrContext};
use crate::ivr::hours::{OpenStatus, WorkingHours};
use crate::queue::{
    Acd, AgentId, DutyPolicy, Party, QueueAction, QueueAgentConfig, QueueConfig, QueueInput,
    QueuesConfig, Time, position_prompts,
};
use crate::ticket::model::CallId;

const CALL: &str = "call-1";

fn calendar() -> Calendar {
    Calendar::from_toml_str(include_str!("../../config/calendar/cn-workdays.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Thursday 2025-10-09 09:00 in Jinan: a working day.
fn opening() -> Time {
    DateTime::parse_from_rfc3339("2025-10-09T09:00:00+08:00").unwrap_or_else(|e| panic!("{e}"))
}

fn city_info(open: bool, has_duty_list: bool) -> CallCityInfo {
    CallCityInfo {
        city: CityId::new("jinan"),
        open_status: OpenStatus {
            open,
            next_open: None,
            provisional: false,
        },
        has_duty_list,
        hours_spoken: WorkingHours::default().spoken(),
    }
}

/// Jinan's queue (every signed-in agent on duty, announcements every 30 s) with agent
/// 1001, and the province center's.
fn queues() -> QueuesConfig {
    let mut jinan = QueueConfig::new(CityId::new("jinan"));
    jinan.duty = DutyPolicy::AnySignedIn;
    jinan.announce_frequency_secs = 30;
    jinan.please_hold_secs = 0;
    jinan.max_wait_secs = 300;
    let mut center = QueueConfig::new(CityId::new("shandong"));
    center.duty = DutyPolicy::AnySignedIn;
    QueuesConfig {
        province_center: CityId::new("shandong"),
        queues: vec![jinan, center],
        agents: vec![QueueAgentConfig::new(
            AgentId::new("1001"),
            CityId::new("jinan"),
        )],
        roster: Vec::new(),
        absent_grace_secs: 0,
    }
}

/// What the caller's phone gets, as the fake shell saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Once(Vec<String>),
    Loop(Vec<String>),
    Stop,
    Recording,
    Message(Duration),
    /// Bridged to this agent's phone (or `unit:<id>`).
    Bridged(String),
    HangUp,
}

fn names(prompts: &[PromptRef]) -> Vec<String> {
    prompts
        .iter()
        .map(|p| match p {
            PromptRef::Prompt(id) => id.as_str().to_string(),
            PromptRef::Number(n) => format!("#{n}"),
        })
        .collect()
}

/// What the caller hears when the ACD lets go of the call for `reason`.
fn released_cue(reason: &crate::queue::ReleaseReason) -> QueueCue {
    match reason {
        crate::queue::ReleaseReason::TransferredToUnit(unit) => QueueCue::ToUnit(unit.clone()),
        crate::queue::ReleaseReason::TransferredToSurvey => QueueCue::Survey,
    }
}

/// An agent's softphone as the fake endpoint plays it.
#[derive(Debug, Clone, Copy)]
struct Phone {
    /// Registered: an INVITE reaches it (otherwise the leg fails at once).
    registered: bool,
    /// It sends 180 Ringing at once (a vanished phone sends nothing).
    rings: bool,
    /// It answers after this long (None: never).
    answer_after: Option<Duration>,
}

impl Phone {
    fn answers_after(ms: u64) -> Phone {
        Phone {
            registered: true,
            rings: true,
            answer_after: Some(Duration::from_millis(ms)),
        }
    }

    fn never_answers() -> Phone {
        Phone {
            registered: true,
            rings: true,
            answer_after: None,
        }
    }

    /// Registered, but gone from the network: no 180, no answer.
    fn vanished() -> Phone {
        Phone {
            registered: true,
            rings: false,
            answer_after: None,
        }
    }
}

/// A leg the fake endpoint placed.
#[derive(Debug, Clone)]
struct FakeLeg {
    target: LegTarget,
    answer_at: Option<Instant>,
    /// We asked for its end; its `LegEnded` is on the way.
    ending: bool,
    up: bool,
}

/// How long the fake network takes to confirm a CANCEL or BYE (487 / 200).
const END_CONFIRMED_AFTER: Duration = Duration::from_millis(20);

/// A call, the ACD and a fake shell in one simulated clock.
struct Sim {
    call: Call,
    acd: Option<Acd>,
    start: Instant,
    now: Instant,
    wall_start: Time,
    /// What played and happened, in order.
    heard: Vec<Heard>,
    /// Every output, in order.
    outputs: Vec<CallOutput>,
    /// The length of the current once-play list, when one plays.
    playing_until: Option<Instant>,
    /// The caller talks into a recording that started here.
    recording_since: Option<Instant>,
    /// The agents' phones, by agent id.
    phones: std::collections::BTreeMap<String, Phone>,
    /// The unit's phone answers after this long (None: never).
    unit_answer_after: Option<Duration>,
    /// The legs the fake endpoint placed.
    legs: std::collections::BTreeMap<LegId, FakeLeg>,
    /// Leg events the network delivers later (a CANCEL's 487).
    in_flight: Vec<(Instant, CallInput)>,
    /// The leg the caller is bridged to.
    bridged: Option<LegId>,
    /// Agents whose registration was dropped.
    dropped: Vec<String>,
    queued: bool,
    /// The agent whose leg is offered in place of the bridged one (attended transfer).
    offered: Option<String>,
    /// Each prompt plays this long.
    prompt_length: Duration,
}

impl Sim {
    fn new(open: bool, has_duty_list: bool, acd: Option<Acd>) -> Sim {
        let ivr = IvrConfig::default();
        let flow = IvrFlow::new(
            ivr.clone(),
            IvrContext {
                city: Some(city_info(open, has_duty_list)),
                province_center: CityId::new("shandong"),
            },
        );
        let prompts = CallPrompts::from_ivr(&ivr, Some(PromptId::new("callback_registered")));
        let start = Instant::now();
        let mut phones = std::collections::BTreeMap::new();
        phones.insert("1001".to_string(), Phone::answers_after(4_000));
        Sim {
            call: Call::new(ivr, flow, prompts),
            acd,
            start,
            now: start,
            wall_start: opening(),
            heard: Vec::new(),
            outputs: Vec::new(),
            playing_until: None,
            recording_since: None,
            phones,
            unit_answer_after: None,
            legs: std::collections::BTreeMap::new(),
            in_flight: Vec::new(),
            bridged: None,
            dropped: Vec::new(),
            queued: false,
            offered: None,
            prompt_length: Duration::from_secs(2),
        }
    }

    /// In hours, agent 1001 signed in and free.
    fn in_hours() -> Sim {
        Sim::in_hours_with(queues())
    }

    /// In hours with `queues`, every agent of it registered and signed in.
    fn in_hours_with(queues: QueuesConfig) -> Sim {
        let agents: Vec<AgentId> = queues.agents.iter().map(|a| a.id.clone()).collect();
        let mut acd = Acd::new(queues, calendar(), opening(), 7).unwrap_or_else(|e| panic!("{e}"));
        for agent in agents {
            for input in [
                QueueInput::Registered {
                    agent: agent.clone(),
                },
                QueueInput::SignIn { agent },
            ] {
                acd.handle(opening(), input)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        while acd.poll_output().is_some() {}
        Sim::new(true, false, Some(acd))
    }

    /// After hours (prompts of 200 ms), up to the menu waiting for a digit.
    fn after_hours(has_duty_list: bool) -> Sim {
        let mut sim = Sim::new(false, has_duty_list, None);
        sim.prompt_length = Duration::from_millis(200);
        sim.send(CallInput::Start);
        for _ in 0..100 {
            sim.advance(100);
            let menu = sim
                .heard
                .last()
                .is_some_and(|h| matches!(h, Heard::Once(p) if p == &["after_hours_menu"]));
            if menu {
                return sim;
            }
        }
        panic!("no after-hours menu: {:?}", sim.heard);
    }

    /// In hours, nobody signed in.
    fn in_hours_nobody_signed_in() -> Sim {
        let acd = Acd::new(queues(), calendar(), opening(), 7).unwrap_or_else(|e| panic!("{e}"));
        Sim::new(true, false, Some(acd))
    }

    fn wall(&self) -> Time {
        let elapsed = self.now.duration_since(self.start);
        self.wall_start + TimeDelta::milliseconds(i64::try_from(elapsed.as_millis()).unwrap_or(0))
    }

    fn send(&mut self, input: CallInput) {
        self.call.handle(self.now, input);
        self.run_outputs();
    }

    fn acd_input(&mut self, input: QueueInput) {
        let wall = self.wall();
        if let Some(acd) = self.acd.as_mut() {
            acd.handle(wall, input).unwrap_or_else(|e| panic!("{e}"));
        }
        self.run_acd();
    }

    /// What the ACD thinks of `agent`.
    fn agent_state(&self, agent: &str) -> String {
        self.acd
            .as_ref()
            .and_then(|a| a.agent_state(&AgentId::new(agent)))
            .map_or("unknown", |s| s.name())
            .to_string()
    }

    /// The legs dialled to `agent`, in order.
    fn legs_to(&self, agent: &str) -> Vec<LegId> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                CallOutput::Dial {
                    leg,
                    target: LegTarget::Agent(a),
                } if a.as_str() == agent => Some(*leg),
                _ => None,
            })
            .collect()
    }

    fn ended(&self, leg: LegId) -> bool {
        self.outputs.contains(&CallOutput::EndLeg(leg))
    }

    fn notes(&self) -> Vec<&RecordNote> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                CallOutput::Record(note) => Some(note),
                _ => None,
            })
            .collect()
    }

    fn reports(&self) -> Vec<&AcdReport> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                CallOutput::Acd(report) => Some(report),
                _ => None,
            })
            .collect()
    }

    /// The bridged leg's far end hangs up.
    fn peer_hangs_up(&mut self) {
        let leg = self.bridged.take().unwrap_or_else(|| panic!("not bridged"));
        self.legs.remove(&leg);
        self.send(CallInput::LegEnded {
            leg,
            reason: EndReason::RemoteHangup,
        });
    }

    /// The bridged agent transfers the caller as the shell does: the ACD takes the call
    /// back first; its commands reach the call after the core heard of the transfer.
    fn blind_transfer(&mut self, to: crate::queue::TransferTarget) {
        let wall = self.wall();
        if let Some(acd) = self.acd.as_mut() {
            acd.handle(
                wall,
                QueueInput::Transfer {
                    call: CallId(CALL.into()),
                    to: to.clone(),
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        self.send(CallInput::BlindTransfer { to: to.label() });
        self.run_acd();
    }

    fn place(&mut self, leg: LegId, target: LegTarget) {
        let phone = match &target {
            LegTarget::Agent(agent) => self.phones.get(agent.as_str()).copied(),
            // The duty list's first registered agent, when a test registers one.
            LegTarget::DutyList => self.phones.get("duty").copied(),
            LegTarget::Unit(_) => Some(Phone {
                registered: true,
                rings: true,
                answer_after: self.unit_answer_after,
            }),
        };
        match phone {
            Some(phone) if phone.registered => {
                self.legs.insert(
                    leg,
                    FakeLeg {
                        target,
                        answer_at: phone.answer_after.map(|d| self.now + d),
                        ending: false,
                        up: false,
                    },
                );
                if phone.rings {
                    self.call.handle(self.now, CallInput::LegRinging(leg));
                }
            }
            _ => self.call.handle(
                self.now,
                CallInput::LegFailed {
                    leg,
                    failure: crate::queue::LegFailure::Unreachable,
                },
            ),
        }
    }

    /// Carry out the call's outputs as the shell would.
    fn run_outputs(&mut self) {
        while let Some(output) = self.call.poll_output() {
            self.outputs.push(output.clone());
            match output {
                CallOutput::Play { prompts, repeat } => {
                    let n = u32::try_from(prompts.len()).unwrap_or(0);
                    match repeat {
                        Repeat::Once => {
                            self.heard.push(Heard::Once(names(&prompts)));
                            self.playing_until = Some(self.now + self.prompt_length * n);
                        }
                        Repeat::Loop => {
                            self.heard.push(Heard::Loop(names(&prompts)));
                            self.playing_until = None;
                        }
                    }
                }
                CallOutput::StopPlayback => {
                    self.heard.push(Heard::Stop);
                    self.playing_until = None;
                }
                CallOutput::StartMessage => {
                    self.heard.push(Heard::Recording);
                    self.recording_since = Some(self.now);
                }
                CallOutput::StopMessage => {
                    let duration = self
                        .recording_since
                        .take()
                        .map_or(Duration::ZERO, |t| self.now.duration_since(t));
                    self.call
                        .handle(self.now, CallInput::MessageDone { duration });
                }
                CallOutput::LookUpCity { .. } => {
                    self.call
                        .handle(self.now, CallInput::CityInfo(city_info(true, false)));
                }
                CallOutput::Enqueue { category, urgency } => {
                    let wall = self.wall();
                    let arrived = self.acd.as_mut().map(|acd| {
                        acd.handle(
                            wall,
                            QueueInput::CallArrived {
                                call: CallId(CALL.into()),
                                city: CityId::new("jinan"),
                                category,
                                urgency,
                                area: None,
                                caller: "13905310000".into(),
                            },
                        )
                    });
                    if matches!(arrived, Some(Ok(()))) {
                        self.queued = true;
                        self.run_acd();
                    } else {
                        // No ACD, or it refused the call: the caller is told and may
                        // leave a message.
                        self.call.handle(
                            self.now,
                            CallInput::Queue(QueueCue::VoiceMessage(
                                crate::queue::VoiceMessageReason::NoAgents,
                            )),
                        );
                    }
                }
                CallOutput::RingDutyList { .. } => {}
                CallOutput::VoiceMessageTaken { duration, .. } => {
                    self.heard.push(Heard::Message(duration));
                }
                CallOutput::QueueDigit(c) => {
                    let key = self
                        .acd
                        .as_ref()
                        .and_then(|a| a.callback_key(&CallId(CALL.into())));
                    if key == Some(c) {
                        self.acd_input(QueueInput::CallbackRequested {
                            call: CallId(CALL.into()),
                        });
                    }
                }
                CallOutput::HangUp => {
                    self.heard.push(Heard::HangUp);
                    self.playing_until = None;
                    if self.queued {
                        self.queued = false;
                        self.acd_input(QueueInput::CallEnded {
                            call: CallId(CALL.into()),
                            who_hung_up: Party::System,
                        });
                    }
                }
                CallOutput::Dial { leg, target } => self.place(leg, target),
                CallOutput::EndLeg(leg) => {
                    if let Some(l) = self.legs.get_mut(&leg)
                        && !l.ending
                    {
                        l.ending = true;
                        let reason = if l.up {
                            EndReason::LocalHangup
                        } else {
                            EndReason::Cancelled
                        };
                        self.in_flight.push((
                            self.now + END_CONFIRMED_AFTER,
                            CallInput::LegEnded { leg, reason },
                        ));
                    }
                    if self.bridged == Some(leg) {
                        self.bridged = None;
                    }
                }
                CallOutput::Bridge(leg) => {
                    let who = match self.legs.get(&leg).map(|l| &l.target) {
                        Some(LegTarget::Agent(agent)) => agent.as_str().to_string(),
                        Some(LegTarget::Unit(unit)) => format!("unit:{}", unit.0),
                        Some(LegTarget::DutyList) => "duty".to_string(),
                        None => panic!("bridge to an unknown leg {leg}"),
                    };
                    self.heard.push(Heard::Bridged(who));
                    self.bridged = Some(leg);
                }
                CallOutput::DropAgentBinding(leg) => {
                    let agent = self.outputs.iter().find_map(|o| match o {
                        CallOutput::Dial {
                            leg: l,
                            target: LegTarget::Agent(agent),
                        } if *l == leg => Some(agent.as_str().to_string()),
                        _ => None,
                    });
                    self.dropped.extend(agent);
                }
                CallOutput::Acd(report) => {
                    let call = CallId(CALL.into());
                    let input = match report {
                        AcdReport::AgentAnswered(agent) => {
                            QueueInput::AgentAnswered { call, agent }
                        }
                        AcdReport::LegFailed { agent, reason } => QueueInput::AgentLegFailed {
                            call,
                            agent,
                            reason,
                        },
                        AcdReport::AgentLost(agent) => QueueInput::AgentLost { call, agent },
                        AcdReport::CallEnded(who_hung_up) => {
                            self.queued = false;
                            QueueInput::CallEnded { call, who_hung_up }
                        }
                        AcdReport::AttendedTransfer { to, .. } => {
                            QueueInput::AttendedTransfer { call, to }
                        }
                    };
                    self.acd_input(input);
                }
                CallOutput::Record(_) => {}
                CallOutput::Transfer(TransferStep::Adopt(leg)) => {
                    let who = self
                        .offered
                        .take()
                        .unwrap_or_else(|| panic!("adopted a leg nobody offered"));
                    self.legs.insert(
                        leg,
                        FakeLeg {
                            target: LegTarget::Agent(AgentId::new(who.clone())),
                            answer_at: None,
                            ending: false,
                            up: true,
                        },
                    );
                    self.heard.push(Heard::Bridged(who));
                    self.bridged = Some(leg);
                }
                CallOutput::Transfer(
                    TransferStep::DropOffered | TransferStep::RefuseReplacing(_),
                ) => {
                    self.offered = None;
                }
                CallOutput::Transfer(_) => {}
            }
        }
    }

    /// The ACD's actions for this call, as the shell maps them.
    fn run_acd(&mut self) {
        let mut actions = Vec::new();
        if let Some(acd) = self.acd.as_mut() {
            while let Some(action) = acd.poll_output() {
                actions.push(action);
            }
        }
        for action in actions {
            let input = match action {
                QueueAction::PlayHoldMusic { .. } => Some(CallInput::Queue(QueueCue::HoldMusic)),
                QueueAction::Announce { position, .. } => Some(CallInput::Queue(
                    QueueCue::Announce(position_prompts(position)),
                )),
                QueueAction::PleaseHold { .. } => Some(CallInput::Queue(QueueCue::PleaseHold)),
                QueueAction::StopAnnouncement { .. } => {
                    Some(CallInput::Queue(QueueCue::StopAnnouncement))
                }
                QueueAction::ToVoiceMessage { reason, .. } => {
                    self.queued = false;
                    Some(CallInput::Queue(QueueCue::VoiceMessage(reason)))
                }
                QueueAction::CallbackRegistered { .. } => {
                    self.queued = false;
                    Some(CallInput::Queue(QueueCue::CallbackRegistered))
                }
                QueueAction::RingAgent { agent, .. } => Some(CallInput::RingAgent(agent)),
                QueueAction::CancelRing { agent, .. } => Some(CallInput::CancelRing(agent)),
                QueueAction::HangupAgentLeg { agent, .. } => Some(CallInput::HangUpAgent(agent)),
                QueueAction::CallReleased { reason, .. } => {
                    self.queued = false;
                    Some(CallInput::Queue(released_cue(&reason)))
                }
                _ => None,
            };
            if let Some(input) = input {
                self.call.handle(self.now, input);
            }
        }
        self.run_outputs();
    }

    /// Move the clock by `ms`, firing the call's and the ACD's timers, the player's end,
    /// the phones' answers and the network's confirmations on the way.
    fn advance(&mut self, ms: u64) {
        let target = self.now + Duration::from_millis(ms);
        loop {
            let acd_due = self.acd.as_ref().and_then(Acd::poll_timeout).map(|t| {
                let ms = (t - self.wall_start).num_milliseconds().max(0);
                self.start + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
            });
            let answer_due = self
                .legs
                .values()
                .filter(|l| !l.ending && !l.up)
                .filter_map(|l| l.answer_at)
                .min();
            let in_flight_due = self.in_flight.iter().map(|(t, _)| *t).min();
            let due = [
                self.call.poll_timeout(),
                self.playing_until,
                acd_due,
                answer_due,
                in_flight_due,
            ]
            .into_iter()
            .flatten()
            .filter(|t| *t <= target)
            .min();
            let Some(due) = due else {
                break;
            };
            self.now = due.max(self.now);
            if self.playing_until.is_some_and(|t| t <= self.now) {
                self.playing_until = None;
                self.send(CallInput::PlaybackDone);
            }
            let now = self.now;
            let answering: Vec<LegId> = self
                .legs
                .iter()
                .filter(|(_, l)| !l.ending && !l.up && l.answer_at.is_some_and(|t| t <= now))
                .map(|(id, _)| *id)
                .collect();
            for leg in answering {
                if let Some(l) = self.legs.get_mut(&leg)
                    && !l.ending
                {
                    l.up = true;
                    self.send(CallInput::LegAnswered(leg));
                }
            }
            let (arrived, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|(t, _)| *t <= now);
            self.in_flight = later;
            for (_, input) in arrived {
                if let CallInput::LegEnded { leg, .. } = &input {
                    self.legs.remove(leg);
                }
                self.send(input);
            }
            if self.call.poll_timeout().is_some_and(|t| t <= self.now) {
                self.call.handle_timeout(self.now);
                self.run_outputs();
            }
            if acd_due.is_some_and(|t| t <= self.now) {
                let wall = self.wall();
                if let Some(acd) = self.acd.as_mut() {
                    acd.handle_timeout(wall);
                }
                self.run_acd();
            }
        }
        self.now = target;
    }

    fn digit(&mut self, c: char) {
        self.send(CallInput::Digit(c));
    }

    fn heard_since(&self, from: usize) -> &[Heard] {
        self.heard.get(from..).unwrap_or_default()
    }
}

fn once(ids: &[&str]) -> Heard {
    Heard::Once(ids.iter().map(|s| (*s).to_string()).collect())
}

fn hold() -> Heard {
    Heard::Loop(vec!["hold_music".into()])
}

/// The greeting plays (2 s), the menu starts and is answered with `digit` (barge-in);
/// "please hold" plays (2 s), and at its end the call is handed on.
fn through_menu(sim: &mut Sim, digit: char) {
    sim.send(CallInput::Start);
    sim.advance(2_100);
    sim.digit(digit);
    sim.advance(2_000);
}

#[test]
fn in_hours_the_caller_waits_with_hold_music_is_bridged_then_rates_the_agent() {
    let mut sim = Sim::in_hours();
    through_menu(&mut sim, '1');
    let queued_at = sim.heard.len();
    assert!(sim.call.is_queued(), "{:?}", sim.heard);
    // 1001 rings 4 s, then answers: the hold music stops at the answer.
    sim.advance(3_900);
    assert!(sim.call.is_queued());
    sim.advance(200);
    assert!(sim.call.is_bridged());
    assert!(sim.call.in_acd());
    assert!(sim.heard.contains(&hold()));
    assert_eq!(
        sim.heard_since(queued_at),
        [Heard::Bridged("1001".into()), Heard::Stop]
    );
    // Two minutes of talk; the agent hangs up first: the survey asks at once, and the
    // ACD hears that the agent ended the call (wrap-up follows).
    sim.advance(120_000);
    let bridged_until = sim.heard.len();
    sim.peer_hangs_up();
    assert_eq!(
        sim.reports().last(),
        Some(&&AcdReport::CallEnded(Party::Agent))
    );
    assert_eq!(sim.agent_state("1001"), "wrap_up");
    assert!(
        !sim.call.in_acd(),
        "the ACD let go: the survey is the call's own"
    );
    sim.advance(100);
    let survey = sim.heard_since(bridged_until).to_vec();
    assert!(
        matches!(survey.as_slice(), [Heard::Stop, Heard::Once(p)] if p == &["survey"]),
        "{survey:?}"
    );
    sim.digit('1');
    sim.advance(10_000);
    assert_eq!(sim.heard.last(), Some(&Heard::HangUp), "{:?}", sim.heard);
    assert!(
        sim.call.survey_result().is_some(),
        "the survey's answer is kept for the call record"
    );
    assert!(sim.call.is_over());
}

#[test]
fn a_caller_waiting_hears_the_position_then_hold_music_again() {
    let mut sim = Sim::in_hours();
    // 1001 talks to an earlier caller: ours waits, first in line.
    let wall = sim.wall();
    if let Some(acd) = sim.acd.as_mut() {
        let earlier = CallId("call-0".into());
        for input in [
            QueueInput::CallArrived {
                call: earlier.clone(),
                city: CityId::new("jinan"),
                category: CallCategory::Consultation,
                urgency: Urgency::Normal,
                area: None,
                caller: "13905310001".into(),
            },
            QueueInput::AgentAnswered {
                call: earlier,
                agent: AgentId::new("1001"),
            },
        ] {
            acd.handle(wall, input).unwrap_or_else(|e| panic!("{e}"));
        }
        while acd.poll_output().is_some() {}
    }
    let from = sim.heard.len();
    through_menu(&mut sim, '1');
    sim.advance(31_000);
    let heard = sim.heard_since(from).to_vec();
    let announced = heard
        .iter()
        .position(|h| matches!(h, Heard::Once(p) if p.iter().any(|id| id.starts_with('#') || id.contains("position"))));
    let Some(at) = announced else {
        panic!("no position announcement within 31 s: {heard:?}");
    };
    // The announcement plays to its end, then the hold music loops again.
    assert_eq!(heard.get(at + 1), Some(&hold()), "{heard:?}");
}

#[test]
fn in_hours_with_nobody_signed_in_the_caller_is_told_why_and_leaves_a_message() {
    let mut sim = Sim::in_hours_nobody_signed_in();
    through_menu(&mut sim, '2');
    let from = sim.heard.len().saturating_sub(2);
    // Never silence: hold music only until the ACD answers, then why, what to do and
    // the tone; then the recording starts.
    assert_eq!(
        sim.heard_since(from),
        [hold(), once(&["no_agents", "voice_message_intro", "beep"])],
        "{:?}",
        sim.heard
    );
    sim.advance(6_000);
    assert_eq!(sim.heard.last(), Some(&Heard::Recording));
    // Eight seconds of message, then the stop digit.
    sim.advance(8_000);
    sim.digit('#');
    let tail = sim.heard_since(from).to_vec();
    let n = tail.len();
    assert_eq!(
        tail.get(n.saturating_sub(2)..),
        Some(&[Heard::Message(Duration::from_secs(8)), once(&["thanks"])][..]),
        "{tail:?}"
    );
    // The thanks plays to its end, then the server hangs up.
    sim.advance(2_000 + 300);
    assert_eq!(sim.heard.last(), Some(&Heard::HangUp));
}

#[test]
fn without_an_acd_an_in_hours_call_is_offered_the_voice_message_not_held_then_dropped() {
    let mut sim = Sim::new(true, false, None);
    through_menu(&mut sim, '1');
    sim.advance(100);
    assert!(
        sim.heard
            .contains(&once(&["no_agents", "voice_message_intro", "beep"])),
        "{:?}",
        sim.heard
    );
    // A caller who stops at once (under a second) hears that no message was left, then
    // the server hangs up: no work order for a click.
    sim.advance(6_000);
    assert_eq!(sim.heard.last(), Some(&Heard::Recording));
    sim.advance(500);
    sim.digit('#');
    assert_eq!(sim.heard.last(), Some(&once(&["no_message"])));
    sim.advance(2_300);
    assert_eq!(sim.heard.last(), Some(&Heard::HangUp));
    assert!(
        !sim.outputs
            .iter()
            .any(|o| matches!(o, CallOutput::VoiceMessageTaken { .. })),
        "a click leaves no message behind"
    );
}

#[test]
fn a_queue_message_ends_at_its_longest_and_is_kept() {
    let mut sim = Sim::new(true, false, None);
    through_menu(&mut sim, '1');
    sim.advance(6_000);
    assert_eq!(sim.heard.last(), Some(&Heard::Recording));
    let max = Duration::from_secs(IvrConfig::default().max_message_secs);
    sim.advance(u64::try_from(max.as_millis()).unwrap_or(u64::MAX));
    let n = sim.heard.len();
    assert_eq!(
        sim.heard.get(n.saturating_sub(2)..),
        Some(&[Heard::Message(max), once(&["thanks"])][..]),
        "{:?}",
        sim.heard
    );
    sim.advance(2_300);
    assert_eq!(sim.heard.last(), Some(&Heard::HangUp));
}

#[test]
fn a_caller_hanging_up_during_the_queue_message_still_leaves_it() {
    let mut sim = Sim::in_hours_nobody_signed_in();
    through_menu(&mut sim, '1');
    sim.advance(6_000);
    assert_eq!(sim.heard.last(), Some(&Heard::Recording));
    sim.advance(5_000);
    sim.send(CallInput::Ended { caller: true });
    assert_eq!(
        sim.heard.last(),
        Some(&Heard::Message(Duration::from_secs(5))),
        "{:?}",
        sim.heard
    );
    assert!(sim.call.is_over());
    // Nothing is played to a caller who is gone, and no BYE is sent.
    sim.advance(10_000);
    assert_eq!(
        sim.heard.last(),
        Some(&Heard::Message(Duration::from_secs(5)))
    );
}

#[test]
fn after_hours_the_ivr_takes_the_message_and_a_hang_up_mid_message_keeps_it() {
    let mut sim = Sim::after_hours(false);
    // The after-hours prompts and hours, the menu; 1: the intro, the tone, recording.
    sim.digit('1');
    sim.advance(1_000);
    assert_eq!(sim.heard.last(), Some(&Heard::Recording), "{:?}", sim.heard);
    sim.advance(3_000);
    sim.send(CallInput::Ended { caller: true });
    assert!(
        sim.heard
            .iter()
            .any(|h| matches!(h, Heard::Message(d) if *d >= Duration::from_secs(3))),
        "{:?}",
        sim.heard
    );
    assert!(sim.call.is_over());
    assert!(!sim.heard.contains(&Heard::HangUp));
}

#[test]
fn after_hours_urgent_with_no_duty_agent_reachable_falls_back_to_the_message() {
    let mut sim = Sim::after_hours(true);
    // Urgent (9): the duty list rings (hold music), nobody answers, the IVR goes on.
    sim.digit('9');
    sim.advance(1_000);
    assert!(
        sim.outputs
            .iter()
            .any(|o| matches!(o, CallOutput::RingDutyList { .. })),
        "{:?}",
        sim.outputs
    );
    assert!(sim.heard.contains(&hold()), "{:?}", sim.heard);
    assert_eq!(sim.heard.last(), Some(&Heard::Recording), "{:?}", sim.heard);
}

#[test]
fn a_callback_registered_is_confirmed_before_the_server_hangs_up() {
    let mut sim = Sim::in_hours();
    sim.phones.insert("1001".into(), Phone::never_answers());
    through_menu(&mut sim, '1');
    sim.send(CallInput::Queue(QueueCue::CallbackRegistered));
    assert_eq!(sim.heard.last(), Some(&once(&["callback_registered"])));
    sim.advance(1_999);
    assert_ne!(sim.heard.last(), Some(&Heard::HangUp));
    sim.advance(301);
    assert_eq!(sim.heard.last(), Some(&Heard::HangUp));
}

#[test]
fn an_agent_holding_the_caller_plays_hold_music_until_resumed() {
    let mut sim = Sim::in_hours();
    through_menu(&mut sim, '1');
    sim.advance(5_000);
    assert!(sim.call.is_bridged());
    let from = sim.heard.len();
    sim.send(CallInput::AgentHeld(true));
    sim.send(CallInput::AgentHeld(false));
    assert_eq!(sim.heard_since(from), [hold(), Heard::Stop]);
}

/// Jinan with agents 1001 and 1002 (in that order), ringing them by `strategy`, 20 s per
/// offer, paused after `max_no_answer` misses in a row.
fn two_agents(strategy: crate::queue::Strategy, max_no_answer: u32) -> QueuesConfig {
    let mut q = queues();
    q.agents.push(QueueAgentConfig::new(
        AgentId::new("1002"),
        CityId::new("jinan"),
    ));
    if let Some(jinan) = q.queues.first_mut() {
        jinan.strategy = strategy;
        jinan.ring_timeout_secs = 20;
        jinan.max_no_answer = max_no_answer;
    }
    q
}

fn bridged_to(sim: &Sim) -> Vec<String> {
    sim.heard
        .iter()
        .filter_map(|h| match h {
            Heard::Bridged(who) => Some(who.clone()),
            _ => None,
        })
        .collect()
}

fn single(legs: &[LegId]) -> LegId {
    match legs {
        [leg] => *leg,
        other => panic!("expected one leg, got {other:?}"),
    }
}

#[test]
fn ring_all_two_agents_answer_at_once_the_first_wins_and_the_other_is_cancelled() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::RingAll, 3));
    sim.phones
        .insert("1002".into(), Phone::answers_after(4_000));
    through_menu(&mut sim, '1');
    let (a, b) = (single(&sim.legs_to("1001")), single(&sim.legs_to("1002")));
    assert!(
        !sim.ended(a) && !sim.ended(b),
        "both ring: {:?}",
        sim.outputs
    );
    // Both phones answer in the same millisecond: the first answer the call hears wins.
    sim.advance(4_000);
    let winners = bridged_to(&sim);
    assert_eq!(winners, ["1001"], "{:?}", sim.heard);
    // The ACD withdrew the other offer and the call CANCELled it; its 200 OK, crossing
    // the CANCEL, is never bridged nor reported.
    assert!(sim.ended(b), "{:?}", sim.outputs);
    sim.send(CallInput::LegAnswered(b));
    sim.advance(100);
    assert_eq!(bridged_to(&sim), ["1001"]);
    assert_eq!(
        sim.reports(),
        [&AcdReport::AgentAnswered(AgentId::new("1001"))],
        "only the winner reaches the ACD"
    );
    // Answered elsewhere is not the other agent's miss (app_queue's rna()).
    assert!(
        !sim.notes()
            .iter()
            .any(|n| matches!(n, RecordNote::AgentFailed { .. })),
        "{:?}",
        sim.notes()
    );
    assert_eq!(sim.agent_state("1002"), "available");
    assert_eq!(sim.agent_state("1001"), "on_call");
    assert!(!sim.ended(a));
}

#[test]
fn a_second_answer_after_the_bridge_is_hung_up_and_never_bridged() {
    // No ACD to withdraw the other offer: the call itself hangs up the late answer.
    let mut sim = Sim::new(true, false, None);
    sim.phones
        .insert("1001".into(), Phone::answers_after(1_000));
    sim.phones
        .insert("1002".into(), Phone::answers_after(1_500));
    sim.send(CallInput::RingAgent(AgentId::new("1001")));
    sim.send(CallInput::RingAgent(AgentId::new("1002")));
    let b = single(&sim.legs_to("1002"));
    sim.advance(2_000);
    assert_eq!(bridged_to(&sim), ["1001"]);
    assert!(sim.ended(b), "the late answer gets BYE: {:?}", sim.outputs);
    // An offer arriving while bridged is stale: busy at once, nothing rings.
    sim.send(CallInput::RingAgent(AgentId::new("1003")));
    assert!(sim.legs_to("1003").is_empty());
    assert_eq!(
        sim.reports().last(),
        Some(&&AcdReport::LegFailed {
            agent: AgentId::new("1003"),
            reason: crate::queue::LegFailure::Busy,
        })
    );
}

#[test]
fn an_agent_who_does_not_answer_is_paused_and_the_call_rings_the_next_agent() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 1));
    sim.phones.insert("1001".into(), Phone::never_answers());
    sim.phones
        .insert("1002".into(), Phone::answers_after(2_000));
    through_menu(&mut sim, '1');
    let a = single(&sim.legs_to("1001"));
    assert!(sim.legs_to("1002").is_empty(), "linear: one at a time");
    // The queue's ring timeout (20 s): the ACD withdraws the offer, the call CANCELs.
    sim.advance(19_900);
    assert!(!sim.ended(a));
    sim.advance(200);
    assert!(sim.ended(a), "{:?}", sim.outputs);
    assert_eq!(sim.agent_state("1001"), "paused");
    assert!(sim.notes().contains(&&RecordNote::AgentFailed {
        leg: a,
        stage: AgentStage::Ringing,
        cause: AgentFailureCause::NotAnswered,
        status: None,
    }));
    // A phone that rang is there: not taken offline.
    assert!(sim.dropped.is_empty());
    // 1002 rings next (after the queue's retry delay, 5 s) and answers.
    sim.advance(5_000);
    assert_eq!(sim.legs_to("1002").len(), 1);
    sim.advance(2_100);
    assert_eq!(bridged_to(&sim), ["1002"]);
    assert!(sim.call.is_bridged());
}

#[test]
fn a_phone_that_never_rings_is_taken_offline_and_the_call_rings_the_next_agent() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 3));
    sim.phones.insert("1001".into(), Phone::vanished());
    sim.phones
        .insert("1002".into(), Phone::answers_after(2_000));
    through_menu(&mut sim, '1');
    let a = single(&sim.legs_to("1001"));
    sim.advance(20_100);
    assert!(sim.ended(a));
    assert!(sim.notes().contains(&&RecordNote::AgentFailed {
        leg: a,
        stage: AgentStage::Ringing,
        cause: AgentFailureCause::NoResponse,
        status: None,
    }));
    assert_eq!(sim.dropped, ["1001"]);
    assert_eq!(sim.agent_state("1001"), "offline");
    sim.advance(7_100);
    assert_eq!(bridged_to(&sim), ["1002"]);
}

#[test]
fn an_invite_with_no_response_at_all_takes_the_agent_offline() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 3));
    sim.phones.insert("1001".into(), Phone::vanished());
    sim.phones
        .insert("1002".into(), Phone::answers_after(2_000));
    through_menu(&mut sim, '1');
    let a = single(&sim.legs_to("1001"));
    // Timer B fires before the ACD's ring timeout: no response to the INVITE.
    sim.advance(5_000);
    sim.legs.remove(&a);
    sim.send(CallInput::LegEnded {
        leg: a,
        reason: EndReason::NoAnswer,
    });
    assert_eq!(sim.dropped, ["1001"]);
    assert_eq!(sim.agent_state("1001"), "offline");
    assert!(
        sim.reports()
            .contains(&&AcdReport::AgentLost(AgentId::new("1001")))
    );
    sim.advance(7_100);
    assert_eq!(bridged_to(&sim), ["1002"]);
}

#[test]
fn a_busy_agent_is_not_paused_and_the_call_rings_the_next_agent() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 1));
    sim.phones
        .insert("1002".into(), Phone::answers_after(2_000));
    through_menu(&mut sim, '1');
    let a = single(&sim.legs_to("1001"));
    sim.legs.remove(&a);
    sim.send(CallInput::LegEnded {
        leg: a,
        reason: EndReason::Rejected { status: 486 },
    });
    assert!(sim.notes().contains(&&RecordNote::AgentFailed {
        leg: a,
        stage: AgentStage::Ringing,
        cause: AgentFailureCause::LegFailed,
        status: Some(486),
    }));
    assert_ne!(sim.agent_state("1001"), "paused");
    sim.advance(7_100);
    assert_eq!(bridged_to(&sim), ["1002"]);
}

#[test]
fn an_agent_vanishing_mid_call_sends_the_caller_back_to_the_queue_to_the_next_agent() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 3));
    sim.phones
        .insert("1002".into(), Phone::answers_after(3_000));
    through_menu(&mut sim, '1');
    sim.advance(4_100);
    let a = single(&sim.legs_to("1001"));
    assert_eq!(bridged_to(&sim), ["1001"], "{:#?}", sim.outputs);
    sim.advance(30_000);
    // No audio from 1001's phone: the shell ended its dialog and says so.
    let from = sim.heard.len();
    sim.legs.remove(&a);
    sim.send(CallInput::LegMediaLost(a));
    assert!(sim.notes().contains(&&RecordNote::AgentFailed {
        leg: a,
        stage: AgentStage::OnCall,
        cause: AgentFailureCause::MediaTimeout,
        status: None,
    }));
    assert_eq!(sim.dropped, ["1001"]);
    assert_eq!(sim.agent_state("1001"), "offline");
    assert_eq!(sim.heard_since(from).first(), Some(&hold()));
    assert!(sim.call.is_queued() || sim.call.is_bridged());
    sim.advance(3_100);
    assert_eq!(bridged_to(&sim), ["1001", "1002"]);
    assert!(sim.call.is_bridged());
}

#[test]
fn a_caller_hanging_up_while_agents_ring_cancels_every_leg() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::RingAll, 3));
    sim.phones.insert("1001".into(), Phone::never_answers());
    sim.phones.insert("1002".into(), Phone::never_answers());
    through_menu(&mut sim, '1');
    let (a, b) = (single(&sim.legs_to("1001")), single(&sim.legs_to("1002")));
    sim.advance(3_000);
    sim.send(CallInput::Ended { caller: true });
    assert!(sim.ended(a) && sim.ended(b), "{:?}", sim.outputs);
    assert!(sim.call.is_over());
    // The shell tells the ACD at the task's end; the agents are free again and no
    // miss is counted for a caller who left.
    sim.acd_input(QueueInput::CallEnded {
        call: CallId(CALL.into()),
        who_hung_up: Party::Caller,
    });
    sim.advance(100);
    assert!(
        !sim.heard.contains(&Heard::HangUp),
        "no BYE to a caller gone"
    );
    assert_eq!(sim.agent_state("1001"), "available");
    assert_eq!(sim.agent_state("1002"), "available");
}

#[test]
fn a_blind_transfer_to_the_queue_rings_another_agent_and_bridges_the_caller() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 3));
    sim.phones
        .insert("1002".into(), Phone::answers_after(3_000));
    through_menu(&mut sim, '1');
    sim.advance(4_100);
    let a = single(&sim.legs_to("1001"));
    assert_eq!(sim.call.bridged_agent(), Some(&AgentId::new("1001")));
    sim.advance(60_000);
    let from = sim.heard.len();
    sim.blind_transfer(crate::queue::TransferTarget::Queue(CityId::new("jinan")));
    assert!(sim.ended(a), "the transferring agent's leg ends");
    assert!(sim.notes().contains(&&RecordNote::BlindTransfer {
        leg: a,
        to: "queue:jinan".into(),
    }));
    assert_eq!(sim.heard_since(from).first(), Some(&hold()));
    assert_eq!(sim.agent_state("1001"), "wrap_up");
    sim.advance(3_100);
    assert_eq!(bridged_to(&sim), ["1001", "1002"]);
    assert_eq!(sim.call.bridged_agent(), Some(&AgentId::new("1002")));
    // 1002 hangs up first: the caller rates the service.
    sim.peer_hangs_up();
    assert!(
        matches!(sim.heard.last(), Some(Heard::Once(p)) if p == &["survey"]),
        "{:?}",
        sim.heard
    );
}

#[test]
fn a_unit_that_does_not_answer_sends_the_caller_back_to_the_queue() {
    let mut sim = Sim::in_hours();
    through_menu(&mut sim, '1');
    sim.advance(5_000);
    assert!(sim.call.is_bridged());
    let a = single(&sim.legs_to("1001"));
    let enqueued = |sim: &Sim| {
        sim.outputs
            .iter()
            .filter(|o| matches!(o, CallOutput::Enqueue { .. }))
            .count()
    };
    assert_eq!(enqueued(&sim), 1);
    // The agent transfers the caller to a unit: the ACD lets go, hold music plays while
    // the unit's number is dialled; nobody answers there.
    let unit = crate::ticket::units::UnitId::new("jinan-lixia");
    sim.blind_transfer(crate::queue::TransferTarget::Unit(unit.clone()));
    assert!(sim.ended(a));
    assert!(
        sim.notes()
            .contains(&&RecordNote::TransferredToUnit(unit.clone()))
    );
    assert_eq!(sim.heard.last(), Some(&hold()));
    assert!(sim.outputs.contains(&CallOutput::Dial {
        leg: LegId(2),
        target: LegTarget::Unit(unit),
    }));
    // The unit rings 30 s; then the call CANCELs and the caller is queued afresh.
    sim.advance(29_900);
    assert_eq!(enqueued(&sim), 1);
    let from = sim.heard.len();
    sim.advance(200);
    assert!(sim.ended(LegId(2)));
    assert_eq!(enqueued(&sim), 2);
    assert!(sim.call.is_queued());
    assert_eq!(sim.heard_since(from).first(), Some(&hold()));
}

#[test]
fn a_unit_that_answers_is_bridged_and_its_hang_up_ends_the_call_without_a_survey() {
    let mut sim = Sim::in_hours();
    sim.unit_answer_after = Some(Duration::from_secs(5));
    through_menu(&mut sim, '1');
    sim.advance(5_000);
    let unit = crate::ticket::units::UnitId::new("jinan-lixia");
    sim.blind_transfer(crate::queue::TransferTarget::Unit(unit));
    sim.advance(5_100);
    assert_eq!(bridged_to(&sim), ["1001", "unit:jinan-lixia"]);
    assert!(sim.call.is_bridged());
    assert!(!sim.call.in_acd(), "the ACD let go at the unit transfer");
    assert_eq!(sim.call.bridged_agent(), None);
    sim.advance(60_000);
    sim.peer_hangs_up();
    assert_eq!(sim.heard.last(), Some(&Heard::HangUp));
    assert!(sim.notes().contains(&&RecordNote::PeerHungUp));
    assert!(
        !sim.heard
            .iter()
            .any(|h| matches!(h, Heard::Once(p) if p == &["survey"]))
    );
}

#[test]
fn a_shutdown_ending_the_agent_leg_ends_the_call_without_a_survey() {
    let mut sim = Sim::in_hours();
    through_menu(&mut sim, '1');
    sim.advance(5_000);
    let a = single(&sim.legs_to("1001"));
    sim.legs.remove(&a);
    sim.send(CallInput::LegEnded {
        leg: a,
        reason: EndReason::Shutdown,
    });
    assert_eq!(sim.heard.last(), Some(&Heard::HangUp));
    assert!(sim.notes().contains(&&RecordNote::ShutdownEnd));
    assert!(
        sim.reports()
            .contains(&&AcdReport::CallEnded(Party::System))
    );
    assert!(
        !sim.heard
            .iter()
            .any(|h| matches!(h, Heard::Once(p) if p == &["survey"]))
    );
}

#[test]
fn after_hours_a_duty_agent_who_answers_is_bridged_and_no_survey_follows() {
    let mut sim = Sim::after_hours(true);
    sim.phones
        .insert("duty".into(), Phone::answers_after(3_000));
    sim.digit('9');
    sim.advance(1_000);
    assert!(sim.heard.contains(&hold()), "{:?}", sim.heard);
    sim.advance(3_000);
    assert_eq!(bridged_to(&sim), ["duty"], "{:?}", sim.heard);
    assert!(sim.call.is_bridged());
    assert_eq!(
        sim.call.bridged_agent(),
        None,
        "not the queue's: no transfer"
    );
    sim.advance(60_000);
    sim.peer_hangs_up();
    assert_eq!(sim.heard.last(), Some(&Heard::HangUp));
    assert!(sim.reports().is_empty(), "no ACD after hours");
}

#[test]
fn after_hours_a_duty_agent_who_does_not_answer_in_30_s_leaves_the_caller_the_message() {
    let mut sim = Sim::after_hours(true);
    sim.phones.insert("duty".into(), Phone::never_answers());
    sim.digit('9');
    sim.advance(29_000);
    assert_eq!(sim.heard.last(), Some(&hold()), "{:?}", sim.heard);
    sim.advance(2_000);
    assert!(sim.ended(LegId(1)));
    assert!(sim.notes().contains(&&RecordNote::AgentFailed {
        leg: LegId(1),
        stage: AgentStage::Ringing,
        cause: AgentFailureCause::LegFailed,
        status: None,
    }));
    assert_eq!(sim.heard.last(), Some(&Heard::Recording), "{:?}", sim.heard);
}

/// 1001 answered the queue call and consults 1002 (the consultation holds 1002 in the
/// ACD, as the shell's consultation task does); the caller is on hold.
fn consulting(sim: &mut Sim) -> LegId {
    through_menu(sim, '1');
    sim.advance(4_100);
    let a = single(&sim.legs_to("1001"));
    sim.acd_input(QueueInput::DirectCall {
        agent: AgentId::new("1002"),
        call: CallId("consult-1".into()),
    });
    sim.send(CallInput::AgentHeld(true));
    a
}

fn refer(sim: &mut Sim, leg: LegId, from: &str, target: ReplacesTarget) {
    sim.send(CallInput::AttendedRefer {
        leg,
        from: AgentId::new(from),
        target,
    });
}

fn consultation_of(agent: &str) -> ReplacesTarget {
    ReplacesTarget::Consultation {
        placed_by: AgentId::new(agent),
    }
}

fn steps(sim: &Sim) -> Vec<TransferStep> {
    sim.outputs
        .iter()
        .filter_map(|o| match o {
            CallOutput::Transfer(step) => Some(step.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_attended_transfer_bridges_the_caller_to_the_consulted_agent_and_frees_the_first() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 3));
    let a = consulting(&mut sim);
    assert_eq!(sim.heard.last(), Some(&hold()), "held: {:?}", sim.heard);
    refer(&mut sim, a, "1001", consultation_of("1001"));
    assert_eq!(steps(&sim), vec![TransferStep::TakeConsultedLeg]);
    // The consultation's task hands its leg to 1002 over.
    sim.advance(50);
    sim.offered = Some("1002".into());
    sim.send(CallInput::ConsultedLeg(Some(AgentId::new("1002"))));
    let b = LegId(a.0 + 1);
    assert_eq!(
        steps(&sim),
        vec![
            TransferStep::TakeConsultedLeg,
            TransferStep::Adopt(b),
            TransferStep::Completed,
            TransferStep::EndConsultation,
        ]
    );
    // NOTIFY 200 before the BYE of 1001's leg, that BYE before the consultation's.
    let order: Vec<&CallOutput> = sim
        .outputs
        .iter()
        .filter(|o| {
            matches!(
                o,
                CallOutput::Transfer(TransferStep::Completed | TransferStep::EndConsultation)
                    | CallOutput::EndLeg(_)
            )
        })
        .collect();
    assert_eq!(
        order,
        vec![
            &CallOutput::Transfer(TransferStep::Completed),
            &CallOutput::EndLeg(a),
            &CallOutput::Transfer(TransferStep::EndConsultation),
        ]
    );
    assert_eq!(sim.call.bridged_agent(), Some(&AgentId::new("1002")));
    assert_eq!(bridged_to(&sim), vec!["1001", "1002"]);
    assert_eq!(sim.heard.last(), Some(&Heard::Stop), "hold music stops");
    assert!(sim.notes().contains(&&RecordNote::AttendedTransfer {
        leg: a,
        to: AgentId::new("1002"),
    }));
    assert_eq!(sim.agent_state("1002"), "on_call");
    assert_ne!(sim.agent_state("1001"), "on_call");
    // 1001's leg ending is no news: the caller stays with 1002.
    sim.advance(100);
    assert!(sim.call.is_bridged());
    assert!(
        !sim.reports()
            .iter()
            .any(|r| matches!(r, AcdReport::CallEnded(_)))
    );
    // 1002 hangs up first: the caller rates the service.
    sim.peer_hangs_up();
    assert!(
        matches!(sim.heard.last(), Some(Heard::Once(p)) if p == &["survey"]),
        "{:?}",
        sim.heard
    );
    assert!(sim.reports().contains(&&AcdReport::CallEnded(Party::Agent)));
}

#[test]
fn a_refer_for_someone_elses_consultation_or_a_second_one_is_refused() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 3));
    let a = consulting(&mut sim);
    refer(&mut sim, a, "1001", consultation_of("1003"));
    refer(&mut sim, a, "1001", ReplacesTarget::NotAConsultation);
    // A REFER on a leg that is not the bridged one (a late leg of the ring-all).
    refer(&mut sim, LegId(99), "1001", consultation_of("1001"));
    assert_eq!(steps(&sim), vec![TransferStep::RefuseRefer; 3]);
    refer(&mut sim, a, "1001", consultation_of("1001"));
    refer(&mut sim, a, "1001", consultation_of("1001"));
    assert_eq!(
        steps(&sim)[3..],
        [TransferStep::TakeConsultedLeg, TransferStep::RefuseRefer]
    );
    // A Replaces naming no usable dialog: the REFER hears what that INVITE would.
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 3));
    let a = consulting(&mut sim);
    refer(&mut sim, a, "1001", ReplacesTarget::NoDialog(481));
    assert_eq!(steps(&sim), vec![TransferStep::Failed(481)]);
    assert_eq!(sim.call.bridged_agent(), Some(&AgentId::new("1001")));
}

#[test]
fn a_consultation_leg_that_does_not_come_in_5_s_fails_the_transfer_and_the_caller_stays() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 3));
    let a = consulting(&mut sim);
    refer(&mut sim, a, "1001", consultation_of("1001"));
    sim.advance(4_900);
    assert_eq!(steps(&sim), vec![TransferStep::TakeConsultedLeg]);
    sim.advance(200);
    assert_eq!(
        steps(&sim),
        vec![TransferStep::TakeConsultedLeg, TransferStep::Failed(503)]
    );
    assert_eq!(sim.call.bridged_agent(), Some(&AgentId::new("1001")));
    assert!(!sim.ended(a));
    // The leg coming late is hung up; a new REFER may try again.
    sim.offered = Some("1002".into());
    sim.send(CallInput::ConsultedLeg(Some(AgentId::new("1002"))));
    assert_eq!(steps(&sim).last(), Some(&TransferStep::DropOffered));
    refer(&mut sim, a, "1001", consultation_of("1001"));
    assert_eq!(steps(&sim).last(), Some(&TransferStep::TakeConsultedLeg));
    // The consultation is gone meanwhile: 503 at once.
    sim.send(CallInput::ConsultedLeg(None));
    assert_eq!(steps(&sim).last(), Some(&TransferStep::Failed(503)));
    assert!(sim.call.is_bridged());
}

#[test]
fn an_invite_with_replaces_takes_the_bridged_legs_place_and_only_that_leg() {
    let mut sim = Sim::in_hours_with(two_agents(crate::queue::Strategy::Linear, 3));
    let a = consulting(&mut sim);
    sim.offered = Some("1002".into());
    sim.send(CallInput::Replace {
        leg: LegId(99),
        by: AgentId::new("1002"),
    });
    assert_eq!(steps(&sim), vec![TransferStep::RefuseReplacing(481)]);
    sim.offered = Some("1002".into());
    sim.send(CallInput::Replace {
        leg: a,
        by: AgentId::new("1002"),
    });
    assert!(steps(&sim).contains(&TransferStep::Adopt(LegId(a.0 + 1))));
    assert!(sim.ended(a));
    assert_eq!(sim.call.bridged_agent(), Some(&AgentId::new("1002")));
    // 1002's phone vanishes later: it is 1002 the ACD loses, and the caller goes back
    // to the queue.
    sim.advance(30_000);
    let from = sim.heard.len();
    sim.send(CallInput::LegMediaLost(LegId(a.0 + 1)));
    assert!(
        sim.reports()
            .contains(&&AcdReport::AgentLost(AgentId::new("1002"))),
        "{:?}",
        sim.reports()
    );
    assert_eq!(sim.agent_state("1002"), "offline");
    assert_eq!(sim.heard_since(from).first(), Some(&hold()));
    assert!(sim.call.is_queued());
}

#[test]
fn a_unit_that_cannot_be_dialled_sends_the_caller_back_to_the_queue_at_once() {
    let mut sim = Sim::in_hours();
    through_menu(&mut sim, '1');
    sim.advance(5_000);
    let unit = crate::ticket::units::UnitId::new("jinan-lixia");
    sim.blind_transfer(crate::queue::TransferTarget::Unit(unit));
    // No permit, no trunk or no ports: the shell fails the leg at once.
    let from = sim.heard.len();
    sim.send(CallInput::LegFailed {
        leg: LegId(2),
        failure: crate::queue::LegFailure::Unreachable,
    });
    assert!(sim.call.is_queued());
    assert_eq!(sim.heard_since(from).first(), Some(&hold()));
    assert_eq!(
        sim.outputs
            .iter()
            .filter(|o| matches!(o, CallOutput::Enqueue { .. }))
            .count(),
        2
    );
}

#[test]
fn a_blind_transfer_to_the_survey_ends_the_agent_leg_and_asks_the_caller() {
    let mut sim = Sim::in_hours();
    through_menu(&mut sim, '1');
    sim.advance(5_000);
    let a = single(&sim.legs_to("1001"));
    sim.blind_transfer(crate::queue::TransferTarget::Survey);
    assert!(sim.ended(a));
    assert!(
        matches!(sim.heard.last(), Some(Heard::Once(p)) if p == &["survey"]),
        "{:?}",
        sim.heard
    );
    assert!(sim.notes().contains(&&RecordNote::BlindTransfer {
        leg: a,
        to: "survey".into(),
    }));
    // The transferred agent's leg ending later is no news: the survey goes on.
    sim.advance(100);
    assert!(!sim.call.is_over());
}
