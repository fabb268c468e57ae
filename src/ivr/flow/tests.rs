use std::time::{Duration, Instant};

use super::*;
use crate::ivr::hours::WorkingHours;

fn p(id: &str) -> PromptRef {
    PromptRef::prompt(id)
}

fn play(ids: &[&str]) -> IvrAction {
    IvrAction::Play(ids.iter().map(|id| p(id)).collect())
}

fn city_info(city: &str, open: bool, has_duty_list: bool) -> CallCityInfo {
    CallCityInfo {
        city: CityId::new(city),
        open_status: OpenStatus {
            open,
            next_open: None,
            provisional: false,
        },
        has_duty_list,
        hours_spoken: WorkingHours::default().spoken(),
    }
}

/// Drives a flow in simulated time.
struct Sim {
    flow: IvrFlow,
    now: Instant,
}

impl Sim {
    fn new(config: IvrConfig, city: Option<CallCityInfo>) -> Self {
        Self {
            flow: IvrFlow::new(
                config,
                IvrContext {
                    city,
                    province_center: CityId::new("jinan"),
                },
            ),
            now: Instant::now(),
        }
    }

    fn in_hours() -> Self {
        Self::new(IvrConfig::default(), Some(city_info("jinan", true, false)))
    }

    fn after_hours(has_duty_list: bool) -> Self {
        Self::new(
            IvrConfig::default(),
            Some(city_info("jinan", false, has_duty_list)),
        )
    }

    fn drain(&mut self) -> Vec<IvrAction> {
        std::iter::from_fn(|| self.flow.poll_output()).collect()
    }

    fn send(&mut self, input: IvrInput) -> Vec<IvrAction> {
        self.flow.handle(self.now, input);
        self.drain()
    }

    fn digit(&mut self, digit: char) -> Vec<IvrAction> {
        self.send(IvrInput::Digit(digit))
    }

    fn done(&mut self) -> Vec<IvrAction> {
        self.send(IvrInput::PromptDone)
    }

    /// Moves the clock, firing the timer like the shell would.
    fn advance(&mut self, ms: u64) -> Vec<IvrAction> {
        self.now += Duration::from_millis(ms);
        if self.flow.poll_timeout().is_some_and(|t| t <= self.now) {
            self.flow.handle_timeout(self.now);
        }
        self.drain()
    }

    /// Start, greeting played, menu played: waiting for a digit.
    fn at_in_hours_menu(mut self) -> Self {
        assert_eq!(self.send(IvrInput::Start), vec![play(&["greeting"])]);
        assert_eq!(self.done(), vec![play(&["menu"])]);
        assert_eq!(self.done(), vec![]);
        self
    }

    /// Start, greeting, hours prompt, after-hours menu played.
    fn at_after_hours_menu(mut self) -> Self {
        assert_eq!(self.send(IvrInput::Start), vec![play(&["greeting"])]);
        let hours = self.done();
        let [IvrAction::Play(list)] = hours.as_slice() else {
            panic!("expected the hours prompt, got {hours:?}");
        };
        assert_eq!(list.first(), Some(&p("after_hours")));
        assert_eq!(list.get(1), Some(&p("hours_intro")));
        assert_eq!(
            list.get(2..),
            Some(WorkingHours::default().spoken().as_slice())
        );
        assert_eq!(self.done(), vec![play(&["after_hours_menu"])]);
        assert_eq!(self.done(), vec![]);
        self
    }
}

fn enqueue(category: CallCategory, urgency: Urgency) -> IvrAction {
    IvrAction::Enqueue { category, urgency }
}

fn start_recording() -> IvrAction {
    IvrAction::StartRecording {
        max: Duration::from_secs(120),
        beep: true,
        stop_digit: '#',
    }
}

#[test]
fn in_hours_each_digit_enqueues_with_its_category_and_urgency() {
    for (digit, category, urgency) in [
        ('1', CallCategory::Consultation, Urgency::Normal),
        ('2', CallCategory::Complaint, Urgency::Normal),
        ('3', CallCategory::Suggestion, Urgency::Normal),
        ('9', CallCategory::Consultation, Urgency::Urgent),
    ] {
        let mut sim = Sim::in_hours().at_in_hours_menu();
        assert_eq!(sim.digit(digit), vec![play(&["please_hold"])], "{digit}");
        assert_eq!(sim.done(), vec![enqueue(category, urgency)], "{digit}");
        assert!(sim.flow.is_finished());
        assert_eq!(sim.flow.outcome(), Some(IvrOutcome::Enqueued));
        assert_eq!(sim.flow.choice(), Some((category, urgency)));
        assert_eq!(sim.flow.poll_timeout(), None);
    }
}

