//! Call recorder: stereo WAV (left = caller, right = agent) and mono voice messages,
//! 8 kHz 16-bit PCM, aligned to wall-clock time and safe against crashes.
//!
//! # Calling contract
//! * Create with [`WavRecorder::create_stereo`] / [`WavRecorder::create_mono`] (a file) or
//!   [`WavRecorder::new`] (any `Write + Seek`), passing the call's start `Instant`.
//! * For every decoded 20 ms frame: [`WavRecorder::push`] with its arrival time and channel.
//!   Frames are placed by arrival time: a gap longer than [`RecorderConfig::gap_tolerance`]
//!   is filled with silence, small jitter is absorbed, and audio arriving far ahead of the
//!   wall clock (a burst) is dropped, so the two channels stay aligned with each other and
//!   with real time. Audio is committed to the file [`RecorderConfig::commit_delay`] behind
//!   the wall clock so that late frames still find their place.
//! * Call [`WavRecorder::tick`] at least at [`WavRecorder::poll_timeout`] (≈ every second)
//!   so that silent channels advance and the header is patched.
//! * At hang-up: [`WavRecorder::finish`].
//!
//! # Crash safety
//! `hound` writes the file; every [`RecorderConfig::header_interval`] its
//! `WavWriter::flush` writes the buffered audio and updates the header's two size fields,
//! so a crash leaves a WAV that plays up to the last flush. Audio written after it is on
//! disk but outside the sizes: on start-up, [`repair_wav`] (ours: hound has no repair, and
//! its `WavWriter::append` trusts the stale sizes) extends them to cover everything.
//!
//! # Disk errors
//! The first I/O error is returned as [`RecorderError::Io`] (log it; the call continues); the
//! recorder is then [`RecorderState::Failed`] and silently drops audio.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

const SAMPLE_RATE: u32 = 8000;
const BYTES_PER_SAMPLE: u16 = 2;
#[cfg(test)]
const HEADER_LEN: u64 = 44;
/// Buffered audio reaches the file once this many bytes are pending (≈ 0.5 s of stereo).
const WRITE_CHUNK: usize = 16_000;

/// Which side of the call a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Left channel (and the only one of a mono recording).
    Caller,
    /// Right channel.
    Agent,
}

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecorderOp {
    Create,
    Write,
    PatchHeader,
    Read,
}

/// Recorder errors.
#[derive(Debug, Error)]
pub enum RecorderError {
    #[error("recording I/O failed during {op:?}: {source}")]
    Io {
        op: RecorderOp,
        #[source]
        source: io::Error,
    },
    /// hound refused a write other than for I/O (it cannot happen with our fixed format).
    #[error("WAV writer failed during {op:?}: {source}")]
    Wav {
        op: RecorderOp,
        #[source]
        source: hound::Error,
    },
    #[error("not a RIFF/WAVE file")]
    NotWav,
    #[error("WAV file has no data chunk")]
    NoDataChunk,
}

fn io_error(op: RecorderOp) -> impl FnOnce(io::Error) -> RecorderError {
    move |source| RecorderError::Io { op, source }
}

fn wav_error(op: RecorderOp) -> impl FnOnce(hound::Error) -> RecorderError {
    move |source| match source {
        hound::Error::IoError(source) => RecorderError::Io { op, source },
        source => RecorderError::Wav { op, source },
    }
}

/// Tunables; the defaults suit 20 ms G.711 frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderConfig {
    /// A frame arriving later than this after the previous one's slot leaves silence behind.
    pub gap_tolerance: Duration,
    /// Audio more than this ahead of the wall clock is dropped.
    pub max_ahead: Duration,
    /// How far behind the wall clock audio is committed to the file.
    pub commit_delay: Duration,
    /// How often the header sizes are patched.
    pub header_interval: Duration,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            gap_tolerance: Duration::from_millis(60),
            max_ahead: Duration::from_millis(300),
            commit_delay: Duration::from_millis(200),
            header_interval: Duration::from_secs(1),
        }
    }
}

