//! Faults with calls up: the process killed (`kill -9`) while 20 recorded calls stream
//! audio and work orders are being created through the API, and SIGTERM while calls are
//! in progress. The real binary on loopback, SIPp as the trunk, bounded (< 60 s each).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CALLS: u32 = 20;

/// The shared test config, a supervisor (ledger), the media plane and `record`.
fn config(rtp_base: u16) -> String {
    let prompts = repo_root().join("config/prompts/zh");
    format!(
        "{TEST_CONFIG}
[[users]]
id = \"9001\"
name = \"督办\"
unit = \"province\"
password = \"pw-9001\"
roles = [\"agent\", \"supervisor\"]

[[units]]
id = \"jinan\"
name = \"济南市司法局\"
kind = \"city\"
parent = \"province\"

[media]
rtp_port_min = {rtp_base}
rtp_port_max = {}
media_timeout_secs = 20
prompts_dir = \"{}\"
max_test_call_secs = 120

[ivr]
greeting = \"beep\"
voice_message_intro = \"beep\"

[[test_extensions]]
number = \"record\"
kind = \"record\"
",
        rtp_base + 99,
        prompts.display()
    )
}

/// A per-process RTP range (100 ports) so parallel test binaries do not collide.
fn rtp_base() -> u16 {
    33000 + (std::process::id() % 200) as u16 * 100
}

/// Minimal HTTP/1.1 client: (status, headers+body text).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: &str,
    body: &str,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nCookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, resp)
}

