//! Sign-in rate by duty shift (`AS-METRICS`, W-19 签到率), for the rankings.
//!
//! **Definition.** A *scheduled shift* is a roster shift (值班表, `[[queues.roster]]`)
//! of one agent that starts in the period and whose check moment — shift start +
//! `[queues] absent_grace_secs`, the moment the ACD reports an absent agent — has
//! passed. It is *signed in on time* when, at the check moment, the agent's latest
//! `sign_in` / `sign_out` row in `queue_log` at or before it is a `sign_in`, and the
//! ACD logged no `absent` row for that shift. Two roster entries giving one agent the
//! same shift start count once. The sign-in rate of a unit = shifts signed in on time
//! / shifts scheduled, over the agents of the unit (an agent belongs to the unit of
//! its `[[queues.agent]] city`); with no scheduled shift there is no rate (`None`),
//! never 100 %.
//!
//! Pure: rows and roster in, counts out.

use chrono::{NaiveDate, TimeDelta};
use serde::{Deserialize, Serialize};

use super::config::RosterEntry;
use super::stats::{QueueLogEntry, QueueLogEvent};
use super::types::{AgentId, Time};
use crate::calendar::{Calendar, shanghai};

/// Shifts scheduled and signed in on time, for one agent or summed over a unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShiftAttendance {
    /// Duty shifts scheduled (and already due for the check).
    pub scheduled: u32,
    /// Of which the agent was signed in at the check moment.
    pub signed_in: u32,
}

impl ShiftAttendance {
    /// `signed_in / scheduled` in per mille; `None` when nothing was scheduled.
    #[must_use]
    pub fn per_mille(self) -> Option<u32> {
        (self.scheduled > 0).then(|| {
            let scaled = u64::from(self.signed_in) * 1000 / u64::from(self.scheduled);
            u32::try_from(scaled).unwrap_or(u32::MAX)
        })
    }

    /// Both counts added.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            scheduled: self.scheduled.saturating_add(other.scheduled),
            signed_in: self.signed_in.saturating_add(other.signed_in),
        }
    }
}

