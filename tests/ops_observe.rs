//! Observing a running server as an operator does: the wallboard metrics move after a
//! real queue call and API requests, the Grafana dashboard in `docs/grafana/` uses only
//! names `/metrics` exposes, `/healthz` tells a known warning (200, degraded, naming the
//! file to edit) from not serving calls, and the log is written in words with
//! timestamps in the configured zone.

mod common;

use common::queue::*;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One scrape of `/metrics`: samples (`name{labels}` → value) and the family names
/// with their types (`# TYPE` lines). Panics on a line that is not OpenMetrics text.
struct Scrape {
    samples: BTreeMap<String, f64>,
    families: BTreeMap<String, String>,
}

impl Scrape {
    fn of(server: &Server) -> Scrape {
        let (status, body) = server.http_get("/metrics");
        assert_eq!(status, 200, "{body}");
        assert!(body.ends_with("# EOF\n"), "no OpenMetrics EOF:\n{body}");
        let mut samples = BTreeMap::new();
        let mut families = BTreeMap::new();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                families.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') {
                let (name, value) = line.rsplit_once(' ').expect("sample line");
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value: {line}"));
                samples.insert(name.to_owned(), value);
            }
        }
        Scrape { samples, families }
    }

    fn get(&self, sample: &str) -> f64 {
        self.samples.get(sample).copied().unwrap_or(0.0)
    }

    /// The sum of the samples of `name` whose labels contain every one of `labels`.
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| {
                let base = k.split('{').next().unwrap_or_default();
                base == name && labels.iter().all(|l| k.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Every series name a query may use: the families, and for counters and
    /// histograms the names their samples carry.
    fn names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (family, kind) in &self.families {
            names.insert(family.clone());
            match kind.as_str() {
                "counter" => {
                    names.insert(format!("{family}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{family}{suffix}"));
                    }
                }
                _ => {}
            }
        }
        names
    }
}

/// The log's records at INFO and above (a record runs to the next timestamped line).
fn records_at_info_and_above(log: &str) -> Vec<String> {
    let mut records: Vec<String> = Vec::new();
    for line in log.lines() {
        match records.last_mut() {
            Some(record) if !line.starts_with(|c: char| c.is_ascii_digit()) => {
                record.push('\n');
                record.push_str(line);
            }
            _ => records.push(line.to_owned()),
        }
    }
    records
        .into_iter()
        .filter(|r| {
            matches!(
                r.split_whitespace().nth(1).unwrap_or_default(),
                "INFO" | "WARN" | "ERROR"
            )
        })
        .collect()
}

/// No Rust debug text in the records an operator reads.
fn assert_log_in_words(log: &str) {
    let records = records_at_info_and_above(log);
    assert!(records.len() > 5, "too short to judge:\n{log}");
    let debug_texts = ["Some(", "None,", "=None", "{ ", " }", "\\\""];
    let offending: Vec<&String> = records
        .iter()
        .filter(|r| debug_texts.iter().any(|d| r.contains(d)))
        .collect();
    assert!(
        offending.is_empty(),
        "Rust debug text ({debug_texts:?}) in log records:\n{offending:#?}"
    );
}

