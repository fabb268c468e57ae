//! End-to-end test of the browser consoles: the real `hotline` binary serves the API and
//! the embedded consoles; `web/e2e/run.mjs` drives headless Debian Chromium through
//! Playwright (`playwright-core`) along a whole work-order life: agent intake, dispatch,
//! return with a reason, re-dispatch, sign and reply, callback "satisfied" closes it;
//! then a real call: SIPp's agent 1001 is registered, the console user signs it in, a
//! SIPp caller presses 2 in the IVR and is queued to it, the screen-pop shows the masked
//! number, the complaint category and the number's previous order, the autosaved draft
//! survives a reload and is saved as an order linked to the call, the console's
//! transfer button sends the caller to the survey, the wrap-up countdown is ended
//! early; the supervisor sees server-side KPIs, the ranking, the ledger and plays the
//! call's recording.
//!
//! The browser script prints `e2e: place-call` when the agent is ready; this test then
//! starts the SIPp caller. Afterwards it checks through the API and the database that
//! the order carries the call id and that the plays were audited.
//!
//! Needs `node`, `web/node_modules` (`npm ci` in `web/`), a built `web/dist`
//! (`npm run build`, before `cargo test` so the binary embeds it), `/usr/bin/chromium`
//! and `sipp`. Skipped (with a message) only when `node` is missing; anything else
//! missing fails. `HOTLINE_UPDATE_SCREENSHOTS=1` writes the screenshots to
//! `docs/screenshots/`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    Output, Server, free_media_port, free_port, path_str, repo_root, require, run_bounded,
    shipped_config, sipp_scenario,
};

/// Bearer token of `e2e-supervisor` for the API checks after the browser run.
const SUPERVISOR_TOKEN: &str = "e2e-supervisor-token";
/// The caller's mobile number (masked `138****5678` on the screen-pop).
const CALLER: &str = "13812345678";

/// Demo users for the test, one per console (password `demo-<id>`), appended to the
/// shipped config.
const E2E_USERS: &str = r#"

[[users]]
id = "e2e-agent"
name = "王坐席"
password = "demo-e2e-agent"
roles = ["agent"]
unit = "jinan"
agent = "1001"

[[users]]
id = "e2e-dispatcher"
name = "赵转办"
password = "demo-e2e-dispatcher"
roles = ["dispatcher"]
unit = "jinan"

[[users]]
id = "e2e-aid"
name = "钱援助"
password = "demo-e2e-aid"
roles = ["unit_handler", "unit_head"]
unit = "jinan-legal-aid"

[[users]]
id = "e2e-lixia"
name = "孙承办"
password = "demo-e2e-lixia"
roles = ["unit_handler", "unit_head", "reviewer"]
unit = "jinan-lixia"

[[users]]
id = "e2e-callback"
name = "李回访"
password = "demo-e2e-callback"
roles = ["callback_staff"]
unit = "jinan"

[[users]]
id = "e2e-supervisor"
name = "周督办"
password = "demo-e2e-supervisor"
roles = ["supervisor"]
unit = "jinan"
api_token = "SUPERVISOR_TOKEN_SHA256"

# Short prompts and timeouts: the caller presses 2 during the menu; the survey after the
# transfer ends by itself (no digit).
[ivr]
greeting = "beep"
menu = "beep"
digit_timeout_ms = 5000
max_retries = 0
max_message_secs = 3

[ivr.survey]
prompt = "beep"
thanks = "beep"
goodbye = "beep"
digit_timeout_ms = 1000
retries = 0
"#;

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The shipped config (its paths fixed for a copy elsewhere: `common::shipped_config`),
/// with an RTP port range of its own, the SIP domain of the SIPp scenarios, and the e2e
/// users and IVR timings added.
fn e2e_config() -> String {
    let base = 45000 + (std::process::id() % 200) as u16 * 40;
    let replacements = [
        (
            "rtp_port_min = 20000".to_owned(),
            format!("rtp_port_min = {base}"),
        ),
        (
            "rtp_port_max = 29999".to_owned(),
            format!("rtp_port_max = {}", base + 39),
        ),
        (
            "domain = \"12348.sd.local\"".to_owned(),
            "domain = \"hotline.test\"".to_owned(),
        ),
    ];
    let mut config = shipped_config();
    for (from, to) in replacements {
        assert!(config.contains(&from), "shipped config lost {from}");
        config = config.replace(&from, &to);
    }
    config.push_str(&E2E_USERS.replace("SUPERVISOR_TOKEN_SHA256", &sha256_hex(SUPERVISOR_TOKEN)));
    config
}