#[test]
fn digit_during_menu_prompt_barges_in() {
    let mut sim = Sim::in_hours();
    sim.send(IvrInput::Start);
    sim.done();
    assert_eq!(
        sim.digit('2'),
        vec![IvrAction::StopPlayback, play(&["please_hold"])]
    );
}

#[test]
fn digits_during_the_greeting_are_ignored() {
    let mut sim = Sim::in_hours();
    sim.send(IvrInput::Start);
    assert_eq!(sim.digit('2'), vec![]);
    assert_eq!(sim.done(), vec![play(&["menu"])]);
}

#[test]
fn without_barge_in_digits_during_the_prompt_are_ignored() {
    let config = IvrConfig {
        barge_in: false,
        ..IvrConfig::default()
    };
    let mut sim = Sim::new(config, Some(city_info("jinan", true, false)));
    sim.send(IvrInput::Start);
    sim.done();
    assert_eq!(sim.digit('2'), vec![]);
    sim.done();
    assert_eq!(sim.digit('2'), vec![play(&["please_hold"])]);
}

#[test]
fn zero_repeats_the_menu_without_using_up_retries() {
    let mut sim = Sim::in_hours().at_in_hours_menu();
    for _ in 0..5 {
        assert_eq!(sim.digit('0'), vec![play(&["menu"])]);
        assert_eq!(
            sim.flow.poll_timeout(),
            None,
            "no timer while the menu plays"
        );
        sim.done();
    }
    assert_eq!(sim.digit('3'), vec![play(&["please_hold"])]);
    assert_eq!(
        sim.done(),
        vec![enqueue(CallCategory::Suggestion, Urgency::Normal)]
    );
}

#[test]
fn menu_timeouts_replay_then_fall_back_to_a_consultation() {
    let mut sim = Sim::in_hours().at_in_hours_menu();
    assert_eq!(sim.advance(5_999), vec![], "not before the digit timeout");
    assert_eq!(sim.advance(1), vec![play(&["timeout", "menu"])]);
    sim.done();
    assert_eq!(sim.advance(6_000), vec![play(&["timeout", "menu"])]);
    sim.done();
    // Third silence: retries (2) are used up → default category, still to an agent.
    assert_eq!(sim.advance(6_000), vec![play(&["please_hold"])]);
    assert_eq!(
        sim.done(),
        vec![enqueue(CallCategory::Consultation, Urgency::Normal)]
    );
}

#[test]
fn invalid_digit_is_explained_then_a_valid_one_counts() {
    let mut sim = Sim::in_hours().at_in_hours_menu();
    assert_eq!(sim.digit('5'), vec![play(&["invalid", "menu"])]);
    sim.done();
    assert_eq!(sim.digit('*'), vec![play(&["invalid", "menu"])]);
    sim.done();
    assert_eq!(sim.digit('2'), vec![play(&["please_hold"])]);
    assert_eq!(
        sim.done(),
        vec![enqueue(CallCategory::Complaint, Urgency::Normal)]
    );
}

#[test]
fn no_choice_can_be_configured_to_hang_up() {
    let config = IvrConfig {
        no_choice: NoChoiceAction::Hangup,
        max_retries: 1,
        ..IvrConfig::default()
    };
    let mut sim = Sim::new(config, Some(city_info("jinan", true, false))).at_in_hours_menu();
    assert_eq!(sim.digit('7'), vec![play(&["invalid", "menu"])]);
    sim.done();
    assert_eq!(sim.digit('7'), vec![play(&["goodbye"])]);
    assert_eq!(
        sim.done(),
        vec![IvrAction::Hangup {
            reason: HangupReason::NoChoice
        }]
    );
    assert_eq!(sim.flow.outcome(), Some(IvrOutcome::SystemHangup));
}

