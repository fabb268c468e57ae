//! The browser softphone (issue 16): agent 1002 has nothing but the console in headless
//! Chromium (`web/e2e/softphone.mjs`), whose fake microphone plays a 1400 Hz tone. The
//! browser registers as the agent's phone over the console's WebSocket, the agent signs
//! in, a baresip caller (600 Hz tone) dials 12348 and is queued to the agent, the
//! browser rings and answers over WebRTC (str0m on the server: ICE-lite, DTLS-SRTP,
//! PCMU), talks ~6 s, holds (the page hears nothing: the caller gets the hold music)
//! and resumes (the caller's tone is back); the console's transfer button sends the
//! caller to the survey and the server ends the browser's leg.
//!
//! Judged from both sides: the caller's decoded audio holds the browser's tone; the
//! page's WebAudio analyser hears the caller's tone; afterwards the call record names
//! agent 1002 and its stereo recording has both voices, and the draft the console
//! autosaved during the call is on the server.
//!
//! The console runs on http://127.0.0.1, which Chromium treats as a secure context
//! (getUserMedia works without HTTPS there). Needs `node`, `web/node_modules`, a built
//! `web/dist`, `/usr/bin/chromium` and `baresip`; skipped (with a message) only when
//! `node` is missing, as `web_e2e`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::phone::*;
use common::queue::*;
use common::repo_root;

const BROWSER_TONE: f64 = 1400.0;
const CALLER_TONE: f64 = 600.0;

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

#[test]
fn an_agent_with_only_a_browser_takes_a_queue_call_and_both_sides_hear_each_other() {
    if !on_path("node") {
        eprintln!("SKIPPED softphone_e2e: `node` is not installed");
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
    let server = start(&queue_config("linear", 20, 3));
    let tones = tempfile::tempdir().expect("tmp");
    let browser_source = tones.path().join("browser.wav");
    let caller_source = tones.path().join("caller.wav");
    tone_wav_at(&browser_source, BROWSER_TONE, 10.0, 48_000);
    tone_wav(&caller_source, CALLER_TONE, 30.0);

    let mut node = Command::new("node")
        .arg(web.join("e2e/softphone.mjs"))
        .arg(format!("http://{}", server.http))
        .args(["1002", "agent-password"])
        .arg(&browser_source)
        .arg(CALLER_TONE.to_string())
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
    let mut caller: Option<Baresip> = None;
    let mut stdout_text = String::new();
    let mut call_id = String::new();
    // The browser script has its own 90 s watchdog; this one only stops a hung node.
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        match lines.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                println!("{line}");
                if line.trim() == "softphone: place-call" && caller.is_none() {
                    caller = Some(Baresip::caller(
                        &server,
                        "053188001234",
                        "053112348",
                        &caller_source,
                        28,
                    ));
                }
                if let Some(id) = line.strip_prefix("softphone: call ") {
                    call_id = id.trim().to_string();
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
    let caller = caller.map(Baresip::finish);
    let context = format!(
        "--- node stdout\n{stdout_text}\n--- node stderr\n{stderr}\n--- caller\n{}\n--- server\n{}",
        caller.as_ref().map(PhoneResult::log).unwrap_or_default(),
        server.log()
    );
    assert!(
        status.success() && stdout_text.contains("SOFTPHONE OK"),
        "browser side failed ({:?})\n{context}",
        status.code()
    );

    // The caller's phone played the browser's tone.
    let caller = caller.expect("the browser asked for the call");
    let heard = caller
        .tone_ms(BROWSER_TONE)
        .unwrap_or_else(|| panic!("the caller had no call\n{context}"));
    println!("the caller heard the browser's tone for {heard} ms");
    assert!(
        heard >= 3000,
        "the caller heard the browser's tone for {heard} ms of ~6 s\n{context}"
    );

    // The call record: answered by agent 1002, recorded with both voices.
    let calls = api_calls(&server);
    let call = calls
        .iter()
        .find(|c| c["record"]["agent"] == "1002")
        .unwrap_or_else(|| panic!("no call answered by 1002: {calls:?}\n{context}"));
    let recording = call["record"]["recordings"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no recording: {call:?}"));
    let mut reader = hound::WavReader::open(recording).expect("recording");
    assert_eq!(reader.spec().channels, 2, "stereo recording");
    let samples: Vec<i16> = reader.samples::<i16>().map_while(Result::ok).collect();
    let loud = |channel: usize| {
        samples
            .iter()
            .skip(channel)
            .step_by(2)
            .filter(|s| s.unsigned_abs() > 2000)
            .count()
    };
    assert!(
        loud(0) > 8000 && loud(1) > 8000,
        "both voices in the recording: caller {} agent {} loud samples",
        loud(0),
        loud(1)
    );
    assert_eq!(
        call["record"]["transfers"].as_array().map(Vec::len),
        Some(1),
        "the blind transfer to the survey on the record: {call:?}"
    );
    assert!(
        !call_id.is_empty(),
        "the console showed no screen-pop\n{context}"
    );
}
