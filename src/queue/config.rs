//! Queue, agent and duty-roster configuration (`[queues]` in `config/hotline.toml`).
//!
//! Every struct denies unknown keys; every tunable has a default, so a city's queue can
//! be as short as `{ city = "jinan" }`. [`QueuesConfig::validate`] checks references.
//!
//! ```toml
//! [queues]
//! province_center = "shandong"          # overflow target of last resort
//!
//! [[queues.queue]]
//! city = "jinan"
//! strategy = "longest_idle"            # round_robin | fewest_calls | ring_all | linear | random
//! duty = "roster"                       # or "any_signed_in" (no roster needed, for labs)
//! ring_timeout_secs = 20                # ring an agent this long, then offer elsewhere
//! retry_delay_secs = 5                  # pause before the call is offered again
//! max_no_answer = 3                     # missed offers in a row → paused "max-no-answer" (0 = never)
//! no_answer_delay_secs = 0              # agent not offered again for this long after a miss
//! busy_delay_secs = 30                  # … after 486 Busy (or unreachable)
//! reject_delay_secs = 30                # … after 603 Decline
//! wrap_up_secs = 30                     # after-call work; agents may override
//! announce_frequency_secs = 45          # position announcement (only when it changed); 0 = off
//! please_hold_secs = 60                 # periodic "请稍候"; 0 = off
//! overflow_after_secs = 120             # move to overflow_to (or the province center); absent = never
//! overflow_when_no_agents = true        # move at once when nobody is signed in here
//! overflow_to = "zibo"                  # partner city; default: the province center
//! max_wait_secs = 600                   # then the voice-message flow
//! callback_digit = "1"                  # callback-in-queue key (0-9, * or #); absent = off
//! callback_max_attempts = 3
//! callback_retry_delay_secs = 300
//! callback_ring_secs = 30               # ring the caller this long per attempt
//! callback_max_wait_secs = 7200         # then a work order to call back by hand
//! resume_abandoned_secs = 60            # caller cut off and calling back within this keeps the place
//! widen_when_no_match = true            # skip a tier at once when none of its agents is signed in
//! tier_rules = [                        # who may take a call after it waited this long
//!   { after_secs = 0,  max_level = 1, skill_match = true },
//!   { after_secs = 30, max_level = 2, skill_match = true },
//!   { after_secs = 60, max_level = 9, skill_match = false },
//! ]
//!
//! [[queues.agent]]
//! id = "1001"                           # SIP user of `[[agents]]`
//! city = "jinan"
//! level = 1                             # tier: 1 answers first
//! skills = ["legal_aid", "mediation"]   # business areas (问题分类)
//! categories = ["consultation"]         # empty = all categories
//! wrap_up_secs = 60                     # overrides the queue's
//!
//! [[queues.roster]]                     # 值班表
//! agent = "1001"
//! from = "2026-01-01"
//! until = "2026-12-31"                  # inclusive
//! days = "working_days"                 # per the calendar (调休 included), or ["sat", "sun"]
//! start = "08:30"
//! end = "17:30"                         # an end before the start runs past midnight
//! ```

use std::collections::BTreeSet;

use chrono::{NaiveDate, TimeDelta};
use serde::{Deserialize, Serialize};

use super::types::AgentId;
use crate::domain::CallCategory;
use crate::ivr::city::CityId;
use crate::ivr::hours::{ClockTime, Days};
use crate::ticket::model::BusinessArea;

/// How a queue picks the agent for the next call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The agent idle the longest (mod_callcenter `longest-idle-agent`, app_queue
    /// `leastrecent`).
    #[default]
    LongestIdle,
    /// The next agent after the one who got the last call, in config order
    /// (app_queue `rrmemory`).
    RoundRobin,
    /// The agent who answered the fewest calls today; ties by longest idle.
    FewestCalls,
    /// Ring every eligible agent; the first to answer takes it.
    RingAll,
    /// Always the first eligible agent in config order (top-down).
    Linear,
    /// A random eligible agent (seeded: deterministic under test).
    Random,
}

