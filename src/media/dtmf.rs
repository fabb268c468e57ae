//! DTMF: RFC 4733 telephone-events (parse, build, receive, send) and in-band detection.
//!
//! # Receiving RFC 4733
//! Feed every telephone-event packet of the negotiated payload type to
//! [`DtmfReceiver::receive`] with its RTP timestamp, then drain [`DtmfReceiver::poll_digit`].
//! All packets of one event share an RTP timestamp; the receiver reports each event once,
//! when it ends: on the first end packet (retransmitted end packets are ignored), when a new
//! event starts before this one ended, or when no packet arrived for
//! [`DtmfReceiver::poll_timeout`] (all end packets lost). An event whose start and update
//! packets were lost is still reported from its end packet.
//!
//! # Sending RFC 4733
//! [`digit_packets`] plans the packets for one digit: send each at `start + offset` with the
//! RTP timestamp at `start` (the same for all) and the payload type negotiated for
//! telephone-event; the first carries the marker bit. Do not send audio on that leg in the
//! meantime, and advance the audio timestamp by the event's duration afterwards.
//!
//! # In-band
//! [`InbandDetector`] runs the Goertzel algorithm over 8 kHz PCM for trunks that send tones
//! in the audio. Windows of 20 ms every 10 ms; a digit needs both a row and a column tone
//! above an absolute level, each 6 dB above the others of its group, twist within 8 dB,
//! the two tones carrying most of the window's energy, for 3 consecutive windows (40 ms).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::rtp::Marker;

/// A DTMF key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtmfDigit {
    D0,
    D1,
    D2,
    D3,
    D4,
    D5,
    D6,
    D7,
    D8,
    D9,
    Star,
    Pound,
    A,
    B,
    C,
    D,
}

const DIGITS_BY_EVENT: [DtmfDigit; 16] = [
    DtmfDigit::D0,
    DtmfDigit::D1,
    DtmfDigit::D2,
    DtmfDigit::D3,
    DtmfDigit::D4,
    DtmfDigit::D5,
    DtmfDigit::D6,
    DtmfDigit::D7,
    DtmfDigit::D8,
    DtmfDigit::D9,
    DtmfDigit::Star,
    DtmfDigit::Pound,
    DtmfDigit::A,
    DtmfDigit::B,
    DtmfDigit::C,
    DtmfDigit::D,
];

impl DtmfDigit {
    /// The RFC 4733 event code (0–15).
    pub fn event_code(self) -> u8 {
        DIGITS_BY_EVENT.iter().position(|d| *d == self).unwrap_or(0) as u8
    }

    /// The digit for an RFC 4733 event code; `None` for non-DTMF events (e.g. 16, flash).
    pub fn from_event_code(code: u8) -> Option<DtmfDigit> {
        DIGITS_BY_EVENT.get(usize::from(code)).copied()
    }

    /// The key's character: `0`–`9`, `*`, `#`, `A`–`D`.
    pub fn as_char(self) -> char {
        "0123456789*#ABCD"
            .chars()
            .nth(usize::from(self.event_code()))
            .unwrap_or('?')
    }

    /// The digit for a key character (case-insensitive letters).
    pub fn from_char(c: char) -> Option<DtmfDigit> {
        let index = "0123456789*#ABCD".find(c.to_ascii_uppercase())?;
        DIGITS_BY_EVENT.get(index).copied()
    }
}

/// Why a telephone-event payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DtmfError {
    #[error("telephone-event payload is {0} bytes, expected at least 4")]
    TooShort(usize),
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Whether this packet ends the event (the E bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventEnd {
    Continuing,
    Ended,
}

/// An RFC 4733 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: EventEnd,
    /// Power level as −dBm0 (0–63).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

/// Size of a telephone-event payload.
pub const TELEPHONE_EVENT_LEN: usize = 4;

impl TelephoneEvent {
    /// Parse the first 4 bytes of a payload (further bytes, e.g. redundancy, are ignored).
    ///
    /// # Errors
    /// [`DtmfError::TooShort`].
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let bytes = payload
            .get(..TELEPHONE_EVENT_LEN)
            .ok_or(DtmfError::TooShort(payload.len()))?;
        Ok(TelephoneEvent {
            event: bytes[0],
            end: if bytes[1] & 0x80 != 0 {
                EventEnd::Ended
            } else {
                EventEnd::Continuing
            },
            volume: bytes[1] & 0x3F,
            duration: u16::from_be_bytes([bytes[2], bytes[3]]),
        })
    }

    /// Write the 4-byte payload; returns 4.
    ///
    /// # Errors
    /// [`DtmfError::BufferTooSmall`].
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, DtmfError> {
        let out = buf
            .get_mut(..TELEPHONE_EVENT_LEN)
            .ok_or(DtmfError::BufferTooSmall)?;
        out[0] = self.event;
        out[1] = (if self.end == EventEnd::Ended { 0x80 } else { 0 }) | (self.volume & 0x3F);
        out[2..4].copy_from_slice(&self.duration.to_be_bytes());
        Ok(TELEPHONE_EVENT_LEN)
    }
}

