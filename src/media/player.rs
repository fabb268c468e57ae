//! Prompt player: 8 kHz mono 16-bit PCM prompts played as 20 ms frames on an absolute
//! schedule.
//!
//! # Calling contract
//! * Load prompts once with [`load_wav`] (cheap to clone: the PCM is shared).
//! * Build a [`Playlist`] (segments played back to back, e.g. "您前面还有" + "3" + "位来电人";
//!   [`Repeat::Loop`] for hold music) and a [`Player`] with the playback start `Instant`.
//! * Keep a timer at [`Player::poll_timeout`]; when it fires call [`Player::poll`] until it
//!   returns `None`, encoding and sending each [`Frame`]. Frame `k` is due at exactly
//!   `start + k·20 ms` with media timestamp `k·160`, so there is no drift however late the
//!   timer fires. If the caller falls more than [`MAX_LATENESS`] behind, the player skips
//!   the frames it missed (audio and timestamps advance, nothing is sent in a burst) and
//!   sets the marker on the next frame.
//! * On a DTMF digit call [`Player::dtmf`]; with [`BargeIn::StopOnDtmf`] playback stops.
//! * [`Player::is_finished`] tells when the playlist has ended (or was stopped).
//!
//! The frame timestamp is the media clock since the playback start; the RTP session adds its
//! random offset (`RtpSession::next_header`).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::rtp::Marker;

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Frame duration.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Beyond this lateness the player skips ahead instead of catching up.
pub const MAX_LATENESS: Duration = Duration::from_millis(60);
const SAMPLE_RATE: u32 = 8000;

/// Why a prompt could not be loaded.
#[derive(Debug, Error)]
pub enum PlayerError {
    #[error("cannot read WAV: {0}")]
    Wav(#[from] hound::Error),
    #[error(
        "prompt must be 8000 Hz mono 16-bit PCM, found {sample_rate} Hz, {channels} channel(s), {bits} bit"
    )]
    UnsupportedFormat {
        sample_rate: u32,
        channels: u16,
        bits: u16,
    },
}

/// Decoded prompt audio, shared between calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt(Arc<[i16]>);

impl Prompt {
    pub fn from_pcm(samples: Vec<i16>) -> Prompt {
        Prompt(samples.into())
    }

    pub fn samples(&self) -> &[i16] {
        &self.0
    }

    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.0.len() as u64 * 1_000_000 / u64::from(SAMPLE_RATE))
    }
}

/// Load an 8 kHz mono 16-bit WAV file.
///
/// # Errors
/// [`PlayerError::Wav`] for I/O or format errors, [`PlayerError::UnsupportedFormat`].
pub fn load_wav(path: &Path) -> Result<Prompt, PlayerError> {
    prompt_from_wav(std::io::BufReader::new(
        std::fs::File::open(path).map_err(hound::Error::IoError)?,
    ))
}

/// Read an 8 kHz mono 16-bit WAV from any reader.
///
/// # Errors
/// As [`load_wav`].
pub fn prompt_from_wav<R: Read>(reader: R) -> Result<Prompt, PlayerError> {
    let reader = hound::WavReader::new(reader)?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(PlayerError::UnsupportedFormat {
            sample_rate: spec.sample_rate,
            channels: spec.channels,
            bits: spec.bits_per_sample,
        });
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prompt::from_pcm(samples))
}

/// One piece of a playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Prompt(Prompt),
    Silence(Duration),
}

impl Segment {
    /// How long the segment plays.
    pub fn duration(&self) -> Duration {
        match self {
            Segment::Prompt(p) => p.duration(),
            Segment::Silence(d) => *d,
        }
    }

    fn len(&self) -> usize {
        match self {
            Segment::Prompt(p) => p.samples().len(),
            Segment::Silence(d) => {
                (d.as_millis() as usize).saturating_mul(SAMPLE_RATE as usize / 1000)
            }
        }
    }
}

/// Play once or forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    Once,
    Loop,
}

/// Segments played back to back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playlist {
    pub segments: Vec<Segment>,
    pub repeat: Repeat,
}

impl Playlist {
    pub fn once(segments: Vec<Segment>) -> Playlist {
        Playlist {
            segments,
            repeat: Repeat::Once,
        }
    }

    pub fn looping(segments: Vec<Segment>) -> Playlist {
        Playlist {
            segments,
            repeat: Repeat::Loop,
        }
    }

    fn total_samples(&self) -> usize {
        self.segments.iter().map(Segment::len).sum()
    }
}

/// What a DTMF digit does to playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BargeIn {
    StopOnDtmf,
    Ignore,
}

/// One 20 ms frame of audio to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub samples: [i16; FRAME_SAMPLES],
    /// Media timestamp (samples since playback start).
    pub timestamp: u32,
    /// When this frame was due.
    pub due: Instant,
    /// Set on the first frame and the first after a skip.
    pub marker: Marker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Playing,
    Finished,
}

/// See the module docs.
#[derive(Debug)]
pub struct Player {
    playlist: Playlist,
    start: Instant,
    barge_in: BargeIn,
    next_frame: u64,
    segment: usize,
    offset: usize,
    state: State,
    marker_pending: bool,
}

