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
    let config = queue_config("linear", 15, 3)
        .replace("[ivr.survey]\nprompt = \"beep\"", "[ivr.survey]\nprompt = \"survey\"");
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
    let heard = caller.heard.as_ref().unwrap_or_else(|| panic!("no call:\n{context}"));
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
    let heard = agent.heard.as_ref().unwrap_or_else(|| panic!("agent had no call:\n{context}"));
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
