use chrono::{DateTime, FixedOffset, NaiveDate};

use super::*;
use crate::calendar::Calendar;
use crate::domain::{IntegrityKind, LicenceStatus};
use crate::store::Store;
use crate::store::directory::{BookingError, ChangeStamp, EntryWriteError, NewBooking};

fn calendar() -> Calendar {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    Calendar::load(root.join("config/calendar/cn-workdays.toml")).expect("calendar")
}

fn at(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).expect("rfc3339")
}

fn notary(name: &str) -> EntryInput {
    EntryInput {
        kind: DirectoryKind::NotaryOffice,
        name: name.to_owned(),
        city: "济南市".to_owned(),
        county: "历下区".to_owned(),
        address: "济南市历下区示例路1号".to_owned(),
        lat: Some(36.651),
        lon: Some(117.120),
        phone: "0531-0000001".to_owned(),
        service_hours: "09:00-12:00,13:30-17:30".to_owned(),
        specialties: vec!["遗嘱公证".to_owned(), "继承公证".to_owned()],
        licence_no: String::new(),
        licence_status: LicenceStatus::Active,
        institution_id: None,
        unit: Some("jinan-notary".to_owned()),
        integrity: vec![IntegrityRecord {
            kind: IntegrityKind::Commendation,
            date: NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(),
            text: "群众满意窗口".to_owned(),
            authority: "济南市司法局".to_owned(),
        }],
        intro: String::new(),
    }
}

#[test]
fn service_hours_read_and_print_and_refuse_nonsense() {
    let h = ServiceHours::parse("09:00-12:00，13:30至17:30").unwrap();
    assert_eq!(h.to_string(), "09:00-12:00,13:30-17:30");
    assert!(ServiceHours::parse("").unwrap().is_empty());
    assert!(ServiceHours::parse("9点到12点").is_err());
    assert!(ServiceHours::parse("12:00-09:00").is_err());
    assert!(ServiceHours::parse("09:00-12:00,11:00-13:00").is_err());
}

#[test]
fn slots_follow_the_working_day_calendar() {
    let h = ServiceHours::parse("09:00-12:00,13:30-17:30").unwrap();
    let cal = calendar();
    // Friday 2026-10-09: a working day, 6 + 8 slots of 30 minutes.
    let day = h.slots_of_day(&cal, NaiveDate::from_ymd_opt(2026, 10, 9).unwrap());
    assert_eq!(day.len(), 14);
    assert_eq!(day[0].start, at("2026-10-09T09:00:00+08:00"));
    assert_eq!(day[13].end, at("2026-10-09T17:30:00+08:00"));
    // National Day (holiday) gives none; Saturday 2026-10-10 is a 调休 workday.
    assert!(
        h.slots_of_day(&cal, NaiveDate::from_ymd_opt(2026, 10, 5).unwrap())
            .is_empty()
    );
    assert_eq!(
        h.slots_of_day(&cal, NaiveDate::from_ymd_opt(2026, 10, 10).unwrap())
            .len(),
        14
    );
    assert!(
        h.slots_of_day(&cal, NaiveDate::from_ymd_opt(2026, 10, 11).unwrap())
            .is_empty()
    );
    // From 10:10 on the 9th: the morning's earlier slots are gone.
    let now = at("2026-10-09T10:10:00+08:00");
    let next = h.slots(&cal, now, now.date_naive(), 2);
    assert_eq!(next[0].start, at("2026-10-09T10:30:00+08:00"));
    assert_eq!(next.len(), 3 + 8 + 14);
    assert!(
        h.offers(&cal, now, at("2026-10-10T09:00:00+08:00"))
            .is_some()
    );
    assert!(
        h.offers(&cal, now, at("2026-10-10T09:10:00+08:00"))
            .is_none()
    );
    assert!(
        h.offers(&cal, now, at("2026-10-09T10:00:00+08:00"))
            .is_none()
    );
    assert!(
        h.offers(&cal, now, at("2026-12-09T10:00:00+08:00"))
            .is_none()
    );
}