/// Who must be on the roster to take calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DutyPolicy {
    /// Only agents on duty now per the roster (值班表) get calls.
    #[default]
    Roster,
    /// Any signed-in agent of the city (labs and tests without a roster).
    AnySignedIn,
}

/// Who may take a call once it has waited `after_secs` in this queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRule {
    /// Applies from this wait on.
    pub after_secs: u64,
    /// Agents of this level or lower (1 = first line).
    pub max_level: u8,
    /// Agents must have the call's business area (when known) and category.
    pub skill_match: bool,
}

fn default_tier_rules() -> Vec<TierRule> {
    vec![
        TierRule {
            after_secs: 0,
            max_level: 1,
            skill_match: true,
        },
        TierRule {
            after_secs: 30,
            max_level: 2,
            skill_match: true,
        },
        TierRule {
            after_secs: 60,
            max_level: u8::MAX,
            skill_match: false,
        },
    ]
}

const fn secs<const N: u64>() -> u64 {
    N
}
const fn yes() -> bool {
    true
}
fn default_overflow_after() -> Option<u64> {
    Some(120)
}
fn default_callback_digit() -> Option<char> {
    Some('1')
}
const fn default_max_no_answer() -> u32 {
    3
}
const fn default_callback_attempts() -> u32 {
    3
}

/// One city's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The city (`[[cities]] id`); the province center is a queue too.
    pub city: CityId,
    /// Agent selection.
    #[serde(default)]
    pub strategy: Strategy,
    /// Who may take calls.
    #[serde(default)]
    pub duty: DutyPolicy,
    /// How long an agent leg rings before the offer moves on.
    #[serde(default = "secs::<20>")]
    pub ring_timeout_secs: u64,
    /// Pause after a failed offer before the call is offered again.
    #[serde(default = "secs::<5>")]
    pub retry_delay_secs: u64,
    /// Missed offers in a row before the agent is paused (`max-no-answer`); 0 = never.
    #[serde(default = "default_max_no_answer")]
    pub max_no_answer: u32,
    /// After a missed offer the agent is not offered calls for this long.
    #[serde(default = "secs::<0>")]
    pub no_answer_delay_secs: u64,
    /// After Busy or Unreachable the agent is not offered calls for this long.
    #[serde(default = "secs::<30>")]
    pub busy_delay_secs: u64,
    /// After a rejection the agent is not offered calls for this long.
    #[serde(default = "secs::<30>")]
    pub reject_delay_secs: u64,
    /// After-call work (agents may override).
    #[serde(default = "secs::<30>")]
    pub wrap_up_secs: u64,
    /// Position announcements, only when the position changed; 0 = off.
    #[serde(default = "secs::<45>")]
    pub announce_frequency_secs: u64,
    /// Periodic "please hold"; 0 = off.
    #[serde(default = "secs::<60>")]
    pub please_hold_secs: u64,
    /// Overflow after this wait in this queue; `None` = never by time.
    #[serde(default = "default_overflow_after")]
    pub overflow_after_secs: Option<u64>,
    /// Overflow at once when no agent of the city is signed in and ready.
    #[serde(default = "yes")]
    pub overflow_when_no_agents: bool,
    /// Overflow target; default the province center.
    #[serde(default)]
    pub overflow_to: Option<CityId>,
    /// Total wait before the voice-message flow.
    #[serde(default = "secs::<600>")]
    pub max_wait_secs: u64,
    /// The callback-in-queue key; `None` = callbacks off.
    #[serde(default = "default_callback_digit")]
    pub callback_digit: Option<char>,
    /// Caller-leg attempts per callback.
    #[serde(default = "default_callback_attempts")]
    pub callback_max_attempts: u32,
    /// Wait between callback attempts.
    #[serde(default = "secs::<300>")]
    pub callback_retry_delay_secs: u64,
    /// How long the caller's phone rings on a callback attempt before it counts as not
    /// answered.
    #[serde(default = "secs::<30>")]
    pub callback_ring_secs: u64,
    /// A callback not placed within this long is handed to a work order.
    #[serde(default = "secs::<7200>")]
    pub callback_max_wait_secs: u64,
    /// A caller who hung up while waiting and calls again within this long gets their
    /// old place back (dropped mobile calls); 0 = off.
    #[serde(default = "secs::<60>")]
    pub resume_abandoned_secs: u64,
    /// Skip a tier at once when none of its agents is signed in (no useless wait).
    #[serde(default = "yes")]
    pub widen_when_no_match: bool,
    /// Tier rules, by increasing `after_secs`; empty = every agent of the city.
    #[serde(default = "default_tier_rules")]
    pub tier_rules: Vec<TierRule>,
}

