//! Full disks, on real tmpfs mounts (needs root: a test fails when the mount is refused).
//!
//! - `recordings/` on 256 KiB: calls to the `record` test extension fill it within
//!   seconds; calls must go on, the failure must be logged (and counted), and
//!   signalling, the API and new calls must keep working.
//! - The data directory (SQLite, outbox journals) or the database alone on 6 MB that is
//!   filled: nothing acknowledged (201, 202, a REGISTER's 200, a call's record) may be
//!   lost, while full, once room comes back, or across a kill -9; what cannot be kept is
//!   refused (503), and `/healthz` says the database takes no writes.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config() -> String {
    let prompts = repo_root().join("config/prompts/zh");
    let base = 36000 + (std::process::id() % 200) as u16 * 40;
    format!(
        "{TEST_CONFIG}
[media]
rtp_port_min = {base}
rtp_port_max = {}
media_timeout_secs = 20
prompts_dir = \"{}\"

[[test_extensions]]
number = \"record\"
kind = \"record\"
",
        base + 39,
        prompts.display()
    )
}

fn sipp_record_calls(server: &Server, work: &Path, calls: u32, hold_ms: u64) -> Output {
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        work.join("caller.wav"),
    )
    .expect("copy fixture");
    let scenario = std::fs::read_to_string(sipp_scenario("call_audio.xml"))
        .expect("scenario")
        .replace("caller.wav,1,8", "caller.wav,-1,8");
    std::fs::write(work.join("looped.xml"), scenario).expect("write scenario");
    run_bounded(
        Command::new(require("sipp"))
            .current_dir(work)
            .args(["-sf", "looped.xml", "-s", "record", "-i", "127.0.0.1"])
            .args(["-mi", "127.0.0.1", "-p", &free_port().to_string()])
            .args(["-mp", &free_media_port().to_string()])
            .args([
                "-m",
                &calls.to_string(),
                "-l",
                &calls.to_string(),
                "-r",
                "10",
            ])
            .args(["-d", &hold_ms.to_string(), "-nostdin", "-timeout", "40"])
            .stdin(Stdio::null())
            .arg(server.sip.to_string()),
        Duration::from_secs(45),
    )
}

fn options_answered(server: &Server) -> bool {
    let client = RawUdp::new(server.sip);
    let local = client.local();
    let options = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKdisk{n}\r\n\
         From: <sip:probe@{local}>;tag=disk\r\nTo: <sip:{sip}>\r\nCall-ID: disk-{n}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sip = server.sip,
        n = rand_suffix()
    );
    client
        .request(&options)
        .is_some_and(|r| status_of(&r) == 200)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Start the server with its recordings directory on a full-able 256 KiB tmpfs.
fn start_on_small_disk() -> (Server, SmallDisk) {
    let dir = tempfile::tempdir().expect("tmp");
    let disk = SmallDisk::mount(&dir.path().join("recordings"), "256k");
    (Server::start_in(dir, &config(), &[]), disk)
}

#[test]
fn disk_full_under_recordings_keeps_calls_signalling_and_api_working() {
    let (server, _disk) = start_on_small_disk();
    let work = tempfile::tempdir().expect("tmp");
    // 6 calls × 16 kB/s of audio fill 256 KiB in ~3 s; they are held 8 s.
    let started = Instant::now();
    let out = sipp_record_calls(&server, work.path(), 6, 8_000);
    assert_eq!(
        out.status,
        Some(0),
        "calls failed while the disk filled (after {:?}):\n{}\n{}\nserver log:\n{}",
        started.elapsed(),
        out.stdout,
        out.stderr,
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("recording failed") || log.contains("recording not started"),
        "the disk-full failure was not logged:\n{log}"
    );
    // Nothing else broke: signalling, the API, and a new recorded call after the disk is
    // full (its recorder cannot even write a header).
    assert!(options_answered(&server), "OPTIONS not answered");
    let (status, body) = server.http_get("/healthz");
    assert_eq!(status, 200, "{body}");
    let again = sipp_record_calls(&server, work.path(), 1, 2_000);
    assert_eq!(again.status, Some(0), "a call on a full disk failed");
    let failures = log.matches("recording failed").count();
    eprintln!("recording-failure log lines over 6 calls: {failures}");
}

#[test]
fn disk_full_under_recordings_is_counted_in_metrics() {
    let (server, _disk) = start_on_small_disk();
    let work = tempfile::tempdir().expect("tmp");
    let out = sipp_record_calls(&server, work.path(), 6, 8_000);
    assert_eq!(out.status, Some(0));
    let (_, metrics) = server.http_get("/metrics");
    let counted = metrics.lines().any(|l| {
        l.starts_with("hotline_recording_failures_total")
            && l.split_whitespace()
                .last()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
    });
    assert!(
        counted,
        "no hotline_recording_failures_total > 0 in:\n{metrics}"
    );
}

/// The order desk on its own: no media, the data directory (SQLite, outbox journals) as
/// the test places it.
fn order_desk_config() -> String {
    format!("{TEST_CONFIG}{ORDER_DESK_CONFIG}")
}