#[test]
fn entries_are_checked_field_by_field() {
    let ok = notary("济南明信公证处（示例）").checked().unwrap();
    assert_eq!(ok.city, "jinan");
    assert_eq!(ok.specialties, "遗嘱公证、继承公证");
    assert!(ok.search_text.contains("济南市"), "{}", ok.search_text);
    let mut bad = notary("x");
    bad.city = "北京市".into();
    assert_eq!(bad.checked().unwrap_err().field, "city");
    let mut bad = notary("  ");
    bad.name = "  ".into();
    assert_eq!(bad.checked().unwrap_err().field, "name");
    let mut bad = notary("x");
    bad.lat = None;
    assert_eq!(bad.checked().unwrap_err().field, "lat");
    let mut bad = notary("x");
    bad.service_hours = "全天".into();
    assert_eq!(bad.checked().unwrap_err().field, "service_hours");
    let mut bad = notary("x");
    bad.institution_id = Some(3);
    assert_eq!(bad.checked().unwrap_err().field, "institution_id");
}

#[test]
fn search_params_are_checked() {
    let p = SearchParams {
        q: Some("公证 遗嘱".into()),
        city: Some("济南".into()),
        kind: Some("notary_office,律师事务所".into()),
        lat: Some(36.65),
        lon: Some(117.1),
        ..SearchParams::default()
    };
    let q = p.query().unwrap();
    assert_eq!(q.terms, vec!["公证", "遗嘱"]);
    assert_eq!(q.city.as_deref(), Some("jinan"));
    assert_eq!(q.kinds, vec!["notary_office", "law_firm"]);
    assert!(q.near.is_some());
    assert_eq!(q.limit, 20);
    for bad in [
        SearchParams {
            kind: Some("bank".into()),
            ..SearchParams::default()
        },
        SearchParams {
            lat: Some(1.0),
            ..SearchParams::default()
        },
        SearchParams {
            limit: Some(500),
            ..SearchParams::default()
        },
        SearchParams {
            city: Some("上海".into()),
            ..SearchParams::default()
        },
    ] {
        assert!(bad.query().is_err(), "{bad:?}");
    }
}

#[test]
fn csv_import_keeps_good_rows_and_names_the_bad_ones() {
    let text = "\u{feff}类别,名称,城市,区县,纬度,经度,服务时间,专长,执业状态,诚信记录\n\
        公证处,济南明信公证处（示例）,济南,历下区,36.65,117.12,09:00-12:00,遗嘱公证、继承公证,正常执业,表彰|2025-03-01|群众满意窗口|济南市司法局\n\
        银行,某某银行,济南,,,,,,,\n\
        律师事务所,\"青岛正和律师事务所（示例）\",qingdao,市南区,36.06,,,婚姻家庭,,\n\
        lawyer,王明,青岛,市南区,,,,婚姻家庭;劳动争议,active,处罚|2024-13-01|警告\n\
        lawyer,李华,青岛,市南区,,,,婚姻家庭,active,\n";
    let parsed = csv_import::parse(text).unwrap();
    let good: Vec<u64> = parsed.rows.iter().map(|(row, _, _)| *row).collect();
    assert_eq!(good, vec![2, 6]);
    let bad: Vec<(u64, Option<&str>)> = parsed
        .problems
        .iter()
        .map(|p| (p.row, p.column.as_deref()))
        .collect();
    assert_eq!(
        bad,
        vec![(3, Some("kind")), (4, Some("lat")), (5, Some("integrity"))]
    );
    assert_eq!(parsed.rows[0].1.kind, "notary_office");
    assert!(parsed.rows[0].1.integrity.contains("群众满意窗口"));
    assert!(matches!(
        csv_import::parse("名称,颜色\nx,y\n"),
        Err(csv_import::ImportError::UnknownColumn(c)) if c == "颜色"
    ));
    assert!(matches!(
        csv_import::parse("名称,城市\nx,y\n"),
        Err(csv_import::ImportError::MissingColumn("kind"))
    ));
}

#[test]
fn generated_data_is_valid_deterministic_and_marked_as_samples() {
    let a = seed::generate(200, 7);
    assert_eq!(a, seed::generate(200, 7));
    assert_eq!(a.len(), 200);
    for (i, g) in a.iter().enumerate() {
        g.input
            .checked()
            .unwrap_or_else(|e| panic!("entry {i}: {e}"));
        if g.input.kind.is_institution() {
            assert!(g.input.name.contains("示例"), "{}", g.input.name);
        } else {
            let parent = &a[g.parent.expect("a practitioner has an institution")].input;
            assert_eq!(parent.kind, g.input.kind.institution_kind());
            assert_eq!(parent.city, g.input.city);
        }
        assert!(g.input.phone.is_empty() || g.input.phone.contains("-0000"));
    }
    assert_eq!(a[0].input.kind, DirectoryKind::NotaryOffice);
}