fn sipp(scenario: &str, port: u16) -> Command {
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

/// Register agent 1001 (the shipped password) with its contact at 127.0.0.1:`port`, then
/// run its phone there: it answers one call and waits for the server's BYE.
fn agent_phone(server: &Server, port: u16) -> JoinHandle<Output> {
    let out = run_bounded(
        sipp("register_once.xml", port)
            .args(["-s", "1001", "-au", "1001", "-ap", "jinan-1001"])
            .args(["-m", "1", "-timeout", "10"])
            .arg(server.sip.to_string()),
        Duration::from_secs(15),
    );
    assert_eq!(
        out.status,
        Some(0),
        "register 1001:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let target = server.sip.to_string();
    std::thread::spawn(move || {
        run_bounded(
            sipp("web_agent_uas.xml", port)
                .args(["-rtp_echo", "-m", "1", "-timeout", "300"])
                .arg(target),
            Duration::from_secs(305),
        )
    })
}

/// The caller: Jinan's number, presses 2, talks until the server hangs up.
fn caller(server: &Server, cwd: &Path) -> JoinHandle<Output> {
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        cwd.join("caller.wav"),
    )
    .expect("fixture");
    let mut cmd = sipp("web_caller.xml", free_port());
    cmd.current_dir(cwd)
        .args(["-s", "053112348", "-set", "caller", CALLER])
        .args(["-m", "1", "-timeout", "240"])
        .arg(server.sip.to_string());
    std::thread::spawn(move || run_bounded(&mut cmd, Duration::from_secs(245)))
}

/// GET with the supervisor's bearer token, as JSON.
fn api(server: &Server, path: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.http).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SUPERVISOR_TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).expect("read");
    let resp = String::from_utf8_lossy(&bytes);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or_default())
}

/// `recording.play` rows in the server's audit log (read from its SQLite file).
fn audited_plays(server: &Server) -> i64 {
    let url = format!(
        "sqlite://{}",
        server.data_dir().join("hotline.db").display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = hotline::store::Store::connect(&url).await.expect("open db");
        store
            .audit_count("recording.play")
            .await
            .expect("audit count")
    })
}

#[test]
fn consoles_carry_an_order_from_intake_to_ranking_in_chromium() {
    if !on_path("node") {
        eprintln!(
            "SKIPPED web_e2e: `node` is not installed (install nodejs 20+ to run the browser test)"
        );
        return;
    }
    let root = repo_root();
    let web = root.join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules missing: run `npm ci` in web/ before `cargo test`"
    );
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium missing: apt-get install -y chromium"
    );

    // 2026-02-14 is a working Saturday (调休): Jinan answers live; agent 1001 is on the
    // shipped all-year roster. Orders keep the real clock.
    let server = Server::start_with(
        &e2e_config(),
        &[("HOTLINE_FAKE_NOW", "2026-02-14T10:00+08:00")],
    );
    let (status, body) = server.http_get("/");
    assert_eq!(status, 200, "GET / failed: {body}");
    assert!(
        !body.contains("控制台尚未构建"),
        "the binary embeds no consoles: run `npm run build` in web/ before `cargo test`"
    );
    let phone = agent_phone(&server, free_port());

    let base = format!("http://{}", server.http);
    // The committed screenshots are refreshed on request only, so a test run does not
    // leave the work tree dirty: HOTLINE_UPDATE_SCREENSHOTS=1 cargo test --test web_e2e
    let shots = if std::env::var_os("HOTLINE_UPDATE_SCREENSHOTS").is_some() {
        root.join("docs/screenshots")
    } else {
        server.dir.path().join("screenshots")
    };
    let mut node = Command::new("node")
        .arg(web.join("e2e/run.mjs"))
        .arg(&base)
        .env("E2E_SCREENSHOTS", &shots)
        .current_dir(&web)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let (tx, lines) = mpsc::channel::<String>();
    let stdout = node.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = node.stderr.take().expect("stderr");
    let stderr_text = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let caller_dir = tempfile::tempdir().expect("tmp");
    let mut call: Option<JoinHandle<Output>> = None;
    let mut stdout_text = String::new();
    let mut call_order: Option<(String, String)> = None;
    // The browser script has its own 420 s watchdog; this one only stops a hung node.
    let deadline = Instant::now() + Duration::from_secs(480);
    loop {
        match lines.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                println!("{line}");
                if line.trim() == "e2e: place-call" && call.is_none() {
                    call = Some(caller(&server, caller_dir.path()));
                }
                if let Some(rest) = line.strip_prefix("e2e: call-order ") {
                    let mut parts = rest.split_whitespace();
                    if let (Some(order), Some(call_id)) = (parts.next(), parts.next()) {
                        call_order = Some((order.to_owned(), call_id.to_owned()));
                    }
                }
                stdout_text.push_str(&line);
                stdout_text.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if Instant::now() > deadline {
                    let _ = node.kill();
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = node.wait().expect("node exit");
    let stderr = stderr_text.join().unwrap_or_default();
    // Give a failing run the server's side of the story too.
    std::thread::sleep(Duration::from_millis(100));
    let log_tail = || {
        server
            .log()
            .lines()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        status.success(),
        "browser e2e failed ({:?})\n--- node stdout\n{stdout_text}\n--- node stderr\n{stderr}\n--- server log (tail)\n{}",
        status.code(),
        log_tail()
    );
    assert!(stdout_text.contains("E2E OK"), "{stdout_text}");

    // The SIP side: the caller was answered, transferred to the survey and hung up by the
    // server; the agent's phone saw its leg hung up by the server.
    let call = call
        .expect("the browser asked for the call")
        .join()
        .expect("caller");
    assert_eq!(
        call.status,
        Some(0),
        "caller:\n{}\n{}\n{}",
        call.stdout,
        call.stderr,
        log_tail()
    );
    let phone = phone.join().expect("agent phone");
    assert_eq!(
        phone.status,
        Some(0),
        "agent phone:\n{}\n{}\n{}",
        phone.stdout,
        phone.stderr,
        log_tail()
    );
    assert!(server.log().contains("call transferred from the console"));

    // The order saved from the screen-pop carries the call id; the call's record knows
    // the agent, the complaint, the survey and the recording; the plays were audited.
    let (order_id, call_id) = call_order.expect("the browser reported the call's order");
    let (status, order) = api(&server, &format!("/api/orders/{order_id}"));
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["fields"]["call_id"], call_id.as_str(), "{order}");
    assert_eq!(order["fields"]["category"], "complaint", "{order}");
    let (status, calls) = api(&server, "/api/calls?limit=5");
    assert_eq!(status, 200, "{calls}");
    let record = calls
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| &c["record"])
        .find(|r| r["call_id"] == call_id.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(record["agent"], "1001", "{calls}");
    // Who answered, by name: both the shipped 值班员 and 王坐席 of this test work as 1001.
    let call = calls
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["record"]["call_id"] == call_id.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(call["agent_name"], "值班员 张明／王坐席", "{calls}");
    assert_eq!(record["category"], "complaint", "{calls}");
    assert_eq!(
        record["caller"], "138****5678",
        "a supervisor sees it masked: {calls}"
    );
    assert_eq!(record["survey"], "no_answer", "{calls}");
    assert_eq!(
        record["recordings"].as_array().map(Vec::len),
        Some(1),
        "{calls}"
    );
    let plays = audited_plays(&server);
    assert!(plays >= 1, "recording plays audited: {plays}");
}

