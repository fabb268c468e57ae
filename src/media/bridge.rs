//! Two-leg RTP relay: the per-packet decision, in place, without allocation.
//!
//! One [`RelayDirection`] per direction (caller → agent, agent → caller). For every RTP
//! datagram received on the `from` leg (after `RtpSession::receive_rtp` accepted it), call
//! [`RelayDirection::relay`] on the receive buffer itself:
//! * audio in the `from` codec: the header is rewritten for our outgoing stream (our SSRC,
//!   sequence and timestamp continuing across source changes), CSRCs/extension/padding are
//!   stripped by moving the payload up, and the payload is transcoded in place with a
//!   256-entry table when the legs use different G.711 laws (same law: untouched);
//! * RFC 4733 events: forwarded with the `to` leg's telephone-event payload type;
//! * anything else (comfort noise, unnegotiated types): dropped, with the reason.
//!
//! When recording, pass a PCM buffer: the audio payload is decoded into it (by table) for
//! the recorder; otherwise no decoding happens. Send `buf[..len]` to the other leg's
//! `RtpSession::remote_rtp` and call its `RtpSession::record_sent(now, timestamp, payload_len)`.

use thiserror::Error;

use super::dtmf::TelephoneEvent;
use super::g711::Codec;
use super::rtp::{Marker, RTP_HEADER_LEN, RtpError, RtpHeader, RtpPacket};
use super::sdp::Negotiated;

/// Media parameters of one leg, from SDP negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegMedia {
    pub codec: Codec,
    pub payload_type: u8,
    pub dtmf_payload_type: Option<u8>,
}

impl From<&Negotiated> for LegMedia {
    fn from(negotiated: &Negotiated) -> LegMedia {
        LegMedia {
            codec: negotiated.codec,
            payload_type: negotiated.payload_type,
            dtmf_payload_type: negotiated.dtmf_payload_type,
        }
    }
}

/// The packet could not be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BridgeError {
    #[error("malformed RTP: {0}")]
    Rtp(#[from] RtpError),
}

/// Why a well-formed packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Neither the audio nor the telephone-event payload type of the `from` leg.
    UnexpectedPayloadType(u8),
    /// The `to` leg did not negotiate telephone-event.
    DtmfNotNegotiatedOnOtherLeg,
    /// A telephone-event packet shorter than 4 bytes.
    MalformedDtmf,
}

/// What to do with the buffer after [`RelayDirection::relay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// Send `buf[..len]`. `decoded` samples were written to the PCM buffer (0 if none given).
    Audio {
        len: usize,
        timestamp: u32,
        payload_len: usize,
        decoded: usize,
    },
    /// Send `buf[..len]`; the event is given for logging/IVR use.
    Dtmf {
        len: usize,
        timestamp: u32,
        event: TelephoneEvent,
    },
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    source_ssrc: u32,
    sequence_delta: u16,
    timestamp_delta: u32,
}

/// Relay state for one direction. See the module docs.
#[derive(Debug, Clone)]
pub struct RelayDirection {
    from: LegMedia,
    to: LegMedia,
    table: &'static [u8; 256],
    out_ssrc: u32,
    initial_sequence: u16,
    initial_timestamp: u32,
    mapping: Option<Mapping>,
    last_out: Option<(u16, u32)>,
}

/// Assumed packet duration when a new source continues our stream (20 ms at 8 kHz).
const ASSUMED_FRAME: u32 = 160;

impl RelayDirection {
    /// `out_ssrc` is the `to` leg session's SSRC; the initial sequence and timestamp should be
    /// random (RFC 3550) — use the ones of that session.
    pub fn new(
        from: LegMedia,
        to: LegMedia,
        out_ssrc: u32,
        initial_sequence: u16,
        initial_timestamp: u32,
    ) -> Self {
        RelayDirection {
            from,
            to,
            table: from.codec.transcode_table(to.codec),
            out_ssrc,
            initial_sequence,
            initial_timestamp,
            mapping: None,
            last_out: None,
        }
    }

    /// True if audio is forwarded without touching the payload.
    pub fn is_passthrough(&self) -> bool {
        self.from.codec == self.to.codec
    }

    /// A leg renegotiated (re-INVITE): update its parameters.
    pub fn update_legs(&mut self, from: LegMedia, to: LegMedia) {
        self.from = from;
        self.to = to;
        self.table = from.codec.transcode_table(to.codec);
    }