/// Recording or failed (after a disk error audio is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecorderState {
    Recording,
    Failed,
}

/// Summary returned by [`WavRecorder::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingSummary {
    /// Sample frames written (per channel).
    pub frames: u64,
    pub duration: Duration,
    /// Frames dropped because they ran too far ahead of the wall clock.
    pub dropped_frames: u64,
}

fn samples_since(start: Instant, now: Instant) -> u64 {
    (now.saturating_duration_since(start).as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u64
}

fn duration_to_samples(d: Duration) -> u64 {
    (d.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u64
}

/// See the module docs.
pub struct WavRecorder<W: Write + Seek> {
    sink: hound::WavWriter<BufWriter<W>>,
    config: RecorderConfig,
    channels: u16,
    start: Instant,
    /// Sample frames committed (in the file or the write buffer).
    committed: u64,
    /// Per channel, the samples from position `committed` onwards.
    lanes: [VecDeque<i16>; 2],
    last_patch: Instant,
    state: RecorderState,
    dropped_frames: u64,
}

impl<W: Write + Seek> std::fmt::Debug for WavRecorder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavRecorder")
            .field("channels", &self.channels)
            .field("committed", &self.committed)
            .field("state", &self.state)
            .field("dropped_frames", &self.dropped_frames)
            .finish_non_exhaustive()
    }
}

impl WavRecorder<File> {
    /// Create a stereo call recording at `path` (parent directories must exist).
    ///
    /// # Errors
    /// [`RecorderError::Io`] with [`RecorderOp::Create`].
    pub fn create_stereo(
        path: &Path,
        start: Instant,
        config: RecorderConfig,
    ) -> Result<Self, RecorderError> {
        let file = File::create(path).map_err(io_error(RecorderOp::Create))?;
        WavRecorder::new(file, 2, start, config)
    }

    /// Create a mono voice-message recording at `path`.
    ///
    /// # Errors
    /// [`RecorderError::Io`] with [`RecorderOp::Create`].
    pub fn create_mono(
        path: &Path,
        start: Instant,
        config: RecorderConfig,
    ) -> Result<Self, RecorderError> {
        let file = File::create(path).map_err(io_error(RecorderOp::Create))?;
        WavRecorder::new(file, 1, start, config)
    }
}

impl<W: Write + Seek> WavRecorder<W> {
    /// Start a recording with `channels` (1 or 2; anything else is treated as 2) into `sink`.
    ///
    /// # Errors
    /// [`RecorderError::Io`] if the header cannot be written.
    pub fn new(
        sink: W,
        channels: u16,
        start: Instant,
        config: RecorderConfig,
    ) -> Result<Self, RecorderError> {
        let channels = if channels == 1 { 1 } else { 2 };
        let spec = hound::WavSpec {
            channels,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: BYTES_PER_SAMPLE * 8,
            sample_format: hound::SampleFormat::Int,
        };
        let mut sink = hound::WavWriter::new(BufWriter::with_capacity(WRITE_CHUNK, sink), spec)
            .map_err(wav_error(RecorderOp::Create))?;
        // The header on disk now, as before any audio.
        sink.flush().map_err(wav_error(RecorderOp::Create))?;
        Ok(WavRecorder {
            sink,
            config,
            channels,
            start,
            committed: 0,
            lanes: [VecDeque::new(), VecDeque::new()],
            last_patch: start,
            state: RecorderState::Recording,
            dropped_frames: 0,
        })
    }

    pub fn state(&self) -> RecorderState {
        self.state
    }

    /// When [`Self::tick`] should next be called.
    pub fn poll_timeout(&self) -> Instant {
        self.last_patch + self.config.header_interval
    }

