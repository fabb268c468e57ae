//! Duty rosters (值班表) and the sign-in rate (`CALL-QUEUE`, `AS-METRICS`).
//!
//! A shift belongs to the local date it starts on: the entry's date range and day rule
//! are checked against that date, so a 22:00–06:00 shift on a working day runs into
//! the next morning whatever that day is.

use chrono::{Datelike, NaiveDate, TimeDelta};
use serde::{Deserialize, Serialize};

use super::config::RosterEntry;
use super::types::{AgentId, Time};
use crate::calendar::{Calendar, shanghai};
use crate::ivr::hours::Days;

/// One concrete shift `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shift {
    /// Start.
    pub start: Time,
    /// End (exclusive).
    pub end: Time,
}

fn local_instant(date: NaiveDate, time: chrono::NaiveTime) -> Option<Time> {
    date.and_time(time).and_local_timezone(shanghai()).single()
}

impl RosterEntry {
    /// Whether the entry has a shift starting on `date`.
    #[must_use]
    pub fn applies_on(&self, date: NaiveDate, calendar: &Calendar) -> bool {
        if date < self.from || date > self.until {
            return false;
        }
        match &self.days {
            Days::WorkingDays => calendar.is_working_day(date).working,
            Days::Weekdays(days) => days.contains(&date.weekday()),
        }
    }

    /// The shift starting on `date`, if the entry applies that day.
    #[must_use]
    pub fn shift_on(&self, date: NaiveDate, calendar: &Calendar) -> Option<Shift> {
        if !self.applies_on(date, calendar) {
            return None;
        }
        let start = local_instant(date, self.start.0)?;
        let end_date = if self.end.0 <= self.start.0 {
            date.succ_opt()?
        } else {
            date
        };
        let end = local_instant(end_date, self.end.0)?;
        Some(Shift { start, end })
    }
}

/// Whether `agent` is on duty at `now` according to `roster`.
#[must_use]
pub fn on_duty(roster: &[RosterEntry], agent: &AgentId, now: Time, calendar: &Calendar) -> bool {
    let today = now.with_timezone(&shanghai()).date_naive();
    let days = [today.pred_opt(), Some(today)];
    roster
        .iter()
        .filter(|entry| &entry.agent == agent)
        .any(|entry| {
            days.iter().flatten().any(|date| {
                entry
                    .shift_on(*date, calendar)
                    .is_some_and(|shift| shift.start <= now && now < shift.end)
            })
        })
}

