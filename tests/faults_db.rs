//! The database goes away mid-run. A private PostgreSQL 15 instance (initdb + pg_ctl as
//! the `postgres` user, 127.0.0.1 on a free port, in the test's temp dir) is started for
//! this test only — the machine's shared PostgreSQL is never touched — the server is
//! pointed at it, and it is stopped under the server's feet: signalling and the IVR must
//! keep answering, `/healthz` must say down (503: a monitor pages), and once it is back orders are written
//! again. One cluster has its data directory on a small tmpfs that fills up instead.
//! Needs root and PostgreSQL 15 (as CI has): without them the tests fail.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A private PostgreSQL cluster, stopped (immediate) on drop.
struct PrivatePg {
    data: PathBuf,
    port: u16,
    /// The tmpfs the data directory is on, if any: unmounted after the cluster stopped.
    disk: Option<SmallDisk>,
    _dir: tempfile::TempDir,
}

fn as_postgres(args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("runuser")
}

impl PrivatePg {
    /// Panics when this machine cannot run one (no PostgreSQL 15, not root): CI runs
    /// these tests as root with PostgreSQL installed, and a test that cannot run fails.
    fn start() -> PrivatePg {
        PrivatePg::start_on(None)
    }

    /// With the data directory on a tmpfs of `size` when given (see [`SmallDisk`]).
    fn start_on(size: Option<&str>) -> PrivatePg {
        assert!(
            Path::new(PG_BIN).join("initdb").is_file(),
            "no {PG_BIN}/initdb (apt-get install postgresql-15)"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("pg");
        let disk = size.map(|size| SmallDisk::mount(&data, size));
        std::fs::create_dir_all(&data).expect("pg dir");
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&data)
            .status();
        assert!(
            chown.is_ok_and(|s| s.success()),
            "cannot chown a directory to postgres (run as root)"
        );
        let data_s = data.display().to_string();
        let init = as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            &data_s,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let pg = PrivatePg {
            data,
            port: free_port(),
            disk,
            _dir: dir,
        };
        pg.start_again();
        pg
    }

    fn start_again(&self) {
        let data_s = self.data.display().to_string();
        let options = format!(
            "-p {} -k {data_s} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        let start = || {
            as_postgres(&[
                &format!("{PG_BIN}/pg_ctl"),
                "-D",
                &data_s,
                "-o",
                &options,
                "-l",
                &format!("{data_s}/server.log"),
                "-w",
                "-t",
                "30",
                "start",
            ])
        };
        // Seen once in CI with many servers starting beside it: the restart did not come
        // up. Its log says why; a second try after a pause rules out a passing clash.
        let mut out = start();
        if !out.status.success() {
            std::thread::sleep(std::time::Duration::from_secs(2));
            out = start();
        }
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\nserver.log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
        );
    }

    fn stop(&self) {
        let data_s = self.data.display().to_string();
        let _ = as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            &data_s,
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config() -> String {
    let prompts = repo_root().join("config/prompts/zh");
    let base = 37000 + (std::process::id() % 200) as u16 * 40;
    format!(
        "{TEST_CONFIG}{ORDER_DESK_CONFIG}
[media]
rtp_port_min = {base}
rtp_port_max = {}
media_timeout_secs = 20
prompts_dir = \"{}\"

[ivr]
greeting = \"beep\"
voice_message_intro = \"beep\"
",
        base + 39,
        prompts.display()
    )
}

fn options_status(server: &Server) -> Option<u16> {
    let client = RawUdp::new(server.sip);
    let local = client.local();
    let options = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKdb{port}\r\n\
         From: <sip:probe@{local}>;tag=db\r\nTo: <sip:{sip}>\r\nCall-ID: db-{port}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sip = server.sip,
        port = local.port()
    );
    client.request(&options).map(|r| status_of(&r))
}

fn start(pg: &PrivatePg) -> Server {
    Server::start_with(
        &config(),
        &[
            ("DATABASE_URL", pg.url().as_str()),
            ("HOTLINE_FAKE_NOW", "2026-02-14T20:00+08:00"),
        ],
    )
}

