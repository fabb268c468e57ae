//! China working-day calendar (holidays and 调休 workdays per year).
//!
//! # Data
//! Per-year tables loaded from `config/calendar/cn-workdays.toml`:
//! `[years.YYYY] holidays = [...], workdays = [...], in_lieu = [...]`.
//! A date is a working day iff (Monday–Friday and not in `holidays`) or in `workdays`
//! (weekend days that are worked, 调休上班). A year without a table is *unknown*: it is
//! treated as plain Monday–Friday, and every result that depends on it is flagged
//! `provisional` (never guessed silently).
//!
//! # Time zone
//! All working-day arithmetic happens in Asia/Shanghai, which has been UTC+8 without
//! daylight saving since 1991, so a [`FixedOffset`] of +08:00 is exact ([`shanghai`]).
//!
//! # Counting rule
//! *N working days from a moment* ends at **24:00 (Asia/Shanghai) at the end of the
//! N-th working day strictly after the calendar day of receipt**. The day of receipt is
//! never counted, whether or not it is itself a working day, and whatever the hour
//! (as for periods counted in days under PRC Civil Code art. 201). Example: received
//! 2025-09-30 16:00 (Tuesday before National Day), 1 working day → the first working day
//! after 09-30 is 10-09 (10-01..10-08 off), so the deadline is `2025-10-09T24:00+08:00`.
//!
//! "24:00 of day D" is represented internally as 00:00 of D+1 (an instant); use
//! [`Deadline::display`] to print it the way the regulations say it.
//!
//! Hour deadlines (urgent transfer within 1 hour) are wall-clock: [`Deadline::hours`].
//!
//! `N = 0` working days means 24:00 of the day of receipt.

pub mod cli;
pub mod live;

pub use live::{Reload, SharedCalendar};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeDelta, Timelike, Weekday};
use serde::{Deserialize, Serialize};

/// Asia/Shanghai: UTC+8. Evaluated at compile time, so it cannot fail at run time.
const SHANGHAI: FixedOffset = match FixedOffset::east_opt(8 * 3600) {
    Some(offset) => offset,
    None => panic!("+08:00 is a valid offset"),
};

/// The Asia/Shanghai offset (UTC+8, no DST since 1991).
#[must_use]
pub fn shanghai() -> FixedOffset {
    SHANGHAI
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// The calendar file could not be read.
    #[error("cannot read calendar file {path}: {source}")]
    Io {
        /// File that was being read.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("calendar file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// The data breaks a rule of [`Calendar::validate`].
    #[error("calendar data invalid: {}", describe_problems(.0))]
    Invalid(Vec<CalendarProblem>),
    /// A moment given on the command line is not RFC 3339.
    #[error("not an RFC 3339 moment (like 2025-09-30T16:00+08:00): {input:?}")]
    BadMoment {
        /// The text given.
        input: String,
    },
    /// More working days than any legal time limit (guards the day-by-day count).
    #[error("{given} working days is out of range (at most {max})")]
    WorkingDaysOutOfRange {
        /// Number given.
        given: u32,
        /// Largest accepted.
        max: u32,
    },
    /// A date given on the command line is not `YYYY-MM-DD`.
    #[error("not a date (like 2025-10-01): {input:?}")]
    BadDate {
        /// The text given.
        input: String,
    },
}

fn describe_problems(problems: &[CalendarProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// How bad a [`CalendarProblem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The data cannot be used.
    Error,
    /// Harmless but worth fixing (duplicates).
    Warning,
}

/// Which rule a [`CalendarProblem`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// `[years.X]` where X is not a year number.
    BadYearKey,
    /// A list entry that is not a `YYYY-MM-DD` date.
    BadDate,
    /// A date listed under another year's table.
    WrongYear,
    /// A date that is both a holiday and a workday.
    HolidayAndWorkday,
    /// A workday (调休上班) that is not a Saturday or Sunday.
    WorkdayNotWeekend,
    /// An `in_lieu` date missing from `holidays`.
    InLieuNotHoliday,
    /// The same date twice in one list.
    Duplicate,
    /// Not TOML, or not of the expected shape.
    Syntax,
}

/// One thing wrong with calendar data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarProblem {
    /// Year table concerned, when it could be read.
    pub year: Option<i32>,
    /// Date (as written in the file) concerned, if any.
    pub date: Option<String>,
    /// Rule broken.
    pub kind: ProblemKind,
    /// Error or warning.
    pub severity: Severity,
    /// Human explanation.
    pub message: String,
}

