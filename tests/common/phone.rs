//! Real phones for tests: baresip (Debian `baresip`, headless) as an agent's softphone or
//! as a caller on the trunk, its microphone a WAV file, and what it PLAYS (after its own
//! jitter buffer and decoder) dumped to a WAV by its `sndfile` module. Tests judge calls
//! from these dumps and from baresip's log, never from what the server believes it sent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use super::*;

/// Write `seconds` of a `frequency` Hz sine (8 kHz mono 16-bit) to `path`.
pub fn tone_wav(path: &Path, frequency: f64, seconds: f64) {
    tone_wav_at(path, frequency, seconds, 8000);
}

/// [`tone_wav`] at `rate` Hz (a browser's fake microphone wants 48 kHz).
pub fn tone_wav_at(path: &Path, frequency: f64, seconds: f64, rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("create tone WAV");
    for i in 0..(seconds * f64::from(rate)) as u32 {
        let t = f64::from(i) / f64::from(rate);
        let sample = (std::f64::consts::TAU * frequency * t).sin() * 12_000.0;
        writer.write_sample(sample as i16).expect("write tone");
    }
    writer.finalize().expect("finalize tone WAV");
}

/// Mono samples of a WAV (the first channel) and its sample rate.
pub fn wav_samples(path: &Path) -> (Vec<i16>, u32) {
    let mut reader = hound::WavReader::open(path).expect("open WAV");
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let samples = reader
        .samples::<i16>()
        .step_by(channels)
        .map(|s| s.expect("sample"))
        .collect();
    (samples, spec.sample_rate)
}

/// What a 100 ms window of audio holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    Silence,
    /// Mostly the tone asked about.
    Tone,
    /// Something else (speech, another tone).
    Other,
}

/// Classify each 100 ms window of `samples` against a tone of `frequency` Hz: the tone
/// when its Goertzel power is at least half the window's energy.
pub fn windows(samples: &[i16], rate: u32, frequency: f64) -> Vec<Heard> {
    let size = (rate / 10) as usize;
    samples
        .chunks_exact(size)
        .map(|w| {
            let energy: f64 = w.iter().map(|s| f64::from(*s).powi(2)).sum();
            let rms = (energy / size as f64).sqrt();
            if rms < 200.0 {
                return Heard::Silence;
            }
            let coefficient = 2.0 * (std::f64::consts::TAU * frequency / f64::from(rate)).cos();
            let (mut s1, mut s2) = (0.0, 0.0);
            for sample in w {
                let s0 = f64::from(*sample) + coefficient * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2;
            // A pure tone's Goertzel power is energy·N/2.
            if power / (energy * size as f64 / 2.0) > 0.5 {
                Heard::Tone
            } else {
                Heard::Other
            }
        })
        .collect()
}

/// Runs of consecutive windows: (kind, length), in order.
pub fn runs(heard: &[Heard]) -> Vec<(Heard, usize)> {
    let mut runs: Vec<(Heard, usize)> = Vec::new();
    for w in heard {
        match runs.last_mut() {
            Some((kind, n)) if kind == w => *n += 1,
            _ => runs.push((*w, 1)),
        }
    }
    runs
}

/// A baresip process: set up with [`Baresip::agent`] or [`Baresip::caller`], then
/// [`Baresip::finish`] waits for it.
pub struct Baresip {
    dir: tempfile::TempDir,
    heard: PathBuf,
    process: JoinHandle<Output>,
}

/// What the phone left behind.
pub struct PhoneResult {
    pub output: Output,
    /// The decoded audio the phone played (`None` if it never had a call).
    pub heard: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl PhoneResult {
    /// baresip's whole log.
    pub fn log(&self) -> String {
        format!("{}{}", self.output.stdout, self.output.stderr)
    }

    /// How long the phone played a tone of `frequency` Hz, in ms (100 ms windows, not
    /// necessarily in one piece); `None` when it never had a call.
    pub fn tone_ms(&self, frequency: f64) -> Option<usize> {
        let (samples, rate) = wav_samples(self.heard.as_ref()?);
        Some(
            windows(&samples, rate, frequency)
                .iter()
                .filter(|w| **w == Heard::Tone)
                .count()
                * 100,
        )
    }

    /// Lines where baresip threw received packets away (its jitter buffer's "late"
    /// packets, bad sequence numbers …).
    pub fn dropped_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("dropping") || l.contains("jbuf"))
            .map(str::to_string)
            .collect()
    }
}

impl Baresip {
    /// Agent `id` registered with `password`, answering every call at once; its
    /// microphone plays `source` (the call ends when the file does).
    pub fn agent(
        server: &Server,
        id: &str,
        password: &str,
        source: &Path,
        seconds: u32,
    ) -> Baresip {
        let account = format!(
            "<sip:{id}@{};transport=udp>;auth_pass={password};regint=60;answermode=auto\n",
            server.sip
        );
        Baresip::start(&account, source, seconds, None, "")
    }

    /// Agent `id` as [`Baresip::agent`], registered over SIP over TLS at `tls` (the
    /// server's `sip_tls_listen`), trusting only the certificate in `ca` (baresip's
    /// `sip_cafile`: the handshake fails on any other).
    pub fn agent_over_tls(
        tls: std::net::SocketAddr,
        ca: &Path,
        id: &str,
        password: &str,
        source: &Path,
        seconds: u32,
    ) -> Baresip {
        Baresip::agent_over_tls_with(tls, ca, id, password, source, seconds, None)
    }