#[test]
fn after_hours_message_ended_with_hash_becomes_a_work_order() {
    let mut sim = Sim::after_hours(false).at_after_hours_menu();
    assert_eq!(sim.digit('2'), vec![play(&["voice_message_intro"])]);
    assert_eq!(sim.done(), vec![start_recording()]);
    assert_eq!(
        sim.digit('5'),
        vec![],
        "other digits do not stop the message"
    );
    sim.now += Duration::from_secs(5);
    assert_eq!(sim.digit('#'), vec![IvrAction::StopRecording]);
    assert_eq!(
        sim.send(IvrInput::RecordingDone {
            duration: Duration::from_secs(5)
        }),
        vec![
            IvrAction::CreateVoiceMessageOrder {
                category: CallCategory::Complaint,
                urgency: Urgency::Normal,
                recording_duration: Duration::from_secs(5),
            },
            play(&["thanks"]),
        ]
    );
    assert_eq!(
        sim.done(),
        vec![IvrAction::Hangup {
            reason: HangupReason::MessageTaken
        }]
    );
    assert!(sim.flow.is_finished());
    assert_eq!(sim.flow.outcome(), Some(IvrOutcome::VoiceMessage));
}

#[test]
fn after_hours_message_at_max_length_is_kept() {
    let mut sim = Sim::after_hours(false).at_after_hours_menu();
    sim.digit('1');
    sim.done();
    // The shell stops at max by itself.
    assert_eq!(sim.advance(120_000), vec![]);
    assert_eq!(
        sim.send(IvrInput::RecordingDone {
            duration: Duration::from_secs(120)
        }),
        vec![
            IvrAction::CreateVoiceMessageOrder {
                category: CallCategory::Consultation,
                urgency: Urgency::Normal,
                recording_duration: Duration::from_secs(120),
            },
            play(&["thanks"]),
        ]
    );
}

#[test]
fn recording_is_stopped_by_the_flow_if_the_shell_overruns_max() {
    let mut sim = Sim::after_hours(false).at_after_hours_menu();
    sim.digit('1');
    sim.done();
    assert_eq!(sim.advance(121_999), vec![]);
    assert_eq!(sim.advance(1), vec![IvrAction::StopRecording]);
    let out = sim.send(IvrInput::RecordingDone {
        duration: Duration::from_secs(120),
    });
    assert_eq!(out.len(), 2, "{out:?}");
}

#[test]
fn too_short_message_makes_no_order() {
    let mut sim = Sim::after_hours(false).at_after_hours_menu();
    sim.digit('3');
    sim.done();
    sim.digit('#');
    assert_eq!(
        sim.send(IvrInput::RecordingDone {
            duration: Duration::from_millis(300)
        }),
        vec![play(&["no_message"])]
    );
    assert_eq!(
        sim.done(),
        vec![IvrAction::Hangup {
            reason: HangupReason::NoMessage
        }]
    );
    assert_eq!(sim.flow.outcome(), Some(IvrOutcome::SystemHangup));
}

#[test]
fn caller_hanging_up_mid_message_still_files_the_message() {
    let mut sim = Sim::after_hours(false).at_after_hours_menu();
    sim.digit('2');
    sim.done();
    assert_eq!(
        sim.send(IvrInput::CallerHangup),
        vec![IvrAction::StopRecording]
    );
    assert!(!sim.flow.is_finished());
    assert_eq!(
        sim.send(IvrInput::RecordingDone {
            duration: Duration::from_secs(12)
        }),
        vec![IvrAction::CreateVoiceMessageOrder {
            category: CallCategory::Complaint,
            urgency: Urgency::Normal,
            recording_duration: Duration::from_secs(12),
        }]
    );
    assert!(sim.flow.is_finished());
    assert_eq!(sim.flow.outcome(), Some(IvrOutcome::VoiceMessage));
}

#[test]
fn urgent_after_hours_rings_the_duty_list_when_there_is_one() {
    let mut sim = Sim::after_hours(true).at_after_hours_menu();
    assert_eq!(sim.digit('9'), vec![play(&["duty_connect"])]);
    assert_eq!(
        sim.done(),
        vec![IvrAction::RingDutyList {
            category: CallCategory::Consultation,
            urgency: Urgency::Urgent
        }]
    );
    assert_eq!(sim.flow.outcome(), Some(IvrOutcome::DutyList));
    // Nobody answers: the caller can still leave an urgent message.
    assert_eq!(
        sim.send(IvrInput::DutyListUnavailable),
        vec![play(&["voice_message_intro"])]
    );
    assert_eq!(sim.done(), vec![start_recording()]);
    sim.digit('#');
    let out = sim.send(IvrInput::RecordingDone {
        duration: Duration::from_secs(8),
    });
    assert_eq!(
        out.first(),
        Some(&IvrAction::CreateVoiceMessageOrder {
            category: CallCategory::Consultation,
            urgency: Urgency::Urgent,
            recording_duration: Duration::from_secs(8),
        })
    );
}

