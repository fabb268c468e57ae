//! Cost of one browser (WebRTC) agent leg beside one plain RTP agent leg, in the same
//! process and run: `bench/webrtc-leg.sh` (not run by `cargo test`).
//!
//! WebRTC: N legs of [`hotline::media::webrtc::WebRtcLeg`], each answered for a
//! simulated browser (str0m as a full ICE agent, wired by memory) and brought up (ICE,
//! DTLS, SRTP); then SECS seconds of 20 ms G.711 frames both ways. Only the server
//! side's calls are timed: SRTP unprotect + depacketize of each frame from the
//! browser, packetize + SRTP protect of each frame to it, and the leg's timers.
//!
//! Plain RTP: N agent legs as the call task keeps them (an `RtpSession` and the two
//! `RelayDirection`s of the bridge); the same frames parsed, checked by the session and
//! relayed (rewritten to the leg's SSRC, sequence and timestamps) both ways.
//!
//! Memory: resident set growth over creating the N legs of each kind (/proc/self/statm),
//! divided by N. Prints one line per kind and their ratio.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hotline::media::bridge::{LegMedia, RelayDirection};
use hotline::media::g711::Codec;
use hotline::media::rtp::{RemoteMedia, RtpPacket, RtpSession, RtpSessionConfig};
use hotline::media::webrtc::{WebRtcLeg, WebRtcOutput};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

struct Pair {
    browser: Rtc,
    mid: Mid,
    leg: WebRtcLeg,
    browser_addr: SocketAddr,
    server_addr: SocketAddr,
}

/// Move datagrams both ways until neither side has any; the server's part is timed
/// into `server`. Returns the frames the server got from the browser.
fn pump(p: &mut Pair, now: Instant, server: &mut Duration) -> usize {
    let mut got = 0;
    for _ in 0..64 {
        let mut moved = false;
        loop {
            match p.browser.poll_output() {
                Ok(Output::Transmit(t)) => {
                    moved = true;
                    let start = Instant::now();
                    p.leg.receive(now, p.browser_addr, &t.contents);
                    *server += start.elapsed();
                }
                Ok(Output::Event(Event::MediaData(_) | _)) => {}
                Ok(Output::Timeout(_)) | Err(_) => break,
            }
        }
        loop {
            let start = Instant::now();
            let out = p.leg.poll();
            *server += start.elapsed();
            match out {
                WebRtcOutput::Transmit { datagram, .. } => {
                    moved = true;
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source: p.server_addr,
                            destination: p.browser_addr,
                            contents: match datagram.as_slice().try_into() {
                                Ok(c) => c,
                                Err(_) => continue,
                            },
                        },
                    );
                    let _ = p.browser.handle_input(input);
                }
                WebRtcOutput::Audio { .. } => got += 1,
                WebRtcOutput::Wait(_) | WebRtcOutput::Ended => break,
                WebRtcOutput::Connected => {}
            }
        }
        if !moved {
            break;
        }
    }
    got
}

fn connect(i: u16, now: &mut Instant) -> Pair {
    let browser_addr: SocketAddr = format!("127.0.0.1:{}", 20000 + i).parse().expect("addr");
    let server_addr: SocketAddr = format!("127.0.0.1:{}", 40000 + i).parse().expect("addr");
    let mut browser = Rtc::builder()
        .clear_codecs()
        .enable_pcmu(true, false)
        .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
        .build(*now);
    browser.add_local_candidate(Candidate::host(browser_addr, "udp").expect("candidate"));
    let mut change = browser.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().expect("offer");
    let (leg, answer) =
        WebRtcLeg::answer(*now, &offer.to_sdp_string(), server_addr).expect("answer");
    browser
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).expect("sdp"))
        .expect("accepted");
    let mut p = Pair {
        browser,
        mid,
        leg,
        browser_addr,
        server_addr,
    };
    let mut ignored = Duration::ZERO;
    for _ in 0..200 {
        pump(&mut p, *now, &mut ignored);
        if p.browser.is_connected() && p.browser.writer(mid).is_some() {
            break;
        }
        *now += Duration::from_millis(10);
        let _ = p.browser.handle_input(Input::Timeout(*now));
        p.leg.timeout(*now);
    }
    p
}

