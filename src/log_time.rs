//! Log timestamps in the zone `[log] timezone` names: Asia/Shanghai (the operators'
//! local time, the default) or UTC. RFC 3339 with microseconds and the offset, e.g.
//! `2026-12-07T22:14:03.123456+08:00` or `2026-12-07T14:14:03.123456Z`.
//!
//! The subscriber is installed before the config is read, so the zone is a process-wide
//! setting that `serve` sets once the config is loaded.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use chrono::{DateTime, SecondsFormat, Utc};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

use crate::config::LogTimezone;

static UTC: AtomicBool = AtomicBool::new(false);

/// Stamp log lines in `zone` from now on.
pub fn set_zone(zone: LogTimezone) {
    UTC.store(zone == LogTimezone::Utc, Relaxed);
}

/// One timestamp as the log writes it.
#[must_use]
pub fn stamp(at: DateTime<Utc>, zone: LogTimezone) -> String {
    match zone {
        LogTimezone::Utc => at.to_rfc3339_opts(SecondsFormat::Micros, true),
        LogTimezone::Shanghai => at
            .with_timezone(&crate::calendar::shanghai())
            .to_rfc3339_opts(SecondsFormat::Micros, false),
    }
}

/// The `tracing-subscriber` timer of the server's log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogTimer;

impl FormatTime for LogTimer {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let zone = if UTC.load(Relaxed) {
            LogTimezone::Utc
        } else {
            LogTimezone::Shanghai
        };
        w.write_str(&stamp(Utc::now(), zone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_in_the_configured_zone() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T14:14:03.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            stamp(at, LogTimezone::Shanghai),
            "2026-12-07T22:14:03.500000+08:00"
        );
        assert_eq!(stamp(at, LogTimezone::Utc), "2026-12-07T14:14:03.500000Z");
    }
}
