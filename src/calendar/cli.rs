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
/// # Errors
/// [`CalendarError::BadMoment`] when `from` is not an RFC 3339 moment.
pub fn deadline_command(
    cal: &Calendar,
    from: &str,
    working_days: u32,
) -> Result<String, CalendarError> {
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
