//! Media plane: RTP/RTCP, G.711, RFC 4733 DTMF, SDP, prompts, recorder, bridge.
//!
//! Every module here is sans-IO: no sockets, no clocks, no tasks. Time is passed in as
//! `Instant`; the tokio shell owns the sockets and files and calls these cores. Each module's
//! docs state its calling contract. A call leg in the shell, in outline:
//!
//! 1. [`port_pool::PortPool::allocate`] a port pair and bind it (on failure `mark_bad`, retry).
//! 2. [`sdp::answer`] the caller's offer (or [`sdp::offer`] + [`sdp::parse_answer`] towards
//!    an agent); an error's [`sdp::SdpError::sip_status`] is the SIP response.
//! 3. [`rtp::RtpSession::new`] with [`sdp::Negotiated::remote`]; feed received datagrams
//!    through [`rtp::RtpPacket::parse`] and [`rtp::RtpSession::receive_rtp`]; drive its
//!    timer (RTCP every 5 s, media timeout).
//! 4. IVR: [`player::Player`] frames → [`g711::Codec::encode_into`] →
//!    [`rtp::RtpSession::next_header`]; digits from [`dtmf::DtmfReceiver`] (payload type
//!    [`sdp::Negotiated::dtmf_payload_type`]) or [`dtmf::InbandDetector`] on decoded audio.
//! 5. Talking: one [`bridge::RelayDirection`] per direction, in place on the receive
//!    buffer; when recording, the decoded PCM goes to [`recorder::WavRecorder::push`].
//! 6. Hang-up: [`recorder::WavRecorder::finish`], release the ports. At start-up run
//!    [`recorder::repair_wav`] over recordings left by a crash.

pub mod bridge;
pub mod dtmf;
pub mod g711;
pub mod phone_model;
pub mod player;
pub mod port_pool;
pub mod recorder;
pub mod rtp;
pub mod sdp;
pub mod srtp;
pub mod stream;
pub mod webrtc;

