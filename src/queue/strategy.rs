//! Agent selection per [`Strategy`], over the agents already found eligible.

use super::config::Strategy;
use super::types::{AgentId, Time};

/// What selection needs to know about an eligible, available agent.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) id: AgentId,
    /// Position in the config's agent list.
    pub(crate) order: usize,
    /// When the agent last became available.
    pub(crate) idle_since: Time,
    /// Calls answered today.
    pub(crate) calls_today: u32,
}

/// A small deterministic generator (SplitMix64) for the `random` strategy: seeded by the
/// shell, so tests replay exactly.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX).max(1);
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }
}

/// The agents to ring for one call: one agent, or all of them for `ring_all` (unless
/// `single` is asked, as for a callback, which reserves exactly one agent).
/// `rr_last` is the queue's round-robin memory (config order of the last agent rung).
pub(crate) fn pick(
    strategy: Strategy,
    candidates: &[Candidate],
    rr_last: Option<usize>,
    rng: &mut SplitMix64,
    single: bool,
) -> Vec<AgentId> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let longest_idle = || {
        candidates
            .iter()
            .min_by_key(|c| (c.idle_since, c.order))
            .map(|c| c.id.clone())
    };
    let chosen = match strategy {
        Strategy::RingAll if !single => {
            let mut all: Vec<&Candidate> = candidates.iter().collect();
            all.sort_by_key(|c| c.order);
            return all.into_iter().map(|c| c.id.clone()).collect();
        }
        Strategy::LongestIdle | Strategy::RingAll => longest_idle(),
        Strategy::FewestCalls => candidates
            .iter()
            .min_by_key(|c| (c.calls_today, c.idle_since, c.order))
            .map(|c| c.id.clone()),
        Strategy::Linear => candidates
            .iter()
            .min_by_key(|c| c.order)
            .map(|c| c.id.clone()),
        Strategy::RoundRobin => {
            let after = |c: &&Candidate| rr_last.is_none_or(|last| c.order > last);
            candidates
                .iter()
                .filter(after)
                .min_by_key(|c| c.order)
                .or_else(|| candidates.iter().min_by_key(|c| c.order))
                .map(|c| c.id.clone())
        }
        Strategy::Random => {
            let mut sorted: Vec<&Candidate> = candidates.iter().collect();
            sorted.sort_by_key(|c| c.order);
            let index = rng.below(sorted.len());
            sorted.get(index).map(|c| c.id.clone())
        }
    };
    chosen.into_iter().collect()
}