/// How the receiver learned that an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    EndPacket,
    /// The next event started before an end packet arrived.
    NextEvent,
    /// No packet for the receiver's flush time.
    Silence,
}

/// A digit received over RFC 4733.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedDigit {
    pub digit: DtmfDigit,
    /// Longest duration reported by the event's packets, in RTP units (8000/s).
    pub duration: u32,
    pub rtp_timestamp: u32,
    pub ended_by: EndedBy,
}

#[derive(Debug, Clone, Copy)]
struct OpenEvent {
    timestamp: u32,
    digit: DtmfDigit,
    duration: u32,
    last_packet_at: Instant,
}

/// Turns a stream of telephone-event packets into digits. See the module docs.
#[derive(Debug)]
pub struct DtmfReceiver {
    open: Option<OpenEvent>,
    last_finished: Option<u32>,
    flush_after: Duration,
    digits: VecDeque<ReceivedDigit>,
}

impl Default for DtmfReceiver {
    fn default() -> Self {
        DtmfReceiver::new(Duration::from_millis(600))
    }
}

impl DtmfReceiver {
    /// `flush_after`: silence after which an event without an end packet is reported.
    pub fn new(flush_after: Duration) -> DtmfReceiver {
        DtmfReceiver {
            open: None,
            last_finished: None,
            flush_after,
            digits: VecDeque::new(),
        }
    }

    /// Forget all state (the remote's SSRC changed, e.g. after a re-INVITE: its timestamps
    /// start elsewhere). An open event is dropped.
    pub fn reset(&mut self) {
        self.open = None;
        self.last_finished = None;
    }

    /// Feed one telephone-event packet.
    pub fn receive(&mut self, now: Instant, rtp_timestamp: u32, event: &TelephoneEvent) {
        if let Some(finished) = self.last_finished {
            // Retransmitted end packets and stragglers of finished or older events.
            if (rtp_timestamp.wrapping_sub(finished) as i32) <= 0 {
                return;
            }
        }
        let Some(digit) = DtmfDigit::from_event_code(event.event) else {
            return;
        };
        let duration = u32::from(event.duration);
        let open = match self.open {
            Some(open) if open.timestamp == rtp_timestamp => OpenEvent {
                duration: open.duration.max(duration),
                last_packet_at: now,
                ..open
            },
            Some(previous) => {
                self.finish(previous, EndedBy::NextEvent);
                OpenEvent {
                    timestamp: rtp_timestamp,
                    digit,
                    duration,
                    last_packet_at: now,
                }
            }
            None => OpenEvent {
                timestamp: rtp_timestamp,
                digit,
                duration,
                last_packet_at: now,
            },
        };
        if event.end == EventEnd::Ended {
            self.open = None;
            self.finish(open, EndedBy::EndPacket);
        } else {
            self.open = Some(open);
        }
    }

    fn finish(&mut self, event: OpenEvent, ended_by: EndedBy) {
        self.last_finished = Some(event.timestamp);
        self.digits.push_back(ReceivedDigit {
            digit: event.digit,
            duration: event.duration,
            rtp_timestamp: event.timestamp,
            ended_by,
        });
    }

    /// When an open event will be reported if nothing else arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.open.map(|open| open.last_packet_at + self.flush_after)
    }

    /// Report an open event whose end packets never came.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(open) = self.open {
            if now >= open.last_packet_at + self.flush_after {
                self.open = None;
                self.finish(open, EndedBy::Silence);
            }
        }
    }

    /// Next finished digit.
    pub fn poll_digit(&mut self) -> Option<ReceivedDigit> {
        self.digits.pop_front()
    }
}

