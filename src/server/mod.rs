//! The tokio shell: sockets, timers, call tasks, the ACD task and persistence around the
//! sans-IO cores. Built and started by the composition root, `src/app.rs`; never imports
//! the API.

pub mod acd;
pub mod call_orders;
pub mod call_outbox;
pub mod callback;
pub mod calls;
pub mod http;
pub mod leg_srtp;
pub mod order_call;
pub mod outbound;
pub mod outleg;
pub mod queue_log_writer;
pub mod reminders;
pub mod sip;
pub mod survey;
pub mod tls;
pub mod transfer;
pub mod voicemail;
pub mod webrtc;

use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::Store;
use sip::{SipShell, wall_ms};

/// SIGTERM / SIGINT: refuse new calls (503 with Retry-After), let the calls in progress
/// finish for up to `timeout` (a second signal cuts the wait short), then end the rest
/// with BYE (`Reason: SIP;cause=503`) and give their answers and call records a few
/// seconds.
pub(crate) async fn drain_calls(
    shell: &Arc<SipShell>,
    media: &calls::MediaContext,
    timeout: Duration,
) {
    let retry_after = u32::try_from(timeout.as_secs()).unwrap_or(u32::MAX).max(1);
    shell.drive(|ep| ep.start_draining(retry_after));
    let up = media.active_calls();
    info!(
        calls = up,
        timeout_secs = timeout.as_secs(),
        "shutting down: new calls refused (503); calls in progress may finish"
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let second_signal = wait_for_signal();
    tokio::pin!(second_signal);
    let mut cut_short = false;
    while media.active_calls() > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = &mut second_signal => {
                warn!("second signal: not waiting for the calls in progress");
                cut_short = true;
                break;
            }
        }
    }
    let left = media.active_calls();
    if left == 0 {
        info!("drained: no call in progress");
        return;
    }
    let legs = shell
        .drive(|ep| ep.shutdown_calls(std::time::Instant::now()))
        .unwrap_or(0);
    warn!(
        calls = left,
        legs, cut_short, "drain timeout: the remaining calls are hung up (BYE with Reason)"
    );
    let grace = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while media.active_calls() > 0 && tokio::time::Instant::now() < grace {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if media.active_calls() > 0 {
        warn!(
            calls = media.active_calls(),
            "calls still ending; their records are closed at the next start"
        );
    }
}

/// After the BYEs of a drain timeout: time for their answers and the call records.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How often the heartbeat file is rewritten.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatState {
    Running,
    Stopped,
}

/// `<data_dir>/heartbeat`: `running <RFC 3339>` every few seconds while serving,
/// `stopped <RFC 3339>` after a clean stop. At start-up it says how the previous run
/// ended and when it was last alive.
pub(crate) fn write_heartbeat(
    path: &std::path::Path,
    state: HeartbeatState,
    at: chrono::DateTime<chrono::FixedOffset>,
) {
    let word = match state {
        HeartbeatState::Running => "running",
        HeartbeatState::Stopped => "stopped",
    };
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, format!("{word} {}\n", at.to_rfc3339()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        warn!(%e, path = %path.display(), "cannot write the heartbeat");
    }
}

pub(crate) fn read_heartbeat(
    path: &std::path::Path,
) -> Option<(HeartbeatState, chrono::DateTime<chrono::FixedOffset>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (word, at) = text.trim().split_once(' ')?;
    let state = match word {
        "running" => HeartbeatState::Running,
        "stopped" => HeartbeatState::Stopped,
        _ => return None,
    };
    Some((state, chrono::DateTime::parse_from_rfc3339(at).ok()?))
}

pub(crate) async fn heartbeat_loop(
    path: std::path::PathBuf,
    clock: crate::clock::WallClock,
    shutdown: Shutdown,
) {
    loop {
        let at = clock.now();
        let beat = path.clone();
        let _ = tokio::task::spawn_blocking(move || {
            write_heartbeat(&beat, HeartbeatState::Running, at);
        })
        .await;
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Close the call records a previous run left open (calls up when it stopped): ended at
/// its last heartbeat (or now), reason `crash` unless it stopped cleanly.
pub(crate) async fn close_calls_left_open(
    store: &Store,
    heartbeat: &std::path::Path,
    clock: crate::clock::WallClock,
    metrics: &Metrics,
) {
    let (reason, last_known) = match read_heartbeat(heartbeat) {
        Some((HeartbeatState::Stopped, at)) => (crate::ivr::cdr::SystemEnd::ServerRestart, at),
        Some((HeartbeatState::Running, at)) => (crate::ivr::cdr::SystemEnd::Crash, at),
        None => (crate::ivr::cdr::SystemEnd::Crash, clock.now()),
    };
    match store.close_open_calls(last_known, reason).await {
        Ok(closed) => {
            for record in &closed {
                warn!(
                    call_id = %record.call_id,
                    reason = reason.as_str(),
                    end = %crate::logfmt::word(&record.end),
                    "call record closed at start-up: the server stopped while the call was up"
                );
            }
            metrics.calls_closed_at_startup(closed.len());
        }
        Err(e) => warn!(%e, "cannot close the call records left open"),
    }
}

/// "calendar for 2027 not loaded: add 2027 to /etc/…/cn-workdays.toml" for this year and
/// next when their data is missing (deadlines computed now can reach into next year),
/// naming the file to edit (`path`, made absolute when it can be).
pub fn calendar_warnings(
    calendar: &crate::calendar::Calendar,
    path: &std::path::Path,
    today: chrono::NaiveDate,
) -> Vec<String> {
    use chrono::Datelike;
    let loaded = calendar.loaded_years();
    let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    [today.year(), today.year() + 1]
        .into_iter()
        .filter(|y| !loaded.contains(y))
        .map(|y| {
            format!(
                "calendar for {y} not loaded: add {y}'s holidays and make-up working days to {} \
                 (`hotline calendar add-year {y} --holidays … --workdays …`; the running server reloads it)",
                file.display()
            )
        })
        .collect()
}

/// Expired registrations are removed from the database periodically (the registrar
/// drops them from memory on its own timer).
pub(crate) async fn expire_bindings_loop(store: Store, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = store.delete_expired_bindings(wall_ms()).await {
            warn!(%e, "could not delete expired registrations");
        }
    }
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(%e, "cannot watch SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn missing_next_year_is_a_startup_warning() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/calendar/cn-workdays.toml");
        let calendar = crate::calendar::Calendar::load(&path).expect("shipped calendar");
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        let warnings = calendar_warnings(&calendar, &path, day(2026, 11, 28));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let file = std::fs::canonicalize(&path).expect("absolute path");
        assert!(
            warnings[0].starts_with("calendar for 2027 not loaded: add 2027")
                && warnings[0].contains(&file.display().to_string()),
            "{warnings:?}"
        );
        assert!(calendar_warnings(&calendar, &path, day(2025, 6, 1)).is_empty());
        assert_eq!(
            calendar_warnings(&calendar, &path, day(2027, 1, 5)).len(),
            2
        );
    }
}