    /// Relay the datagram in `buf[..len]` in place. `pcm` receives the decoded audio when
    /// recording (decoding stops at the buffer's length).
    ///
    /// # Errors
    /// [`BridgeError::Rtp`] for a malformed datagram (drop it).
    pub fn relay(
        &mut self,
        buf: &mut [u8],
        len: usize,
        pcm: Option<&mut [i16]>,
    ) -> Result<Relayed, BridgeError> {
        let datagram = buf.get(..len).ok_or(RtpError::TooShort(buf.len()))?;
        let packet = RtpPacket::parse(datagram)?;
        let (pt, marker, sequence, timestamp, ssrc) = (
            packet.payload_type,
            packet.marker,
            packet.sequence,
            packet.timestamp,
            packet.ssrc,
        );
        let (payload_offset, payload_len) = (packet.payload_offset, packet.payload.len());
        let is_audio = pt == self.from.payload_type;
        let is_dtmf = self.from.dtmf_payload_type == Some(pt);
        if !is_audio && !is_dtmf {
            return Ok(Relayed::Dropped(DropReason::UnexpectedPayloadType(pt)));
        }
        let out_pt = if is_audio {
            self.to.payload_type
        } else {
            match self.to.dtmf_payload_type {
                Some(out) => out,
                None => return Ok(Relayed::Dropped(DropReason::DtmfNotNegotiatedOnOtherLeg)),
            }
        };
        let event = if is_dtmf {
            match TelephoneEvent::parse(packet.payload) {
                Ok(event) => Some(event),
                Err(_) => return Ok(Relayed::Dropped(DropReason::MalformedDtmf)),
            }
        } else {
            None
        };
        let (out_sequence, out_timestamp, source_changed) = self.map(ssrc, sequence, timestamp);
        // Strip CSRCs, extension and padding: payload moves up behind a plain header.
        buf.copy_within(payload_offset..payload_offset + payload_len, RTP_HEADER_LEN);
        let header = RtpHeader {
            marker: if source_changed { Marker::Set } else { marker },
            payload_type: out_pt,
            sequence: out_sequence,
            timestamp: out_timestamp,
            ssrc: self.out_ssrc,
        };
        header.write(buf)?;
        let out_len = RTP_HEADER_LEN + payload_len;
        if let Some(event) = event {
            return Ok(Relayed::Dtmf {
                len: out_len,
                timestamp: out_timestamp,
                event,
            });
        }
        let payload = buf.get_mut(RTP_HEADER_LEN..out_len).unwrap_or_default();
        let mut decoded = 0;
        if let Some(pcm) = pcm {
            for (sample, code) in pcm.iter_mut().zip(payload.iter()) {
                *sample = self.from.codec.decode(*code);
                decoded += 1;
            }
        }
        if !self.is_passthrough() {
            for code in payload.iter_mut() {
                *code = self.table[usize::from(*code)];
            }
        }
        Ok(Relayed::Audio {
            len: out_len,
            timestamp: out_timestamp,
            payload_len,
            decoded,
        })
    }

