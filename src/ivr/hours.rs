//! Working hours per city (`CALL-HOURS`): published, fixed config on China's calendar.
//!
//! ```toml
//! [cities.hours]            # or wherever the server config nests it
//! days = "working_days"     # the calendar's working days, 调休 Saturdays/Sundays included
//! # days = ["mon", "tue", "wed", "thu", "fri", "sat"]   # or explicit weekdays
//! periods = [{ start = "09:00", end = "12:00" }, { start = "13:30", end = "17:30" }]
//! exceptions = [
//!   { date = "2026-02-13", open = false },                                   # closed
//!   { date = "2026-02-15", open = true, periods = [{ start = "09:00", end = "11:00" }] },
//! ]
//! ```
//! A period is half-open: open at `start`, closed at `end`. An exception replaces the
//! day's rule; `open = true` without `periods` uses the regular periods.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Timelike, Weekday};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::prompt::PromptRef;
use crate::calendar::{Calendar, shanghai};

/// How far ahead [`WorkingHours::status`] looks for the next opening.
const LOOKAHEAD_DAYS: u32 = 400;

/// A time of day written `HH:MM` in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime(pub NaiveTime);

impl ClockTime {
    /// `hour:minute`; `None` if out of range.
    #[must_use]
    pub fn hm(hour: u32, minute: u32) -> Option<Self> {
        NaiveTime::from_hms_opt(hour, minute, 0).map(Self)
    }
}

impl Serialize for ClockTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.format("%H:%M").to_string())
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NaiveTime::parse_from_str(text.trim(), "%H:%M")
            .map(Self)
            .map_err(|_| serde::de::Error::custom(format!("not a HH:MM time: {text:?}")))
    }
}

/// One opening period of a day, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// Opening time.
    pub start: ClockTime,
    /// Closing time (exclusive).
    pub end: ClockTime,
}

impl Period {
    fn contains(&self, time: NaiveTime) -> bool {
        self.start.0 <= time && time < self.end.0
    }
}

/// Which days the regular periods apply to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Days {
    /// The calendar's working days (holidays off, 调休 weekend days worked).
    #[default]
    WorkingDays,
    /// Fixed weekdays, regardless of holidays.
    Weekdays(Vec<Weekday>),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawDays {
    Keyword(String),
    Weekdays(Vec<String>),
}

const WORKING_DAYS: &str = "working_days";

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::WorkingDays => RawDays::Keyword(WORKING_DAYS.to_owned()),
            Self::Weekdays(days) => RawDays::Weekdays(
                days.iter()
                    .map(|d| d.to_string().to_ascii_lowercase())
                    .collect(),
            ),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match RawDays::deserialize(deserializer)? {
            RawDays::Keyword(word) if word == WORKING_DAYS => Ok(Self::WorkingDays),
            RawDays::Keyword(word) => Err(serde::de::Error::custom(format!(
                "days must be \"{WORKING_DAYS}\" or a list of weekdays, got {word:?}"
            ))),
            RawDays::Weekdays(names) => names
                .iter()
                .map(|name| {
                    name.parse::<Weekday>()
                        .map_err(|_| serde::de::Error::custom(format!("not a weekday: {name:?}")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Self::Weekdays),
        }
    }
}

/// A date whose hours differ from the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursException {
    /// The date (Asia/Shanghai).
    pub date: NaiveDate,
    /// Whether the line is staffed that day.
    pub open: bool,
    /// Periods that day when open; the regular ones when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periods: Option<Vec<Period>>,
}

/// A city's published working hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkingHours {
    /// Opening periods of an open day, in order.
    pub periods: Vec<Period>,
    /// Which days are open.
    #[serde(default)]
    pub days: Days,
    /// Dated exceptions.
    #[serde(default)]
    pub exceptions: Vec<HoursException>,
}

impl Default for WorkingHours {
    /// 工作日 09:00–12:00 and 13:30–17:30 on the calendar's working days.
    fn default() -> Self {
        let period = |h1, m1, h2, m2| Period {
            start: ClockTime(NaiveTime::from_hms_opt(h1, m1, 0).unwrap_or(NaiveTime::MIN)),
            end: ClockTime(NaiveTime::from_hms_opt(h2, m2, 0).unwrap_or(NaiveTime::MIN)),
        };
        Self {
            periods: vec![period(9, 0, 12, 0), period(13, 30, 17, 30)],
            days: Days::WorkingDays,
            exceptions: Vec::new(),
        }
    }
}

/// Whether the line is staffed at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpenStatus {
    /// Agents answer live now.
    pub open: bool,
    /// When closed: the next opening (Asia/Shanghai); `None` when open or when no
    /// opening exists within about a year.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_open: Option<DateTime<FixedOffset>>,
    /// Some day consulted lies in a year the calendar has no data for (Mon–Fri assumed).
    pub provisional: bool,
}

