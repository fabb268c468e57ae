//! The IVR call flow (`CALL-CATEGORY`, `CALL-AFTERHOURS`) and the post-call
//! satisfaction survey, as sans-IO state machines.
//!
//! # Calling contract
//! The call shell creates an [`IvrFlow`] when it answers the A-leg, feeds it
//! [`IvrInput`]s with the current time (`handle`), then drains [`IvrFlow::poll_output`]
//! until `None` and arms a timer for [`IvrFlow::poll_timeout`]; when that timer fires it
//! calls [`IvrFlow::handle_timeout`] and drains again. The flow never reads a clock.
//!
//! Media contract:
//! - [`IvrAction::Play`] replaces whatever is playing. [`IvrInput::PromptDone`] is sent
//!   only when a play list has played to its end; a list cut by
//!   [`IvrAction::StopPlayback`] or replaced by another `Play` gets no `PromptDone`.
//! - [`IvrAction::StartRecording`] with `beep` set: play the beep prompt
//!   ([`IvrConfig::beep`]), then record. The shell stops by itself at `max` or on the
//!   stop digit if it detects it, and in every case answers with exactly one
//!   [`IvrInput::RecordingDone`] (also after [`IvrAction::StopRecording`]).
//! - Hand-overs: after [`IvrAction::Enqueue`] the flow is finished and the queue owns the
//!   call. After [`IvrAction::RingDutyList`] the flow waits: if nobody on the duty list
//!   answers, send [`IvrInput::DutyListUnavailable`] and the caller can leave a message;
//!   if someone answers, drop the flow.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::city::{CityId, ResolvedBy};
use super::hours::{HOURS_PROMPT_IDS, OpenStatus};
use super::prompt::{NUMBER_PROMPT_IDS, PromptId, PromptRef};
use crate::calendar::{Calendar, Deadline};

pub use crate::domain::{CallCategory, Urgency};

/// One digit of the main menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MenuChoice {
    /// The DTMF digit.
    pub digit: char,
    /// The call's category when chosen.
    pub category: CallCategory,
    /// The call's urgency when chosen; urgent after hours rings the duty list.
    #[serde(default)]
    pub urgency: Urgency,
}

/// One entry of the city menu: digits (e.g. `"1"`, `"16"`) → city.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CityChoice {
    /// The digits to press.
    pub digits: String,
    /// The city chosen.
    pub city: CityId,
}

/// What happens when the caller never makes a valid menu choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoChoiceAction {
    /// Proceed with [`IvrConfig::default_category`] (in hours: the queue; after hours:
    /// a voice message). Callers on old phones without DTMF still get through.
    #[default]
    UseDefault,
    /// Say goodbye and hang up.
    Hangup,
}

/// Survey configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SurveyConfig {
    /// "满意请按1，基本满意请按2，不满意请按3".
    pub prompt: PromptId,
    /// Said after an answer.
    pub thanks: PromptId,
    /// Said before hanging up without an answer.
    pub goodbye: PromptId,
    /// Digit for 满意.
    pub satisfied_digit: char,
    /// Digit for 基本满意.
    pub basically_satisfied_digit: char,
    /// Digit for 不满意.
    pub dissatisfied_digit: char,
    /// Wait for a digit after the prompt.
    pub digit_timeout_ms: u64,
    /// Replays after no or a wrong answer.
    pub retries: u32,
}

impl Default for SurveyConfig {
    fn default() -> Self {
        Self {
            prompt: PromptId::new("survey"),
            thanks: PromptId::new("survey_thanks"),
            goodbye: PromptId::new("goodbye"),
            satisfied_digit: '1',
            basically_satisfied_digit: '2',
            dissatisfied_digit: '3',
            digit_timeout_ms: 5_000,
            retries: 1,
        }
    }
}

