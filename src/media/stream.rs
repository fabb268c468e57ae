//! One outgoing RTP stream per leg: one SSRC, sequence numbers and timestamps that a phone
//! accepts whatever feeds the leg (RFC 3550 §5.1).
//!
//! A leg is fed by several sources in turn: IVR prompts and hold music (each playlist
//! counts its own media clock from 0), the bridge relaying another phone's packets (with
//! that phone's random sequence and timestamp), the survey, a transferred-to agent. A
//! phone's jitter buffer drops every packet whose sequence number is "older" than the last
//! one it played, and plays by timestamp: a stream that restarts its numbers when the
//! source changes is silence on the phone even though every packet was sent.
//!
//! [`OutboundStream::stamp`] maps each source's own numbering onto the leg's single
//! timeline:
//! * the sequence number goes up by one for every packet in the order sources hand them
//!   over (a relayed source keeps its own gaps and reordering, mapped by a fixed offset);
//! * the timestamp of a source's first packet continues after the last packet sent, by
//!   the time that really passed (at least that packet's duration), so the receiver's
//!   playout clock stays in step with the sampling clock; the marker bit is set on it (a
//!   new talkspurt: the receiver may resynchronise its playout);
//! * a source that jumps within itself (a prompt restarted at 0, a phone whose numbering
//!   leaps) is re-anchored the same way, as if it were a new source.
//!
//! Sans-IO: time is passed in; no sockets.

use std::time::{Duration, Instant};

use super::rtp::Marker;

/// Who produced the packet being stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Our own audio (prompts, hold music, tones): the source timestamp is the player's
    /// media clock. A timestamp that does not move forward means a new playlist began.
    Local,
    /// Packets relayed from another leg: `relay` tells the bridges apart (a transfer to
    /// another agent is another relay even if that phone picked the same SSRC).
    Relayed { relay: u32, ssrc: u32 },
}

/// The header fields to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: Marker,
}

/// How a source's numbering maps onto ours.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    origin: Origin,
    sequence_delta: u16,
    timestamp_delta: u32,
    /// The source's newest sequence and timestamp seen (to detect jumps).
    source_sequence: u16,
    source_timestamp: u32,
}

/// The newest packet sent (by sequence number).
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    sequence: u16,
    timestamp: u32,
    /// Samples the packet carries (its playout duration).
    duration: u32,
}

/// A relayed source may leave this many sequence numbers out (lost upstream) and still
/// continue its mapping (RFC 3550 A.1 `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;
/// A relayed packet this far behind the source's newest is a late one, mapped as it is
/// (RFC 3550 A.1 `MAX_MISORDER`).
const MAX_MISORDER: u16 = 100;
/// A timestamp step within one source beyond this (in samples, 60 s at 8 kHz) is a jump.
const MAX_TIMESTAMP_STEP: u32 = 60 * 8000;
/// A timestamp step back within one source beyond this (10 s: a long RFC 4733 event keeps
/// its start timestamp while its packets go on) is a jump.
const MAX_TIMESTAMP_BACK: u32 = 10 * 8000;

/// The leg's outgoing stream. See the module docs.
#[derive(Debug, Clone)]
pub struct OutboundStream {
    ssrc: u32,
    clock_rate: u32,
    initial_sequence: u16,
    initial_timestamp: u32,
    mapping: Option<Mapping>,
    last: Option<Sent>,
}

impl OutboundStream {
    /// A stream with our `ssrc` whose first packet carries `initial_sequence` and
    /// `initial_timestamp` (all random, RFC 3550 §5.1), with the media clock `clock_rate`
    /// (8000 for G.711).
    pub fn new(
        ssrc: u32,
        initial_sequence: u16,
        initial_timestamp: u32,
        clock_rate: u32,
    ) -> OutboundStream {
        OutboundStream {
            ssrc,
            clock_rate,
            initial_sequence,
            initial_timestamp,
            mapping: None,
            last: None,
        }
    }

    /// Our SSRC: every packet of the leg carries it.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number and timestamp of the newest packet stamped.
    pub fn last_sent(&self) -> Option<(u16, u32)> {
        self.last.map(|s| (s.sequence, s.timestamp))
    }

