//! The ACD end to end with real SIP peers on 127.0.0.1: SIPp agents register
//! (`register_once.xml`), sign in with the `*11` feature code (`acd_feature.xml`) and
//! answer offered calls (`acd_agent_uas.xml`, `-rtp_echo`) or let them ring
//! (`acd_agent_noanswer.xml`); SIPp callers (`acd_caller.xml`) come in over the trunk.
//! The queue state is read back from `GET /api/queues` (bearer token) and the CDRs
//! from `GET /api/calls`.

mod common;

use common::queue::*;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn two_agents_signed_in_by_star11_share_four_calls_round_robin_and_end_available() {
    let server = start(&queue_config("round_robin", 10, 3));
    let (p1, p2) = (free_port(), free_port());
    sign_in(&server, "1001", p1);
    sign_in(&server, "1002", p2);
    let a1 = agent_phone(&server, "acd_agent_uas.xml", p1, 2, 240);
    let a2 = agent_phone(&server, "acd_agent_uas.xml", p2, 2, 240);
    let cwd = tempfile::tempdir().expect("tmp");
    let out = callers(&server, "053188886666", 4, cwd.path());
    assert_eq!(
        out.status,
        Some(0),
        "callers:\n{}\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    for (agent, phone) in [("1001", a1), ("1002", a2)] {
        let out = phone.join().expect("agent thread");
        assert_eq!(
            out.status,
            Some(0),
            "agent {agent} took exactly its 2 calls:\n{}\n{}\nserver log:\n{}",
            out.stdout,
            out.stderr,
            server.log()
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let calls = api_calls(&server);
    let agents: Vec<String> = calls
        .iter()
        .filter_map(|c| c["record"]["agent"].as_str().map(str::to_string))
        .collect();
    assert_eq!(agents.len(), 4, "{calls:?}");
    assert_eq!(
        agents.iter().filter(|a| *a == "1001").count(),
        2,
        "{agents:?}"
    );
    // Round robin alternates (newest first in the list).
    assert!(agents.windows(2).all(|w| w[0] != w[1]), "{agents:?}");
    // The agents hung up first: each caller was offered the survey (and pressed nothing).
    for call in &calls {
        assert_eq!(call["record"]["hung_up_first"], "agent", "{call}");
        assert_eq!(call["record"]["survey"], "no_answer", "{call}");
    }
    for (id, state, _) in agent_states(&server) {
        assert!(
            state != "ringing" && state != "on_call",
            "{id} left {state}\n{}",
            server.log()
        );
    }
    // The feature code *12 signs out.
    let out = feature_code(&server, "1001", "*12");
    assert_eq!(out.status, Some(0), "{}", out.stderr);
    assert!(wait_state(
        &server,
        "1001",
        "logged_out",
        Duration::from_secs(5)
    ));
}

#[test]
fn a_no_answer_agent_is_paused_and_the_caller_hears_the_position_meanwhile() {
    let server = start(&queue_config("linear", 2, 1));
    let port = free_port();
    sign_in(&server, "1001", port);
    let phone = agent_phone(&server, "acd_agent_noanswer.xml", port, 1, 60);
    let cwd = tempfile::tempdir().expect("tmp");
    let caller = {
        let dir = cwd.path().to_path_buf();
        let sip = server.sip;
        std::thread::spawn(move || one_caller(sip, &dir))
    };
    assert!(
        wait_state(&server, "1001", "paused", Duration::from_secs(30)),
        "paused after a missed offer: {:?}\n{}",
        agent_states(&server),
        server.log()
    );
    let reason = agent_states(&server)
        .into_iter()
        .find(|(id, _, _)| id == "1001")
        .and_then(|(_, _, r)| r);
    assert_eq!(reason.as_deref(), Some("max-no-answer"));
    let out = phone.join().expect("agent thread");
    assert_eq!(out.status, Some(0), "{}\n{}", out.stderr, server.log());
    // Nobody left: the caller goes to a voice message (or is hung up) within bounds.
    let out = caller.join().expect("caller thread");
    assert_eq!(
        out.status,
        Some(0),
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    let log = server.log();
    assert!(log.contains("ACD lets go of the agent leg"), "{log}");
    // While the agent rang, the caller heard its position over the hold music.
    assert!(log.contains("Announce { position: 1 }"), "{log}");
    assert!(log.contains("HoldMusic"), "{log}");
}

#[test]
fn a_city_without_signed_in_agents_overflows_to_its_partner_queue() {
    let server = start(&queue_config("longest_idle", 10, 3));
    let port = free_port();
    sign_in(&server, "1001", port);
    let phone = agent_phone(&server, "acd_agent_uas.xml", port, 1, 90);
    let cwd = tempfile::tempdir().expect("tmp");
    // A Qingdao caller (0532): Qingdao's only agent never signed in.
    let out = callers(&server, "053288886666", 1, cwd.path());
    assert_eq!(
        out.status,
        Some(0),
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    let out = phone.join().expect("agent thread");
    assert_eq!(out.status, Some(0), "{}\n{}", out.stderr, server.log());
    assert!(server.log().contains("call overflowed"), "{}", server.log());
    std::thread::sleep(Duration::from_millis(500));
    let calls = api_calls(&server);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["record"]["city"], "qingdao");
    assert_eq!(calls[0]["record"]["agent"], "1001");
}

/// One Jinan caller, on its own thread while the test watches the queue.
fn one_caller(sip: std::net::SocketAddr, cwd: &Path) -> Output {
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        cwd.join("caller.wav"),
    )
    .expect("fixture");
    run_bounded(
        sipp_base("acd_caller.xml", free_port())
            .current_dir(cwd)
            .args(["-s", "12348", "-set", "caller", "053188886666"])
            .args(["-m", "1", "-timeout", "60"])
            .arg(sip.to_string()),
        Duration::from_secs(70),
    )
}

/// An agent phone that answers at once and hangs up after `talk_ms` unless the caller
/// hangs up first.
const AGENT_RANDOM: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="acd agent, either side hangs up">
  <recv request="INVITE" crlf="true" rrs="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote_party" />
      <ereg regexp="&lt;[^&gt;]*&gt;" search_in="hdr" header="To:" assign_to="local_party" />
    </action>
  </recv>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]R[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=agent 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv request="ACK" crlf="true" />
  <recv request="BYE" timeout="TALK_MS" ontimeout="1" />
  <send next="2">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="1" />
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: [$local_party];tag=[pid]R[call_number]
      To: [$remote_party]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
  <label id="2" />
</scenario>
"#;

/// A caller that hangs up after `hold_ms` unless the server hangs up first.
const CALLER_RANDOM: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="acd caller, either side hangs up">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:053188886666@[local_ip]:[local_port]>;tag=[pid]C[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:053188886666@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true" />
  <recv response="180" optional="true" />
  <recv response="200" rrs="true" />
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:053188886666@[local_ip]:[local_port]>;tag=[pid]C[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <nop>
    <action>
      <exec rtp_stream="caller.wav,-1,8" />
    </action>
  </nop>
  <recv request="BYE" timeout="HOLD_MS" ontimeout="1" />
  <send next="2">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="1" />
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
      From: <sip:053188886666@[local_ip]:[local_port]>;tag=[pid]C[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
  <label id="2" />
</scenario>
"#;

/// Run a SIPp with its screen output in a file (a long run would fill a pipe).
fn spawn_sipp(mut cmd: Command, dir: &Path, name: &str) -> std::process::Child {
    let out = std::fs::File::create(dir.join(format!("{name}.out"))).expect("out file");
    let err = std::fs::File::create(dir.join(format!("{name}.err"))).expect("err file");
    cmd.current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn sipp")
}

fn wait_or_kill(child: &mut std::process::Child, deadline: Instant) -> Option<i32> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Register `agent` at 127.0.0.1:`port` for `expires` seconds (a copy of
/// `register_once.xml` with another `Expires`), so a long run never sees it lapse.
fn register_for(server: &Server, agent: &str, port: u16, expires: u32, dir: &Path) {
    let text = std::fs::read_to_string(sipp_scenario("register_once.xml")).expect("scenario");
    let scenario = dir.join(format!("register{agent}.xml"));
    std::fs::write(
        &scenario,
        text.replace("Expires: 300", &format!("Expires: {expires}")),
    )
    .expect("scenario");
    let mut cmd = Command::new(require("sipp"));
    cmd.args(["-sf", &path_str(&scenario)])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args([
            "-p",
            &port.to_string(),
            "-mp",
            &free_media_port().to_string(),
        ])
        .args(["-s", agent, "-au", agent, "-ap", password(agent)])
        .args(["-m", "1", "-timeout", "10", "-nostdin"])
        .arg(server.sip.to_string());
    let out = run_bounded(&mut cmd, Duration::from_secs(15));
    assert_eq!(out.status, Some(0), "register {agent}: {}", out.stderr);
}

/// Rows of `queue_log` (SQLite) as `(event, call_id)`.
fn queue_log_rows(server: &Server) -> Vec<(String, String)> {
    let db = server.data_dir().join("hotline.db");
    let out = Command::new(require("sqlite3"))
        .arg(&db)
        .arg("SELECT event, COALESCE(call_id, '') FROM queue_log ORDER BY id")
        .output()
        .expect("sqlite3");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(e, c)| (e.to_string(), c.to_string()))
        .collect()
}

/// `ACD_STRESS_CALLS` (default 1 000) calls from 4 SIPp callers (3 calls/s each, at most
/// 40 at once each) hanging up 1.5, 3, 4.5 or 7 s after the answer, to 4 agents hanging
/// up after 0.8, 1.5, 2.5 or 4 s: either side hangs up first, callers leave in the IVR,
/// while waiting, while an agent rings, or talking. The agents registered for an hour
/// (nothing lapses mid-run). Afterwards, through `GET /api/queues`: every agent is
/// available and nobody waits; and `queue_log` balances: every call that entered a
/// queue was answered, abandoned or sent to a voice message, and every answered call
/// completed.
#[test]
fn no_agent_is_left_ringing_or_on_call_after_calls_with_random_hangups() {
    let total: u32 = std::env::var("ACD_STRESS_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let holds = [1500, 3000, 4500, 7000];
    let per_caller = total.div_ceil(holds.len() as u32);
    // A port range of its own: up to ~4 x 40 callers and their agent legs at once.
    let base = 40000 + (std::process::id() % 40) as u16 * 600;
    let config = extra_agent(
        &extra_agent(&queue_config("longest_idle", 4, 0), "1003", "赵调解员"),
        "1004",
        "钱律师",
    );
    let config = config
        .lines()
        .map(|l| {
            if l.starts_with("rtp_port_min") {
                format!("rtp_port_min = {base}")
            } else if l.starts_with("rtp_port_max") {
                format!("rtp_port_max = {}", base + 599)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let server = start(&config);
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        dir.path().join("caller.wav"),
    )
    .expect("fixture");
    let mut agents = Vec::new();
    for (agent, talk_ms) in [
        ("1001", 800),
        ("1002", 1500),
        ("1003", 2500),
        ("1004", 4000),
    ] {
        let port = free_port();
        register_for(&server, agent, port, 3600, dir.path());
        let out = feature_code(&server, agent, "*11");
        assert_eq!(out.status, Some(0), "*11 {agent}: {}", out.stderr);
        assert!(wait_state(
            &server,
            agent,
            "available",
            Duration::from_secs(5)
        ));
        let scenario = dir.path().join(format!("agent{agent}.xml"));
        std::fs::write(
            &scenario,
            AGENT_RANDOM.replace("TALK_MS", &talk_ms.to_string()),
        )
        .expect("scenario");
        let mut cmd = Command::new(require("sipp"));
        cmd.args(["-sf", &path_str(&scenario)])
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args([
                "-p",
                &port.to_string(),
                "-mp",
                &free_media_port().to_string(),
            ])
            .args(["-rtp_echo", "-nostdin", "-recv_timeout", "60000"])
            .arg(server.sip.to_string());
        agents.push(spawn_sipp(cmd, dir.path(), &format!("agent{agent}")));
    }
    let started = Instant::now();
    // 3 calls/s per caller: the calls are placed within total / 12 s.
    let limit = Duration::from_secs(u64::from(per_caller) / 3 + 60);
    let mut callers = Vec::new();
    for hold_ms in holds {
        let scenario = dir.path().join(format!("caller{hold_ms}.xml"));
        std::fs::write(
            &scenario,
            CALLER_RANDOM.replace("HOLD_MS", &hold_ms.to_string()),
        )
        .expect("scenario");
        let mut cmd = Command::new(require("sipp"));
        cmd.args(["-sf", &path_str(&scenario)])
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args([
                "-p",
                &free_port().to_string(),
                "-mp",
                &free_media_port().to_string(),
            ])
            .args(["-s", "12348", "-m", &per_caller.to_string()])
            .args(["-r", "3", "-rp", "1000", "-l", "40"])
            .args(["-nostdin", "-recv_timeout", "40000"])
            .arg(server.sip.to_string());
        callers.push(spawn_sipp(cmd, dir.path(), &format!("caller{hold_ms}")));
    }
    let statuses: Vec<Option<i32>> = callers
        .iter_mut()
        .map(|c| wait_or_kill(c, started + limit))
        .collect();
    let elapsed = started.elapsed();
    // The last calls' ends settle (BYE retransmissions, wrap-up 0, reconcile every 2 s).
    let settle = Instant::now() + Duration::from_secs(15);
    let mut states = agent_states(&server);
    while Instant::now() < settle
        && states
            .iter()
            .any(|(_, s, _)| s == "ringing" || s == "on_call")
    {
        std::thread::sleep(Duration::from_millis(500));
        states = agent_states(&server);
    }
    for agent in &mut agents {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    let calls = api_calls(&server);
    let answered = calls
        .iter()
        .filter(|c| c["record"]["agent"].is_string())
        .count();
    let by = |party: &str| {
        calls
            .iter()
            .filter(|c| c["record"]["agent"].is_string() && c["record"]["hung_up_first"] == party)
            .count()
    };
    eprintln!(
        "stress: {total} calls placed in {elapsed:?} (callers exit {statuses:?}); {} CDRs, \
         {answered} answered by an agent ({} caller hung up first, {} agent); final states {states:?}",
        calls.len(),
        by("caller"),
        by("agent"),
    );
    for (id, state, _) in &states {
        if id == "2001" {
            continue;
        }
        assert!(
            state == "available",
            "{id} left {state} after {total} calls\n{}",
            server.log()
        );
    }
    let (_, queues) = api(&server, "/api/queues");
    for q in queues.as_array().into_iter().flatten() {
        assert_eq!(q["waiting"], 0, "{q}");
    }
    assert!(
        calls.len() as u32 >= total * 98 / 100,
        "{} CDRs for {total} calls",
        calls.len()
    );
    assert!(answered > 0, "some calls reached an agent");
    assert!(
        by("caller") > 0 && by("agent") > 0,
        "both sides hung up first"
    );
    // queue_log balances.
    let rows = queue_log_rows(&server);
    let count = |event: &str| rows.iter().filter(|(e, _)| e == event).count();
    let calls_with = |event: &str| -> std::collections::BTreeSet<&str> {
        rows.iter()
            .filter(|(e, _)| e == event)
            .map(|(_, c)| c.as_str())
            .collect()
    };
    let entered = calls_with("enter");
    let mut outcome = calls_with("connect");
    outcome.extend(calls_with("abandon"));
    outcome.extend(calls_with("voice_message"));
    let unbalanced: Vec<&&str> = entered.difference(&outcome).collect();
    assert!(
        unbalanced.is_empty(),
        "calls that entered without an outcome: {unbalanced:?}"
    );
    assert_eq!(
        count("enter"),
        count("connect") + count("abandon") + count("voice_message"),
        "each entered call has exactly one outcome"
    );
    assert_eq!(
        count("connect"),
        count("complete") + count("agent_lost") + count("transfer"),
        "every answer completes (or its agent vanished, or it was transferred)"
    );
    assert_eq!(count("connect"), answered, "queue_log and CDRs agree");
    assert!(
        elapsed < Duration::from_secs(u64::from(per_caller) / 3 + 50),
        "took {elapsed:?}"
    );
}

/// The agent blind-transfers the caller to the satisfaction survey with REFER: 202,
/// NOTIFY 100/200, BYE to the agent; the caller hears the survey (no digit: "no
/// answer"), the server hangs up, and the survey result is in the CDR.
#[test]
fn a_refer_from_the_agent_lands_the_caller_in_the_survey() {
    let server = start(&queue_config("linear", 10, 3));
    let port = free_port();
    sign_in(&server, "1001", port);
    let target = server.sip.to_string();
    let phone = std::thread::spawn(move || {
        run_bounded(
            sipp_base("acd_agent_refer.xml", port)
                .args(["-set", "target", "survey", "-rtp_echo", "-m", "1"])
                .args(["-timeout", "60"])
                .arg(target),
            Duration::from_secs(65),
        )
    });
    let cwd = tempfile::tempdir().expect("tmp");
    let out = callers(&server, "053188886666", 1, cwd.path());
    assert_eq!(
        out.status,
        Some(0),
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    let out = phone.join().expect("agent thread");
    assert_eq!(
        out.status,
        Some(0),
        "agent REFER:\n{}\n{}\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(server.log().contains("blind transfer by the agent"));
    assert!(server.log().contains("satisfaction survey"));
    std::thread::sleep(Duration::from_millis(500));
    let calls = api_calls(&server);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["record"]["agent"], "1001", "{}", calls[0]);
    assert_eq!(calls[0]["record"]["survey"], "no_answer", "{}", calls[0]);
    assert!(wait_state(
        &server,
        "1001",
        "available",
        Duration::from_secs(5)
    ));
}

/// The post-call survey answer lands on the work order of the call (CALL-ETIQUETTE):
/// the caller keeps pressing 1 in band, the agent transfers to the survey, the CDR
/// says "satisfied"; the agent's order saved afterwards with that call id (phone left
/// blank: filled from the call) gets a `call_survey_recorded` event from the server.
#[test]
fn the_survey_answer_is_appended_to_the_order_of_the_call() {
    let config = queue_config("linear", 10, 3).replace(
        "[ivr.survey]\nprompt = \"beep\"\nthanks = \"beep\"\ngoodbye = \"beep\"\ndigit_timeout_ms = 1000",
        "[ivr.survey]\nprompt = \"beep\"\nthanks = \"beep\"\ngoodbye = \"beep\"\ndigit_timeout_ms = 4000",
    );
    assert!(
        config.contains("digit_timeout_ms = 4000"),
        "survey config patched"
    );
    const JINAN_AGENT_TOKEN: &str = "agent-jinan-token";
    let config = format!(
        "{config}
[[units]]
id = \"jinan\"
name = \"济南市司法局\"
kind = \"city\"
parent = \"province\"

[[users]]
id = \"agent-jinan\"
name = \"济南值班员\"
password = \"agent-jinan-password\"
roles = [\"agent\"]
unit = \"jinan\"
api_token = \"{}\"
",
        sha256_hex(JINAN_AGENT_TOKEN)
    );
    let server = start(&config);
    let port = free_port();
    sign_in(&server, "1001", port);
    let target = server.sip.to_string();
    let phone = std::thread::spawn(move || {
        run_bounded(
            sipp_base("acd_agent_refer.xml", port)
                .args(["-set", "target", "survey", "-rtp_echo", "-m", "1"])
                .args(["-timeout", "60"])
                .arg(target),
            Duration::from_secs(65),
        )
    });
    let cwd = tempfile::tempdir().expect("tmp");
    let out = callers_saying(
        &server,
        "13812345678",
        1,
        cwd.path(),
        "caller-presses-1-alaw.wav",
    );
    assert_eq!(
        out.status,
        Some(0),
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    let out = phone.join().expect("agent thread");
    assert_eq!(
        out.status,
        Some(0),
        "agent REFER:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let calls = api_calls(&server);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0]["record"]["survey"],
        "satisfied",
        "{}\n{}",
        calls[0],
        server.log()
    );
    let call_id = calls[0]["record"]["call_id"]
        .as_str()
        .expect("call id")
        .to_owned();

    let body = serde_json::json!({
        "contact_name": "张三",
        "contact_phone": "",
        "category": "consultation",
        "urgency": "normal",
        "business_area": "legal_aid",
        "units": [],
        "description": "咨询法律援助申请条件",
        "remarks": "",
        "channel": "phone",
        "city": "jinan",
        "call_id": call_id,
    });
    let (status, _, created) = request(
        &server,
        "POST",
        "/api/orders",
        JINAN_AGENT_TOKEN,
        &body.to_string(),
    );
    assert_eq!(status, 201, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).expect("json");
    let id = created["id"].as_str().expect("order id").to_owned();
    // The survey task runs every 3 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let order = loop {
        let (status, _, order) = request(
            &server,
            "GET",
            &format!("/api/orders/{id}"),
            JINAN_AGENT_TOKEN,
            "",
        );
        assert_eq!(status, 200, "{order}");
        let order: serde_json::Value = serde_json::from_str(&order).expect("json");
        if !order["call_survey"].is_null() || Instant::now() > deadline {
            break order;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        order["call_survey"],
        "satisfied",
        "{order}\n{}",
        server.log()
    );
    // Left blank by the agent: the number that called in, which the agent sees masked
    // (H-12-4) and dispatch sees in full.
    assert_eq!(order["fields"]["contact_phone"], "138****5678", "{order}");
    assert_eq!(order["contact_masked"], true, "{order}");
    let (status, _, dispatchers) = request(
        &server,
        "GET",
        &format!("/api/orders/{id}"),
        "hotline-test-token",
        "",
    );
    assert_eq!(status, 200, "{dispatchers}");
    let dispatchers: serde_json::Value = serde_json::from_str(&dispatchers).expect("json");
    assert_eq!(
        dispatchers["fields"]["contact_phone"], "13812345678",
        "{dispatchers}"
    );
    // Nor do the logs carry it: the call, the queue, the agent, the order, the survey.
    assert_log_keeps_number_private(&server.log(), "13812345678");
    let (_, _, events) = request(
        &server,
        "GET",
        &format!("/api/orders/{id}/events"),
        JINAN_AGENT_TOKEN,
        "",
    );
    let recorded = events.matches("call_survey_recorded").count();
    assert_eq!(recorded, 1, "{events}");
}

/// One HTTP request with a bearer token; (status, head, body).
fn request(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.http).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut resp = Vec::new();
    // An event stream never ends: read what arrives within the timeout.
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (status, head.to_string(), body.to_string())
}

/// Sign-ins and pauses are durable: after a clean restart and after kill -9, agent
/// 1001 is signed in (available again once its restored registration is seen) and 1002
/// still paused for the same reason; nobody has to sign in again.
#[test]
fn sign_ins_and_pauses_survive_a_restart_and_kill_9() {
    const NOW: [(&str, &str); 1] = [("HOTLINE_FAKE_NOW", "2026-02-14T10:00+08:00")];
    let mut server = start(&queue_config("longest_idle", 10, 3));
    sign_in(&server, "1001", free_port());
    register(&server, "1002", free_port());
    for (path, body) in [
        ("/api/agents/1002/sign_in", ""),
        ("/api/agents/1002/pause", r#"{"reason":"training"}"#),
    ] {
        let (status, _, reply) = request(&server, "POST", path, SUPERVISOR_TOKEN, body);
        assert_eq!(status, 200, "{path}: {reply}");
    }
    let expected = |server: &Server| {
        assert!(
            wait_state(server, "1001", "available", Duration::from_secs(10)),
            "{:?}\n{}",
            agent_states(server),
            server.log()
        );
        let paused = agent_states(server)
            .into_iter()
            .find(|(id, _, _)| id == "1002");
        assert_eq!(
            paused,
            Some(("1002".into(), "paused".into(), Some("training".into()))),
            "{}",
            server.log()
        );
    };
    expected(&server);
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
    let server = server.restart(&NOW);
    assert!(
        server.log().contains("restored_sign_ins=2"),
        "{}",
        server.log()
    );
    expected(&server);
    // The queue_log writer commits within milliseconds; kill -9 after that.
    std::thread::sleep(Duration::from_millis(500));
    let server = server.restart(&NOW);
    assert!(
        server.log().contains("restored_sign_ins=2"),
        "{}",
        server.log()
    );
    expected(&server);
}

/// `POST /api/agents/{id}/…`: an agent changes only itself, a supervisor anyone; the
/// queue snapshot and the event stream show the change.
#[test]
fn agents_change_their_own_state_by_api_and_supervisors_anyones() {
    let server = start(&queue_config("longest_idle", 10, 3));
    register(&server, "1002", free_port());
    let (status, _, body) = request(
        &server,
        "POST",
        "/api/agents/1001/pause",
        AGENT_1002_TOKEN,
        r#"{"reason":"lunch"}"#,
    );
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = request(
        &server,
        "POST",
        "/api/agents/1002/sign_in",
        AGENT_1002_TOKEN,
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_state(&server, "1002", "available", Duration::from_secs(5)),
        "{:?}",
        agent_states(&server)
    );
    let (status, _, body) = request(
        &server,
        "POST",
        "/api/agents/1002/pause",
        SUPERVISOR_TOKEN,
        r#"{"reason":"training"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let paused = agent_states(&server)
        .into_iter()
        .find(|(id, _, _)| id == "1002");
    assert_eq!(
        paused,
        Some(("1002".into(), "paused".into(), Some("training".into())))
    );
    let (status, _, _) = request(
        &server,
        "POST",
        "/api/agents/9999/sign_in",
        SUPERVISOR_TOKEN,
        "",
    );
    assert_eq!(status, 404);
    let (status, _, _) = request(&server, "GET", "/api/queues", "wrong-token", "");
    assert_eq!(status, 401);
    // The event stream answers as text/event-stream and carries agent_state events.
    let server_http = server.http;
    let watcher = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(server_http).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
        write!(s, "GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SUPERVISOR_TOKEN}\r\n\r\n").expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    std::thread::sleep(Duration::from_millis(700));
    let (status, _, body) = request(
        &server,
        "POST",
        "/api/agents/1002/unpause",
        AGENT_1002_TOKEN,
        "",
    );
    assert_eq!(status, 200, "{body}");
    let stream = watcher.join().expect("watcher");
    assert!(stream.contains("text/event-stream"), "{stream}");
    assert!(stream.contains("event: agent_state"), "{stream}");
    assert!(stream.contains("\"agent\":\"1002\""), "{stream}");
    // Sign-in, pause and unpause are rows of the append-only queue_log (AS-METRICS).
    if let Some(sqlite3) = std::env::var_os("PATH").and_then(|_| {
        let p = std::path::PathBuf::from("/usr/bin/sqlite3");
        p.exists().then_some(p)
    }) {
        let db = server.data_dir().join("hotline.db");
        let out = Command::new(sqlite3)
            .arg(&db)
            .arg("SELECT event FROM queue_log WHERE agent = '1002' ORDER BY id")
            .output()
            .expect("sqlite3");
        let rows = String::from_utf8_lossy(&out.stdout).into_owned();
        let events: Vec<&str> = rows.lines().collect();
        for wanted in ["sign_in", "pause", "unpause"] {
            assert!(events.contains(&wanted), "{wanted} in {events:?}");
        }
    }
}

/// Another Jinan queue agent (password `secret<id>`).
fn extra_agent(config: &str, id: &str, name: &str) -> String {
    format!(
        "{config}
[[agents]]
id = \"{id}\"
name = \"{name}\"
city = \"jinan\"
password = \"secret{id}\"
roles = [\"agent\"]

[[queues.agent]]
id = \"{id}\"
city = \"jinan\"
"
    )
}

/// A third Jinan agent, 1003 (for ring-all and transfers).
fn with_agent_1003(config: &str) -> String {
    extra_agent(config, "1003", "赵调解员")
}

/// Ring-all with three signed-in agents: all three phones ring at once; 1001 answers
/// after 1 s and is bridged; 1002 gets a CANCEL (200 + 487); 1003 answers just as its
/// CANCEL arrives (the 200 crosses the CANCEL) and gets ACK then BYE. Nobody but the
/// answering agent is charged a no-answer (max_no_answer = 1 would pause them), and
/// everyone ends available.
#[test]
fn ring_all_rings_three_phones_the_first_answer_wins_and_the_others_are_cancelled() {
    let server = start(&with_agent_1003(&queue_config("ring_all", 10, 1)));
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    sign_in(&server, "1001", p1);
    sign_in(&server, "1002", p2);
    sign_in(&server, "1003", p3);
    let target = server.sip.to_string();
    let winner = std::thread::spawn(move || {
        run_bounded(
            sipp_base("acd_agent_uas.xml", p1)
                .args(["-rtp_echo", "-d", "1000", "-m", "1", "-timeout", "60"])
                .arg(target),
            Duration::from_secs(65),
        )
    });
    let ringer = agent_phone(&server, "acd_agent_noanswer.xml", p2, 1, 60);
    let crosser = agent_phone(&server, "acd_agent_answer_crossing_cancel.xml", p3, 1, 60);
    let cwd = tempfile::tempdir().expect("tmp");
    let out = callers(&server, "053188886666", 1, cwd.path());
    assert_eq!(
        out.status,
        Some(0),
        "caller:\n{}\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    for (name, phone) in [("1001", winner), ("1002", ringer), ("1003", crosser)] {
        let out = phone.join().expect("agent thread");
        assert_eq!(
            out.status,
            Some(0),
            "agent {name}:\n{}\n{}\nserver log:\n{}",
            out.stdout,
            out.stderr,
            server.log()
        );
    }
    let log = server.log();
    assert_eq!(log.matches("ringing agent").count(), 3, "three legs: {log}");
    assert!(wait_for_log(&server, "call ended", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(500));
    let calls = api_calls(&server);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["record"]["agent"], "1001", "{}", calls[0]);
    for agent in ["1001", "1002", "1003"] {
        assert!(
            wait_state(&server, agent, "available", Duration::from_secs(5)),
            "{agent}: {:?}\n{}",
            agent_states(&server),
            server.log()
        );
    }
}

/// RMS of each channel of a 16-bit WAV over `[from, to)` seconds.
fn channel_rms(path: &Path, from: f64, to: f64) -> Vec<f64> {
    let mut reader = hound::WavReader::open(path).expect("wav");
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    let rate = f64::from(spec.sample_rate);
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let first = (from * rate) as usize * channels;
    let last = ((to * rate) as usize * channels).min(samples.len());
    (0..channels)
        .map(|c| {
            let part: Vec<f64> = samples
                .get(first..last)
                .unwrap_or_default()
                .iter()
                .skip(c)
                .step_by(channels)
                .map(|s| f64::from(*s))
                .collect();
            (part.iter().map(|s| s * s).sum::<f64>() / part.len().max(1) as f64).sqrt()
        })
        .collect()
}

/// Agent 1001 takes a queue call, holds the caller (re-INVITE sendonly: answered
/// recvonly, hold music to the caller), consults 1002 (a call to 1002's id, digest
/// authenticated; the server answers 1001 once 1002 answers), then transfers with a
/// REFER whose Replaces names the consultation dialog. 1002 is bridged with the caller (the
/// caller's speech reaches 1002, whose phone echoes it: the agent side of the call's
/// recording has it, while 1001 never sent audio), 1001 gets NOTIFY 200 and BYE on both
/// its calls; through the API 1002 is on the call and 1001 free; the CDR and queue_log
/// record the transfer, and 1002 hanging up ends the call (survey, BYE to the caller).
#[test]
fn attended_transfer_by_refer_with_replaces_bridges_the_caller_to_the_consulted_agent() {
    attended_transfer(
        "acd_agent_attended_transfer.xml",
        "attended transfer: taking the consultation's leg",
    );
}

/// The same, with 1001's phone sending the REFER on the consultation (to the target)
/// with Replaces naming its leg of the caller's call.
#[test]
fn attended_transfer_by_refer_sent_to_the_target_bridges_the_caller_too() {
    attended_transfer(
        "acd_agent_attended_transfer_to_target.xml",
        "consultation leg sent to the call it replaces",
    );
}

fn attended_transfer(scenario: &'static str, path_taken: &str) {
    let server = start(&queue_config("linear", 10, 3));
    let (pa, pb) = (free_port(), free_port());
    sign_in(&server, "1001", pa);
    let dir = tempfile::tempdir().expect("tmp");
    // 1002 is registered (and signed in) but gets no queue call: 1001 is first (linear).
    sign_in(&server, "1002", pb);
    let b_scenario = dir.path().join("agent1002.xml");
    std::fs::write(&b_scenario, AGENT_RANDOM.replace("TALK_MS", "5000")).expect("scenario");
    let target = server.sip.to_string();
    let b = {
        let target = target.clone();
        let scenario = path_str(&b_scenario);
        std::thread::spawn(move || {
            let mut cmd = Command::new(require("sipp"));
            cmd.args(["-sf", &scenario])
                .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
                .args(["-p", &pb.to_string(), "-mp", &free_media_port().to_string()])
                .args(["-rtp_echo", "-nostdin", "-m", "1", "-timeout", "60"])
                .arg(target);
            run_bounded(&mut cmd, Duration::from_secs(65))
        })
    };
    let a = std::thread::spawn(move || {
        run_bounded(
            sipp_base(scenario, pa)
                .args(["-s", "1001", "-au", "1001", "-ap", "secret1001"])
                .args(["-auth_uri", &format!("1002@{target}")])
                .args(["-set", "target", "1002", "-set", "tagfix", ""])
                .args(["-m", "1", "-timeout", "60"])
                .arg(target),
            Duration::from_secs(65),
        )
    });
    let cwd = tempfile::tempdir().expect("tmp");
    let caller = {
        let dir = cwd.path().to_path_buf();
        let sip = server.sip;
        std::thread::spawn(move || one_caller(sip, &dir))
    };
    assert!(
        wait_for_log(
            &server,
            "attended transfer: the caller is bridged to the consulted agent",
            Duration::from_secs(30)
        ),
        "{}",
        server.log()
    );
    assert!(server.log().contains(path_taken), "{}", server.log());
    // Right after the transfer: 1002 talks to the caller, 1001 is free (wrap-up 0).
    assert_eq!(
        state_of(&server, "1002"),
        "on_call",
        "{:?}",
        agent_states(&server)
    );
    assert!(
        wait_state(&server, "1001", "available", Duration::from_secs(3)),
        "{:?}",
        agent_states(&server)
    );
    for (name, phone) in [("caller", caller), ("1001", a), ("1002", b)] {
        let out = phone.join().expect("thread");
        assert_eq!(
            out.status,
            Some(0),
            "{name}:\n{}\n{}\nserver log:\n{}",
            out.stdout,
            out.stderr,
            server.log()
        );
    }
    assert!(wait_for_log(&server, "cdr", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(500));
    let calls = api_calls(&server);
    assert_eq!(calls.len(), 1, "the consultation has no CDR: {calls:?}");
    let record = &calls[0]["record"];
    assert_eq!(record["agent"], "1001", "{record}");
    assert_eq!(record["transfers"][0]["to"], "agent:1002", "{record}");
    assert_eq!(record["transfers"][0]["from_agent"], "1001", "{record}");
    assert_eq!(record["transfers"][0]["kind"], "attended", "{record}");
    assert_eq!(record["hung_up_first"], "agent", "{record}");
    // The consulted agent's echo of the caller is on the agent side of the recording.
    let recording = server
        .dir
        .path()
        .join(record["recordings"][0].as_str().expect("recording"));
    let whole = channel_rms(&recording, 0.0, 600.0);
    eprintln!("recording RMS (caller, agent side): {whole:?}");
    assert!(whole[0] > 300.0, "caller side: {whole:?}");
    assert!(whole[1] > 300.0, "the consulted agent's side: {whole:?}");
    for agent in ["1001", "1002"] {
        assert!(
            wait_state(&server, agent, "available", Duration::from_secs(5)),
            "{agent}: {:?}",
            agent_states(&server)
        );
    }
    let rows = queue_log_rows(&server);
    let events: Vec<&str> = rows
        .iter()
        .filter(|(_, c)| !c.is_empty())
        .map(|(e, _)| e.as_str())
        .collect();
    assert_eq!(
        events,
        ["enter", "connect", "transfer", "complete"],
        "{rows:?}"
    );
}

/// Wait on a raw phone for a request of `method` (other messages are skipped).
fn recv_request(phone: &RawUdp, method: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(msg) = phone.recv()
            && msg.starts_with(&format!("{method} "))
        {
            return Some(msg);
        }
    }
    None
}

/// Wait on a raw phone for a final response (1xx skipped).
fn recv_final(phone: &RawUdp, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(msg) = phone.recv()
            && msg.starts_with("SIP/2.0 ")
            && status_of(&msg) >= 200
        {
            return Some(msg);
        }
    }
    None
}

/// A response to `request` (its Via, From, To, Call-ID and CSeq), with a To tag when
/// given, extra header lines and a body.
fn reply(request: &str, status: &str, to_tag: Option<&str>, extra: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\n");
    for via in headers(request, "Via") {
        out.push_str(&format!("Via: {via}\n"));
    }
    for name in ["From", "Call-ID", "CSeq"] {
        out.push_str(&format!(
            "{name}: {}\n",
            header(request, name).unwrap_or_default()
        ));
    }
    let to = header(request, "To").unwrap_or_default();
    match to_tag {
        Some(tag) if !to.contains("tag=") => out.push_str(&format!("To: {to};tag={tag}\n")),
        _ => out.push_str(&format!("To: {to}\n")),
    }
    out.push_str(extra);
    if body.is_empty() {
        out.push_str("Content-Length: 0\n\n");
    } else {
        out.push_str(&format!(
            "Content-Type: application/sdp\nContent-Length: {}\n\n{body}",
            body.replace('\n', "\r\n").len()
        ));
    }
    out
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\no=phone 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
         m=audio {port} RTP/AVP 8\na=rtpmap:8 PCMA/8000\n"
    )
}

fn tag_of(value: &str) -> String {
    value
        .split(";tag=")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// An INVITE from `user` on `phone` with extra headers, through the digest challenge;
/// returns the final response to the authenticated INVITE and its text.
fn invite_with_auth(
    phone: &RawUdp,
    user: &str,
    password: &str,
    call_id: &str,
    extra: &str,
    media_port: u16,
) -> (String, String) {
    let local = phone.local();
    let uri = format!("sip:hotline@{}", phone.server);
    let text = |cseq: u32, auth: &str| {
        let body = sdp(media_port);
        format!(
            "INVITE {uri} SIP/2.0\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq};rport\n\
             Max-Forwards: 70\n\
             From: <sip:{user}@hotline.test>;tag=from-{call_id}\n\
             To: <sip:hotline@hotline.test>\n\
             Call-ID: {call_id}\n\
             CSeq: {cseq} INVITE\n\
             Contact: <sip:{user}@{local}>\n\
             {extra}{auth}Content-Type: application/sdp\n\
             Content-Length: {}\n\n{body}",
            body.replace('\n', "\r\n").len()
        )
    };
    phone.send(&text(1, ""));
    let challenge = recv_final(phone, Duration::from_secs(5)).expect("401");
    assert_eq!(status_of(&challenge), 401, "{challenge}");
    phone.send(&format!(
        "ACK {uri} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-1;rport\n\
         Max-Forwards: 70\nFrom: <sip:{user}@hotline.test>;tag=from-{call_id}\n\
         To: {}\nCall-ID: {call_id}\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        header(&challenge, "To").unwrap_or_default()
    ));
    let www = headers(&challenge, "WWW-Authenticate")
        .into_iter()
        .find(|c| c.contains("MD5"))
        .expect("MD5 challenge");
    let (realm, nonce, opaque) = (
        digest_param(www, "realm").expect("realm"),
        digest_param(www, "nonce").expect("nonce"),
        digest_param(www, "opaque").unwrap_or_default(),
    );
    let response = digest_response(&DigestInput {
        sha256: false,
        user,
        realm: &realm,
        password,
        method: "INVITE",
        uri: &uri,
        nonce: &nonce,
        nc: "00000001",
        cnonce: "c0ffee",
    });
    let auth = format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, \
         nc=00000001, opaque=\"{opaque}\"\n"
    );
    phone.send(&text(2, &auth));
    let answer = recv_final(phone, Duration::from_secs(5)).expect("final answer");
    (answer, uri)
}

/// RFC 3891 §3 the other way round: agent 1001 has the caller; agent 1002's phone
/// sends an INVITE with `Replaces` naming 1001's dialog with the server (as a phone does
/// when 1001 sent the REFER to it instead). The server answers 1002, bridges the caller
/// to it (the caller's RTP reaches 1002's socket), BYEs 1001's leg, and the ACD and the
/// CDR follow. A Replaces naming no dialog is 481, `early-only` on it 486.
#[test]
fn an_invite_with_replaces_from_another_agent_takes_over_the_agent_leg() {
    const JINAN_AGENT_TOKEN: &str = "agent-jinan-token";
    let config = format!(
        "{}
[[units]]
id = \"jinan\"
name = \"济南市司法局\"
kind = \"city\"
parent = \"province\"

[[users]]
id = \"agent-jinan\"
name = \"济南值班员\"
password = \"agent-jinan-password\"
roles = [\"agent\"]
unit = \"jinan\"
api_token = \"{}\"
",
        queue_config("linear", 10, 3),
        sha256_hex(JINAN_AGENT_TOKEN)
    );
    let server = start(&config);
    let a = RawUdp::new(server.sip);
    let b = RawUdp::new(server.sip);
    let ok = register_with_password(&a, "1001", "secret1001", false, 3600).expect("register");
    assert_eq!(status_of(&ok), 200, "{ok}");
    let ok = register_with_password(&b, "1002", "secret1002", false, 3600).expect("register");
    assert_eq!(status_of(&ok), 200, "{ok}");
    assert_eq!(feature_code(&server, "1001", "*11").status, Some(0));
    assert!(wait_state(
        &server,
        "1001",
        "available",
        Duration::from_secs(5)
    ));
    let cwd = tempfile::tempdir().expect("tmp");
    let caller = {
        let dir = cwd.path().to_path_buf();
        let sip = server.sip;
        std::thread::spawn(move || one_caller(sip, &dir))
    };
    // 1001's phone answers the queue call.
    let invite = recv_request(&a, "INVITE", Duration::from_secs(30)).expect("queue INVITE");
    let call_id = header(&invite, "Call-ID").unwrap_or_default().to_string();
    let server_tag = tag_of(header(&invite, "From").unwrap_or_default());
    let a_media = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let a_port = a_media.local_addr().expect("addr").port();
    a.send(&reply(
        &invite,
        "200 OK",
        Some("a-tag"),
        &format!("Contact: <sip:1001@{}>\n", a.local()),
        &sdp(a_port),
    ));
    assert!(recv_request(&a, "ACK", Duration::from_secs(5)).is_some());
    // 1001 opens the call's work order from the console while talking.
    let log = server.log();
    let caller_call_id = log
        .lines()
        .find(|l| l.contains("call answered") && l.contains("dialled=12348"))
        .and_then(|l| l.split("call_id=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the caller's call id in the log")
        .to_string();
    let body = serde_json::json!({
        "contact_name": "张三",
        "contact_phone": "053188886666",
        "category": "consultation",
        "urgency": "normal",
        "business_area": "legal_aid",
        "units": [],
        "description": "咨询法律援助申请条件",
        "remarks": "",
        "channel": "phone",
        "city": "jinan",
        "call_id": caller_call_id,
    });
    let (status, _, created) = request(
        &server,
        "POST",
        "/api/orders",
        JINAN_AGENT_TOKEN,
        &body.to_string(),
    );
    assert_eq!(status, 201, "{created}");
    let created: serde_json::Value = serde_json::from_str(&created).expect("json");
    let order_id = created["id"].as_str().expect("order id").to_owned();
    // Bogus dialogs first: 481, and 486 for early-only on the confirmed one.
    let b_media = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    b_media
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let b_port = b_media.local_addr().expect("addr").port();
    let (answer, _) = invite_with_auth(
        &b,
        "1002",
        "secret1002",
        "rep-none",
        "Require: replaces\nReplaces: nosuchcall;to-tag=x;from-tag=y\n",
        b_port,
    );
    assert_eq!(status_of(&answer), 481, "{answer}");
    let (answer, _) = invite_with_auth(
        &b,
        "1002",
        "secret1002",
        "rep-early",
        &format!("Replaces: {call_id};to-tag={server_tag};from-tag=a-tag;early-only\n"),
        b_port,
    );
    assert_eq!(status_of(&answer), 486, "{answer}");
    // The real one.
    let (answer, uri) = invite_with_auth(
        &b,
        "1002",
        "secret1002",
        "rep-1",
        &format!("Require: replaces\nReplaces: {call_id};to-tag={server_tag};from-tag=a-tag\n"),
        b_port,
    );
    assert_eq!(status_of(&answer), 200, "{answer}\n{}", server.log());
    let b_tag = tag_of(header(&answer, "To").unwrap_or_default());
    let local = b.local();
    b.send(&format!(
        "ACK {uri} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-rep-1-ack;rport\n\
         Max-Forwards: 70\nFrom: <sip:1002@hotline.test>;tag=from-rep-1\n\
         To: <sip:hotline@hotline.test>;tag={b_tag}\nCall-ID: rep-1\nCSeq: 2 ACK\n\
         Content-Length: 0\n\n"
    ));
    // 1001's leg is hung up.
    let bye = recv_request(&a, "BYE", Duration::from_secs(5)).expect("BYE to 1001");
    a.send(&reply(&bye, "200 OK", None, "", ""));
    // The caller's speech now reaches 1002's phone.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut rtp = 0;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && rtp < 10 {
        if let Ok((n, _)) = b_media.recv_from(&mut buf)
            && n > 12
        {
            rtp += 1;
        }
    }
    assert!(rtp >= 10, "RTP to the new agent: {rtp}\n{}", server.log());
    assert_eq!(
        state_of(&server, "1002"),
        "on_call",
        "{:?}",
        agent_states(&server)
    );
    assert!(wait_state(
        &server,
        "1001",
        "available",
        Duration::from_secs(3)
    ));
    // The call's work order records the transfer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let (status, _, events) = request(
            &server,
            "GET",
            &format!("/api/orders/{order_id}/events"),
            JINAN_AGENT_TOKEN,
            "",
        );
        assert_eq!(status, 200, "{events}");
        if events.contains("transferred_to_agent") || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        events.contains("transferred_to_agent") && events.contains("\"to\":\"1002\""),
        "{events}\n{}",
        server.log()
    );
    // 1002 hangs up: the caller gets the survey, then the server's BYE.
    b.send(&format!(
        "BYE {uri} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-rep-1-bye;rport\n\
         Max-Forwards: 70\nFrom: <sip:1002@hotline.test>;tag=from-rep-1\n\
         To: <sip:hotline@hotline.test>;tag={b_tag}\nCall-ID: rep-1\nCSeq: 3 BYE\n\
         Content-Length: 0\n\n"
    ));
    let ok = recv_final(&b, Duration::from_secs(5)).expect("200 to BYE");
    assert_eq!(status_of(&ok), 200, "{ok}");
    let out = caller.join().expect("caller");
    assert_eq!(out.status, Some(0), "{}\n{}", out.stderr, server.log());
    assert!(wait_for_log(&server, "cdr", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(500));
    let calls = api_calls(&server);
    let record = &calls[0]["record"];
    assert_eq!(record["agent"], "1001", "{record}");
    assert_eq!(record["transfers"][0]["to"], "agent:1002", "{record}");
    assert_eq!(record["transfers"][0]["kind"], "attended", "{record}");
    // 1002 never signed in: after the call it is logged out again, not left on it.
    assert!(wait_state(
        &server,
        "1002",
        "logged_out",
        Duration::from_secs(5)
    ));
}

/// The same attended transfer with a Replaces whose to-tag names no dialog: 202, then
/// NOTIFY `SIP/2.0 481` (RFC 3891 §3); the caller stays with 1001, who hangs up the
/// consultation (1002 is freed, never left on a call) and then the caller's call.
#[test]
fn an_attended_transfer_naming_no_dialog_fails_with_481_and_the_caller_stays() {
    let server = start(&queue_config("linear", 10, 3));
    let (pa, pb) = (free_port(), free_port());
    sign_in(&server, "1001", pa);
    sign_in(&server, "1002", pb);
    let dir = tempfile::tempdir().expect("tmp");
    let b_scenario = dir.path().join("agent1002.xml");
    std::fs::write(&b_scenario, AGENT_RANDOM.replace("TALK_MS", "20000")).expect("scenario");
    let target = server.sip.to_string();
    let b = {
        let target = target.clone();
        let scenario = path_str(&b_scenario);
        std::thread::spawn(move || {
            let mut cmd = Command::new(require("sipp"));
            cmd.args(["-sf", &scenario])
                .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
                .args(["-p", &pb.to_string(), "-mp", &free_media_port().to_string()])
                .args(["-rtp_echo", "-nostdin", "-m", "1", "-timeout", "60"])
                .arg(target);
            run_bounded(&mut cmd, Duration::from_secs(65))
        })
    };
    let a = std::thread::spawn(move || {
        run_bounded(
            sipp_base("acd_agent_attended_transfer.xml", pa)
                .args(["-s", "1001", "-au", "1001", "-ap", "secret1001"])
                .args(["-auth_uri", &format!("1002@{target}")])
                .args(["-set", "target", "1002", "-set", "tagfix", "x"])
                .args(["-m", "1", "-timeout", "60"])
                .arg(target),
            Duration::from_secs(65),
        )
    });
    let cwd = tempfile::tempdir().expect("tmp");
    let out = callers(&server, "053188886666", 1, cwd.path());
    assert_eq!(
        out.status,
        Some(0),
        "caller: {}\n{}",
        out.stderr,
        server.log()
    );
    for (name, phone) in [("1001", a), ("1002", b)] {
        let out = phone.join().expect("thread");
        assert_eq!(
            out.status,
            Some(0),
            "{name}:\n{}\n{}\nserver log:\n{}",
            out.stdout,
            out.stderr,
            server.log()
        );
    }
    let log = server.log();
    assert!(
        log.contains("attended transfer: no usable dialog to replace")
            && log.contains("status=481"),
        "{log}"
    );
    assert!(
        !log.contains("the caller is bridged to the consulted agent"),
        "{log}"
    );
    assert!(wait_for_log(&server, "cdr", Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(500));
    let calls = api_calls(&server);
    let record = &calls[0]["record"];
    assert_eq!(record["agent"], "1001", "{record}");
    assert_eq!(record["transfers"], serde_json::json!([]), "{record}");
    for agent in ["1001", "1002"] {
        assert!(
            wait_state(&server, agent, "available", Duration::from_secs(5)),
            "{agent}: {:?}",
            agent_states(&server)
        );
    }
}
