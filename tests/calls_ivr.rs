//! The 12348 call flow end to end, on a fixed clock (`HOTLINE_FAKE_NOW`): city by the
//! caller's area code, hours on China's calendar, the IVR menu driven by RFC 4733 digits,
//! the ACD in hours (a voice message when nobody is signed in), a voice message with real
//! audio after hours, and the CDR listed by `GET /api/calls`.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn ivr_config() -> String {
    let prompts = repo_root().join("config/prompts/zh");
    let base = 31000 + (std::process::id() % 500) as u16 * 40;
    // Short prompts where the test does not care what is said, so a run takes seconds.
    format!(
        "{TEST_CONFIG}
[media]
rtp_port_min = {base}
rtp_port_max = {}
media_timeout_secs = 30
prompts_dir = \"{}\"

[calls]

[ivr]
greeting = \"beep\"
voice_message_intro = \"beep\"
",
        base + 39,
        prompts.display()
    )
}

/// The calls listed by the API, as JSON values.
/// The call records matching `query`. The "cdr" log line comes before the row is
/// committed, so wait (up to 5 s) for the first record to be readable.
fn api_calls(server: &Server, query: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = server.api_get(&format!("/api/calls{query}"));
        assert_eq!(status, 200, "{body}");
        let calls: Vec<serde_json::Value> =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        if !calls.is_empty() || Instant::now() > deadline {
            return calls;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// In hours, with Jinan's queue and nobody signed in: the complaint reaches the queue,
/// the caller is told nobody can answer and leaves a message (never held, then dropped).
#[test]
fn in_hours_on_a_makeup_saturday_pressing_2_reaches_the_queue_as_a_complaint() {
    let sipp = require("sipp");
    // Saturday 2026-02-14 is a working day (调休) before the Spring Festival: the queue
    // rig's clock.
    // The menu plays long enough for the digit to barge in; short prompts around the
    // message keep the call within SIPp's wait for the BYE.
    let config = common::queue::queue_config("linear", 15, 3).replace(
        "[ivr]\ngreeting = \"beep\"\nmenu = \"beep\"\n",
        "[ivr]\ngreeting = \"beep\"\nplease_hold = \"beep\"\nno_agents = \"beep\"\nvoice_message_intro = \"beep\"\nthanks = \"beep\"\n",
    );
    let server = common::queue::start(&config);
    let cwd = tempfile::tempdir().expect("tmp");
    let out = run_bounded(
        Command::new(&sipp)
            .current_dir(cwd.path())
            .args(["-sf", &path_str(&sipp_scenario("call_ivr_queue.xml"))])
            .args([
                "-s",
                "12348",
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &free_port().to_string(),
                "-mp",
                &free_media_port().to_string(),
            ])
            .args(["-nostdin", "-timeout", "40"])
            .arg(server.sip.to_string()),
        Duration::from_secs(50),
    );
    assert_eq!(
        out.status,
        Some(0),
        "sipp:\n{}\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(
        wait_for_log(&server, " cdr ", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let calls = api_calls(&server, "?path=queue&category=complaint");
    assert_eq!(calls.len(), 1, "{calls:?}\n{}", server.log());
    let record = &calls[0]["record"];
    assert_eq!(record["city"], "jinan", "{record}");
    assert_eq!(record["city_resolved_by"], "area_code", "{record}");
    assert_eq!(record["category"], "complaint", "{record}");
    assert_eq!(record["urgency"], "normal", "{record}");
    let path: Vec<&str> = record["path"]
        .as_array()
        .expect("path")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(path, ["ivr", "queue", "voice_message"], "{record}");
    assert!(record["queue_entry"].is_string(), "{record}");
    assert!(
        record["arrival"]
            .as_str()
            .is_some_and(|a| a.starts_with("2026-02-14T10:00")),
        "the fake clock: {record}"
    );
    // Nobody signed in: the caller was told so and left a message, due for callback.
    assert!(
        server
            .log()
            .contains("nobody can take the call now: voice message"),
        "{}",
        server.log()
    );
    assert!(
        calls[0]["voice_message"]["recording"].is_string(),
        "{:?}",
        calls[0]
    );
}

/// A-law payload of a WAV file (the data chunk).
fn alaw_payload(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("fixture");
    let at = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk");
    bytes[at + 8..].to_vec()
}

struct RtpSender {
    socket: UdpSocket,
    to: SocketAddr,
    seq: u16,
    timestamp: u32,
}

impl RtpSender {
    fn packet(&mut self, marker: bool, pt: u8, timestamp: u32, payload: &[u8]) {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        let _ = self.socket.send_to(&p, self.to);
    }

    /// One 20 ms audio frame.
    fn audio(&mut self, frame: &[u8]) {
        let ts = self.timestamp;
        self.packet(false, 8, ts, frame);
        self.timestamp = self.timestamp.wrapping_add(160);
    }

    /// An RFC 4733 digit: three updates and three end packets with one timestamp.
    fn digit(&mut self, event: u8) {
        let ts = self.timestamp;
        for (i, end) in [false, false, false, true, true, true]
            .into_iter()
            .enumerate()
        {
            let duration = 160u16 * (i as u16 + 1).min(4);
            let flags = if end { 0x80 | 10 } else { 10 };
            let [d0, d1] = duration.to_be_bytes();
            self.packet(i == 0, 101, ts, &[event, flags, d0, d1]);
        }
        self.timestamp = self.timestamp.wrapping_add(800);
    }
}

fn sdp_port(response: &str) -> u16 {
    response
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

#[test]
fn after_hours_on_national_day_a_5s_message_is_due_for_callback_on_october_9() {
    let server = Server::start_with(
        &ivr_config(),
        &[("HOTLINE_FAKE_NOW", "2025-10-01T10:00+08:00")],
    );
    let sip = RawUdp::new(server.sip);
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp");
    rtp.set_nonblocking(true).expect("nonblocking");
    let call_id = format!("after-hours-{}", std::process::id());
    let sdp = format!(
        "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        rtp.local_addr().expect("addr").port()
    );
    // A Jinan fixed-line caller dials 12348.
    sip.send(&format!(
        "INVITE sip:12348@{server} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id};rport\n\
         Max-Forwards: 70\nFrom: <sip:053188886666@127.0.0.1>;tag=caller\nTo: <sip:12348@{server}>\n\
         Call-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:caller@{local}>\n\
         Content-Type: application/sdp\nContent-Length: {len}\n\n{sdp}",
        server = server.sip,
        local = sip.local(),
        len = sdp.len(),
    ));
    let ok = loop {
        let resp = sip.recv().expect("answer");
        if status_of(&resp) >= 200 {
            break resp;
        }
    };
    assert_eq!(status_of(&ok), 200, "{ok}");
    let to = header(&ok, "To").expect("To").to_string();
    sip.send(&format!(
        "ACK sip:hotline@{server} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ack-{call_id};rport\n\
         Max-Forwards: 70\nFrom: <sip:053188886666@127.0.0.1>;tag=caller\nTo: {to}\n\
         Call-ID: {call_id}\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        server = server.sip,
        local = sip.local(),
    ));
    sip.socket.set_nonblocking(true).expect("nonblocking");
    let mut sender = RtpSender {
        socket: rtp.try_clone().expect("clone"),
        to: SocketAddr::from(([127, 0, 0, 1], sdp_port(&ok))),
        seq: 1,
        timestamp: 0,
    };
    let speech = alaw_payload(&repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"));
    let silence = [0xd5u8; 160];
    let started = Instant::now();
    let mut next = started;
    let mut heard_before_message = 0usize;
    let mut heard_voiced = 0usize;
    let mut speaking_from: Option<Instant> = None;
    let mut frames_spoken = 0usize;
    let mut bye: Option<String> = None;
    let mut buf = [0u8; 2048];
    while bye.is_none() && started.elapsed() < Duration::from_secs(60) {
        // Pace 20 ms frames on the wall clock.
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next += Duration::from_millis(20);
        let frame_index = (next - started).as_millis() / 20;
        match speaking_from {
            None => {
                // Press 1 (message) about once a second until the recording starts;
                // the flow ignores it while the hours are being read.
                if frame_index % 50 == 25 {
                    sender.digit(1);
                } else {
                    sender.audio(&silence);
                }
                if frame_index % 10 == 0 && server.log().contains("recording voice message") {
                    speaking_from = Some(Instant::now());
                }
            }
            Some(_) if frames_spoken < 250 => {
                let frame = speech
                    .chunks(160)
                    .nth(frames_spoken)
                    .filter(|f| f.len() == 160)
                    .unwrap_or(&silence);
                sender.audio(frame);
                frames_spoken += 1;
                if frames_spoken == 250 {
                    sender.digit(11); // '#' ends the message
                }
            }
            Some(_) => sender.audio(&silence),
        }
        while let Ok((n, _)) = rtp.recv_from(&mut buf) {
            if speaking_from.is_none() && n > 12 {
                heard_before_message += 1;
                let payload = &buf[12..n];
                if payload.iter().any(|b| *b != payload[0]) {
                    heard_voiced += 1;
                }
            }
        }
        let mut sip_buf = [0u8; 4096];
        while let Ok((n, _)) = sip.socket.recv_from(&mut sip_buf) {
            let text = String::from_utf8_lossy(&sip_buf[..n]).into_owned();
            if text.starts_with("BYE ") {
                bye = Some(text);
            }
        }
    }
    let bye = bye.unwrap_or_else(|| panic!("no BYE from the server; log:\n{}", server.log()));
    let mut ok = String::from("SIP/2.0 200 OK\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for value in headers(&bye, name) {
            ok.push_str(&format!("{name}: {value}\n"));
        }
    }
    ok.push_str("Content-Length: 0\n\n");
    sip.send(&ok);
    // The hours prompt ("现在是非工作时间。我们的工作时间是 工作日 …") was heard: several
    // seconds of voiced RTP before the message.
    assert!(
        heard_voiced > 150,
        "voiced packets heard before the message: {heard_voiced} of {heard_before_message}\n{}",
        server.log()
    );
    assert!(
        wait_for_log(&server, " cdr ", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let calls = api_calls(&server, "?path=voice_message");
    assert_eq!(calls.len(), 1, "{calls:?}\n{}", server.log());
    let record = &calls[0]["record"];
    let message = &calls[0]["voice_message"];
    assert_eq!(record["city"], "jinan", "{record}");
    let path: Vec<&str> = record["path"]
        .as_array()
        .expect("path")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(path, ["ivr", "after_hours", "voice_message"], "{record}");
    assert_eq!(record["hung_up_first"], "system", "{record}");
    assert_eq!(message["category"], "consultation", "{message}");
    assert_eq!(message["caller"], "053188886666", "{message}");
    // National Day holiday runs to 10-08: the next working day is Thursday 10-09, and
    // the callback is due at its end (24:00 = 00:00 of 10-10).
    assert_eq!(
        message["callback_due"], "2025-10-10T00:00:00+08:00",
        "{message}"
    );
    assert_eq!(message["provisional"], false, "{message}");
    assert!(
        message["work_order"].is_null(),
        "hook for the ticket store: {message}"
    );
    let recording = PathBuf::from(message["recording"].as_str().expect("recording"));
    let recording = if recording.is_absolute() {
        recording
    } else {
        server.dir.path().join(recording)
    };
    assert!(
        recording.to_string_lossy().contains("2025/10/01"),
        "dated by the fake clock: {}",
        recording.display()
    );
    let (rms, seconds, channels) = wav_stats(&recording);
    assert_eq!(channels, 1, "voice messages are mono");
    assert!((4.5..6.0).contains(&seconds), "message of {seconds} s");
    assert!(rms > 1000.0, "speech, not silence: rms {rms:.0}");
    let duration_ms = message["duration_ms"].as_i64().expect("duration");
    assert!((4500..6000).contains(&duration_ms), "{message}");
    // H-12-4: the call's INFO log lines show the caller's number masked.
    assert_log_keeps_number_private(&server.log(), "053188886666");
}

/// baresip as agent 1001 (auto-answer), its microphone the caller-speech WAV, for
/// `seconds`; what it plays is in the result's `heard` dump.
fn start_agent(server: &Server, seconds: u32) -> common::phone::Baresip {
    common::phone::Baresip::agent(
        server,
        "1001",
        "secret1001",
        &repo_root().join("tests/fixtures/audio/caller-speech-pcm.wav"),
        seconds,
    )
}

fn wav_channels(path: &Path) -> (u16, f64, Vec<f64>) {
    let mut reader = hound::WavReader::open(path).expect("wav");
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let frames = samples.len() / channels.max(1);
    let rms = (0..channels)
        .map(|c| {
            let energy: f64 = samples
                .iter()
                .skip(c)
                .step_by(channels)
                .map(|s| f64::from(*s).powi(2))
                .sum();
            (energy / frames.max(1) as f64).sqrt()
        })
        .collect();
    (
        spec.channels,
        frames as f64 / f64::from(spec.sample_rate),
        rms,
    )
}

/// baresip registers as agent 1001 of Jinan and answers automatically; a SIPp caller
/// talks (looped speech) through the IVR, which hands the call over; the server rings
/// the agent, bridges the RTP both ways and records both sides in one stereo WAV. The
/// agent's phone hangs up when its microphone file ends (5.7 s): the caller then gets
/// the survey, and the server hangs up after it.
#[test]
fn in_hours_the_call_is_bridged_to_the_registered_agent_and_recorded_in_stereo() {
    let sipp = require("sipp");
    // Jinan's queue, a working Saturday; 1001 signs in with *11 once registered.
    let server = common::queue::start(&common::queue::queue_config("linear", 15, 3));
    let agent = start_agent(&server, 15);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("hotline_sip_registrations") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        server.metric("hotline_sip_registrations"),
        1,
        "{}",
        server.log()
    );
    let signed_in = common::queue::feature_code(&server, "1001", "*11");
    assert_eq!(signed_in.status, Some(0), "*11: {}", server.log());
    assert!(
        common::queue::wait_state(&server, "1001", "available", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let cwd = tempfile::tempdir().expect("tmp");
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        cwd.path().join("caller.wav"),
    )
    .expect("fixture");
    let out = run_bounded(
        Command::new(&sipp)
            .current_dir(cwd.path())
            .args(["-sf", &path_str(&sipp_scenario("call_ivr_agent.xml"))])
            .args([
                "-s",
                "053112348",
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &free_port().to_string(),
                "-mp",
                &free_media_port().to_string(),
            ])
            .args(["-nostdin", "-timeout", "40"])
            .arg(server.sip.to_string()),
        Duration::from_secs(50),
    );
    assert_eq!(
        out.status,
        Some(0),
        "sipp:\n{}\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(
        wait_for_log(&server, " cdr ", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let agent = agent.finish();
    let calls = api_calls(&server, "?path=queue");
    assert_eq!(calls.len(), 1, "{calls:?}\n{}", server.log());
    let record = &calls[0]["record"];
    assert_eq!(record["agent"], "1001", "{record}");
    assert!(record["agent_answer"].is_string(), "{record}");
    assert_eq!(record["hung_up_first"], "agent", "{record}");
    assert_eq!(
        record["category"], "consultation",
        "default category: {record}"
    );
    // The stereo call recording: caller left, agent right, both really there.
    let recording = record["recordings"][0].as_str().expect("recording");
    let recording = server.dir.path().join(recording);
    let (channels, seconds, rms) = wav_channels(&recording);
    assert_eq!(channels, 2);
    assert!(seconds > 5.0, "recorded {seconds} s");
    assert!(
        rms[0] > 500.0 && rms[1] > 500.0,
        "both sides recorded: rms {rms:?}"
    );
    // What the agent's phone played is the caller's speech.
    let heard = agent
        .heard
        .as_ref()
        .unwrap_or_else(|| panic!("baresip had no call:\n{}", agent.log()));
    let (_, heard_seconds, heard_rms) = wav_channels(heard);
    assert!(heard_seconds > 5.0, "agent heard {heard_seconds} s");
    assert!(
        heard_rms[0] > 500.0,
        "agent heard speech: rms {heard_rms:?}"
    );
}

/// After hours (National Day) an urgent caller (9) is put through to the city's duty
/// list: baresip registered as agent 1001, on Jinan's `duty_list`, answers and talks.
#[test]
fn after_hours_urgent_9_rings_the_duty_agent_and_bridges() {
    let sipp = require("sipp");
    let config = ivr_config()
        .replace(
            "digest_algorithms = [\"MD5\", \"SHA-256\"]",
            "digest_algorithms = [\"MD5\"]",
        )
        .replacen(
            "numbers = [\"053112348\"]",
            "numbers = [\"053112348\"]\nduty_list = [\"1001\"]",
            1,
        );
    let server = Server::start_with(&config, &[("HOTLINE_FAKE_NOW", "2025-10-01T20:00+08:00")]);
    let agent = start_agent(&server, 40);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("hotline_sip_registrations") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let cwd = tempfile::tempdir().expect("tmp");
    let out = run_bounded(
        Command::new(&sipp)
            .current_dir(cwd.path())
            .args(["-sf", &path_str(&sipp_scenario("call_ivr_urgent.xml"))])
            .args([
                "-s",
                "12348",
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &free_port().to_string(),
                "-mp",
                &free_media_port().to_string(),
            ])
            .args(["-nostdin", "-timeout", "50"])
            .arg(server.sip.to_string()),
        Duration::from_secs(60),
    );
    assert_eq!(
        out.status,
        Some(0),
        "sipp:\n{}\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(
        wait_for_log(&server, " cdr ", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let agent = agent.finish();
    let calls = api_calls(&server, "?path=duty_list");
    assert_eq!(calls.len(), 1, "{}", server.log());
    let record = &calls[0]["record"];
    assert_eq!(record["agent"], "1001", "{record}");
    assert_eq!(record["urgency"], "urgent", "{record}");
    assert_eq!(record["hung_up_first"], "agent", "{record}");
    let path: Vec<&str> = record["path"]
        .as_array()
        .expect("path")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert_eq!(path, ["ivr", "after_hours", "duty_list"], "{record}");
    // The duty agent's voice reached the caller's side of the recording.
    let recording = server
        .dir
        .path()
        .join(record["recordings"][0].as_str().expect("recording"));
    let (channels, _, rms) = wav_channels(&recording);
    assert_eq!(channels, 2);
    assert!(rms[1] > 500.0, "agent side recorded: {rms:?}");
    assert!(agent.heard.is_some(), "{}", agent.log());
}