/// One planned telephone-event packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedEventPacket {
    /// When to send it, relative to the event start.
    pub offset: Duration,
    pub marker: Marker,
    pub event: TelephoneEvent,
}

/// Interval between update packets.
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(50);
/// Spacing of the three end packets.
pub const END_REPEAT_INTERVAL: Duration = Duration::from_millis(20);
const END_PACKETS: u32 = 3;
const RTP_UNITS_PER_MS: u32 = 8;

/// The packet plan for one digit: a start packet with the marker, an update every 50 ms
/// whose duration is the time elapsed by the next update (capped at the total), and three
/// end packets with the final duration, 20 ms apart. Durations are in 8 kHz units; `length`
/// is capped at the 16-bit field (~8.19 s).
pub fn digit_packets(
    digit: DtmfDigit,
    length: Duration,
    volume: u8,
) -> impl Iterator<Item = PlannedEventPacket> {
    let total_ms = u32::try_from(length.as_millis())
        .unwrap_or(u32::MAX)
        .min(u32::from(u16::MAX) / RTP_UNITS_PER_MS);
    let interval_ms = UPDATE_INTERVAL.as_millis() as u32;
    let updates = total_ms.div_ceil(interval_ms).max(1);
    let event_code = digit.event_code();
    let volume = volume.min(63);
    let plan = move |index: u32| -> PlannedEventPacket {
        if index < updates {
            let elapsed_ms = index * interval_ms;
            PlannedEventPacket {
                offset: Duration::from_millis(u64::from(elapsed_ms)),
                marker: if index == 0 {
                    Marker::Set
                } else {
                    Marker::Clear
                },
                event: TelephoneEvent {
                    event: event_code,
                    end: EventEnd::Continuing,
                    volume,
                    duration: ((elapsed_ms + interval_ms).min(total_ms) * RTP_UNITS_PER_MS) as u16,
                },
            }
        } else {
            let repeat = index - updates;
            PlannedEventPacket {
                offset: Duration::from_millis(u64::from(total_ms)) + END_REPEAT_INTERVAL * repeat,
                marker: Marker::Clear,
                event: TelephoneEvent {
                    event: event_code,
                    end: EventEnd::Ended,
                    volume,
                    duration: (total_ms * RTP_UNITS_PER_MS) as u16,
                },
            }
        }
    };
    (0..updates + END_PACKETS).map(plan)
}

// ---------------------------------------------------------------------------------------
// In-band detection

const SAMPLE_RATE: f32 = 8000.0;
const WINDOW: usize = 160;
const HOP: usize = 80;
const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[DtmfDigit; 4]; 4] = [
    [DtmfDigit::D1, DtmfDigit::D2, DtmfDigit::D3, DtmfDigit::A],
    [DtmfDigit::D4, DtmfDigit::D5, DtmfDigit::D6, DtmfDigit::B],
    [DtmfDigit::D7, DtmfDigit::D8, DtmfDigit::D9, DtmfDigit::C],
    [
        DtmfDigit::Star,
        DtmfDigit::D0,
        DtmfDigit::Pound,
        DtmfDigit::D,
    ],
];
/// Windows in a row that must agree (20 ms window + 2 × 10 ms hop = 40 ms).
const WINDOWS_TO_ACCEPT: u32 = 3;
/// Windows without the digit before the same digit can be reported again.
const WINDOWS_TO_RELEASE: u32 = 2;
/// Minimum amplitude of each tone (≈ −36 dBm0 for a full scale of +3 dBm0).
const MIN_TONE_AMPLITUDE: f32 = 400.0;
/// Peak must exceed the other tones of its group by 6 dB (power ratio 4).
const PEAK_RATIO: f32 = 4.0;
/// Allowed twist between the row and column tone: 8 dB (power ratio ≈ 6.3).
const MAX_TWIST: f32 = 6.3;
/// Share of the window's energy that the two tones must carry.
const MIN_TONE_SHARE: f32 = 0.7;

/// A digit detected in audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InbandDigit {
    pub digit: DtmfDigit,
    /// Index (in samples since the detector started) of the end of the window that confirmed it.
    pub detected_at_sample: u64,
}

