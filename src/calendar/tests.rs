use chrono::{DateTime, FixedOffset, NaiveDate};

use super::cli::{deadline_command, is_working_day_command};
use super::*;

const SHIPPED: &str = include_str!("../../config/calendar/cn-workdays.toml");

fn shipped() -> Calendar {
    match Calendar::from_toml_str(SHIPPED) {
        Ok(cal) => cal,
        Err(error) => panic!("shipped calendar must load: {error}"),
    }
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn moment(text: &str) -> DateTime<FixedOffset> {
    cli::parse_moment(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn shipped_calendar_is_valid_and_covers_2017_to_2026() {
    assert!(
        Calendar::validate(SHIPPED).is_empty(),
        "{:?}",
        Calendar::validate(SHIPPED)
    );
    assert_eq!(shipped().loaded_years(), (2017..=2026).collect::<Vec<_>>());
}

#[test]
fn shanghai_is_utc_plus_eight() {
    assert_eq!(shanghai().local_minus_utc(), 8 * 3600);
}

#[test]
fn national_day_2025_is_off_and_its_make_up_sundays_work() {
    let cal = shipped();
    for day in 1..=8 {
        let d = NaiveDate::from_ymd_opt(2025, 10, day).unwrap_or_else(|| panic!("{day}"));
        assert!(!cal.is_working_day(d).working, "2025-10-{day:02}");
    }
    assert!(cal.is_working_day(date("2025-09-28")).working);
    assert!(cal.is_working_day(date("2025-10-11")).working);
    assert!(cal.is_working_day(date("2025-10-09")).working);
    assert!(!cal.is_working_day(date("2025-10-12")).working);
    assert!(cal.is_working_day(date("2025-10-11")).known);
}

#[test]
fn saturday_2026_02_14_is_a_working_day() {
    let info = shipped().is_working_day(date("2026-02-14"));
    assert_eq!(
        info,
        DayInfo {
            working: true,
            known: true
        }
    );
}

#[test]
fn received_before_national_day_2025_one_working_day_is_october_9_at_24() {
    let deadline = shipped().add_working_days(moment("2025-09-30T16:00+08:00"), 1);
    assert_eq!(deadline.display().to_string(), "2025-10-09T24:00+08:00");
    assert_eq!(deadline.at, moment("2025-10-10T00:00:00+08:00"));
    assert!(!deadline.provisional);
}

#[test]
fn spring_festival_2024_five_working_days_from_feb_8() {
    // 02-08 receipt (not counted); 02-09 Fri working (1); 02-10..02-17 holiday;
    // 02-18 working Sunday (2); 02-19 (3), 02-20 (4), 02-21 (5).
    let cal = shipped();
    assert!(cal.is_working_day(date("2024-02-04")).working);
    assert!(cal.is_working_day(date("2024-02-18")).working);
    for at in [
        "2024-02-08T00:00+08:00",
        "2024-02-08T09:30+08:00",
        "2024-02-08T23:59+08:00",
    ] {
        let deadline = cal.add_working_days(moment(at), 5);
        assert_eq!(
            deadline.display().to_string(),
            "2024-02-21T24:00+08:00",
            "{at}"
        );
    }
}

#[test]
fn receipt_day_is_not_counted_even_on_a_sunday() {
    // 2025-10-12 is an ordinary Sunday; the first day counted is Monday 10-13.
    let deadline = shipped().add_working_days(moment("2025-10-12T10:00+08:00"), 1);
    assert_eq!(deadline.display().to_string(), "2025-10-13T24:00+08:00");
    // Receipt on a working day is not counted either.
    let deadline = shipped().add_working_days(moment("2025-10-13T08:00+08:00"), 1);
    assert_eq!(deadline.display().to_string(), "2025-10-14T24:00+08:00");
}

#[test]
fn receipt_day_is_the_shanghai_date_not_the_utc_date() {
    // 2025-09-30T17:00Z is 2025-10-01 01:00 in Shanghai: receipt day is 10-01.
    let deadline = shipped().add_working_days(moment("2025-09-30T17:00:00Z"), 1);
    assert_eq!(deadline.display().to_string(), "2025-10-09T24:00+08:00");
    // 2025-09-28T15:00Z is 09-28 23:00 Shanghai (a working Sunday): 1 day → 09-29.
    let deadline = shipped().add_working_days(moment("2025-09-28T15:00:00Z"), 1);
    assert_eq!(deadline.display().to_string(), "2025-09-29T24:00+08:00");
}

#[test]
fn unknown_year_assumes_weekdays_and_is_provisional() {
    let cal = shipped();
    assert_eq!(
        cal.is_working_day(date("2027-03-01")),
        DayInfo {
            working: true,
            known: false
        }
    );
    assert!(!cal.is_working_day(date("2027-03-06")).working);
    let deadline = cal.add_working_days(moment("2027-03-01T10:00+08:00"), 1);
    assert_eq!(deadline.display().to_string(), "2027-03-02T24:00+08:00");
    assert!(deadline.provisional);
    // Crossing into 2027 from late 2026 is provisional too.
    let deadline = cal.add_working_days(moment("2026-12-30T10:00+08:00"), 5);
    assert!(deadline.provisional);
    // Staying inside 2026 is not.
    assert!(
        !cal.add_working_days(moment("2026-12-21T10:00+08:00"), 3)
            .provisional
    );
    assert_eq!(
        cal.missing_years_between(date("2026-12-30"), date("2027-01-10")),
        vec![2027]
    );
    assert!(
        cal.missing_years_between(date("2017-01-01"), date("2026-12-31"))
            .is_empty()
    );
}

#[test]
fn next_working_day_skips_holidays() {
    let next = shipped().next_working_day(date("2025-09-30"));
    assert_eq!(
        next,
        Some(WorkingDay {
            date: date("2025-10-09"),
            provisional: false
        })
    );
}

#[test]
fn hour_deadlines_are_wall_clock() {
    let deadline = Deadline::hours(moment("2025-09-30T23:30+08:00"), 1);
    assert_eq!(deadline.display().to_string(), "2025-10-01T00:30+08:00");
    assert!(!deadline.provisional);
}

#[test]
fn deadline_command_prints_24_hours_and_provisional_note() {
    let cal = shipped();
    assert_eq!(
        deadline_command(&cal, "2025-09-30T16:00+08:00", 1).ok(),
        Some("2025-10-09T24:00+08:00".to_owned())
    );
    assert_eq!(
        deadline_command(&cal, "2027-01-04T16:00+08:00", 1).ok(),
        Some("2027-01-05T24:00+08:00 (provisional: calendar for 2027 not loaded)".to_owned())
    );
    assert!(matches!(
        deadline_command(&cal, "yesterday", 1),
        Err(CalendarError::BadMoment { .. })
    ));
    assert!(matches!(
        deadline_command(&cal, "2025-09-30T16:00+08:00", u32::MAX),
        Err(CalendarError::WorkingDaysOutOfRange { .. })
    ));
    assert_eq!(
        Deadline::hours(moment("2025-09-30T16:00:30+08:00"), 1)
            .display()
            .to_string(),
        "2025-09-30T17:00:30+08:00"
    );
}

#[test]
fn is_working_day_command_explains_the_day() {
    let cal = shipped();
    let out = is_working_day_command(&cal, "2026-02-14").unwrap_or_default();
    assert!(out.starts_with("2026-02-14 Sat: working day"), "{out}");
    let out = is_working_day_command(&cal, "2025-10-01").unwrap_or_default();
    assert!(out.contains("not a working day (public holiday)"), "{out}");
    let out = is_working_day_command(&cal, "2027-06-01").unwrap_or_default();
    assert!(
        out.contains("provisional: calendar for 2027 not loaded"),
        "{out}"
    );
    assert!(matches!(
        is_working_day_command(&cal, "2025-13-01"),
        Err(CalendarError::BadDate { .. })
    ));
}

fn kinds(text: &str) -> Vec<ProblemKind> {
    Calendar::validate(text)
        .into_iter()
        .map(|p| p.kind)
        .collect()
}

#[test]
fn validate_catches_each_kind_of_bad_data() {
    assert_eq!(
        kinds("[years.20x5]\nholidays = []"),
        vec![ProblemKind::BadYearKey]
    );
    assert_eq!(
        kinds("[years.2025]\nholidays = [\"2025-02-30\"]"),
        vec![ProblemKind::BadDate]
    );
    assert_eq!(
        kinds("[years.2025]\nholidays = [\"2024-10-01\"]"),
        vec![ProblemKind::WrongYear]
    );
    // 2025-09-28 is a Sunday.
    assert_eq!(
        kinds("[years.2025]\nholidays = [\"2025-09-28\"]\nworkdays = [\"2025-09-28\"]"),
        vec![ProblemKind::HolidayAndWorkday]
    );
    // 2025-09-29 is a Monday.
    assert_eq!(
        kinds("[years.2025]\nworkdays = [\"2025-09-29\"]"),
        vec![ProblemKind::WorkdayNotWeekend]
    );
    assert_eq!(
        kinds("[years.2025]\nholidays = [\"2025-10-01\"]\nin_lieu = [\"2025-10-07\"]"),
        vec![ProblemKind::InLieuNotHoliday]
    );
    assert_eq!(
        kinds("[years.2025]\nholidays = [\"2025-10-01\", \"2025-10-01\"]"),
        vec![ProblemKind::Duplicate]
    );
    assert_eq!(kinds("[years.2025\n"), vec![ProblemKind::Syntax]);
    let problem = &Calendar::validate("[years.2025]\nworkdays = [\"2025-09-29\"]")[0];
    assert_eq!(problem.year, Some(2025));
    assert_eq!(problem.date.as_deref(), Some("2025-09-29"));
}

#[test]
fn loading_rejects_errors_but_accepts_duplicate_warnings() {
    assert!(matches!(
        Calendar::from_toml_str("[years.2025]\nworkdays = [\"2025-09-29\"]"),
        Err(CalendarError::Invalid(_))
    ));
    let cal = Calendar::from_toml_str("[years.2025]\nholidays = [\"2025-10-01\", \"2025-10-01\"]");
    assert!(cal.is_ok());
}

#[test]
fn load_reads_the_shipped_file_and_reports_missing_files() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/calendar/cn-workdays.toml"
    );
    assert_eq!(Calendar::load(path).ok(), Some(shipped()));
    assert!(matches!(
        Calendar::load("/nonexistent/cn-workdays.toml"),
        Err(CalendarError::Io { .. })
    ));
}

#[test]
fn working_days_left_counts_days_after_today_up_to_the_limit_day() {
    let cal = shipped();
    // Received Monday 2026-12-07: the day of receipt is not counted, the limit is
    // Tuesday 24:00.
    let due = cal.add_working_days(moment("2026-12-07T10:00:00+08:00"), 1);
    assert_eq!(due.display().to_string(), "2026-12-08T24:00+08:00");
    assert_eq!(
        cal.working_days_left(&due, moment("2026-12-07T15:00:00+08:00")),
        1
    );
    assert_eq!(
        cal.working_days_left(&due, moment("2026-12-08T23:59:00+08:00")),
        0
    );
    assert_eq!(
        cal.working_days_left(&due, moment("2026-12-09T00:30:00+08:00")),
        -1
    );
    // The Shanghai date counts, not the UTC one (2026-12-07T17:00Z is the 8th, 01:00).
    assert_eq!(
        cal.working_days_left(&due, moment("2026-12-07T17:00:00Z")),
        0
    );
}

#[test]
fn working_days_left_skips_spring_festival_and_counts_its_make_up_saturday() {
    let cal = shipped();
    // Friday 2026-02-13: five working days are Sat 14 (调休) and 24–27 Feb.
    let due = cal.add_working_days(moment("2026-02-13T10:00:00+08:00"), 5);
    assert_eq!(due.display().to_string(), "2026-02-27T24:00+08:00");
    assert_eq!(
        cal.working_days_left(&due, moment("2026-02-13T10:00:00+08:00")),
        5
    );
    assert_eq!(
        cal.working_days_left(&due, moment("2026-02-14T10:00:00+08:00")),
        4
    );
    assert_eq!(
        cal.working_days_left(&due, moment("2026-02-20T10:00:00+08:00")),
        4
    );
    // Past a Friday limit nothing has begun over the weekend; Monday is one day over.
    assert_eq!(
        cal.working_days_left(&due, moment("2026-02-28T10:00:00+08:00")),
        -1
    );
    let friday = cal.add_working_days(moment("2026-12-10T10:00:00+08:00"), 1);
    assert_eq!(
        cal.working_days_left(&friday, moment("2026-12-12T10:00:00+08:00")),
        0
    );
    assert_eq!(
        cal.working_days_left(&friday, moment("2026-12-14T10:00:00+08:00")),
        -1
    );
}

mod add_year {
    use super::super::cli::{
        AddYearError, YearDates, add_year, parse_date_list, parse_year_snippet,
    };
    use super::super::{Calendar, ProblemKind, SharedCalendar};
    use chrono::{DateTime, NaiveDate};

    const BASE: &str = "# kept comment\n[years.2026]\nholidays = [\"2026-01-01\"]\nworkdays = []\n";

    fn d(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("date")
    }

    // A synthetic 2031 (not the State Council's): 01-01 (Wed) off, 02-03..02-07 off,
    // Saturday 02-08 worked.
    fn synthetic() -> YearDates {
        YearDates {
            holidays: parse_date_list("holidays", "2031-01-01, 2031-02-03..2031-02-07")
                .expect("list"),
            workdays: parse_date_list("workdays", "2031-02-08").expect("list"),
            notice: Some("https://example.invalid/notice".to_owned()),
        }
    }

    #[test]
    fn a_valid_year_is_appended_and_loads_with_its_days() {
        let text = add_year(BASE, 2031, &synthetic()).expect("added");
        assert!(text.starts_with(BASE), "the rest of the file is kept");
        let cal = Calendar::from_toml_str(&text).expect("loads");
        assert_eq!(cal.loaded_years(), vec![2026, 2031]);
        assert!(!cal.is_working_day(d("2031-02-05")).working);
        assert!(
            cal.is_working_day(d("2031-02-08")).working,
            "make-up Saturday"
        );
        assert!(cal.is_working_day(d("2031-02-10")).known);
        // Added twice: refused.
        assert!(matches!(
            add_year(&text, 2031, &synthetic()),
            Err(AddYearError::AlreadyLoaded(2031))
        ));
    }

    #[test]
    fn invalid_dates_are_refused_naming_the_rule() {
        let mut outside = synthetic();
        outside.holidays.push(d("2032-01-01"));
        match add_year(BASE, 2031, &outside) {
            Err(AddYearError::Invalid(p)) => {
                assert!(p.iter().any(|p| p.kind == ProblemKind::WrongYear), "{p:?}");
            }
            other => panic!("{other:?}"),
        }
        let mut overlap = synthetic();
        overlap.workdays.push(d("2031-02-03"));
        match add_year(BASE, 2031, &overlap) {
            Err(AddYearError::Invalid(p)) => assert!(
                p.iter().any(|p| p.kind == ProblemKind::HolidayAndWorkday),
                "{p:?}"
            ),
            other => panic!("{other:?}"),
        }
        let mut weekday_workday = synthetic();
        weekday_workday.workdays.push(d("2031-02-12")); // a Wednesday
        match add_year(BASE, 2031, &weekday_workday) {
            Err(AddYearError::Invalid(p)) => assert!(
                p.iter().any(|p| p.kind == ProblemKind::WorkdayNotWeekend),
                "{p:?}"
            ),
            other => panic!("{other:?}"),
        }
        let no_new_year = YearDates {
            holidays: vec![d("2031-02-03")],
            ..YearDates::default()
        };
        assert!(matches!(
            add_year(BASE, 2031, &no_new_year),
            Err(AddYearError::NewYearMissing(2031))
        ));
        assert!(matches!(
            add_year(BASE, 2031, &YearDates::default()),
            Err(AddYearError::NoHolidays)
        ));
        let weekends_only = YearDates {
            holidays: vec![d("2033-01-01"), d("2033-01-02")], // Saturday, Sunday
            ..YearDates::default()
        };
        assert!(matches!(
            add_year(BASE, 2033, &weekends_only),
            Err(AddYearError::OnlyWeekendHolidays)
        ));
        assert!(matches!(
            parse_date_list("holidays", "2031-02-07..2031-02-03"),
            Err(AddYearError::BadEntry { .. })
        ));
        assert!(matches!(
            parse_date_list("holidays", "2031-13-01"),
            Err(AddYearError::BadEntry { .. })
        ));
    }

    #[test]
    fn a_snippet_in_the_files_own_shape_is_read() {
        let snippet = "[years.2031]\nholidays = [\"2031-01-01\", \"2031-02-03..2031-02-07\"]\nworkdays = [\"2031-02-08\"]\nnotice = [\"https://example.invalid/notice\"]\n";
        assert_eq!(
            parse_year_snippet(2031, snippet).expect("snippet"),
            synthetic()
        );
        assert!(matches!(
            parse_year_snippet(2030, snippet),
            Err(AddYearError::Snippet(_))
        ));
    }

    #[test]
    fn the_shared_calendar_reloads_when_the_file_changes_and_keeps_it_when_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cal.toml");
        std::fs::write(&path, BASE).expect("write");
        let shared = SharedCalendar::watching(&path, Calendar::load(&path).expect("load"));
        assert_eq!(
            shared.reload_if_changed().expect("ok"),
            super::super::Reload::Unchanged
        );
        let received = DateTime::parse_from_rfc3339("2026-12-30T10:00:00+08:00").expect("t");
        assert!(shared.current().add_working_days(received, 5).provisional);
        // Ensure a different mtime even on coarse clocks.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "not = [toml").expect("write");
        assert!(shared.reload_if_changed().is_err(), "invalid: reported");
        assert_eq!(shared.current().loaded_years(), vec![2026], "kept");
        assert_eq!(
            shared.reload_if_changed().expect("ok"),
            super::super::Reload::Unchanged
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        let text = add_year(
            BASE,
            2027,
            &YearDates {
                holidays: vec![d("2027-01-01")],
                ..YearDates::default()
            },
        )
        .expect("add");
        std::fs::write(&path, text).expect("write");
        assert_eq!(
            shared.reload_if_changed().expect("reloaded"),
            super::super::Reload::Reloaded {
                years: vec![2026, 2027],
                added: vec![2027]
            }
        );
        assert!(!shared.current().add_working_days(received, 5).provisional);
    }
}
