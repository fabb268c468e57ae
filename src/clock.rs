//! The one wall clock of the server, for the API and the calls alike: real time, or
//! real time shifted by `--now` / `HOTLINE_FAKE_NOW` (demos and tests of hours,
//! holidays and deadlines). Decisions read it; timers run on the monotonic clock.

use chrono::{DateTime, FixedOffset, Utc};

/// Wall clock with an optional offset (`--now` / `HOTLINE_FAKE_NOW`) for decisions only
/// (hours, dates of recordings, CDR times); timers always run on the monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock {
    offset: chrono::TimeDelta,
}

impl WallClock {
    /// A clock that reads `fake_now` at the moment of the call.
    #[must_use]
    pub fn starting_at(fake_now: DateTime<FixedOffset>) -> WallClock {
        WallClock {
            offset: fake_now.with_timezone(&Utc) - Utc::now(),
        }
    }

    /// The time now, in Asia/Shanghai.
    #[must_use]
    pub fn now(&self) -> DateTime<FixedOffset> {
        (Utc::now() + self.offset).with_timezone(&crate::calendar::shanghai())
    }
}
