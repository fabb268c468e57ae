//! Calls judged from the phones' side. baresip (Debian `baresip`) is the caller on the
//! trunk and agent 1001's softphone; each microphone plays a tone of its own, and each
//! phone dumps what it PLAYS (after its jitter buffer) to a WAV. A call counts as heard
//! only when the tone is in the other phone's dump and baresip dropped nothing: the
//! server's own recording proves nothing about the phones (issue: "a real phone drops
//! the agent's voice").

mod common;

use std::time::{Duration, Instant};

use common::phone::*;
use common::queue::*;
use common::wait_for_log;

const AGENT_TONE: f64 = 1400.0;
const CALLER_TONE: f64 = 600.0;

/// Longest run of `Heard::Tone` windows.
fn longest_tone(heard: &[Heard]) -> usize {
    heard
        .split(|w| *w != Heard::Tone)
        .map(<[Heard]>::len)
        .max()
        .unwrap_or(0)
}

/// IVR → queue → agent answers → bridged 6 s → the agent hangs up → the survey. The
/// caller's phone plays the agent's tone for the whole bridge, without a hole, and the
/// survey prompt after it; the agent's phone plays the caller's tone; neither phone
/// drops a packet.
#[test]
fn the_caller_hears_the_agent_through_the_bridge_and_then_the_survey() {
    let config = queue_config("linear", 15, 3).replace(
        "[ivr.survey]\nprompt = \"beep\"",
        "[ivr.survey]\nprompt = \"survey\"",
    );
    let server = start(&config);
    let tones = tempfile::tempdir().expect("tmp");
    let agent_source = tones.path().join("agent.wav");
    let caller_source = tones.path().join("caller.wav");
    tone_wav(&agent_source, AGENT_TONE, 6.0);
    tone_wav(&caller_source, CALLER_TONE, 40.0);

    let agent = Baresip::agent(&server, "1001", password("1001"), &agent_source, 35);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("hotline_sip_registrations") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let signed_in = feature_code(&server, "1001", "*11");
    assert_eq!(signed_in.status, Some(0), "*11: {}", server.log());
    assert!(
        wait_state(&server, "1001", "available", Duration::from_secs(5)),
        "{:?}\n{}",
        agent_states(&server),
        server.log()
    );

    let caller = Baresip::caller(&server, "053188001234", "053112348", &caller_source, 30);
    let caller = caller.finish();
    let agent = agent.finish();
    let context = format!(
        "caller:\n{}\nagent:\n{}\nserver:\n{}",
        caller.log(),
        agent.log(),
        server.log()
    );

    // The caller's phone: the agent's tone through the whole bridge, then the survey.
    let heard = caller
        .heard
        .as_ref()
        .unwrap_or_else(|| panic!("no call:\n{context}"));
    let (samples, rate) = wav_samples(heard);
    let heard_windows = windows(&samples, rate, AGENT_TONE);
    let windows = heard_windows;
    let tone = windows.iter().filter(|w| **w == Heard::Tone).count();
    assert!(
        tone >= 50,
        "the caller heard the agent for {} ms of 6 s: {windows:?}\n{context}",
        tone * 100
    );
    assert!(
        longest_tone(&windows) + 2 >= tone,
        "holes in the agent's voice: {windows:?}\n{context}"
    );
    let last_tone = windows
        .iter()
        .rposition(|w| *w == Heard::Tone)
        .unwrap_or_default();
    let survey = windows[last_tone..]
        .iter()
        .filter(|w| **w == Heard::Other)
        .count();
    assert!(
        survey >= 30,
        "the caller heard {} ms of the survey prompt after the agent: {windows:?}\n{context}",
        survey * 100
    );

    // The agent's phone: the caller's tone.
    let heard = agent
        .heard
        .as_ref()
        .unwrap_or_else(|| panic!("agent had no call:\n{context}"));
    let (samples, rate) = wav_samples(heard);
    let windows = common::phone::windows(&samples, rate, CALLER_TONE);
    let tone = windows.iter().filter(|w| **w == Heard::Tone).count();
    assert!(
        tone >= 50,
        "the agent heard the caller for {} ms: {windows:?}\n{context}",
        tone * 100
    );

    // Neither phone threw a packet away.
    assert_eq!(caller.dropped_lines(), Vec::<String>::new(), "{context}");
    assert_eq!(agent.dropped_lines(), Vec::<String>::new(), "{context}");
}

/// Windows of `kind` in `heard[from..to]`.
fn count(heard: &[Heard], kind: Heard) -> usize {
    heard.iter().filter(|w| **w == kind).count()
}

