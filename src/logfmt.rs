//! How the log writes values: timestamps in the zone `[log] timezone` names: Asia/Shanghai (the operators'
//! local time, the default) or UTC. RFC 3339 with microseconds and the offset, e.g.
//! `2026-12-07T22:14:03.123456+08:00` or `2026-12-07T14:14:03.123456Z`.
//!
//! The subscriber is installed before the config is read, so the zone is a process-wide
//! setting that `serve` sets once the config is loaded. Domain values are written as
//! words ([`word`]), never as Rust debug text (`Some("jinan")`, `Leg { … }`).

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

/// A value as words for a log field, from its serde form: `"sign_in"` → `sign_in`,
/// `{"leg_failed": "busy"}` → `leg_failed busy`, `["ivr", "menu"]` → `ivr menu`,
/// null → `none`, numbers as numbers.
#[must_use]
pub fn word<T: serde::Serialize + ?Sized>(value: &T) -> String {
    fn flat(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Null => out.push("none".into()),
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(items) => items.iter().for_each(|i| flat(i, out)),
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.push(k.clone());
                    flat(v, out);
                }
            }
            other => out.push(other.to_string()),
        }
    }
    let mut out = Vec::new();
    match serde_json::to_value(value) {
        Ok(v) => flat(&v, &mut out),
        Err(_) => out.push("unprintable".into()),
    }
    out.join(" ")
}

/// An error with its causes, for a log field: `cannot store: database: disk full`
/// (each `source()` after a colon; a cause its parent already quotes is left out).
#[must_use]
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A deadline as every log line writes it: RFC 3339 in Asia/Shanghai, to the second,
/// `2026-02-17T00:00:00+08:00` (the form stored in call records and orders).
#[must_use]
pub fn deadline<Tz: chrono::TimeZone>(at: &DateTime<Tz>) -> String {
    at.with_timezone(&crate::calendar::shanghai())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
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
    fn an_error_chain_is_one_line_of_words() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot store the call record")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(chain(&e), "cannot store the call record: disk full");
    }

    #[test]
    fn values_are_words() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        enum Why {
            SignIn,
            LegFailed(&'static str),
        }
        assert_eq!(word(&Why::SignIn), "sign_in");
        assert_eq!(word(&Why::LegFailed("busy")), "leg_failed busy");
        assert_eq!(word(&Some("jinan")), "jinan");
        assert_eq!(word(&None::<&str>), "none");
        assert_eq!(word(&["ivr", "menu"]), "ivr menu");
    }

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
        assert_eq!(deadline(&at), "2026-12-07T22:14:03+08:00");
    }
}
