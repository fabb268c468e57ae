//! An institution's service hours and the appointment slots they give: periods of the
//! day (`09:00-12:00,13:30-17:30`) on the calendar's working days (调休 weekend
//! workdays included, holidays excluded), cut into slots of [`SLOT_MINUTES`].

use std::fmt;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use serde::Serialize;

use crate::calendar::{Calendar, shanghai};

/// Length of one appointment slot.
pub const SLOT_MINUTES: i64 = 30;
/// Furthest day ahead a slot may be booked.
pub const MAX_DAYS_AHEAD: i64 = 30;
/// Most periods in a day.
pub const MAX_PERIODS: usize = 6;

/// Working-day service hours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceHours {
    periods: Vec<(NaiveTime, NaiveTime)>,
}

/// Why service hours could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error("a period is written HH:MM-HH:MM: {0:?}")]
    Syntax(String),
    #[error("a period must end after it starts: {0:?}")]
    Empty(String),
    #[error("periods must be in order and not overlap")]
    Overlap,
    #[error("at most {MAX_PERIODS} periods")]
    TooMany,
}

fn hm(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M").ok()
}

impl ServiceHours {
    /// Reads `09:00-12:00,13:30-17:30` (empty: none published). `，` and `、` separate
    /// periods too; `–`, `—` and `至` join their ends.
    ///
    /// # Errors
    /// [`HoursError`].
    pub fn parse(text: &str) -> Result<Self, HoursError> {
        let mut periods = Vec::new();
        for part in text
            .split([',', '，', '、', ';', '；'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (a, b) = part
                .split_once(['-', '–', '—', '至'])
                .ok_or_else(|| HoursError::Syntax(part.to_owned()))?;
            let (start, end) = match (hm(a), hm(b)) {
                (Some(s), Some(e)) => (s, e),
                _ => return Err(HoursError::Syntax(part.to_owned())),
            };
            if end <= start {
                return Err(HoursError::Empty(part.to_owned()));
            }
            if periods
                .last()
                .is_some_and(|&(_, last_end)| start < last_end)
            {
                return Err(HoursError::Overlap);
            }
            periods.push((start, end));
        }
        if periods.len() > MAX_PERIODS {
            return Err(HoursError::TooMany);
        }
        Ok(Self { periods })
    }

    /// No hours published.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.periods.is_empty()
    }

    /// The slots of `date`: none on a day off.
    #[must_use]
    pub fn slots_of_day(&self, calendar: &Calendar, date: NaiveDate) -> Vec<Slot> {
        if !calendar.is_working_day(date).working {
            return Vec::new();
        }
        let zone = shanghai();
        let step = Duration::minutes(SLOT_MINUTES);
        let mut out = Vec::new();
        for &(start, end) in &self.periods {
            let Some(mut at) = zone.from_local_datetime(&date.and_time(start)).single() else {
                continue;
            };
            let Some(stop) = zone.from_local_datetime(&date.and_time(end)).single() else {
                continue;
            };
            while at + step <= stop {
                out.push(Slot {
                    start: at,
                    end: at + step,
                });
                at += step;
            }
        }
        out
    }

    /// Slots starting after `now`, on `days` days from `from` (at most
    /// [`MAX_DAYS_AHEAD`] days after today).
    #[must_use]
    pub fn slots(
        &self,
        calendar: &Calendar,
        now: DateTime<FixedOffset>,
        from: NaiveDate,
        days: i64,
    ) -> Vec<Slot> {
        let today = now.with_timezone(&shanghai()).date_naive();
        let last = today + Duration::days(MAX_DAYS_AHEAD);
        let mut out = Vec::new();
        let mut date = from.max(today);
        let end = from + Duration::days(days.clamp(0, MAX_DAYS_AHEAD + 1));
        while date < end && date <= last {
            out.extend(
                self.slots_of_day(calendar, date)
                    .into_iter()
                    .filter(|s| s.start > now),
            );
            date += Duration::days(1);
        }
        out
    }

    /// Whether `start` begins one of the slots of its day, after `now` and within
    /// [`MAX_DAYS_AHEAD`] days.
    #[must_use]
    pub fn offers(
        &self,
        calendar: &Calendar,
        now: DateTime<FixedOffset>,
        start: DateTime<FixedOffset>,
    ) -> Option<Slot> {
        if start <= now {
            return None;
        }
        let date = start.with_timezone(&shanghai()).date_naive();
        let today = now.with_timezone(&shanghai()).date_naive();
        if date > today + Duration::days(MAX_DAYS_AHEAD) {
            return None;
        }
        self.slots_of_day(calendar, date)
            .into_iter()
            .find(|s| s.start == start)
    }
}

impl fmt::Display for ServiceHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (start, end)) in self.periods.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}-{}", start.format("%H:%M"), end.format("%H:%M"))?;
        }
        Ok(())
    }
}

/// One appointment slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Slot {
    #[schema(value_type = String, format = DateTime)]
    pub start: DateTime<FixedOffset>,
    #[schema(value_type = String, format = DateTime)]
    pub end: DateTime<FixedOffset>,
}
