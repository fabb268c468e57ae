//! The browser softphone's media leg: WebRTC with [`str0m`] (sans-IO), the server being
//! ICE-lite (RFC 8445 §2.5: it answers the browser's connectivity checks and never
//! checks itself), DTLS-SRTP keyed (RFC 5764), RTP and RTCP on one port (RFC 5761).
//!
//! Only PCMU and PCMA are offered, so the browser's G.711 frames are relayed as they
//! come and nothing is transcoded: the call's bridge and recorder see the same frames
//! as from a SIP phone. Fed `(now, datagram)`; polled for datagrams to send, the
//! browser's audio frames, and its next timeout.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::config::CryptoProvider;
use str0m::media::{Frequency, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// Why the browser's offer or a datagram was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error("the browser's SDP offer does not parse: {0}")]
    Offer(String),
    #[error("the browser offers no audio in PCMU or PCMA")]
    NoCodec,
    #[error("our address {0} cannot be an ICE candidate")]
    Candidate(SocketAddr),
    #[error("WebRTC: {0}")]
    Rtc(#[from] str0m::RtcError),
}

/// What the leg asks of its shell.
#[derive(Debug, PartialEq, Eq)]
pub enum WebRtcOutput {
    /// Send this datagram (STUN, DTLS or SRTP) from the leg's socket.
    Transmit { to: SocketAddr, datagram: Vec<u8> },
    /// One audio frame from the browser: G.711 of `payload_type` (0 PCMU, 8 PCMA).
    Audio {
        payload_type: u8,
        timestamp: u32,
        payload: Vec<u8>,
    },
    /// ICE and DTLS are up: audio flows both ways from now on.
    Connected,
    /// The browser is gone (ICE disconnected or the peer connection closed).
    Ended,
    /// Nothing more until this moment (or the next datagram).
    Wait(Instant),
}

/// One browser's media leg.
pub struct WebRtcLeg {
    rtc: Rtc,
    mid: Option<Mid>,
    payload_type: u8,
    local: SocketAddr,
    ended: bool,
}

impl std::fmt::Debug for WebRtcLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcLeg")
            .field("mid", &self.mid)
            .field("payload_type", &self.payload_type)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

fn crypto() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(str0m::crypto::from_feature_flags()))
        .clone()
}

/// The first payload type of the audio m-line of an SDP (our answer's chosen codec).
fn first_audio_pt(sdp: &str) -> Option<u8> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split_whitespace().nth(2))
        .and_then(|pt| pt.parse().ok())
}