/// The whole IVR configuration: prompts, digits, timeouts, retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IvrConfig {
    /// Played first on every call.
    pub greeting: PromptId,
    /// In-hours category menu.
    pub menu: PromptId,
    /// After-hours menu (category for the message, 9 for urgent).
    pub after_hours_menu: PromptId,
    /// After a digit that is not on the menu.
    pub invalid: PromptId,
    /// After no digit within the timeout.
    pub no_input: PromptId,
    /// Before handing the call to the queue.
    pub please_hold: PromptId,
    /// "现在是非工作时间" — starts the after-hours prompt.
    pub after_hours_intro: PromptId,
    /// "我们的工作时间是" — followed by the city's spoken hours.
    pub hours_intro: PromptId,
    /// Before ringing the after-hours duty list.
    pub duty_connect: PromptId,
    /// "请在提示音后留言，按井号键结束".
    pub voice_message_intro: PromptId,
    /// The beep before recording.
    pub beep: PromptId,
    /// After a message was recorded.
    pub thanks: PromptId,
    /// When nothing (or too little) was recorded.
    pub no_message: PromptId,
    /// Before hanging up without a choice.
    pub goodbye: PromptId,
    /// In hours, nobody on duty (signed in) anywhere the call could go: before the
    /// voice message.
    pub no_agents: PromptId,
    /// In hours, the queue's longest wait passed: before the voice message.
    pub all_busy: PromptId,
    /// The recording test extension, before its beep.
    pub test_record: PromptId,
    /// The digit test extension.
    pub test_dtmf: PromptId,
    /// City menu, when the city could not be resolved.
    pub city_menu: PromptId,
    /// Music while waiting in the queue (used by the queue).
    pub hold_music: PromptId,
    /// Main menu digits.
    pub choices: Vec<MenuChoice>,
    /// Digit that replays the menu.
    pub repeat_digit: char,
    /// Wait for the first digit after a menu.
    pub digit_timeout_ms: u64,
    /// Wait between digits of a multi-digit city choice.
    pub inter_digit_timeout_ms: u64,
    /// Replays of a menu after a timeout or an invalid digit.
    pub max_retries: u32,
    /// What no valid choice leads to.
    pub no_choice: NoChoiceAction,
    /// Category when none was chosen.
    pub default_category: CallCategory,
    /// Digits pressed during a menu prompt cut it short.
    pub barge_in: bool,
    /// Longest voice message.
    pub max_message_secs: u64,
    /// Shorter recordings count as no message.
    pub min_message_ms: u64,
    /// Digit that ends a voice message (also ends a multi-digit city choice).
    pub stop_digit: char,
    /// Slack beyond `max_message_secs` before the flow stops a recording itself.
    pub recording_grace_ms: u64,
    /// City menu entries; empty → unresolved calls go straight to the province center.
    pub city_choices: Vec<CityChoice>,
    /// Post-call survey.
    pub survey: SurveyConfig,
}

impl Default for IvrConfig {
    fn default() -> Self {
        let cities = [
            "jinan",
            "qingdao",
            "zibo",
            "zaozhuang",
            "dongying",
            "yantai",
            "weifang",
            "jining",
            "taian",
            "weihai",
            "rizhao",
            "linyi",
            "dezhou",
            "liaocheng",
            "binzhou",
            "heze",
        ];
        Self {
            greeting: PromptId::new("greeting"),
            menu: PromptId::new("menu"),
            after_hours_menu: PromptId::new("after_hours_menu"),
            invalid: PromptId::new("invalid"),
            no_input: PromptId::new("timeout"),
            please_hold: PromptId::new("please_hold"),
            after_hours_intro: PromptId::new("after_hours"),
            hours_intro: PromptId::new("hours_intro"),
            duty_connect: PromptId::new("duty_connect"),
            voice_message_intro: PromptId::new("voice_message_intro"),
            beep: PromptId::new("beep"),
            thanks: PromptId::new("thanks"),
            no_message: PromptId::new("no_message"),
            goodbye: PromptId::new("goodbye"),
            no_agents: PromptId::new("no_agents"),
            all_busy: PromptId::new("all_busy"),
            test_record: PromptId::new("test_record"),
            test_dtmf: PromptId::new("test_dtmf"),
            city_menu: PromptId::new("city_menu"),
            hold_music: PromptId::new("hold_music"),
            choices: vec![
                MenuChoice {
                    digit: '1',
                    category: CallCategory::Consultation,
                    urgency: Urgency::Normal,
                },
                MenuChoice {
                    digit: '2',
                    category: CallCategory::Complaint,
                    urgency: Urgency::Normal,
                },
                MenuChoice {
                    digit: '3',
                    category: CallCategory::Suggestion,
                    urgency: Urgency::Normal,
                },
                MenuChoice {
                    digit: '9',
                    category: CallCategory::Consultation,
                    urgency: Urgency::Urgent,
                },
            ],
            repeat_digit: '0',
            digit_timeout_ms: 6_000,
            inter_digit_timeout_ms: 3_000,
            max_retries: 2,
            no_choice: NoChoiceAction::UseDefault,
            default_category: CallCategory::Consultation,
            barge_in: true,
            max_message_secs: 120,
            min_message_ms: 1_000,
            stop_digit: '#',
            recording_grace_ms: 2_000,
            city_choices: cities
                .iter()
                .enumerate()
                .map(|(index, city)| CityChoice {
                    digits: (index + 1).to_string(),
                    city: CityId::new(*city),
                })
                .collect(),
            survey: SurveyConfig::default(),
        }
    }
}

/// A problem in an [`IvrConfig`] (for `hotline check-config`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IvrConfigError {
    /// A configured key is not a DTMF key (`0-9`, `*`, `#`).
    #[error("{field}: {digit:?} is not a telephone key (0-9, *, #)")]
    NotADtmfKey {
        /// Setting concerned.
        field: &'static str,
        /// The character given.
        digit: char,
    },
    /// Two menu entries (or an entry and the repeat / stop key) share a key.
    #[error("{field}: key {digits:?} is used twice")]
    DuplicateKey {
        /// Setting concerned.
        field: &'static str,
        /// The key(s).
        digits: String,
    },
    /// The main menu has no choices.
    #[error("choices: the menu needs at least one choice")]
    NoChoices,
    /// A timeout or length of zero.
    #[error("{field} must be greater than zero")]
    Zero {
        /// Setting concerned.
        field: &'static str,
    },
}

