//! RTP and RTCP (RFC 3550): packet views, builders, and a sans-IO per-leg session.
//!
//! # Packets
//! [`RtpPacket::parse`] borrows a received datagram and checks every length (version 2,
//! CSRC list, header extension, padding) before exposing the payload slice; it never
//! allocates. [`RtpHeader::write`] / [`write_packet`] build into a caller-provided buffer.
//! [`RtcpIter`] walks a compound RTCP datagram and recognises SR, RR, SDES and BYE;
//! [`build_sender_report`] and [`build_receiver_report`] write a minimal compound packet
//! (SR or RR, then SDES with our CNAME).
//!
//! # Session calling contract
//! One [`RtpSession`] per call leg. The shell owns the sockets and the clock:
//! 1. On every received RTP datagram: parse it, then [`RtpSession::receive_rtp`] with the
//!    source address. Only [`ReceiveOutcome::Accepted`] packets are used; others are dropped
//!    (and counted). On RTCP: [`RtpSession::receive_rtcp`].
//! 2. To send media: [`RtpSession::next_header`] gives the header (our SSRC, next sequence,
//!    timestamp) and records the packet for sender reports; send to
//!    [`RtpSession::remote_rtp`] (the latched address once media arrived, else the SDP one).
//!    A relay that writes its own headers calls [`RtpSession::record_sent`] instead.
//! 3. Keep a timer at [`RtpSession::poll_timeout`]; when it fires (or after any input) call
//!    [`RtpSession::handle_timeout`] and drain [`RtpSession::poll_event`]:
//!    [`SessionEvent::RtcpDue`] → [`RtpSession::build_rtcp`] and send it to
//!    [`RtpSession::remote_rtcp`]; [`SessionEvent::MediaTimeout`] → end the call with that
//!    cause in the CDR.
//! 4. When a re-INVITE changes the remote SDP address: [`RtpSession::set_remote`], which is
//!    the only way to re-latch.
//!
//! # Latching (RFC 3550 §8.2 warns that a source is anyone who can send a packet)
//! Media is accepted only from the SDP's IP address, or from the IP the leg's signalling
//! came from ([`RtpSession::trust_signalling_ip`]: a phone behind NAT sends from its
//! public address, not the private one in its SDP). A packet from the SDP address itself
//! latches at once; from another port of an accepted IP (symmetric RTP through NAT) only
//! after [`LATCH_AFTER`] consecutive packets of one stream. Anyone else is dropped and
//! counted, before and after latching: spraying our ports takes no call's audio.
//! 5. While the remote holds the call (it sends `sendonly`/`inactive`/`c=0.0.0.0`), no RTP
//!    is expected: [`RtpSession::set_media_timeout`] with `None` (or a longer value), and
//!    restore it when the call is resumed.
//!
//! Receive statistics follow RFC 3550 A.1 (extended sequence numbers with wrap-around),
//! A.3 (expected/lost/fraction) and A.8 (interarrival jitter).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use super::stream::{Origin, OutboundStream};

/// Size of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;

/// Why an RTP datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("datagram shorter than the fixed RTP header ({0} bytes)")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("CSRC list runs past the end of the datagram")]
    TruncatedCsrc,
    #[error("header extension runs past the end of the datagram")]
    TruncatedExtension,
    #[error("padding length {padding} invalid for a {available}-byte body")]
    BadPadding { padding: u8, available: usize },
    #[error("payload type {0} does not fit in 7 bits")]
    BadPayloadType(u8),
    #[error("output buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall { needed: usize, available: usize },
}

/// The RTP marker bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Marker {
    #[default]
    Clear,
    /// Start of a talkspurt (audio) or of a DTMF event.
    Set,
}

impl Marker {
    fn from_bit(bit: bool) -> Marker {
        if bit { Marker::Set } else { Marker::Clear }
    }
    pub fn is_set(self) -> bool {
        self == Marker::Set
    }
}

/// The fields of an RTP header that we send (no CSRCs, no extension, no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: Marker,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl RtpHeader {
    /// Write the 12-byte header at the start of `buf`; returns 12.
    ///
    /// # Errors
    /// [`RtpError::BufferTooSmall`] or [`RtpError::BadPayloadType`].
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtpError> {
        if self.payload_type > 127 {
            return Err(RtpError::BadPayloadType(self.payload_type));
        }
        let available = buf.len();
        let header = buf
            .get_mut(..RTP_HEADER_LEN)
            .ok_or(RtpError::BufferTooSmall {
                needed: RTP_HEADER_LEN,
                available,
            })?;
        header[0] = 0x80;
        header[1] = (u8::from(self.marker.is_set()) << 7) | self.payload_type;
        header[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        header[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(RTP_HEADER_LEN)
    }
}

/// Write header + payload into `buf`; returns the packet length.
///
/// # Errors
/// [`RtpError::BufferTooSmall`] or [`RtpError::BadPayloadType`].
pub fn write_packet(header: &RtpHeader, payload: &[u8], buf: &mut [u8]) -> Result<usize, RtpError> {
    let needed = RTP_HEADER_LEN + payload.len();
    let available = buf.len();
    let out = buf
        .get_mut(..needed)
        .ok_or(RtpError::BufferTooSmall { needed, available })?;
    header.write(out)?;
    out[RTP_HEADER_LEN..].copy_from_slice(payload);
    Ok(needed)
}

/// A header extension (RFC 3550 5.3.1): profile-defined id and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// A parsed view of an RTP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: Marker,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// CSRC identifiers, 4 bytes each, big-endian.
    pub csrc: &'a [u8],
    pub extension: Option<RtpExtension<'a>>,
    /// Offset of the payload within the datagram.
    pub payload_offset: usize,
    /// The payload with padding removed.
    pub payload: &'a [u8],
    /// Number of padding bytes at the end (0 when the P bit is clear).
    pub padding: u8,
}