/// Goertzel DTMF detector over 8 kHz 16-bit PCM. Feed any number of samples at a time.
#[derive(Debug)]
pub struct InbandDetector {
    coefficients: [f32; 8],
    window: [f32; WINDOW],
    oldest: usize,
    filled: usize,
    since_last_window: usize,
    samples_seen: u64,
    candidate: Option<DtmfDigit>,
    candidate_windows: u32,
    reported: Option<DtmfDigit>,
    absent_windows: u32,
}

impl Default for InbandDetector {
    fn default() -> Self {
        InbandDetector::new()
    }
}

impl InbandDetector {
    pub fn new() -> InbandDetector {
        let mut coefficients = [0f32; 8];
        for (c, f) in coefficients
            .iter_mut()
            .zip(ROWS.iter().chain(COLUMNS.iter()))
        {
            *c = 2.0 * (2.0 * std::f32::consts::PI * f / SAMPLE_RATE).cos();
        }
        InbandDetector {
            coefficients,
            window: [0.0; WINDOW],
            oldest: 0,
            filled: 0,
            since_last_window: 0,
            samples_seen: 0,
            candidate: None,
            candidate_windows: 0,
            reported: None,
            absent_windows: WINDOWS_TO_RELEASE,
        }
    }

    /// Feed samples; returns the digits whose detection completed within them.
    pub fn process(&mut self, samples: &[i16]) -> Vec<InbandDigit> {
        let mut found = Vec::new();
        for &sample in samples {
            // Ring buffer: `oldest` is where the window starts once it is full.
            if let Some(slot) = self.window.get_mut(self.oldest) {
                *slot = f32::from(sample);
            }
            self.oldest = (self.oldest + 1) % WINDOW;
            self.filled = (self.filled + 1).min(WINDOW);
            self.samples_seen += 1;
            self.since_last_window += 1;
            if self.filled == WINDOW && self.since_last_window >= HOP {
                self.since_last_window = 0;
                let digit = self.classify_window();
                if let Some(d) = self.track(digit) {
                    found.push(InbandDigit {
                        digit: d,
                        detected_at_sample: self.samples_seen,
                    });
                }
            }
        }
        found
    }

    fn classify_window(&self) -> Option<DtmfDigit> {
        let energy: f32 = self.window.iter().map(|x| x * x).sum();
        if energy <= 0.0 {
            return None;
        }
        let mut powers = [0f32; 8];
        for (power, &coefficient) in powers.iter_mut().zip(self.coefficients.iter()) {
            let (mut s1, mut s2) = (0f32, 0f32);
            let (older, newer) = self.window.split_at(self.oldest.min(WINDOW));
            for &x in newer.iter().chain(older.iter()) {
                let s = x + coefficient * s1 - s2;
                s2 = s1;
                s1 = s;
            }
            *power = (s1 * s1 + s2 * s2 - coefficient * s1 * s2).max(0.0);
        }
        let (row, row_power) = strongest(&powers[..4])?;
        let (column, column_power) = strongest(&powers[4..])?;
        // A tone of amplitude A over N samples has Goertzel power (A·N/2)².
        let n = WINDOW as f32;
        let min_power = (MIN_TONE_AMPLITUDE * n / 2.0).powi(2);
        if row_power < min_power || column_power < min_power {
            return None;
        }
        let group_ok = |group: &[f32], peak: usize, peak_power: f32| {
            group
                .iter()
                .enumerate()
                .all(|(i, p)| i == peak || *p * PEAK_RATIO <= peak_power)
        };
        if !group_ok(&powers[..4], row, row_power) || !group_ok(&powers[4..], column, column_power)
        {
            return None;
        }
        if row_power > column_power * MAX_TWIST || column_power > row_power * MAX_TWIST {
            return None;
        }
        // Energy of a tone is N·A²/2 = 2·power/N.
        let tone_energy = 2.0 * (row_power + column_power) / n;
        if tone_energy < MIN_TONE_SHARE * energy {
            return None;
        }
        KEYPAD.get(row).and_then(|r| r.get(column)).copied()
    }

    fn track(&mut self, digit: Option<DtmfDigit>) -> Option<DtmfDigit> {
        if digit.is_some() && digit == self.candidate {
            self.candidate_windows += 1;
        } else {
            self.candidate = digit;
            self.candidate_windows = u32::from(digit.is_some());
        }
        if digit.is_none() || digit != self.reported {
            self.absent_windows += 1;
            if self.absent_windows >= WINDOWS_TO_RELEASE {
                self.reported = None;
            }
        } else {
            self.absent_windows = 0;
        }
        if self.candidate_windows >= WINDOWS_TO_ACCEPT && self.reported.is_none() {
            self.reported = self.candidate;
            self.absent_windows = 0;
            return self.candidate;
        }
        None
    }
}

