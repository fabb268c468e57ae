//! Callback in queue and transfer to a unit's outside number, end to end with real SIP
//! peers on 127.0.0.1 (`CALL-CALLBACK`, `CALL-TRANSFER`):
//!
//! - a SIPp caller over the trunk waits in the queue (nobody signed in), presses `*`
//!   (RFC 4733) and is hung up after the confirmation (`acd_caller_callback.xml`);
//! - a SIPp agent phone (`acd_agent_until_bye.xml`, `-rtp_echo`) signs in with `*11`;
//! - a SIPp UAS stands as the carrier behind `[[trunks]] outbound`: first the callee
//!   does not answer (`carrier_reject.xml`, 480), then answers and talks
//!   (`carrier_answer.xml`, SIPp's g711a.pcap);
//! - for transfers, the agent REFERs (`acd_agent_refer_unit.xml`) first to a number
//!   that is no unit's (refused), then to `unit-legal-aid`, whose number the carrier
//!   must receive.
//!
//! The attempts and the transfer are read back from the work orders through the HTTP
//! API (the test config's dispatcher token), the recordings from the data directory.

mod common;

use common::trunk::{CALLER, UNIT_NUMBER, carrier_scenario, channel_rms, config, sipp, start};
use common::*;
use std::time::{Duration, Instant};