#[test]
fn postgres_stopped_mid_run_calls_flow_health_degrades_and_calls_and_orders_resume() {
    let pg = PrivatePg::start();
    let server = start(&pg);
    let session = login_order_desk(&server);
    let (status, resp) = create_order(&server, &session, "before");
    assert_eq!(status, 201, "{resp}");
    // (`status` may already be "degraded" for a calendar warning: `database` is the check.)
    assert_eq!(health(&server)["database"], "ok");

    pg.stop();
    // Signalling and the IVR do not need the database.
    assert_eq!(
        options_status(&server),
        Some(200),
        "OPTIONS during the outage"
    );
    let call = ivr_call(&server);
    assert_eq!(
        call.status,
        Some(0),
        "the IVR did not answer during the outage:\n{}\n{}",
        call.stdout,
        server.log()
    );
    let h = health(&server);
    // Calls are still served (the IVR answered above); the database needs someone.
    assert_eq!(h["status"], "failing", "{h}");
    assert_eq!(h["serving_calls"], true, "{h}");
    assert_eq!(h["database"], "unreachable", "{h}");
    // A monitor pages on the status code.
    assert_eq!(server.http_get("/healthz").0, 503);
    // The call's record and voice message wait in the call-record outbox (after the
    // store's 5 s pool timeout), not in the log as "not stored".
    assert!(
        wait_until(
            Duration::from_secs(15),
            || health(&server)["queued_call_records"] == 1
        ),
        "the call's record was not queued: {}\n{}",
        health(&server),
        server.log()
    );
    assert_eq!(server.metric("hotline_call_records_queued_total"), 1);
    assert_eq!(server.metric("hotline_call_records_outbox_depth"), 1);
    let (status, _) = create_order(&server, &session, "during");
    assert!(status != 0, "the API stopped answering during the outage");

    pg.start_again();
    assert!(
        wait_until(
            Duration::from_secs(30),
            || health(&server)["queued_call_records"] == 0
        ),
        "the queued call record never landed: {}\n{}",
        health(&server),
        server.log()
    );
    assert_eq!(server.metric("hotline_call_records_replayed_total"), 1);
    // The record is listed, complete: the IVR answered after hours and the caller hung
    // up. (A voice message rides in the same entry: `call_outbox` tests.)
    let (status, resp) = get(&server, &session, "/api/calls");
    assert_eq!(status, 200, "{resp}");
    let listed = body_json(&resp);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["in_progress"], false, "{listed}");
    assert_eq!(
        listed[0]["record"]["path"],
        serde_json::json!(["ivr", "after_hours", "abandoned"]),
        "{listed}"
    );
    let resumed = wait_until(Duration::from_secs(20), || {
        create_order(&server, &session, "after").0 == 201
    });
    assert!(
        resumed,
        "orders not created once PostgreSQL is back:\n{}",
        server.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || health(&server)["database"]
            == "ok"),
        "healthz still says the database is unreachable"
    );
}

fn create_order_with_key(
    server: &Server,
    session: &(String, String),
    key: &str,
    idempotency_key: &str,
) -> (u16, String) {
    let body = serde_json::json!({
        "contact_name": "李四",
        "contact_phone": "13912345678",
        "category": "complaint",
        "urgency": "normal",
        "business_area": "legal_aid",
        "description": format!("数据库中断测试 {key}"),
        "channel": "phone",
        "city": "jinan",
    })
    .to_string();
    // (`http` writes the CSRF value into the header block verbatim: one more line.)
    let session = (
        session.0.clone(),
        format!("{}\r\nIdempotency-Key: {idempotency_key}", session.1),
    );
    http(server.http, "POST", "/api/orders", &session, &body)
}