#[test]
fn urgent_after_hours_without_duty_list_takes_an_urgent_message() {
    let mut sim = Sim::after_hours(false).at_after_hours_menu();
    assert_eq!(sim.digit('9'), vec![play(&["voice_message_intro"])]);
    sim.done();
    sim.digit('#');
    let out = sim.send(IvrInput::RecordingDone {
        duration: Duration::from_secs(3),
    });
    assert_eq!(
        out.first(),
        Some(&IvrAction::CreateVoiceMessageOrder {
            category: CallCategory::Consultation,
            urgency: Urgency::Urgent,
            recording_duration: Duration::from_secs(3),
        })
    );
}

#[test]
fn after_hours_silence_still_leads_to_a_message() {
    let mut sim = Sim::after_hours(true).at_after_hours_menu();
    assert_eq!(
        sim.advance(6_000),
        vec![play(&["timeout", "after_hours_menu"])]
    );
    sim.done();
    assert_eq!(sim.digit('4'), vec![play(&["invalid", "after_hours_menu"])]);
    sim.done();
    assert_eq!(sim.advance(6_000), vec![play(&["voice_message_intro"])]);
    assert_eq!(
        sim.flow.choice(),
        Some((CallCategory::Consultation, Urgency::Normal))
    );
}

fn unresolved() -> Sim {
    let mut sim = Sim::new(IvrConfig::default(), None);
    assert_eq!(sim.send(IvrInput::Start), vec![play(&["greeting"])]);
    assert_eq!(sim.done(), vec![play(&["city_menu"])]);
    sim.done();
    sim
}

fn select(city: &str, how: ResolvedBy) -> IvrAction {
    IvrAction::SelectCity {
        city: CityId::new(city),
        how,
    }
}

#[test]
fn city_menu_single_digit_waits_for_a_possible_second_digit() {
    let mut sim = unresolved();
    // "1" is 济南 but also the start of "10".."16": wait the inter-digit time.
    assert_eq!(sim.digit('1'), vec![]);
    assert_eq!(sim.advance(2_999), vec![]);
    assert_eq!(sim.advance(1), vec![select("jinan", ResolvedBy::Menu)]);
    // The shell looks the city up; in hours → the category menu.
    assert_eq!(
        sim.send(IvrInput::CityInfo(city_info("jinan", true, false))),
        vec![play(&["menu"])]
    );
    assert_eq!(sim.flow.city(), Some(&CityId::new("jinan")));
}

#[test]
fn city_menu_two_digits_and_hash() {
    let mut sim = unresolved();
    assert_eq!(sim.digit('1'), vec![]);
    assert_eq!(sim.digit('6'), vec![select("heze", ResolvedBy::Menu)]);

    let mut sim = unresolved();
    sim.digit('1');
    assert_eq!(sim.digit('#'), vec![select("jinan", ResolvedBy::Menu)]);

    let mut sim = unresolved();
    assert_eq!(sim.digit('5'), vec![select("dongying", ResolvedBy::Menu)]);
    // After hours in that city → its hours prompt.
    let out = sim.send(IvrInput::CityInfo(city_info("dongying", false, false)));
    assert!(
        matches!(out.as_slice(), [IvrAction::Play(list)] if list.first() == Some(&p("after_hours")))
    );
}

#[test]
fn city_menu_failure_falls_back_to_the_province_center() {
    let mut sim = unresolved();
    assert_eq!(sim.digit('0'), vec![play(&["invalid", "city_menu"])]);
    sim.done();
    assert_eq!(sim.advance(6_000), vec![play(&["timeout", "city_menu"])]);
    sim.done();
    sim.digit('1');
    assert_eq!(
        sim.digit('9'),
        vec![select("jinan", ResolvedBy::ProvinceFallback)]
    );
}

#[test]
fn empty_city_menu_goes_straight_to_the_province_center() {
    let config = IvrConfig {
        city_choices: Vec::new(),
        ..IvrConfig::default()
    };
    let mut sim = Sim::new(config, None);
    sim.send(IvrInput::Start);
    assert_eq!(
        sim.done(),
        vec![select("jinan", ResolvedBy::ProvinceFallback)]
    );
}

