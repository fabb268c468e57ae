//! Agents vanish: SIPp agent phones (registered, signed in with `*11`) are killed with
//! SIGKILL while on a call and while ringing. No agent may stay "ringing" or "on call"
//! in `GET /api/queues`, the callers are re-queued and reach another agent, the CDR says
//! why, and the vanished agents are offline (离线): at once when their leg fails, or when
//! their registration lapses. The real binary on loopback, bounded (< 60 s).

mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Linear strategy over 1001, 1002, 1003 (config order), 5 s ring timeout, 3 s media
/// timeout, no wrap-up; short prompts and survey.
fn config() -> String {
    let prompts = repo_root().join("config/prompts/zh");
    let base = 36000 + (std::process::id() % 400) as u16 * 60;
    format!(
        "{TEST_CONFIG}
[[agents]]
id = \"1003\"
name = \"赵律师\"
city = \"jinan\"
password = \"secret1003\"
roles = [\"agent\"]

[media]
rtp_port_min = {base}
rtp_port_max = {}
media_timeout_secs = 3
prompts_dir = \"{}\"

[ivr]
greeting = \"beep\"
menu = \"beep\"
digit_timeout_ms = 1000
max_retries = 0
max_message_secs = 3
# Short words before and after a voice message: these tests time the agents, not prompts.
no_agents = \"beep\"
all_busy = \"beep\"
voice_message_intro = \"beep\"
thanks = \"beep\"

[ivr.survey]
prompt = \"beep\"
thanks = \"beep\"
goodbye = \"beep\"
digit_timeout_ms = 1000
retries = 0

[queues]
province_center = \"jinan\"

[[queues.queue]]
city = \"jinan\"
strategy = \"linear\"
duty = \"any_signed_in\"
ring_timeout_secs = 5
retry_delay_secs = 1
max_no_answer = 3
busy_delay_secs = 1
reject_delay_secs = 1
wrap_up_secs = 0
announce_frequency_secs = 0
please_hold_secs = 0
max_wait_secs = 50
tier_rules = []

[[queues.agent]]
id = \"1001\"
city = \"jinan\"

[[queues.agent]]
id = \"1002\"
city = \"jinan\"

[[queues.agent]]
id = \"1003\"
city = \"jinan\"
",
        base + 59,
        prompts.display()
    )
}

fn password(agent: &str) -> &'static str {
    match agent {
        "1001" => "secret1001",
        "1002" => "secret1002",
        _ => "secret1003",
    }
}

fn sipp(scenario: &Path, port: u16) -> Command {
    let mut cmd = Command::new(require("sipp"));
    cmd.arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args([
            "-p",
            &port.to_string(),
            "-mp",
            &free_media_port().to_string(),
        ])
        .arg("-nostdin");
    cmd
}

/// Register `agent` at 127.0.0.1:`port` for `expires` seconds and sign it in (`*11`).
fn sign_in(server: &Server, work: &Path, agent: &str, port: u16, expires: u32) {
    let register = work.join(format!("register-{expires}.xml"));
    let text = std::fs::read_to_string(sipp_scenario("register_once.xml"))
        .expect("scenario")
        .replace("Expires: 300", &format!("Expires: {expires}"));
    std::fs::write(&register, text).expect("write scenario");
    let out = run_bounded(
        sipp(&register, port)
            .args(["-s", agent, "-au", agent, "-ap", password(agent)])
            .args(["-m", "1", "-timeout", "10"])
            .arg(server.sip.to_string()),
        Duration::from_secs(15),
    );
    assert_eq!(out.status, Some(0), "register {agent}: {}", out.stderr);
    let out = run_bounded(
        sipp(&sipp_scenario("acd_feature.xml"), free_port())
            .args(["-s", "*11", "-au", agent, "-ap", password(agent)])
            // SIPp's digest uri is `remote_ip:remote_port` unless told: the Request-URI.
            .args(["-auth_uri", &format!("*11@{}", server.sip)])
            .args(["-set", "user", agent])
            .args(["-m", "1", "-timeout", "10"])
            .arg(server.sip.to_string()),
        Duration::from_secs(15),
    );
    assert_eq!(out.status, Some(0), "*11 for {agent}: {}", out.stderr);
    assert!(
        wait_state(server, agent, &["available"], Duration::from_secs(5)),
        "{agent} not available after *11: {:?}",
        agent_states(server)
    );
}