#[test]
fn postgres_outage_order_writes_are_queued_and_land_when_it_is_back() {
    let pg = PrivatePg::start();
    let server = start(&pg);
    let session = login_order_desk(&server);
    let (status, resp) = create_order(&server, &session, "before");
    assert_eq!(status, 201, "{resp}");
    let before = body_json(&resp)["id"].as_str().expect("id").to_string();
    pg.stop();

    // Accepted for later: 202 with the order's id and the `queued` marker.
    let (status, resp) = create_order(&server, &session, "queued");
    assert_eq!(status, 202, "order write during the outage: {resp}");
    let queued = body_json(&resp);
    assert_eq!(queued["queued"], true, "{resp}");
    let first = queued["id"].as_str().expect("id").to_string();
    // Repeating a create with its Idempotency-Key gives the same queued order.
    let (status, resp) = create_order_with_key(&server, &session, "keyed", "outage-key-1");
    assert_eq!(status, 202, "{resp}");
    let keyed = body_json(&resp)["id"].as_str().expect("id").to_string();
    let (status, resp) = create_order_with_key(&server, &session, "keyed", "outage-key-1");
    assert_eq!(status, 202, "{resp}");
    assert_eq!(body_json(&resp)["id"], keyed.as_str(), "{resp}");
    // The same key with another body is refused.
    let (status, resp) = create_order_with_key(&server, &session, "other", "outage-key-1");
    assert_eq!(status, 422, "{resp}");

    let h = health(&server);
    assert_eq!(h["status"], "failing", "{h}");
    assert_eq!(h["database"], "unreachable", "{h}");
    assert_eq!(h["queued_orders"], 2, "{h}");
    assert_eq!(server.metric("hotline_orders_queued_total"), 2);
    assert_eq!(server.metric("hotline_orders_outbox_depth"), 2);
    // Commands on an existing order cannot be decided without it: 503, retry later.
    let (status, resp) = http(
        server.http,
        "POST",
        &format!("/api/orders/{before}/add_note"),
        &session,
        r#"{"note":"停电中"}"#,
    );
    assert_eq!(status, 503, "{resp}");
    assert!(resp.to_ascii_lowercase().contains("retry-after:"), "{resp}");

    pg.start_again();
    let all_landed = wait_until(Duration::from_secs(30), || {
        landed(&server, &session, &first) && landed(&server, &session, &keyed)
    });
    assert!(
        all_landed,
        "queued orders {first} {keyed} never landed:\n{}",
        server.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || health(&server)["queued_orders"]
            == 0),
        "{}",
        health(&server)
    );
    assert_eq!(server.metric("hotline_orders_replayed_total"), 2);
    // Replays went through the same ledger: the chain still verifies.
    let (status, resp) = get(&server, &session, "/api/ledger/verify");
    assert_eq!(status, 200, "{resp}");
    assert_eq!(body_json(&resp)["ok"], true, "{resp}");
    // The key still answers with the order, now from the database.
    let (status, resp) = create_order_with_key(&server, &session, "keyed", "outage-key-1");
    assert_eq!(status, 201, "{resp}");
    assert_eq!(body_json(&resp)["id"], keyed.as_str(), "{resp}");
}

#[test]
fn kill_9_while_orders_are_queued_loses_none_of_them() {
    let pg = PrivatePg::start();
    let server = start(&pg);
    let session = login_order_desk(&server);
    pg.stop();
    let mut ids = Vec::new();
    for n in 0..3 {
        let (status, resp) = create_order(&server, &session, &format!("kill-{n}"));
        assert_eq!(status, 202, "{resp}");
        ids.push(body_json(&resp)["id"].as_str().expect("id").to_string());
    }
    // kill -9 while they wait for the database, which then comes back.
    let mut server = server;
    server.kill();
    pg.start_again();
    let server = server.restart(&[
        ("DATABASE_URL", pg.url().as_str()),
        ("HOTLINE_FAKE_NOW", "2026-02-14T20:00+08:00"),
    ]);
    let session = login_order_desk(&server);
    let all = wait_until(Duration::from_secs(30), || {
        ids.iter().all(|id| landed(&server, &session, id))
    });
    assert!(all, "queued orders lost by kill -9:\n{}", server.log());
    assert!(
        server.log().contains("queued by an earlier run"),
        "{}",
        server.log()
    );
    let (status, resp) = get(&server, &session, "/api/ledger/verify");
    assert_eq!(status, 200, "{resp}");
    assert_eq!(body_json(&resp)["ok"], true, "{resp}");
}

