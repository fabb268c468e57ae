use std::sync::OnceLock;

use chrono::{NaiveDate, TimeZone};

use super::*;

/// The shipped dictionary and stop words (read at run time, as the server does).
fn segmenter() -> &'static Segmenter {
    static SEGMENTER: OnceLock<Segmenter> = OnceLock::new();
    SEGMENTER.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/analysis");
        Segmenter::from_files(&root.join("legal-terms.txt"), &root.join("stopwords.txt"))
            .expect("shipped dictionary")
    })
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

fn order(city: &str, on: NaiveDate, text: &str) -> OrderFacts {
    OrderFacts {
        city: city.to_owned(),
        received: crate::calendar::shanghai()
            .from_local_datetime(&on.and_hms_opt(10, 0, 0).expect("time"))
            .single()
            .expect("local time"),
        text: text.to_owned(),
        troubled: false,
        units: 1,
    }
}

#[test]
fn legal_terms_stay_whole_and_stop_words_go() {
    let words = segmenter().words("请问公司拖欠工资三个月怎么办，我想申请法律援助");
    assert!(words.contains(&"拖欠工资".to_owned()), "{words:?}");
    assert!(words.contains(&"法律援助".to_owned()), "{words:?}");
    assert!(
        !words.iter().any(|w| w == "请问" || w == "怎么办"),
        "{words:?}"
    );
    assert!(
        words.iter().all(|w| w.chars().count() >= 2),
        "single characters are no topics: {words:?}"
    );
}

#[test]
fn periods_are_mondays_or_first_days_oldest_first() {
    // 2026-12-09 is a Wednesday.
    let weeks = periods(day(2026, 12, 9), Granularity::Week);
    assert_eq!(weeks.len(), BASELINE_PERIODS + 1);
    assert_eq!(
        weeks.last(),
        Some(&Period {
            start: day(2026, 12, 7),
            end: day(2026, 12, 14)
        })
    );
    assert_eq!(weeks[0].start, day(2026, 10, 12));
    assert!(weeks.windows(2).all(|w| w[0].end == w[1].start));
    let months = periods(day(2026, 3, 31), Granularity::Month);
    assert_eq!(
        months.last(),
        Some(&Period {
            start: day(2026, 3, 1),
            end: day(2026, 4, 1)
        })
    );
    assert_eq!(months[0].start, day(2025, 7, 1));
    assert!(months.windows(2).all(|w| w[0].end == w[1].start));
}

/// Eight quiet weeks with one divorce question each; then a week of unpaid wages in
/// three cities: the wages are hot and focal, the divorces are not hot.
#[test]
fn a_spike_against_the_baseline_is_hot() {
    let today = day(2026, 12, 9);
    let weeks = periods(today, Granularity::Week);
    let mut orders: Vec<OrderFacts> = weeks[..BASELINE_PERIODS]
        .iter()
        .map(|p| order("jinan", p.start, "想咨询离婚以后孩子的抚养权归谁"))
        .collect();
    orders.push(order("jinan", today, "想咨询离婚以后孩子的抚养权归谁"));
    for (i, city) in ["jinan", "qingdao", "yantai", "jinan", "weifang"]
        .into_iter()
        .enumerate()
    {
        let mut o = order(city, today, "工地老板拖欠工资半年，工友们都拿不到钱");
        o.troubled = i < 2;
        orders.push(o);
    }
    let trends = analyse(segmenter(), &orders, &weeks, 20);
    let wages = trends
        .iter()
        .find(|t| t.topic == "拖欠工资")
        .unwrap_or_else(|| panic!("no wages topic: {trends:#?}"));
    assert_eq!(wages.current, 5, "{wages:?}");
    assert!(wages.hot, "{wages:?}");
    assert!(wages.focal, "five orders in four cities: {wages:?}");
    assert!(wages.difficult, "two of five returned or late: {wages:?}");
    assert!(wages.legal_term);
    assert_eq!(trends[0].topic, "拖欠工资", "most asked first: {trends:#?}");
    let divorce = trends
        .iter()
        .find(|t| t.topic == "离婚")
        .unwrap_or_else(|| panic!("no divorce topic: {trends:#?}"));
    assert_eq!(divorce.counts, vec![1; BASELINE_PERIODS + 1], "{divorce:?}");
    assert!(
        !divorce.hot && !divorce.focal && !divorce.difficult,
        "{divorce:?}"
    );
}

/// A topic going from nothing to two orders is no spike (fewer than 3), and orders
/// outside the periods are not counted.
#[test]
fn small_counts_and_old_orders_are_not_hot() {
    let today = day(2026, 12, 9);
    let weeks = periods(today, Granularity::Week);
    let orders = vec![
        order("jinan", today, "交通事故对方不赔偿"),
        order("jinan", today, "交通事故保险公司拒赔"),
        order("jinan", day(2025, 1, 6), "交通事故"),
    ];
    let trends = analyse(segmenter(), &orders, &weeks, 20);
    let accident = trends
        .iter()
        .find(|t| t.topic == "交通事故")
        .unwrap_or_else(|| panic!("{trends:#?}"));
    assert_eq!(accident.orders, 2, "{accident:?}");
    assert!(!accident.hot, "{accident:?}");
}

#[test]
fn summaries_quote_descriptions_with_numbers_and_the_contacts_name_masked() {
    let text = super::mask_description("张三说老板欠薪，电话13812345678，工号42", "张三");
    assert_eq!(text, "张*说老板欠薪，电话138****5678，工号42");
}