    /// Stamp one packet of `origin` sent at `now`: `source_sequence` and
    /// `source_timestamp` are the source's own (a local player has no sequence: pass
    /// anything, e.g. 0), `duration` the samples it carries, `marker` the source's marker.
    pub fn stamp(
        &mut self,
        now: Instant,
        origin: Origin,
        source_sequence: u16,
        source_timestamp: u32,
        duration: u32,
        marker: Marker,
    ) -> Stamp {
        // Our own player has no sequence numbers: the mapping counts them.
        let source_sequence = match origin {
            Origin::Local => 0,
            Origin::Relayed { .. } => source_sequence,
        };
        let continues = self
            .mapping
            .filter(|m| m.origin == origin)
            .filter(|m| continues(m, origin, source_sequence, source_timestamp));
        let (mapping, marker) = match continues {
            Some(mut m) => {
                let newer = match origin {
                    Origin::Local => true,
                    Origin::Relayed { .. } => {
                        let step = source_sequence.wrapping_sub(m.source_sequence);
                        step != 0 && step < MAX_DROPOUT
                    }
                };
                if newer {
                    m.source_sequence = source_sequence;
                    m.source_timestamp = source_timestamp;
                }
                if let Origin::Local = origin {
                    m.sequence_delta = m.sequence_delta.wrapping_add(1);
                }
                (m, marker)
            }
            None => (
                self.anchor(now, origin, source_sequence, source_timestamp),
                Marker::Set,
            ),
        };
        self.mapping = Some(mapping);
        let sequence = source_sequence.wrapping_add(mapping.sequence_delta);
        let timestamp = source_timestamp.wrapping_add(mapping.timestamp_delta);
        let newest = self
            .last
            .is_none_or(|last| is_newer(sequence, last.sequence));
        if newest {
            self.last = Some(Sent {
                at: now,
                sequence,
                timestamp,
                duration,
            });
        }
        Stamp {
            sequence,
            timestamp,
            marker,
        }
    }

    /// Map `origin`'s next packet right after the newest one sent.
    fn anchor(
        &self,
        now: Instant,
        origin: Origin,
        source_sequence: u16,
        source_timestamp: u32,
    ) -> Mapping {
        let (next_sequence, next_timestamp) = match self.last {
            Some(last) => {
                let elapsed = samples(now.saturating_duration_since(last.at), self.clock_rate);
                (
                    last.sequence.wrapping_add(1),
                    last.timestamp.wrapping_add(elapsed.max(last.duration)),
                )
            }
            None => (self.initial_sequence, self.initial_timestamp),
        };
        Mapping {
            origin,
            sequence_delta: next_sequence.wrapping_sub(source_sequence),
            timestamp_delta: next_timestamp.wrapping_sub(source_timestamp),
            source_sequence,
            source_timestamp,
        }
    }
}

/// Whether a packet of the mapped source continues its mapping (no jump).
fn continues(m: &Mapping, origin: Origin, sequence: u16, timestamp: u32) -> bool {
    let timestamp_step = timestamp.wrapping_sub(m.source_timestamp);
    match origin {
        // A playlist's clock only moves forward; anything else is a new playlist.
        Origin::Local => timestamp_step != 0 && timestamp_step <= MAX_TIMESTAMP_STEP,
        Origin::Relayed { .. } => {
            let step = sequence.wrapping_sub(m.source_sequence);
            let sequence_ok = !(MAX_DROPOUT..u16::MAX - MAX_MISORDER).contains(&step);
            let timestamp_ok = timestamp_step <= MAX_TIMESTAMP_STEP
                || timestamp_step.wrapping_neg() <= MAX_TIMESTAMP_BACK;
            sequence_ok && timestamp_ok
        }
    }
}

/// `a` comes after `b` in 16-bit sequence space.
fn is_newer(a: u16, b: u16) -> bool {
    let step = a.wrapping_sub(b);
    step != 0 && step < 0x8000
}

