//! What a phone's receiver keeps and what it drops: a model to judge our streams from
//! the receiver's side.
//!
//! A stream can reach the phone intact and still be silence: phones validate the source
//! (RFC 3550 appendix A.1) and play through a jitter buffer that discards packets it
//! considers late. This model does both, as the common softphones do:
//! * A.1 sequence validation: a jump of more than `MAX_DROPOUT` is only believed after two
//!   packets in sequence; until then packets are dropped;
//! * a sequence-ordered buffer (baresip's `jbuf`): a packet whose sequence number is not
//!   newer than the last one played out is late and dropped (packets wait in the buffer
//!   until their playout time, so mild reordering is absorbed); the buffer keeps its
//!   place when A.1 accepts a jump, so a stream that leaps "back" stays silent;
//! * a timestamp playout clock (PJSIP, Linphone): the playout time of a packet is the
//!   arrival of the talkspurt's first packet plus its timestamp distance plus the playout
//!   delay; a packet arriving after its playout time is late, one due further ahead than
//!   the buffer holds overflows it; a marker bit starts a new talkspurt (the clock
//!   re-anchors) but the timestamp must not run backwards;
//! * an SSRC change resets the receiver and is counted.
//!
//! Used by tests (and benches) on the packets the server really sent.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::rtp::RtpPacket;

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// What the phone did with the packets it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PhoneStats {
    pub received: u64,
    pub played: u64,
    /// Dropped by A.1 validation (a sequence jump not yet confirmed).
    pub invalid: u64,
    /// Sequence number not newer than the last played.
    pub late_sequence: u64,
    /// Arrived after its playout time (timestamp ran backwards, or the source lagged).
    pub late_timestamp: u64,
    /// Due further ahead than the buffer holds (timestamp leapt forward without a marker).
    pub overflow: u64,
    /// The SSRC changed mid-stream (the phone resets its receiver).
    pub ssrc_changes: u64,
}

impl PhoneStats {
    /// Packets the phone threw away.
    pub fn dropped(&self) -> u64 {
        self.invalid + self.late_sequence + self.late_timestamp + self.overflow
    }
}

#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    max_sequence: u16,
    bad_sequence: Option<u16>,
    /// The newest packet accepted into the buffer (sequence, timestamp).
    last_accepted: Option<(u16, u32)>,
    /// The last sequence number played out.
    last_played: Option<u16>,
    /// Accepted packets waiting for their playout time.
    waiting: VecDeque<(u16, Instant)>,
    /// Arrival and timestamp of the current talkspurt's first packet.
    anchor: Option<(Instant, u32)>,
}

/// The receiver model. See the module docs.
#[derive(Debug, Clone)]
pub struct PhoneModel {
    clock_rate: u32,
    playout_delay: Duration,
    buffer: Duration,
    source: Option<Source>,
    stats: PhoneStats,
}

impl PhoneModel {
    /// A phone playing `clock_rate` audio `playout_delay` after the talkspurt's first
    /// packet arrived, holding at most `buffer` of audio ahead.
    pub fn new(clock_rate: u32, playout_delay: Duration, buffer: Duration) -> PhoneModel {
        PhoneModel {
            clock_rate,
            playout_delay,
            buffer,
            source: None,
            stats: PhoneStats::default(),
        }
    }

    /// A G.711 phone with a 60 ms playout delay and a 1 s buffer.
    pub fn g711() -> PhoneModel {
        PhoneModel::new(8000, Duration::from_millis(60), Duration::from_secs(1))
    }

    pub fn stats(&self) -> PhoneStats {
        self.stats
    }

    /// A packet arrived at `now`.
    pub fn receive(&mut self, now: Instant, packet: &RtpPacket<'_>) {
        self.stats.received += 1;
        let source = match &mut self.source {
            Some(source) if source.ssrc == packet.ssrc => source,
            slot => {
                if slot.is_some() {
                    self.stats.ssrc_changes += 1;
                }
                slot.insert(Source {
                    ssrc: packet.ssrc,
                    max_sequence: packet.sequence.wrapping_sub(1),
                    bad_sequence: None,
                    last_accepted: None,
                    last_played: None,
                    waiting: VecDeque::new(),
                    anchor: None,
                })
            }
        };
        // A.1 update_seq.
        let delta = packet.sequence.wrapping_sub(source.max_sequence);
        if delta < MAX_DROPOUT {
            source.max_sequence = packet.sequence;
        } else if delta <= u16::MAX - MAX_MISORDER {
            if source.bad_sequence == Some(packet.sequence) {
                source.max_sequence = packet.sequence;
            } else {
                source.bad_sequence = Some(packet.sequence.wrapping_add(1));
                self.stats.invalid += 1;
                return;
            }
        }
        // The sequence-ordered buffer: play out what is due, then compare.
        while let Some(&(sequence, due)) = source.waiting.front() {
            if due > now {
                break;
            }
            source.waiting.pop_front();
            source.last_played = Some(sequence);
        }
        if let Some(last) = source.last_played {
            let step = packet.sequence.wrapping_sub(last);
            if step == 0 || step >= 0x8000 {
                self.stats.late_sequence += 1;
                return;
            }
        }
        // The timestamp playout clock.
        let behind_last = source
            .last_accepted
            .is_some_and(|(_, ts)| packet.timestamp.wrapping_sub(ts) >= 0x8000_0000);
        if packet.marker.is_set() && !behind_last || source.anchor.is_none() {
            source.anchor = Some((now, packet.timestamp));
        }
        let mut playout_at = now + self.playout_delay;
        if let Some((arrived, anchor_ts)) = source.anchor {
            let distance = packet.timestamp.wrapping_sub(anchor_ts);
            if distance >= 0x8000_0000 {
                self.stats.late_timestamp += 1;
                return;
            }
            let media = Duration::from_nanos(
                u64::from(distance) * 1_000_000_000 / u64::from(self.clock_rate),
            );
            playout_at = arrived + media + self.playout_delay;
            if now > playout_at {
                self.stats.late_timestamp += 1;
                return;
            }
            if playout_at.saturating_duration_since(now) > self.buffer {
                self.stats.overflow += 1;
                return;
            }
        }
        let newest = source
            .last_accepted
            .is_none_or(|(last, _)| packet.sequence.wrapping_sub(last) < 0x8000);
        if newest {
            source.last_accepted = Some((packet.sequence, packet.timestamp));
        }
        // Kept in sequence order: a late-but-in-time packet is played before its successor.
        let at = source
            .waiting
            .iter()
            .position(|(s, _)| s.wrapping_sub(packet.sequence) < 0x8000)
            .unwrap_or(source.waiting.len());
        source.waiting.insert(at, (packet.sequence, playout_at));
        self.stats.played += 1;
    }
}