fn main() {
    let legs: u16 = std::env::var("LEGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let secs: u32 = std::env::var("SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let frames = secs * 50;
    let mut now = Instant::now();

    // WebRTC legs.
    let before = rss_kib();
    let mut pairs: Vec<Pair> = (0..legs).map(|i| connect(i, &mut now)).collect();
    let webrtc_kib = rss_kib().saturating_sub(before) as f64 / f64::from(legs);
    let mut server = Duration::ZERO;
    let mut received = 0usize;
    for f in 1..=frames {
        now += Duration::from_millis(20);
        let ts = f * 160;
        for p in &mut pairs {
            if let Some(w) = p.browser.writer(p.mid) {
                let _ = w.write(
                    Pt::from(0),
                    now,
                    MediaTime::new(u64::from(ts), Frequency::EIGHT_KHZ),
                    vec![0x55; 160],
                );
            }
            let _ = p.browser.handle_input(Input::Timeout(now));
            let start = Instant::now();
            p.leg.send_audio(now, ts, &[0x66; 160]);
            p.leg.timeout(now);
            server += start.elapsed();
            received += pump(p, now, &mut server);
        }
    }
    let webrtc_us = server.as_secs_f64() * 1e6 / f64::from(frames) / f64::from(legs) / 2.0;
    let webrtc_core = server.as_secs_f64() / f64::from(secs) / f64::from(legs) * 100.0;
    drop(pairs);

    // Plain RTP legs.
    let media = LegMedia {
        codec: Codec::Pcmu,
        payload_type: 0,
        dtmf_payload_type: None,
    };
    let remote = RemoteMedia {
        rtp: Some("127.0.0.1:30000".parse().expect("addr")),
        rtcp: None,
    };
    let before = rss_kib();
    let mut plain: Vec<(RtpSession, RelayDirection, RelayDirection)> = (0..legs)
        .map(|i| {
            let config = RtpSessionConfig::g711(u32::from(i) + 1, 1, 1, format!("leg-{i}"));
            (
                RtpSession::new(config, now, std::time::SystemTime::now(), remote),
                RelayDirection::new(media, media),
                RelayDirection::new(media, media),
            )
        })
        .collect();
    let plain_kib = rss_kib().saturating_sub(before) as f64 / f64::from(legs);
    let from: SocketAddr = "127.0.0.1:30000".parse().expect("addr");
    let mut packet = [0u8; 172];
    let mut pcm = [0i16; 172];
    let mut relayed = 0usize;
    let mut plain_time = Duration::ZERO;
    for f in 1..=frames {
        now += Duration::from_millis(20);
        for (session, to_caller, to_agent) in &mut plain {
            for relay in [&mut *to_caller, &mut *to_agent] {
                packet[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]);
                packet[2..4].copy_from_slice(&(f as u16).to_be_bytes());
                packet[4..8].copy_from_slice(&(f * 160).to_be_bytes());
                packet[12..].fill(0x55);
                let start = Instant::now();
                if let Ok(rtp) = RtpPacket::parse(&packet) {
                    let _ = session.receive_rtp(now, from, &rtp);
                }
                if relay
                    .relay(now, &mut packet, 172, Some(&mut pcm), session.outbound())
                    .is_ok()
                {
                    relayed += 1;
                }
                plain_time += start.elapsed();
            }
        }
    }
    let plain_us = plain_time.as_secs_f64() * 1e6 / f64::from(frames) / f64::from(legs) / 2.0;
    let plain_core = plain_time.as_secs_f64() / f64::from(secs) / f64::from(legs) * 100.0;

    println!("legs {legs}, {secs} s of 20 ms G.711 frames both ways per leg");
    println!(
        "webrtc: {webrtc_us:.1} µs per frame, {webrtc_core:.3} % of one core per leg, {webrtc_kib:.0} KiB RSS per leg ({received} frames from the browsers)"
    );
    println!(
        "plain:  {plain_us:.1} µs per frame, {plain_core:.3} % of one core per leg, {plain_kib:.0} KiB RSS per leg ({relayed} frames relayed)"
    );
    println!(
        "ratio webrtc/plain: CPU {:.1}x, memory {:.1}x",
        webrtc_us / plain_us.max(1e-9),
        webrtc_kib / plain_kib.max(1.0)
    );
}