impl QueueConfig {
    /// A queue for `city` with every default.
    #[must_use]
    pub fn new(city: CityId) -> Self {
        Self {
            city,
            strategy: Strategy::default(),
            duty: DutyPolicy::default(),
            ring_timeout_secs: 20,
            retry_delay_secs: 5,
            max_no_answer: default_max_no_answer(),
            no_answer_delay_secs: 0,
            busy_delay_secs: 30,
            reject_delay_secs: 30,
            wrap_up_secs: 30,
            announce_frequency_secs: 45,
            please_hold_secs: 60,
            overflow_after_secs: default_overflow_after(),
            overflow_when_no_agents: true,
            overflow_to: None,
            max_wait_secs: 600,
            callback_digit: default_callback_digit(),
            callback_max_attempts: default_callback_attempts(),
            callback_retry_delay_secs: 300,
            callback_ring_secs: 30,
            callback_max_wait_secs: 7200,
            resume_abandoned_secs: 60,
            widen_when_no_match: true,
            tier_rules: default_tier_rules(),
        }
    }
}

/// Longest span the ACD arms a timer for (ten years): keeps time arithmetic in range
/// whatever a config says.
const MAX_SPAN_SECS: u64 = 10 * 366 * 24 * 3600;

pub(crate) fn span(secs: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(secs.min(MAX_SPAN_SECS)).unwrap_or(0))
}

const fn default_level() -> u8 {
    1
}

/// An agent as the ACD sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueAgentConfig {
    /// SIP user / login (`[[agents]] id`).
    pub id: AgentId,
    /// The city whose queue the agent serves.
    pub city: CityId,
    /// Tier level (1 answers first).
    #[serde(default = "default_level")]
    pub level: u8,
    /// Business areas the agent handles.
    #[serde(default)]
    pub skills: Vec<BusinessArea>,
    /// Categories the agent handles; empty = all.
    #[serde(default)]
    pub categories: Vec<CallCategory>,
    /// Overrides the queue's wrap-up.
    #[serde(default)]
    pub wrap_up_secs: Option<u64>,
}

impl QueueAgentConfig {
    /// A level-1 agent without skills.
    #[must_use]
    pub fn new(id: AgentId, city: CityId) -> Self {
        Self {
            id,
            city,
            level: 1,
            skills: Vec::new(),
            categories: Vec::new(),
            wrap_up_secs: None,
        }
    }
}

/// One duty-roster entry (值班): who, which dates, which days, which shift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterEntry {
    /// The agent on duty.
    pub agent: AgentId,
    /// First date (Asia/Shanghai).
    pub from: NaiveDate,
    /// Last date, inclusive.
    pub until: NaiveDate,
    /// `"working_days"` per the calendar, or a list of weekdays.
    #[serde(default)]
    pub days: Days,
    /// Shift start (local).
    pub start: ClockTime,
    /// Shift end (local); at or before `start` means the next day.
    pub end: ClockTime,
}

/// All queues, agents and rosters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesConfig {
    /// The province center's queue: overflow target of last resort.
    pub province_center: CityId,
    /// One per city.
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueConfig>,
    /// Agents (config order is the order for `linear` and `round_robin`).
    #[serde(default, rename = "agent")]
    pub agents: Vec<QueueAgentConfig>,
    /// Duty roster entries.
    #[serde(default, rename = "roster")]
    pub roster: Vec<RosterEntry>,
    /// An on-duty agent still not signed in this long after shift start is reported
    /// absent.
    #[serde(default = "secs::<0>")]
    pub absent_grace_secs: u64,
}