    /// Add a frame received at `now` on `channel`. A mono recorder ignores the agent channel.
    ///
    /// # Errors
    /// The first disk error (see module docs); afterwards `Ok` and the audio is dropped.
    pub fn push(
        &mut self,
        now: Instant,
        channel: Channel,
        samples: &[i16],
    ) -> Result<(), RecorderError> {
        if self.state == RecorderState::Failed {
            return Ok(());
        }
        let lane_index = match channel {
            Channel::Caller => 0,
            Channel::Agent if self.channels == 2 => 1,
            Channel::Agent => return Ok(()),
        };
        let arrival = samples_since(self.start, now);
        let desired_start = arrival.saturating_sub(samples.len() as u64);
        let committed = self.committed;
        let lane = &mut self.lanes[lane_index];
        let end = committed + lane.len() as u64;
        if desired_start > end + duration_to_samples(self.config.gap_tolerance) {
            lane.resize((desired_start - committed) as usize, 0);
        } else if end > arrival + duration_to_samples(self.config.max_ahead) {
            self.dropped_frames += 1;
            return self.tick(now);
        }
        lane.extend(samples.iter().copied());
        self.tick(now)
    }

    /// Commit audio up to the wall clock minus the commit delay and patch the header when due.
    ///
    /// # Errors
    /// As [`Self::push`].
    pub fn tick(&mut self, now: Instant) -> Result<(), RecorderError> {
        if self.state == RecorderState::Failed {
            return Ok(());
        }
        let target = samples_since(self.start, now)
            .saturating_sub(duration_to_samples(self.config.commit_delay));
        let mut result = self.commit_until(target);
        if result.is_ok() && now >= self.last_patch + self.config.header_interval {
            self.last_patch = now;
            result = self
                .sink
                .flush()
                .map_err(wav_error(RecorderOp::PatchHeader));
        }
        result.inspect_err(|_| self.fail())
    }

    /// Write everything received, patch the header and flush.
    ///
    /// # Errors
    /// [`RecorderError::Io`] (also if the recorder had already failed: the file is incomplete).
    pub fn finish(mut self) -> Result<RecordingSummary, RecorderError> {
        if self.state == RecorderState::Failed {
            return Err(RecorderError::Io {
                op: RecorderOp::Write,
                source: io::Error::other("recorder failed earlier"),
            });
        }
        let end = self
            .lanes
            .iter()
            .map(|l| self.committed + l.len() as u64)
            .max()
            .unwrap_or(self.committed);
        self.commit_until(end)?;
        let summary = RecordingSummary {
            frames: self.committed,
            duration: Duration::from_micros(self.committed * 1_000_000 / u64::from(SAMPLE_RATE)),
            dropped_frames: self.dropped_frames,
        };
        self.sink
            .finalize()
            .map_err(wav_error(RecorderOp::PatchHeader))?;
        Ok(summary)
    }

    fn fail(&mut self) {
        self.state = RecorderState::Failed;
        self.lanes = [VecDeque::new(), VecDeque::new()];
    }

    /// Moves audio up to `target` into the writer (its buffer reaches the file every
    /// [`WRITE_CHUNK`] bytes).
    fn commit_until(&mut self, target: u64) -> Result<(), RecorderError> {
        while self.committed < target {
            for lane in self.lanes.iter_mut().take(usize::from(self.channels)) {
                let sample = lane.pop_front().unwrap_or(0);
                self.sink
                    .write_sample(sample)
                    .map_err(wav_error(RecorderOp::Write))?;
            }
            self.committed += 1;
        }
        Ok(())
    }
}

/// `root/YYYY/MM/DD/<call-id>.wav`, with characters other than letters, digits and `.-_@`
/// in the call id replaced by `_` (a Call-ID can contain `/`).
pub fn recording_path(root: &Path, date: chrono::NaiveDate, call_id: &str) -> PathBuf {
    use chrono::Datelike;
    let mut name: String = call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        name = format!("_{name}");
    }
    root.join(format!("{:04}", date.year()))
        .join(format!("{:02}", date.month()))
        .join(format!("{:02}", date.day()))
        .join(format!("{name}.wav"))
}