#[test]
fn postgres_outage_register_is_still_answered() {
    let pg = PrivatePg::start();
    let server = start(&pg);
    pg.stop();
    assert_eq!(options_status(&server), Some(200));
    let agent = RawUdp::new(server.sip);
    let sent = Instant::now();
    let mut reg = register_with_password(&agent, "1001", "secret1001", false, 3600);
    // A UA retransmits for 32 s (Timer F), but an answer later than a second or two is
    // already a failure for phones re-registering in a burst after an outage.
    while reg.is_none() && sent.elapsed() < Duration::from_secs(12) {
        reg = agent.recv();
    }
    let waited = sent.elapsed();
    assert!(
        reg.as_deref().map(status_of).is_some_and(|s| s >= 200) && waited < Duration::from_secs(2),
        "REGISTER during the outage: {reg:?} after {waited:?}\n{}",
        server.log()
    );
}

/// PostgreSQL's data directory on a 64 MB tmpfs that fills up (the server's own data
/// directory, with the outbox journal, elsewhere): a create PostgreSQL cannot store is
/// queued (202, journaled) or refused, never answered 201 unstored; `/healthz` says the
/// database takes no writes; once the disk has room every acknowledged order lands and
/// survives a kill -9 of the server.
#[test]
fn postgres_on_a_full_disk_loses_no_acknowledged_order() {
    let pg = PrivatePg::start_on(Some("64m"));
    let server = start(&pg);
    let session = login_order_desk(&server);
    let mut acknowledged = Vec::new();
    let (status, resp) = create_order(&server, &session, "before");
    assert_eq!(status, 201, "{resp}");
    acknowledged.push(body_json(&resp)["id"].as_str().expect("id").to_owned());

    let disk = pg.disk.as_ref().expect("tmpfs");
    let filler = disk.fill("filler");
    let mut answers = Vec::new();
    // Enough orders to need new table and index pages.
    for n in 0..40 {
        let (status, resp) = create_order(&server, &session, &format!("full-{n}"));
        answers.push(status);
        match status {
            // (201: the order fitted pages PostgreSQL already had.)
            201 | 202 => acknowledged.push(body_json(&resp)["id"].as_str().expect("id").to_owned()),
            503 => {}
            _ => panic!(
                "create with PostgreSQL's disk full: {resp}\n{}",
                server.log()
            ),
        }
    }
    assert!(
        answers.contains(&202),
        "no create was queued while PostgreSQL's disk was full: {answers:?}\n{}",
        server.log()
    );
    let h = health(&server);
    assert_eq!(h["status"], "failing", "{h}");
    assert_ne!(h["database"], "ok", "{h}");

    std::fs::remove_file(&filler).expect("free the disk");
    if pg_down(&pg) {
        // PostgreSQL may have shut itself down on the full disk: the operator starts it.
        pg.start_again();
    }
    assert!(
        wait_until(Duration::from_secs(30), || health(&server)["queued_orders"]
            == 0),
        "queued orders did not land once the disk had room: {}\n{}",
        health(&server),
        server.log()
    );
    let server = server.restart(&[
        ("DATABASE_URL", pg.url().as_str()),
        ("HOTLINE_FAKE_NOW", "2026-02-14T20:00+08:00"),
    ]);
    let session = login_order_desk(&server);
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !landed(&server, &session, id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged orders lost ({answers:?}): {lost:?}\n{}",
        lost.len(),
        acknowledged.len(),
        server.log()
    );
    let (status, resp) = get(&server, &session, "/api/ledger/verify");
    assert_eq!(status, 200, "{resp}");
    assert_eq!(body_json(&resp)["ok"], true, "{resp}");
    eprintln!("creates with PostgreSQL's disk full answered {answers:?}");
}

/// `pg_ctl status` says the cluster is not running.
fn pg_down(pg: &PrivatePg) -> bool {
    let data_s = pg.data.display().to_string();
    !as_postgres(&[&format!("{PG_BIN}/pg_ctl"), "-D", &data_s, "status"])
        .status
        .success()
}
