//! Property tests: random event sequences never leave an agent stale.