#[test]
fn caller_hangup_in_the_menu_is_abandoned() {
    let mut sim = Sim::in_hours().at_in_hours_menu();
    assert_eq!(sim.send(IvrInput::CallerHangup), vec![]);
    assert!(sim.flow.is_finished());
    assert_eq!(sim.flow.outcome(), Some(IvrOutcome::Abandoned));
    assert_eq!(sim.flow.poll_timeout(), None);
    assert_eq!(sim.digit('1'), vec![], "nothing after the end");
}

#[test]
fn config_overrides_from_toml_keep_the_other_defaults() {
    let config: IvrConfig = match toml::from_str(
        r#"
        max_message_secs = 60
        repeat_digit = "*"
        choices = [{ digit = "1", category = "complaint" }]
        [survey]
        retries = 2
        "#,
    ) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(config.max_message_secs, 60);
    assert_eq!(config.repeat_digit, '*');
    assert_eq!(
        config.choices,
        vec![MenuChoice {
            digit: '1',
            category: CallCategory::Complaint,
            urgency: Urgency::Normal
        }]
    );
    assert_eq!(config.survey.retries, 2);
    assert_eq!(config.greeting, PromptId::new("greeting"));
    assert!(toml::from_str::<IvrConfig>("no_such_key = 1").is_err());
}

// ---- survey ----

struct SurveySim {
    flow: SurveyFlow,
    now: Instant,
}

impl SurveySim {
    fn started() -> Self {
        let mut sim = Self {
            flow: SurveyFlow::new(&IvrConfig::default()),
            now: Instant::now(),
        };
        assert_eq!(sim.send(IvrInput::Start), vec![play(&["survey"])]);
        assert_eq!(sim.send(IvrInput::PromptDone), vec![]);
        sim
    }

    fn send(&mut self, input: IvrInput) -> Vec<IvrAction> {
        self.flow.handle(self.now, input);
        std::iter::from_fn(|| self.flow.poll_output()).collect()
    }

    fn advance(&mut self, ms: u64) -> Vec<IvrAction> {
        self.now += Duration::from_millis(ms);
        if self.flow.poll_timeout().is_some_and(|t| t <= self.now) {
            self.flow.handle_timeout(self.now);
        }
        std::iter::from_fn(|| self.flow.poll_output()).collect()
    }
}

#[test]
fn survey_records_each_answer() {
    for (digit, result) in [
        ('1', SurveyResult::Satisfied),
        ('2', SurveyResult::BasicallySatisfied),
        ('3', SurveyResult::Dissatisfied),
    ] {
        let mut sim = SurveySim::started();
        assert_eq!(
            sim.send(IvrInput::Digit(digit)),
            vec![play(&["survey_thanks"])]
        );
        assert_eq!(sim.flow.result(), Some(result));
        assert_eq!(
            sim.send(IvrInput::PromptDone),
            vec![IvrAction::Hangup {
                reason: HangupReason::SurveyDone
            }]
        );
        assert!(sim.flow.is_finished());
    }
}

#[test]
fn survey_retries_once_then_records_no_answer() {
    let mut sim = SurveySim::started();
    assert_eq!(sim.advance(4_999), vec![]);
    assert_eq!(sim.advance(1), vec![play(&["timeout", "survey"])]);
    sim.send(IvrInput::PromptDone);
    assert_eq!(sim.advance(5_000), vec![play(&["goodbye"])]);
    assert_eq!(sim.flow.result(), Some(SurveyResult::NoAnswer));
    assert_eq!(
        sim.send(IvrInput::PromptDone),
        vec![IvrAction::Hangup {
            reason: HangupReason::SurveyDone
        }]
    );
}

#[test]
fn survey_invalid_digit_then_valid_answer() {
    let mut sim = SurveySim::started();
    assert_eq!(
        sim.send(IvrInput::Digit('7')),
        vec![play(&["invalid", "survey"])]
    );
    assert_eq!(
        sim.send(IvrInput::Digit('2')),
        vec![IvrAction::StopPlayback, play(&["survey_thanks"])]
    );
    assert_eq!(sim.flow.result(), Some(SurveyResult::BasicallySatisfied));
}

#[test]
fn survey_hangup_without_answer_is_no_answer() {
    let mut sim = SurveySim::started();
    assert_eq!(sim.send(IvrInput::CallerHangup), vec![]);
    assert_eq!(sim.flow.result(), Some(SurveyResult::NoAnswer));
    assert!(sim.flow.is_finished());
}