/// An agent phone on `port` running `scenario` for `calls` calls (killable).
fn phone(scenario: &Path, port: u16, server: &Server, calls: u32) -> Child {
    sipp(scenario, port)
        .args(["-rtp_echo", "-m", &calls.to_string(), "-timeout", "55"])
        .arg(server.sip.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent phone")
}

/// A trunk caller from `number` that talks until the server hangs up.
fn caller(server: &Server, work: &Path, number: &str) -> Child {
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        work.join("caller.wav"),
    )
    .expect("fixture");
    sipp(&sipp_scenario("acd_caller.xml"), free_port())
        .current_dir(work)
        .args(["-s", "12348", "-set", "caller", number])
        .args(["-m", "1", "-timeout", "55"])
        .arg(server.sip.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn caller")
}

/// `(agent, state)` from `GET /api/queues`.
fn agent_states(server: &Server) -> Vec<(String, String)> {
    let (status, body) = server.api_get("/api/queues");
    assert_eq!(status, 200, "{body}");
    let queues: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    queues
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|q| q["agents"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_string(),
                a["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn state_of(server: &Server, agent: &str) -> String {
    agent_states(server)
        .into_iter()
        .find(|(id, _)| id == agent)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

fn wait_state(server: &Server, agent: &str, states: &[&str], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if states.contains(&state_of(server, agent).as_str()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn cdr_of(server: &Server, caller: &str) -> serde_json::Value {
    let (status, body) = server.api_get(&format!("/api/calls?caller={caller}"));
    assert_eq!(status, 200, "{body}");
    let calls: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(calls.len(), 1, "{body}");
    calls.into_iter().next().unwrap_or_default()
}

#[test]
fn agents_killed_on_a_call_and_while_ringing_go_offline_and_their_callers_reach_another() {
    let started = Instant::now();
    let server = Server::start_with(&config(), &[("HOTLINE_FAKE_NOW", "2026-02-14T10:00+08:00")]);
    let work = tempfile::tempdir().expect("tmp");
    // A phone that answers and talks for a minute (it will be killed mid-call).
    let talker = work.path().join("talker.xml");
    let text = std::fs::read_to_string(sipp_scenario("acd_agent_uas.xml"))
        .expect("scenario")
        .replace(
            "<pause milliseconds=\"2500\" />",
            "<pause milliseconds=\"60000\" />",
        );
    std::fs::write(&talker, text).expect("write scenario");

    // 1. 1002 answers caller B and vanishes mid-call; 1003 signs in meanwhile.
    let (p1002, p1003) = (free_port(), free_port());
    sign_in(&server, work.path(), "1002", p1002, 300);
    let mut phone_1002 = phone(&talker, p1002, &server, 1);
    let mut caller_b = caller(&server, work.path(), "053188880002");
    assert!(
        wait_state(&server, "1002", &["on_call"], Duration::from_secs(15)),
        "1002 never on the call: {:?}\n{}",
        agent_states(&server),
        server.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = phone_1002.kill(); // SIGKILL: no BYE, no more RTP
    let _ = phone_1002.wait();
    sign_in(&server, work.path(), "1003", p1003, 300);
    let mut phone_1003 = phone(&sipp_scenario("acd_agent_uas.xml"), p1003, &server, 2);
    // The leg's audio stops: 1002 is offline at once, B is re-queued and 1003 answers.
    assert!(
        wait_state(&server, "1002", &["offline"], Duration::from_secs(10)),
        "1002 not offline after vanishing: {:?}\n{}",
        agent_states(&server),
        server.log()
    );
    assert_eq!(
        wait_exit(&mut caller_b, Duration::from_secs(20)),
        Some(0),
        "caller B did not reach 1003 and finish:\n{}",
        server.log()
    );

    // 2. 1001 (registered for 20 s) rings for caller A and vanishes while ringing.
    let p1001 = free_port();
    sign_in(&server, work.path(), "1001", p1001, 20);
    let mut phone_1001 = phone(&sipp_scenario("acd_agent_noanswer.xml"), p1001, &server, 1);
    let mut caller_a = caller(&server, work.path(), "053188880001");
    assert!(
        wait_state(&server, "1001", &["ringing"], Duration::from_secs(15)),
        "1001 never rang: {:?}\n{}",
        agent_states(&server),
        server.log()
    );
    let _ = phone_1001.kill();
    let _ = phone_1001.wait();
    // The ring timeout (5 s) moves A on to 1003, which answers.
    assert_eq!(
        wait_exit(&mut caller_a, Duration::from_secs(25)),
        Some(0),
        "caller A did not reach 1003 and finish:\n{}",
        server.log()
    );
    assert_eq!(wait_exit(&mut phone_1003, Duration::from_secs(10)), Some(0));
    assert!(
        server.log().contains("agent did not answer")
            || server.log().contains("reason=ring_timeout"),
        "A moved on by the ring timeout:\n{}",
        server.log()
    );
    // 1001's registration lapses: offline.
    assert!(
        wait_state(&server, "1001", &["offline"], Duration::from_secs(15)),
        "1001 not offline once its registration lapsed: {:?}",
        agent_states(&server)
    );

    // Nobody is left ringing or on a call; the vanished agents are offline.
    let states = agent_states(&server);
    assert!(
        states.iter().all(|(_, s)| s != "ringing" && s != "on_call"),
        "{states:?}"
    );
    assert_eq!(state_of(&server, "1002"), "offline");
    assert_eq!(state_of(&server, "1003"), "available");

    // The CDR says why.
    let b = cdr_of(&server, "053188880002");
    assert_eq!(b["record"]["agent"], "1003", "{b}");
    let lost = &b["record"]["agent_failures"];
    assert_eq!(lost.as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(lost[0]["agent"], "1002", "{b}");
    assert_eq!(lost[0]["stage"], "on_call", "{b}");
    assert_eq!(lost[0]["cause"], "media_timeout", "{b}");
    let a = cdr_of(&server, "053188880001");
    assert_eq!(a["record"]["agent"], "1003", "{a}");
    let missed = &a["record"]["agent_failures"];
    assert_eq!(missed[0]["agent"], "1001", "{a}");
    assert_eq!(missed[0]["stage"], "ringing", "{a}");
    assert_eq!(missed[0]["cause"], "not_answered", "{a}");
    assert_eq!(server.metric("hotline_agents_lost_total"), 1);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// The only agent's phone died while idle (registered for 5 minutes, signed in): the
/// offer gets no answer at all, so at the ring timeout the agent is taken offline and the
/// caller, with nobody left, goes to the voice-message flow.
#[test]
fn an_agent_dead_before_the_offer_goes_offline_and_the_caller_leaves_a_message() {
    let started = Instant::now();
    let server = Server::start_with(&config(), &[("HOTLINE_FAKE_NOW", "2026-02-14T10:00+08:00")]);
    let work = tempfile::tempdir().expect("tmp");
    let p1003 = free_port();
    sign_in(&server, work.path(), "1003", p1003, 300);
    let mut phone_1003 = phone(&sipp_scenario("acd_agent_uas.xml"), p1003, &server, 1);
    let _ = phone_1003.kill(); // dies before any call
    let _ = phone_1003.wait();
    assert_eq!(state_of(&server, "1003"), "available");
    let mut caller_c = caller(&server, work.path(), "053188880003");
    assert!(
        wait_state(&server, "1003", &["ringing"], Duration::from_secs(15)),
        "1003 never offered the call: {:?}\n{}",
        agent_states(&server),
        server.log()
    );
    assert!(
        wait_state(&server, "1003", &["offline"], Duration::from_secs(10)),
        "1003 not offline after a silent offer: {:?}\n{}",
        agent_states(&server),
        server.log()
    );
    assert_eq!(
        wait_exit(&mut caller_c, Duration::from_secs(25)),
        Some(0),
        "caller C not taken to a voice message:\n{}",
        server.log()
    );
    let c = cdr_of(&server, "053188880003");
    let record = &c["record"];
    assert_eq!(record["agent"], serde_json::Value::Null, "{c}");
    assert_eq!(record["agent_failures"][0]["agent"], "1003", "{c}");
    assert_eq!(record["agent_failures"][0]["stage"], "ringing", "{c}");
    assert_eq!(record["agent_failures"][0]["cause"], "no_response", "{c}");
    assert!(
        record["path"]
            .as_array()
            .is_some_and(|p| p.iter().any(|s| s == "voice_message")),
        "{c}"
    );
    let states = agent_states(&server);
    assert!(
        states.iter().all(|(_, s)| s != "ringing" && s != "on_call"),
        "{states:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