/// A problem in a [`QueuesConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueConfigError {
    /// Two queues for one city.
    #[error("two queues for city {0}")]
    DuplicateQueue(CityId),
    /// Two agents with one id.
    #[error("agent {0} is listed twice")]
    DuplicateAgent(AgentId),
    /// An agent's city has no queue.
    #[error("agent {agent} serves city {city}, which has no queue")]
    AgentWithoutQueue {
        /// The agent.
        agent: AgentId,
        /// Its city.
        city: CityId,
    },
    /// An overflow target with no queue.
    #[error("queue {queue} overflows to {target}, which has no queue")]
    UnknownOverflowTarget {
        /// The queue.
        queue: CityId,
        /// Its target.
        target: CityId,
    },
    /// The province center has no queue.
    #[error("the province center {0} has no queue")]
    NoProvinceQueue(CityId),
    /// A roster entry for an agent not in the agent list.
    #[error("roster entry for unknown agent {0}")]
    RosterUnknownAgent(AgentId),
    /// A roster entry that ends before it starts.
    #[error("roster entry for {0} ends before it starts")]
    RosterBackwards(AgentId),
    /// A ring timeout of zero would never ring anyone.
    #[error("queue {0}: ring_timeout_secs must be above 0")]
    ZeroRingTimeout(CityId),
    /// Tier rules must be sorted by `after_secs`.
    #[error("queue {0}: tier_rules must be in increasing after_secs")]
    TierRulesUnsorted(CityId),
    /// A callback key no phone can send (RFC 4733 events 0-9, * and #).
    #[error("queue {0}: callback_digit {1:?} must be one of 0-9, * or #")]
    BadCallbackKey(CityId, char),
}

impl QueuesConfig {
    /// Parses `[queues]` TOML (the table's contents) and validates it.
    ///
    /// # Errors
    /// A TOML error text, or the first validation problem.
    pub fn from_toml_str(text: &str) -> Result<Self, QueueConfigLoadError> {
        let config: Self = toml::from_str(text).map_err(QueueConfigLoadError::Toml)?;
        config.validate().map_err(QueueConfigLoadError::Invalid)?;
        Ok(config)
    }

    /// Checks references between queues, agents and rosters.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), QueueConfigError> {
        match self.problems().into_iter().next() {
            Some((_, problem)) => Err(problem),
            None => Ok(()),
        }
    }

    /// Every problem, each with the TOML path of the entry it is in, relative to the
    /// `[queues]` table (`queue[2].ring_timeout_secs`, `roster[0].agent`).
    pub fn problems(&self) -> Vec<(String, QueueConfigError)> {
        let mut problems = Vec::new();
        let mut cities = BTreeSet::new();
        for (i, queue) in self.queues.iter().enumerate() {
            let city = || queue.city.clone();
            if !cities.insert(queue.city.clone()) {
                problems.push((
                    format!("queue[{i}].city"),
                    QueueConfigError::DuplicateQueue(city()),
                ));
            }
            if queue.ring_timeout_secs == 0 {
                problems.push((
                    format!("queue[{i}].ring_timeout_secs"),
                    QueueConfigError::ZeroRingTimeout(city()),
                ));
            }
            if let Some(key) = queue.callback_digit
                && !(key.is_ascii_digit() || key == '*' || key == '#')
            {
                problems.push((
                    format!("queue[{i}].callback_digit"),
                    QueueConfigError::BadCallbackKey(city(), key),
                ));
            }
            if queue
                .tier_rules
                .windows(2)
                .any(|pair| matches!(pair, [a, b] if a.after_secs > b.after_secs))
            {
                problems.push((
                    format!("queue[{i}].tier_rules"),
                    QueueConfigError::TierRulesUnsorted(city()),
                ));
            }
        }
        if !cities.contains(&self.province_center) {
            problems.push((
                "province_center".to_owned(),
                QueueConfigError::NoProvinceQueue(self.province_center.clone()),
            ));
        }
        for (i, queue) in self.queues.iter().enumerate() {
            if let Some(target) = &queue.overflow_to
                && !cities.contains(target)
            {
                problems.push((
                    format!("queue[{i}].overflow_to"),
                    QueueConfigError::UnknownOverflowTarget {
                        queue: queue.city.clone(),
                        target: target.clone(),
                    },
                ));
            }
        }
        let mut agents = BTreeSet::new();
        for (i, agent) in self.agents.iter().enumerate() {
            if !agents.insert(agent.id.clone()) {
                problems.push((
                    format!("agent[{i}].id"),
                    QueueConfigError::DuplicateAgent(agent.id.clone()),
                ));
            }
            if !cities.contains(&agent.city) {
                problems.push((
                    format!("agent[{i}].city"),
                    QueueConfigError::AgentWithoutQueue {
                        agent: agent.id.clone(),
                        city: agent.city.clone(),
                    },
                ));
            }
        }
        for (i, entry) in self.roster.iter().enumerate() {
            if !agents.contains(&entry.agent) {
                problems.push((
                    format!("roster[{i}].agent"),
                    QueueConfigError::RosterUnknownAgent(entry.agent.clone()),
                ));
            }
            if entry.until < entry.from {
                problems.push((
                    format!("roster[{i}].until"),
                    QueueConfigError::RosterBackwards(entry.agent.clone()),
                ));
            }
        }
        problems
    }
}