/// `GET /api/orders` → (`total`, ids listed).
fn listed(server: &Server, session: &(String, String)) -> (i64, Vec<String>) {
    let (status, resp) = get(server, session, "/api/orders?per_page=200");
    assert_eq!(status, 200, "{resp}");
    let list = body_json(&resp);
    let ids = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|o| o["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (list["total"].as_i64().unwrap_or(-1), ids)
}

/// The whole data directory (SQLite database, WAL, outbox journals) on a 6 MB tmpfs that
/// fills up: no order answered 201 or 202 may be lost — not while the disk is full, not
/// once room comes back, not across a kill -9 — and a write nobody can keep is refused
/// (5xx), never acknowledged. `/healthz` must say so while writes fail.
#[test]
fn full_data_disk_loses_no_acknowledged_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let disk = SmallDisk::mount(&dir.path().join("data"), "6m");
    let server = Server::start_in(dir, &order_desk_config(), &[]);
    let session = login_order_desk(&server);
    let mut acknowledged = Vec::new();
    let (status, resp) = create_order(&server, &session, "before");
    assert_eq!(status, 201, "{resp}");
    acknowledged.push(body_json(&resp)["id"].as_str().expect("id").to_owned());

    let filler = disk.fill("filler");
    let mut answers = Vec::new();
    // Enough attempts that some fail at the COMMIT itself (the WAL is written then).
    for n in 0..30 {
        let (status, resp) = create_order(&server, &session, &format!("full-{n}"));
        answers.push(status);
        match status {
            201 | 202 => {
                acknowledged.push(body_json(&resp)["id"].as_str().expect("id").to_owned());
            }
            503 | 507 => {}
            _ => panic!("create on a full disk: {resp}\n{}", server.log()),
        }
    }
    let h = health(&server);
    assert_eq!(h["status"], "failing", "{h} after {answers:?}");
    assert_ne!(h["database"], "ok", "{h} after {answers:?}");

    std::fs::remove_file(&filler).expect("free the disk");
    let resumed = wait_until(Duration::from_secs(20), || {
        let (status, resp) = create_order(&server, &session, "after");
        if status == 201 || status == 202 {
            acknowledged.push(body_json(&resp)["id"].as_str().expect("id").to_owned());
        }
        status == 201
    });
    assert!(
        resumed,
        "creates did not go back to 201 once the disk had room ({answers:?}):\n{}",
        server.log()
    );
    assert!(
        wait_until(Duration::from_secs(20), || health(&server)["queued_orders"]
            == 0),
        "{}",
        health(&server)
    );
    let (total, ids) = listed(&server, &session);
    assert_eq!(
        total,
        ids.len() as i64,
        "total disagrees with the items listed"
    );
    for id in &acknowledged {
        assert!(
            ids.contains(id),
            "acknowledged {id} not listed: {ids:?} ({answers:?})"
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || health(&server)["database"]
            == "ok"),
        "{}",
        health(&server)
    );

    let server = server.restart(&[]);
    let session = login_order_desk(&server);
    let (total, ids) = listed(&server, &session);
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !ids.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged orders lost by the restart: {lost:?} ({answers:?})\n{}",
        lost.len(),
        acknowledged.len(),
        server.log()
    );
    assert_eq!(total, ids.len() as i64);
    let (status, resp) = get(&server, &session, "/api/ledger/verify");
    assert_eq!(status, 200, "{resp}");
    assert_eq!(body_json(&resp)["ok"], true, "{resp}");
    eprintln!(
        "creates on the full disk answered {answers:?}; {} acknowledged, none lost",
        acknowledged.len()
    );
    drop(server);
    drop(disk);
}

/// Only the SQLite database on a 6 MB tmpfs that fills up (the data directory with the
/// outbox journal elsewhere): creates are queued (202, fsync'd journal), `/healthz` says
/// the database takes no writes, and once room comes back every queued order lands —
/// listed, counted, after a kill -9 too — and new creates are 201 again.
#[test]
fn full_database_disk_queues_orders_that_land_once_room_comes_back() {
    let db_dir = tempfile::tempdir().expect("tmp");
    let disk = SmallDisk::mount(db_dir.path(), "6m");
    let url = format!(
        "sqlite://{}?mode=rwc",
        db_dir.path().join("hotline.db").display()
    );
    let env = [("DATABASE_URL", url.as_str())];
    let server = Server::start_with(&order_desk_config(), &env);
    let session = login_order_desk(&server);
    let mut acknowledged = Vec::new();
    let (status, resp) = create_order(&server, &session, "before");
    assert_eq!(status, 201, "{resp}");
    acknowledged.push(body_json(&resp)["id"].as_str().expect("id").to_owned());

    let filler = disk.fill("filler");
    let mut answers = Vec::new();
    for n in 0..6 {
        let (status, resp) = create_order(&server, &session, &format!("queued-{n}"));
        answers.push(status);
        assert_eq!(status, 202, "create with the database's disk full: {resp}");
        acknowledged.push(body_json(&resp)["id"].as_str().expect("id").to_owned());
    }
    let h = health(&server);
    assert_eq!(h["status"], "failing", "{h}");
    assert_eq!(h["database"], "unwritable", "{h}");
    assert_eq!(h["queued_orders"], 6, "{h}");

    std::fs::remove_file(&filler).expect("free the disk");
    assert!(
        wait_until(Duration::from_secs(30), || health(&server)["queued_orders"]
            == 0),
        "queued orders did not land once the disk had room: {}\n{}",
        health(&server),
        server.log()
    );
    let (status, resp) = create_order(&server, &session, "after");
    assert_eq!(status, 201, "{resp}");
    acknowledged.push(body_json(&resp)["id"].as_str().expect("id").to_owned());
    assert_eq!(health(&server)["database"], "ok");
    let (total, ids) = listed(&server, &session);
    assert_eq!(
        total,
        ids.len() as i64,
        "total disagrees with the items listed"
    );
    for id in &acknowledged {
        assert!(ids.contains(id), "acknowledged {id} not listed: {ids:?}");
    }

    let server = server.restart(&env);
    let session = login_order_desk(&server);
    let (total, ids) = listed(&server, &session);
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !ids.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged orders lost by the restart: {lost:?}\n{}",
        lost.len(),
        acknowledged.len(),
        server.log()
    );
    assert_eq!(total, ids.len() as i64);
    let (status, resp) = get(&server, &session, "/api/ledger/verify");
    assert_eq!(status, 200, "{resp}");
    assert_eq!(body_json(&resp)["ok"], true, "{resp}");
    drop(server);
    drop(disk);
}

