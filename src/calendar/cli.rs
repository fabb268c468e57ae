//! Plain functions behind `hotline calendar deadline` and `hotline calendar
//! is-working-day`; the binary only parses arguments and prints what they return.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate};

use super::{Calendar, CalendarError, DayKind};

/// Parses an RFC 3339 moment, also accepting the seconds-less form
/// `2025-09-30T16:00+08:00`.
///
/// # Errors
/// [`CalendarError::BadMoment`] when `text` is neither form.
pub fn parse_moment(text: &str) -> Result<DateTime<FixedOffset>, CalendarError> {
    let trimmed = text.trim();
    DateTime::parse_from_rfc3339(trimmed)
        .or_else(|_| DateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M%:z"))
        .or_else(|_| DateTime::parse_from_str(trimmed, "%Y-%m-%dT%H:%M%#z"))
        .map_err(|_| CalendarError::BadMoment {
            input: text.to_owned(),
        })
}

fn parse_date(text: &str) -> Result<NaiveDate, CalendarError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| CalendarError::BadDate {
        input: text.to_owned(),
    })
}

fn provisional_note(years: &[i32]) -> String {
    let list = years
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(" (provisional: calendar for {list} not loaded)")
}

/// `hotline calendar deadline --from MOMENT --working-days N`: the deadline, e.g.
/// `2025-10-09T24:00+08:00`, followed by ` (provisional: calendar for 2027 not loaded)`
/// when it rests on a year without data.
///
/// Largest `--working-days` accepted (about ten years).
pub const MAX_WORKING_DAYS: u32 = 2500;

/// # Errors
/// [`CalendarError::BadMoment`] when `from` is not an RFC 3339 moment,
/// [`CalendarError::WorkingDaysOutOfRange`] above [`MAX_WORKING_DAYS`].
pub fn deadline_command(
    cal: &Calendar,
    from: &str,
    working_days: u32,
) -> Result<String, CalendarError> {
    if working_days > MAX_WORKING_DAYS {
        return Err(CalendarError::WorkingDaysOutOfRange {
            given: working_days,
            max: MAX_WORKING_DAYS,
        });
    }
    let received_at = parse_moment(from)?;
    let deadline = cal.add_working_days(received_at, working_days);
    let mut out = deadline.display().to_string();
    if deadline.provisional {
        let first_counted = received_at
            .with_timezone(&super::shanghai())
            .date_naive()
            .succ_opt()
            .unwrap_or(NaiveDate::MAX);
        let last_counted = deadline
            .at
            .with_timezone(&super::shanghai())
            .date_naive()
            .pred_opt()
            .unwrap_or(NaiveDate::MIN);
        out.push_str(&provisional_note(&cal.missing_years_between(
            first_counted,
            last_counted.max(first_counted),
        )));
    }
    Ok(out)
}

/// `hotline calendar is-working-day DATE`: e.g.
/// `2026-02-14 Sat: working day (调休 make-up working day)`.
///
/// # Errors
/// [`CalendarError::BadDate`] when `date` is not `YYYY-MM-DD`.
pub fn is_working_day_command(cal: &Calendar, date: &str) -> Result<String, CalendarError> {
    let date = parse_date(date)?;
    let kind = cal.day_kind(date);
    let verdict = if kind.is_working() {
        "working day"
    } else {
        "not a working day"
    };
    let why = match kind {
        DayKind::Weekday => "weekday".to_owned(),
        DayKind::Weekend => "weekend".to_owned(),
        DayKind::Holiday => "public holiday".to_owned(),
        DayKind::AdjustedWorkday => "调休 make-up working day".to_owned(),
        DayKind::AssumedWeekday | DayKind::AssumedWeekend => {
            let assumed = if kind == DayKind::AssumedWeekday {
                "weekday"
            } else {
                "weekend"
            };
            format!("{assumed}{}", provisional_note(&[date.year()]))
        }
    };
    Ok(format!(
        "{} {:?}: {verdict} ({why})",
        date.format("%Y-%m-%d"),
        date.weekday()
    ))
}

/// Errors of [`add_year`].
#[derive(Debug, thiserror::Error)]
pub enum AddYearError {
    /// The year is outside what the calendar handles.
    #[error("year {0} is out of range (2000..=2100)")]
    YearOutOfRange(i32),
    /// The calendar file already has the year.
    #[error("year {0} is already in the calendar file; edit its [years.{0}] table instead")]
    AlreadyLoaded(i32),
    /// A `--holidays` / `--workdays` entry is neither a date nor a `FROM..TO` range.
    #[error("{list}: {entry:?} is neither a YYYY-MM-DD date nor a range YYYY-MM-DD..YYYY-MM-DD")]
    BadEntry {
        /// Which list.
        list: &'static str,
        /// The entry.
        entry: String,
    },
    /// The snippet given with `--from` is not TOML, or lacks `[years.YEAR]`.
    #[error("snippet: {0}")]
    Snippet(String),
    /// No holidays given.
    #[error("no holidays given: every State Council notice has at least New Year's Day")]
    NoHolidays,
    /// 1 January missing from the holidays (New Year's Day is a statutory holiday).
    #[error("{0}-01-01 (New Year's Day) is missing from the holidays")]
    NewYearMissing(i32),
    /// Only weekend days listed as holidays.
    #[error("every holiday given falls on a Saturday or Sunday: check the notice's dates")]
    OnlyWeekendHolidays,
    /// The dates break a rule of [`Calendar::validate`] (date outside the year, a
    /// holiday that is also a make-up working day, a make-up working day on a weekday).
    #[error("{}", super::describe_problems(.0))]
    Invalid(Vec<super::CalendarProblem>),
}