fn is_dtmf(key: char) -> bool {
    key.is_ascii_digit() || key == '*' || key == '#'
}

impl IvrConfig {
    /// Checks keys and timeouts.
    ///
    /// # Errors
    /// The first [`IvrConfigError`] found.
    pub fn validate(&self) -> Result<(), IvrConfigError> {
        if self.choices.is_empty() {
            return Err(IvrConfigError::NoChoices);
        }
        let keys = [
            ("repeat_digit", self.repeat_digit),
            ("stop_digit", self.stop_digit),
            ("survey.satisfied_digit", self.survey.satisfied_digit),
            (
                "survey.basically_satisfied_digit",
                self.survey.basically_satisfied_digit,
            ),
            ("survey.dissatisfied_digit", self.survey.dissatisfied_digit),
        ]
        .into_iter()
        .chain(self.choices.iter().map(|c| ("choices", c.digit)))
        .chain(
            self.city_choices
                .iter()
                .flat_map(|c| c.digits.chars().map(|d| ("city_choices", d))),
        );
        for (field, digit) in keys {
            if !is_dtmf(digit) {
                return Err(IvrConfigError::NotADtmfKey { field, digit });
            }
        }
        let mut menu_keys = vec![self.repeat_digit];
        for choice in &self.choices {
            if menu_keys.contains(&choice.digit) {
                return Err(IvrConfigError::DuplicateKey {
                    field: "choices",
                    digits: choice.digit.to_string(),
                });
            }
            menu_keys.push(choice.digit);
        }
        let survey = [
            self.survey.satisfied_digit,
            self.survey.basically_satisfied_digit,
            self.survey.dissatisfied_digit,
        ];
        if survey
            .iter()
            .enumerate()
            .any(|(i, d)| survey.get(..i).is_some_and(|before| before.contains(d)))
        {
            return Err(IvrConfigError::DuplicateKey {
                field: "survey",
                digits: survey.iter().collect(),
            });
        }
        let mut city_keys: Vec<&str> = Vec::new();
        for choice in &self.city_choices {
            let digits = choice.digits.as_str();
            if digits.is_empty() {
                return Err(IvrConfigError::Zero {
                    field: "city_choices.digits length",
                });
            }
            if city_keys.contains(&digits) || digits.contains(self.stop_digit) {
                return Err(IvrConfigError::DuplicateKey {
                    field: "city_choices",
                    digits: digits.to_owned(),
                });
            }
            city_keys.push(digits);
        }
        for (field, value) in [
            ("digit_timeout_ms", self.digit_timeout_ms),
            ("inter_digit_timeout_ms", self.inter_digit_timeout_ms),
            ("max_message_secs", self.max_message_secs),
            ("survey.digit_timeout_ms", self.survey.digit_timeout_ms),
        ] {
            if value == 0 {
                return Err(IvrConfigError::Zero { field });
            }
        }
        Ok(())
    }
}

/// When a voice message left at `received_at` must be called back: the end of the next
/// working day under the calendar's counting rule (24:00 of the first working day after
/// the day of receipt; provisional when that rests on a year without data).
#[must_use]
pub fn callback_due(calendar: &Calendar, received_at: DateTime<FixedOffset>) -> Deadline {
    calendar.add_working_days(received_at, 1)
}

/// Prompts the queue plays (position announcements), shipped with the IVR prompts.
pub const QUEUE_PROMPT_IDS: [&str; 6] = [
    "queue_ahead",
    "queue_callers",
    "callback_offer",
    "key_star",
    "key_pound",
    "callback_registered",
];

impl IvrConfig {
    /// Every prompt file this configuration (and the spoken numbers, hours and queue
    /// announcements built on it) may play, sorted and deduplicated.
    #[must_use]
    pub fn prompt_ids(&self) -> Vec<PromptId> {
        let mut ids: Vec<PromptId> = [
            &self.greeting,
            &self.menu,
            &self.after_hours_menu,
            &self.invalid,
            &self.no_input,
            &self.please_hold,
            &self.after_hours_intro,
            &self.hours_intro,
            &self.duty_connect,
            &self.voice_message_intro,
            &self.beep,
            &self.thanks,
            &self.no_message,
            &self.goodbye,
            &self.no_agents,
            &self.all_busy,
            &self.test_record,
            &self.test_dtmf,
            &self.city_menu,
            &self.hold_music,
            &self.survey.prompt,
            &self.survey.thanks,
            &self.survey.goodbye,
        ]
        .into_iter()
        .cloned()
        .chain(
            NUMBER_PROMPT_IDS
                .iter()
                .chain(HOURS_PROMPT_IDS.iter())
                .chain(QUEUE_PROMPT_IDS.iter())
                .map(|id| PromptId::new(*id)),
        )
        .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    fn digit_timeout(&self) -> Duration {
        Duration::from_millis(self.digit_timeout_ms)
    }

    fn max_message(&self) -> Duration {
        Duration::from_secs(self.max_message_secs)
    }
}

/// What the flow knows about the call's city.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallCityInfo {
    /// The city answering the call.
    pub city: CityId,
    /// Its working-hours status at arrival.
    pub open_status: OpenStatus,
    /// Whether it has an after-hours duty list.
    pub has_duty_list: bool,
    /// Its hours as a play list ([`super::hours::WorkingHours::spoken`]).
    pub hours_spoken: Vec<PromptRef>,
}

