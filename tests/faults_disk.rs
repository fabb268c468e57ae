//! Disk full under `recordings/`: a 256 KiB tmpfs mounted on the recordings directory
//! (needs root; the test says so and skips only when the mount is refused). Calls to the
//! `record` test extension fill it within seconds; calls must go on, the failure must be
//! logged (and counted), and signalling, the API and new calls must keep working.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config() -> String {
    let prompts = repo_root().join("config/prompts/zh");
    let base = 36000 + (std::process::id() % 200) as u16 * 40;
    format!(
        "{TEST_CONFIG}
[media]
rtp_port_min = {base}
rtp_port_max = {}
media_timeout_secs = 20
prompts_dir = \"{}\"

[[test_extensions]]
number = \"record\"
kind = \"record\"
",
        base + 39,
        prompts.display()
    )
}

/// A tmpfs mounted for the life of the value.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// `None` (with the reason printed) when this process may not mount.
    fn mount(path: &Path) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk {
                path: path.to_path_buf(),
            }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: mounting a tmpfs on {} was refused (needs root): {}",
                    path.display(),
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn sipp_record_calls(server: &Server, work: &Path, calls: u32, hold_ms: u64) -> Output {
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        work.join("caller.wav"),
    )
    .expect("copy fixture");
    let scenario = std::fs::read_to_string(sipp_scenario("call_audio.xml"))
        .expect("scenario")
        .replace("caller.wav,1,8", "caller.wav,-1,8");
    std::fs::write(work.join("looped.xml"), scenario).expect("write scenario");
    run_bounded(
        Command::new(require("sipp"))
            .current_dir(work)
            .args(["-sf", "looped.xml", "-s", "record", "-i", "127.0.0.1"])
            .args(["-mi", "127.0.0.1", "-p", &free_port().to_string()])
            .args(["-mp", &free_media_port().to_string()])
            .args([
                "-m",
                &calls.to_string(),
                "-l",
                &calls.to_string(),
                "-r",
                "10",
            ])
            .args(["-d", &hold_ms.to_string(), "-nostdin", "-timeout", "40"])
            .stdin(Stdio::null())
            .arg(server.sip.to_string()),
        Duration::from_secs(45),
    )
}

fn options_answered(server: &Server) -> bool {
    let client = RawUdp::new(server.sip);
    let local = client.local();
    let options = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKdisk{n}\r\n\
         From: <sip:probe@{local}>;tag=disk\r\nTo: <sip:{sip}>\r\nCall-ID: disk-{n}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sip = server.sip,
        n = rand_suffix()
    );
    client
        .request(&options)
        .is_some_and(|r| status_of(&r) == 200)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Start the server with its recordings directory on a full-able tmpfs.
fn start_on_small_disk() -> Option<(Server, SmallDisk)> {
    let dir = tempfile::tempdir().expect("tmp");
    let disk = SmallDisk::mount(&dir.path().join("recordings"))?;
    Some((Server::start_in(dir, &config(), &[]), disk))
}

#[test]
fn disk_full_under_recordings_keeps_calls_signalling_and_api_working() {
    let Some((server, _disk)) = start_on_small_disk() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    // 6 calls × 16 kB/s of audio fill 256 KiB in ~3 s; they are held 8 s.
    let started = Instant::now();
    let out = sipp_record_calls(&server, work.path(), 6, 8_000);
    assert_eq!(
        out.status,
        Some(0),
        "calls failed while the disk filled (after {:?}):\n{}\n{}\nserver log:\n{}",
        started.elapsed(),
        out.stdout,
        out.stderr,
        server.log()
    );
    let log = server.log();
    assert!(
        log.contains("recording failed") || log.contains("recording not started"),
        "the disk-full failure was not logged:\n{log}"
    );
    // Nothing else broke: signalling, the API, and a new recorded call after the disk is
    // full (its recorder cannot even write a header).
    assert!(options_answered(&server), "OPTIONS not answered");
    let (status, body) = server.http_get("/healthz");
    assert_eq!(status, 200, "{body}");
    let again = sipp_record_calls(&server, work.path(), 1, 2_000);
    assert_eq!(again.status, Some(0), "a call on a full disk failed");
    let failures = log.matches("recording failed").count();
    eprintln!("recording-failure log lines over 6 calls: {failures}");
}

#[test]
fn disk_full_under_recordings_is_counted_in_metrics() {
    let Some((server, _disk)) = start_on_small_disk() else {
        return;
    };
    let work = tempfile::tempdir().expect("tmp");
    let out = sipp_record_calls(&server, work.path(), 6, 8_000);
    assert_eq!(out.status, Some(0));
    let (_, metrics) = server.http_get("/metrics");
    let counted = metrics.lines().any(|l| {
        l.starts_with("hotline_recording_failures_total")
            && l.split_whitespace()
                .last()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
    });
    assert!(
        counted,
        "no hotline_recording_failures_total > 0 in:\n{metrics}"
    );
}