/// The public page (issue 17, W-2/W-9) at a phone's size: a citizen leaves a
/// consultation without logging in (the page solves the proof of work with WebCrypto),
/// the unit answers it, the citizen reads the reply with the query code and phone and
/// rates it; an image is attached and a text file called .png refused. Then the
/// database: a web order with what the citizen typed, rated satisfied and closed,
/// registered by the public intake, with the one image linked.
#[test]
fn public_page_takes_a_consultation_and_shows_its_reply_on_a_phone() {
    if !on_path("node") {
        eprintln!("SKIPPED web_e2e public page: `node` is not installed");
        return;
    }
    let web = repo_root().join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules missing: run `npm ci` in web/ before `cargo test`"
    );
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium missing: apt-get install -y chromium"
    );
    let server = Server::start_with(&shipped_config(), &[]);
    let base = format!("http://{}", server.http);
    let shots = if std::env::var_os("HOTLINE_UPDATE_SCREENSHOTS").is_some() {
        repo_root().join("docs/screenshots")
    } else {
        server.dir.path().join("screenshots")
    };
    let out = run_bounded(
        Command::new("node")
            .arg(web.join("e2e/public.mjs"))
            .arg(&base)
            .env("E2E_SCREENSHOTS", &shots)
            .current_dir(&web),
        Duration::from_secs(150),
    );
    assert_eq!(
        out.status,
        Some(0),
        "public page e2e failed\n--- stdout\n{}\n--- stderr\n{}\n--- server log\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(out.stdout.contains("e2e: public ok"), "{}", out.stdout);
    let code = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("e2e: code "))
        .expect("the page showed a query code")
        .trim()
        .to_owned();

    let url = format!(
        "sqlite://{}",
        server.data_dir().join("hotline.db").display()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (order, events) = runtime.block_on(async {
        let store = hotline::store::Store::connect(&url).await.expect("open db");
        let order = store
            .load_order(&code)
            .await
            .expect("read")
            .expect("stored");
        let events = store.order_events(&code).await.expect("events");
        let attachments = store.attachments_of(&code).await.expect("attachments");
        assert_eq!(
            attachments.len(),
            1,
            "the image, not the fake: {attachments:?}"
        );
        assert_eq!(attachments[0].content_type, "image/png");
        (order, events)
    });
    assert_eq!(order.fields.channel, hotline::ticket::Channel::Web);
    assert_eq!(order.fields.contact.phone, "13955556666");
    assert_eq!(order.fields.contact.name, "刘晓");
    assert!(order.fields.description.contains("拖欠我两个月工资"));
    assert_eq!(order.state, hotline::ticket::State::Closed);
    assert_eq!(
        order.satisfaction,
        Some(hotline::ticket::Satisfaction::Satisfied)
    );
    assert_eq!(events[0].actor, "public");
    assert!(events.iter().any(|e| e.actor == "citizen"));
}