/// A problem in a [`WorkingHours`] config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    /// A period whose end is not after its start.
    #[error("period {start}–{end} ends before it starts")]
    EmptyPeriod {
        /// Start as written.
        start: String,
        /// End as written.
        end: String,
    },
    /// Periods of one day overlap or are out of order.
    #[error("periods overlap or are not in order at {at}")]
    Overlap {
        /// Start of the offending period.
        at: String,
    },
    /// No regular periods.
    #[error("no opening periods configured")]
    NoPeriods,
    /// The same date twice in `exceptions`.
    #[error("exception date {date} listed twice")]
    DuplicateException {
        /// The date.
        date: NaiveDate,
    },
}

fn check_periods(periods: &[Period]) -> Result<(), HoursError> {
    let mut previous_end: Option<NaiveTime> = None;
    for period in periods {
        if period.end.0 <= period.start.0 {
            return Err(HoursError::EmptyPeriod {
                start: period.start.0.format("%H:%M").to_string(),
                end: period.end.0.format("%H:%M").to_string(),
            });
        }
        if previous_end.is_some_and(|end| period.start.0 < end) {
            return Err(HoursError::Overlap {
                at: period.start.0.format("%H:%M").to_string(),
            });
        }
        previous_end = Some(period.end.0);
    }
    Ok(())
}

impl WorkingHours {
    /// Checks the config (for `hotline check-config`).
    ///
    /// # Errors
    /// The first [`HoursError`] found.
    pub fn validate(&self) -> Result<(), HoursError> {
        if self.periods.is_empty() {
            return Err(HoursError::NoPeriods);
        }
        check_periods(&self.periods)?;
        let mut seen = std::collections::BTreeSet::new();
        for exception in &self.exceptions {
            if !seen.insert(exception.date) {
                return Err(HoursError::DuplicateException {
                    date: exception.date,
                });
            }
            if let Some(periods) = &exception.periods {
                check_periods(periods)?;
            }
        }
        Ok(())
    }

    /// The periods of `date` and whether that rests on a year without calendar data.
    fn periods_on(&self, calendar: &Calendar, date: NaiveDate) -> (&[Period], bool) {
        if let Some(exception) = self.exceptions.iter().find(|e| e.date == date) {
            return if exception.open {
                (exception.periods.as_deref().unwrap_or(&self.periods), false)
            } else {
                (&[], false)
            };
        }
        match &self.days {
            Days::WorkingDays => {
                let info = calendar.is_working_day(date);
                let periods: &[Period] = if info.working { &self.periods } else { &[] };
                (periods, !info.known)
            }
            Days::Weekdays(days) => {
                let periods: &[Period] = if days.contains(&date.weekday()) {
                    &self.periods
                } else {
                    &[]
                };
                (periods, false)
            }
        }
    }