/// Shifts of `entry` that start in `(after, up_to]`.
#[must_use]
pub fn shift_starts_between(
    entry: &RosterEntry,
    calendar: &Calendar,
    after: Time,
    up_to: Time,
) -> Vec<Shift> {
    let mut out = Vec::new();
    let Some(mut date) = after.with_timezone(&shanghai()).date_naive().pred_opt() else {
        return out;
    };
    let last = up_to.with_timezone(&shanghai()).date_naive();
    while date <= last {
        if let Some(shift) = entry.shift_on(date, calendar) {
            if shift.start > after && shift.start <= up_to {
                out.push(shift);
            }
        }
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
    out
}

/// How far ahead [`next_shift_start`] looks (the longest holiday is 8 days).
const LOOKAHEAD_DAYS: i64 = 40;

/// The first shift start of any entry strictly after `after`, within 40 days.
#[must_use]
pub fn next_shift_start(roster: &[RosterEntry], calendar: &Calendar, after: Time) -> Option<Time> {
    let horizon = after + TimeDelta::days(LOOKAHEAD_DAYS);
    roster
        .iter()
        .filter_map(|entry| {
            shift_starts_between(entry, calendar, after, horizon)
                .first()
                .map(|shift| shift.start)
        })
        .min()
}

/// The agent's scheduled shifts overlapping `[from, to)`, clipped, merged when they
/// overlap (two entries covering the same hours count once).
#[must_use]
pub fn duty_intervals(
    roster: &[RosterEntry],
    agent: &AgentId,
    calendar: &Calendar,
    from: Time,
    to: Time,
) -> Vec<(Time, Time)> {
    let mut spans = Vec::new();
    let Some(mut date) = from.with_timezone(&shanghai()).date_naive().pred_opt() else {
        return spans;
    };
    let last = to.with_timezone(&shanghai()).date_naive();
    while date <= last {
        for entry in roster.iter().filter(|entry| &entry.agent == agent) {
            if let Some(shift) = entry.shift_on(date, calendar) {
                let start = shift.start.max(from);
                let end = shift.end.min(to);
                if start < end {
                    spans.push((start, end));
                }
            }
        }
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
    merge(spans)
}

fn merge(mut spans: Vec<(Time, Time)>) -> Vec<(Time, Time)> {
    spans.sort();
    let mut out: Vec<(Time, Time)> = Vec::new();
    for (start, end) in spans {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

fn overlap(a: &[(Time, Time)], b: &[(Time, Time)]) -> TimeDelta {
    let mut total = TimeDelta::zero();
    for (a_start, a_end) in a {
        for (b_start, b_end) in b {
            let start = (*a_start).max(*b_start);
            let end = (*a_end).min(*b_end);
            if start < end {
                total += end - start;
            }
        }
    }
    total
}

/// Sign-in rate of one agent over a period (`AS-METRICS`, W-19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInRate {
    /// Scheduled duty time in the period, seconds.
    pub scheduled_secs: i64,
    /// Duty time the agent was signed in and registered, seconds.
    pub present_secs: i64,
}

impl SignInRate {
    /// `present / scheduled` in `[0, 1]`; `None` when nothing was scheduled.
    #[must_use]
    pub fn rate(&self) -> Option<f64> {
        if self.scheduled_secs <= 0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = self.present_secs as f64 / self.scheduled_secs as f64;
        Some(rate.clamp(0.0, 1.0))
    }
}

/// Signed-in duty time / scheduled duty time for `agent` over `[from, to)`, where
/// `present` are the intervals the agent was signed in with a live registration (from
/// the `queue_log` sign-in/out and offline/online rows, or [`super::Acd::presence`]).
#[must_use]
pub fn sign_in_rate(
    roster: &[RosterEntry],
    calendar: &Calendar,
    agent: &AgentId,
    present: &[(Time, Time)],
    from: Time,
    to: Time,
) -> SignInRate {
    let duty = duty_intervals(roster, agent, calendar, from, to);
    let present = merge(present.to_vec());
    let scheduled = duty
        .iter()
        .fold(TimeDelta::zero(), |sum, (start, end)| sum + (*end - *start));
    SignInRate {
        scheduled_secs: scheduled.num_seconds(),
        present_secs: overlap(&duty, &present).num_seconds(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Weekday};

    use super::*;
    use crate::ivr::hours::ClockTime;

    fn at(text: &str) -> Time {
        DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn calendar() -> Calendar {
        Calendar::from_toml_str(include_str!("../../config/calendar/cn-workdays.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn entry(days: Days, start: (u32, u32), end: (u32, u32)) -> RosterEntry {
        let clock = |(h, m): (u32, u32)| ClockTime::hm(h, m).unwrap_or_else(|| panic!("{h}:{m}"));
        RosterEntry {
            agent: AgentId::new("a"),
            from: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default(),
            until: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap_or_default(),
            days,
            start: clock(start),
            end: clock(end),
        }
    }

    #[test]
    fn working_day_shift_follows_the_calendar_including_make_up_saturdays() {
        let roster = [entry(Days::WorkingDays, (8, 30), (17, 30))];
        let cal = calendar();
        let a = AgentId::new("a");
        // 2025-10-01 is National Day (Wednesday): off.
        assert!(!on_duty(&roster, &a, at("2025-10-01T10:00:00+08:00"), &cal));
        // 2025-09-28 is a make-up Sunday: on.
        assert!(on_duty(&roster, &a, at("2025-09-28T10:00:00+08:00"), &cal));
        // Ordinary Thursday, before and after the shift.
        assert!(on_duty(&roster, &a, at("2025-10-09T08:30:00+08:00"), &cal));
        assert!(!on_duty(&roster, &a, at("2025-10-09T08:29:59+08:00"), &cal));
        assert!(!on_duty(&roster, &a, at("2025-10-09T17:30:00+08:00"), &cal));
        // Another agent is never on this roster.
        assert!(!on_duty(
            &roster,
            &AgentId::new("b"),
            at("2025-10-09T10:00:00+08:00"),
            &cal
        ));
    }

    #[test]
    fn overnight_shift_runs_into_the_next_day() {
        let roster = [entry(Days::Weekdays(vec![Weekday::Fri]), (22, 0), (6, 0))];
        let cal = calendar();
        let a = AgentId::new("a");
        // Friday 2025-10-10 22:00 → Saturday 06:00.
        assert!(on_duty(&roster, &a, at("2025-10-11T05:59:00+08:00"), &cal));
        assert!(!on_duty(&roster, &a, at("2025-10-11T06:00:00+08:00"), &cal));
        assert!(!on_duty(&roster, &a, at("2025-10-10T21:59:00+08:00"), &cal));
    }

    #[test]
    fn next_shift_start_skips_the_national_day_holiday() {
        let roster = [entry(Days::WorkingDays, (8, 30), (17, 30))];
        let next = next_shift_start(&roster, &calendar(), at("2025-09-30T12:00:00+08:00"));
        assert_eq!(next, Some(at("2025-10-09T08:30:00+08:00")));
    }

    #[test]
    fn sign_in_rate_counts_only_present_duty_time() {
        let roster = [entry(Days::WorkingDays, (9, 0), (17, 0))];
        let cal = calendar();
        // Signed in 08:00–13:00 (4 h of it on duty) on Thursday 2025-10-09.
        let present = [(
            at("2025-10-09T08:00:00+08:00"),
            at("2025-10-09T13:00:00+08:00"),
        )];
        let rate = sign_in_rate(
            &roster,
            &cal,
            &AgentId::new("a"),
            &present,
            at("2025-10-09T00:00:00+08:00"),
            at("2025-10-10T00:00:00+08:00"),
        );
        assert_eq!(rate.scheduled_secs, 8 * 3600);
        assert_eq!(rate.present_secs, 4 * 3600);
        assert_eq!(rate.rate(), Some(0.5));
    }
}