/// What [`repair_wav`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairOutcome {
    AlreadyConsistent,
    /// Header sizes rewritten to cover `data_bytes` of audio (a trailing partial sample
    /// frame, if any, was cut off).
    Repaired {
        data_bytes: u64,
    },
}

/// Fix the RIFF and data sizes of a WAV whose writer crashed.
///
/// # Errors
/// [`RecorderError::NotWav`], [`RecorderError::NoDataChunk`], [`RecorderError::Io`].
pub fn repair_wav(path: &Path) -> Result<RepairOutcome, RecorderError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error(RecorderOp::Read))?;
    let file_len = file.metadata().map_err(io_error(RecorderOp::Read))?.len();
    let mut riff = [0u8; 12];
    file.read_exact(&mut riff)
        .map_err(|_| RecorderError::NotWav)?;
    if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(RecorderError::NotWav);
    }
    let mut position = 12u64;
    let mut block_align = 1u64;
    loop {
        let mut chunk = [0u8; 8];
        file.seek(SeekFrom::Start(position))
            .map_err(io_error(RecorderOp::Read))?;
        file.read_exact(&mut chunk)
            .map_err(|_| RecorderError::NoDataChunk)?;
        let size = u64::from(u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]));
        if &chunk[0..4] == b"fmt " {
            let mut fmt = [0u8; 16];
            file.read_exact(&mut fmt)
                .map_err(|_| RecorderError::NotWav)?;
            block_align = u64::from(u16::from_le_bytes([fmt[12], fmt[13]])).max(1);
        }
        if &chunk[0..4] == b"data" {
            let data_start = position + 8;
            let available = file_len.saturating_sub(data_start);
            let data_bytes =
                (available - available % block_align).min(u64::from(u32::MAX) - data_start);
            let riff_size = data_start + data_bytes - 8;
            let current_riff = u64::from(u32::from_le_bytes([riff[4], riff[5], riff[6], riff[7]]));
            if size == data_bytes
                && current_riff == riff_size
                && data_start + data_bytes == file_len
            {
                return Ok(RepairOutcome::AlreadyConsistent);
            }
            let fix = (|| -> io::Result<()> {
                file.set_len(data_start + data_bytes)?;
                file.seek(SeekFrom::Start(4))?;
                file.write_all(&(riff_size as u32).to_le_bytes())?;
                file.seek(SeekFrom::Start(position + 4))?;
                file.write_all(&(data_bytes as u32).to_le_bytes())?;
                file.sync_all()
            })();
            fix.map_err(io_error(RecorderOp::PatchHeader))?;
            return Ok(RepairOutcome::Repaired { data_bytes });
        }
        position += 8 + size + size % 2;
        if position >= file_len {
            return Err(RecorderError::NoDataChunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header(channels: u16, data_bytes: u32) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        let block_align = channels * BYTES_PER_SAMPLE;
        h[0..4].copy_from_slice(b"RIFF");
        h[4..8].copy_from_slice(&data_bytes.saturating_add(36).to_le_bytes());
        h[8..12].copy_from_slice(b"WAVE");
        h[12..16].copy_from_slice(b"fmt ");
        h[16..20].copy_from_slice(&16u32.to_le_bytes());
        h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
        h[22..24].copy_from_slice(&channels.to_le_bytes());
        h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
        h[28..32].copy_from_slice(&(SAMPLE_RATE * u32::from(block_align)).to_le_bytes());
        h[32..34].copy_from_slice(&block_align.to_le_bytes());
        h[34..36].copy_from_slice(&(BYTES_PER_SAMPLE * 8).to_le_bytes());
        h[36..40].copy_from_slice(b"data");
        h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
        h
    }

    const MS: Duration = Duration::from_millis(1);

    fn frame(value: i16) -> [i16; 160] {
        [value; 160]
    }

    fn read_stereo(path: &Path) -> (hound::WavSpec, Vec<(i16, i16)>) {
        let mut reader = hound::WavReader::open(path).unwrap();
        let spec = reader.spec();
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        (spec, samples.chunks(2).map(|c| (c[0], c[1])).collect())
    }

    #[test]
    fn channels_stay_aligned_across_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("call.wav");
        let t0 = Instant::now();
        let mut rec = WavRecorder::create_stereo(&path, t0, RecorderConfig::default()).unwrap();
        // Caller talks for 2 s with jittery arrival; agent is silent for 1 s (no RTP), then talks.
        for k in 1..=100u32 {
            let jitter = Duration::from_millis(u64::from(k % 3) * 4);
            rec.push(t0 + 20 * MS * k + jitter, Channel::Caller, &frame(1000))
                .unwrap();
            if k > 50 {
                rec.push(t0 + 20 * MS * k, Channel::Agent, &frame(-2000))
                    .unwrap();
            }
        }
        let summary = rec.finish().unwrap();
        assert_eq!(summary.frames, 16_000);
        let (spec, samples) = read_stereo(&path);
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 8000, 16)
        );
        assert_eq!(samples.len(), 16_000);
        assert!(
            samples.iter().all(|(l, _)| *l == 1000),
            "caller continuous despite jitter"
        );
        assert!(
            samples[..8000].iter().all(|(_, r)| *r == 0),
            "agent gap is silence"
        );
        assert!(
            samples[8000..].iter().all(|(_, r)| *r == -2000),
            "agent audio placed at 1 s"
        );
    }

    #[test]
    fn gap_in_one_channel_mid_call_is_filled_with_silence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gap.wav");
        let t0 = Instant::now();
        let mut rec = WavRecorder::create_stereo(&path, t0, RecorderConfig::default()).unwrap();
        for k in 1..=50u32 {
            rec.push(t0 + 20 * MS * k, Channel::Agent, &frame(5))
                .unwrap();
            // Caller packets 11..=20 lost (200 ms).
            if !(11..=20).contains(&k) {
                rec.push(t0 + 20 * MS * k, Channel::Caller, &frame(7))
                    .unwrap();
            }
        }
        rec.finish().unwrap();
        let (_, samples) = read_stereo(&path);
        assert_eq!(samples.len(), 8000);
        assert!(samples[..1600].iter().all(|s| s.0 == 7));
        assert!(samples[1600..3200].iter().all(|s| s.0 == 0));
        assert!(samples[3200..].iter().all(|s| s.0 == 7));
        assert!(samples.iter().all(|s| s.1 == 5));
    }

    #[test]
    fn burst_far_ahead_of_wall_clock_is_dropped() {
        let t0 = Instant::now();
        let mut rec =
            WavRecorder::new(Cursor::new(Vec::new()), 1, t0, RecorderConfig::default()).unwrap();
        for _ in 0..100 {
            rec.push(t0 + 20 * MS, Channel::Caller, &frame(1)).unwrap();
        }
        let summary = rec.finish().unwrap();
        // 20 ms of wall clock + 300 ms allowed ahead → 16 frames kept + 1 boundary frame.
        assert!(summary.frames <= 17 * 160, "{summary:?}");
        assert!(summary.dropped_frames >= 83);
    }

    #[test]
    fn header_is_patched_periodically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wav");
        let t0 = Instant::now();
        let mut rec = WavRecorder::create_mono(&path, t0, RecorderConfig::default()).unwrap();
        for k in 1..=150u32 {
            rec.push(t0 + 20 * MS * k, Channel::Caller, &frame(3))
                .unwrap();
        }
        // 3 s in: patched at 1 s, 2 s, 3 s; the last patch covers 3 s − 200 ms commit delay.
        let bytes = std::fs::read(&path).unwrap();
        let data_size = u32::from_le_bytes(bytes[40..44].try_into().unwrap());
        let riff_size = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        assert_eq!(data_size, 2 * 22_400);
        assert_eq!(riff_size, data_size + 36);
        assert_eq!(bytes.len() as u64, HEADER_LEN + u64::from(data_size));
        drop(rec);
    }

    #[test]
    fn crash_then_repair_gives_full_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crash.wav");
        let t0 = Instant::now();
        let mut rec = WavRecorder::create_stereo(&path, t0, RecorderConfig::default()).unwrap();
        for k in 1..=130u32 {
            rec.push(t0 + 20 * MS * k, Channel::Caller, &frame(9))
                .unwrap();
            rec.push(t0 + 20 * MS * k, Channel::Agent, &frame(-9))
                .unwrap();
        }
        // Simulate the crash: no finish and no destructor (a killed process runs none;
        // hound's would update the header), then append a torn half sample frame (as if
        // the process died mid-write past the last header update).
        std::mem::forget(rec);
        let frames_on_disk = (std::fs::metadata(&path).unwrap().len() - HEADER_LEN) / 4;
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0u8; 4 * 1000 + 3]).unwrap();
        drop(file);
        let header_frames =
            u32::from_le_bytes(std::fs::read(&path).unwrap()[40..44].try_into().unwrap()) / 4;
        assert_eq!(
            header_frames,
            16_000 - 1600,
            "last patch at 2 s minus commit delay"
        );
        let outcome = repair_wav(&path).unwrap();
        assert!(
            frames_on_disk > 14_400,
            "audio written after the last patch is on disk too"
        );
        let expected_frames = frames_on_disk + 1000;
        assert_eq!(
            outcome,
            RepairOutcome::Repaired {
                data_bytes: 4 * expected_frames
            }
        );
        let (_, samples) = read_stereo(&path);
        assert_eq!(samples.len() as u64, expected_frames);
        assert!(
            samples[..frames_on_disk as usize]
                .iter()
                .all(|s| *s == (9, -9))
        );
        assert_eq!(repair_wav(&path).unwrap(), RepairOutcome::AlreadyConsistent);
    }

    #[test]
    fn repair_rejects_non_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        std::fs::write(&path, b"not a wav at all").unwrap();
        assert!(matches!(repair_wav(&path), Err(RecorderError::NotWav)));
        std::fs::write(&path, &header(1, 0)[..36]).unwrap();
        assert!(matches!(repair_wav(&path), Err(RecorderError::NoDataChunk)));
    }

    /// A sink that accepts `limit` bytes, then fails like a full disk.
    struct FullDisk {
        inner: Cursor<Vec<u8>>,
        limit: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.inner.get_ref().len() + buf.len() > self.limit {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            self.inner.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for FullDisk {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn disk_full_fails_once_then_drops_audio() {
        let t0 = Instant::now();
        let sink = FullDisk {
            inner: Cursor::new(Vec::new()),
            limit: 10_000,
        };
        let mut rec = WavRecorder::new(sink, 2, t0, RecorderConfig::default()).unwrap();
        let mut errors = vec![];
        for k in 1..=200u32 {
            if let Err(e) = rec.push(t0 + 20 * MS * k, Channel::Caller, &frame(1)) {
                errors.push(e);
            }
        }
        assert_eq!(errors.len(), 1);
        assert!(
            matches!(&errors[0], RecorderError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
        );
        assert_eq!(rec.state(), RecorderState::Failed);
        assert!(rec.finish().is_err());
    }

    #[test]
    fn recording_path_layout_and_sanitising() {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
        let root = Path::new("recordings");
        assert_eq!(
            recording_path(root, date, "a84b4c76e66710@pc33.atlanta.com"),
            Path::new("recordings/2026/03/07/a84b4c76e66710@pc33.atlanta.com.wav")
        );
        assert_eq!(
            recording_path(root, date, "../../etc/passwd"),
            Path::new("recordings/2026/03/07/.._.._etc_passwd.wav")
        );
        assert_eq!(
            recording_path(root, date, ".."),
            Path::new("recordings/2026/03/07/_...wav")
        );
    }
}