fn register(server: &Server, port: u16) {
    let out = run_bounded(
        sipp(&sipp_scenario("register_once.xml"), port)
            .args(["-s", "1001", "-au", "1001", "-ap", "secret1001"])
            .args(["-m", "1", "-timeout", "10"])
            .arg(server.sip.to_string()),
        Duration::from_secs(15),
    );
    assert_eq!(
        out.status,
        Some(0),
        "register:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// `*11` from agent 1001's softphone (its registration stays on its own port).
fn sign_in(server: &Server) {
    let out = run_bounded(
        sipp(&sipp_scenario("acd_feature.xml"), free_port())
            .args(["-s", "*11", "-au", "1001", "-ap", "secret1001"])
            // SIPp's digest uri is `remote_ip:remote_port` unless told: the Request-URI.
            .args(["-auth_uri", &format!("*11@{}", server.sip)])
            .args(["-set", "user", "1001"])
            .args(["-m", "1", "-timeout", "10"])
            .arg(server.sip.to_string()),
        Duration::from_secs(15),
    );
    assert_eq!(
        out.status,
        Some(0),
        "*11:\n{}\n{}\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
}

fn post(server: &Server, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.http).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer hotline-test-token\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_default()
}

/// The `call_logged` events of the caller's orders (waits until `count` are there).
fn call_facts(server: &Server, count: usize, limit: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + limit;
    let mut facts = Vec::new();
    while Instant::now() < deadline {
        let (status, body) = server.api_get(&format!("/api/orders?phone={CALLER}"));
        assert_eq!(status, 200, "{body}");
        facts = json(&body)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|o| o["id"].as_str().map(str::to_string))
            .flat_map(|id| {
                let (_, events) = server.api_get(&format!("/api/orders/{id}/events"));
                json(&events).as_array().cloned().unwrap_or_default()
            })
            .filter(|e| e["kind"]["type"] == "call_logged")
            .collect();
        if facts.len() >= count {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    facts
}

/// The caller presses `*` while nobody is signed in and hangs up; once the agent signs
/// in, the ACD reserves them, the server rings them first, then dials the caller's
/// number through the carrier trunk: the first time the callee does not answer (480),
/// the retry 2 s later is answered and bridged to the agent with audio both ways and a
/// stereo recording; each attempt is on the work order.
#[test]
fn a_caller_who_presses_star_is_called_back_after_a_missed_attempt_and_bridged_to_the_agent() {
    let carrier_port = free_port();
    let server = start(&config(carrier_port, 3));
    let dir = tempfile::tempdir().expect("tmp");
    let agent_port = free_port();
    register(&server, agent_port);
    let target = server.sip.to_string();
    let agent = {
        let target = target.clone();
        std::thread::spawn(move || {
            run_bounded(
                sipp(&sipp_scenario("acd_agent_until_bye.xml"), agent_port)
                    .args(["-rtp_echo", "-m", "2", "-timeout", "55"])
                    .arg(target),
                Duration::from_secs(58),
            )
        })
    };
    let reject = carrier_scenario(dir.path(), "carrier_reject.xml", CALLER, 0);
    let answer = carrier_scenario(dir.path(), "carrier_answer.xml", CALLER, 3000);
    let carrier = std::thread::spawn(move || {
        let first = run_bounded(
            sipp(&reject, carrier_port).args(["-m", "1", "-timeout", "50"]),
            Duration::from_secs(52),
        );
        let second = run_bounded(
            sipp(&answer, carrier_port).args(["-m", "1", "-timeout", "30"]),
            Duration::from_secs(32),
        );
        (first, second)
    });
    let caller = run_bounded(
        sipp(&sipp_scenario("acd_caller_callback.xml"), free_port())
            .args(["-s", "12348", "-set", "caller", CALLER])
            .args(["-m", "1", "-timeout", "30"])
            .arg(target),
        Duration::from_secs(35),
    );
    assert_eq!(
        caller.status,
        Some(0),
        "caller:\n{}\n{}\n{}",
        caller.stdout,
        caller.stderr,
        server.log()
    );
    let log = server.log();
    assert!(log.contains("callback registered"), "{log}");
    // Nobody was dialled yet: no agent is signed in.
    assert!(
        !log.contains("callback: ringing the reserved agent"),
        "{log}"
    );
    sign_in(&server);
    let (first, second) = carrier.join().expect("carrier thread");
    assert_eq!(
        first.status,
        Some(0),
        "carrier, first attempt (480):\n{}\n{}\n{}",
        first.stdout,
        first.stderr,
        server.log()
    );
    assert_eq!(
        second.status,
        Some(0),
        "carrier, second attempt (answers):\n{}\n{}\n{}",
        second.stdout,
        second.stderr,
        server.log()
    );
    let agent = agent.join().expect("agent thread");
    assert_eq!(
        agent.status,
        Some(0),
        "the agent took both attempts:\n{}\n{}\n{}",
        agent.stdout,
        agent.stderr,
        server.log()
    );
    let log = server.log();
    // The agent is rung before the caller is dialled, on each attempt.
    let rung = log
        .find("callback: ringing the reserved agent")
        .expect("rung");
    let dialled = log
        .find("callback: dialling the caller through the trunk")
        .expect("dialled");
    assert!(rung < dialled, "{log}");
    assert!(
        log.contains("callback: the caller answered; bridged"),
        "{log}"
    );
    // Audio both ways, recorded: the callee (left) and the agent's echo (right).
    let wavs: Vec<_> = find_wavs(&server.dir.path().join("recordings"))
        .into_iter()
        .filter(|p| p.display().to_string().contains("callback"))
        .collect();
    assert_eq!(wavs.len(), 1, "{wavs:?}\n{log}");
    let (left, right, seconds) = channel_rms(&wavs[0]);
    assert!(seconds > 2.0, "{seconds} s recorded");
    assert!(left > 100.0, "callee's audio recorded: rms {left}");
    assert!(right > 100.0, "agent's audio recorded: rms {right}");
    // The attempts (time, agent, result) are on the caller's work order.
    let facts = call_facts(&server, 3, Duration::from_secs(10));
    let what: Vec<(String, String)> = facts
        .iter()
        .map(|e| {
            let call = &e["kind"]["call"];
            (
                call["what"].as_str().unwrap_or_default().to_string(),
                call["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        what,
        [
            ("callback_requested".to_string(), String::new()),
            ("callback_attempt".to_string(), "no_answer".to_string()),
            ("callback_attempt".to_string(), "answered".to_string()),
        ],
        "{facts:#?}\n{}",
        server.log()
    );
    for fact in &facts[1..] {
        assert_eq!(fact["kind"]["call"]["agent"], "1001", "{fact}");
        assert_eq!(fact["actor"], "system", "{fact}");
        assert!(
            fact["at"]
                .as_str()
                .is_some_and(|t| t.starts_with("2026-02-14T")),
            "{fact}"
        );
    }
    assert!(
        facts[2]["kind"]["call"]["recording"]
            .as_str()
            .is_some_and(|r| r.contains("callback")),
        "{}",
        facts[2]
    );
    assert_eq!(
        facts[1]["kind"]["call"]["attempt"], 1,
        "attempts are numbered"
    );
    assert_eq!(facts[2]["kind"]["call"]["attempt"], 2);
    // The caller's own call did not abandon: it asked for a callback.
    let (_, calls) = server.api_get("/api/calls?limit=10");
    let calls = json(&calls);
    let path = calls[0]["record"]["path"].clone();
    assert!(
        path.as_array()
            .is_some_and(|p| p.iter().any(|s| s == "callback_requested")
                && !p.iter().any(|s| s == "abandoned")),
        "{calls}"
    );
    // Nobody is left ringing or on a call.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, queues) = server.api_get("/api/queues");
        let stale = json(&queues)
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|q| q["agents"].as_array().cloned().unwrap_or_default())
            .any(|a| a["state"] == "ringing" || a["state"] == "on_call");
        if !stale {
            break;
        }
        assert!(Instant::now() < deadline, "agent left busy: {queues}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The agent first REFERs the caller to an outside number that is no unit's: 403, and
/// the carrier receives nothing (no open dialling). Then to `unit-legal-aid`: the
/// carrier receives the INVITE for the unit's configured number, the caller is bridged
/// to it (recorded), the agent's leg ends, and the order linked to the call gets the
/// transfer event.
#[test]
fn a_refer_to_an_outside_number_is_refused_and_one_to_a_unit_dials_its_number() {
    let carrier_port = free_port();
    let server = start(&config(carrier_port, 3));
    let dir = tempfile::tempdir().expect("tmp");
    let agent_port = free_port();
    register(&server, agent_port);
    sign_in(&server);
    let target = server.sip.to_string();
    let agent = {
        let target = target.clone();
        std::thread::spawn(move || {
            run_bounded(
                sipp(&sipp_scenario("acd_agent_refer_unit.xml"), agent_port)
                    .args([
                        "-set",
                        "bad",
                        "13900001111",
                        "-set",
                        "target",
                        "unit-legal-aid",
                    ])
                    .args(["-rtp_echo", "-m", "1", "-timeout", "40"])
                    .arg(target),
                Duration::from_secs(45),
            )
        })
    };
    let answer = carrier_scenario(dir.path(), "carrier_answer.xml", UNIT_NUMBER, 3000);
    let carrier = std::thread::spawn(move || {
        run_bounded(
            sipp(&answer, carrier_port).args(["-m", "1", "-timeout", "40"]),
            Duration::from_secs(45),
        )
    });
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        dir.path().join("caller.wav"),
    )
    .expect("fixture");
    let caller = {
        let cwd = dir.path().to_path_buf();
        std::thread::spawn(move || {
            run_bounded(
                sipp(&sipp_scenario("acd_caller.xml"), free_port())
                    .current_dir(cwd)
                    .args(["-s", "12348", "-set", "caller", CALLER])
                    .args(["-cid_str", "xfer-%u@test"])
                    .args(["-m", "1", "-timeout", "45"])
                    .arg(target),
                Duration::from_secs(50),
            )
        })
    };
    // While the agent talks, an order is opened for the call (as the agent's console
    // would); the transfer is logged on it.
    assert!(
        wait_for_log(&server, "agent answered; bridged", Duration::from_secs(15)),
        "{}",
        server.log()
    );
    let (status, body) = post(
        &server,
        "/api/orders",
        &format!(
            r#"{{"contact_phone":"{CALLER}","category":"consultation","city":"jinan","description":"法律援助咨询","call_id":"xfer-1@test"}}"#
        ),
    );
    assert_eq!(status, 201, "{body}");
    let order = json(&body)["id"].as_str().unwrap_or_default().to_string();
    let caller = caller.join().expect("caller thread");
    let agent = agent.join().expect("agent thread");
    let carrier = carrier.join().expect("carrier thread");
    assert_eq!(
        agent.status,
        Some(0),
        "agent: 403 for the number, 202 + NOTIFY 200 for the unit:\n{}\n{}\n{}",
        agent.stdout,
        agent.stderr,
        server.log()
    );
    assert_eq!(
        carrier.status,
        Some(0),
        "carrier got the unit's number (and nothing else):\n{}\n{}\n{}",
        carrier.stdout,
        carrier.stderr,
        server.log()
    );
    assert_eq!(
        caller.status,
        Some(0),
        "caller:\n{}\n{}\n{}",
        caller.stdout,
        caller.stderr,
        server.log()
    );
    let log = server.log();
    assert!(log.contains("no open dialling"), "{log}");
    assert!(log.contains("the unit answered; caller bridged"), "{log}");
    // The order of the call, not a new one, has the transfer.
    let facts = call_facts(&server, 1, Duration::from_secs(10));
    assert_eq!(facts.len(), 1, "{facts:#?}\n{}", server.log());
    assert_eq!(facts[0]["kind"]["call"]["what"], "transferred_to_unit");
    assert_eq!(facts[0]["kind"]["call"]["unit"], "legal-aid");
    assert_eq!(facts[0]["kind"]["call"]["agent"], "1001");
    let (_, events) = server.api_get(&format!("/api/orders/{order}/events"));
    assert!(events.contains("transferred_to_unit"), "{events}");
    // The whole call is one recording: the caller left; the agent, then the unit, right.
    let wavs = find_wavs(&server.dir.path().join("recordings"));
    assert_eq!(wavs.len(), 1, "{wavs:?}");
    let (left, right, seconds) = channel_rms(&wavs[0]);
    assert!(seconds > 5.0, "{seconds} s recorded");
    assert!(left > 100.0 && right > 100.0, "rms {left} / {right}");
    // The CDR says where the call went.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, calls) = server.api_get("/api/calls?limit=10");
        let calls = json(&calls);
        if calls[0]["record"]["path"]
            .as_array()
            .is_some_and(|p| p.iter().any(|s| s == "transferred_to_unit"))
        {
            assert_eq!(calls[0]["record"]["agent"], "1001", "{calls}");
            break;
        }
        assert!(Instant::now() < deadline, "{calls}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// With one attempt allowed and a callee who does not answer, the callback is given
/// up: the agent is free again, and the work order says to call back by hand.
#[test]
fn a_callback_nobody_answers_is_given_up_onto_the_work_order() {
    let carrier_port = free_port();
    let server = start(&config(carrier_port, 1));
    let dir = tempfile::tempdir().expect("tmp");
    let agent_port = free_port();
    register(&server, agent_port);
    let target = server.sip.to_string();
    let agent = {
        let target = target.clone();
        std::thread::spawn(move || {
            run_bounded(
                sipp(&sipp_scenario("acd_agent_until_bye.xml"), agent_port)
                    .args(["-rtp_echo", "-m", "1", "-timeout", "40"])
                    .arg(target),
                Duration::from_secs(45),
            )
        })
    };
    let reject = carrier_scenario(dir.path(), "carrier_reject.xml", CALLER, 0);
    let carrier = std::thread::spawn(move || {
        run_bounded(
            sipp(&reject, carrier_port).args(["-m", "1", "-timeout", "40"]),
            Duration::from_secs(45),
        )
    });
    let caller = run_bounded(
        sipp(&sipp_scenario("acd_caller_callback.xml"), free_port())
            .args(["-s", "12348", "-set", "caller", CALLER])
            .args(["-m", "1", "-timeout", "30"])
            .arg(target),
        Duration::from_secs(35),
    );
    assert_eq!(
        caller.status,
        Some(0),
        "{}\n{}",
        caller.stderr,
        server.log()
    );
    sign_in(&server);
    let carrier = carrier.join().expect("carrier thread");
    assert_eq!(
        carrier.status,
        Some(0),
        "{}\n{}",
        carrier.stderr,
        server.log()
    );
    let agent = agent.join().expect("agent thread");
    assert_eq!(agent.status, Some(0), "{}\n{}", agent.stderr, server.log());
    let facts = call_facts(&server, 3, Duration::from_secs(10));
    let what: Vec<&str> = facts
        .iter()
        .map(|e| e["kind"]["call"]["what"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        what,
        ["callback_requested", "callback_attempt", "callback_gave_up"],
        "{facts:#?}\n{}",
        server.log()
    );
    assert_eq!(facts[2]["kind"]["call"]["attempts"], 1);
    assert!(server.log().contains("callback given up"));
    // No recording: nobody talked.
    assert!(find_wavs(&server.dir.path().join("recordings")).is_empty());
}

/// Judged from the caller's phone (baresip, its microphone a 600 Hz tone): the agent
/// (echoing what it hears) talks 3 s, then transfers the caller by REFER to the unit;
/// the unit (the carrier's callee, also echoing) answers and talks 5 s. The caller's
/// phone plays the agent, then the unit: its own tone comes back through both bridges,
/// with nothing dropped across the switch.
#[test]
fn the_callers_phone_hears_the_agent_then_the_unit_after_a_transfer() {
    use common::phone::{Baresip, Heard, runs, tone_wav, wav_samples, windows};
    const TONE: f64 = 600.0;
    let carrier_port = free_port();
    let server = start(&config(carrier_port, 3));
    let dir = tempfile::tempdir().expect("tmp");
    let agent_port = free_port();
    register(&server, agent_port);
    sign_in(&server);
    let target = server.sip.to_string();
    let agent = {
        let target = target.clone();
        std::thread::spawn(move || {
            run_bounded(
                sipp(&sipp_scenario("acd_agent_refer_unit.xml"), agent_port)
                    .args([
                        "-set",
                        "bad",
                        "13900001111",
                        "-set",
                        "target",
                        "unit-legal-aid",
                    ])
                    .args(["-rtp_echo", "-m", "1", "-timeout", "40"])
                    .arg(target),
                Duration::from_secs(45),
            )
        })
    };
    // The unit's callee echoes the caller instead of playing SIPp's recording.
    let answer = carrier_scenario(dir.path(), "carrier_answer.xml", UNIT_NUMBER, 5000);
    let text = std::fs::read_to_string(&answer).expect("scenario");
    let start_pcap = text.find("  <nop>").expect("the scenario's pcap play");
    let end_pcap = text[start_pcap..].find("</nop>\n").expect("its end") + start_pcap + 7;
    std::fs::write(
        &answer,
        format!("{}{}", &text[..start_pcap], &text[end_pcap..]),
    )
    .expect("write scenario");
    let carrier = std::thread::spawn(move || {
        run_bounded(
            sipp(&answer, carrier_port).args(["-rtp_echo", "-m", "1", "-timeout", "40"]),
            Duration::from_secs(45),
        )
    });
    let source = dir.path().join("tone.wav");
    tone_wav(&source, TONE, 40.0);
    let caller = Baresip::caller(&server, CALLER, "12348", &source, 25).finish();
    let agent = agent.join().expect("agent thread");
    let carrier = carrier.join().expect("carrier thread");
    let context = format!(
        "agent: {:?}\n{}\ncarrier: {:?}\n{}\ncaller:\n{}\nserver:\n{}",
        agent.status,
        agent.stdout,
        carrier.status,
        carrier.stdout,
        caller.log(),
        server.log()
    );
    assert_eq!(agent.status, Some(0), "{context}");
    assert_eq!(carrier.status, Some(0), "{context}");
    let heard = caller
        .heard
        .as_ref()
        .unwrap_or_else(|| panic!("no call:\n{context}"));
    let (samples, rate) = wav_samples(heard);
    let heard = windows(&samples, rate, TONE);
    // The agent's 3 s and the unit's 5 s: the unit answers at once, so the caller hears
    // one voice after the other, its tone coming back through both bridges without a
    // hole (hold music only while the unit's number is dialled: milliseconds here).
    let runs = runs(&heard);
    let tone: usize = runs
        .iter()
        .filter(|(kind, _)| *kind == Heard::Tone)
        .map(|(_, n)| n)
        .sum();
    assert!(
        server.log().contains("the unit answered; caller bridged"),
        "{context}"
    );
    assert!(
        tone >= 70,
        "the caller heard the agent and the unit for {} ms of 8 s: {runs:?}\n{context}",
        tone * 100
    );
    assert_eq!(caller.dropped_lines(), Vec::<String>::new(), "{context}");
}

/// Judged from both phones (issue 13 §4): a caller who pressed `*` is called back, and
/// the caller's phone — baresip behind the trunk, answering — plays the agent's voice
/// while the agent's phone (baresip, registered and signed in) plays the caller's,
/// with no packet thrown away on either side.
#[test]
fn on_a_callback_each_phone_plays_the_other_side() {
    let (server, callee_log) = callback_phones_hear_each_other(None);
    assert!(
        !callee_log.contains("SRTP is Enabled"),
        "the caller's phone says its call was encrypted on a plain trunk:\n{callee_log}"
    );
    assert!(
        server.log().contains("srtp=false"),
        "a plain trunk's leg is plain:\n{}",
        server.log()
    );
}

/// The same callback through a trunk whose `media_encryption` is optional: our INVITE
/// to the carrier offers an SDES key, the caller's phone (baresip with SRTP) takes it,
/// and each phone still plays the other's tone: what the caller's phone decodes went
/// through SRTP both ways.
#[test]
fn a_callback_through_an_srtp_trunk_is_encrypted_and_each_phone_hears_the_other() {
    let (server, callee_log) = callback_phones_hear_each_other(Some("srtp"));
    // The receiver's word: baresip says so once both keys are in place.
    assert!(
        callee_log.contains("SRTP is Enabled"),
        "the caller's phone did not run SRTP:\n{callee_log}"
    );
    assert!(
        server.log().contains("outbound leg answered") && server.log().contains("srtp=true"),
        "the trunk leg did not negotiate SRTP:\n{}",
        server.log()
    );
}

/// A caller presses * with nobody signed in, agent 1001 (baresip) signs in, and the
/// callback rings 1001 then the caller's own phone (baresip behind the trunk; with
/// `mediaenc`, the trunk offers SRTP and the phone takes it): each phone must play the
/// other's tone, with no packet dropped. Returns the server and the caller's phone's log.
fn callback_phones_hear_each_other(mediaenc: Option<&str>) -> (Server, String) {
    use common::phone::{Baresip, tone_wav};
    const AGENT_TONE: f64 = 600.0;
    const CALLER_TONE: f64 = 1000.0;
    let carrier_port = free_port();
    let policy = if mediaenc.is_some() {
        "optional"
    } else {
        "none"
    };
    let server = start(&common::trunk::config_with(carrier_port, 1, policy));
    let dir = tempfile::tempdir().expect("tmp");
    let agent_source = dir.path().join("agent.wav");
    let caller_source = dir.path().join("caller.wav");
    tone_wav(&agent_source, AGENT_TONE, 60.0);
    tone_wav(&caller_source, CALLER_TONE, 60.0);
    // The caller's own phone, reached through the trunk when called back.
    let callee = match mediaenc {
        Some(mediaenc) => {
            Baresip::answering_at_with(carrier_port, CALLER, &caller_source, 40, mediaenc)
        }
        None => Baresip::answering_at(carrier_port, CALLER, &caller_source, 40),
    };
    let agent = Baresip::agent(&server, "1001", "secret1001", &agent_source, 40);
    let registered = wait_until(Duration::from_secs(10), || {
        server.metric("hotline_sip_registrations") > 0
    });
    assert!(registered, "agent 1001 never registered:\n{}", server.log());
    // The first call: nobody is signed in, so the caller presses * and hangs up.
    let caller = run_bounded(
        sipp(&sipp_scenario("acd_caller_callback.xml"), free_port())
            .args(["-s", "12348", "-set", "caller", CALLER])
            .args(["-m", "1", "-timeout", "30"])
            .arg(server.sip.to_string()),
        Duration::from_secs(35),
    );
    assert_eq!(
        caller.status,
        Some(0),
        "caller:\n{}\n{}",
        caller.stdout,
        server.log()
    );
    sign_in(&server);
    assert!(
        wait_for_log(
            &server,
            "callback: the caller answered; bridged",
            Duration::from_secs(20)
        ),
        "no callback bridged:\n{}",
        server.log()
    );
    let callee = callee.finish();
    let agent = agent.finish();
    let context = format!(
        "caller's phone:\n{}\nagent's phone:\n{}\nserver:\n{}",
        callee.log(),
        agent.log(),
        server.log()
    );
    let tone_ms = |phone: &common::phone::PhoneResult, frequency: f64, who: &str| {
        phone
            .tone_ms(frequency)
            .unwrap_or_else(|| panic!("{who} had no call:\n{context}"))
    };
    // The bridge lasts from the callback's answer to the phones' 40 s: well over 5 s.
    let caller_heard = tone_ms(&callee, AGENT_TONE, "the caller's phone");
    assert!(
        caller_heard >= 5000,
        "the caller's phone played the agent for {caller_heard} ms\n{context}"
    );
    let agent_heard = tone_ms(&agent, CALLER_TONE, "the agent's phone");
    assert!(
        agent_heard >= 5000,
        "the agent's phone played the caller for {agent_heard} ms\n{context}"
    );
    assert_eq!(callee.dropped_lines(), Vec::<String>::new(), "{context}");
    assert_eq!(agent.dropped_lines(), Vec::<String>::new(), "{context}");
    (server, callee.log())
}