/// REGISTER with the data directory (SQLite) on a full 6 MB tmpfs: the binding cannot be
/// stored, so the phone is answered 503 with Retry-After, never 200 (a retransmission
/// neither); once the disk has
/// room a registration is answered 200 and a restart restores exactly that one.
#[test]
fn register_on_a_full_data_disk_is_refused_until_it_is_stored() {
    let dir = tempfile::tempdir().expect("tmp");
    let disk = SmallDisk::mount(&dir.path().join("data"), "6m");
    let server = Server::start_in(dir, TEST_CONFIG, &[]);
    let filler = disk.fill("filler");
    let phone = RawUdp::new(server.sip);
    let register =
        authorized_register(&phone, "1001", "secret1001", false, 3600).expect("challenged");
    let answer = phone.request(&register).expect("REGISTER answered");
    assert_eq!(status_of(&answer), 503, "{answer}\n{}", server.log());
    assert!(header(&answer, "Retry-After").is_some(), "{answer}");
    assert!(header(&answer, "Contact").is_none(), "{answer}");
    // The phone did not hear the 503 and sends the same REGISTER again: the transaction
    // answers it, with the same 503 (it used to hold the 200 it was first given).
    let again = phone.request(&register).expect("retransmission answered");
    assert_eq!(status_of(&again), 503, "{again}\n{}", server.log());

    std::fs::remove_file(&filler).expect("free the disk");
    // (A phone retries with a higher CSeq; a new one has its own Call-ID.)
    let phone = RawUdp::new(server.sip);
    let answer = register_with_password(&phone, "1001", "secret1001", false, 3600)
        .expect("REGISTER answered");
    assert_eq!(status_of(&answer), 200, "{answer}\n{}", server.log());

    let server = server.restart(&[]);
    assert!(
        server.log().contains("restored_registrations=1"),
        "{}",
        server.log()
    );
    drop(server);
    drop(disk);
}

/// A call that ends while the data directory (SQLite and the outbox journals) is on a full
/// tmpfs: its record can be neither stored nor journaled, so it is held in memory (not
/// logged as lost) and stored once the disk has room.
#[test]
fn call_record_of_a_call_on_a_full_data_disk_is_stored_once_room_comes_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let disk = SmallDisk::mount(&dir.path().join("data"), "6m");
    let config = format!(
        "{}{ORDER_DESK_CONFIG}\n[ivr]\ngreeting = \"beep\"\nvoice_message_intro = \"beep\"\n",
        config()
    );
    // After hours: the IVR answers and takes a voice message.
    let server = Server::start_in(
        dir,
        &config,
        &[("HOTLINE_FAKE_NOW", "2026-02-14T20:00+08:00")],
    );
    let session = login_order_desk(&server);
    let filler = disk.fill("filler");
    let call = ivr_call(&server);
    assert_eq!(call.status, Some(0), "{}\n{}", call.stdout, call.stderr);
    assert!(
        wait_until(
            Duration::from_secs(15),
            || health(&server)["queued_call_records"] == 1
        ),
        "the call's record is not waiting: {}\n{}",
        health(&server),
        server.log()
    );
    assert!(!server.log().contains("CDR lost"), "{}", server.log());

    std::fs::remove_file(&filler).expect("free the disk");
    assert!(
        wait_until(
            Duration::from_secs(20),
            || health(&server)["queued_call_records"] == 0
        ),
        "the held record never landed: {}\n{}",
        health(&server),
        server.log()
    );
    let (status, resp) = get(&server, &session, "/api/calls");
    assert_eq!(status, 200, "{resp}");
    let listed = body_json(&resp);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["in_progress"], false, "{listed}");
    drop(server);
    drop(disk);
}