/// Everything the flow needs about the call at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvrContext {
    /// The resolved city, or `None` when the caller must choose in the city menu.
    pub city: Option<CallCityInfo>,
    /// Where an unresolved call goes when the city menu fails.
    pub province_center: CityId,
}

/// Events the shell feeds to a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrInput {
    /// The call was answered; begin.
    Start,
    /// The current play list finished.
    PromptDone,
    /// A DTMF digit (RFC 4733 or SIP INFO): `0-9`, `*`, `#`.
    Digit(char),
    /// The recording ended (stop digit, max length, `StopRecording` or hang-up).
    RecordingDone {
        /// Length of audio recorded.
        duration: Duration,
    },
    /// The city chosen by [`IvrAction::SelectCity`], now looked up by the shell.
    CityInfo(CallCityInfo),
    /// Nobody on the after-hours duty list answered.
    DutyListUnavailable,
    /// The caller hung up.
    CallerHangup,
}

/// Why the system ends the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupReason {
    /// A voice message was taken and thanked for.
    MessageTaken,
    /// The caller left no message.
    NoMessage,
    /// The caller made no valid choice and the config says hang up.
    NoChoice,
    /// The survey is over.
    SurveyDone,
}

/// Commands the flow gives the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IvrAction {
    /// Play these prompts in order, replacing anything playing.
    Play(Vec<PromptRef>),
    /// Stop the current play list (barge-in).
    StopPlayback,
    /// Record the caller.
    StartRecording {
        /// Stop after this long.
        max: Duration,
        /// Play the beep prompt first.
        beep: bool,
        /// This digit ends the recording.
        stop_digit: char,
    },
    /// Stop recording now; answer with `RecordingDone`.
    StopRecording,
    /// The caller chose (or fell back to) a city: look up its info and send `CityInfo`.
    SelectCity {
        /// The city.
        city: CityId,
        /// `Menu` or `ProvinceFallback`.
        how: ResolvedBy,
    },
    /// Hand the call to the city's queue.
    Enqueue {
        /// Category chosen.
        category: CallCategory,
        /// Urgency chosen.
        urgency: Urgency,
    },
    /// Ring the city's after-hours duty list.
    RingDutyList {
        /// Category chosen.
        category: CallCategory,
        /// Urgency chosen (urgent).
        urgency: Urgency,
    },
    /// Create the work order for the voice message just recorded (callback due next
    /// working day, per the calendar's counting rule).
    CreateVoiceMessageOrder {
        /// Category chosen (or default).
        category: CallCategory,
        /// Urgency chosen.
        urgency: Urgency,
        /// Length of the message.
        recording_duration: Duration,
    },
    /// End the call.
    Hangup {
        /// Why.
        reason: HangupReason,
    },
}

/// How the IVR part of a call ended (for the CDR path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IvrOutcome {
    /// Handed to the queue.
    Enqueued,
    /// Handed to the after-hours duty list.
    DutyList,
    /// A voice message was recorded and a work order requested.
    VoiceMessage,
    /// The system hung up without a hand-over or message.
    SystemHangup,
    /// The caller hung up in the IVR.
    Abandoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    InHours,
    AfterHours,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    Greeting,
    CityMenu {
        attempt: u32,
        collected: String,
        playing: bool,
    },
    AwaitingCityInfo,
    AfterHoursIntro,
    Menu {
        mode: Mode,
        attempt: u32,
        playing: bool,
    },
    Transferring {
        category: CallCategory,
        urgency: Urgency,
    },
    ConnectingDuty {
        category: CallCategory,
        urgency: Urgency,
    },
    RingingDuty {
        category: CallCategory,
        urgency: Urgency,
    },
    MessageIntro {
        category: CallCategory,
        urgency: Urgency,
    },
    Recording {
        category: CallCategory,
        urgency: Urgency,
    },
    StoppingRecording {
        category: CallCategory,
        urgency: Urgency,
        caller_gone: bool,
    },
    Closing {
        reason: HangupReason,
    },
    Done,
}

/// The IVR for one call. See the module docs for the calling contract.
#[derive(Debug)]
pub struct IvrFlow {
    config: IvrConfig,
    city: Option<CallCityInfo>,
    province_center: CityId,
    state: State,
    deadline: Option<Instant>,
    outputs: VecDeque<IvrAction>,
    chosen: Option<(CallCategory, Urgency)>,
    outcome: Option<IvrOutcome>,
}

