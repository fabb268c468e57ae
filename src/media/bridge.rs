//! Two-leg RTP relay: the per-packet decision, in place, without allocation.
//!
//! One [`RelayDirection`] per direction (caller → agent, agent → caller). For every RTP
//! datagram received on the `from` leg (after `RtpSession::receive_rtp` accepted it), call
//! [`RelayDirection::relay`] on the receive buffer itself:
//! * audio in the `from` codec: the header is rewritten for the `to` leg's outgoing stream
//!   ([`OutboundStream`]: its SSRC, sequence and timestamp continuing whatever played on
//!   that leg before), CSRCs/extension/padding are
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
use super::rtp::{RTP_HEADER_LEN, RtpError, RtpHeader, RtpPacket};
use super::sdp::Negotiated;
use super::stream::{Origin, OutboundStream};

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

/// Relay state for one direction. See the module docs.
#[derive(Debug, Clone)]
pub struct RelayDirection {
    from: LegMedia,
    to: LegMedia,
    table: &'static [u8; 256],
    /// Tells this bridge's packets apart from another's on the `to` leg's stream.
    id: u32,
}

/// Duration of an RFC 4733 packet on the outgoing stream's timeline (one 20 ms frame).
const EVENT_FRAME: u32 = 160;

impl RelayDirection {
    pub fn new(from: LegMedia, to: LegMedia) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        RelayDirection {
            from,
            to,
            table: from.codec.transcode_table(to.codec),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
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

    /// Relay the datagram in `buf[..len]`, received at `now`, in place onto the `to` leg's
    /// stream `out`. `pcm` receives the decoded audio when recording (decoding stops at
    /// the buffer's length).
    ///
    /// # Errors
    /// [`BridgeError::Rtp`] for a malformed datagram (drop it).
    pub fn relay(
        &mut self,
        now: std::time::Instant,
        buf: &mut [u8],
        len: usize,
        pcm: Option<&mut [i16]>,
        out: &mut OutboundStream,
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
        let duration = if is_audio {
            payload_len as u32
        } else {
            EVENT_FRAME
        };
        let origin = Origin::Relayed {
            relay: self.id,
            ssrc,
        };
        let stamp = out.stamp(now, origin, sequence, timestamp, duration, marker);
        let out_timestamp = stamp.timestamp;
        // Strip CSRCs, extension and padding: payload moves up behind a plain header.
        buf.copy_within(payload_offset..payload_offset + payload_len, RTP_HEADER_LEN);
        let header = RtpHeader {
            marker: stamp.marker,
            payload_type: out_pt,
            sequence: stamp.sequence,
            timestamp: out_timestamp,
            ssrc: out.ssrc(),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::{alaw_encode, ulaw_decode, ulaw_encode, ulaw_to_alaw};
    use crate::media::rtp::{Marker, write_packet};

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

    fn at() -> std::time::Instant {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        *START.get_or_init(std::time::Instant::now)
    }

    fn stream(ssrc: u32) -> OutboundStream {
        OutboundStream::new(ssrc, 0, 0, 8000)
    }

    #[test]
    fn same_codec_forwards_payload_unchanged_with_our_header() {
        let mut relay = RelayDirection::new(PCMU, PCMU);
        assert!(relay.is_passthrough());
        let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
        let mut buf = [0u8; 1500];
        let len = packet(&mut buf, 0, 7, 160 * 7, 0xAAAA, &payload);
        let mut out = OutboundStream::new(0xBBBB, 1000, 50_000, 8000);
        let relayed = relay.relay(at(), &mut buf, len, None, &mut out).unwrap();
        assert_eq!(
            relayed,
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
        relay.relay(at(), &mut buf, len, None, &mut out).unwrap();
        let p = RtpPacket::parse(&buf[..172]).unwrap();
        assert_eq!((p.sequence, p.timestamp), (1002, 50_320));
    }

    #[test]
    fn different_codecs_transcode_in_place_and_decode_for_recorder() {
        let mut relay = RelayDirection::new(PCMU, PCMA);
        let samples: Vec<i16> = (0..160)
            .map(|i: i32| ((i * 397) % 60000 - 30000) as i16)
            .collect();
        let payload: Vec<u8> = samples.iter().map(|s| ulaw_encode(*s)).collect();
        let mut buf = [0u8; 1500];
        let len = packet(&mut buf, 0, 1, 0, 9, &payload);
        let mut pcm = [0i16; 160];
        let mut out = stream(1);
        let relayed = relay
            .relay(at(), &mut buf, len, Some(&mut pcm), &mut out)
            .unwrap();
        assert!(matches!(
            relayed,
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
        relay.relay(at(), &mut buf, len, None, &mut out).unwrap();
        assert!(buf[12..172].iter().all(|c| *c == alaw_encode(0)));
    }

    #[test]
    fn dtmf_is_remapped_to_other_legs_payload_type() {
        let mut relay = RelayDirection::new(PCMU, PCMA);
        let mut out = stream(1);
        let mut buf = [0u8; 100];
        let len = packet(&mut buf, 101, 1, 0, 9, &[5, 0x8A, 0x03, 0x20]);
        match relay.relay(at(), &mut buf, len, None, &mut out).unwrap() {
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
        );
        let len = packet(&mut buf, 101, 1, 0, 9, &[5, 0x8A, 0x03, 0x20]);
        assert_eq!(
            no_dtmf.relay(at(), &mut buf, len, None, &mut out).unwrap(),
            Relayed::Dropped(DropReason::DtmfNotNegotiatedOnOtherLeg)
        );
        let len = packet(&mut buf, 13, 1, 0, 9, &[0x40]);
        assert_eq!(
            relay.relay(at(), &mut buf, len, None, &mut out).unwrap(),
            Relayed::Dropped(DropReason::UnexpectedPayloadType(13))
        );
        let len = packet(&mut buf, 101, 1, 0, 9, &[5, 0x8A]);
        assert_eq!(
            relay.relay(at(), &mut buf, len, None, &mut out).unwrap(),
            Relayed::Dropped(DropReason::MalformedDtmf)
        );
    }

    #[test]
    fn csrc_extension_and_padding_are_stripped() {
        let mut relay = RelayDirection::new(PCMU, PCMU);
        let mut buf = [0u8; 100];
        let raw = [
            0xB1, 0x00, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, // V=2 P X CC=1
            0, 0, 0, 7, // CSRC
            0xBE, 0xDE, 0, 1, 1, 2, 3, 4, // extension
            0x11, 0x22, 0x33, 0, 2, // payload + 2 padding
        ];
        buf[..raw.len()].copy_from_slice(&raw);
        let mut out = stream(1);
        let relayed = relay
            .relay(at(), &mut buf, raw.len(), None, &mut out)
            .unwrap();
        assert!(matches!(
            relayed,
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
        let mut relay = RelayDirection::new(PCMU, PCMU);
        let mut out = OutboundStream::new(1, 100, 1000, 8000);
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
            relay.relay(at(), &mut buf, len, None, &mut out).unwrap();
        }
        let len = packet(&mut buf, 0, 42, 9_999, 0xB, &[0xFF; 160]);
        relay.relay(at(), &mut buf, len, None, &mut out).unwrap();
        let p = RtpPacket::parse(&buf[..172]).unwrap();
        assert_eq!(
            (p.sequence, p.timestamp, p.marker),
            (103, 1480, Marker::Set)
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let mut relay = RelayDirection::new(PCMU, PCMA);
        let mut out = stream(1);
        let mut buf = [0x80u8; 20];
        assert_eq!(
            relay.relay(at(), &mut buf, 5, None, &mut out),
            Err(BridgeError::Rtp(RtpError::TooShort(5)))
        );
        assert!(
            relay.relay(at(), &mut buf, 50, None, &mut out).is_err(),
            "len beyond the buffer"
        );
    }

    #[test]
    fn relay_reuses_one_buffer_for_a_whole_call() {
        // The relay only ever touches the caller's buffer: a minute of packets through one
        // fixed array, in both directions, with recording.
        let mut a_to_b = RelayDirection::new(PCMU, PCMA);
        let mut b_to_a = RelayDirection::new(PCMA, PCMU);
        let (mut to_b, mut to_a) = (stream(1), stream(2));
        let mut buf = [0u8; 1500];
        let mut pcm = [0i16; 160];
        for seq in 0..3000u16 {
            let len = packet(&mut buf, 0, seq, u32::from(seq) * 160, 7, &[0x55; 160]);
            assert!(matches!(
                a_to_b
                    .relay(at(), &mut buf, len, Some(&mut pcm), &mut to_b)
                    .unwrap(),
                Relayed::Audio { len: 172, .. }
            ));
            let len = packet(&mut buf, 8, seq, u32::from(seq) * 160, 8, &[0xD5; 160]);
            assert!(matches!(
                b_to_a.relay(at(), &mut buf, len, None, &mut to_a).unwrap(),
                Relayed::Audio { len: 172, .. }
            ));
        }
    }
}