fn strongest(powers: &[f32]) -> Option<(usize, f32)> {
    powers
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_codes_and_chars() {
        for code in 0..16u8 {
            let digit = DtmfDigit::from_event_code(code).unwrap();
            assert_eq!(digit.event_code(), code);
            assert_eq!(DtmfDigit::from_char(digit.as_char()), Some(digit));
        }
        assert_eq!(DtmfDigit::from_event_code(16), None);
        assert_eq!(DtmfDigit::from_char('#'), Some(DtmfDigit::Pound));
        assert_eq!(DtmfDigit::from_char('b'), Some(DtmfDigit::B));
        assert_eq!(DtmfDigit::from_char('x'), None);
    }

    #[test]
    fn payload_round_trip() {
        let event = TelephoneEvent {
            event: 11,
            end: EventEnd::Ended,
            volume: 10,
            duration: 1600,
        };
        let mut buf = [0u8; 4];
        event.write(&mut buf).unwrap();
        assert_eq!(buf, [11, 0x8A, 0x06, 0x40]);
        assert_eq!(TelephoneEvent::parse(&buf), Ok(event));
        assert_eq!(
            TelephoneEvent::parse(&buf[..3]),
            Err(DtmfError::TooShort(3))
        );
        assert_eq!(event.write(&mut [0u8; 3]), Err(DtmfError::BufferTooSmall));
    }

    fn feed_plan(
        rx: &mut DtmfReceiver,
        t0: Instant,
        ts: u32,
        digit: DtmfDigit,
        ms: u64,
        skip: impl Fn(usize) -> bool,
    ) {
        for (i, p) in digit_packets(digit, Duration::from_millis(ms), 10).enumerate() {
            if !skip(i) {
                rx.receive(t0 + p.offset, ts, &p.event);
            }
        }
    }

    fn drain(rx: &mut DtmfReceiver) -> Vec<ReceivedDigit> {
        std::iter::from_fn(|| rx.poll_digit()).collect()
    }

    #[test]
    fn sender_plan_shape() {
        let plan: Vec<_> = digit_packets(DtmfDigit::D5, Duration::from_millis(120), 10).collect();
        let offsets: Vec<u64> = plan.iter().map(|p| p.offset.as_millis() as u64).collect();
        assert_eq!(offsets, vec![0, 50, 100, 120, 140, 160]);
        assert_eq!(plan[0].marker, Marker::Set);
        assert!(plan[1..].iter().all(|p| p.marker == Marker::Clear));
        let durations: Vec<u16> = plan.iter().map(|p| p.event.duration).collect();
        assert_eq!(durations, vec![400, 800, 960, 960, 960, 960]);
        let ends = plan
            .iter()
            .filter(|p| p.event.end == EventEnd::Ended)
            .count();
        assert_eq!(ends, 3);
        assert!(plan.iter().all(|p| p.event.event == 5));
    }

    #[test]
    fn one_digit_per_event_with_end_retransmissions_counted_once() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        feed_plan(&mut rx, t0, 1000, DtmfDigit::D1, 100, |_| false);
        feed_plan(
            &mut rx,
            t0 + Duration::from_secs(1),
            9000,
            DtmfDigit::D2,
            160,
            |_| false,
        );
        let digits = drain(&mut rx);
        assert_eq!(digits.len(), 2);
        assert_eq!(
            (digits[0].digit, digits[0].duration, digits[0].ended_by),
            (DtmfDigit::D1, 800, EndedBy::EndPacket)
        );
        assert_eq!((digits[1].digit, digits[1].duration), (DtmfDigit::D2, 1280));
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn same_digit_twice_is_two_events() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        feed_plan(&mut rx, t0, 1000, DtmfDigit::D7, 100, |_| false);
        feed_plan(&mut rx, t0, 3000, DtmfDigit::D7, 100, |_| false);
        assert_eq!(
            drain(&mut rx).iter().map(|d| d.digit).collect::<Vec<_>>(),
            vec![DtmfDigit::D7, DtmfDigit::D7]
        );
    }

    #[test]
    fn lost_start_packet_still_yields_digit() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        // Drop the start and all updates: only end packets arrive.
        feed_plan(&mut rx, t0, 1000, DtmfDigit::Pound, 100, |i| i < 2);
        let digits = drain(&mut rx);
        assert_eq!(digits.len(), 1);
        assert_eq!(
            (digits[0].digit, digits[0].duration),
            (DtmfDigit::Pound, 800)
        );
    }

    #[test]
    fn lost_end_packets_reported_by_next_event_or_silence() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        feed_plan(&mut rx, t0, 1000, DtmfDigit::D3, 100, |i| i >= 2);
        assert!(drain(&mut rx).is_empty());
        feed_plan(
            &mut rx,
            t0 + Duration::from_millis(300),
            4000,
            DtmfDigit::D4,
            100,
            |i| i >= 2,
        );
        let first = drain(&mut rx);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (first[0].digit, first[0].ended_by),
            (DtmfDigit::D3, EndedBy::NextEvent)
        );
        let deadline = rx.poll_timeout().unwrap();
        rx.handle_timeout(deadline - Duration::from_millis(1));
        assert!(drain(&mut rx).is_empty());
        rx.handle_timeout(deadline);
        let second = drain(&mut rx);
        assert_eq!(
            (second[0].digit, second[0].ended_by, second[0].duration),
            (DtmfDigit::D4, EndedBy::Silence, 800)
        );
    }

    #[test]
    fn reset_accepts_events_with_older_timestamps() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        feed_plan(&mut rx, t0, 90_000, DtmfDigit::D1, 100, |_| false);
        feed_plan(&mut rx, t0, 500, DtmfDigit::D2, 100, |_| false);
        assert_eq!(
            drain(&mut rx).len(),
            1,
            "older timestamp looks like a straggler"
        );
        rx.reset();
        feed_plan(&mut rx, t0, 500, DtmfDigit::D2, 100, |_| false);
        assert_eq!(drain(&mut rx)[0].digit, DtmfDigit::D2);
    }

    #[test]
    fn late_packets_of_a_finished_event_are_ignored() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::default();
        feed_plan(&mut rx, t0, 5000, DtmfDigit::D9, 100, |_| false);
        let update = TelephoneEvent {
            event: 9,
            end: EventEnd::Continuing,
            volume: 10,
            duration: 400,
        };
        rx.receive(t0 + Duration::from_secs(1), 5000, &update);
        rx.receive(t0 + Duration::from_secs(1), 4000, &update);
        assert_eq!(drain(&mut rx).len(), 1);
        assert_eq!(rx.poll_timeout(), None);
    }

    // --- in-band ---

    struct Noise(u64);
    impl Noise {
        /// Uniform noise in [-amplitude, amplitude] from a fixed-seed LCG.
        fn next(&mut self, amplitude: f32) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let unit = ((self.0 >> 33) as f32) / (1u64 << 31) as f32;
            (unit * 2.0 - 1.0) * amplitude
        }
    }

    fn frequencies(digit: DtmfDigit) -> (f32, f32) {
        for (r, row) in KEYPAD.iter().enumerate() {
            for (c, d) in row.iter().enumerate() {
                if *d == digit {
                    return (ROWS[r], COLUMNS[c]);
                }
            }
        }
        unreachable!()
    }

    fn tone(
        out: &mut Vec<i16>,
        freqs: &[f32],
        amplitude: f32,
        ms: usize,
        noise: &mut Noise,
        noise_amp: f32,
    ) {
        let start = out.len();
        for i in 0..ms * 8 {
            let t = (start + i) as f32 / SAMPLE_RATE;
            let mut v: f32 = freqs
                .iter()
                .map(|f| amplitude * (2.0 * std::f32::consts::PI * f * t).sin())
                .sum();
            v += noise.next(noise_amp);
            out.push(v.clamp(-32768.0, 32767.0) as i16);
        }
    }

    fn detect(samples: &[i16]) -> String {
        let mut detector = InbandDetector::new();
        // Feed in 20 ms frames like the RTP path does.
        samples
            .chunks(160)
            .flat_map(|frame| detector.process(frame))
            .map(|d| d.digit.as_char())
            .collect()
    }

    #[test]
    fn detects_all_sixteen_digits_in_noise() {
        let mut noise = Noise(1);
        let mut audio = vec![];
        let keys = "0123456789*#ABCD";
        for key in keys.chars() {
            let (low, high) = frequencies(DtmfDigit::from_char(key).unwrap());
            tone(&mut audio, &[low, high], 4000.0, 70, &mut noise, 300.0);
            tone(&mut audio, &[], 0.0, 60, &mut noise, 300.0);
        }
        assert_eq!(detect(&audio), keys);
    }

    #[test]
    fn forty_ms_tone_detected_with_twist_and_offset() {
        let mut noise = Noise(7);
        for offset_ms in [0usize, 3, 5, 7] {
            let mut audio = vec![];
            tone(&mut audio, &[], 0.0, 10 + offset_ms, &mut noise, 200.0);
            // Row 6 dB weaker than column (normal twist): 852 Hz at half the amplitude of 1477 Hz.
            tone(
                &mut audio,
                &[852.0, 1477.0, 1477.0],
                2000.0,
                40,
                &mut noise,
                200.0,
            );
            tone(&mut audio, &[], 0.0, 50, &mut noise, 200.0);
            assert_eq!(detect(&audio), "9", "offset {offset_ms}");
        }
    }

    #[test]
    fn detects_digits_after_alaw_companding() {
        use crate::media::g711::Codec;
        let mut noise = Noise(9);
        let mut audio = vec![];
        for key in "*0#".chars() {
            let (low, high) = frequencies(DtmfDigit::from_char(key).unwrap());
            tone(&mut audio, &[low, high], 1500.0, 50, &mut noise, 100.0);
            tone(&mut audio, &[], 0.0, 50, &mut noise, 100.0);
        }
        let companded: Vec<i16> = audio
            .iter()
            .map(|s| Codec::Pcma.decode(Codec::Pcma.encode(*s)))
            .collect();
        assert_eq!(detect(&companded), "*0#");
    }

    #[test]
    fn tones_below_the_level_threshold_are_ignored() {
        let mut noise = Noise(13);
        let mut audio = vec![];
        tone(&mut audio, &[697.0, 1209.0], 200.0, 200, &mut noise, 0.0);
        assert_eq!(detect(&audio), "");
    }

    #[test]
    fn short_tone_is_rejected() {
        let mut noise = Noise(3);
        let mut audio = vec![];
        tone(&mut audio, &[], 0.0, 15, &mut noise, 100.0);
        tone(&mut audio, &[770.0, 1336.0], 4000.0, 20, &mut noise, 100.0);
        tone(&mut audio, &[], 0.0, 100, &mut noise, 100.0);
        assert_eq!(detect(&audio), "");
    }

    #[test]
    fn long_tone_reported_once_and_repeats_need_a_gap() {
        let mut noise = Noise(5);
        let mut audio = vec![];
        tone(
            &mut audio,
            &[697.0, 1209.0],
            5000.0,
            2000,
            &mut noise,
            200.0,
        );
        tone(&mut audio, &[], 0.0, 60, &mut noise, 200.0);
        tone(&mut audio, &[697.0, 1209.0], 5000.0, 80, &mut noise, 200.0);
        assert_eq!(detect(&audio), "11");
    }

    #[test]
    fn single_tones_noise_and_speech_like_audio_do_not_trigger() {
        let mut noise = Noise(11);
        let mut audio = vec![];
        for f in ROWS.iter().chain(COLUMNS.iter()) {
            tone(&mut audio, &[*f], 8000.0, 200, &mut noise, 100.0);
        }
        tone(&mut audio, &[], 0.0, 1000, &mut noise, 8000.0);
        // Speech-like: a 140 Hz voiced source with 20 harmonics, formant-shaped and moving.
        for i in 0..8000 * 3 {
            let t = i as f32 / SAMPLE_RATE;
            let f0 = 140.0 + 20.0 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
            let formant = 700.0 + 500.0 * (2.0 * std::f32::consts::PI * 1.5 * t).sin();
            let mut v = 0.0;
            for h in 1..=20 {
                let f = f0 * h as f32;
                let gain = 1.0 / (1.0 + ((f - formant) / 150.0).powi(2))
                    + 0.4 / (1.0 + ((f - 1400.0) / 200.0).powi(2));
                v += 3000.0 * gain * (2.0 * std::f32::consts::PI * f * t).sin();
            }
            audio.push((v + noise.next(300.0)).clamp(-32768.0, 32767.0) as i16);
        }
        assert_eq!(detect(&audio), "");
    }
}