#[test]
fn survey_hangup_after_answer_keeps_the_answer() {
    let mut sim = SurveySim::started();
    sim.send(IvrInput::Digit('3'));
    sim.send(IvrInput::CallerHangup);
    assert_eq!(sim.flow.result(), Some(SurveyResult::Dissatisfied));
    assert!(sim.flow.is_finished());
}

// ---- configuration checks, callback due, whole-call scenarios on real dates ----

#[test]
fn default_config_is_valid_and_bad_keys_are_rejected() {
    assert_eq!(IvrConfig::default().validate(), Ok(()));
    let config = IvrConfig {
        repeat_digit: '1',
        ..IvrConfig::default()
    };
    assert!(matches!(
        config.validate(),
        Err(IvrConfigError::DuplicateKey {
            field: "choices",
            ..
        })
    ));
    let config = IvrConfig {
        stop_digit: 'x',
        ..IvrConfig::default()
    };
    assert!(matches!(
        config.validate(),
        Err(IvrConfigError::NotADtmfKey { digit: 'x', .. })
    ));
    let mut config = IvrConfig::default();
    config.survey.dissatisfied_digit = '1';
    assert!(matches!(
        config.validate(),
        Err(IvrConfigError::DuplicateKey {
            field: "survey",
            ..
        })
    ));
    let mut config = IvrConfig::default();
    config.city_choices.push(CityChoice {
        digits: "3".to_owned(),
        city: CityId::new("zibo"),
    });
    assert!(matches!(
        config.validate(),
        Err(IvrConfigError::DuplicateKey {
            field: "city_choices",
            ..
        })
    ));
    let config = IvrConfig {
        digit_timeout_ms: 0,
        ..IvrConfig::default()
    };
    assert!(matches!(
        config.validate(),
        Err(IvrConfigError::Zero { .. })
    ));
    let config = IvrConfig {
        choices: Vec::new(),
        ..IvrConfig::default()
    };
    assert_eq!(config.validate(), Err(IvrConfigError::NoChoices));
}

const SHIPPED_CALENDAR: &str = include_str!("../../../config/calendar/cn-workdays.toml");

fn calendar() -> crate::calendar::Calendar {
    crate::calendar::Calendar::from_toml_str(SHIPPED_CALENDAR)
        .unwrap_or_else(|e| panic!("shipped calendar must load: {e}"))
}

fn moment(text: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn voice_message_callback_is_due_at_the_end_of_the_next_working_day() {
    let cal = calendar();
    // Tuesday evening before National Day 2025 → Thursday 10-09 24:00.
    let due = callback_due(&cal, moment("2025-09-30T20:00:00+08:00"));
    assert_eq!(due.display().to_string(), "2025-10-09T24:00+08:00");
    assert!(!due.provisional);
    // Friday 2026-02-13 evening → the make-up Saturday 02-14 is a working day.
    let due = callback_due(&cal, moment("2026-02-13T20:00:00+08:00"));
    assert_eq!(due.display().to_string(), "2026-02-14T24:00+08:00");
    // New Year's Eve 2026 looks into 2027, which has no data yet.
    assert!(callback_due(&cal, moment("2026-12-31T20:00:00+08:00")).provisional);
}

fn context_at(now: &str, has_duty_list: bool) -> CallCityInfo {
    let hours = WorkingHours::default();
    CallCityInfo {
        city: CityId::new("jinan"),
        open_status: hours.status(&calendar(), moment(now)),
        has_duty_list,
        hours_spoken: hours.spoken(),
    }
}

#[test]
fn make_up_saturday_2026_02_14_at_10_reaches_the_queue() {
    let mut sim = Sim::new(
        IvrConfig::default(),
        Some(context_at("2026-02-14T10:00:00+08:00", false)),
    )
    .at_in_hours_menu();
    sim.digit('2');
    assert_eq!(
        sim.done(),
        vec![enqueue(CallCategory::Complaint, Urgency::Normal)]
    );
}

#[test]
fn national_day_and_evening_calls_get_the_after_hours_flow() {
    for now in ["2025-10-01T10:00:00+08:00", "2025-06-10T20:00:00+08:00"] {
        let mut sim =
            Sim::new(IvrConfig::default(), Some(context_at(now, false))).at_after_hours_menu();
        assert_eq!(
            sim.digit('1'),
            vec![play(&["voice_message_intro"])],
            "{now}"
        );
    }
}