fn samples(elapsed: Duration, clock_rate: u32) -> u32 {
    (elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000).min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, UNIX_EPOCH};

    use super::*;
    use crate::media::bridge::{LegMedia, RelayDirection, Relayed};
    use crate::media::g711::Codec;
    use crate::media::phone_model::PhoneModel;
    use crate::media::player::{BargeIn, Player, Playlist, Prompt, Segment};
    use crate::media::rtp::{
        RemoteMedia, RtcpIter, RtcpPacket, RtpHeader, RtpPacket, RtpSession, RtpSessionConfig,
        write_packet,
    };

    const PCMU: LegMedia = LegMedia {
        codec: Codec::Pcmu,
        payload_type: 0,
        dtmf_payload_type: Some(101),
    };
    const PCMA: LegMedia = LegMedia {
        codec: Codec::Pcma,
        payload_type: 8,
        dtmf_payload_type: Some(101),
    };

    /// The caller's leg as the shell drives it, and the caller's phone 1 ms away.
    struct Leg {
        session: RtpSession,
        phone: PhoneModel,
        sent: u64,
        last_sent_at: Option<Instant>,
    }

    impl Leg {
        fn new(t0: Instant) -> Leg {
            // Random-looking start values, as the shell picks them.
            let config = RtpSessionConfig::g711(0xC0FF_EE00, 61_000, 4_000_000_000, "c".into());
            Leg {
                session: RtpSession::new(config, t0, UNIX_EPOCH, RemoteMedia::default()),
                phone: PhoneModel::g711(),
                sent: 0,
                last_sent_at: None,
            }
        }

        fn deliver(&mut self, now: Instant, datagram: &[u8]) {
            let packet = RtpPacket::parse(datagram).expect("we send valid RTP");
            assert_eq!(packet.ssrc, 0xC0FF_EE00, "one SSRC on the leg");
            self.phone.receive(now + Duration::from_millis(1), &packet);
            self.sent += 1;
            self.last_sent_at = Some(now);
        }

        /// Play `player` to its end (or `until`), frame by frame at its due times.
        fn play(&mut self, player: &mut Player, until: Option<Instant>) -> Instant {
            let mut buf = [0u8; 200];
            let mut payload = [0u8; 160];
            let mut now = player.next_due();
            while let Some(due) = player.poll_timeout() {
                if until.is_some_and(|u| due >= u) {
                    return due;
                }
                now = due;
                while let Some(frame) = player.poll(now) {
                    let n = Codec::Pcmu.encode_into(&frame.samples, &mut payload);
                    let header = self
                        .session
                        .next_header(now, 0, frame.marker, frame.timestamp, n);
                    let len = write_packet(&header, &payload[..n], &mut buf).unwrap();
                    self.deliver(now, &buf[..len]);
                }
            }
            now
        }
    }

    fn prompt(seconds: u32) -> Playlist {
        let samples = (0..8000 * seconds)
            .map(|i| ((i % 40) as i16 - 20) * 500)
            .collect();
        Playlist::once(vec![Segment::Prompt(Prompt::from_pcm(samples))])
    }

    /// An agent's phone sending `count` 20 ms packets from `start` with its own random
    /// numbering; `lost` and `late` (swapped with its successor) by index.
    fn agent_packets(
        start: Instant,
        first: (u16, u32),
        ssrc: u32,
        count: u16,
        lost: &[u16],
        late: &[u16],
    ) -> Vec<(Instant, Vec<u8>)> {
        let mut packets: Vec<(Instant, Vec<u8>)> = (0..count)
            .filter(|k| !lost.contains(k))
            .map(|k| {
                let header = RtpHeader {
                    marker: if k == 0 { Marker::Set } else { Marker::Clear },
                    payload_type: 8,
                    sequence: first.0.wrapping_add(k),
                    timestamp: first.1.wrapping_add(160 * u32::from(k)),
                    ssrc,
                };
                let mut buf = vec![0u8; 172];
                write_packet(&header, &[0xD5; 160], &mut buf).unwrap();
                // 0-15 ms of network jitter.
                let jitter = Duration::from_millis(u64::from(k * 7 % 16));
                (
                    start + Duration::from_millis(20 * u64::from(k)) + jitter,
                    buf,
                )
            })
            .collect();
        for &k in late {
            if let Some(i) = packets
                .iter()
                .position(|(_, p)| RtpPacket::parse(p).unwrap().sequence == first.0.wrapping_add(k))
                && i + 1 < packets.len()
            {
                let later = packets[i + 1].0;
                packets[i].0 = later + Duration::from_millis(1);
                packets.swap(i, i + 1);
            }
        }
        packets
    }

    fn bridge(leg: &mut Leg, relay: &mut RelayDirection, packets: Vec<(Instant, Vec<u8>)>) {
        for (at, mut buf) in packets {
            let len = buf.len();
            match relay.relay(at, &mut buf, len, None, leg.session.outbound()) {
                Ok(Relayed::Audio {
                    len,
                    timestamp,
                    payload_len,
                    ..
                }) => {
                    leg.session.record_sent(at, timestamp, payload_len);
                    leg.deliver(at, &buf[..len]);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_whole_call_reaches_the_callers_phone_without_a_dropped_packet() {
        let t0 = Instant::now();
        let mut leg = Leg::new(t0);
        // Greeting, then the menu 300 ms later (a new playlist: its clock restarts at 0).
        let mut greeting = Player::new(prompt(2), t0, BargeIn::Ignore);
        let end = leg.play(&mut greeting, None);
        let mut menu = Player::new(prompt(3), end + Duration::from_millis(300), BargeIn::Ignore);
        let end = leg.play(&mut menu, None);
        // Hold music, cut off when the agent answers.
        let mut music = Player::new(
            Playlist::looping(vec![Segment::Silence(Duration::from_millis(500))]),
            end + Duration::from_millis(20),
            BargeIn::Ignore,
        );
        let answered = end + Duration::from_millis(2_510);
        leg.play(&mut music, Some(answered));
        // The agent talks for 5 s: its own random numbering, a lost and a late packet.
        let mut relay = RelayDirection::new(PCMA, PCMU);
        let packets = agent_packets(
            answered + Duration::from_millis(5),
            (65_500, 3_000_000_000),
            0xA6E7,
            250,
            &[40],
            &[100],
        );
        bridge(&mut leg, &mut relay, packets);
        // Attended transfer: another agent's phone, which happens to use the same SSRC.
        let transferred = leg.last_sent_at.unwrap() + Duration::from_millis(800);
        let mut relay2 = RelayDirection::new(PCMA, PCMU);
        bridge(
            &mut leg,
            &mut relay2,
            agent_packets(transferred, (7, 123), 0xA6E7, 150, &[], &[]),
        );
        // The agent hangs up: the survey.
        let survey_at = leg.last_sent_at.unwrap() + Duration::from_millis(150);
        let mut survey = Player::new(prompt(2), survey_at, BargeIn::StopOnDtmf);
        leg.play(&mut survey, None);

        let stats = leg.phone.stats();
        assert_eq!(stats.received, leg.sent);
        assert_eq!(stats.dropped(), 0, "{stats:?}");
        assert_eq!(stats.ssrc_changes, 0, "{stats:?}");
        // The late agent packet is still played: it was within the playout delay.
        assert_eq!(stats.played, leg.sent, "{stats:?}");
    }

    #[test]
    fn a_stream_restarting_its_numbers_is_silence_on_the_phone() {
        // What the server did before: a new playlist restarted the timestamp, a bridge
        // began at a random sequence number. The model must see it.
        let t0 = Instant::now();
        let mut phone = PhoneModel::g711();
        let mut buf = [0u8; 200];
        let send = |phone: &mut PhoneModel, buf: &mut [u8], at: Instant, seq: u16, ts: u32| {
            let header = RtpHeader {
                marker: Marker::Clear,
                payload_type: 0,
                sequence: seq,
                timestamp: ts,
                ssrc: 1,
            };
            let len = write_packet(&header, &[0xFF; 160], buf).unwrap();
            phone.receive(at, &RtpPacket::parse(&buf[..len]).unwrap());
        };
        for k in 0..100u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(k));
            send(
                &mut phone,
                &mut buf,
                at,
                1000 + k,
                500_000 + 160 * u32::from(k),
            );
        }
        // Second prompt: sequence goes on, timestamp back at the offset.
        for k in 0..50u16 {
            let at = t0 + Duration::from_millis(2000 + 20 * u64::from(k));
            send(
                &mut phone,
                &mut buf,
                at,
                1100 + k,
                500_000 + 160 * u32::from(k),
            );
        }
        let stats = phone.stats();
        assert!(stats.late_timestamp >= 49, "{stats:?}");
        // Bridge: sequence 30 000 back (older by 16-bit comparison) and kept there.
        let mut phone = PhoneModel::g711();
        for k in 0..100u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(k));
            send(&mut phone, &mut buf, at, 40_000 + k, 160 * u32::from(k));
        }
        for k in 0..100u16 {
            let at = t0 + Duration::from_millis(2000 + 20 * u64::from(k));
            send(
                &mut phone,
                &mut buf,
                at,
                10_000 + k,
                16_000 + 160 * u32::from(k),
            );
        }
        let stats = phone.stats();
        assert!(stats.dropped() >= 99, "{stats:?}");
    }

    #[test]
    fn a_new_source_continues_after_the_time_that_passed_with_the_marker() {
        let t0 = Instant::now();
        let mut out = OutboundStream::new(1, 100, 1_000, 8000);
        let a = out.stamp(t0, Origin::Local, 0, 0, 160, Marker::Clear);
        assert_eq!(
            (a.sequence, a.timestamp, a.marker),
            (100, 1_000, Marker::Set)
        );
        let b = out.stamp(
            t0 + Duration::from_millis(20),
            Origin::Local,
            0,
            160,
            160,
            Marker::Clear,
        );
        assert_eq!(
            (b.sequence, b.timestamp, b.marker),
            (101, 1_160, Marker::Clear)
        );
        // A new playlist 1 s later restarts at 0: 1 s of samples later on our timeline.
        let c = out.stamp(
            t0 + Duration::from_millis(1020),
            Origin::Local,
            0,
            0,
            160,
            Marker::Clear,
        );
        assert_eq!(
            (c.sequence, c.timestamp, c.marker),
            (102, 9_160, Marker::Set)
        );
        // A relayed source right away: at least the last packet's duration later.
        let relayed = Origin::Relayed { relay: 7, ssrc: 9 };
        let d = out.stamp(
            t0 + Duration::from_millis(1021),
            relayed,
            40_000,
            77,
            160,
            Marker::Clear,
        );
        assert_eq!(
            (d.sequence, d.timestamp, d.marker),
            (103, 9_320, Marker::Set)
        );
        // Its gaps stay gaps; a late packet maps behind without moving the newest.
        let e = out.stamp(
            t0 + Duration::from_millis(1061),
            relayed,
            40_002,
            397,
            160,
            Marker::Clear,
        );
        assert_eq!((e.sequence, e.timestamp), (105, 9_640));
        let f = out.stamp(
            t0 + Duration::from_millis(1062),
            relayed,
            40_001,
            237,
            160,
            Marker::Clear,
        );
        assert_eq!(
            (f.sequence, f.timestamp, f.marker),
            (104, 9_480, Marker::Clear)
        );
        assert_eq!(out.last_sent(), Some((105, 9_640)));
        // The same phone leaping within itself is re-anchored like a new source.
        let g = out.stamp(
            t0 + Duration::from_millis(1081),
            relayed,
            12,
            5,
            160,
            Marker::Clear,
        );
        assert_eq!(
            (g.sequence, g.timestamp, g.marker),
            (106, 9_800, Marker::Set)
        );
        // Another bridge with the same SSRC is another source.
        let other = Origin::Relayed { relay: 8, ssrc: 9 };
        let h = out.stamp(
            t0 + Duration::from_millis(1101),
            other,
            13,
            165,
            160,
            Marker::Clear,
        );
        assert_eq!((h.sequence, h.marker), (107, Marker::Set));
    }

    #[test]
    fn the_sender_report_follows_what_was_sent_across_sources() {
        let t0 = Instant::now();
        let mut leg = Leg::new(t0);
        let mut greeting = Player::new(prompt(1), t0, BargeIn::Ignore);
        let end = leg.play(&mut greeting, None);
        let mut relay = RelayDirection::new(PCMA, PCMU);
        bridge(
            &mut leg,
            &mut relay,
            agent_packets(end + Duration::from_millis(500), (9, 9), 5, 50, &[], &[]),
        );
        let (_, last_ts) = leg.session.outbound().last_sent().unwrap();
        let at = leg.last_sent_at.unwrap() + Duration::from_millis(100);
        let mut buf = [0u8; 256];
        let len = leg.session.build_rtcp(at, &mut buf).unwrap();
        let report = RtcpIter::new(&buf[..len])
            .find_map(|p| match p {
                Ok(RtcpPacket::SenderReport {
                    rtp_timestamp,
                    packet_count,
                    ..
                }) => Some((rtp_timestamp, packet_count)),
                _ => None,
            })
            .expect("a sender report");
        assert_eq!(report, (last_ts.wrapping_add(800), leg.sent as u32));
    }
}