impl IvrFlow {
    /// A flow for one call; nothing happens before [`IvrInput::Start`].
    #[must_use]
    pub fn new(config: IvrConfig, context: IvrContext) -> Self {
        Self {
            config,
            city: context.city,
            province_center: context.province_center,
            state: State::Idle,
            deadline: None,
            outputs: VecDeque::new(),
            chosen: None,
            outcome: None,
        }
    }

    /// Next command for the shell.
    pub fn poll_output(&mut self) -> Option<IvrAction> {
        self.outputs.pop_front()
    }

    /// When to call [`IvrFlow::handle_timeout`], if a timer is running.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the flow has nothing more to do.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.state == State::Done
    }

    /// How the IVR part ended, once it has.
    #[must_use]
    pub fn outcome(&self) -> Option<IvrOutcome> {
        self.outcome
    }

    /// The category and urgency chosen so far (or defaulted).
    #[must_use]
    pub fn choice(&self) -> Option<(CallCategory, Urgency)> {
        self.chosen
    }

    /// The city the call ended up with, once known.
    #[must_use]
    pub fn city(&self) -> Option<&CityId> {
        self.city.as_ref().map(|info| &info.city)
    }

    /// Feeds one event.
    pub fn handle(&mut self, now: Instant, input: IvrInput) {
        match input {
            IvrInput::Start => self.on_start(),
            IvrInput::PromptDone => self.on_prompt_done(now),
            IvrInput::Digit(digit) => self.on_digit(now, digit),
            IvrInput::RecordingDone { duration } => self.on_recording_done(duration),
            IvrInput::CityInfo(info) => self.on_city_info(info),
            IvrInput::DutyListUnavailable => self.on_duty_unavailable(),
            IvrInput::CallerHangup => self.on_caller_hangup(),
        }
    }

    /// Fires the timer if `now` has reached it.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.deadline {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        self.deadline = None;
        match std::mem::replace(&mut self.state, State::Done) {
            State::CityMenu {
                attempt, collected, ..
            } => {
                if collected.is_empty() {
                    self.retry_city_menu(attempt, RetryCause::NoInput);
                } else {
                    self.finish_city_entry(attempt, &collected);
                }
            }
            State::Menu { mode, attempt, .. } => {
                self.retry_menu(mode, attempt, RetryCause::NoInput)
            }
            State::Recording { category, urgency } => {
                // The shell should have stopped at max length; make sure it does.
                self.outputs.push_back(IvrAction::StopRecording);
                self.state = State::StoppingRecording {
                    category,
                    urgency,
                    caller_gone: false,
                };
            }
            other => self.state = other,
        }
    }

    fn play(&mut self, list: Vec<PromptRef>) {
        self.outputs.push_back(IvrAction::Play(list));
    }

    fn on_start(&mut self) {
        if self.state != State::Idle {
            return;
        }
        self.play(vec![PromptRef::Prompt(self.config.greeting.clone())]);
        self.state = State::Greeting;
    }

    fn on_prompt_done(&mut self, now: Instant) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Greeting => self.after_greeting(),
            State::CityMenu {
                attempt,
                collected,
                playing: true,
            } => {
                self.deadline = Some(now + self.config.digit_timeout());
                self.state = State::CityMenu {
                    attempt,
                    collected,
                    playing: false,
                };
            }
            State::AfterHoursIntro => self.start_menu(Mode::AfterHours, 0, Vec::new()),
            State::Menu {
                mode,
                attempt,
                playing: true,
            } => {
                self.deadline = Some(now + self.config.digit_timeout());
                self.state = State::Menu {
                    mode,
                    attempt,
                    playing: false,
                };
            }
            State::Transferring { category, urgency } => {
                self.outputs
                    .push_back(IvrAction::Enqueue { category, urgency });
                self.finish(IvrOutcome::Enqueued);
            }
            State::ConnectingDuty { category, urgency } => {
                self.outputs
                    .push_back(IvrAction::RingDutyList { category, urgency });
                self.outcome = Some(IvrOutcome::DutyList);
                self.state = State::RingingDuty { category, urgency };
            }
            State::MessageIntro { category, urgency } => {
                self.outputs.push_back(IvrAction::StartRecording {
                    max: self.config.max_message(),
                    beep: true,
                    stop_digit: self.config.stop_digit,
                });
                self.deadline = Some(
                    now + self.config.max_message()
                        + Duration::from_millis(self.config.recording_grace_ms),
                );
                self.state = State::Recording { category, urgency };
            }
            State::Closing { reason } => {
                self.outputs.push_back(IvrAction::Hangup { reason });
                self.state = State::Done;
            }
            other => self.state = other,
        }
    }

    fn after_greeting(&mut self) {
        match &self.city {
            Some(info) => {
                let info = info.clone();
                self.enter_city_flow(&info);
            }
            None if self.config.city_choices.is_empty() => self.select_city_fallback(),
            None => {
                self.play(vec![PromptRef::Prompt(self.config.city_menu.clone())]);
                self.state = State::CityMenu {
                    attempt: 0,
                    collected: String::new(),
                    playing: true,
                };
            }
        }
    }

    fn enter_city_flow(&mut self, info: &CallCityInfo) {
        if info.open_status.open {
            self.start_menu(Mode::InHours, 0, Vec::new());
        } else {
            let mut list = vec![
                PromptRef::Prompt(self.config.after_hours_intro.clone()),
                PromptRef::Prompt(self.config.hours_intro.clone()),
            ];
            list.extend(info.hours_spoken.iter().cloned());
            self.play(list);
            self.state = State::AfterHoursIntro;
        }
    }

    fn on_city_info(&mut self, info: CallCityInfo) {
        if self.state != State::AwaitingCityInfo {
            return;
        }
        self.enter_city_flow(&info);
        self.city = Some(info);
    }

    fn start_menu(&mut self, mode: Mode, attempt: u32, mut prefix: Vec<PromptRef>) {
        let menu = match mode {
            Mode::InHours => &self.config.menu,
            Mode::AfterHours => &self.config.after_hours_menu,
        };
        prefix.push(PromptRef::Prompt(menu.clone()));
        self.play(prefix);
        self.deadline = None;
        self.state = State::Menu {
            mode,
            attempt,
            playing: true,
        };
    }

    fn on_digit(&mut self, now: Instant, digit: char) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Menu {
                mode,
                attempt,
                playing,
            } => {
                if playing && !self.config.barge_in {
                    self.state = State::Menu {
                        mode,
                        attempt,
                        playing,
                    };
                    return;
                }
                if playing {
                    self.outputs.push_back(IvrAction::StopPlayback);
                }
                self.deadline = None;
                self.menu_digit(mode, attempt, digit);
            }
            State::CityMenu {
                attempt,
                mut collected,
                playing,
            } => {
                if playing && !self.config.barge_in {
                    self.state = State::CityMenu {
                        attempt,
                        collected,
                        playing,
                    };
                    return;
                }
                if playing {
                    self.outputs.push_back(IvrAction::StopPlayback);
                }
                self.deadline = None;
                if digit == self.config.stop_digit {
                    self.finish_city_entry(attempt, &collected);
                    return;
                }
                collected.push(digit);
                let candidates: Vec<&CityChoice> = self
                    .config
                    .city_choices
                    .iter()
                    .filter(|c| c.digits.starts_with(collected.as_str()))
                    .collect();
                match candidates.as_slice() {
                    [] => self.retry_city_menu(attempt, RetryCause::Invalid),
                    [only] if only.digits == collected => {
                        let city = only.city.clone();
                        self.select_city(city, ResolvedBy::Menu);
                    }
                    _ => {
                        // A prefix of a longer choice ("1" of "16"): wait for more.
                        self.deadline =
                            Some(now + Duration::from_millis(self.config.inter_digit_timeout_ms));
                        self.state = State::CityMenu {
                            attempt,
                            collected,
                            playing: false,
                        };
                    }
                }
            }
            State::Recording { category, urgency } => {
                if digit == self.config.stop_digit {
                    self.outputs.push_back(IvrAction::StopRecording);
                    self.deadline = None;
                    self.state = State::StoppingRecording {
                        category,
                        urgency,
                        caller_gone: false,
                    };
                } else {
                    self.state = State::Recording { category, urgency };
                }
            }
            other => self.state = other,
        }
    }

    fn menu_digit(&mut self, mode: Mode, attempt: u32, digit: char) {
        if digit == self.config.repeat_digit {
            self.start_menu(mode, attempt, Vec::new());
            return;
        }
        match self.config.choices.iter().find(|c| c.digit == digit) {
            Some(choice) => {
                let (category, urgency) = (choice.category, choice.urgency);
                self.chose(mode, category, urgency);
            }
            None => self.retry_menu(mode, attempt, RetryCause::Invalid),
        }
    }

    fn chose(&mut self, mode: Mode, category: CallCategory, urgency: Urgency) {
        self.chosen = Some((category, urgency));
        match mode {
            Mode::InHours => {
                self.play(vec![PromptRef::Prompt(self.config.please_hold.clone())]);
                self.state = State::Transferring { category, urgency };
            }
            Mode::AfterHours => {
                let has_duty_list = self.city.as_ref().is_some_and(|c| c.has_duty_list);
                if urgency == Urgency::Urgent && has_duty_list {
                    self.play(vec![PromptRef::Prompt(self.config.duty_connect.clone())]);
                    self.state = State::ConnectingDuty { category, urgency };
                } else {
                    self.start_message(category, urgency);
                }
            }
        }
    }

    fn start_message(&mut self, category: CallCategory, urgency: Urgency) {
        self.play(vec![PromptRef::Prompt(
            self.config.voice_message_intro.clone(),
        )]);
        self.state = State::MessageIntro { category, urgency };
    }

    fn retry_menu(&mut self, mode: Mode, attempt: u32, cause: RetryCause) {
        let attempt = attempt + 1;
        if attempt > self.config.max_retries {
            self.no_choice(mode);
            return;
        }
        let prompt = self.retry_prompt(cause);
        self.start_menu(mode, attempt, vec![prompt]);
    }

    fn retry_prompt(&self, cause: RetryCause) -> PromptRef {
        PromptRef::Prompt(match cause {
            RetryCause::Invalid => self.config.invalid.clone(),
            RetryCause::NoInput => self.config.no_input.clone(),
        })
    }

    fn no_choice(&mut self, mode: Mode) {
        match self.config.no_choice {
            NoChoiceAction::UseDefault => {
                self.chose(mode, self.config.default_category, Urgency::Normal);
            }
            NoChoiceAction::Hangup => {
                self.close(&self.config.goodbye.clone(), HangupReason::NoChoice)
            }
        }
    }

    fn close(&mut self, prompt: &PromptId, reason: HangupReason) {
        self.deadline = None;
        self.play(vec![PromptRef::Prompt(prompt.clone())]);
        if self.outcome.is_none() {
            self.outcome = Some(IvrOutcome::SystemHangup);
        }
        self.state = State::Closing { reason };
    }

    fn retry_city_menu(&mut self, attempt: u32, cause: RetryCause) {
        let attempt = attempt + 1;
        if attempt > self.config.max_retries {
            self.select_city_fallback();
            return;
        }
        let prompt = self.retry_prompt(cause);
        self.play(vec![
            prompt,
            PromptRef::Prompt(self.config.city_menu.clone()),
        ]);
        self.deadline = None;
        self.state = State::CityMenu {
            attempt,
            collected: String::new(),
            playing: true,
        };
    }

    fn finish_city_entry(&mut self, attempt: u32, collected: &str) {
        let found = self
            .config
            .city_choices
            .iter()
            .find(|c| c.digits == collected)
            .map(|c| c.city.clone());
        match found {
            Some(city) => self.select_city(city, ResolvedBy::Menu),
            None if collected.is_empty() => self.retry_city_menu(attempt, RetryCause::NoInput),
            None => self.retry_city_menu(attempt, RetryCause::Invalid),
        }
    }

    fn select_city_fallback(&mut self) {
        let city = self.province_center.clone();
        self.select_city(city, ResolvedBy::ProvinceFallback);
    }

    fn select_city(&mut self, city: CityId, how: ResolvedBy) {
        self.deadline = None;
        self.outputs.push_back(IvrAction::SelectCity { city, how });
        self.state = State::AwaitingCityInfo;
    }

    fn on_duty_unavailable(&mut self) {
        if let State::RingingDuty { category, urgency } = self.state {
            self.outcome = None;
            self.start_message(category, urgency);
        }
    }

    fn on_recording_done(&mut self, duration: Duration) {
        let (category, urgency, caller_gone) = match self.state {
            State::Recording { category, urgency } => (category, urgency, false),
            State::StoppingRecording {
                category,
                urgency,
                caller_gone,
            } => (category, urgency, caller_gone),
            _ => return,
        };
        self.deadline = None;
        let long_enough = duration >= Duration::from_millis(self.config.min_message_ms);
        if long_enough {
            self.outputs.push_back(IvrAction::CreateVoiceMessageOrder {
                category,
                urgency,
                recording_duration: duration,
            });
            self.outcome = Some(IvrOutcome::VoiceMessage);
        }
        match (caller_gone, long_enough) {
            (true, true) => self.state = State::Done,
            (true, false) => self.finish(IvrOutcome::Abandoned),
            (false, true) => {
                let thanks = self.config.thanks.clone();
                self.close(&thanks, HangupReason::MessageTaken);
            }
            (false, false) => {
                let no_message = self.config.no_message.clone();
                self.close(&no_message, HangupReason::NoMessage);
            }
        }
    }

    fn on_caller_hangup(&mut self) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Recording { category, urgency } => {
                self.outputs.push_back(IvrAction::StopRecording);
                self.deadline = None;
                self.state = State::StoppingRecording {
                    category,
                    urgency,
                    caller_gone: true,
                };
            }
            State::StoppingRecording {
                category, urgency, ..
            } => {
                self.state = State::StoppingRecording {
                    category,
                    urgency,
                    caller_gone: true,
                };
            }
            State::Done => {}
            State::Closing { .. } => {
                // The caller left during the goodbye/thanks: nothing more to do.
                self.deadline = None;
            }
            _ => self.finish(IvrOutcome::Abandoned),
        }
    }

    fn finish(&mut self, outcome: IvrOutcome) {
        self.deadline = None;
        self.outcome = Some(outcome);
        self.state = State::Done;
    }
}