impl fmt::Display for CalendarProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}")?;
        if let Some(year) = self.year {
            write!(f, " [years.{year}]")?;
        }
        if let Some(date) = &self.date {
            write!(f, " {date}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Working-day status of one date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayInfo {
    /// Whether the date is a working day.
    pub working: bool,
    /// Whether the date's year has data (otherwise Monday–Friday was assumed).
    pub known: bool,
}

/// Why a date is or is not a working day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayKind {
    /// Monday–Friday, no holiday.
    Weekday,
    /// Saturday or Sunday, not worked.
    Weekend,
    /// Inside a State Council holiday period.
    Holiday,
    /// A Saturday or Sunday worked because of 调休.
    AdjustedWorkday,
    /// Year without data: Monday–Friday assumed working.
    AssumedWeekday,
    /// Year without data: weekend assumed off.
    AssumedWeekend,
}

impl DayKind {
    /// Whether this kind of day is worked.
    #[must_use]
    pub fn is_working(self) -> bool {
        matches!(
            self,
            Self::Weekday | Self::AdjustedWorkday | Self::AssumedWeekday
        )
    }
}

/// A deadline instant and whether it rests on unknown calendar years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    /// The instant (Asia/Shanghai offset); "24:00 of D" is 00:00 of D+1.
    pub at: DateTime<FixedOffset>,
    /// True when some day counted lies in a year the calendar has no data for.
    pub provisional: bool,
}

impl Deadline {
    /// A wall-clock deadline `h` hours after `received_at` (urgent transfer: 1 hour).
    /// Never provisional: it does not depend on the calendar.
    #[must_use]
    pub fn hours(received_at: DateTime<FixedOffset>, h: u32) -> Self {
        let at = received_at
            .checked_add_signed(TimeDelta::hours(i64::from(h)))
            .unwrap_or(received_at);
        Self {
            at: at.with_timezone(&shanghai()),
            provisional: false,
        }
    }

    /// Printable form: a deadline falling at local midnight is shown as `24:00` of the
    /// previous day (`2025-10-09T24:00+08:00`), anything else as `YYYY-MM-DDTHH:MM+08:00`.
    #[must_use]
    pub fn display(&self) -> DeadlineDisplay {
        DeadlineDisplay(self.at)
    }
}

/// Formatter returned by [`Deadline::display`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlineDisplay(DateTime<FixedOffset>);

impl fmt::Display for DeadlineDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.0.with_timezone(&shanghai());
        let naive = local.naive_local();
        if naive.time() == NaiveTime::MIN {
            if let Some(previous) = naive.date().pred_opt() {
                return write!(f, "{}T24:00+08:00", previous.format("%Y-%m-%d"));
            }
        }
        if naive.second() == 0 {
            write!(f, "{}", local.format("%Y-%m-%dT%H:%M%:z"))
        } else {
            write!(f, "{}", local.format("%Y-%m-%dT%H:%M:%S%:z"))
        }
    }
}

/// A working day found by [`Calendar::next_working_day`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingDay {
    /// The date.
    pub date: NaiveDate,
    /// True when a day examined lies in a year without data.
    pub provisional: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct YearTable {
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
}

/// The working-day calendar: per-year holiday / 调休 tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    years: BTreeMap<i32, YearTable>,
}

#[derive(Debug, Deserialize)]
struct RawFile {
    #[serde(default)]
    years: BTreeMap<String, RawYear>,
}

#[derive(Debug, Deserialize)]
struct RawYear {
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default)]
    workdays: Vec<String>,
    #[serde(default)]
    in_lieu: Vec<String>,
}

/// Parsed and checked data, shared by [`Calendar::validate`] and loading.
struct Checked {
    years: BTreeMap<i32, YearTable>,
    problems: Vec<CalendarProblem>,
}