impl<'a> RtpPacket<'a> {
    /// Parse and bounds-check a datagram.
    ///
    /// # Errors
    /// See [`RtpError`]; nothing in `buf` can make this panic.
    pub fn parse(buf: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        let fixed: &[u8; RTP_HEADER_LEN] = buf
            .get(..RTP_HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(RtpError::TooShort(buf.len()))?;
        let version = fixed[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = fixed[0] & 0x20 != 0;
        let has_extension = fixed[0] & 0x10 != 0;
        let csrc_count = usize::from(fixed[0] & 0x0F);
        let mut offset = RTP_HEADER_LEN;
        let csrc = buf
            .get(offset..offset + 4 * csrc_count)
            .ok_or(RtpError::TruncatedCsrc)?;
        offset += 4 * csrc_count;
        let extension = if has_extension {
            let ext_header = buf
                .get(offset..offset + 4)
                .ok_or(RtpError::TruncatedExtension)?;
            let profile = u16::from_be_bytes([ext_header[0], ext_header[1]]);
            let words = usize::from(u16::from_be_bytes([ext_header[2], ext_header[3]]));
            offset += 4;
            let data = buf
                .get(offset..offset + 4 * words)
                .ok_or(RtpError::TruncatedExtension)?;
            offset += 4 * words;
            Some(RtpExtension { profile, data })
        } else {
            None
        };
        let body = buf.get(offset..).unwrap_or_default();
        let padding = if has_padding {
            let count = body.last().copied().unwrap_or(0);
            if count == 0 || usize::from(count) > body.len() {
                return Err(RtpError::BadPadding {
                    padding: count,
                    available: body.len(),
                });
            }
            count
        } else {
            0
        };
        let payload = body
            .get(..body.len() - usize::from(padding))
            .unwrap_or_default();
        Ok(RtpPacket {
            marker: Marker::from_bit(fixed[1] & 0x80 != 0),
            payload_type: fixed[1] & 0x7F,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            csrc,
            extension,
            payload_offset: offset,
            payload,
            padding,
        })
    }

    /// Iterate over the CSRC identifiers.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

// ---------------------------------------------------------------------------------------
// RTCP

/// RTCP packet types we recognise.
pub const RTCP_SR: u8 = 200;
pub const RTCP_RR: u8 = 201;
pub const RTCP_SDES: u8 = 202;
pub const RTCP_BYE: u8 = 203;
const SDES_CNAME: u8 = 1;

/// Why an RTCP datagram (or one packet inside it) was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    #[error("RTCP packet header truncated")]
    TooShort,
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    #[error("RTCP length field runs past the end of the datagram")]
    BadLength,
    #[error("{0} report blocks do not fit in the packet")]
    TruncatedReports(u8),
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("CNAME longer than 255 bytes")]
    CnameTooLong,
}

/// One reception report block (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    pub extended_highest_sequence: u32,
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp.
    pub last_sr: u32,
    /// Delay since last SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

const REPORT_BLOCK_LEN: usize = 24;

impl ReportBlock {
    fn parse(b: &[u8]) -> Option<ReportBlock> {
        let word = |i: usize| -> Option<u32> {
            b.get(i..i + 4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        };
        let lost_word = word(4)?;
        let raw = lost_word & 0x00FF_FFFF;
        // Sign-extend the 24-bit field.
        let cumulative_lost = ((raw << 8) as i32) >> 8;
        Some(ReportBlock {
            ssrc: word(0)?,
            fraction_lost: (lost_word >> 24) as u8,
            cumulative_lost,
            extended_highest_sequence: word(8)?,
            jitter: word(12)?,
            last_sr: word(16)?,
            delay_since_last_sr: word(20)?,
        })
    }

    fn write(&self, out: &mut [u8]) {
        let clamped = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF);
        let lost_word = (u32::from(self.fraction_lost) << 24) | (clamped as u32 & 0x00FF_FFFF);
        for (i, value) in [
            self.ssrc,
            lost_word,
            self.extended_highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(dst) = out.get_mut(4 * i..4 * i + 4) {
                dst.copy_from_slice(&value.to_be_bytes());
            }
        }
    }
}

/// Report blocks inside an SR or RR, parsed lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a>(&'a [u8]);

impl<'a> ReportBlocks<'a> {
    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.0
            .chunks_exact(REPORT_BLOCK_LEN)
            .filter_map(ReportBlock::parse)
    }
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport {
        ssrc: u32,
        ntp_timestamp: u64,
        rtp_timestamp: u32,
        packet_count: u32,
        octet_count: u32,
        reports: ReportBlocks<'a>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: ReportBlocks<'a>,
    },
    /// Source description; `cname` is the first CNAME item found, if any.
    SourceDescription {
        chunk_count: u8,
        cname: Option<&'a [u8]>,
    },
    Bye {
        source_count: u8,
    },
    /// APP, feedback or anything else: recognised as a packet, not interpreted.
    Other {
        packet_type: u8,
    },
}

