//! RTP port pool: even RTP ports with the odd RTCP port above, over a configured range.
//!
//! Pure bookkeeping; the shell binds. Calling contract:
//! 1. [`PortPool::allocate`] → try to bind RTP `pair.rtp` and RTCP `pair.rtcp`.
//! 2. If a bind fails (another process holds the port), [`PortPool::mark_bad`] the pair and
//!    allocate again; give up after [`PortPool::capacity`] attempts.
//! 3. When the call ends, [`PortPool::release`] the pair.
//!
//! Free pairs form a queue: release and `mark_bad` append at the back. Allocation takes a
//! random pair among the oldest three quarters of the good ones (the caller passes the
//! randomness: the pool stays pure), so
//! * the next call's ports cannot be guessed from the last one's: a host spraying the
//!   "next" ports finds nothing to latch onto;
//! * a just-released pair still waits behind most others (late packets of the old call do
//!   not reach the new one);
//! * a bad pair is retried only after every other pair.

use std::collections::{HashSet, VecDeque};

use thiserror::Error;

/// An RTP port (even) and its RTCP port (`rtp + 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortPair {
    pub rtp: u16,
    pub rtcp: u16,
}

/// Invalid pool configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PortPoolError {
    #[error("port range {first}..={last} holds no even/odd pair")]
    EmptyRange { first: u16, last: u16 },
}

/// Misuse reported by `release`/`mark_bad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReleaseError {
    #[error("port {0} is not allocated from this pool")]
    NotAllocated(u16),
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct PortPool {
    free: VecDeque<u16>,
    in_use: HashSet<u16>,
    bad: HashSet<u16>,
}

impl PortPool {
    /// A pool over `first..=last` (inclusive); an odd `first` starts at the next even port,
    /// and a pair needs both ports inside the range.
    ///
    /// # Errors
    /// [`PortPoolError::EmptyRange`] if no pair fits.
    pub fn new(first: u16, last: u16) -> Result<PortPool, PortPoolError> {
        let start = u32::from(first) + u32::from(first % 2);
        let free: VecDeque<u16> = (start..u32::from(last))
            .step_by(2)
            .filter_map(|p| u16::try_from(p).ok())
            .collect();
        if free.is_empty() {
            return Err(PortPoolError::EmptyRange { first, last });
        }
        Ok(PortPool {
            free,
            in_use: HashSet::new(),
            bad: HashSet::new(),
        })
    }

    /// Number of pairs managed.
    pub fn capacity(&self) -> usize {
        self.free.len() + self.in_use.len()
    }

    /// Pairs currently allocated.
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }

    /// Take a free pair chosen by `random` among the least recently used good ones (see
    /// the module docs), or `None` when all are in use.
    pub fn allocate(&mut self, random: u64) -> Option<PortPair> {
        let good = self.free.len() - self.bad.iter().filter(|p| !self.in_use.contains(p)).count();
        let index = if good == 0 {
            0
        } else {
            let window = (good - good / 4).max(1);
            let pick = (random % window as u64) as usize;
            self.free
                .iter()
                .enumerate()
                .filter(|(_, port)| !self.bad.contains(port))
                .nth(pick)
                .map_or(0, |(i, _)| i)
        };
        let rtp = self.free.remove(index)?;
        self.in_use.insert(rtp);
        Some(PortPair { rtp, rtcp: rtp + 1 })
    }

    /// Return a pair after its call ended; it goes to the back of the queue.
    ///
    /// # Errors
    /// [`ReleaseError::NotAllocated`] if the pair is not currently allocated (double release).
    pub fn release(&mut self, pair: PortPair) -> Result<(), ReleaseError> {
        if !self.in_use.remove(&pair.rtp) {
            return Err(ReleaseError::NotAllocated(pair.rtp));
        }
        self.bad.remove(&pair.rtp);
        self.free.push_back(pair.rtp);
        Ok(())
    }

    /// The shell could not bind this pair: return it, to be retried after all others.
    ///
    /// # Errors
    /// [`ReleaseError::NotAllocated`] if the pair is not currently allocated.
    pub fn mark_bad(&mut self, pair: PortPair) -> Result<(), ReleaseError> {
        if !self.in_use.remove(&pair.rtp) {
            return Err(ReleaseError::NotAllocated(pair.rtp));
        }
        self.bad.insert(pair.rtp);
        self.free.push_back(pair.rtp);
        Ok(())
    }

    /// Pairs that failed to bind the last time they were tried.
    pub fn bad_count(&self) -> usize {
        self.bad.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_odd_within_range() {
        let mut pool = PortPool::new(10001, 10010).unwrap();
        let mut got = vec![];
        let mut random = 7u64;
        while let Some(pair) = pool.allocate(random) {
            assert_eq!(pair.rtp % 2, 0);
            assert_eq!(pair.rtcp, pair.rtp + 1);
            got.push(pair.rtp);
            random = random
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
        }
        got.sort_unstable();
        assert_eq!(got, vec![10002, 10004, 10006, 10008]);
        // 10010 has no 10011 in range.
        assert_eq!(pool.capacity(), 4);
        assert_eq!(pool.in_use(), 4);
    }

    #[test]
    fn the_next_ports_cannot_be_guessed() {
        let pool = PortPool::new(20000, 20999).unwrap();
        let firsts: HashSet<u16> = (0..64u64)
            .filter_map(|r| pool.clone().allocate(r.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .map(|p| p.rtp)
            .collect();
        assert!(
            firsts.len() > 40,
            "{} distinct first pairs of 64",
            firsts.len()
        );
    }

    #[test]
    fn a_released_pair_waits_behind_most_others() {
        let mut pool = PortPool::new(20000, 20015).unwrap();
        let a = pool.allocate(3).unwrap();
        pool.release(a).unwrap();
        assert_eq!(pool.release(a), Err(ReleaseError::NotAllocated(a.rtp)));
        for random in 0..256 {
            assert_ne!(pool.clone().allocate(random), Some(a), "random {random}");
        }
        // Once every other pair is taken, it is used again.
        let mut taken = HashSet::new();
        while let Some(pair) = pool.allocate(5) {
            taken.insert(pair);
        }
        assert!(taken.contains(&a));
        assert_eq!(taken.len(), 8);
    }

    #[test]
    fn bad_pair_is_retried_last() {
        let mut pool = PortPool::new(30000, 30005).unwrap();
        let first = pool.allocate(0).unwrap();
        pool.mark_bad(first).unwrap();
        assert_eq!(pool.bad_count(), 1);
        for random in [0, 1] {
            assert_ne!(pool.allocate(random).unwrap(), first);
        }
        let retried = pool.allocate(9).unwrap();
        assert_eq!(retried, first);
        pool.release(retried).unwrap();
        assert_eq!(pool.bad_count(), 0);
    }

    #[test]
    fn empty_range_is_an_error() {
        assert_eq!(
            PortPool::new(10, 10).unwrap_err(),
            PortPoolError::EmptyRange {
                first: 10,
                last: 10
            }
        );
        assert!(PortPool::new(65534, 65535).is_ok());
        assert!(PortPool::new(65535, 65535).is_err());
    }
}
