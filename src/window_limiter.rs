//! Events per key in a sliding time window, in memory: the login throttle's failures
//! (`api::auth`) and the public intake's rate limits (`orders::intake`). Fed `now`, so
//! the callers test it in simulated time.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked before the expired ones are swept (a memory bound under a flood of new
/// keys).
const SWEEP_AT: usize = 50_000;

/// Event times per key within `window`.
#[derive(Debug)]
pub struct SlidingWindow {
    window: Duration,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SlidingWindow {
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            hits: Mutex::new(HashMap::new()),
        }
    }

    #[must_use]
    pub fn window(&self) -> Duration {
        self.window
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Instant>>> {
        self.hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seconds until `key` may have another event, when it has `max` in the window.
    pub fn retry_after(&self, key: &str, max: usize, now: Instant) -> Option<u64> {
        let mut hits = self.lock();
        self.retry_after_in(&mut hits, key, max, now)
    }

    /// Count an event for `key` at `now`.
    pub fn record(&self, key: &str, now: Instant) {
        self.lock()
            .entry(key.to_owned())
            .or_default()
            .push_back(now);
    }

    /// Count an event for `key` at `now` unless it has `max` in the window already:
    /// then the seconds until it may.
    ///
    /// # Errors
    /// The seconds to wait.
    pub fn hit(&self, key: &str, max: usize, now: Instant) -> Result<(), u64> {
        let mut hits = self.lock();
        if let Some(wait) = self.retry_after_in(&mut hits, key, max, now) {
            return Err(wait);
        }
        hits.entry(key.to_owned()).or_default().push_back(now);
        Ok(())
    }

    /// Forget `key`'s events (a login that succeeded).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn retry_after_in(
        &self,
        hits: &mut HashMap<String, VecDeque<Instant>>,
        key: &str,
        max: usize,
        now: Instant,
    ) -> Option<u64> {
        if hits.len() >= SWEEP_AT {
            let window = self.window;
            hits.retain(|_, list| {
                list.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        let list = hits.get_mut(key)?;
        while list
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            list.pop_front();
        }
        if list.len() < max {
            return None;
        }
        let oldest = *list.front()?;
        let left = self
            .window
            .saturating_sub(now.saturating_duration_since(oldest));
        Some(left.as_secs().max(1))
    }
}
