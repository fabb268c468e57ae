//! The bridge's relay path must not allocate per packet: counted with a global allocator
//! (per thread, so the test harness's own threads do not disturb the count).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use hotline::media::bridge::{LegMedia, RelayDirection, Relayed};
use hotline::media::g711::Codec;
use hotline::media::rtp::{
    Marker, RemoteMedia, RtpHeader, RtpPacket, RtpSession, RtpSessionConfig, write_packet,
};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn relay_path_does_not_allocate() {
    let caller = LegMedia {
        codec: Codec::Pcmu,
        payload_type: 0,
        dtmf_payload_type: Some(101),
    };
    let agent = LegMedia {
        codec: Codec::Pcma,
        payload_type: 8,
        dtmf_payload_type: Some(96),
    };
    let t0 = Instant::now();
    let config = RtpSessionConfig::g711(0x1234, 1, 2, "caller-leg".into());
    let mut session = RtpSession::new(
        config,
        t0,
        std::time::SystemTime::UNIX_EPOCH,
        RemoteMedia::default(),
    );
    let mut transcode = RelayDirection::new(caller, agent);
    let mut same = RelayDirection::new(caller, caller);
    let mut agent_session = RtpSession::new(
        RtpSessionConfig::g711(0x5678, 10, 20, "agent-leg".into()),
        t0,
        std::time::SystemTime::UNIX_EPOCH,
        RemoteMedia::default(),
    );
    let source = "192.0.2.1:4000".parse().unwrap();
    let mut buf = [0u8; 1500];
    let mut pcm = [0i16; 160];
    let payload = [0x2Au8; 160];

    // Warm up (first packet latches, creates the per-source state).
    let len = write_packet(
        &RtpHeader {
            marker: Marker::Set,
            payload_type: 0,
            sequence: 0,
            timestamp: 0,
            ssrc: 9,
        },
        &payload,
        &mut buf,
    )
    .unwrap();
    let packet = RtpPacket::parse(&buf[..len]).unwrap();
    session.receive_rtp(t0, source, &packet);
    transcode
        .relay(t0, &mut buf, len, Some(&mut pcm), agent_session.outbound())
        .unwrap();

    let before = allocations();
    for seq in 1..5000u16 {
        let now = t0 + Duration::from_millis(20 * u64::from(seq));
        let header = RtpHeader {
            marker: Marker::Clear,
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 9,
        };
        let len = write_packet(&header, &payload, &mut buf).unwrap();
        let packet = RtpPacket::parse(&buf[..len]).unwrap();
        session.receive_rtp(now, source, &packet);
        let relayed = if seq % 2 == 0 {
            let out = agent_session.outbound();
            transcode
                .relay(now, &mut buf, len, Some(&mut pcm), out)
                .unwrap()
        } else {
            // Another bridge onto the same stream: it re-anchors every packet.
            let out = agent_session.outbound();
            same.relay(now, &mut buf, len, None, out).unwrap()
        };
        match relayed {
            Relayed::Audio {
                timestamp,
                payload_len,
                ..
            } => agent_session.record_sent(now, timestamp, payload_len),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(allocations() - before, 0, "allocations in the relay path");
}

#[test]
fn recording_path_does_not_allocate() {
    use hotline::media::recorder::{Channel, RecorderConfig, RecorderState, WavRecorder};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("call.wav");
    let t0 = Instant::now();
    let mut recorder =
        WavRecorder::create_stereo(&path, t0, RecorderConfig::default()).expect("create");
    let caller = [1000_i16; 160];
    let agent = [-1000_i16; 160];
    let frame = Duration::from_millis(20);
    let mut push_seconds = |from: u32, to: u32| {
        for k in from * 50..to * 50 {
            let now = t0 + frame * (k + 1);
            recorder.push(now, Channel::Caller, &caller).expect("push");
            recorder.push(now, Channel::Agent, &agent).expect("push");
            if now >= recorder.poll_timeout() {
                recorder.tick(now).expect("tick");
            }
        }
    };
    // Warm-up: the per-channel queues reach their steady size, hound's and the file
    // buffer exist, headers have been updated.
    push_seconds(0, 3);
    let before = allocations();
    // Ten seconds of both channels: 1,000 packets, ten header updates by hound's flush.
    push_seconds(3, 13);
    assert_eq!(
        allocations() - before,
        0,
        "allocations in the recording path"
    );
    assert_eq!(recorder.state(), RecorderState::Recording);
    let summary = recorder.finish().expect("finish");
    assert_eq!(summary.frames, 13 * 8000);
}

#[test]
fn counter_detects_allocation() {
    // Guards the guard: the counter must see an allocation when one happens.
    let before = allocations();
    let v: Vec<u8> = Vec::with_capacity(64);
    std::hint::black_box(&v);
    assert!(allocations() > before);
}