#[derive(Debug, Clone, Copy)]
enum RetryCause {
    Invalid,
    NoInput,
}

/// The caller's answer to the satisfaction survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SurveyResult {
    /// 满意.
    Satisfied,
    /// 基本满意.
    BasicallySatisfied,
    /// 不满意.
    Dissatisfied,
    /// No valid answer.
    NoAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SurveyState {
    Idle,
    Asking { attempt: u32, playing: bool },
    Closing,
    Done,
}

/// Post-call satisfaction survey ("满意请按1，基本满意请按2，不满意请按3"), started when
/// the agent hangs up first or transfers the caller to it. Same contract as [`IvrFlow`];
/// it understands `Start`, `PromptDone`, `Digit` and `CallerHangup`.
#[derive(Debug)]
pub struct SurveyFlow {
    config: SurveyConfig,
    invalid: PromptId,
    no_input: PromptId,
    state: SurveyState,
    deadline: Option<Instant>,
    outputs: VecDeque<IvrAction>,
    result: Option<SurveyResult>,
}

impl SurveyFlow {
    /// A survey using the IVR's survey settings and its invalid / no-input prompts.
    #[must_use]
    pub fn new(config: &IvrConfig) -> Self {
        Self {
            config: config.survey.clone(),
            invalid: config.invalid.clone(),
            no_input: config.no_input.clone(),
            state: SurveyState::Idle,
            deadline: None,
            outputs: VecDeque::new(),
            result: None,
        }
    }