#[test]
fn grams_are_the_single_characters_and_neighbouring_pairs() {
    assert_eq!(grams("公证处 A1"), "公 公证 证 证处 处 a a1 1");
    assert_eq!(grams("法法"), "法 法法");
    assert_eq!(grams("（示例）"), "示 示例 例");
}

#[test]
fn booking_codes_and_phones() {
    let code = booking_code();
    assert!(plausible_code(&code), "{code}");
    assert!(!plausible_code("ABC"));
    assert!(!plausible_code("ABCDEFG0"));
    assert!(valid_mobile("13800138000"));
    assert!(!valid_mobile("1380013800"));
    assert!(!valid_mobile("12800138000"));
    assert_eq!(masked_phone("13800138000"), "138****8000");
    assert!((distance_km(36.65, 117.0, 36.65, 117.0)).abs() < 1e-9);
    let jinan_qingdao = distance_km(36.651, 117.120, 36.067, 120.383);
    assert!((290.0..310.0).contains(&jinan_qingdao), "{jinan_qingdao}");
}

const STAMP: ChangeStamp<'static> = ChangeStamp {
    actor: "admin",
    at_ms: 1_000,
    action: "created",
};

async fn insert(store: &Store, input: &EntryInput) -> i64 {
    let write = input.checked().expect("valid");
    store
        .insert_directory_entries(&[(write, serde_json::to_string(input).unwrap())], STAMP)
        .await
        .expect("insert")[0]
}

fn names(rows: &[crate::store::directory::EntryRow]) -> Vec<String> {
    rows.iter().map(|r| r.name.clone()).collect()
}

async fn search(store: &Store, p: SearchParams) -> Vec<String> {
    names(
        &store
            .search_directory(&p.query().unwrap())
            .await
            .expect("search"),
    )
}

fn q(text: &str) -> SearchParams {
    SearchParams {
        q: Some(text.to_owned()),
        ..SearchParams::default()
    }
}

