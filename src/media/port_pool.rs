//! RTP port pool: even RTP ports with the odd RTCP port above, over a configured range.
//!
//! Pure bookkeeping; the shell binds. Calling contract:
//! 1. [`PortPool::allocate`] → try to bind RTP `pair.rtp` and RTCP `pair.rtcp`.
//! 2. If a bind fails (another process holds the port), [`PortPool::mark_bad`] the pair and
//!    allocate again; give up after [`PortPool::capacity`] attempts.
//! 3. When the call ends, [`PortPool::release`] the pair.
//!
//! Free pairs form a queue: allocation takes the front, release and `mark_bad` append at the
//! back, so a just-released pair is reused as late as possible (late packets of the old call
//! do not reach the new one) and a bad pair is retried only after every other pair.

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

    /// Take the least recently used free pair, or `None` when all are in use.
    pub fn allocate(&mut self) -> Option<PortPair> {
        let rtp = self.free.pop_front()?;
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
        while let Some(pair) = pool.allocate() {
            assert_eq!(pair.rtp % 2, 0);
            assert_eq!(pair.rtcp, pair.rtp + 1);
            got.push(pair.rtp);
        }
        assert_eq!(got, vec![10002, 10004, 10006, 10008]);
        // 10010 has no 10011 in range.
        assert_eq!(pool.capacity(), 4);
        assert_eq!(pool.in_use(), 4);
    }

    #[test]
    fn no_reuse_until_released_and_released_go_to_back() {
        let mut pool = PortPool::new(20000, 20007).unwrap();
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        pool.release(a).unwrap();
        // The pairs never used come before the just-released one.
        assert_eq!(pool.allocate().unwrap().rtp, 20004);
        assert_eq!(pool.allocate().unwrap().rtp, 20006);
        assert_eq!(pool.allocate().unwrap().rtp, a.rtp);
        assert_eq!(pool.allocate(), None);
        assert_ne!(a, b);
        assert_eq!(pool.release(a), Ok(()));
        assert_eq!(pool.release(a), Err(ReleaseError::NotAllocated(20000)));
    }

    #[test]
    fn bad_pair_is_retried_last() {
        let mut pool = PortPool::new(30000, 30005).unwrap();
        let first = pool.allocate().unwrap();
        pool.mark_bad(first).unwrap();
        assert_eq!(pool.bad_count(), 1);
        assert_eq!(pool.allocate().unwrap().rtp, 30002);
        assert_eq!(pool.allocate().unwrap().rtp, 30004);
        let retried = pool.allocate().unwrap();
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