    /// As [`Baresip::agent_over_tls`], with baresip's `mediaenc` account setting (e.g.
    /// `srtp-mand`: SDES-SRTP only, a plain offer refused) and its `srtp` module.
    pub fn agent_over_tls_with(
        tls: std::net::SocketAddr,
        ca: &Path,
        id: &str,
        password: &str,
        source: &Path,
        seconds: u32,
        mediaenc: Option<&str>,
    ) -> Baresip {
        let media = mediaenc.map_or(String::new(), |m| format!(";mediaenc={m}"));
        let account = format!(
            "<sip:{id}@{tls};transport=tls>;auth_pass={password};regint=60;answermode=auto{media}\n"
        );
        let mut extra = format!("sip_cafile {}\n", ca.display());
        if mediaenc.is_some() {
            extra.push_str("module srtp.so\n");
        }
        Baresip::start(&account, source, seconds, None, &extra)
    }

    /// A caller on the trunk (127.0.0.1, not registered) with the number `caller`,
    /// dialling `dialled` as soon as it starts; its microphone plays `source`.
    pub fn caller(
        server: &Server,
        caller: &str,
        dialled: &str,
        source: &Path,
        seconds: u32,
    ) -> Baresip {
        let account = format!("<sip:{caller}@127.0.0.1>;regint=0\n");
        let dial = format!("/dial sip:{dialled}@{}", server.sip);
        Baresip::start(&account, source, seconds, Some(dial), "")
    }

    /// As [`Baresip::caller`], with baresip's `mediaenc` (e.g. `srtp-mand`).
    pub fn caller_with(
        server: &Server,
        caller: &str,
        dialled: &str,
        source: &Path,
        seconds: u32,
        mediaenc: &str,
    ) -> Baresip {
        let account = format!("<sip:{caller}@127.0.0.1>;regint=0;mediaenc={mediaenc}\n");
        let dial = format!("/dial sip:{dialled}@{}", server.sip);
        Baresip::start(&account, source, seconds, Some(dial), "module srtp.so\n")
    }

    /// A phone with its own `accounts` line (e.g. an agent that authenticates without
    /// registering: `<sip:1001@…>;auth_pass=…;regint=0`), dialling `dialled` at start.
    pub fn dialling(
        server: &Server,
        account: &str,
        dialled: &str,
        source: &Path,
        seconds: u32,
    ) -> Baresip {
        let dial = format!("/dial sip:{dialled}@{}", server.sip);
        Baresip::start(&format!("{account}\n"), source, seconds, Some(dial), "")
    }

    /// A phone on the carrier's side of the outbound trunk: listening on `port` (the
    /// trunk's `outbound` address) as `number`, answering every call at once; its
    /// microphone plays `source`.
    pub fn answering_at(port: u16, number: &str, source: &Path, seconds: u32) -> Baresip {
        let account = format!("<sip:{number}@127.0.0.1:{port}>;regint=0;answermode=auto\n");
        Baresip::start_on(port, &account, source, seconds, None, "")
    }

    /// As [`Baresip::answering_at`], with baresip's `mediaenc` (e.g. `srtp`: SDES when
    /// offered) and its `srtp` module.
    pub fn answering_at_with(
        port: u16,
        number: &str,
        source: &Path,
        seconds: u32,
        mediaenc: &str,
    ) -> Baresip {
        let account = format!(
            "<sip:{number}@127.0.0.1:{port}>;regint=0;answermode=auto;mediaenc={mediaenc}\n"
        );
        Baresip::start_on(port, &account, source, seconds, None, "module srtp.so\n")
    }

    /// `extra`: more lines for baresip's `config`, before its modules (a media
    /// encryption module must be loaded before the accounts that name it).
    fn start(
        account: &str,
        source: &Path,
        seconds: u32,
        command: Option<String>,
        extra: &str,
    ) -> Baresip {
        Baresip::start_on(free_port(), account, source, seconds, command, extra)
    }

    fn start_on(
        sip_port: u16,
        account: &str,
        source: &Path,
        seconds: u32,
        command: Option<String>,
        extra: &str,
    ) -> Baresip {
        let baresip = require("baresip");
        let dir = tempfile::tempdir().expect("tmp");
        let heard = dir.path().join("heard");
        std::fs::create_dir_all(&heard).expect("dir");
        std::fs::write(dir.path().join("accounts"), account).expect("accounts");
        let rtp_low = free_media_port();
        std::fs::write(
            dir.path().join("config"),
            format!(
                "sip_listen 127.0.0.1:{}\nmodule_path /usr/lib/baresip/modules\n{extra}\
                 module g711.so\nmodule account.so\nmodule menu.so\nmodule aufile.so\n\
                 module sndfile.so\nmodule aubridge.so\n\
                 audio_source aufile,{}\naudio_player aubridge,heard\n\
                 snd_path {}\nrtp_ports {}-{}\n",
                sip_port,
                source.display(),
                heard.display(),
                rtp_low,
                rtp_low + 3,
            ),
        )
        .expect("config");
        let config_dir = dir.path().to_path_buf();
        let process = std::thread::spawn(move || {
            let mut cmd = Command::new(baresip);
            cmd.arg("-f")
                .arg(&config_dir)
                .args(["-t", &seconds.to_string()]);
            if let Some(command) = command {
                cmd.args(["-e", &command]);
            }
            run_bounded(&mut cmd, Duration::from_secs(u64::from(seconds) + 10))
        });
        Baresip {
            dir,
            heard,
            process,
        }
    }

    /// Wait for the phone to quit (its `-t` limit).
    pub fn finish(self) -> PhoneResult {
        let output = self.process.join().expect("baresip thread");
        let heard = std::fs::read_dir(&self.heard)
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains("dec"));
        PhoneResult {
            output,
            heard,
            _dir: self.dir,
        }
    }
}