/// The agent's shift starts in `[from, to)` whose check moment (`start + grace`) is at
/// or before `now`, sorted, each once.
#[must_use]
pub fn scheduled_shift_starts(
    roster: &[RosterEntry],
    calendar: &Calendar,
    agent: &AgentId,
    from: Time,
    to: Time,
    now: Time,
    grace: TimeDelta,
) -> Vec<Time> {
    let mut starts = Vec::new();
    let first = from.with_timezone(&shanghai()).date_naive();
    let last = to.with_timezone(&shanghai()).date_naive();
    let mut date: NaiveDate = first;
    while date <= last {
        for entry in roster.iter().filter(|e| &e.agent == agent) {
            if let Some(shift) = entry.shift_on(date, calendar) {
                if shift.start >= from && shift.start < to && shift.start + grace <= now {
                    starts.push(shift.start);
                }
            }
        }
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
    starts.sort();
    starts.dedup();
    starts
}

/// Shifts of `agent` scheduled over `[from, to)` (as of `now`) and how many were signed
/// in on time, from the agent's `queue_log` rows (any order; rows of other agents are
/// ignored). See the module docs for the definition.
#[must_use]
#[allow(clippy::too_many_arguments)]
pub fn shift_attendance(
    roster: &[RosterEntry],
    calendar: &Calendar,
    agent: &AgentId,
    log: &[QueueLogEntry],
    from: Time,
    to: Time,
    now: Time,
    grace: TimeDelta,
) -> ShiftAttendance {
    let mut rows: Vec<&QueueLogEntry> = log
        .iter()
        .filter(|e| e.agent.as_ref() == Some(agent))
        .collect();
    rows.sort_by_key(|e| e.at);
    let starts = scheduled_shift_starts(roster, calendar, agent, from, to, now, grace);
    let mut signed_in = 0_u32;
    // Sweep: shift starts and rows both in time order.
    let mut state = false;
    let mut next_row = 0;
    for start in &starts {
        let check = *start + grace;
        while let Some(row) = rows.get(next_row).filter(|r| r.at <= check) {
            match row.event {
                QueueLogEvent::SignIn => state = true,
                QueueLogEvent::SignOut => state = false,
                _ => {}
            }
            next_row += 1;
        }
        let absent = rows.iter().any(
            |r| matches!(r.event, QueueLogEvent::Absent { shift_start } if shift_start == *start),
        );
        if state && !absent {
            signed_in += 1;
        }
    }
    ShiftAttendance {
        scheduled: u32::try_from(starts.len()).unwrap_or(u32::MAX),
        signed_in,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Weekday};

    use super::*;
    use crate::ivr::city::CityId;
    use crate::ivr::hours::{ClockTime, Days};

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

    fn row(text: &str, event: QueueLogEvent) -> QueueLogEntry {
        QueueLogEntry {
            at: at(text),
            queue: CityId::new("jinan"),
            call: None,
            agent: Some(AgentId::new("a")),
            event,
        }
    }

    const OCTOBER_2025: (&str, &str) = ("2025-10-01T00:00:00+08:00", "2025-11-01T00:00:00+08:00");

    #[test]
    fn working_day_shifts_of_october_2025_follow_the_holidays() {
        let roster = [entry(Days::WorkingDays, (8, 30), (17, 30))];
        let (from, to) = (at(OCTOBER_2025.0), at(OCTOBER_2025.1));
        let starts = scheduled_shift_starts(
            &roster,
            &calendar(),
            &AgentId::new("a"),
            from,
            to,
            to,
            TimeDelta::zero(),
        );
        // October 2025: 1-8 off (National Day + Mid-Autumn), Saturday the 11th worked:
        // 9, 10, 11, 13-17, 20-24, 27-31.
        assert_eq!(starts.first(), Some(&at("2025-10-09T08:30:00+08:00")));
        assert!(starts.contains(&at("2025-10-11T08:30:00+08:00")));
        assert_eq!(starts.len(), 18);
    }

    #[test]
    fn a_shift_counts_when_signed_in_at_start_plus_grace() {
        let roster = [entry(
            Days::Weekdays(vec![Weekday::Thu, Weekday::Fri]),
            (9, 0),
            (17, 0),
        )];
        let grace = TimeDelta::minutes(10);
        let log = [
            // Thursday 9th: signed in 08:55 → on time.
            row("2025-10-09T08:55:00+08:00", QueueLogEvent::SignIn),
            row("2025-10-09T17:05:00+08:00", QueueLogEvent::SignOut),
            // Friday 10th: signed in 09:08, within the grace → on time.
            row("2025-10-10T09:08:00+08:00", QueueLogEvent::SignIn),
            row("2025-10-10T17:00:00+08:00", QueueLogEvent::SignOut),
            // Thursday 16th: 09:30, too late.
            row("2025-10-16T09:30:00+08:00", QueueLogEvent::SignIn),
            // … and stays signed in over the night: Friday 17th counts, unless the ACD
            // said absent (it did not here).
        ];
        let (from, to) = (
            at("2025-10-09T00:00:00+08:00"),
            at("2025-10-18T00:00:00+08:00"),
        );
        let a = AgentId::new("a");
        let cal = calendar();
        let got = shift_attendance(&roster, &cal, &a, &log, from, to, to, grace);
        assert_eq!(
            got,
            ShiftAttendance {
                scheduled: 4,
                signed_in: 3
            }
        );
        assert_eq!(got.per_mille(), Some(750));
        // An `absent` row from the ACD for Friday 17th overrides the stale sign-in
        // (e.g. a restart lost it).
        let mut with_absent = log.to_vec();
        with_absent.push(row(
            "2025-10-17T09:10:00+08:00",
            QueueLogEvent::Absent {
                shift_start: at("2025-10-17T09:00:00+08:00"),
            },
        ));
        assert_eq!(
            shift_attendance(&roster, &cal, &a, &with_absent, from, to, to, grace).signed_in,
            2
        );
        // Shifts whose check moment is still ahead are not scheduled yet.
        let now = at("2025-10-10T09:05:00+08:00");
        let early = shift_attendance(&roster, &cal, &a, &log, from, to, now, grace);
        assert_eq!(early.scheduled, 1);
    }

    #[test]
    fn no_shift_no_rate() {
        let none = ShiftAttendance::default();
        assert_eq!(none.per_mille(), None);
        let roster = [entry(Days::WorkingDays, (9, 0), (17, 0))];
        // National Day week: no working day, no shift, no rate (not 100 %).
        let got = shift_attendance(
            &roster,
            &calendar(),
            &AgentId::new("a"),
            &[],
            at("2025-10-01T00:00:00+08:00"),
            at("2025-10-08T00:00:00+08:00"),
            at("2025-12-01T00:00:00+08:00"),
            TimeDelta::zero(),
        );
        assert_eq!(got, ShiftAttendance::default());
        assert_eq!(got.per_mille(), None);
    }
}