/// Dates of one year as a State Council notice gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YearDates {
    /// Every date off (放假), weekends inside a holiday period included.
    pub holidays: Vec<NaiveDate>,
    /// Saturdays / Sundays worked (调休上班).
    pub workdays: Vec<NaiveDate>,
    /// The notice's address, if given.
    pub notice: Option<String>,
}

/// Parses `--holidays` / `--workdays` text: dates and `FROM..TO` ranges (both
/// included), separated by commas or white space.
///
/// # Errors
/// [`AddYearError::BadEntry`] for an entry that is neither.
pub fn parse_date_list(list: &'static str, text: &str) -> Result<Vec<NaiveDate>, AddYearError> {
    let mut out = Vec::new();
    for entry in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
    {
        let bad = || AddYearError::BadEntry {
            list,
            entry: entry.to_owned(),
        };
        if let Some((from, to)) = entry.split_once("..") {
            let from = parse_date(from).map_err(|_| bad())?;
            let to = parse_date(to).map_err(|_| bad())?;
            if to < from || (to - from).num_days() > 366 {
                return Err(bad());
            }
            out.extend(from.iter_days().take_while(|d| *d <= to));
        } else {
            out.push(parse_date(entry).map_err(|_| bad())?);
        }
    }
    Ok(out)
}

/// Reads a TOML snippet holding `[years.YEAR]` with `holidays`, `workdays` (and
/// optionally `notice`), as in the calendar file; ranges `FROM..TO` are accepted in
/// the lists.
///
/// # Errors
/// [`AddYearError::Snippet`] when it is not TOML or has no table for `year`,
/// [`AddYearError::BadEntry`] for an entry that is not a date.
pub fn parse_year_snippet(year: i32, text: &str) -> Result<YearDates, AddYearError> {
    #[derive(serde::Deserialize)]
    struct Snippet {
        #[serde(default)]
        years: std::collections::BTreeMap<String, Table>,
    }
    #[derive(serde::Deserialize)]
    struct Table {
        #[serde(default)]
        holidays: Vec<String>,
        #[serde(default)]
        workdays: Vec<String>,
        #[serde(default)]
        notice: Vec<String>,
    }
    let snippet: Snippet =
        toml::from_str(text).map_err(|e| AddYearError::Snippet(e.message().to_owned()))?;
    let table = snippet
        .years
        .get(&year.to_string())
        .ok_or_else(|| AddYearError::Snippet(format!("no [years.{year}] table")))?;
    Ok(YearDates {
        holidays: parse_date_list("holidays", &table.holidays.join(","))?,
        workdays: parse_date_list("workdays", &table.workdays.join(","))?,
        notice: table.notice.first().cloned(),
    })
}

/// `hotline calendar add-year YEAR …`: validates the year's dates and returns the
/// calendar file's text with a `[years.YEAR]` table appended (the rest of the file,
/// comments included, unchanged). Checked: the year is not in the file yet; every
/// date lies in the year; no date is both a holiday and a make-up working day;
/// make-up working days are Saturdays or Sundays; the holidays include 1 January and
/// at least one weekday; and the whole file still validates.
///
/// # Errors
/// An [`AddYearError`] naming the first rule broken (all problems for
/// [`AddYearError::Invalid`]).
pub fn add_year(file_text: &str, year: i32, dates: &YearDates) -> Result<String, AddYearError> {
    if !(2000..=2100).contains(&year) {
        return Err(AddYearError::YearOutOfRange(year));
    }
    let existing = Calendar::validate(file_text);
    if let Ok(cal) = Calendar::from_toml_str(file_text) {
        if cal.loaded_years().contains(&year) {
            return Err(AddYearError::AlreadyLoaded(year));
        }
    } else {
        return Err(AddYearError::Invalid(existing));
    }
    let mut holidays = dates.holidays.clone();
    holidays.sort_unstable();
    holidays.dedup();
    let mut workdays = dates.workdays.clone();
    workdays.sort_unstable();
    workdays.dedup();
    if holidays.is_empty() {
        return Err(AddYearError::NoHolidays);
    }
    let quoted = |dates: &[NaiveDate]| {
        dates
            .iter()
            .map(|d| format!("\"{}\"", d.format("%Y-%m-%d")))
            .collect::<Vec<_>>()
    };
    let mut table = format!("\n[years.{year}]\n");
    if let Some(notice) = &dates.notice {
        table.push_str(&format!("notice = [{}]\n", toml_string(notice)));
    }
    table.push_str("note = \"Added with `hotline calendar add-year`.\"\n");
    table.push_str("holidays = [\n");
    for chunk in quoted(&holidays).chunks(8) {
        table.push_str(&format!("  {},\n", chunk.join(", ")));
    }
    table.push_str("]\n");
    table.push_str(&format!("workdays = [{}]\n", quoted(&workdays).join(", ")));
    // Problems of the new table alone (date in another year, overlap, weekday workday).
    let problems: Vec<_> = Calendar::validate(&table)
        .into_iter()
        .filter(|p| p.severity == super::Severity::Error)
        .collect();
    if !problems.is_empty() {
        return Err(AddYearError::Invalid(problems));
    }
    let new_year = NaiveDate::from_ymd_opt(year, 1, 1).ok_or(AddYearError::YearOutOfRange(year))?;
    if !holidays.contains(&new_year) {
        return Err(AddYearError::NewYearMissing(year));
    }
    if holidays
        .iter()
        .all(|d| matches!(d.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun))
    {
        return Err(AddYearError::OnlyWeekendHolidays);
    }
    let mut out = file_text.to_owned();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&table);
    // The whole file must still load.
    Calendar::from_toml_str(&out).map_err(|e| match e {
        CalendarError::Invalid(problems) => AddYearError::Invalid(problems),
        other => AddYearError::Snippet(other.to_string()),
    })?;
    Ok(out)
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