fn check(raw: &RawFile) -> Checked {
    let mut years = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, raw_year) in &raw.years {
        let Ok(year) = key.trim().parse::<i32>() else {
            problems.push(CalendarProblem {
                year: None,
                date: None,
                kind: ProblemKind::BadYearKey,
                severity: Severity::Error,
                message: format!("table key {key:?} is not a year"),
            });
            continue;
        };
        let mut list = |name: &str, entries: &[String]| -> BTreeSet<NaiveDate> {
            let mut set = BTreeSet::new();
            for entry in entries {
                let problem = |kind, severity, message| CalendarProblem {
                    year: Some(year),
                    date: Some(entry.clone()),
                    kind,
                    severity,
                    message,
                };
                let Ok(date) = NaiveDate::parse_from_str(entry.trim(), "%Y-%m-%d") else {
                    problems.push(problem(
                        ProblemKind::BadDate,
                        Severity::Error,
                        format!("{name}: not a YYYY-MM-DD date"),
                    ));
                    continue;
                };
                if date.year() != year {
                    problems.push(problem(
                        ProblemKind::WrongYear,
                        Severity::Error,
                        format!("{name}: date belongs to year {}", date.year()),
                    ));
                    continue;
                }
                if !set.insert(date) {
                    problems.push(problem(
                        ProblemKind::Duplicate,
                        Severity::Warning,
                        format!("{name}: listed more than once"),
                    ));
                }
            }
            set
        };
        let holidays = list("holidays", &raw_year.holidays);
        let workdays = list("workdays", &raw_year.workdays);
        let in_lieu = list("in_lieu", &raw_year.in_lieu);
        for date in holidays.intersection(&workdays) {
            problems.push(CalendarProblem {
                year: Some(year),
                date: Some(date.to_string()),
                kind: ProblemKind::HolidayAndWorkday,
                severity: Severity::Error,
                message: "listed both as holiday and as workday".to_owned(),
            });
        }
        for date in &workdays {
            if !is_weekend(*date) {
                problems.push(CalendarProblem {
                    year: Some(year),
                    date: Some(date.to_string()),
                    kind: ProblemKind::WorkdayNotWeekend,
                    severity: Severity::Error,
                    message: format!(
                        "workdays lists only Saturdays/Sundays worked by 调休, this is a {:?}",
                        date.weekday()
                    ),
                });
            }
        }
        for date in in_lieu.difference(&holidays) {
            problems.push(CalendarProblem {
                year: Some(year),
                date: Some(date.to_string()),
                kind: ProblemKind::InLieuNotHoliday,
                severity: Severity::Error,
                message: "in_lieu date is not in holidays".to_owned(),
            });
        }
        years.insert(year, YearTable { holidays, workdays });
    }
    Checked { years, problems }
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// 00:00 Asia/Shanghai of `date`, i.e. 24:00 of the day before.
fn start_of_day(date: NaiveDate) -> Option<DateTime<FixedOffset>> {
    date.and_time(NaiveTime::MIN)
        .and_local_timezone(shanghai())
        .single()
}

impl Calendar {
    /// Parses and validates calendar TOML.
    ///
    /// # Errors
    /// [`CalendarError::Toml`] if it is not TOML of the expected shape,
    /// [`CalendarError::Invalid`] if [`Calendar::validate`] finds an error
    /// (warnings such as duplicates are accepted).
    pub fn from_toml_str(text: &str) -> Result<Self, CalendarError> {
        let raw: RawFile = toml::from_str(text)?;
        let checked = check(&raw);
        let errors: Vec<CalendarProblem> = checked
            .problems
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        if errors.is_empty() {
            Ok(Self {
                years: checked.years,
            })
        } else {
            Err(CalendarError::Invalid(errors))
        }
    }

    /// Reads, parses and validates a calendar file.
    ///
    /// # Errors
    /// [`CalendarError::Io`] when the file cannot be read, otherwise as
    /// [`Calendar::from_toml_str`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, CalendarError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CalendarError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Every problem in calendar TOML (for `hotline check-config`); a TOML syntax
    /// error is a single problem of kind [`ProblemKind::Syntax`].
    #[must_use]
    pub fn validate(text: &str) -> Vec<CalendarProblem> {
        match toml::from_str::<RawFile>(text) {
            Ok(raw) => check(&raw).problems,
            Err(error) => vec![CalendarProblem {
                year: None,
                date: None,
                kind: ProblemKind::Syntax,
                severity: Severity::Error,
                message: format!("not valid calendar TOML: {error}"),
            }],
        }
    }