#[test]
fn a_queue_call_moves_the_wallboard_metrics_and_the_log_is_in_words_and_local_time() {
    let server = start(&queue_config("round_robin", 10, 3));
    let before = Scrape::of(&server);
    assert_eq!(before.get("hotline_calls_active"), 0.0);
    let port = free_port();
    sign_in(&server, "1001", port);
    let scrape = Scrape::of(&server);
    assert_eq!(
        scrape.get("hotline_agents{city=\"jinan\",state=\"available\"}"),
        1.0,
        "{:?}",
        scrape.samples
    );
    assert_eq!(scrape.get("hotline_queue_waiting{queue=\"jinan\"}"), 0.0);
    assert!(
        scrape
            .samples
            .contains_key("hotline_queue_waiting{queue=\"qingdao\"}")
    );
    assert!(scrape.get("hotline_sip_requests_total{direction=\"in\",method=\"REGISTER\"}") >= 1.0);
    // `sign_in` read `/api/queues` with a bearer token: the API latency was counted.
    assert!(
        scrape.sum(
            "hotline_api_request_duration_seconds_count",
            &["route=\"/api/queues\"", "status=\"200\""]
        ) >= 1.0,
        "{:?}",
        scrape.samples
    );

    let agent = agent_phone(&server, "acd_agent_uas.xml", port, 1, 120);
    let cwd = tempfile::tempdir().expect("tmp");
    let caller = {
        let sip = server.sip;
        let dir = cwd.path().to_path_buf();
        let http = server.http;
        std::thread::spawn(move || {
            let probe = ServerAddrs { sip, http };
            probe.call(&dir)
        })
    };
    // While the call is up, the wallboard shows it.
    let mut seen_active = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !caller.is_finished() {
        if Scrape::of(&server).get("hotline_calls_active") >= 1.0 {
            seen_active = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = caller.join().expect("caller thread");
    assert_eq!(
        out.status,
        Some(0),
        "caller:\n{}\n{}\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    let out = agent.join().expect("agent thread");
    assert_eq!(
        out.status,
        Some(0),
        "agent:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(seen_active, "hotline_calls_active never showed the call");

    let after = wait_for_scrape(&server, |s| {
        s.get("hotline_queue_answered_total{queue=\"jinan\"}") >= 1.0
            && s.get("hotline_calls_active") == 0.0
    });
    assert_eq!(
        after.get("hotline_queue_answered_total{queue=\"jinan\"}"),
        1.0
    );
    // `queue_hold_secs = 2`: answered well within the 20 s default target.
    assert_eq!(
        after.get("hotline_queue_answered_within_target_total{queue=\"jinan\"}"),
        1.0
    );
    assert_eq!(after.get("hotline_service_level_target_seconds"), 20.0);
    assert_eq!(
        after.get("hotline_queue_wait_seconds_count{queue=\"jinan\",outcome=\"answered\"}"),
        1.0
    );
    assert!(
        after.get("hotline_queue_wait_seconds_sum{queue=\"jinan\",outcome=\"answered\"}") > 0.0
    );
    assert!(after.get("hotline_call_setup_seconds_count{direction=\"in\"}") >= 1.0);
    assert!(
        after.get("hotline_call_setup_seconds_count{direction=\"out\"}") >= 1.0,
        "the agent leg's set-up was not timed: {:?}",
        after.samples
    );
    assert!(after.samples.contains_key("hotline_voice_messages_pending"));
    assert!(after.samples.contains_key("hotline_orders_overdue"));

    // The log: registrations and sign-ins at INFO with the number masked, words not
    // debug text, timestamps in Asia/Shanghai (the default zone).
    let log = server.log();
    assert_log_in_words(&log);
    let records = records_at_info_and_above(&log);
    assert!(
        records
            .iter()
            .any(|r| r.contains("phone registered") && r.contains("agent=****")),
        "no INFO line for the registration:\n{log}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.contains("agent signed in") && r.contains("reason=sign_in")),
        "no INFO line for the sign-in:\n{log}"
    );
    for record in &records {
        let stamp = record.split_whitespace().next().unwrap_or_default();
        assert!(
            stamp.ends_with("+08:00") && chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "not an Asia/Shanghai RFC 3339 timestamp: {record}"
        );
    }
}

/// The caller side of one queue call (SIPp), from a thread.
struct ServerAddrs {
    sip: std::net::SocketAddr,
    #[allow(dead_code)]
    http: std::net::SocketAddr,
}

impl ServerAddrs {
    fn call(&self, cwd: &std::path::Path) -> Output {
        std::fs::copy(
            repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
            cwd.join("caller.wav"),
        )
        .expect("fixture");
        run_bounded(
            sipp_base("acd_caller.xml", free_port())
                .current_dir(cwd)
                .args(["-s", "12348", "-set", "caller", "053188886666"])
                .args(["-m", "1", "-l", "1", "-timeout", "45"])
                .arg(self.sip.to_string()),
            Duration::from_secs(55),
        )
    }
}

fn wait_for_scrape(server: &Server, mut done: impl FnMut(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = Scrape::of(server);
        if done(&scrape) || Instant::now() > deadline {
            return scrape;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_metric_the_grafana_dashboard_uses_is_exposed() {
    // With queues configured (the queue and agent series exist) and after one API
    // request (the latency histogram has a series).
    let server = start(&queue_config("round_robin", 10, 3));
    let (status, body) = api(&server, "/api/queues");
    assert_eq!(status, 200, "{body}");
    let names = Scrape::of(&server).names();
    let text = std::fs::read_to_string(repo_root().join("docs/grafana/hotline.json"))
        .expect("docs/grafana/hotline.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("hotline_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                used.insert(tail[..end].to_owned());
                rest = &tail[end..];
            }
        }
    }
    assert!(
        used.len() >= 15,
        "the dashboard names too few metrics: {used:?}"
    );
    let missing: Vec<&String> = used.iter().filter(|n| !names.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard uses names /metrics does not expose: {missing:?}"
    );
}

#[test]
fn healthz_is_200_degraded_for_a_missing_calendar_year_naming_the_file_and_logs_in_utc() {
    // A calendar that ends with 2025: this year and next are missing, whatever today
    // is; the server serves calls, with a warning.
    let dir = tempfile::tempdir().expect("tmp");
    let calendar = dir.path().join("short-calendar.toml");
    let shipped = std::fs::read_to_string(repo_root().join("config/calendar/cn-workdays.toml"))
        .expect("shipped calendar");
    let upto_2025 = shipped
        .split_once("[years.2026]")
        .map(|(head, _)| head.to_owned())
        .expect("the shipped calendar has 2026");
    let upto_2025 = upto_2025
        .lines()
        .map(|l| match l {
            l if l.starts_with("last_year") => "last_year = 2025".to_owned(),
            l if l.starts_with("missing_years") => "missing_years = []".to_owned(),
            l => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&calendar, upto_2025).expect("calendar");
    let config = format!(
        "{}\n[log]\ntimezone = \"UTC\"\n",
        TEST_CONFIG.replace(
            "\"CALENDAR\"",
            &format!("{:?}", calendar.display().to_string())
        )
    );
    let server = Server::start_in(dir, &config, &[]);
    let (status, body) = server.http_get("/healthz");
    assert_eq!(status, 200, "a known warning must not page: {body}");
    let h: serde_json::Value = serde_json::from_str(&body).expect("health JSON");
    assert_eq!(h["status"], "degraded", "{body}");
    assert_eq!(h["serving_calls"], true, "{body}");
    assert_eq!(h["sip"], "ok", "{body}");
    assert_eq!(h["database"], "ok", "{body}");
    let warning = h["warnings"][0].as_str().expect("warning");
    let file = std::fs::canonicalize(&calendar).expect("calendar path");
    assert!(
        warning.contains("not loaded") && warning.contains(&file.display().to_string()),
        "the warning does not name the file to edit: {warning}"
    );
    // UTC timestamps as configured.
    let log = server.log();
    let records = records_at_info_and_above(&log);
    assert!(!records.is_empty(), "{log}");
    for record in &records {
        let stamp = record.split_whitespace().next().unwrap_or_default();
        assert!(
            stamp.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "not a UTC RFC 3339 timestamp: {record}"
        );
    }
}

/// `HOTLINE_FAKE_NOW` shifts the one wall clock: an order taken through the API on a
/// server started at a demo time is received at that time (as the calls' orders are),
/// not at the machine's date.
#[test]
fn the_api_reads_the_same_shifted_clock_as_the_calls() {
    let server = Server::start_with(
        &format!("{TEST_CONFIG}{ORDER_DESK_CONFIG}"),
        &[("HOTLINE_FAKE_NOW", "2026-02-14T10:00+08:00")],
    );
    let session = login_order_desk(&server);
    let (status, resp) = create_order(&server, &session, "one-clock");
    assert_eq!(status, 201, "{resp}");
    let order = body_json(&resp);
    let received = order["fields"]["received_at"].as_str().unwrap_or_default();
    assert!(
        received.starts_with("2026-02-14T10:0"),
        "received_at {received:?} is not the server's shifted time: {order}"
    );
    let id = order["id"].as_str().unwrap_or_default();
    assert!(
        id.contains("20260214"),
        "order number {id:?} is not dated on 2026-02-14"
    );
}

/// H-15, W-19, W-20: the running server publishes the reports of the month, quarter
/// and year that ended before its clock by itself (nobody asks), files them under the
/// data directory, and lists them to a supervisor.
#[test]
fn the_server_publishes_the_ended_periods_reports_by_itself() {
    let server = Server::start_with(
        &shipped_config(),
        &[("HOTLINE_FAKE_NOW", "2026-04-02T08:00+08:00")],
    );
    let session = login(&server, "supervisor", "demo-supervisor");
    let mut listed = String::new();
    let published = wait_until(Duration::from_secs(20), || {
        let (status, body) = get(&server, &session, "/api/reports");
        listed = body;
        status == 200 && body_json(&listed)["reports"].as_array().map(Vec::len) == Some(3)
    });
    assert!(published, "{listed}\n{}", server.log());
    let ids: Vec<String> = body_json(&listed)["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, ["2026-03", "2026-Q1", "2025"]);
    let files: Vec<String> = std::fs::read_dir(server.data_dir().join("reports"))
        .expect("reports directory")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(files.len(), 6, "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("2026-03-") && f.ends_with(".xlsx"))
    );
    let (status, page) = get(&server, &session, "/api/reports/2026-Q1/html");
    assert_eq!(status, 200);
    assert!(page.contains("12348公共法律服务热线2026年第1季度运行报告"));
    // This test's data directory has no analysis word lists: the reports are published
    // all the same, saying why they have no topics.
    assert!(page.contains("热点分析未能完成"), "{page}");
}
