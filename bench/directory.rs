//! Directory search latency against a seeded database (`bench/directory-search.sh`):
//! the store's search (the SQL of `GET /api/public/directory`, without HTTP), a mix of
//! queries, each run `SAMPLES` times; anchored by a plain `SELECT COUNT(*)` over the
//! same table measured in the same run. Not part of `cargo test`.
//!
//!   directory-bench DATABASE_URL [SAMPLES]

use std::time::{Duration, Instant};

use hotline::directory::SearchParams;
use hotline::store::Store;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn q(text: &str) -> SearchParams {
    SearchParams {
        q: Some(text.to_owned()),
        ..SearchParams::default()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let url = args.next().expect("DATABASE_URL");
    let samples: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let store = Store::connect(&url).await.expect("connect");
    let n = store.count_directory_entries().await.expect("count");
    println!("{n} entries in {url}");
    let mix: Vec<(&str, SearchParams)> = vec![
        ("name, 4 chars (trigram)", q("明信律师")),
        ("specialty, 4 chars (trigram)", q("遗嘱公证")),
        ("rare, 3 chars (trigram)", q("示例9")),
        (
            "2 chars + city (substring)",
            SearchParams {
                q: Some("公证".into()),
                city: Some("jinan".into()),
                ..SearchParams::default()
            },
        ),
        ("1 char, no filter (grams)", q("法")),
        ("2 chars, found nowhere (grams)", q("上海")),
        (
            "kind + city + specialty",
            SearchParams {
                kind: Some("lawyer".into()),
                city: Some("qingdao".into()),
                specialty: Some("婚姻家庭".into()),
                ..SearchParams::default()
            },
        ),
        (
            "near me, 5 km",
            SearchParams {
                lat: Some(36.651),
                lon: Some(117.120),
                radius_km: Some(5.0),
                ..SearchParams::default()
            },
        ),
        (
            "near me + kind",
            SearchParams {
                lat: Some(36.651),
                lon: Some(117.120),
                kind: Some("notary_office".into()),
                ..SearchParams::default()
            },
        ),
        (
            "trigram + city + kind",
            SearchParams {
                q: Some("律师事务所".into()),
                city: Some("heze".into()),
                kind: Some("law_firm".into()),
                ..SearchParams::default()
            },
        ),
    ];
    // Warm up (page cache, planner).
    for (_, p) in &mix {
        let mut query = p.query().expect("query");
        query.limit = 21;
        let _ = store.search_directory(&query).await.expect("search");
    }
    let mut all = Vec::new();
    for (label, p) in &mix {
        let mut query = p.query().expect("query");
        query.limit = 21;
        let mut times = Vec::with_capacity(samples);
        let mut found = 0;
        for _ in 0..samples {
            let t = Instant::now();
            found = store.search_directory(&query).await.expect("search").len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "  {label:<42} p50 {:>7.2} ms  p99 {:>7.2} ms  ({found} on the page)",
            pct(&times, 0.5),
            pct(&times, 0.99)
        );
        all.extend(times);
    }
    all.sort();
    println!(
        "search, all {} queries: p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        pct(&all, 0.5),
        pct(&all, 0.99)
    );
    let mut anchor = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let _ = store.count_directory_entries().await.expect("count");
        anchor.push(t.elapsed());
    }
    anchor.sort();
    println!(
        "anchor SELECT COUNT(*) FROM directory_entries: p50 {:.2} ms, p99 {:.2} ms",
        pct(&anchor, 0.5),
        pct(&anchor, 0.99)
    );
}
