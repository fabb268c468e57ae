//! The carrier behind `[[trunks]] outbound` for the tests of calls the hotline places
//! (callback in queue, transfer to a unit, an order's callback call): the config, SIPp
//! as the carrier's callee, and the recordings' channels.

use std::path::Path;
use std::process::Command;

use super::*;

/// The caller's number of these tests (a Jinan fixed line).
pub const CALLER: &str = "053188886666";
/// The legal-aid centre's outside number.
pub const UNIT_NUMBER: &str = "053188880000";

/// The hotline of the callback and transfer tests: the test config with an outbound
/// trunk to a carrier on `carrier_port`, Jinan's units (the legal-aid centre with its
/// outside number), a Jinan queue offering the callback key (`attempts` attempts) and
/// agent 1001.
pub fn config(carrier_port: u16, attempts: u32) -> String {
    config_with(carrier_port, attempts, "none")
}

/// As [`config`], with the trunk's `media_encryption` (`none`, `optional`, `required`):
/// SDES on the calls placed through it.
pub fn config_with(carrier_port: u16, attempts: u32, media_encryption: &str) -> String {
    let prompts = repo_root().join("config/prompts/zh");
    let base = 36000 + (std::process::id() % 300) as u16 * 60;
    let with_outbound = TEST_CONFIG.replacen(
        "sources = [\"127.0.0.1\"]\n",
        &format!(
            "sources = [\"127.0.0.1\"]\noutbound = \"127.0.0.1:{carrier_port}\"\nmedia_encryption = \"{media_encryption}\"\n"
        ),
        1,
    );
    format!(
        "{with_outbound}
[[units]]
id = \"jinan\"
name = \"济南市司法局\"
kind = \"city\"
parent = \"province\"

[[units]]
id = \"legal-aid\"
name = \"济南市法律援助中心\"
kind = \"institution\"
parent = \"jinan\"
phone = \"{UNIT_NUMBER}\"

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
strategy = \"linear\"
duty = \"any_signed_in\"
ring_timeout_secs = 10
retry_delay_secs = 1
wrap_up_secs = 0
announce_frequency_secs = 0
please_hold_secs = 0
overflow_when_no_agents = false
max_wait_secs = 50
callback_digit = \"*\"
callback_max_attempts = {attempts}
callback_retry_delay_secs = 2
callback_ring_secs = 8
tier_rules = []

[[queues.queue]]
city = \"qingdao\"
duty = \"any_signed_in\"
tier_rules = []

[[queues.agent]]
id = \"1001\"
city = \"jinan\"
",
        base + 59,
        prompts.display()
    )
}

/// Start on 2026-02-14, a working Saturday (调休): in hours.
pub fn start(config: &str) -> Server {
    let config = config.replace(
        "digest_algorithms = [\"MD5\", \"SHA-256\"]",
        "digest_algorithms = [\"MD5\"]",
    );
    Server::start_with(&config, &[("HOTLINE_FAKE_NOW", "2026-02-14T10:00+08:00")])
}

/// SIPp on 127.0.0.1 with `scenario`, SIP on `port`, media on a free port.
pub fn sipp(scenario: &Path, port: u16) -> Command {
    let mut cmd = Command::new(require("sipp"));
    cmd.args(["-sf", &path_str(scenario)])
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

/// A carrier scenario with the expected number (and talk time) written in.
pub fn carrier_scenario(dir: &Path, name: &str, number: &str, talk_ms: u32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(sipp_scenario(name)).expect("scenario");
    let path = dir.join(name);
    std::fs::write(
        &path,
        text.replace("NUMBER", number)
            .replace("TALK_MS", &talk_ms.to_string()),
    )
    .expect("write scenario");
    path
}

/// RMS of the left and right channels of a stereo WAV.
pub fn channel_rms(path: &Path) -> (f64, f64, f64) {
    let mut reader = hound::WavReader::open(path).expect("wav");
    let spec = reader.spec();
    assert_eq!(spec.channels, 2, "stereo: {}", path.display());
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let rms = |channel: usize| {
        let values: Vec<f64> = samples
            .iter()
            .skip(channel)
            .step_by(2)
            .map(|s| f64::from(*s))
            .collect();
        (values.iter().map(|v| v * v).sum::<f64>() / values.len().max(1) as f64).sqrt()
    };
    let seconds = samples.len() as f64 / 2.0 / f64::from(spec.sample_rate);
    (rms(0), rms(1), seconds)
}

/// [`carrier_scenario`] `carrier_answer.xml` whose callee talks by streaming the raw
/// A-law file `audio` (in SIPp's working directory) instead of SIPp's recording.
pub fn streaming_carrier_scenario(
    dir: &Path,
    number: &str,
    talk_ms: u32,
    audio: &str,
) -> std::path::PathBuf {
    let path = carrier_scenario(dir, "carrier_answer.xml", number, talk_ms);
    let text = std::fs::read_to_string(&path).expect("scenario");
    let pcap = "play_pcap_audio=\"/usr/share/sip-tester/g711a.pcap\"";
    assert!(text.contains(pcap), "carrier_answer.xml plays SIPp's pcap");
    std::fs::write(
        &path,
        text.replace(pcap, &format!("rtp_stream=\"{audio},-1,8\"")),
    )
    .expect("write scenario");
    path
}

/// `seconds` of a `frequency` Hz sine as raw G.711 A-law (8 kHz), for SIPp's rtp_stream.
pub fn alaw_tone(path: &Path, frequency: f64, seconds: f64) {
    let codec = hotline::media::g711::Codec::Pcma;
    let bytes: Vec<u8> = (0..(seconds * 8000.0) as u32)
        .map(|i| {
            let t = f64::from(i) / 8000.0;
            codec.encode(((std::f64::consts::TAU * frequency * t).sin() * 12_000.0) as i16)
        })
        .collect();
    std::fs::write(path, bytes).expect("write A-law tone");
}
