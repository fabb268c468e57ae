//! The RFC 3261 §17 timers as an enum indexing a table of deadlines; the next timeout is
//! the minimum over the table.

use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// INVITE client request retransmission.
    A,
    /// INVITE client transaction timeout.
    B,
    /// INVITE client guard in Proceeding (RFC 3261 §16.6 Timer C, used here by a UAC too).
    C,
    /// INVITE client wait for response retransmissions in Completed.
    D,
    /// Non-INVITE client request retransmission.
    E,
    /// Non-INVITE client transaction timeout.
    F,
    /// Non-INVITE client wait for response retransmissions in Completed.
    K,
    /// INVITE server final response retransmission.
    G,
    /// INVITE server wait for ACK.
    H,
    /// INVITE server wait for ACK retransmissions in Confirmed.
    I,
    /// Non-INVITE server wait for request retransmissions in Completed.
    J,
    /// INVITE server wait for INVITE retransmissions in Accepted (RFC 6026).
    L,
    /// INVITE client wait for 2xx retransmissions in Accepted (RFC 6026).
    M,
    /// INVITE server: send 100 Trying if the TU has not answered yet.
    Trying,
}

const TIMER_COUNT: usize = 14;

const ALL: [Timer; TIMER_COUNT] = [
    Timer::A,
    Timer::B,
    Timer::C,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::K,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::L,
    Timer::M,
    Timer::Trying,
];

#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; TIMER_COUNT],
}

impl TimerTable {
    fn slot(&mut self, timer: Timer) -> &mut Option<Instant> {
        // The discriminant is always below TIMER_COUNT; `get_mut` keeps this panic-free.
        match self.deadlines.get_mut(timer as usize) {
            Some(slot) => slot,
            None => unreachable!("timer index within table"),
        }
    }

    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        *self.slot(timer) = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        *self.slot(timer) = None;
    }

    pub(crate) fn clear(&mut self) {
        self.deadlines = [None; TIMER_COUNT];
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Disarms and returns the earliest timer due at `now`, if any.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let (timer, _) = ALL
            .iter()
            .zip(self.deadlines.iter())
            .filter_map(|(timer, at)| at.filter(|at| *at <= now).map(|at| (*timer, at)))
            .min_by_key(|(_, at)| *at)?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::test_support::{ms, origin};

    #[test]
    fn next_timeout_is_minimum_and_expired_come_earliest_first() {
        let t0 = origin();
        let mut table = TimerTable::default();
        assert_eq!(table.next_timeout(), None);
        table.set(Timer::B, t0 + ms(300));
        table.set(Timer::A, t0 + ms(100));
        table.set(Timer::Trying, t0 + ms(200));
        assert_eq!(table.next_timeout(), Some(t0 + ms(100)));
        assert_eq!(table.take_expired(t0 + ms(50)), None);
        assert_eq!(table.take_expired(t0 + ms(250)), Some(Timer::A));
        assert_eq!(table.take_expired(t0 + ms(250)), Some(Timer::Trying));
        assert_eq!(table.take_expired(t0 + ms(250)), None);
        assert_eq!(table.next_timeout(), Some(t0 + ms(300)));
    }
}
