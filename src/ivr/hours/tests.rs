use chrono::{DateTime, FixedOffset, NaiveDate, Weekday};

use super::*;
use crate::calendar::Calendar;

const SHIPPED: &str = include_str!("../../../config/calendar/cn-workdays.toml");

fn calendar() -> Calendar {
    match Calendar::from_toml_str(SHIPPED) {
        Ok(cal) => cal,
        Err(e) => panic!("shipped calendar must load: {e}"),
    }
}

fn at(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn hours_from(toml_text: &str) -> WorkingHours {
    match toml::from_str(toml_text) {
        Ok(h) => h,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn make_up_saturday_2026_02_14_is_open_at_10() {
    let status = WorkingHours::default().status(&calendar(), at("2026-02-14T10:00:00+08:00"));
    assert_eq!(
        status,
        OpenStatus {
            open: true,
            next_open: None,
            provisional: false
        }
    );
}

#[test]
fn spring_festival_sunday_2026_02_15_is_closed_until_the_24th() {
    // 02-15..02-23 is the Spring Festival holiday; 02-24 (Tuesday) is the next working day.
    let status = WorkingHours::default().status(&calendar(), at("2026-02-15T10:00:00+08:00"));
    assert!(!status.open);
    assert_eq!(status.next_open, Some(at("2026-02-24T09:00:00+08:00")));
}

#[test]
fn national_day_2025_is_closed_until_october_9() {
    let status = WorkingHours::default().status(&calendar(), at("2025-10-01T10:00:00+08:00"));
    assert!(!status.open);
    assert_eq!(status.next_open, Some(at("2025-10-09T09:00:00+08:00")));
    assert!(!status.provisional);
}

#[test]
fn evening_of_a_working_day_opens_next_working_day_at_9() {
    // Friday 2025-06-13 20:00 → Monday 06-16 09:00.
    let status = WorkingHours::default().status(&calendar(), at("2025-06-13T20:00:00+08:00"));
    assert!(!status.open);
    assert_eq!(status.next_open, Some(at("2025-06-16T09:00:00+08:00")));
    // Tuesday 20:00 → Wednesday 09:00.
    let status = WorkingHours::default().status(&calendar(), at("2025-06-10T20:00:00+08:00"));
    assert_eq!(status.next_open, Some(at("2025-06-11T09:00:00+08:00")));
}

#[test]
fn lunch_break_and_period_edges() {
    let hours = WorkingHours::default();
    let cal = calendar();
    let lunch = hours.status(&cal, at("2025-06-10T12:30:00+08:00"));
    assert!(!lunch.open);
    assert_eq!(lunch.next_open, Some(at("2025-06-10T13:30:00+08:00")));
    assert!(hours.status(&cal, at("2025-06-10T09:00:00+08:00")).open);
    assert!(hours.status(&cal, at("2025-06-10T17:29:59+08:00")).open);
    assert!(!hours.status(&cal, at("2025-06-10T17:30:00+08:00")).open);
    assert!(!hours.status(&cal, at("2025-06-10T08:59:59+08:00")).open);
}

#[test]
fn other_offsets_are_converted_to_shanghai_time() {
    // 02:00 UTC is 10:00 in Shanghai on the make-up Saturday.
    let status = WorkingHours::default().status(&calendar(), at("2026-02-14T02:00:00+00:00"));
    assert!(status.open);
}

#[test]
fn exceptions_close_an_ordinary_day_and_open_a_holiday() {
    let hours = hours_from(
        r#"
        periods = [{ start = "09:00", end = "12:00" }, { start = "13:30", end = "17:30" }]
        days = "working_days"
        exceptions = [
          { date = "2025-06-10", open = false },
          { date = "2025-10-02", open = true, periods = [{ start = "09:00", end = "11:00" }] },
          { date = "2025-10-03", open = true },
        ]
        "#,
    );
    assert_eq!(hours.validate(), Ok(()));
    let cal = calendar();
    let closed = hours.status(&cal, at("2025-06-10T10:00:00+08:00"));
    assert!(!closed.open);
    assert_eq!(closed.next_open, Some(at("2025-06-11T09:00:00+08:00")));
    assert!(hours.status(&cal, at("2025-10-02T10:00:00+08:00")).open);
    assert!(!hours.status(&cal, at("2025-10-02T11:30:00+08:00")).open);
    assert_eq!(
        hours
            .status(&cal, at("2025-10-02T11:30:00+08:00"))
            .next_open,
        Some(at("2025-10-03T09:00:00+08:00"))
    );
    assert!(hours.status(&cal, at("2025-10-03T15:00:00+08:00")).open);
    // National Day itself is still closed; the next opening is the exception day.
    assert_eq!(
        hours
            .status(&cal, at("2025-10-01T10:00:00+08:00"))
            .next_open,
        Some(at("2025-10-02T09:00:00+08:00"))
    );
}

#[test]
fn explicit_weekdays_ignore_holidays() {
    let hours = hours_from(
        r#"
        periods = [{ start = "08:30", end = "20:00" }]
        days = ["mon", "tue", "wed", "thu", "fri", "sat"]
        "#,
    );
    let cal = calendar();
    // National Day 2025-10-04 is a Saturday: open under explicit weekdays.
    assert!(hours.status(&cal, at("2025-10-04T19:00:00+08:00")).open);
    // Sunday closed, opens Monday 08:30.
    let sunday = hours.status(&cal, at("2025-10-05T10:00:00+08:00"));
    assert!(!sunday.open);
    assert_eq!(sunday.next_open, Some(at("2025-10-06T08:30:00+08:00")));
    // The 调休 Sunday 2025-09-28 is still closed.
    assert!(!hours.status(&cal, at("2025-09-28T10:00:00+08:00")).open);
    assert_eq!(hours.describe(), "每周一至周六上午8:30至晚上8:00");
}

#[test]
fn year_without_calendar_data_is_provisional() {
    let status = WorkingHours::default().status(&calendar(), at("2027-03-03T10:00:00+08:00"));
    assert!(status.open, "Wednesday assumed working");
    assert!(status.provisional);
    // The last evening of 2026 looks into 2027 for the next opening.
    let status = WorkingHours::default().status(&calendar(), at("2026-12-31T20:00:00+08:00"));
    assert!(!status.open);
    assert!(status.provisional);
    assert_eq!(status.next_open, Some(at("2027-01-01T09:00:00+08:00")));
}

#[test]
fn default_description_reads_like_the_published_hours() {
    assert_eq!(
        WorkingHours::default().describe(),
        "工作日上午9:00至12:00，下午1:30至5:30"
    );
}

#[test]
fn non_contiguous_weekdays_are_listed() {
    let hours = WorkingHours {
        days: Days::Weekdays(vec![Weekday::Mon, Weekday::Wed, Weekday::Fri]),
        ..WorkingHours::default()
    };
    assert_eq!(
        hours.describe(),
        "每周一、三、五上午9:00至12:00，下午1:30至5:30"
    );
}

#[test]
fn spoken_hours_use_shipped_word_prompts() {
    let ids: Vec<String> = crate::ivr::prompt::expand(&WorkingHours::default().spoken())
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(
        ids,
        [
            "word_working_days",
            "word_morning",
            "digit_9",
            "word_oclock",
            "word_to",
            "shi",
            "digit_2",
            "word_oclock",
            "word_afternoon",
            "digit_1",
            "word_oclock",
            "digit_3",
            "shi",
            "word_minute",
            "word_to",
            "digit_5",
            "word_oclock",
            "digit_3",
            "shi",
            "word_minute",
        ]
    );
}

#[test]
fn config_round_trips_and_rejects_bad_values() {
    let hours = WorkingHours::default();
    let text = match toml::to_string(&hours) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    assert!(text.contains("\"09:00\""), "{text}");
    assert_eq!(hours_from(&text), hours);
    assert!(
        toml::from_str::<WorkingHours>(r#"periods = [{ start = "9h", end = "12:00" }]"#).is_err()
    );
    assert!(
        toml::from_str::<WorkingHours>(
            r#"periods = []
days = "sometimes""#
        )
        .is_err()
    );
    assert!(
        toml::from_str::<WorkingHours>(
            r#"periods = []
days = ["funday"]"#
        )
        .is_err()
    );
    let backwards = hours_from(r#"periods = [{ start = "12:00", end = "09:00" }]"#);
    assert!(matches!(
        backwards.validate(),
        Err(HoursError::EmptyPeriod { .. })
    ));
    let overlapping = hours_from(
        r#"periods = [{ start = "09:00", end = "12:00" }, { start = "11:00", end = "13:00" }]"#,
    );
    assert!(matches!(
        overlapping.validate(),
        Err(HoursError::Overlap { .. })
    ));
    let twice = WorkingHours {
        exceptions: vec![
            HoursException {
                date: date("2025-06-10"),
                open: false,
                periods: None,
            },
            HoursException {
                date: date("2025-06-10"),
                open: true,
                periods: None,
            },
        ],
        ..WorkingHours::default()
    };
    assert!(matches!(
        twice.validate(),
        Err(HoursError::DuplicateException { .. })
    ));
}