    /// Open or closed at `now`, and the next opening when closed.
    #[must_use]
    pub fn status(&self, calendar: &Calendar, now: DateTime<FixedOffset>) -> OpenStatus {
        let local = now.with_timezone(&shanghai());
        let today = local.date_naive();
        let time = local.time();
        let (periods, mut provisional) = self.periods_on(calendar, today);
        if periods.iter().any(|p| p.contains(time)) {
            return OpenStatus {
                open: true,
                next_open: None,
                provisional,
            };
        }
        let at = |date: NaiveDate, start: NaiveTime| {
            date.and_time(start).and_local_timezone(shanghai()).single()
        };
        let mut next_open = periods
            .iter()
            .filter(|p| p.start.0 > time)
            .map(|p| p.start.0)
            .min()
            .and_then(|start| at(today, start));
        let mut day = today;
        for _ in 0..LOOKAHEAD_DAYS {
            if next_open.is_some() {
                break;
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
            let (periods, unknown) = self.periods_on(calendar, day);
            provisional |= unknown;
            next_open = periods
                .iter()
                .map(|p| p.start.0)
                .min()
                .and_then(|start| at(day, start));
        }
        OpenStatus {
            open: false,
            next_open,
            provisional,
        }
    }

    /// Chinese description for prompts and the API, e.g.
    /// "工作日上午9:00至12:00，下午1:30至5:30".
    #[must_use]
    pub fn describe(&self) -> String {
        let periods: Vec<String> = self.periods.iter().map(describe_period).collect();
        format!("{}{}", describe_days(&self.days), periods.join("，"))
    }

    /// The hours as a play list of shipped prompts ("工作日 上午 九点 至 十二点 …").
    #[must_use]
    pub fn spoken(&self) -> Vec<PromptRef> {
        let mut out = match &self.days {
            Days::WorkingDays => vec![PromptRef::prompt("word_working_days")],
            Days::Weekdays(days) => {
                let mut list = vec![PromptRef::prompt("word_every_week")];
                for (index, day) in days.iter().enumerate() {
                    if index > 0 {
                        list.push(PromptRef::prompt("word_and"));
                    }
                    list.push(PromptRef::Prompt(super::prompt::PromptId(format!(
                        "weekday_{}",
                        day.number_from_monday()
                    ))));
                }
                list
            }
        };
        for period in &self.periods {
            let (start_part, start_label) = day_part(period.start.0);
            out.push(PromptRef::prompt(start_part.prompt_id()));
            out.extend(spoken_clock(period.start.0, start_label));
            out.push(PromptRef::prompt("word_to"));
            let (end_part, end_label) = day_part(period.end.0);
            if end_part != start_part && !is_noon_end(start_part, period.end.0) {
                out.push(PromptRef::prompt(end_part.prompt_id()));
            }
            out.extend(spoken_clock(period.end.0, end_label));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayPart {
    Morning,
    Afternoon,
    Evening,
}

impl DayPart {
    fn chinese(self) -> &'static str {
        match self {
            Self::Morning => "上午",
            Self::Afternoon => "下午",
            Self::Evening => "晚上",
        }
    }

    fn prompt_id(self) -> &'static str {
        match self {
            Self::Morning => "word_morning",
            Self::Afternoon => "word_afternoon",
            Self::Evening => "word_evening",
        }
    }
}

/// The part of day and the 12-hour clock hour (12:xx stays 12).
fn day_part(time: NaiveTime) -> (DayPart, u32) {
    let hour = time.hour();
    match hour {
        0..=11 => (DayPart::Morning, hour),
        12 => (DayPart::Afternoon, 12),
        13..=17 => (DayPart::Afternoon, hour - 12),
        _ => (DayPart::Evening, hour - 12),
    }
}

/// A morning period ending at 12:00 says "上午9:00至12:00", not "至下午12:00".
fn is_noon_end(start_part: DayPart, end: NaiveTime) -> bool {
    start_part == DayPart::Morning && end.hour() == 12 && end.minute() == 0
}

fn describe_period(period: &Period) -> String {
    let (start_part, start_hour) = day_part(period.start.0);
    let (end_part, end_hour) = day_part(period.end.0);
    let end_label = if end_part == start_part || is_noon_end(start_part, period.end.0) {
        ""
    } else {
        end_part.chinese()
    };
    format!(
        "{}{}:{:02}至{}{}:{:02}",
        start_part.chinese(),
        start_hour,
        period.start.0.minute(),
        end_label,
        end_hour,
        period.end.0.minute()
    )
}

fn describe_days(days: &Days) -> String {
    const NAMES: [&str; 7] = ["一", "二", "三", "四", "五", "六", "日"];
    let name = |day: &Weekday| {
        NAMES
            .get(day.num_days_from_monday() as usize)
            .copied()
            .unwrap_or("")
    };
    match days {
        Days::WorkingDays => "工作日".to_owned(),
        Days::Weekdays(list) => {
            let mut numbers: Vec<u32> = list.iter().map(Weekday::num_days_from_monday).collect();
            numbers.sort_unstable();
            numbers.dedup();
            let contiguous = numbers
                .windows(2)
                .all(|w| matches!(w, [a, b] if b - a == 1));
            match (numbers.first(), numbers.last()) {
                (Some(first), Some(last)) if contiguous && numbers.len() >= 3 => format!(
                    "每周{}至周{}",
                    NAMES.get(*first as usize).copied().unwrap_or(""),
                    NAMES.get(*last as usize).copied().unwrap_or("")
                ),
                _ => format!(
                    "每周{}",
                    list.iter().map(name).collect::<Vec<_>>().join("、")
                ),
            }
        }
    }
}

/// "九点" / "一点三十分" / "五点零五分" as prompts.
fn spoken_clock(time: NaiveTime, hour12: u32) -> Vec<PromptRef> {
    let mut out = vec![PromptRef::Number(hour12), PromptRef::prompt("word_oclock")];
    let minute = time.minute();
    if minute > 0 {
        if minute < 10 {
            // 五点零二分: a lone minute digit is read as a digit (二, not 两).
            out.push(PromptRef::prompt("digit_0"));
            out.push(PromptRef::Prompt(super::prompt::PromptId(format!(
                "digit_{minute}"
            ))));
        } else {
            out.push(PromptRef::Number(minute));
        }
        out.push(PromptRef::prompt("word_minute"));
    }
    out
}

/// Prompt ids that [`WorkingHours::spoken`] may use (besides spoken numbers).
pub const HOURS_PROMPT_IDS: [&str; 17] = [
    "word_working_days",
    "word_every_week",
    "word_and",
    "word_morning",
    "word_afternoon",
    "word_evening",
    "word_to",
    "word_oclock",
    "word_minute",
    "weekday_1",
    "weekday_2",
    "weekday_3",
    "weekday_4",
    "weekday_5",
    "weekday_6",
    "weekday_7",
    "digit_0",
];

#[cfg(test)]
mod tests;