async fn search_finds_chinese_substrings(store: Store) {
    let a = insert(&store, &notary("济南明信公证处（示例）")).await;
    let mut firm = notary("青岛正和律师事务所（示例）");
    firm.kind = DirectoryKind::LawFirm;
    firm.city = "qingdao".into();
    firm.county = "市南区".into();
    firm.address = "青岛市市南区示例路2号".into();
    firm.lat = Some(36.067);
    firm.lon = Some(120.383);
    firm.specialties = vec!["婚姻家庭".into(), "劳动争议".into()];
    firm.integrity = vec![];
    let b = insert(&store, &firm).await;
    let mut near = notary("济南泉城公证处（示例）");
    near.lat = Some(36.660);
    near.lon = Some(117.125);
    near.county = "市中区".into();
    near.address = "济南市市中区示例路3号".into();
    let c = insert(&store, &near).await;
    let mut lawyer = firm.clone();
    lawyer.kind = DirectoryKind::Lawyer;
    lawyer.name = "王明".into();
    lawyer.institution_id = Some(b);
    lawyer.unit = None;
    lawyer.service_hours = String::new();
    insert(&store, &lawyer).await;

    // Substrings of three or more characters (trigram index) ...
    assert_eq!(
        search(&store, q("明信公证")).await,
        vec!["济南明信公证处（示例）"]
    );
    assert_eq!(
        search(&store, q("婚姻家庭")).await,
        vec!["青岛正和律师事务所（示例）", "王明"]
    );
    assert_eq!(
        search(&store, q("历下区")).await,
        vec!["济南明信公证处（示例）"]
    );
    // ... of one or two (plain substring test) ...
    assert_eq!(search(&store, q("公证")).await.len(), 2);
    assert_eq!(search(&store, q("青")).await.len(), 2);
    assert_eq!(search(&store, q("王明")).await, vec!["王明"]);
    // ... several words: all must occur.
    assert_eq!(
        search(&store, q("济南 泉城")).await,
        vec!["济南泉城公证处（示例）"]
    );
    assert!(search(&store, q("泉城 婚姻")).await.is_empty());
    // LIKE wildcards are text, not patterns.
    assert!(search(&store, q("%%%")).await.is_empty());
    assert!(search(&store, q("公_证")).await.is_empty());
    // Filters.
    let by = |p: SearchParams| search(&store, p);
    assert_eq!(
        by(SearchParams {
            city: Some("qingdao".into()),
            ..SearchParams::default()
        })
        .await
        .len(),
        2
    );
    assert_eq!(
        by(SearchParams {
            kind: Some("notary_office".into()),
            county: Some("市中区".into()),
            ..SearchParams::default()
        })
        .await,
        vec!["济南泉城公证处（示例）"]
    );
    assert_eq!(
        by(SearchParams {
            specialty: Some("劳动争议".into()),
            kind: Some("lawyer".into()),
            ..SearchParams::default()
        })
        .await,
        vec!["王明"]
    );
    // Near me: by distance, within the radius.
    let near_me = by(SearchParams {
        lat: Some(36.661),
        lon: Some(117.126),
        radius_km: Some(10.0),
        ..SearchParams::default()
    })
    .await;
    assert_eq!(
        near_me,
        vec!["济南泉城公证处（示例）", "济南明信公证处（示例）"]
    );
    // Updates re-index; deletes drop out of the index.
    let mut renamed = notary("济南厚德公证处（示例）");
    renamed.county = "历下区".into();
    let v = store
        .update_directory_entry(
            a,
            Some(1),
            &renamed.checked().unwrap(),
            "{}",
            ChangeStamp {
                action: "updated",
                ..STAMP
            },
        )
        .await
        .expect("update");
    assert_eq!(v, 2);
    assert!(search(&store, q("明信公证")).await.is_empty());
    assert_eq!(
        search(&store, q("厚德公证")).await,
        vec!["济南厚德公证处（示例）"]
    );
    assert!(matches!(
        store
            .update_directory_entry(a, Some(1), &renamed.checked().unwrap(), "{}", STAMP)
            .await,
        Err(EntryWriteError::VersionConflict)
    ));
    assert!(matches!(
        store
            .update_directory_entry(999_999, None, &renamed.checked().unwrap(), "{}", STAMP)
            .await,
        Err(EntryWriteError::NotFound)
    ));
    store
        .delete_directory_entry(
            c,
            "{}",
            ChangeStamp {
                action: "deleted",
                ..STAMP
            },
        )
        .await
        .expect("delete");
    assert!(search(&store, q("泉城公证")).await.is_empty());
    assert!(store.directory_entry(c).await.unwrap().is_none());
    // Every change is in the log, newest first; the log refuses edits.
    let log = store.directory_changes(None, 100).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|l| l.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "deleted", "updated", "created", "created", "created", "created"
        ]
    );
    assert_eq!(store.directory_changes(Some(a), 10).await.unwrap().len(), 2);
    assert!(store.tamper_directory_changes().await.is_err());
}

#[tokio::test]
async fn search_finds_chinese_substrings_sqlite() {
    let (store, _dir) = crate::store::test_support::sqlite().await;
    search_finds_chinese_substrings(store).await;
}

#[tokio::test]
async fn search_finds_chinese_substrings_postgres() {
    search_finds_chinese_substrings(crate::store::test_support::postgres().await).await;
}

fn booking<'a>(code: &'a str, phone: &'a str, start: i64) -> NewBooking<'a> {
    NewBooking {
        code,
        institution_id: 1,
        slot_start_ms: start,
        slot_end_ms: start + 1_800_000,
        citizen_name: "市民",
        phone,
        matter: "遗嘱公证",
        remind_at_ms: start - 86_400_000,
        now_ms: 1_000,
        max_per_phone: 3,
    }
}