    /// Years with data, ascending.
    #[must_use]
    pub fn loaded_years(&self) -> Vec<i32> {
        self.years.keys().copied().collect()
    }

    /// Years touched by the dates `a..=b` (either order) that have no data.
    #[must_use]
    pub fn missing_years_between(&self, a: NaiveDate, b: NaiveDate) -> Vec<i32> {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        (low.year()..=high.year())
            .filter(|year| !self.years.contains_key(year))
            .collect()
    }

    /// Why `date` is or is not a working day.
    #[must_use]
    pub fn day_kind(&self, date: NaiveDate) -> DayKind {
        match self.years.get(&date.year()) {
            None if is_weekend(date) => DayKind::AssumedWeekend,
            None => DayKind::AssumedWeekday,
            Some(table) if table.workdays.contains(&date) => DayKind::AdjustedWorkday,
            Some(table) if table.holidays.contains(&date) => DayKind::Holiday,
            Some(_) if is_weekend(date) => DayKind::Weekend,
            Some(_) => DayKind::Weekday,
        }
    }

    /// Working-day status of `date`; unknown years assume Monday–Friday.
    #[must_use]
    pub fn is_working_day(&self, date: NaiveDate) -> DayInfo {
        DayInfo {
            working: self.day_kind(date).is_working(),
            known: self.years.contains_key(&date.year()),
        }
    }

    /// The first working day strictly after `date`; `None` only past the end of
    /// representable dates.
    #[must_use]
    pub fn next_working_day(&self, date: NaiveDate) -> Option<WorkingDay> {
        let mut provisional = false;
        let mut day = date;
        loop {
            day = day.succ_opt()?;
            let info = self.is_working_day(day);
            provisional |= !info.known;
            if info.working {
                return Some(WorkingDay {
                    date: day,
                    provisional,
                });
            }
        }
    }

    /// Working days still to run before a working-day limit, seen at `now`: the working
    /// days strictly after `now`'s local date up to the limit's own day (the day whose
    /// 24:00 it is), so 0 on the limit's day itself. Once the limit has passed it is
    /// minus the working days begun since (the day after the limit through `now`'s
    /// date), which is 0 when none has begun yet (a weekend after a Friday limit).
    #[must_use]
    pub fn working_days_left(&self, due: &Deadline, now: DateTime<FixedOffset>) -> i64 {
        let today = now.with_timezone(&shanghai()).date_naive();
        let due_local = due.at.with_timezone(&shanghai()).naive_local();
        // A limit at 00:00 of D+1 is 24:00 of D.
        let due_day = if due_local.time() == NaiveTime::MIN {
            due_local.date().pred_opt().unwrap_or(due_local.date())
        } else {
            due_local.date()
        };
        let count = |from: NaiveDate, to: NaiveDate| -> i64 {
            from.iter_days()
                .skip(1)
                .take_while(|d| *d <= to)
                .filter(|d| self.is_working_day(*d).working)
                .count()
                .try_into()
                .unwrap_or(i64::MAX)
        };
        if now < due.at {
            count(today, due_day)
        } else {
            -count(due_day, today)
        }
    }

    /// `n` working days from `received_at` under the module's counting rule: 24:00
    /// Asia/Shanghai at the end of the n-th working day strictly after the local date
    /// of receipt. `provisional` when any day counted over lies in a year without data.
    /// Past the last representable date the result saturates and is provisional.
    #[must_use]
    pub fn add_working_days(&self, received_at: DateTime<FixedOffset>, n: u32) -> Deadline {
        let mut day = received_at.with_timezone(&shanghai()).date_naive();
        let mut provisional = false;
        for _ in 0..n {
            match self.next_working_day(day) {
                Some(found) => {
                    day = found.date;
                    provisional |= found.provisional;
                }
                None => {
                    provisional = true;
                    break;
                }
            }
        }
        let at = day
            .succ_opt()
            .and_then(start_of_day)
            .or_else(|| start_of_day(day))
            .unwrap_or(received_at);
        Deadline { at, provisional }
    }
}

#[cfg(test)]
mod tests;