/// Iterator over the packets of a compound RTCP datagram. Stops after the first error.
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> RtcpIter<'a> {
    pub fn new(datagram: &'a [u8]) -> RtcpIter<'a> {
        RtcpIter {
            rest: datagram,
            failed: false,
        }
    }
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let result = parse_one_rtcp(self.rest);
        match result {
            Ok((packet, consumed)) => {
                self.rest = self.rest.get(consumed..).unwrap_or_default();
                Some(Ok(packet))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

fn parse_one_rtcp(buf: &[u8]) -> Result<(RtcpPacket<'_>, usize), RtcpError> {
    let header = buf.get(..4).ok_or(RtcpError::TooShort)?;
    let version = header[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let has_padding = header[0] & 0x20 != 0;
    let count = header[0] & 0x1F;
    let packet_type = header[1];
    let total = (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1) * 4;
    let packet = buf.get(..total).ok_or(RtcpError::BadLength)?;
    let mut body_end = total;
    if has_padding {
        let padding = usize::from(packet.last().copied().unwrap_or(0));
        if padding == 0 || padding > total - 4 {
            return Err(RtcpError::BadLength);
        }
        body_end -= padding;
    }
    let body = packet.get(4..body_end).ok_or(RtcpError::BadLength)?;
    let reports_len = usize::from(count) * REPORT_BLOCK_LEN;
    let parsed = match packet_type {
        RTCP_SR => {
            let ssrc = be32(body, 0).ok_or(RtcpError::TooShort)?;
            let ntp_high = be32(body, 4).ok_or(RtcpError::TooShort)?;
            let ntp_low = be32(body, 8).ok_or(RtcpError::TooShort)?;
            let rtp_timestamp = be32(body, 12).ok_or(RtcpError::TooShort)?;
            let packet_count = be32(body, 16).ok_or(RtcpError::TooShort)?;
            let octet_count = be32(body, 20).ok_or(RtcpError::TooShort)?;
            let reports = body
                .get(24..24 + reports_len)
                .ok_or(RtcpError::TruncatedReports(count))?;
            RtcpPacket::SenderReport {
                ssrc,
                ntp_timestamp: (u64::from(ntp_high) << 32) | u64::from(ntp_low),
                rtp_timestamp,
                packet_count,
                octet_count,
                reports: ReportBlocks(reports),
            }
        }
        RTCP_RR => {
            let ssrc = be32(body, 0).ok_or(RtcpError::TooShort)?;
            let reports = body
                .get(4..4 + reports_len)
                .ok_or(RtcpError::TruncatedReports(count))?;
            RtcpPacket::ReceiverReport {
                ssrc,
                reports: ReportBlocks(reports),
            }
        }
        RTCP_SDES => RtcpPacket::SourceDescription {
            chunk_count: count,
            cname: first_cname(body),
        },
        RTCP_BYE => RtcpPacket::Bye {
            source_count: count,
        },
        other => RtcpPacket::Other { packet_type: other },
    };
    Ok((parsed, total))
}

/// The first CNAME item of the first SDES chunk.
fn first_cname(body: &[u8]) -> Option<&[u8]> {
    let mut at = 4; // skip the chunk's SSRC
    loop {
        let item_type = *body.get(at)?;
        if item_type == 0 {
            return None;
        }
        let len = usize::from(*body.get(at + 1)?);
        let value = body.get(at + 2..at + 2 + len)?;
        if item_type == SDES_CNAME {
            return Some(value);
        }
        at += 2 + len;
    }
}

/// Sender information for an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    pub ntp_timestamp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

fn write_sdes_cname(ssrc: u32, cname: &str, out: &mut [u8]) -> Result<usize, RtcpError> {
    let cname = cname.as_bytes();
    let cname_len = u8::try_from(cname.len()).map_err(|_| RtcpError::CnameTooLong)?;
    // header(4) + ssrc(4) + type(1) + len(1) + text + end(1), padded to 4.
    let unpadded = 4 + 4 + 2 + cname.len() + 1;
    let total = unpadded.div_ceil(4) * 4;
    let dst = out.get_mut(..total).ok_or(RtcpError::BufferTooSmall)?;
    dst.fill(0);
    dst[0] = 0x81;
    dst[1] = RTCP_SDES;
    let words = u16::try_from(total / 4 - 1).map_err(|_| RtcpError::BufferTooSmall)?;
    dst[2..4].copy_from_slice(&words.to_be_bytes());
    dst[4..8].copy_from_slice(&ssrc.to_be_bytes());
    dst[8] = SDES_CNAME;
    dst[9] = cname_len;
    dst[10..10 + cname.len()].copy_from_slice(cname);
    Ok(total)
}

/// Write a compound SR (with at most one report block) + SDES CNAME; returns its length.
///
/// # Errors
/// [`RtcpError::BufferTooSmall`] or [`RtcpError::CnameTooLong`].
pub fn build_sender_report(
    info: &SenderInfo,
    report: Option<&ReportBlock>,
    cname: &str,
    buf: &mut [u8],
) -> Result<usize, RtcpError> {
    let count = usize::from(report.is_some());
    let sr_len = 28 + count * REPORT_BLOCK_LEN;
    let sr = buf.get_mut(..sr_len).ok_or(RtcpError::BufferTooSmall)?;
    sr[0] = 0x80 | count as u8;
    sr[1] = RTCP_SR;
    sr[2..4].copy_from_slice(&((sr_len / 4 - 1) as u16).to_be_bytes());
    sr[4..8].copy_from_slice(&info.ssrc.to_be_bytes());
    sr[8..16].copy_from_slice(&info.ntp_timestamp.to_be_bytes());
    sr[16..20].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
    sr[20..24].copy_from_slice(&info.packet_count.to_be_bytes());
    sr[24..28].copy_from_slice(&info.octet_count.to_be_bytes());
    if let Some(block) = report {
        block.write(&mut sr[28..]);
    }
    let rest = buf.get_mut(sr_len..).ok_or(RtcpError::BufferTooSmall)?;
    Ok(sr_len + write_sdes_cname(info.ssrc, cname, rest)?)
}

/// Write a compound RR (with at most one report block) + SDES CNAME; returns its length.
///
/// # Errors
/// [`RtcpError::BufferTooSmall`] or [`RtcpError::CnameTooLong`].
pub fn build_receiver_report(
    ssrc: u32,
    report: Option<&ReportBlock>,
    cname: &str,
    buf: &mut [u8],
) -> Result<usize, RtcpError> {
    let count = usize::from(report.is_some());
    let rr_len = 8 + count * REPORT_BLOCK_LEN;
    let rr = buf.get_mut(..rr_len).ok_or(RtcpError::BufferTooSmall)?;
    rr[0] = 0x80 | count as u8;
    rr[1] = RTCP_RR;
    rr[2..4].copy_from_slice(&((rr_len / 4 - 1) as u16).to_be_bytes());
    rr[4..8].copy_from_slice(&ssrc.to_be_bytes());
    if let Some(block) = report {
        block.write(&mut rr[8..]);
    }
    let rest = buf.get_mut(rr_len..).ok_or(RtcpError::BufferTooSmall)?;
    Ok(rr_len + write_sdes_cname(ssrc, cname, rest)?)
}

// ---------------------------------------------------------------------------------------
// Session

/// Seconds between 1900-01-01 (NTP epoch) and 1970-01-01.
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

fn ntp_from_system_time(time: SystemTime) -> u64 {
    let since_unix = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_unix.as_secs() + NTP_UNIX_OFFSET_SECS;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Settings of one leg's RTP session.
#[derive(Debug, Clone)]
pub struct RtpSessionConfig {
    /// Our SSRC (random per leg, chosen by the shell).
    pub ssrc: u32,
    /// First sequence number we send (random per RFC 3550).
    pub initial_sequence: u16,
    /// Offset added to media timestamps (random per RFC 3550).
    pub timestamp_offset: u32,
    /// RTP clock rate: 8000 for G.711.
    pub clock_rate: u32,
    /// No RTP received for this long (from session start or last packet) → `MediaTimeout`.
    /// `None` disables the check (e.g. while the remote holds the call).
    pub media_timeout: Option<Duration>,
    /// Interval between our RTCP reports.
    pub rtcp_interval: Duration,
    /// Our RTCP CNAME.
    pub cname: String,
}

impl RtpSessionConfig {
    /// G.711 defaults: 8 kHz clock, 30 s media timeout, 5 s RTCP interval.
    pub fn g711(ssrc: u32, initial_sequence: u16, timestamp_offset: u32, cname: String) -> Self {
        RtpSessionConfig {
            ssrc,
            initial_sequence,
            timestamp_offset,
            clock_rate: 8000,
            media_timeout: Some(Duration::from_secs(30)),
            rtcp_interval: Duration::from_secs(5),
            cname,
        }
    }
}

/// The remote addresses from SDP (`None`: 0.0.0.0 hold or not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteMedia {
    pub rtp: Option<SocketAddr>,
    pub rtcp: Option<SocketAddr>,
}

/// What the session decided about a received RTP (or RTCP) packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveOutcome {
    /// Use the packet. `latched` is true for the packet that latched the source address.
    Accepted { latched: bool },
    /// Came from another address than the latched one: drop.
    ForeignSource,
}

/// Events for the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// Time to send an RTCP report: call [`RtpSession::build_rtcp`].
    RtcpDue,
    /// No RTP for the configured time; the call should end with this cause.
    MediaTimeout { silent_for: Duration },
}

/// Receive statistics of the remote source (RFC 3550 A.1/A.3/A.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceiveStats {
    pub remote_ssrc: u32,
    pub received: u64,
    pub expected: u64,
    pub lost: i64,
    pub extended_highest_sequence: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Packets dropped because they came from a non-latched address.
    pub foreign_dropped: u64,
}

#[derive(Debug, Clone, Default)]
struct SourceState {
    ssrc: u32,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    bad_seq: Option<u32>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    last_transit: Option<u32>,
    /// Jitter scaled by 16 (A.8).
    jitter_scaled: u32,
}

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u32 = 1 << 16;

impl SourceState {
    fn start(ssrc: u32, seq: u16) -> SourceState {
        SourceState {
            ssrc,
            base_seq: u32::from(seq),
            max_seq: seq,
            ..SourceState::default()
        }
    }

    /// RFC 3550 A.1 update_seq without probation (latching already guards the source).
    fn update_sequence(&mut self, seq: u16) -> bool {
        let delta = seq.wrapping_sub(self.max_seq);
        if delta < MAX_DROPOUT {
            if seq < self.max_seq {
                // Modulo 2^32 like the extended sequence number itself: a peer can wrap
                // the 16-bit sequence 65536 times in a few seconds.
                self.cycles = self.cycles.wrapping_add(SEQ_MOD);
            }
            self.max_seq = seq;
        } else if delta <= u16::MAX - MAX_MISORDER {
            // A very large jump: restart if two sequential packets confirm it.
            if self.bad_seq == Some(u32::from(seq)) {
                let ssrc = self.ssrc;
                *self = SourceState::start(ssrc, seq);
            } else {
                self.bad_seq = Some((u32::from(seq) + 1) & (SEQ_MOD - 1));
                return false;
            }
        }
        // else: duplicate or reordered packet, counted but max_seq unchanged.
        self.received += 1;
        true
    }

    fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u64 {
        u64::from(self.extended_max()) + 1
            - u64::from(self.base_seq).min(u64::from(self.extended_max()) + 1)
    }
}

/// Consecutive packets of one stream from a new port of an accepted IP before it latches.
pub const LATCH_AFTER: u32 = 3;

/// A new port of an accepted IP on probation before latching.
#[derive(Debug, Clone, Copy)]
struct LatchCandidate {
    source: SocketAddr,
    ssrc: u32,
    next_sequence: u16,
    seen: u32,
}

/// One leg's RTP session state. See the module docs for the calling contract.
#[derive(Debug)]
pub struct RtpSession {
    config: RtpSessionConfig,
    started_at: Instant,
    wallclock_at_start: SystemTime,
    sdp_remote: RemoteMedia,
    latched: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
    candidate: Option<LatchCandidate>,
    signalling_ip: Option<IpAddr>,
    outbound: OutboundStream,
    packets_sent: u32,
    octets_sent: u32,
    last_sent: Option<(Instant, u32)>,
    source: Option<SourceState>,
    foreign_dropped: u64,
    last_rtp_at: Instant,
    last_sr_received: Option<(Instant, u32)>,
    next_rtcp_at: Instant,
    timed_out: bool,
    events: VecDeque<SessionEvent>,
}

impl RtpSession {
    /// Start a session at `now`; `wallclock` is the wall-clock time at `now` (for SR NTP
    /// timestamps); `remote` holds the SDP addresses (`Negotiated::remote()`).
    pub fn new(
        config: RtpSessionConfig,
        now: Instant,
        wallclock: SystemTime,
        remote: RemoteMedia,
    ) -> Self {
        RtpSession {
            outbound: OutboundStream::new(
                config.ssrc,
                config.initial_sequence,
                config.timestamp_offset,
                config.clock_rate,
            ),
            next_rtcp_at: now + config.rtcp_interval,
            config,
            started_at: now,
            wallclock_at_start: wallclock,
            sdp_remote: remote,
            latched: None,
            latched_rtcp: None,
            candidate: None,
            signalling_ip: None,
            packets_sent: 0,
            octets_sent: 0,
            last_sent: None,
            source: None,
            foreign_dropped: 0,
            last_rtp_at: now,
            last_sr_received: None,
            timed_out: false,
            events: VecDeque::new(),
        }
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.config.ssrc
    }

    /// Whether media arrived from the peer (the address is latched).
    pub fn is_latched(&self) -> bool {
        self.latched.is_some()
    }

    /// Also accept media from `ip`, the address the leg's signalling comes from (NAT).
    pub fn trust_signalling_ip(&mut self, ip: IpAddr) {
        self.signalling_ip = Some(ip);
    }

    /// Whether `ip` may send us media: the SDP's, the signalling's, or the latched one.
    fn accepts_ip(&self, ip: IpAddr) -> bool {
        self.sdp_remote.rtp.is_some_and(|a| a.ip() == ip)
            || self.sdp_remote.rtcp.is_some_and(|a| a.ip() == ip)
            || self.signalling_ip == Some(ip)
            || self.latched.is_some_and(|a| a.ip() == ip)
    }

    /// Where to send RTP: the latched source, else the SDP address.
    pub fn remote_rtp(&self) -> Option<SocketAddr> {
        self.latched.or(self.sdp_remote.rtp)
    }

    /// Where to send RTCP: the latched RTCP source; else, once RTP latched, its port + 1 (a
    /// NAT maps both alike); else the SDP's `a=rtcp` address or RTP port + 1.
    pub fn remote_rtcp(&self) -> Option<SocketAddr> {
        let next_port = |mut addr: SocketAddr| {
            addr.set_port(addr.port().wrapping_add(1));
            addr
        };
        self.latched_rtcp
            .or(self.latched.map(next_port))
            .or(self.sdp_remote.rtcp)
            .or(self.sdp_remote.rtp.map(next_port))
    }

    /// A re-INVITE carried `remote`. If its RTP address differs from the current one, forget
    /// the latches (the next packets latch again) and restart the silence clock; returns
    /// whether that happened. The same address again keeps the latch, so a re-INVITE cannot
    /// be used to move the media of a latched call elsewhere without changing the SDP.
    pub fn set_remote(&mut self, now: Instant, remote: RemoteMedia) -> bool {
        if remote.rtp == self.sdp_remote.rtp {
            self.sdp_remote.rtcp = remote.rtcp;
            return false;
        }
        self.sdp_remote = remote;
        self.latched = None;
        self.latched_rtcp = None;
        self.candidate = None;
        self.last_rtp_at = now;
        self.timed_out = false;
        true
    }

    /// Change (or disable) the media timeout, e.g. on hold; restarts the silence clock.
    pub fn set_media_timeout(&mut self, now: Instant, timeout: Option<Duration>) {
        self.config.media_timeout = timeout;
        self.last_rtp_at = now;
        self.timed_out = false;
    }

    /// Account for a received RTP packet from `source`.
    pub fn receive_rtp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        packet: &RtpPacket<'_>,
    ) -> ReceiveOutcome {
        let mut latched_now = false;
        match self.latched {
            Some(addr) if addr != source => {
                self.foreign_dropped += 1;
                return ReceiveOutcome::ForeignSource;
            }
            Some(_) => {}
            None if !self.accepts_ip(source.ip()) => {
                self.foreign_dropped += 1;
                return ReceiveOutcome::ForeignSource;
            }
            None if self.sdp_remote.rtp == Some(source) => {
                self.latched = Some(source);
                latched_now = true;
            }
            None => {
                let seen = match self.candidate {
                    Some(c)
                        if c.source == source
                            && c.ssrc == packet.ssrc
                            && c.next_sequence == packet.sequence =>
                    {
                        c.seen + 1
                    }
                    _ => 1,
                };
                self.candidate = Some(LatchCandidate {
                    source,
                    ssrc: packet.ssrc,
                    next_sequence: packet.sequence.wrapping_add(1),
                    seen,
                });
                if seen < LATCH_AFTER {
                    self.foreign_dropped += 1;
                    return ReceiveOutcome::ForeignSource;
                }
                self.candidate = None;
                self.latched = Some(source);
                latched_now = true;
            }
        }
        self.last_rtp_at = now;
        self.timed_out = false;
        let state = match &mut self.source {
            Some(state) if state.ssrc == packet.ssrc => state,
            slot => slot.insert(SourceState::start(packet.ssrc, packet.sequence)),
        };
        if state.update_sequence(packet.sequence) {
            // A.8: transit time in RTP units; jitter += (|D| - jitter) / 16.
            // Modulo 2^32 like the RTP timestamp itself, so wrap-around cancels out.
            let arrival = rtp_units(
                now.saturating_duration_since(self.started_at),
                self.config.clock_rate,
            ) as u32;
            let transit = arrival.wrapping_sub(packet.timestamp);
            if let Some(last) = state.last_transit {
                let d = (transit.wrapping_sub(last) as i32).unsigned_abs();
                state.jitter_scaled = next_jitter(state.jitter_scaled, d);
            }
            state.last_transit = Some(transit);
        }
        ReceiveOutcome::Accepted {
            latched: latched_now,
        }
    }

    /// Account for a received RTCP datagram from `source`: the first valid one latches the
    /// RTCP address, later ones from elsewhere are dropped; remembers the last SR for our
    /// report blocks.
    ///
    /// # Errors
    /// The first malformed packet in the compound datagram (nothing is latched then).
    pub fn receive_rtcp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        datagram: &[u8],
    ) -> Result<ReceiveOutcome, RtcpError> {
        if self.latched_rtcp.is_some_and(|latched| latched != source)
            || !self.accepts_ip(source.ip())
        {
            self.foreign_dropped += 1;
            return Ok(ReceiveOutcome::ForeignSource);
        }
        let mut last_sr = None;
        for packet in RtcpIter::new(datagram) {
            if let RtcpPacket::SenderReport { ntp_timestamp, .. } = packet? {
                last_sr = Some((now, (ntp_timestamp >> 16) as u32));
            }
        }
        if last_sr.is_some() {
            self.last_sr_received = last_sr;
        }
        let latched = self.latched_rtcp.is_none();
        self.latched_rtcp = Some(source);
        Ok(ReceiveOutcome::Accepted { latched })
    }

    /// Header for the next packet of our own audio (a G.711 frame: one byte a sample).
    /// `media_timestamp` is the player's media clock (samples since its playlist began);
    /// the leg's [`OutboundStream`] maps it onto the one timeline the phone sees.
    pub fn next_header(
        &mut self,
        now: Instant,
        payload_type: u8,
        marker: Marker,
        media_timestamp: u32,
        payload_len: usize,
    ) -> RtpHeader {
        let stamp = self.outbound.stamp(
            now,
            Origin::Local,
            0,
            media_timestamp,
            payload_len as u32,
            marker,
        );
        let header = RtpHeader {
            marker: stamp.marker,
            payload_type,
            sequence: stamp.sequence,
            timestamp: stamp.timestamp,
            ssrc: self.config.ssrc,
        };
        self.record_sent(now, header.timestamp, payload_len);
        header
    }

    /// The leg's outgoing stream, for a bridge relaying another leg's packets onto it
    /// ([`super::bridge::RelayDirection::relay`]); call [`Self::record_sent`] for each.
    pub fn outbound(&mut self) -> &mut OutboundStream {
        &mut self.outbound
    }

    /// Record a packet sent with our SSRC whose header was written elsewhere (the bridge).
    pub fn record_sent(&mut self, now: Instant, rtp_timestamp: u32, payload_len: usize) {
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload_len as u32);
        self.last_sent = Some((now, rtp_timestamp));
    }

    /// Current receive statistics.
    pub fn stats(&self) -> ReceiveStats {
        let Some(source) = &self.source else {
            return ReceiveStats {
                foreign_dropped: self.foreign_dropped,
                ..ReceiveStats::default()
            };
        };
        let expected = source.expected();
        ReceiveStats {
            remote_ssrc: source.ssrc,
            received: source.received,
            expected,
            lost: expected as i64 - source.received as i64,
            extended_highest_sequence: source.extended_max(),
            jitter: source.jitter_scaled >> 4,
            foreign_dropped: self.foreign_dropped,
        }
    }

    /// The earliest instant at which [`Self::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let media = match (self.config.media_timeout, self.timed_out) {
            (Some(timeout), false) => Some(self.last_rtp_at + timeout),
            _ => None,
        };
        Some(media.map_or(self.next_rtcp_at, |m| m.min(self.next_rtcp_at)))
    }

    /// Advance timers to `now`; queues events for [`Self::poll_event`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_rtcp_at {
            self.events.push_back(SessionEvent::RtcpDue);
            // Schedule from the due time (no drift); skip missed slots rather than bursting.
            while self.next_rtcp_at <= now {
                self.next_rtcp_at += self.config.rtcp_interval;
            }
        }
        if let Some(timeout) = self.config.media_timeout {
            let silent_for = now.saturating_duration_since(self.last_rtp_at);
            if !self.timed_out && silent_for >= timeout {
                self.timed_out = true;
                self.events
                    .push_back(SessionEvent::MediaTimeout { silent_for });
            }
        }
    }

    /// Next queued event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Build our RTCP report (SR if we have sent media, else RR) + SDES CNAME into `buf`.
    ///
    /// # Errors
    /// [`RtcpError::BufferTooSmall`] (use ≥ 128 bytes) or [`RtcpError::CnameTooLong`].
    pub fn build_rtcp(&mut self, now: Instant, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let block = self.report_block(now);
        match self.last_sent {
            Some((sent_at, sent_ts)) => {
                let elapsed = now.saturating_duration_since(sent_at);
                let info = SenderInfo {
                    ssrc: self.config.ssrc,
                    ntp_timestamp: ntp_from_system_time(
                        self.wallclock_at_start + now.saturating_duration_since(self.started_at),
                    ),
                    rtp_timestamp: sent_ts
                        .wrapping_add(rtp_units(elapsed, self.config.clock_rate) as u32),
                    packet_count: self.packets_sent,
                    octet_count: self.octets_sent,
                };
                build_sender_report(&info, block.as_ref(), &self.config.cname, buf)
            }
            None => {
                build_receiver_report(self.config.ssrc, block.as_ref(), &self.config.cname, buf)
            }
        }
    }

    fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let source = self.source.as_mut()?;
        let expected = source.expected();
        let expected_interval = expected.saturating_sub(source.expected_prior);
        let received_interval = source.received.saturating_sub(source.received_prior);
        source.expected_prior = expected;
        source.received_prior = source.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |fraction| fraction.min(255) as u8);
        let (last_sr, delay_since_last_sr) = match self.last_sr_received {
            Some((at, middle)) => {
                let delay = now.saturating_duration_since(at);
                (
                    middle,
                    ((delay.as_secs_f64() * 65536.0) as u64).min(u64::from(u32::MAX)) as u32,
                )
            }
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: source.ssrc,
            fraction_lost,
            cumulative_lost: (expected as i64 - source.received as i64).clamp(-0x80_0000, 0x7F_FFFF)
                as i32,
            extended_highest_sequence: source.extended_max(),
            jitter: source.jitter_scaled >> 4,
            last_sr,
            delay_since_last_sr,
        })
    }
}

