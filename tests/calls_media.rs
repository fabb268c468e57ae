//! The media plane with real peers on loopback: SIPp sends real G.711 speech and RFC 4733
//! digits to the test extensions, baresip listens to a prompt; the recordings and logs
//! are checked for what was really sent.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The shared test config plus the media plane and the four test extensions.
fn media_config() -> String {
    let prompts = repo_root().join("config/prompts/zh");
    let (low, high) = rtp_range();
    format!(
        "{TEST_CONFIG}
[media]
rtp_port_min = {low}
rtp_port_max = {high}
media_timeout_secs = 4
prompts_dir = \"{}\"

[[test_extensions]]
number = \"echo\"
kind = \"echo\"

[[test_extensions]]
number = \"play\"
kind = \"play\"
prompt = \"greeting.wav\"

[[test_extensions]]
number = \"record\"
kind = \"record\"

[[test_extensions]]
number = \"record2\"
kind = \"record\"
stereo = true

[[test_extensions]]
number = \"dtmf\"
kind = \"dtmf\"
",
        prompts.display()
    )
}

/// A per-process RTP range so parallel test binaries do not collide.
fn rtp_range() -> (u16, u16) {
    let base = 30000 + (std::process::id() % 500) as u16 * 40;
    (base, base + 39)
}

/// Mean RMS and duration (s) of a 16-bit WAV's first channel.
fn wav_stats(path: &Path) -> (f64, f64, u16) {
    let mut reader = hound::WavReader::open(path).expect("wav");
    let spec = reader.spec();
    let channels = spec.channels;
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .step_by(usize::from(channels))
        .map(|s| s.expect("sample"))
        .collect();
    let rms = (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>()
        / samples.len().max(1) as f64)
        .sqrt();
    (
        rms,
        samples.len() as f64 / f64::from(spec.sample_rate),
        channels,
    )
}

fn find_wavs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(find_wavs(&path));
        } else if path.extension().is_some_and(|e| e == "wav") {
            out.push(path);
        }
    }
    out
}

fn wait_for_log(server: &Server, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if server.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Run SIPp (UAC) with `scenario` against `service`, holding the call `hold_ms`.
fn sipp_call(server: &Server, scenario: &str, service: &str, hold_ms: u64, cwd: &Path) -> Output {
    let sipp = require("sipp");
    run_bounded(
        Command::new(&sipp)
            .current_dir(cwd)
            .args(["-sf", &path_str(&sipp_scenario(scenario))])
            .args([
                "-s",
                service,
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
                &free_port().to_string(),
            ])
            .args(["-d", &hold_ms.to_string(), "-nostdin", "-timeout", "30"])
            .arg(server.sip.to_string()),
        Duration::from_secs(40),
    )
}

fn speech_alaw(cwd: &Path) {
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        cwd.join("caller.wav"),
    )
    .expect("copy fixture");
}

#[test]
fn sipp_speech_to_record_is_recorded_with_its_duration_and_energy() {
    let server = Server::start_with(&media_config(), &[]);
    let cwd = tempfile::tempdir().expect("tmp");
    speech_alaw(cwd.path());
    let out = sipp_call(&server, "call_audio.xml", "record", 7000, cwd.path());
    assert_eq!(
        out.status,
        Some(0),
        "sipp:\n{}\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(
        wait_for_log(&server, "call ended", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let wavs = find_wavs(&server.dir.path().join("recordings"));
    assert_eq!(wavs.len(), 1, "{wavs:?}\n{}", server.log());
    let (rms, seconds, channels) = wav_stats(&wavs[0]);
    let (sent_rms, sent_seconds, _) =
        wav_stats(&repo_root().join("tests/fixtures/audio/caller-speech-pcm.wav"));
    assert_eq!(channels, 1);
    // The call lasted 7 s with 5.7 s of speech: the recording holds the speech (it ends
    // with the last packet received).
    assert!(
        (seconds - sent_seconds).abs() < 0.4,
        "recorded {seconds} s, sent {sent_seconds} s"
    );
    // Same energy as sent, within G.711 quantisation and a lost frame or two.
    assert!(
        rms > sent_rms * 0.8 && rms < sent_rms * 1.2,
        "recorded rms {rms:.0}, sent rms {sent_rms:.0}"
    );
}

#[test]
fn sipp_rfc4733_digits_to_dtmf_are_heard() {
    let server = Server::start_with(&media_config(), &[]);
    let cwd = tempfile::tempdir().expect("tmp");
    let out = sipp_call(&server, "call_dtmf.xml", "dtmf", 0, cwd.path());
    assert_eq!(
        out.status,
        Some(0),
        "sipp:\n{}\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(
        wait_for_log(&server, "call ended", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("digits=123"), "{log}");
    assert_eq!(log.matches("dtmf digit heard").count(), 3, "{log}");
}