/// Loading `[queues]` failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueConfigLoadError {
    /// Not valid TOML for these types.
    #[error("queues config: {0}")]
    Toml(toml::de::Error),
    /// Valid TOML, inconsistent content.
    #[error("queues config: {0}")]
    Invalid(QueueConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the module docs, inside a `[queues]` table.
    fn doc_example() -> String {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```toml").unwrap_or(0);
        let body: Vec<&str> = doc[start..]
            .lines()
            .skip(1)
            .take_while(|line| !line.starts_with("//! ```"))
            .map(|line| line.trim_start_matches("//!").trim_start_matches(' '))
            .collect();
        let mut text = body.join("\n");
        text = text.replace("[[queues.", "[[").replace("[queues]", "");
        // The example refers to "zibo" and "shandong": add their queues.
        text.push_str("\n[[queue]]\ncity = \"zibo\"\n[[queue]]\ncity = \"shandong\"\n");
        text
    }

    #[test]
    fn the_documented_example_loads_and_validates() {
        let config = QueuesConfig::from_toml_str(&doc_example());
        let config = match config {
            Ok(config) => config,
            Err(error) => panic!("{error}\n{}", doc_example()),
        };
        assert_eq!(config.queues.len(), 3);
        assert_eq!(config.queues[0].tier_rules.len(), 3);
        assert_eq!(config.agents[0].skills.len(), 2);
        assert_eq!(config.roster[0].days, Days::WorkingDays);
        assert_eq!(config.queues[0].callback_digit, Some('1'));
    }

    #[test]
    fn a_bare_queue_gets_the_defaults() {
        let config =
            QueuesConfig::from_toml_str("province_center = \"p\"\n[[queue]]\ncity = \"p\"\n");
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.queues[0], QueueConfig::new(CityId::new("p")));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let result = QueuesConfig::from_toml_str(
            "province_center = \"p\"\n[[queue]]\ncity = \"p\"\nring_timeout = 5\n",
        );
        assert!(matches!(result, Err(QueueConfigLoadError::Toml(_))));
    }

    #[test]
    fn callback_keys_are_phone_keys() {
        let with = |key: &str| {
            QueuesConfig::from_toml_str(&format!(
                "province_center = \"p\"\n[[queue]]\ncity = \"p\"\ncallback_digit = \"{key}\"\n"
            ))
        };
        for key in ["*", "#", "0", "9"] {
            assert!(with(key).is_ok(), "{key}");
        }
        assert!(matches!(
            with("x"),
            Err(QueueConfigLoadError::Invalid(
                QueueConfigError::BadCallbackKey(_, 'x')
            ))
        ));
    }

    #[test]
    fn overflow_to_an_unknown_city_is_rejected() {
        let result = QueuesConfig::from_toml_str(
            "province_center = \"p\"\n[[queue]]\ncity = \"p\"\noverflow_to = \"x\"\n",
        );
        assert!(matches!(
            result,
            Err(QueueConfigLoadError::Invalid(
                QueueConfigError::UnknownOverflowTarget { .. }
            ))
        ));
    }
}