impl Player {
    pub fn new(playlist: Playlist, start: Instant, barge_in: BargeIn) -> Player {
        let state = if playlist.total_samples() == 0 {
            State::Finished
        } else {
            State::Playing
        };
        Player {
            playlist,
            start,
            barge_in,
            next_frame: 0,
            segment: 0,
            offset: 0,
            state,
            marker_pending: true,
        }
    }

    /// Due time of frame `index`.
    fn due(&self, index: u64) -> Instant {
        self.start + FRAME_DURATION * u32::try_from(index).unwrap_or(u32::MAX)
    }

    /// When the next frame is due; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state == State::Playing).then(|| self.due(self.next_frame))
    }

    /// Media timestamp of the next frame (after the end: the total length played).
    pub fn next_timestamp(&self) -> u32 {
        (self.next_frame * FRAME_SAMPLES as u64) as u32
    }

    /// Due time of the next frame (after the end: the time the last frame finished).
    pub fn next_due(&self) -> Instant {
        self.due(self.next_frame)
    }

    pub fn is_finished(&self) -> bool {
        self.state == State::Finished
    }

    /// A digit arrived; returns true if it stopped playback.
    pub fn dtmf(&mut self) -> bool {
        if self.barge_in == BargeIn::StopOnDtmf && self.state == State::Playing {
            self.state = State::Finished;
            return true;
        }
        false
    }

    /// Stop playback now.
    pub fn stop(&mut self) {
        self.state = State::Finished;
    }

    /// The next frame if it is due at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Frame> {
        if self.state != State::Playing || now < self.due(self.next_frame) {
            return None;
        }
        let late = now.saturating_duration_since(self.due(self.next_frame));
        if late > MAX_LATENESS {
            // Skip to the frame due now (or the one just before), keeping audio and
            // timestamps on the wall-clock schedule.
            let elapsed = now.saturating_duration_since(self.start);
            let current = (elapsed.as_nanos() / FRAME_DURATION.as_nanos()) as u64;
            let skipped = current.saturating_sub(self.next_frame);
            for _ in 0..skipped {
                self.fill(None);
                self.next_frame += 1;
                if self.state == State::Finished {
                    return None;
                }
            }
            self.marker_pending = true;
        }
        let mut samples = [0i16; FRAME_SAMPLES];
        self.fill(Some(&mut samples));
        let frame = Frame {
            samples,
            timestamp: self.next_timestamp(),
            due: self.due(self.next_frame),
            marker: if self.marker_pending {
                Marker::Set
            } else {
                Marker::Clear
            },
        };
        self.marker_pending = false;
        self.next_frame += 1;
        Some(frame)
    }

    /// Copy (or skip, when `out` is `None`) one frame of samples; pads with silence at the
    /// end of a `Once` playlist and marks it finished.
    fn fill(&mut self, mut out: Option<&mut [i16; FRAME_SAMPLES]>) {
        let mut written = 0;
        while written < FRAME_SAMPLES {
            let Some(segment) = self.playlist.segments.get(self.segment) else {
                match self.playlist.repeat {
                    Repeat::Loop => {
                        self.segment = 0;
                        self.offset = 0;
                        continue;
                    }
                    Repeat::Once => {
                        self.state = State::Finished;
                        return; // rest of the frame stays silent
                    }
                }
            };
            let available = segment.len().saturating_sub(self.offset);
            let take = available.min(FRAME_SAMPLES - written);
            if let (Some(out), Segment::Prompt(prompt)) = (out.as_deref_mut(), segment) {
                if let (Some(dst), Some(src)) = (
                    out.get_mut(written..written + take),
                    prompt.samples().get(self.offset..self.offset + take),
                ) {
                    dst.copy_from_slice(src);
                }
            }
            written += take;
            self.offset += take;
            if self.offset >= segment.len() {
                self.segment += 1;
                self.offset = 0;
            }
        }
        if self.playlist.repeat == Repeat::Once && self.segment >= self.playlist.segments.len() {
            self.state = State::Finished;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(start: i16, len: usize) -> Prompt {
        Prompt::from_pcm((0..len).map(|i| start.wrapping_add(i as i16)).collect())
    }

    fn run_to_end(player: &mut Player) -> Vec<Frame> {
        let mut frames = vec![];
        while let Some(at) = player.poll_timeout() {
            while let Some(frame) = player.poll(at) {
                frames.push(frame);
            }
        }
        frames
    }

    #[test]
    fn ten_minute_prompt_has_no_drift() {
        let t0 = Instant::now();
        let prompt = Prompt::from_pcm(vec![1; 8000 * 600]);
        let mut player = Player::new(
            Playlist::once(vec![Segment::Prompt(prompt)]),
            t0,
            BargeIn::Ignore,
        );
        let mut count = 0u64;
        let mut last = None;
        // Wake up late by a varying 0–15 ms each time, like a real timer.
        let mut jitter = 0u64;
        while let Some(at) = player.poll_timeout() {
            jitter = (jitter * 7 + 3) % 16;
            let now = at + Duration::from_millis(jitter);
            while let Some(frame) = player.poll(now) {
                assert_eq!(frame.due, t0 + FRAME_DURATION * count as u32);
                assert_eq!(frame.timestamp as u64, count * 160);
                count += 1;
                last = Some(frame);
            }
        }
        let last = last.unwrap();
        assert_eq!(count, 30_000);
        assert_eq!(last.timestamp + 160, 4_800_000);
        assert_eq!(player.next_timestamp(), 4_800_000);
        assert_eq!(last.due + FRAME_DURATION, t0 + Duration::from_secs(600));
        assert_eq!(player.next_due(), t0 + Duration::from_secs(600));
        assert!(player.is_finished());
    }

    #[test]
    fn late_caller_skips_ahead_instead_of_bursting() {
        let t0 = Instant::now();
        let mut player = Player::new(
            Playlist::once(vec![Segment::Prompt(ramp(0, 8000))]),
            t0,
            BargeIn::Ignore,
        );
        assert!(player.poll(t0).is_some());
        // Stall for 200 ms.
        let now = t0 + Duration::from_millis(210);
        let burst: Vec<Frame> = std::iter::from_fn(|| player.poll(now)).collect();
        assert_eq!(burst.len(), 1, "no burst after a long stall");
        assert_eq!(burst[0].timestamp, 10 * 160, "skipped to the frame due now");
        assert_eq!(burst[0].samples[0], 1600, "audio skipped too");
        assert_eq!(burst[0].marker, Marker::Set);
        // Slightly late (40 ms, frames due at 220, 240, 260): catch up, no skip.
        let now = t0 + Duration::from_millis(260);
        assert_eq!(
            std::iter::from_fn(|| player.poll(now))
                .map(|f| f.timestamp)
                .collect::<Vec<_>>(),
            vec![11 * 160, 12 * 160, 13 * 160]
        );
    }

    #[test]
    fn concatenation_keeps_order_across_frame_boundaries() {
        let t0 = Instant::now();
        let playlist = Playlist::once(vec![
            Segment::Prompt(ramp(1000, 100)),
            Segment::Prompt(ramp(2000, 250)),
            Segment::Silence(Duration::from_millis(5)),
            Segment::Prompt(ramp(3000, 10)),
        ]);
        let mut player = Player::new(playlist, t0, BargeIn::Ignore);
        let frames = run_to_end(&mut player);
        let all: Vec<i16> = frames.iter().flat_map(|f| f.samples).collect();
        let mut expected: Vec<i16> = (1000..1100).chain(2000..2250).collect();
        expected.extend([0; 40]);
        expected.extend(3000..3010);
        expected.resize(480, 0);
        assert_eq!(frames.len(), 3);
        assert_eq!(all, expected);
        assert_eq!(frames[0].marker, Marker::Set);
        assert_eq!(frames[1].marker, Marker::Clear);
    }

    #[test]
    fn loop_repeats_until_stopped_and_barge_in_stops() {
        let t0 = Instant::now();
        let mut player = Player::new(
            Playlist::looping(vec![Segment::Prompt(ramp(0, 100))]),
            t0,
            BargeIn::StopOnDtmf,
        );
        let mut frames = vec![];
        for k in 0..50u32 {
            frames.extend(player.poll(t0 + FRAME_DURATION * k));
        }
        assert_eq!(frames.len(), 50);
        assert_eq!(frames[0].samples[100], 0, "wraps to the start");
        assert_eq!(frames[0].samples[101], 1);
        assert_eq!(frames[49].samples[0], ((49 * 160) % 100) as i16);
        assert!(!player.is_finished());
        assert!(player.dtmf());
        assert!(player.is_finished());
        assert_eq!(player.poll_timeout(), None);
        assert_eq!(player.poll(t0 + Duration::from_secs(5)), None);
    }

    #[test]
    fn dtmf_ignored_without_barge_in() {
        let t0 = Instant::now();
        let mut player = Player::new(
            Playlist::once(vec![Segment::Prompt(ramp(0, 1000))]),
            t0,
            BargeIn::Ignore,
        );
        assert!(!player.dtmf());
        assert_eq!(run_to_end(&mut player).len(), 7);
    }

    #[test]
    fn empty_playlist_is_finished() {
        let player = Player::new(Playlist::looping(vec![]), Instant::now(), BargeIn::Ignore);
        assert!(player.is_finished());
    }

    #[test]
    fn loads_wav_and_rejects_wrong_format() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&good, spec).unwrap();
        for s in [1i16, -2, 3] {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        assert_eq!(load_wav(&good).unwrap().samples(), &[1, -2, 3]);
        let bad = dir.path().join("bad.wav");
        let mut w = hound::WavWriter::create(
            &bad,
            hound::WavSpec {
                sample_rate: 16000,
                ..spec
            },
        )
        .unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        assert!(matches!(
            load_wav(&bad),
            Err(PlayerError::UnsupportedFormat {
                sample_rate: 16000,
                ..
            })
        ));
        assert!(matches!(
            load_wav(&dir.path().join("missing.wav")),
            Err(PlayerError::Wav(_))
        ));
    }
}