/// In hours with nobody signed in anywhere Qingdao's calls could overflow to, the caller
/// is told so, hears how to leave a message and the beep, is recorded, hears the thanks
/// and only then is hung up: never silence. The message becomes the call's voice
/// message.
#[test]
fn with_nobody_signed_in_the_caller_is_told_and_leaves_a_message() {
    let server = start(&queue_config("linear", 15, 3));
    let tones = tempfile::tempdir().expect("tmp");
    let caller_source = tones.path().join("caller.wav");
    tone_wav(&caller_source, CALLER_TONE, 40.0);
    let caller = Baresip::caller(&server, "053288001234", "053212348", &caller_source, 40).finish();
    let context = format!("caller:\n{}\nserver:\n{}", caller.log(), server.log());
    let heard = caller
        .heard
        .as_ref()
        .unwrap_or_else(|| panic!("no call:\n{context}"));
    let (samples, rate) = wav_samples(heard);
    // The beep is 1 kHz.
    let windows = windows(&samples, rate, 1000.0);
    let beeps: Vec<usize> = windows
        .iter()
        .enumerate()
        .filter(|(_, w)| **w == Heard::Tone)
        .map(|(i, _)| i)
        .collect();
    let Some(&record_beep) = beeps.last() else {
        panic!("no beep before the message: {windows:?}\n{context}");
    };
    // Before it: the greeting, then why nobody answers and how to leave a message.
    assert!(
        count(&windows[..record_beep], Heard::Other) >= 80,
        "the caller was told too little before the beep: {windows:?}\n{context}"
    );
    // After the 3 s message: the thanks, then the server's BYE (well before the phone's
    // 40 s).
    assert!(
        count(&windows[record_beep..], Heard::Other) >= 20,
        "no closing words after the message: {windows:?}\n{context}"
    );
    assert!(
        windows.len() < 350,
        "the server never hung up: {} s of call\n{context}",
        windows.len() / 10
    );
    assert!(
        wait_for_log(&server, " cdr ", Duration::from_secs(5)),
        "{context}"
    );
    let (status, calls) = api(&server, "/api/calls?path=voice_message");
    assert_eq!(status, 200, "{calls}");
    let message = &calls[0]["voice_message"];
    assert!(
        message["duration_ms"].as_i64().unwrap_or_default() >= 2000,
        "the message is the call's voice message: {calls}\n{context}"
    );
    assert_eq!(caller.dropped_lines(), Vec::<String>::new(), "{context}");
}

/// The recording (9198) and digit (9199) test extensions say what they are first
/// instead of answering with dead air.
#[test]
fn test_extensions_9198_and_9199_speak_first() {
    let config = queue_config("linear", 15, 3)
        + "\n[[test_extensions]]\nnumber = \"9198\"\nkind = \"record\"\n\
           \n[[test_extensions]]\nnumber = \"9199\"\nkind = \"dtmf\"\n";
    let server = start(&config);
    let tones = tempfile::tempdir().expect("tmp");
    let source = tones.path().join("caller.wav");
    tone_wav(&source, CALLER_TONE, 10.0);
    for number in ["9198", "9199"] {
        let caller = Baresip::caller(&server, "053188001234", number, &source, 9).finish();
        let context = format!("{number}:\n{}\nserver:\n{}", caller.log(), server.log());
        let heard = caller
            .heard
            .as_ref()
            .unwrap_or_else(|| panic!("no call:\n{context}"));
        let (samples, rate) = wav_samples(heard);
        let windows = windows(&samples, rate, 1000.0);
        let spoken = count(&windows[..windows.len().min(50)], Heard::Other);
        assert!(
            spoken >= 20,
            "{number} said {} ms in its first 5 s: {windows:?}\n{context}",
            spoken * 100
        );
    }
}

/// The agent (a SIPp phone echoing what it hears) talks 3 s, holds the caller 3 s
/// (re-INVITE sendonly), resumes (sendrecv) and talks 3 s more. The caller's phone plays
/// its own voice back from the agent, then hold music, then the agent again: never
/// silence while held, nothing dropped across the switches.
#[test]
fn an_agent_holding_the_caller_plays_hold_music_on_the_callers_phone_until_resumed() {
    let server = start(&queue_config("linear", 15, 3));
    let agent_port = common::free_port();
    sign_in(&server, "1001", agent_port);
    let agent = agent_phone(&server, "acd_agent_hold_resume.xml", agent_port, 1, 40);

    let tones = tempfile::tempdir().expect("tmp");
    let caller_source = tones.path().join("caller.wav");
    tone_wav(&caller_source, CALLER_TONE, 40.0);
    let caller = Baresip::caller(&server, "053188001234", "053112348", &caller_source, 25);
    let caller = caller.finish();
    let agent = agent.join().expect("agent thread");
    let context = format!(
        "agent sipp: {:?}\n{}\n{}\ncaller:\n{}\nserver:\n{}",
        agent.status,
        agent.stdout,
        agent.stderr,
        caller.log(),
        server.log()
    );
    assert_eq!(agent.status, Some(0), "{context}");

    let heard = caller
        .heard
        .as_ref()
        .unwrap_or_else(|| panic!("no call:\n{context}"));
    let (samples, rate) = wav_samples(heard);
    let windows = windows(&samples, rate, CALLER_TONE);
    let runs = runs(&windows);
    // The agent's voice (the caller's own tone, echoed), 2 s or more of its 3 s.
    let first = runs
        .iter()
        .position(|(kind, n)| *kind == Heard::Tone && *n >= 20)
        .unwrap_or_else(|| panic!("the caller never heard the agent: {runs:?}\n{context}"));
    // Then the agent again after the hold.
    let second = runs
        .iter()
        .skip(first + 1)
        .position(|(kind, n)| *kind == Heard::Tone && *n >= 20)
        .map(|i| i + first + 1)
        .unwrap_or_else(|| {
            panic!("the caller did not hear the agent after resuming: {runs:?}\n{context}")
        });
    // In between: hold music, not silence.
    let between = &runs[first + 1..second];
    let music: usize = between
        .iter()
        .filter(|(kind, _)| *kind == Heard::Other)
        .map(|(_, n)| n)
        .sum();
    let silence: usize = between
        .iter()
        .filter(|(kind, _)| *kind == Heard::Silence)
        .map(|(_, n)| n)
        .sum();
    assert!(
        music >= 20,
        "the caller heard {} ms of hold music while held: {runs:?}\n{context}",
        music * 100
    );
    assert!(
        silence <= 5,
        "{} ms of silence while held: {runs:?}\n{context}",
        silence * 100
    );
    assert_eq!(caller.dropped_lines(), Vec::<String>::new(), "{context}");
}