/// The modules working together the way the shell will drive them, in simulated time.
#[cfg(test)]
mod pipeline_tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant, UNIX_EPOCH};

    use super::bridge::{LegMedia, RelayDirection, Relayed};
    use super::dtmf::{DtmfDigit, DtmfReceiver, TelephoneEvent, digit_packets};
    use super::g711::Codec;
    use super::player::{BargeIn, Player, Playlist, Prompt, Segment};
    use super::recorder::{Channel, RecorderConfig, WavRecorder};
    use super::rtp::{Marker, RtpPacket, RtpSession, RtpSessionConfig, write_packet};
    use super::sdp::{LocalMedia, SessionDescription, answer, offer, parse_answer};

    const CALLER_OFFER: &str = "v=0\r\no=caller 1 1 IN IP4 198.51.100.7\r\ns=-\r\n\
c=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
    const AGENT_ANSWER: &str = "v=0\r\no=agent 5 5 IN IP4 192.168.1.20\r\ns=-\r\n\
c=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 7078 RTP/AVP 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n";

    fn tone(samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                (8000.0 * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 8000.0).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn caller_audio_and_dtmf_cross_the_bridge_transcoded_and_recorded() {
        let t0 = Instant::now();
        let caller_addr: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        // Negotiate both legs.
        let caller_offer = SessionDescription::parse(CALLER_OFFER).unwrap();
        let caller_answer = answer(
            &caller_offer,
            &LocalMedia::g711("203.0.113.5".parse().unwrap(), 30000, 1, 1),
        )
        .unwrap();
        let our_offer = offer(&LocalMedia::g711(
            "203.0.113.5".parse().unwrap(),
            30002,
            2,
            1,
        ));
        let agent = parse_answer(
            &our_offer,
            &SessionDescription::parse(AGENT_ANSWER).unwrap(),
        )
        .unwrap();
        assert_eq!(caller_answer.media.codec, Codec::Pcma);
        assert_eq!(agent.codec, Codec::Pcmu);
        let mut caller_session = RtpSession::new(
            RtpSessionConfig::g711(11, 0, 0, "c".into()),
            t0,
            UNIX_EPOCH,
            caller_answer.media.remote(),
        );
        let mut agent_session = RtpSession::new(
            RtpSessionConfig::g711(22, 500, 9000, "a".into()),
            t0,
            UNIX_EPOCH,
            agent.remote(),
        );
        let mut to_agent =
            RelayDirection::new(LegMedia::from(&caller_answer.media), LegMedia::from(&agent));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("call.wav");
        let mut recorder =
            WavRecorder::create_stereo(&path, t0, RecorderConfig::default()).unwrap();

        // The caller sends 1 s of A-law audio, then the digit 5.
        let audio = tone(8000);
        let mut buf = [0u8; 1500];
        let mut pcm = [0i16; 160];
        let mut payload = [0u8; 160];
        let mut agent_dtmf = DtmfReceiver::default();
        for (k, frame) in audio.chunks(160).enumerate() {
            let now = t0 + Duration::from_millis(20 * k as u64 + 20);
            Codec::Pcma.encode_into(frame, &mut payload);
            let header = super::rtp::RtpHeader {
                marker: Marker::Clear,
                payload_type: 8,
                sequence: k as u16,
                timestamp: 160 * k as u32,
                ssrc: 77,
            };
            let len = write_packet(&header, &payload, &mut buf).unwrap();
            let packet = RtpPacket::parse(&buf[..len]).unwrap();
            caller_session.receive_rtp(now, caller_addr, &packet);
            let out = agent_session.outbound();
            match to_agent
                .relay(now, &mut buf, len, Some(&mut pcm), out)
                .unwrap()
            {
                Relayed::Audio { len, decoded, .. } => {
                    let out = RtpPacket::parse(&buf[..len]).unwrap();
                    assert_eq!((out.payload_type, out.ssrc), (0, 22));
                    recorder
                        .push(now, Channel::Caller, &pcm[..decoded])
                        .unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
        let dtmf_start = t0 + Duration::from_millis(1020);
        for planned in digit_packets(DtmfDigit::D5, Duration::from_millis(100), 10) {
            let header = super::rtp::RtpHeader {
                marker: planned.marker,
                payload_type: 101,
                sequence: 0,
                timestamp: 8000,
                ssrc: 77,
            };
            let mut event = [0u8; 4];
            planned.event.write(&mut event).unwrap();
            let len = write_packet(&header, &event, &mut buf).unwrap();
            let now = dtmf_start + planned.offset;
            let out = agent_session.outbound();
            match to_agent.relay(now, &mut buf, len, None, out).unwrap() {
                Relayed::Dtmf { len, timestamp, .. } => {
                    let out = RtpPacket::parse(&buf[..len]).unwrap();
                    assert_eq!(out.payload_type, 101);
                    agent_dtmf.receive(
                        dtmf_start + planned.offset,
                        timestamp,
                        &TelephoneEvent::parse(out.payload).unwrap(),
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            agent_dtmf.poll_digit().map(|d| d.digit),
            Some(DtmfDigit::D5)
        );
        assert_eq!(agent_dtmf.poll_digit(), None);
        assert_eq!(caller_session.stats().received, 50);

        let summary = recorder.finish().unwrap();
        assert_eq!(summary.frames, 8000);
        let mut reader = hound::WavReader::open(&path).unwrap();
        let left: Vec<i16> = reader
            .samples::<i16>()
            .step_by(2)
            .map(Result::unwrap)
            .collect();
        let energy: f64 =
            left.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / left.len() as f64;
        assert!(
            energy.sqrt() > 5000.0,
            "recorded the tone, rms {}",
            energy.sqrt()
        );
    }

    #[test]
    fn prompt_is_interrupted_by_an_rfc4733_digit() {
        let t0 = Instant::now();
        let prompt = Prompt::from_pcm(tone(8000 * 5));
        let mut player = Player::new(
            Playlist::once(vec![Segment::Prompt(prompt)]),
            t0,
            BargeIn::StopOnDtmf,
        );
        let mut session = RtpSession::new(
            RtpSessionConfig::g711(1, 0, 0, "x".into()),
            t0,
            UNIX_EPOCH,
            Default::default(),
        );
        let mut receiver = DtmfReceiver::default();
        let press_at = t0 + Duration::from_millis(1000);
        let mut plan = digit_packets(DtmfDigit::Pound, Duration::from_millis(80), 10).peekable();
        let mut sent = 0;
        let mut payload = [0u8; 160];
        while let Some(due) = player.poll_timeout() {
            while let Some(planned) = plan.peek().filter(|p| press_at + p.offset <= due) {
                receiver.receive(press_at + planned.offset, 1234, &planned.event);
                plan.next();
            }
            while receiver.poll_digit().is_some() {
                player.dtmf();
            }
            while let Some(frame) = player.poll(due) {
                Codec::Pcmu.encode_into(&frame.samples, &mut payload);
                let header =
                    session.next_header(due, 0, frame.marker, frame.timestamp, payload.len());
                assert_eq!(header.timestamp, frame.timestamp);
                sent += 1;
            }
        }
        // The end packet arrives at 1.08 s; frames up to then were sent, not 5 s worth.
        assert!((54..=56).contains(&sent), "sent {sent}");
    }
}