    /// Map the source's sequence/timestamp onto our outgoing stream; a new source SSRC
    /// continues right after the last packet we sent.
    fn map(&mut self, ssrc: u32, sequence: u16, timestamp: u32) -> (u16, u32, bool) {
        let (mapping, changed) = match self.mapping {
            Some(m) if m.source_ssrc == ssrc => (m, false),
            previous => {
                let (next_sequence, next_timestamp) = match self.last_out {
                    Some((seq, ts)) => (seq.wrapping_add(1), ts.wrapping_add(ASSUMED_FRAME)),
                    None => (self.initial_sequence, self.initial_timestamp),
                };
                let m = Mapping {
                    source_ssrc: ssrc,
                    sequence_delta: next_sequence.wrapping_sub(sequence),
                    timestamp_delta: next_timestamp.wrapping_sub(timestamp),
                };
                self.mapping = Some(m);
                (m, previous.is_some())
            }
        };
        let out_sequence = sequence.wrapping_add(mapping.sequence_delta);
        let out_timestamp = timestamp.wrapping_add(mapping.timestamp_delta);
        let newer = match self.last_out {
            Some((last, _)) => (out_sequence.wrapping_sub(last) as i16) > 0,
            None => true,
        };
        if newer {
            self.last_out = Some((out_sequence, out_timestamp));
        }
        (out_sequence, out_timestamp, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::{alaw_encode, ulaw_decode, ulaw_encode, ulaw_to_alaw};
    use crate::media::rtp::write_packet;

    const PCMU: LegMedia = LegMedia {
        codec: Codec::Pcmu,
        payload_type: 0,
        dtmf_payload_type: Some(101),
    };
    const PCMA: LegMedia = LegMedia {
        codec: Codec::Pcma,
        payload_type: 8,
        dtmf_payload_type: Some(96),
    };

    fn packet(buf: &mut [u8], pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> usize {
        let header = RtpHeader {
            marker: Marker::Clear,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc,
        };
        write_packet(&header, payload, buf).unwrap()
    }

    #[test]
    fn same_codec_forwards_payload_unchanged_with_our_header() {
        let mut relay = RelayDirection::new(PCMU, PCMU, 0xBBBB, 1000, 50_000);
        assert!(relay.is_passthrough());
        let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
        let mut buf = [0u8; 1500];
        let len = packet(&mut buf, 0, 7, 160 * 7, 0xAAAA, &payload);
        let out = relay.relay(&mut buf, len, None).unwrap();
        assert_eq!(
            out,
            Relayed::Audio {
                len: 172,
                timestamp: 50_000,
                payload_len: 160,
                decoded: 0
            }
        );
        let p = RtpPacket::parse(&buf[..172]).unwrap();
        assert_eq!(
            (p.ssrc, p.sequence, p.timestamp, p.payload_type),
            (0xBBBB, 1000, 50_000, 0)
        );
        assert_eq!(p.payload, &payload[..]);
        // Next packet keeps the offsets (and a gap stays a gap).
        let len = packet(&mut buf, 0, 9, 160 * 9, 0xAAAA, &payload);
        relay.relay(&mut buf, len, None).unwrap();
        let p = RtpPacket::parse(&buf[..172]).unwrap();
        assert_eq!((p.sequence, p.timestamp), (1002, 50_320));
    }

    #[test]
    fn different_codecs_transcode_in_place_and_decode_for_recorder() {
        let mut relay = RelayDirection::new(PCMU, PCMA, 1, 0, 0);
        let samples: Vec<i16> = (0..160)
            .map(|i: i32| ((i * 397) % 60000 - 30000) as i16)
            .collect();
        let payload: Vec<u8> = samples.iter().map(|s| ulaw_encode(*s)).collect();
        let mut buf = [0u8; 1500];
        let len = packet(&mut buf, 0, 1, 0, 9, &payload);
        let mut pcm = [0i16; 160];
        let out = relay.relay(&mut buf, len, Some(&mut pcm)).unwrap();
        assert!(matches!(
            out,
            Relayed::Audio {
                len: 172,
                decoded: 160,
                ..
            }
        ));
        let p = RtpPacket::parse(&buf[..172]).unwrap();
        assert_eq!(p.payload_type, 8);
        for (i, code) in p.payload.iter().enumerate() {
            assert_eq!(*code, ulaw_to_alaw(payload[i]));
            assert_eq!(pcm[i], ulaw_decode(payload[i]));
        }
        // Silence stays (near) silence.
        let len = packet(&mut buf, 0, 2, 160, 9, &[0xFF; 160]);
        relay.relay(&mut buf, len, None).unwrap();
        assert!(buf[12..172].iter().all(|c| *c == alaw_encode(0)));
    }

    #[test]
    fn dtmf_is_remapped_to_other_legs_payload_type() {
        let mut relay = RelayDirection::new(PCMU, PCMA, 1, 0, 0);
        let mut buf = [0u8; 100];
        let len = packet(&mut buf, 101, 1, 0, 9, &[5, 0x8A, 0x03, 0x20]);
        match relay.relay(&mut buf, len, None).unwrap() {
            Relayed::Dtmf { len, event, .. } => {
                assert_eq!(event.event, 5);
                let p = RtpPacket::parse(&buf[..len]).unwrap();
                assert_eq!(p.payload_type, 96);
                assert_eq!(p.payload, &[5, 0x8A, 0x03, 0x20], "event payload untouched");
            }
            other => panic!("{other:?}"),
        }
        let mut no_dtmf = RelayDirection::new(
            PCMU,
            LegMedia {
                dtmf_payload_type: None,
                ..PCMA
            },
            1,
            0,
            0,
        );
        let len = packet(&mut buf, 101, 1, 0, 9, &[5, 0x8A, 0x03, 0x20]);
        assert_eq!(
            no_dtmf.relay(&mut buf, len, None).unwrap(),
            Relayed::Dropped(DropReason::DtmfNotNegotiatedOnOtherLeg)
        );
        let len = packet(&mut buf, 13, 1, 0, 9, &[0x40]);
        assert_eq!(
            relay.relay(&mut buf, len, None).unwrap(),
            Relayed::Dropped(DropReason::UnexpectedPayloadType(13))
        );
        let len = packet(&mut buf, 101, 1, 0, 9, &[5, 0x8A]);
        assert_eq!(
            relay.relay(&mut buf, len, None).unwrap(),
            Relayed::Dropped(DropReason::MalformedDtmf)
        );
    }

    #[test]
    fn csrc_extension_and_padding_are_stripped() {
        let mut relay = RelayDirection::new(PCMU, PCMU, 1, 0, 0);
        let mut buf = [0u8; 100];
        let raw = [
            0xB1, 0x00, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, // V=2 P X CC=1
            0, 0, 0, 7, // CSRC
            0xBE, 0xDE, 0, 1, 1, 2, 3, 4, // extension
            0x11, 0x22, 0x33, 0, 2, // payload + 2 padding
        ];
        buf[..raw.len()].copy_from_slice(&raw);
        let out = relay.relay(&mut buf, raw.len(), None).unwrap();
        assert!(matches!(
            out,
            Relayed::Audio {
                len: 15,
                payload_len: 3,
                ..
            }
        ));
        let p = RtpPacket::parse(&buf[..15]).unwrap();
        assert_eq!((p.csrc.len(), p.extension, p.padding), (0, None, 0));
        assert_eq!(p.payload, &[0x11, 0x22, 0x33]);
    }

    #[test]
    fn new_source_ssrc_continues_our_stream_with_marker() {
        let mut relay = RelayDirection::new(PCMU, PCMU, 1, 100, 1000);
        let mut buf = [0u8; 200];
        for seq in 0..3u16 {
            let len = packet(
                &mut buf,
                0,
                5000 + seq,
                77_000 + 160 * u32::from(seq),
                0xA,
                &[0xFF; 160],
            );
            relay.relay(&mut buf, len, None).unwrap();
        }
        let len = packet(&mut buf, 0, 42, 9_999, 0xB, &[0xFF; 160]);
        relay.relay(&mut buf, len, None).unwrap();
        let p = RtpPacket::parse(&buf[..172]).unwrap();
        assert_eq!(
            (p.sequence, p.timestamp, p.marker),
            (103, 1480, Marker::Set)
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let mut relay = RelayDirection::new(PCMU, PCMA, 1, 0, 0);
        let mut buf = [0x80u8; 20];
        assert_eq!(
            relay.relay(&mut buf, 5, None),
            Err(BridgeError::Rtp(RtpError::TooShort(5)))
        );
        assert!(
            relay.relay(&mut buf, 50, None).is_err(),
            "len beyond the buffer"
        );
    }

    #[test]
    fn relay_reuses_one_buffer_for_a_whole_call() {
        // The relay only ever touches the caller's buffer: a minute of packets through one
        // fixed array, in both directions, with recording.
        let mut a_to_b = RelayDirection::new(PCMU, PCMA, 1, 0, 0);
        let mut b_to_a = RelayDirection::new(PCMA, PCMU, 2, 0, 0);
        let mut buf = [0u8; 1500];
        let mut pcm = [0i16; 160];
        for seq in 0..3000u16 {
            let len = packet(&mut buf, 0, seq, u32::from(seq) * 160, 7, &[0x55; 160]);
            assert!(matches!(
                a_to_b.relay(&mut buf, len, Some(&mut pcm)).unwrap(),
                Relayed::Audio { len: 172, .. }
            ));
            let len = packet(&mut buf, 8, seq, u32::from(seq) * 160, 8, &[0xD5; 160]);
            assert!(matches!(
                b_to_a.relay(&mut buf, len, None).unwrap(),
                Relayed::Audio { len: 172, .. }
            ));
        }
    }
}