/// An attended transfer judged from the phones: agent 1001 (SIPp) answers, consults
/// 1002 — baresip, playing its own tone — and transfers with REFER+Replaces. The
/// caller's phone then plays 1002's tone and 1002's phone the caller's, across the
/// change of bridge, without a packet dropped on either phone.
#[test]
fn after_an_attended_transfer_the_caller_and_the_consulted_agent_hear_each_other() {
    let server = start(&queue_config("linear", 10, 3));
    let first_port = common::free_port();
    sign_in(&server, "1001", first_port);
    let tones = tempfile::tempdir().expect("tmp");
    let agent_source = tones.path().join("agent.wav");
    let caller_source = tones.path().join("caller.wav");
    tone_wav(&agent_source, AGENT_TONE, 60.0);
    tone_wav(&caller_source, CALLER_TONE, 60.0);
    let consulted = Baresip::agent(&server, "1002", password("1002"), &agent_source, 40);
    let registered = common::wait_until(Duration::from_secs(10), || {
        server.metric("hotline_sip_registrations") >= 2
    });
    assert!(registered, "1002 never registered:\n{}", server.log());
    let signed_in = feature_code(&server, "1002", "*11");
    assert_eq!(signed_in.status, Some(0), "*11 for 1002: {}", server.log());
    let target = server.sip.to_string();
    let first = std::thread::spawn(move || {
        common::run_bounded(
            sipp_base("acd_agent_attended_transfer.xml", first_port)
                .args(["-s", "1001", "-au", "1001", "-ap", password("1001")])
                .args(["-auth_uri", &format!("1002@{target}")])
                .args(["-set", "target", "1002", "-set", "tagfix", ""])
                .args(["-m", "1", "-timeout", "60"])
                .arg(target),
            Duration::from_secs(65),
        )
    });
    let caller = Baresip::caller(&server, "053188001234", "053112348", &caller_source, 30);
    assert!(
        wait_for_log(
            &server,
            "attended transfer: the caller is bridged to the consulted agent",
            Duration::from_secs(30)
        ),
        "no transfer:\n{}",
        server.log()
    );
    let caller = caller.finish();
    let consulted = consulted.finish();
    let first = first.join().expect("1001's thread");
    let context = format!(
        "1001 (sipp): {:?}\n{}\ncaller:\n{}\n1002:\n{}\nserver:\n{}",
        first.status,
        first.stdout,
        caller.log(),
        consulted.log(),
        server.log()
    );
    assert_eq!(first.status, Some(0), "{context}");
    let heard_ms = |phone: &PhoneResult, frequency: f64, who: &str| {
        let path = phone
            .heard
            .as_ref()
            .unwrap_or_else(|| panic!("{who} had no call:\n{context}"));
        let (samples, rate) = wav_samples(path);
        longest_tone(&windows(&samples, rate, frequency)) * 100
    };
    // From the transfer to the caller's 30 s: many seconds of 1002, in one piece.
    let caller_heard = heard_ms(&caller, AGENT_TONE, "the caller");
    assert!(
        caller_heard >= 5000,
        "the caller's phone played 1002 for {caller_heard} ms at most in one piece\n{context}"
    );
    let consulted_heard = heard_ms(&consulted, CALLER_TONE, "1002");
    assert!(
        consulted_heard >= 5000,
        "1002's phone played the caller for {consulted_heard} ms at most in one piece\n{context}"
    );
    assert_eq!(caller.dropped_lines(), Vec::<String>::new(), "{context}");
    assert_eq!(consulted.dropped_lines(), Vec::<String>::new(), "{context}");
}
