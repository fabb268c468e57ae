//! The call in simulated time (milliseconds, no sleeps): a [`Call`], the real IVR flow
//! and survey, the real [`Acd`], and a fake shell standing in for sockets, player,
//! recorder and phones. Each test is what the caller would hear, in order.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta};

use super::*;
use crate::calendar::Calendar;
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
        crate::queue::ReleaseReason::TransferredToUnit(_) => QueueCue::ToUnit,
        crate::queue::ReleaseReason::TransferredToSurvey => QueueCue::Survey,
    }
}

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
    /// The ACD rang this agent; it answers after this long (None: it never answers).
    answer_after: Option<Duration>,
    ringing: Option<(AgentId, Instant)>,
    queued: bool,
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
            answer_after: Some(Duration::from_secs(4)),
            ringing: None,
            queued: false,
            prompt_length: Duration::from_secs(2),
        }
    }

    /// In hours, agent 1001 signed in and free.
    fn in_hours() -> Sim {
        let mut acd =
            Acd::new(queues(), calendar(), opening(), 7).unwrap_or_else(|e| panic!("{e}"));
        for input in [
            QueueInput::Registered {
                agent: AgentId::new("1001"),
            },
            QueueInput::SignIn {
                agent: AgentId::new("1001"),
            },
        ] {
            acd.handle(opening(), input)
                .unwrap_or_else(|e| panic!("{e}"));
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
                CallOutput::RingDutyList { .. } => {
                    // Nobody on the duty list answers in these tests.
                    self.call.handle(self.now, CallInput::DutyListUnavailable);
                }
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
            let cue = match action {
                QueueAction::PlayHoldMusic { .. } => Some(QueueCue::HoldMusic),
                QueueAction::Announce { position, .. } => {
                    Some(QueueCue::Announce(position_prompts(position)))
                }
                QueueAction::PleaseHold { .. } => Some(QueueCue::PleaseHold),
                QueueAction::StopAnnouncement { .. } => Some(QueueCue::StopAnnouncement),
                QueueAction::ToVoiceMessage { reason, .. } => {
                    self.queued = false;
                    Some(QueueCue::VoiceMessage(reason))
                }
                QueueAction::CallbackRegistered { .. } => {
                    self.queued = false;
                    Some(QueueCue::CallbackRegistered)
                }
                QueueAction::RingAgent { agent, .. } => {
                    self.ringing = Some((agent, self.now));
                    None
                }
                QueueAction::CancelRing { .. } => {
                    self.ringing = None;
                    None
                }
                QueueAction::CallReleased { reason, .. } => {
                    self.queued = false;
                    Some(released_cue(&reason))
                }
                _ => None,
            };
            if let Some(cue) = cue {
                self.call.handle(self.now, CallInput::Queue(cue));
            }
        }
        self.run_outputs();
    }

    /// Move the clock by `ms`, firing the call's and the ACD's timers, the player's end
    /// and the ringing phone's answer on the way.
    fn advance(&mut self, ms: u64) {
        let target = self.now + Duration::from_millis(ms);
        loop {
            let acd_due = self.acd.as_ref().and_then(Acd::poll_timeout).map(|t| {
                let ms = (t - self.wall_start).num_milliseconds().max(0);
                self.start + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
            });
            let answer_due = match (&self.ringing, self.answer_after) {
                (Some((_, since)), Some(after)) => Some(*since + after),
                _ => None,
            };
            let due = [
                self.call.poll_timeout(),
                self.playing_until,
                acd_due,
                answer_due,
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
            if answer_due.is_some_and(|t| t <= self.now)
                && let Some((agent, _)) = self.ringing.take()
            {
                self.acd_input(QueueInput::AgentAnswered {
                    call: CallId(CALL.into()),
                    agent,
                });
                self.send(CallInput::Bridged(Peer::QueueAgent));
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
    assert_eq!(sim.heard_since(queued_at), [hold(), Heard::Stop]);
    // Two minutes of talk; the agent hangs up first: the survey asks at once.
    sim.advance(120_000);
    let bridged_until = sim.heard.len();
    sim.acd_input(QueueInput::CallEnded {
        call: CallId(CALL.into()),
        who_hung_up: Party::Agent,
    });
    sim.send(CallInput::PeerLeft { by_peer: true });
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
    sim.answer_after = None;
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

#[test]
fn a_unit_that_does_not_answer_sends_the_caller_back_to_the_queue() {
    let mut sim = Sim::in_hours();
    through_menu(&mut sim, '1');
    sim.advance(5_000);
    assert!(sim.call.is_bridged());
    let enqueued = |sim: &Sim| {
        sim.outputs
            .iter()
            .filter(|o| matches!(o, CallOutput::Enqueue { .. }))
            .count()
    };
    assert_eq!(enqueued(&sim), 1);
    // The agent transfers the caller to a unit: the ACD lets go, hold music plays while
    // the unit's number is dialled; nobody answers there.
    sim.acd_input(QueueInput::Transfer {
        call: CallId(CALL.into()),
        to: crate::queue::TransferTarget::Unit(crate::ticket::units::UnitId::new("jinan-lixia")),
    });
    assert_eq!(sim.heard.last(), Some(&hold()));
    sim.send(CallInput::UnitFailed);
    assert_eq!(enqueued(&sim), 2);
    assert!(sim.call.is_queued());
    // A unit that answers and later hangs up ends the call (no survey for a unit).
    sim.send(CallInput::Queue(QueueCue::ToUnit));
    sim.send(CallInput::Bridged(Peer::Unit));
    sim.send(CallInput::PeerLeft { by_peer: true });
    assert_eq!(sim.heard.last(), Some(&Heard::HangUp));
}

#[test]
fn a_system_end_of_the_agent_leg_ends_the_call_without_a_survey() {
    let mut sim = Sim::in_hours();
    through_menu(&mut sim, '1');
    sim.advance(5_000);
    sim.send(CallInput::PeerLeft { by_peer: false });
    assert_eq!(sim.heard.last(), Some(&Heard::HangUp));
    assert!(
        !sim.heard
            .iter()
            .any(|h| matches!(h, Heard::Once(p) if p == &["survey"]))
    );
}
