//! The ACD test rig: a config with queues for Jinan and Qingdao, agents that register
//! and sign in with SIPp, and the queue state read back over the API.

use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::*;

pub const SUPERVISOR_TOKEN: &str = "supervisor-token";
pub const AGENT_1002_TOKEN: &str = "agent-1002-token";

pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The test config with short prompts, and queues for Jinan (`strategy`) and Qingdao
/// (no agents: overflows to Jinan).
pub fn queue_config(strategy: &str, ring_timeout_secs: u32, max_no_answer: u32) -> String {
    let prompts = repo_root().join("config/prompts/zh");
    let base = 33000 + (std::process::id() % 400) as u16 * 60;
    format!(
        "{TEST_CONFIG}
[[agents]]
id = \"2001\"
name = \"王律师\"
city = \"qingdao\"
password = \"secret2001\"
roles = [\"agent\"]

[[users]]
id = \"sup\"
name = \"督办\"
password = \"sup-password\"
roles = [\"supervisor\"]
unit = \"province\"
api_token = \"{}\"

[[users]]
id = \"1002\"
name = \"李公证员\"
password = \"agent-password\"
roles = [\"agent\"]
unit = \"province\"
api_token = \"{}\"

[media]
rtp_port_min = {base}
rtp_port_max = {}
media_timeout_secs = 30
prompts_dir = \"{}\"

[calls]

[ivr]
greeting = \"beep\"
menu = \"beep\"
digit_timeout_ms = 1000
max_retries = 0
max_message_secs = 3

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
strategy = \"{strategy}\"
duty = \"any_signed_in\"
ring_timeout_secs = {ring_timeout_secs}
retry_delay_secs = 1
max_no_answer = {max_no_answer}
busy_delay_secs = 1
reject_delay_secs = 1
wrap_up_secs = 0
announce_frequency_secs = 1
please_hold_secs = 0
max_wait_secs = 25
tier_rules = []

[[queues.queue]]
city = \"qingdao\"
duty = \"any_signed_in\"
overflow_to = \"jinan\"
overflow_when_no_agents = true
tier_rules = []

[[queues.agent]]
id = \"1001\"
city = \"jinan\"

[[queues.agent]]
id = \"1002\"
city = \"jinan\"

[[queues.agent]]
id = \"2001\"
city = \"qingdao\"
",
        sha256_hex(SUPERVISOR_TOKEN),
        sha256_hex(AGENT_1002_TOKEN),
        base + 59,
        prompts.display()
    )
}

pub fn password(agent: &str) -> &'static str {
    match agent {
        "1001" => "secret1001",
        "1003" => "secret1003",
        "1004" => "secret1004",
        "2001" => "secret2001",
        _ => "secret1002",
    }
}

pub fn start(config: &str) -> Server {
    // 2026-02-14 is a working Saturday (调休): in hours.
    let config = config.replace(
        "digest_algorithms = [\"MD5\", \"SHA-256\"]",
        "digest_algorithms = [\"MD5\"]",
    );
    Server::start_with(&config, &[("HOTLINE_FAKE_NOW", "2026-02-14T10:00+08:00")])
}

pub fn sipp_base(scenario: &str, port: u16) -> Command {
    let mut cmd = Command::new(require("sipp"));
    cmd.args(["-sf", &path_str(&sipp_scenario(scenario))])
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

/// Register `agent` with its contact at 127.0.0.1:`port`.
pub fn register(server: &Server, agent: &str, port: u16) {
    let out = run_bounded(
        sipp_base("register_once.xml", port)
            .args(["-s", agent, "-au", agent, "-ap", password(agent)])
            .args(["-m", "1", "-timeout", "10"])
            .arg(server.sip.to_string()),
        Duration::from_secs(15),
    );
    assert_eq!(
        out.status,
        Some(0),
        "register {agent}:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

/// Dial a feature code from the agent's softphone; the SIPp exit status.
pub fn feature_code(server: &Server, agent: &str, code: &str) -> Output {
    run_bounded(
        sipp_base("acd_feature.xml", free_port())
            .args(["-s", code, "-au", agent, "-ap", password(agent)])
            // SIPp's digest uri is `remote_ip:remote_port` unless told: the Request-URI.
            .args(["-auth_uri", &format!("{code}@{}", server.sip)])
            .args(["-set", "user", agent])
            .args(["-m", "1", "-timeout", "10"])
            .arg(server.sip.to_string()),
        Duration::from_secs(15),
    )
}

/// An agent phone on `port` that takes `calls` calls with `scenario`.
pub fn agent_phone(
    server: &Server,
    scenario: &'static str,
    port: u16,
    calls: u32,
    limit_secs: u64,
) -> JoinHandle<Output> {
    let target = server.sip.to_string();
    std::thread::spawn(move || {
        run_bounded(
            sipp_base(scenario, port)
                .args(["-rtp_echo", "-m", &calls.to_string()])
                .args(["-timeout", &limit_secs.to_string()])
                .arg(target),
            Duration::from_secs(limit_secs + 5),
        )
    })
}

/// `calls` callers in a row from `caller` (each waits for the server's BYE).
pub fn callers(server: &Server, caller: &str, calls: u32, cwd: &Path) -> Output {
    callers_saying(server, caller, calls, cwd, "caller-speech-alaw.wav")
}

/// [`callers`] streaming `fixture` (from tests/fixtures/audio) as their voice.
pub fn callers_saying(
    server: &Server,
    caller: &str,
    calls: u32,
    cwd: &Path,
    fixture: &str,
) -> Output {
    std::fs::copy(
        repo_root().join("tests/fixtures/audio").join(fixture),
        cwd.join("caller.wav"),
    )
    .expect("fixture");
    run_bounded(
        sipp_base("acd_caller.xml", free_port())
            .current_dir(cwd)
            .args(["-s", "12348", "-set", "caller", caller])
            .args(["-m", &calls.to_string(), "-l", "1"])
            .args(["-timeout", &(calls * 45).to_string()])
            .arg(server.sip.to_string()),
        Duration::from_secs(u64::from(calls) * 45 + 10),
    )
}

pub fn api(server: &Server, path: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.http).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SUPERVISOR_TOKEN}\r\nConnection: close\r\n\r\n"
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
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// `{agent id: state}` from `GET /api/queues`.
pub fn agent_states(server: &Server) -> Vec<(String, String, Option<String>)> {
    let (status, body) = api(server, "/api/queues");
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .into_iter()
        .flatten()
        .flat_map(|q| q["agents"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_string(),
                a["state"].as_str().unwrap_or_default().to_string(),
                a["pause_reason"].as_str().map(str::to_string),
            )
        })
        .collect()
}

pub fn state_of(server: &Server, agent: &str) -> String {
    agent_states(server)
        .into_iter()
        .find(|(id, _, _)| id == agent)
        .map(|(_, s, _)| s)
        .unwrap_or_default()
}

pub fn wait_state(server: &Server, agent: &str, state: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if state_of(server, agent) == state {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Register the agent on `port` and sign it in with `*11`; it is then available.
pub fn sign_in(server: &Server, agent: &str, port: u16) {
    register(server, agent, port);
    let out = feature_code(server, agent, "*11");
    assert_eq!(
        out.status,
        Some(0),
        "*11 for {agent}:\n{}\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(
        wait_state(server, agent, "available", Duration::from_secs(5)),
        "{agent} available after *11: {:?}\n{}",
        agent_states(server),
        server.log()
    );
}

pub fn api_calls(server: &Server) -> Vec<serde_json::Value> {
    let (status, body) = server.api_get("/api/calls?limit=1000");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_default()
}