/// One step of RFC 3550 A.8 on the jitter scaled by 16: `J += |D| - (J + 8) / 16`.
/// Computed wide and saturated: with |D| up to 2^31 (hostile timestamps) the steady
/// state 16·|D| exceeds 32 bits, and the reference code's wrap-around would report a
/// small jitter (or overflow `J + 8` in a checked build).
fn next_jitter(scaled: u32, d: u32) -> u32 {
    let next = (u64::from(scaled) + u64::from(d)).saturating_sub((u64::from(scaled) + 8) >> 4);
    u32::try_from(next).unwrap_or(u32::MAX)
}

fn rtp_units(elapsed: Duration, clock_rate: u32) -> i64 {
    (elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn packet_bytes(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 12 + payload.len()];
        let header = RtpHeader {
            marker: Marker::Clear,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc,
        };
        let len = write_packet(&header, payload, &mut buf).unwrap();
        buf.truncate(len);
        buf
    }

    #[test]
    fn build_then_parse_round_trips() {
        let mut buf = [0u8; 200];
        let header = RtpHeader {
            marker: Marker::Set,
            payload_type: 101,
            sequence: 65535,
            timestamp: 0xDEADBEEF,
            ssrc: 0x01020304,
        };
        let len = write_packet(&header, &[1, 2, 3], &mut buf).unwrap();
        assert_eq!(len, 15);
        let p = RtpPacket::parse(&buf[..len]).unwrap();
        assert_eq!(p.marker, Marker::Set);
        assert_eq!(
            (p.payload_type, p.sequence, p.timestamp, p.ssrc),
            (101, 65535, 0xDEADBEEF, 0x01020304)
        );
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(p.payload_offset, 12);
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        let mut buf = vec![0xB2, 0x08, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        buf.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 10]); // 2 CSRCs
        buf.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0xAA, 0xBB, 0xCC, 0xDD]); // extension, 1 word
        buf.extend_from_slice(&[5, 6, 7, 0, 0, 3]); // payload 5 6 7 + 3 bytes padding
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![9, 10]);
        assert_eq!(
            p.extension,
            Some(RtpExtension {
                profile: 0xBEDE,
                data: &[0xAA, 0xBB, 0xCC, 0xDD]
            })
        );
        assert_eq!(p.payload, &[5, 6, 7]);
        assert_eq!(p.padding, 3);
        assert_eq!(p.payload_type, 8);
    }

    #[test]
    fn rejects_malformed_packets_without_panicking() {
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(RtpError::TooShort(11)));
        let mut v1 = packet_bytes(1, 1, 1, &[]);
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));
        let mut csrc = packet_bytes(1, 1, 1, &[0; 4]);
        csrc[0] = 0x82;
        assert_eq!(RtpPacket::parse(&csrc), Err(RtpError::TruncatedCsrc));
        let mut ext = packet_bytes(1, 1, 1, &[0, 0, 0, 5]);
        ext[0] = 0x90;
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::TruncatedExtension));
        let mut pad = packet_bytes(1, 1, 1, &[1, 9]);
        pad[0] = 0xA0;
        assert_eq!(
            RtpPacket::parse(&pad),
            Err(RtpError::BadPadding {
                padding: 9,
                available: 2
            })
        );
        let mut zero_pad = packet_bytes(1, 1, 1, &[0]);
        zero_pad[0] = 0xA0;
        assert!(RtpPacket::parse(&zero_pad).is_err());
        // Every prefix and every first byte: no panic.
        let full = packet_bytes(7, 7, 7, &[1, 2, 3, 4, 5, 6, 7, 8]);
        for len in 0..full.len() {
            for first in 0..=255u8 {
                let mut b = full[..len].to_vec();
                if let Some(x) = b.first_mut() {
                    *x = first;
                }
                let _ = RtpPacket::parse(&b);
            }
        }
    }

    #[test]
    fn build_rejects_small_buffer_and_bad_pt() {
        let header = RtpHeader {
            marker: Marker::Clear,
            payload_type: 0,
            sequence: 0,
            timestamp: 0,
            ssrc: 0,
        };
        assert_eq!(
            write_packet(&header, &[0; 10], &mut [0; 21]),
            Err(RtpError::BufferTooSmall {
                needed: 22,
                available: 21
            })
        );
        let bad = RtpHeader {
            payload_type: 128,
            ..header
        };
        assert_eq!(bad.write(&mut [0; 12]), Err(RtpError::BadPayloadType(128)));
    }

    #[test]
    fn rtcp_sr_sdes_round_trip() {
        let mut buf = [0u8; 256];
        let info = SenderInfo {
            ssrc: 42,
            ntp_timestamp: 0x1122334455667788,
            rtp_timestamp: 999,
            packet_count: 10,
            octet_count: 1600,
        };
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_highest_sequence: 70000,
            jitter: 12,
            last_sr: 5,
            delay_since_last_sr: 6,
        };
        let len = build_sender_report(&info, Some(&block), "hotline@example", &mut buf).unwrap();
        assert_eq!(len % 4, 0);
        let packets: Vec<_> = RtcpIter::new(&buf[..len])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(packets.len(), 2);
        match packets[0] {
            RtcpPacket::SenderReport {
                ssrc,
                ntp_timestamp,
                rtp_timestamp,
                packet_count,
                octet_count,
                reports,
            } => {
                assert_eq!(
                    (
                        ssrc,
                        ntp_timestamp,
                        rtp_timestamp,
                        packet_count,
                        octet_count
                    ),
                    (42, 0x1122334455667788, 999, 10, 1600)
                );
                assert_eq!(reports.iter().collect::<Vec<_>>(), vec![block]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            packets[1],
            RtcpPacket::SourceDescription {
                chunk_count: 1,
                cname: Some(b"hotline@example")
            }
        );
    }

    #[test]
    fn rtcp_rr_and_bye_are_recognised_and_truncation_is_an_error() {
        let mut buf = [0u8; 256];
        let len = build_receiver_report(9, None, "x", &mut buf).unwrap();
        let mut datagram = buf[..len].to_vec();
        datagram.extend_from_slice(&[0x81, RTCP_BYE, 0, 1, 0, 0, 0, 9]);
        let packets: Vec<_> = RtcpIter::new(&datagram).collect::<Result<_, _>>().unwrap();
        assert!(matches!(
            packets[0],
            RtcpPacket::ReceiverReport { ssrc: 9, .. }
        ));
        assert!(matches!(packets[1], RtcpPacket::SourceDescription { .. }));
        assert_eq!(packets[2], RtcpPacket::Bye { source_count: 1 });
        let cut = &datagram[..datagram.len() - 2];
        assert_eq!(RtcpIter::new(cut).last(), Some(Err(RtcpError::BadLength)));
        // A report count larger than the packet.
        let lying = [0x81, RTCP_RR, 0, 1, 0, 0, 0, 9];
        assert_eq!(
            RtcpIter::new(&lying).next(),
            Some(Err(RtcpError::TruncatedReports(1)))
        );
        assert_eq!(
            RtcpIter::new(&[0x40, 200, 0, 0]).next(),
            Some(Err(RtcpError::BadVersion(1)))
        );
    }

    fn remote(rtp: &str) -> RemoteMedia {
        RemoteMedia {
            rtp: Some(addr(rtp)),
            rtcp: None,
        }
    }

    fn session(now: Instant) -> RtpSession {
        let config = RtpSessionConfig::g711(0xAAAA, 100, 5000, "test".into());
        RtpSession::new(
            config,
            now,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            RemoteMedia {
                rtp: Some(addr("10.0.0.1:4000")),
                rtcp: None,
            },
        )
    }

    fn feed(s: &mut RtpSession, at: Instant, from: &str, seq: u16, ts: u32) -> ReceiveOutcome {
        let bytes = packet_bytes(seq, ts, 77, &[0xFF; 160]);
        let packet = RtpPacket::parse(&bytes).unwrap();
        s.receive_rtp(at, addr(from), &packet)
    }

    #[test]
    fn latches_the_sdp_address_at_once_and_drops_everyone_else() {
        let t0 = Instant::now();
        let mut s = session(t0);
        assert_eq!(s.remote_rtp(), Some(addr("10.0.0.1:4000")));
        // A host never named in SDP or signalling spraying our port: nothing.
        for seq in 0..10 {
            assert_eq!(
                feed(&mut s, t0, "6.6.6.6:5000", seq, 160 * u32::from(seq)),
                ReceiveOutcome::ForeignSource
            );
        }
        assert_eq!(s.remote_rtp(), Some(addr("10.0.0.1:4000")), "not latched");
        assert_eq!(
            feed(&mut s, t0, "10.0.0.1:4000", 1, 0),
            ReceiveOutcome::Accepted { latched: true }
        );
        assert_eq!(
            feed(&mut s, t0, "10.0.0.1:4000", 2, 160),
            ReceiveOutcome::Accepted { latched: false }
        );
        assert_eq!(
            feed(&mut s, t0, "10.0.0.1:4002", 3, 320),
            ReceiveOutcome::ForeignSource,
            "another port of the same host once latched"
        );
        assert!(
            !s.set_remote(t0, remote("10.0.0.1:4000")),
            "same SDP address keeps the latch"
        );
        assert_eq!(s.stats().foreign_dropped, 11);
        // A re-INVITE moves the media: the new SDP address latches.
        assert!(s.set_remote(t0, remote("10.0.0.2:4002")));
        assert_eq!(s.remote_rtp(), Some(addr("10.0.0.2:4002")));
        assert_eq!(
            feed(&mut s, t0, "6.6.6.6:5000", 5, 640),
            ReceiveOutcome::ForeignSource
        );
        assert_eq!(
            feed(&mut s, t0, "10.0.0.2:4002", 5, 640),
            ReceiveOutcome::Accepted { latched: true }
        );
    }

    #[test]
    fn behind_nat_a_new_port_latches_after_consecutive_packets_of_one_stream() {
        let t0 = Instant::now();
        let mut s = session(t0);
        // The phone's SDP says 10.0.0.1:4000; its NAT sends from 1.2.3.4 (where its
        // INVITE came from) with another port.
        s.trust_signalling_ip(addr("1.2.3.4:5060").ip());
        assert_eq!(
            feed(&mut s, t0, "1.2.3.4:31000", 7, 0),
            ReceiveOutcome::ForeignSource
        );
        // An interleaved packet from another port restarts the probation.
        assert_eq!(
            feed(&mut s, t0, "1.2.3.4:31002", 8, 160),
            ReceiveOutcome::ForeignSource
        );
        assert_eq!(
            feed(&mut s, t0, "1.2.3.4:31000", 9, 320),
            ReceiveOutcome::ForeignSource
        );
        assert_eq!(
            feed(&mut s, t0, "1.2.3.4:31000", 10, 480),
            ReceiveOutcome::ForeignSource
        );
        assert_eq!(
            feed(&mut s, t0, "1.2.3.4:31000", 11, 640),
            ReceiveOutcome::Accepted { latched: true }
        );
        assert_eq!(s.remote_rtp(), Some(addr("1.2.3.4:31000")));
        assert_eq!(s.remote_rtcp(), Some(addr("1.2.3.4:31001")));
        // Not from anyone else, whatever they send.
        assert_eq!(
            feed(&mut s, t0, "6.6.6.6:4000", 12, 800),
            ReceiveOutcome::ForeignSource
        );
    }

    #[test]
    fn rtcp_address_from_sdp_then_latched() {
        let t0 = Instant::now();
        let mut s = session(t0);
        assert_eq!(
            s.remote_rtcp(),
            Some(addr("10.0.0.1:4001")),
            "RTP port + 1 by default"
        );
        s.set_remote(
            t0,
            RemoteMedia {
                rtp: Some(addr("10.0.0.1:4000")),
                rtcp: Some(addr("10.0.0.1:4999")),
            },
        );
        assert_eq!(s.remote_rtcp(), Some(addr("10.0.0.1:4999")), "a=rtcp");
        let mut buf = [0u8; 128];
        let len = build_receiver_report(1, None, "peer", &mut buf).unwrap();
        assert_eq!(
            s.receive_rtcp(t0, addr("1.2.3.4:7001"), &buf[..len]),
            Ok(ReceiveOutcome::ForeignSource),
            "RTCP only from the hosts RTP is accepted from"
        );
        s.trust_signalling_ip(addr("1.2.3.4:5060").ip());
        assert_eq!(
            s.receive_rtcp(t0, addr("1.2.3.4:7001"), &buf[..len]),
            Ok(ReceiveOutcome::Accepted { latched: true })
        );
        assert_eq!(s.remote_rtcp(), Some(addr("1.2.3.4:7001")));
        assert_eq!(
            s.receive_rtcp(t0, addr("6.6.6.6:7001"), &buf[..len]),
            Ok(ReceiveOutcome::ForeignSource)
        );
        assert_eq!(
            s.receive_rtcp(t0, addr("1.2.3.4:7001"), &buf[..3]),
            Err(RtcpError::TooShort)
        );
    }

    #[test]
    fn extended_sequence_wraps_and_loss_is_counted() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let mut seq: u16 = 65530;
        for i in 0..20u32 {
            if i != 8 && i != 9 {
                feed(
                    &mut s,
                    t0 + Duration::from_millis(20 * u64::from(i)),
                    "10.0.0.1:4000",
                    seq,
                    i * 160,
                );
            }
            seq = seq.wrapping_add(1);
        }
        let stats = s.stats();
        assert_eq!(
            stats.extended_highest_sequence,
            65536 + 13,
            "one wrap, then seq 13"
        );
        assert_eq!(stats.expected, 20);
        assert_eq!(stats.received, 18);
        assert_eq!(stats.lost, 2);
        assert_eq!(stats.jitter, 0, "perfectly paced packets have no jitter");
    }

    #[test]
    fn jitter_follows_a8_for_alternating_delay() {
        let t0 = Instant::now();
        let mut s = session(t0);
        // Arrival alternates 0 and 10 ms late: |D| = 80 units each time after the first.
        for i in 0..200u32 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            feed(
                &mut s,
                t0 + Duration::from_millis(20 * u64::from(i) + late),
                "10.0.0.1:4000",
                i as u16,
                i * 160,
            );
        }
        let jitter = s.stats().jitter;
        assert!((75..=80).contains(&jitter), "jitter {jitter}");
    }

    #[test]
    fn jitter_survives_timestamp_wraparound() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let start_ts = u32::MAX - 160 * 10;
        for i in 0..40u32 {
            feed(
                &mut s,
                t0 + Duration::from_millis(20 * u64::from(i)),
                "10.0.0.1:4000",
                i as u16,
                start_ts.wrapping_add(i * 160),
            );
        }
        assert_eq!(s.stats().jitter, 0);
    }

    /// Hostile timestamps alternating by 2^31 drive |D| to its maximum: the jitter
    /// saturates instead of wrapping back to a small value, and `J + 8` cannot overflow.
    #[test]
    fn jitter_saturates_under_hostile_timestamps() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let mut highest = 0;
        for i in 0..400u32 {
            let ts = if i % 2 == 0 { 0 } else { 0x8000_0000 };
            feed(
                &mut s,
                t0 + Duration::from_millis(20 * u64::from(i)),
                "10.0.0.1:4000",
                i as u16,
                ts,
            );
            let jitter = s.stats().jitter;
            assert!(
                jitter >= highest,
                "jitter fell from {highest} to {jitter} at {i}"
            );
            highest = jitter;
        }
        assert_eq!(highest, u32::MAX >> 4);
        assert_eq!(next_jitter(u32::MAX - 3, 0), u32::MAX - 3 - (1 << 28));
        assert_eq!(next_jitter(u32::MAX, u32::MAX), u32::MAX);
        assert_eq!(next_jitter(0, 80), 80);
    }

    /// 65536 sequence wraps (22 packets each at the largest in-order step) are a few
    /// seconds of a hostile stream: the cycle count wraps like the extended sequence
    /// number instead of overflowing.
    #[test]
    fn sequence_cycle_count_wraps_modulo_2_32() {
        let mut state = SourceState::start(1, 65_000);
        state.cycles = u32::MAX - SEQ_MOD + 1;
        assert!(state.update_sequence(10));
        assert_eq!(state.cycles, 0);
        assert_eq!(state.extended_max(), 10);
    }

    #[test]
    fn media_timeout_fires_once_after_silence() {
        let t0 = Instant::now();
        let mut s = session(t0);
        feed(&mut s, t0 + Duration::from_secs(1), "10.0.0.1:4000", 1, 0);
        let mut now = t0;
        let mut timeouts = vec![];
        let mut rtcp = 0;
        while now < t0 + Duration::from_secs(60) {
            now = s.poll_timeout().unwrap();
            s.handle_timeout(now);
            while let Some(e) = s.poll_event() {
                match e {
                    SessionEvent::MediaTimeout { silent_for } => {
                        timeouts.push((now - t0, silent_for))
                    }
                    SessionEvent::RtcpDue => rtcp += 1,
                }
            }
        }
        assert_eq!(
            timeouts,
            vec![(Duration::from_secs(31), Duration::from_secs(30))]
        );
        assert_eq!(rtcp, 12, "every 5 s for 60 s");
    }

    #[test]
    fn rtcp_report_is_sr_after_sending_and_carries_loss() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let mut buf = [0u8; 256];
        let len = s.build_rtcp(t0, &mut buf).unwrap();
        assert!(
            matches!(RtcpIter::new(&buf[..len]).next(), Some(Ok(RtcpPacket::ReceiverReport { reports, .. })) if reports.iter().count() == 0)
        );
        let h1 = s.next_header(t0, 0, Marker::Set, 0, 160);
        let h2 = s.next_header(t0 + Duration::from_millis(20), 0, Marker::Clear, 160, 160);
        assert_eq!((h1.sequence, h2.sequence), (100, 101));
        assert_eq!((h1.timestamp, h2.timestamp), (5000, 5160));
        for seq in [1u16, 2, 4] {
            feed(&mut s, t0, "10.0.0.1:4000", seq, u32::from(seq) * 160);
        }
        let len = s
            .build_rtcp(t0 + Duration::from_millis(40), &mut buf)
            .unwrap();
        match RtcpIter::new(&buf[..len]).next() {
            Some(Ok(RtcpPacket::SenderReport {
                ssrc,
                rtp_timestamp,
                packet_count,
                octet_count,
                reports,
                ntp_timestamp,
            })) => {
                assert_eq!((ssrc, packet_count, octet_count), (0xAAAA, 2, 320));
                assert_eq!(
                    rtp_timestamp, 5320,
                    "extrapolated 20 ms past the last packet"
                );
                assert_eq!(ntp_timestamp >> 32, 1_700_000_000 + NTP_UNIX_OFFSET_SECS);
                let block = reports.iter().next().unwrap();
                assert_eq!(
                    (block.ssrc, block.cumulative_lost, block.fraction_lost),
                    (77, 1, 64)
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