impl WebRtcLeg {
    /// Answer the browser's offer; `local` is the leg's socket address as the browser
    /// reaches it (our only, host, candidate). Returns the leg and the SDP answer.
    ///
    /// # Errors
    /// An offer that does not parse or has no PCMU/PCMA audio; an unusable address.
    pub fn answer(
        now: Instant,
        offer: &str,
        local: SocketAddr,
    ) -> Result<(WebRtcLeg, String), WebRtcError> {
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| WebRtcError::Offer(e.to_string()))?;
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crypto())
            .set_ice_lite(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .build(now);
        let candidate = Candidate::host(local, "udp").map_err(|_| WebRtcError::Candidate(local))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc.sdp_api().accept_offer(offer)?.to_sdp_string();
        let payload_type = first_audio_pt(&answer)
            .filter(|pt| *pt == 0 || *pt == 8)
            .ok_or(WebRtcError::NoCodec)?;
        Ok((
            WebRtcLeg {
                rtc,
                mid: None,
                payload_type,
                local,
                ended: false,
            },
            answer,
        ))
    }

    /// The G.711 payload type both sides use (0 PCMU, 8 PCMA).
    #[must_use]
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// A datagram from `from` arrived on the leg's socket. Datagrams that are not
    /// STUN, DTLS or SRTP of this leg are dropped.
    pub fn receive(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Ok(contents) = datagram.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.local,
                contents,
            },
        );
        if self.rtc.accepts(&input)
            && let Err(e) = self.rtc.handle_input(input)
        {
            tracing::debug!(%e, "WebRTC datagram refused");
        }
    }

    /// The moment of the last [`WebRtcOutput::Wait`] came.
    pub fn timeout(&mut self, now: Instant) {
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(%e, "WebRTC timeout");
        }
    }

    /// One G.711 frame (of our payload type) toward the browser; dropped before the
    /// connection is up. `timestamp` is its RTP timestamp (8 kHz).
    pub fn send_audio(&mut self, now: Instant, timestamp: u32, payload: &[u8]) {
        let Some(mid) = self.mid else {
            return;
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let time = MediaTime::new(u64::from(timestamp), Frequency::EIGHT_KHZ);
        if let Err(e) = writer.write(Pt::from(self.payload_type), now, time, payload.to_vec()) {
            tracing::debug!(%e, "audio to the browser not sent");
        }
    }

    /// The next thing to do; [`WebRtcOutput::Wait`] when there is nothing until then.
    pub fn poll(&mut self) -> WebRtcOutput {
        loop {
            if self.ended {
                return WebRtcOutput::Ended;
            }
            let output = match self.rtc.poll_output() {
                Ok(output) => output,
                Err(e) => {
                    tracing::debug!(%e, "WebRTC leg failed");
                    self.ended = true;
                    continue;
                }
            };
            match output {
                Output::Timeout(at) => return WebRtcOutput::Wait(at),
                Output::Transmit(t) => {
                    return WebRtcOutput::Transmit {
                        to: t.destination,
                        datagram: t.contents.to_vec(),
                    };
                }
                Output::Event(Event::Connected) => return WebRtcOutput::Connected,
                Output::Event(Event::MediaAdded(m)) => self.mid = Some(m.mid),
                Output::Event(Event::MediaData(d)) => {
                    let payload_type = *d.pt;
                    if payload_type != 0 && payload_type != 8 {
                        continue;
                    }
                    return WebRtcOutput::Audio {
                        payload_type,
                        // The RTP timestamp: its low 32 bits.
                        timestamp: (d.time.numer() & 0xffff_ffff) as u32,
                        payload: d.data.to_vec(),
                    };
                }
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => {
                    self.ended = true;
                }
                Output::Event(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_keeps_only_g711_and_is_ice_lite() {
        // What Chromium offers for one microphone track (trimmed).
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=msid-semantic: WMS\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 8A:1A:5D:5E:34:1E:2B:9D:66:5B:9E:67:9E:6B:1E:1B:2F:4D:45:61:63:F8:67:3E:0D:E7:28:5D:BB:6F:1A:4E\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=msid:- t1\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:1 cname:x\r\n";
        let local: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        let (leg, answer) = WebRtcLeg::answer(Instant::now(), offer, local).expect("answered");
        assert_eq!(leg.payload_type(), 0, "{answer}");
        let m = answer
            .lines()
            .find(|l| l.starts_with("m=audio"))
            .expect("audio");
        assert!(m.ends_with("SAVPF 0 8"), "only PCMU and PCMA: {m}");
        assert!(answer.contains("a=ice-lite"), "{answer}");
        assert!(answer.contains("a=rtcp-mux"), "{answer}");
        assert!(answer.contains("a=fingerprint:sha-256"), "{answer}");
        assert!(
            answer.contains("a=candidate:") && answer.contains("127.0.0.1 40000"),
            "{answer}"
        );
    }

    /// A browser-like peer (a full ICE agent, str0m too) and our leg, wired by
    /// memory in simulated time: ICE, DTLS and SRTP come up, and a G.711 frame crosses
    /// each way.
    #[test]
    fn a_browser_connects_and_audio_crosses_both_ways_in_simulated_time() {
        use str0m::change::SdpAnswer;
        use str0m::media::{Direction, MediaKind};

        let mut now = Instant::now();
        let browser_addr: SocketAddr = "127.0.0.1:50000".parse().expect("address");
        let server_addr: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        let mut browser = Rtc::builder()
            .set_crypto_provider(crypto())
            .clear_codecs()
            .enable_pcmu(true, false)
            .build(now);
        browser.add_local_candidate(Candidate::host(browser_addr, "udp").expect("candidate"));
        let mut change = browser.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().expect("offer");
        let (mut leg, answer) =
            WebRtcLeg::answer(now, &offer.to_sdp_string(), server_addr).expect("answered");
        browser
            .sdp_api()
            .accept_answer(
                pending,
                SdpAnswer::from_sdp_string(&answer).expect("answer parses"),
            )
            .expect("answer accepted");

        let mut connected = false;
        let mut browser_heard = Vec::new();
        let mut server_heard = Vec::new();
        let mut sent = 0u32;
        for _ in 0..20_000 {
            // The browser's side.
            let browser_wait = loop {
                match browser.poll_output().expect("browser") {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => leg.receive(now, browser_addr, &t.contents),
                    Output::Event(Event::MediaData(d)) => browser_heard.push(d.data.to_vec()),
                    Output::Event(_) => {}
                }
            };
            // Ours.
            let server_wait = loop {
                match leg.poll() {
                    WebRtcOutput::Wait(t) => break t,
                    WebRtcOutput::Transmit { to, datagram } => {
                        assert_eq!(to, browser_addr);
                        let input = Input::Receive(
                            now,
                            Receive {
                                proto: Protocol::Udp,
                                source: server_addr,
                                destination: browser_addr,
                                contents: datagram.as_slice().try_into().expect("datagram"),
                            },
                        );
                        browser.handle_input(input).expect("browser input");
                    }
                    WebRtcOutput::Connected => connected = true,
                    WebRtcOutput::Audio {
                        payload_type,
                        payload,
                        ..
                    } => {
                        assert_eq!(payload_type, 0);
                        server_heard.push(payload);
                    }
                    WebRtcOutput::Ended => panic!("the leg ended"),
                }
            };
            if !browser_heard.is_empty() && !server_heard.is_empty() {
                break;
            }
            // Once up, each side sends a 20 ms frame every round.
            if connected && sent < 50 {
                sent += 1;
                let ts = sent * 160;
                leg.send_audio(now, ts, &[0x11; 160]);
                if let Some(writer) = browser.writer(mid) {
                    let _ = writer.write(
                        Pt::from(0),
                        now,
                        MediaTime::new(u64::from(ts), Frequency::EIGHT_KHZ),
                        vec![0x22; 160],
                    );
                }
            }
            let next = browser_wait
                .min(server_wait)
                .min(now + std::time::Duration::from_millis(20));
            now = next.max(now);
            browser
                .handle_input(Input::Timeout(now))
                .expect("browser timeout");
            leg.timeout(now);
        }
        assert!(connected, "ICE + DTLS never came up");
        assert_eq!(
            server_heard.first().map(Vec::as_slice),
            Some(&[0x22u8; 160][..])
        );
        assert_eq!(
            browser_heard.first().map(Vec::as_slice),
            Some(&[0x11u8; 160][..])
        );
    }

    #[test]
    fn an_offer_without_g711_is_refused() {
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 8A:1A:5D:5E:34:1E:2B:9D:66:5B:9E:67:9E:6B:1E:1B:2F:4D:45:61:63:F8:67:3E:0D:E7:28:5D:BB:6F:1A:4E\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";
        let local: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        assert!(WebRtcLeg::answer(Instant::now(), offer, local).is_err());
    }
}