    /// Next command for the shell.
    pub fn poll_output(&mut self) -> Option<IvrAction> {
        self.outputs.pop_front()
    }

    /// When to call [`SurveyFlow::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// The answer, once the survey is over (`NoAnswer` if none was given).
    #[must_use]
    pub fn result(&self) -> Option<SurveyResult> {
        self.result
    }

    /// Whether the survey has nothing more to do.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.state == SurveyState::Done
    }

    /// Feeds one event.
    pub fn handle(&mut self, now: Instant, input: IvrInput) {
        match (self.state, input) {
            (SurveyState::Idle, IvrInput::Start) => self.ask(0, None),
            (
                SurveyState::Asking {
                    attempt,
                    playing: true,
                },
                IvrInput::PromptDone,
            ) => {
                self.deadline = Some(now + Duration::from_millis(self.config.digit_timeout_ms));
                self.state = SurveyState::Asking {
                    attempt,
                    playing: false,
                };
            }
            (SurveyState::Asking { attempt, playing }, IvrInput::Digit(digit)) => {
                if playing {
                    self.outputs.push_back(IvrAction::StopPlayback);
                }
                self.deadline = None;
                let answer = if digit == self.config.satisfied_digit {
                    Some(SurveyResult::Satisfied)
                } else if digit == self.config.basically_satisfied_digit {
                    Some(SurveyResult::BasicallySatisfied)
                } else if digit == self.config.dissatisfied_digit {
                    Some(SurveyResult::Dissatisfied)
                } else {
                    None
                };
                match answer {
                    Some(result) => {
                        self.result = Some(result);
                        let thanks = self.config.thanks.clone();
                        self.close(thanks);
                    }
                    None => self.retry(attempt, RetryCause::Invalid),
                }
            }
            (SurveyState::Closing, IvrInput::PromptDone) => {
                self.outputs.push_back(IvrAction::Hangup {
                    reason: HangupReason::SurveyDone,
                });
                self.state = SurveyState::Done;
            }
            (SurveyState::Done, _) => {}
            (_, IvrInput::CallerHangup) => {
                self.deadline = None;
                self.result.get_or_insert(SurveyResult::NoAnswer);
                self.state = SurveyState::Done;
            }
            _ => {}
        }
    }

    /// Fires the timer if `now` has reached it.
    pub fn handle_timeout(&mut self, now: Instant) {
        match (self.deadline, self.state) {
            (Some(deadline), SurveyState::Asking { attempt, .. }) if now >= deadline => {
                self.deadline = None;
                self.retry(attempt, RetryCause::NoInput);
            }
            _ => {}
        }
    }

    fn ask(&mut self, attempt: u32, before: Option<PromptId>) {
        let mut list: Vec<PromptRef> = before.into_iter().map(PromptRef::Prompt).collect();
        list.push(PromptRef::Prompt(self.config.prompt.clone()));
        self.outputs.push_back(IvrAction::Play(list));
        self.state = SurveyState::Asking {
            attempt,
            playing: true,
        };
    }

    fn retry(&mut self, attempt: u32, cause: RetryCause) {
        let attempt = attempt + 1;
        if attempt > self.config.retries {
            self.result = Some(SurveyResult::NoAnswer);
            let goodbye = self.config.goodbye.clone();
            self.close(goodbye);
            return;
        }
        let before = match cause {
            RetryCause::Invalid => self.invalid.clone(),
            RetryCause::NoInput => self.no_input.clone(),
        };
        self.ask(attempt, Some(before));
    }

    fn close(&mut self, prompt: PromptId) {
        self.deadline = None;
        self.outputs
            .push_back(IvrAction::Play(vec![PromptRef::Prompt(prompt)]));
        self.state = SurveyState::Closing;
    }
}

#[cfg(test)]
mod tests;