fn body_json(resp: &str) -> serde_json::Value {
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// A console session: (cookie, csrf).
fn login(http_addr: SocketAddr, user: &str, password: &str) -> (String, String) {
    let (status, resp) = http(
        http_addr,
        "POST",
        "/api/login",
        "",
        "",
        &serde_json::json!({"user": user, "password": password}).to_string(),
    );
    assert_eq!(status, 200, "login {user}: {resp}");
    let cookie = resp
        .lines()
        .find_map(|l| {
            l.strip_prefix("Set-Cookie: ")
                .or_else(|| l.strip_prefix("set-cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("session cookie")
        .to_string();
    let csrf = body_json(&resp)["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();
    (cookie, csrf)
}

fn order_body(n: usize) -> String {
    serde_json::json!({
        "contact_name": "张三",
        "contact_phone": "13812345678",
        "category": "consultation",
        "urgency": "normal",
        "business_area": "legal_aid",
        "units": [],
        "description": format!("咨询法律援助申请条件 #{n}"),
        "channel": "phone",
        "city": "jinan",
    })
    .to_string()
}

/// Create orders in a loop until `stop`; returns the ids whose create got a 2xx.
fn order_writer(
    http_addr: SocketAddr,
    session: (String, String),
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<String>, Vec<String>)> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut refused = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let (status, resp) = http(
                http_addr,
                "POST",
                "/api/orders",
                &session.0,
                &session.1,
                &order_body(n),
            );
            if (200..300).contains(&status) {
                let id = body_json(&resp)["id"].as_str().map(str::to_string);
                acked.push(id.expect("created order has an id"));
            } else if status != 0 {
                refused.push(format!("{status}: {resp}"));
            }
        }
        (acked, refused)
    })
}

/// SIPp placing `calls` trunk calls to `service` that stream looped speech and hold
/// `hold_ms`, in the background.
fn sipp_calls(server: &Server, work: &Path, service: &str, calls: u32, hold_ms: u64) -> Child {
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        work.join("caller.wav"),
    )
    .expect("copy fixture");
    let scenario = std::fs::read_to_string(sipp_scenario("call_audio.xml"))
        .expect("scenario")
        .replace("caller.wav,1,8", "caller.wav,-1,8");
    std::fs::write(work.join("looped.xml"), scenario).expect("write scenario");
    Command::new(require("sipp"))
        .current_dir(work)
        .args(["-sf", "looped.xml", "-s", service, "-i", "127.0.0.1"])
        .args(["-mi", "127.0.0.1", "-p", &free_port().to_string()])
        .args(["-mp", &free_media_port().to_string()])
        .args([
            "-m",
            &calls.to_string(),
            "-l",
            &calls.to_string(),
            "-r",
            "20",
        ])
        .args(["-d", &hold_ms.to_string(), "-nostdin", "-timeout", "50"])
        .args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"])
        .arg(server.sip.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp")
}

/// Duration in seconds of a WAV whose every sample decodes (`None` when hound rejects it).
fn playable_seconds(path: &Path) -> Option<f64> {
    let mut reader = hound::WavReader::open(path).ok()?;
    let spec = reader.spec();
    let mut samples = 0u64;
    for s in reader.samples::<i16>() {
        s.ok()?;
        samples += 1;
    }
    Some(samples as f64 / f64::from(spec.channels) / f64::from(spec.sample_rate))
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Restart the server in the same directory (data, recordings) after it was killed.
fn restart(server: Server, env: &[(&str, &str)]) -> Server {
    server.restart(env)
}

fn stop_child(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn kill_9_with_recorded_calls_up_and_orders_being_written_loses_nothing_acknowledged() {
    let server = Server::start_with(&config(rtp_base()), &[]);
    // A registration that must come back.
    let agent = RawUdp::new(server.sip);
    let ok = register_with_password(&agent, "1001", "secret1001", false, 3600)
        .expect("REGISTER answered");
    assert_eq!(status_of(&ok), 200, "{ok}");

    let session = login(server.http, "9001", "pw-9001");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = order_writer(server.http, session.clone(), stop.clone());

    let work = tempfile::tempdir().expect("tmp");
    let sipp = sipp_calls(&server, work.path(), "record", CALLS, 40_000);
    let recordings = server.dir.path().join("recordings");
    // All 20 calls answered and recording (one WAV each), audio flowing for a while.
    let all_up = wait_until(Duration::from_secs(15), || {
        find_wavs(&recordings).len() >= CALLS as usize
    });
    assert!(
        all_up,
        "only {} recordings started; log:\n{}",
        find_wavs(&recordings).len(),
        server.log()
    );
    std::thread::sleep(Duration::from_secs(3));

    let mut server = server;
    server.kill(); // SIGKILL: no shutdown path runs
    stop.store(true, Ordering::Relaxed);
    let (acked, refused) = writer.join().expect("writer");
    stop_child(sipp);
    assert!(refused.is_empty(), "orders refused while up: {refused:?}");
    assert!(!acked.is_empty(), "no order was created before the kill");

    let server = restart(server, &[]);
    // Registrations are back.
    assert!(
        server.metric("hotline_sip_registrations") >= 1,
        "the registration of 1001 did not come back:\n{}",
        server.log()
    );
    // Every acknowledged order is there with its events.
    let session = login(server.http, "9001", "pw-9001");
    for id in &acked {
        let (status, resp) = http(
            server.http,
            "GET",
            &format!("/api/orders/{id}"),
            &session.0,
            "",
            "",
        );
        assert_eq!(status, 200, "order {id} acknowledged but lost: {resp}");
        let (status, resp) = http(
            server.http,
            "GET",
            &format!("/api/orders/{id}/events"),
            &session.0,
            "",
            "",
        );
        assert_eq!(status, 200, "events of {id}: {resp}");
        let events = body_json(&resp);
        assert!(
            events.as_array().is_some_and(|e| !e.is_empty()),
            "order {id} has no events: {resp}"
        );
    }
    let (status, resp) = http(server.http, "GET", "/api/ledger/verify", &session.0, "", "");
    assert_eq!(status, 200, "{resp}");
    assert_eq!(body_json(&resp)["ok"], true, "ledger broken: {resp}");

    // The partial recordings are repaired at start-up: every one is a playable WAV
    // holding the audio that reached the disk (the calls were up >= 3 s).
    let wavs = find_wavs(&recordings);
    assert_eq!(wavs.len(), CALLS as usize, "{wavs:?}");
    let repaired = wait_until(Duration::from_secs(10), || {
        wavs.iter()
            .all(|w| playable_seconds(w).is_some_and(|secs| secs >= 1.0))
    });
    let lengths: Vec<_> = wavs.iter().map(|w| playable_seconds(w)).collect();
    assert!(
        repaired,
        "recordings not playable (seconds per file): {lengths:?}\n{}",
        server.log()
    );
}

/// Hotline calls (053112348, after hours: voice message) up when the process dies must be
/// closed in the CDR with a reason on the next start.
#[test]
fn kill_9_with_hotline_calls_up_closes_them_in_the_cdr_on_restart() {
    let env = [("HOTLINE_FAKE_NOW", "2026-02-14T20:00+08:00")];
    let server = Server::start_with(&config(rtp_base()), &env);
    let work = tempfile::tempdir().expect("tmp");
    let sipp = sipp_calls(&server, work.path(), "053112348", 3, 40_000);
    let up = wait_until(Duration::from_secs(15), || {
        server.log().matches("call answered").count() >= 3
    });
    assert!(up, "calls not answered:\n{}", server.log());
    std::thread::sleep(Duration::from_secs(2));
    // While they are up the API lists them as in progress (written at the answer).
    let (_, body) = server.api_get("/api/calls");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let in_progress = listed.as_array().map_or(0, |calls| {
        calls.iter().filter(|c| c["in_progress"] == true).count()
    });
    assert_eq!(
        in_progress, 3,
        "calls up are not listed in progress: {body}"
    );
    let mut server = server;
    server.kill();
    stop_child(sipp);
    let server = restart(server, &env);
    let (_, body) = server.api_get("/api/calls");
    let calls: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(calls.len(), 3, "calls that died are not in the CDR: {body}");
    for call in &calls {
        let record = &call["record"];
        assert_eq!(call["in_progress"], false, "{call}");
        assert_eq!(record["end_reason"], "crash", "{call}");
        assert_eq!(record["hung_up_first"], "system", "{call}");
        let arrival = record["arrival"].as_str().unwrap_or_default();
        let end = record["end"].as_str().unwrap_or_default();
        assert!(
            !end.is_empty() && end >= arrival,
            "end {end:?} arrival {arrival:?}"
        );
    }
    assert_eq!(
        server
            .log()
            .matches("call record closed at start-up")
            .count(),
        3,
        "{}",
        server.log()
    );
    assert_eq!(server.metric("hotline_calls_closed_at_startup_total"), 3);
}

/// SIGTERM with hotline calls that do not end by themselves: after the drain timeout
/// the server sends BYE with a Reason, writes their records (end reason `shutdown`) and
/// exits 0.
#[test]
fn sigterm_drain_timeout_ends_the_rest_with_a_reason_and_records_it() {
    let env = [("HOTLINE_FAKE_NOW", "2026-02-14T20:00+08:00")];
    let config = config(rtp_base()).replace("[server]\n", "[server]\ndrain_timeout_secs = 3\n");
    assert!(config.contains("drain_timeout_secs = 3"), "{config}");
    let mut server = Server::start_with(&config, &env);
    let work = tempfile::tempdir().expect("tmp");
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        work.path().join("caller.wav"),
    )
    .expect("fixture");
    // Callers that stay until the server hangs up (and log every message they see).
    let caller = Command::new(require("sipp"))
        .current_dir(work.path())
        .args(["-sf", &path_str(&sipp_scenario("acd_caller.xml"))])
        .args(["-s", "053112348", "-set", "caller", "053188886666"])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args([
            "-p",
            &free_port().to_string(),
            "-mp",
            &free_media_port().to_string(),
        ])
        .args([
            "-m", "2", "-l", "2", "-r", "10", "-nostdin", "-timeout", "40",
        ])
        .args(["-trace_msg", "-message_file", "messages.log"])
        .arg(server.sip.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sipp");
    assert!(
        wait_until(Duration::from_secs(15), || {
            server.log().matches("call answered").count() >= 2
        }),
        "calls not answered by the IVR:\n{}",
        server.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let sent = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    assert!(
        wait_until(Duration::from_secs(2), || server
            .http_get("/healthz")
            .1
            .contains("draining")),
        "healthz does not say draining"
    );
    let exited = wait_until(Duration::from_secs(15), || {
        matches!(server.child.try_wait(), Ok(Some(_)))
    });
    assert!(
        exited,
        "not stopped after the drain timeout:\n{}",
        server.log()
    );
    let took = sent.elapsed();
    assert_eq!(
        server.child.wait().ok().and_then(|s| s.code()),
        Some(0),
        "{}",
        server.log()
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "stopped after {took:?}"
    );
    let mut caller = caller;
    let caller_done = wait_until(Duration::from_secs(5), || {
        matches!(caller.try_wait(), Ok(Some(_)))
    });
    assert!(caller_done, "callers not hung up");
    assert_eq!(
        caller.wait().ok().and_then(|s| s.code()),
        Some(0),
        "the callers did not see a clean BYE"
    );
    let messages = std::fs::read_to_string(work.path().join("messages.log")).unwrap_or_default();
    assert_eq!(
        messages
            .matches("Reason: SIP;cause=503;text=\"server shutting down\"")
            .count(),
        2,
        "BYEs without the Reason:\n{messages}"
    );
    // The records were written before the exit, with the reason.
    let server = restart(server, &env);
    let (_, body) = server.api_get("/api/calls");
    let calls: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(calls.len(), 2, "{body}");
    for call in &calls {
        assert_eq!(call["in_progress"], false, "{call}");
        assert_eq!(call["record"]["end_reason"], "shutdown", "{call}");
        assert_eq!(call["record"]["hung_up_first"], "system", "{call}");
    }
    assert!(
        !server.log().contains("call record closed at start-up"),
        "nothing was left open by a clean stop:\n{}",
        server.log()
    );
}

/// SIGTERM with calls in progress: new calls refused (503), calls in progress finish
/// (their BYE answered), then exit 0 within the drain timeout.
#[test]
fn sigterm_refuses_new_calls_and_lets_calls_in_progress_finish() {
    let mut server = Server::start_with(&config(rtp_base()), &[]);
    let work = tempfile::tempdir().expect("tmp");
    let sipp = sipp_calls(&server, work.path(), "record", 5, 6_000);
    let recordings = server.dir.path().join("recordings");
    assert!(wait_until(Duration::from_secs(10), || find_wavs(
        &recordings
    )
    .len()
        >= 5));
    let pid = server.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    std::thread::sleep(Duration::from_millis(500));
    // A new call during the drain is refused.
    let probe = RawUdp::new(server.sip);
    let local = probe.local();
    let invite = format!(
        "INVITE sip:record@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKdrain1\r\n\
         From: <sip:053188886666@{local}>;tag=drain\r\nTo: <sip:record@{sip}>\r\n\
         Call-ID: drain-probe\r\nCSeq: 1 INVITE\r\nContact: <sip:053188886666@{local}>\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sip = server.sip
    );
    let mut answer = probe.request(&invite);
    while answer.as_deref().is_some_and(|a| status_of(a) < 200) {
        answer = probe.recv();
    }
    assert_eq!(
        answer.as_deref().map(status_of),
        Some(503),
        "a new call during the drain was not refused: {answer:?}"
    );
    assert!(
        answer
            .as_deref()
            .and_then(|a| header(a, "Retry-After"))
            .is_some_and(|v| v.parse::<u32>().is_ok_and(|s| s > 0)),
        "503 without Retry-After: {answer:?}"
    );
    // Registrations and OPTIONS are still served while draining.
    let agent = RawUdp::new(server.sip);
    let reg = register_with_password(&agent, "1001", "secret1001", false, 60);
    assert_eq!(reg.as_deref().map(status_of), Some(200), "{reg:?}");
    // The calls in progress end normally (SIPp's BYEs answered 200).
    let mut sipp = sipp;
    let sipp_status = wait_until(Duration::from_secs(20), || {
        matches!(sipp.try_wait(), Ok(Some(_)))
    });
    assert!(sipp_status, "SIPp calls did not finish");
    assert_eq!(
        sipp.wait().ok().and_then(|s| s.code()),
        Some(0),
        "calls in progress were cut by SIGTERM"
    );
    let code = server.terminate();
    assert_eq!(code, Some(0), "log:\n{}", server.log());
}
