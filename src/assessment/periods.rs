//! The periods of published reports (W-19 monthly rankings, H-15 quarterly and yearly
//! assessment, W-20 yearly): a report for a period is made once, after the period has
//! ended by the server's clock (Asia/Shanghai calendar days).
//!
//! Which periods are due at `today`: for each kind, the last period that has ended
//! (the previous month, quarter and year). Earlier periods are not back-filled: a
//! server started for the first time publishes only the latest of each kind.

use chrono::{Datelike, Months, NaiveDate};
use serde::Serialize;

/// The length of a published report's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Month,
    Quarter,
    Year,
}

impl ReportKind {
    /// `month`, `quarter` or `year`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Month => "month",
            ReportKind::Quarter => "quarter",
            ReportKind::Year => "year",
        }
    }

    /// 月度 / 季度 / 年度.
    #[must_use]
    pub fn chinese(self) -> &'static str {
        match self {
            ReportKind::Month => "月度",
            ReportKind::Quarter => "季度",
            ReportKind::Year => "年度",
        }
    }

    fn months(self) -> u32 {
        match self {
            ReportKind::Month => 1,
            ReportKind::Quarter => 3,
            ReportKind::Year => 12,
        }
    }

    /// Every kind, shortest first.
    pub const ALL: [ReportKind; 3] = [ReportKind::Month, ReportKind::Quarter, ReportKind::Year];
}

/// One report period: `[start, end)` in local calendar days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReportPeriod {
    pub kind: ReportKind,
    pub start: NaiveDate,
    /// The day after the last.
    pub end: NaiveDate,
}

impl ReportPeriod {
    /// The period of `kind` holding `day`.
    #[must_use]
    pub fn holding(kind: ReportKind, day: NaiveDate) -> Option<ReportPeriod> {
        let first_month = match kind {
            ReportKind::Month => day.month(),
            ReportKind::Quarter => (day.month() - 1) / 3 * 3 + 1,
            ReportKind::Year => 1,
        };
        let start = NaiveDate::from_ymd_opt(day.year(), first_month, 1)?;
        let end = start.checked_add_months(Months::new(kind.months()))?;
        Some(ReportPeriod { kind, start, end })
    }

    /// The period before this one.
    #[must_use]
    pub fn previous(self) -> Option<ReportPeriod> {
        let start = self
            .start
            .checked_sub_months(Months::new(self.kind.months()))?;
        ReportPeriod::holding(self.kind, start)
    }

    /// `2026-11`, `2026-Q4` or `2026`: the same text the rankings and statistics
    /// take as `period`, and the report's id.
    #[must_use]
    pub fn label(self) -> String {
        match self.kind {
            ReportKind::Month => format!("{}-{:02}", self.start.year(), self.start.month()),
            ReportKind::Quarter => {
                format!(
                    "{}-Q{}",
                    self.start.year(),
                    (self.start.month() - 1) / 3 + 1
                )
            }
            ReportKind::Year => format!("{}", self.start.year()),
        }
    }

    /// `2026年11月`, `2026年第4季度`, `2026年`.
    #[must_use]
    pub fn chinese(self) -> String {
        match self.kind {
            ReportKind::Month => format!("{}年{}月", self.start.year(), self.start.month()),
            ReportKind::Quarter => format!(
                "{}年第{}季度",
                self.start.year(),
                (self.start.month() - 1) / 3 + 1
            ),
            ReportKind::Year => format!("{}年", self.start.year()),
        }
    }

    /// Parses a label ([`ReportPeriod::label`]); `None` for anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<ReportPeriod> {
        let (kind, year, month) = if let Some((y, q)) = text.split_once("-Q") {
            let q: u32 = q.parse().ok().filter(|q| (1..=4).contains(q))?;
            (ReportKind::Quarter, y, (q - 1) * 3 + 1)
        } else if let Some((y, m)) = text.split_once('-') {
            let m: u32 = m.parse().ok().filter(|m| (1..=12).contains(m))?;
            (ReportKind::Month, y, m)
        } else {
            (ReportKind::Year, text, 1)
        };
        if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: i32 = year.parse().ok().filter(|y| (2000..=2200).contains(y))?;
        let p = ReportPeriod::holding(kind, NaiveDate::from_ymd_opt(year, month, 1)?)?;
        (p.label() == text).then_some(p)
    }
}

/// The reports due at `today` that are not among `done` (labels): the last ended
/// month, quarter and year.
#[must_use]
pub fn due(today: NaiveDate, done: &[String]) -> Vec<ReportPeriod> {
    ReportKind::ALL
        .iter()
        .filter_map(|kind| ReportPeriod::holding(*kind, today)?.previous())
        .filter(|p| !done.iter().any(|d| *d == p.label()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn the_last_ended_month_quarter_and_year_are_due() {
        let labels: Vec<String> = due(day("2026-12-07"), &[])
            .iter()
            .map(|p| p.label())
            .collect();
        assert_eq!(labels, ["2026-11", "2026-Q3", "2025"]);
        // The first day of a month: the month just ended is due, never the running one.
        let labels: Vec<String> = due(day("2027-01-01"), &[])
            .iter()
            .map(|p| p.label())
            .collect();
        assert_eq!(labels, ["2026-12", "2026-Q4", "2026"]);
    }

    #[test]
    fn a_report_made_once_is_not_due_again() {
        let done = vec!["2026-11".to_owned(), "2025".to_owned()];
        let labels: Vec<String> = due(day("2026-12-31"), &done)
            .iter()
            .map(|p| p.label())
            .collect();
        assert_eq!(labels, ["2026-Q3"]);
    }

    #[test]
    fn labels_parse_back_and_nothing_else_does() {
        for text in ["2026-11", "2026-Q4", "2026", "2027-01"] {
            assert_eq!(
                ReportPeriod::parse(text).map(|p| p.label()),
                Some(text.to_owned())
            );
        }
        for text in ["2026-13", "2026-Q5", "2026-1", "26", "../x", "2026-Q", ""] {
            assert_eq!(ReportPeriod::parse(text), None, "{text}");
        }
        let q = ReportPeriod::parse("2026-Q4").expect("quarter");
        assert_eq!((q.start, q.end), (day("2026-10-01"), day("2027-01-01")));
        assert_eq!(q.chinese(), "2026年第4季度");
    }
}