async fn one_booking_per_slot(store: Store) {
    let id = insert(&store, &notary("济南明信公证处（示例）")).await;
    assert_eq!(id, 1);
    let start = 1_900_000_000_000;
    // Twenty citizens try the same slot at once: exactly one gets it.
    let codes: Vec<String> = (0..20).map(|i| format!("CODE{i:04}")).collect();
    let phones: Vec<String> = (0..20).map(|i| format!("139000000{i:02}")).collect();
    let mut tasks = Vec::new();
    for (code, phone) in codes.iter().zip(&phones) {
        let store = store.clone();
        let (code, phone) = (code.clone(), phone.clone());
        tasks.push(tokio::spawn(async move {
            store.book_appointment(&booking(&code, &phone, start)).await
        }));
    }
    let mut won = 0;
    let mut taken = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => won += 1,
            Err(BookingError::SlotTaken) => taken += 1,
            Err(e) => panic!("unexpected: {e:?}"),
        }
    }
    assert_eq!((won, taken), (1, 19));
    assert_eq!(store.held_slots(1, 0, i64::MAX).await.unwrap(), vec![start]);
    // Cancelled: the slot is free again; a no-show is recorded.
    let held = store.appointments_of(&[1], 0, i64::MAX, 10).await.unwrap();
    assert_eq!(held.len(), 1);
    let first = &held[0];
    assert!(
        store
            .set_appointment_status(
                first.id,
                &["booked", "confirmed"],
                "cancelled",
                "citizen",
                2_000
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_appointment_status(
                first.id,
                &["booked", "confirmed"],
                "cancelled",
                "citizen",
                2_000
            )
            .await
            .unwrap()
    );
    let again = store
        .book_appointment(&booking("AGAIN001", "13900000099", start))
        .await
        .unwrap();
    assert!(
        store
            .set_appointment_status(again.id, &["booked"], "confirmed", "notary-staff", 3_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .set_appointment_status(again.id, &["confirmed"], "no_show", "notary-staff", 4_000)
            .await
            .unwrap()
    );
    assert_eq!(
        store.appointment_events(again.id).await.unwrap(),
        vec![
            ("citizen".to_owned(), "booked".to_owned()),
            ("notary-staff".to_owned(), "confirmed".to_owned()),
            ("notary-staff".to_owned(), "no_show".to_owned()),
        ]
    );
    // Codes are unique; one phone holds at most three live bookings.
    assert!(matches!(
        store
            .book_appointment(&booking("AGAIN001", "13900000098", start + 1_800_000))
            .await,
        Err(BookingError::CodeTaken)
    ));
    for i in 0..3 {
        let code = format!("LIMIT{i:03}");
        store
            .book_appointment(&booking(&code, "13700000000", start + (i + 2) * 1_800_000))
            .await
            .expect("within the limit");
    }
    assert!(matches!(
        store
            .book_appointment(&booking("LIMIT999", "13700000000", start + 10 * 1_800_000))
            .await,
        Err(BookingError::TooManyForPhone)
    ));
    // Reminders: due ones of live bookings only, once.
    let due = store.due_reminders(start, 10).await.unwrap();
    assert_eq!(due.len(), 3, "{due:?}");
    assert!(due.iter().all(|d| d.appointment.phone == "13700000000"));
    store
        .mark_reminder_sent(due[0].appointment.id, start)
        .await
        .unwrap();
    assert_eq!(store.due_reminders(start, 10).await.unwrap().len(), 2);
    assert!(store.due_reminders(0, 10).await.unwrap().is_empty());
    // The pass sends the two left and marks them; the next finds none.
    assert_eq!(reminders::send_due(&store, start).await.unwrap(), 2);
    assert_eq!(reminders::send_due(&store, start).await.unwrap(), 0);
    // The institution cannot be deleted while it has appointments to come.
    assert!(matches!(
        store.delete_directory_entry(1, "{}", STAMP).await,
        Err(EntryWriteError::HasAppointments)
    ));
}

#[tokio::test]
async fn one_booking_per_slot_sqlite() {
    let (store, _dir) = crate::store::test_support::sqlite().await;
    one_booking_per_slot(store).await;
}

#[tokio::test]
async fn one_booking_per_slot_postgres() {
    one_booking_per_slot(crate::store::test_support::postgres().await).await;
}

async fn seeding_writes_searchable_entries(store: Store) {
    let ids = seed::seed(&store, 300, 1, "seed", 5_000)
        .await
        .expect("seed");
    assert_eq!(ids.len(), 300);
    assert_eq!(store.count_directory_entries().await.unwrap(), 300);
    let notaries = store
        .search_directory(
            &SearchParams {
                q: Some("公证处".into()),
                city: Some("jinan".into()),
                ..SearchParams::default()
            }
            .query()
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(!notaries.is_empty());
    let practitioners = store.directory_practitioners(ids[0], 50).await.unwrap();
    assert!(
        practitioners
            .iter()
            .all(|p| p.institution_id == Some(ids[0]))
    );
    assert_eq!(
        store.directory_changes(None, 1000).await.unwrap().len(),
        300
    );
}

#[tokio::test]
async fn seeding_writes_searchable_entries_sqlite() {
    let (store, _dir) = crate::store::test_support::sqlite().await;
    seeding_writes_searchable_entries(store).await;
}

#[tokio::test]
async fn seeding_writes_searchable_entries_postgres() {
    seeding_writes_searchable_entries(crate::store::test_support::postgres().await).await;
}
