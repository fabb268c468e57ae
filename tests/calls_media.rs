//! The media plane with real peers on loopback: SIPp sends real G.711 speech and RFC 4733
//! digits to the test extensions, baresip listens to a prompt; the recordings and logs
//! are checked for what was really sent.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The shared test config plus the media plane and the four test extensions.
fn media_config() -> String {
    let prompts = repo_root().join("config/prompts/zh");
    let (low, high) = rtp_range();
    format!(
        "{TEST_CONFIG}
[media]
rtp_port_min = {low}
rtp_port_max = {high}
media_timeout_secs = 4
prompts_dir = \"{}\"

[[test_extensions]]
number = \"echo\"
kind = \"echo\"

[[test_extensions]]
number = \"play\"
kind = \"play\"
prompt = \"after_hours.wav\"

[[test_extensions]]
number = \"record\"
kind = \"record\"

[[test_extensions]]
number = \"record2\"
kind = \"record\"
stereo = true

[[test_extensions]]
number = \"dtmf\"
kind = \"dtmf\"
",
        prompts.display()
    )
}

/// A per-process RTP range so parallel test binaries do not collide.
fn rtp_range() -> (u16, u16) {
    let base = 30000 + (std::process::id() % 500) as u16 * 40;
    (base, base + 39)
}

/// Run SIPp (UAC) with `scenario` against `service`, holding the call `hold_ms`.
fn sipp_call(server: &Server, scenario: &str, service: &str, hold_ms: u64, cwd: &Path) -> Output {
    let sipp = require("sipp");
    run_bounded(
        Command::new(&sipp)
            .current_dir(cwd)
            .args(["-sf", &path_str(&sipp_scenario(scenario))])
            .args([
                "-s",
                service,
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &free_port().to_string(),
                "-mp",
                &free_media_port().to_string(),
            ])
            .args(["-d", &hold_ms.to_string(), "-nostdin", "-timeout", "30"])
            .arg(server.sip.to_string()),
        Duration::from_secs(40),
    )
}

fn speech_alaw(cwd: &Path) {
    std::fs::copy(
        repo_root().join("tests/fixtures/audio/caller-speech-alaw.wav"),
        cwd.join("caller.wav"),
    )
    .expect("copy fixture");
}

#[test]
fn sipp_speech_to_record_is_recorded_with_its_duration_and_energy() {
    let server = Server::start_with(&media_config(), &[]);
    let cwd = tempfile::tempdir().expect("tmp");
    speech_alaw(cwd.path());
    let out = sipp_call(&server, "call_audio.xml", "record", 7000, cwd.path());
    assert_eq!(
        out.status,
        Some(0),
        "sipp:\n{}\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(
        wait_for_log(&server, "call ended", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let wavs = find_wavs(&server.dir.path().join("recordings"));
    assert_eq!(wavs.len(), 1, "{wavs:?}\n{}", server.log());
    let (rms, seconds, channels) = wav_stats(&wavs[0]);
    let (sent_rms, sent_seconds, _) =
        wav_stats(&repo_root().join("tests/fixtures/audio/caller-speech-pcm.wav"));
    assert_eq!(channels, 1);
    // The call lasted 7 s with 5.7 s of speech. The recording is aligned to the wall
    // clock from the answer, so on a loaded machine it may start with silence before the
    // first packet: it holds all the speech and is no longer than the call.
    assert!(
        seconds > sent_seconds - 0.2 && seconds < 7.6,
        "recorded {seconds} s, sent {sent_seconds} s"
    );
    // Same speech energy as sent (silence adds none), within G.711 quantisation and a
    // lost frame or two.
    let energy = rms * rms * seconds;
    let sent_energy = sent_rms * sent_rms * sent_seconds;
    assert!(
        energy > sent_energy * 0.8 && energy < sent_energy * 1.2,
        "recorded energy {energy:.0} (rms {rms:.0} over {seconds} s), sent {sent_energy:.0}"
    );
}

#[test]
fn sipp_rfc4733_digits_to_dtmf_are_heard() {
    let server = Server::start_with(&media_config(), &[]);
    let cwd = tempfile::tempdir().expect("tmp");
    let out = sipp_call(&server, "call_dtmf.xml", "dtmf", 0, cwd.path());
    assert_eq!(
        out.status,
        Some(0),
        "sipp:\n{}\n{}\nserver log:\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );
    assert!(
        wait_for_log(&server, "call ended", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(log.contains("digits=123"), "{log}");
    assert_eq!(log.matches("dtmf digit heard").count(), 3, "{log}");
}

/// baresip, an agent softphone (not on a trunk address: it must authenticate), calls
/// `play` with a WAV as its microphone; its `sndfile` module writes what it heard.
#[test]
fn baresip_agent_hears_the_prompt_played_by_play() {
    // Only 127.0.0.2 is a trunk here, so baresip on 127.0.0.1 is an agent and must
    // answer the digest challenge for its INVITE.
    // baresip 1.0 refuses a challenge that offers an algorithm it does not know.
    let config = media_config()
        .replace("sources = [\"127.0.0.1\"]", "sources = [\"127.0.0.2\"]")
        .replace(
            "digest_algorithms = [\"MD5\", \"SHA-256\"]",
            "digest_algorithms = [\"MD5\"]",
        );
    let server = Server::start_with(&config, &[]);
    let mic = repo_root().join("tests/fixtures/audio/caller-speech-pcm.wav");
    let phone = common::phone::Baresip::dialling(
        &server,
        &format!(
            "<sip:1001@{};transport=udp>;auth_pass=secret1001;regint=0",
            server.sip
        ),
        "play",
        &mic,
        8,
    )
    .finish();
    let out = &phone.output;
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        wait_for_log(&server, "call ended", Duration::from_secs(5)),
        "baresip:\n{all}\nserver log:\n{}",
        server.log()
    );
    assert!(server.log().contains("call answered"), "{}", server.log());
    let heard = phone
        .heard
        .as_ref()
        .unwrap_or_else(|| panic!("baresip had no call:\n{all}"));
    let (rms, seconds, _) = wav_stats(heard);
    let (prompt_rms, prompt_seconds, _) =
        wav_stats(&repo_root().join("config/prompts/zh/after_hours.wav"));
    // The prompt (2.6 s) after 0.2 s of silence, then the server hangs up.
    assert!(
        seconds > prompt_seconds && seconds < prompt_seconds + 2.0,
        "heard {seconds} s, prompt {prompt_seconds} s"
    );
    assert!(
        rms > prompt_rms * 0.5,
        "heard rms {rms:.0}, prompt rms {prompt_rms:.0}"
    );
}

/// A hand-driven trunk call over raw UDP, for exact checks of signalling and RTP.
struct RawCall {
    sip: RawUdp,
    rtp: std::net::UdpSocket,
    call_id: String,
    to_tag: String,
    /// The server's RTP address from its SDP answer.
    server_rtp: std::net::SocketAddr,
}

fn invite_text(sip: &RawUdp, service: &str, call_id: &str, rtp_port: u16, formats: &str) -> String {
    let rtpmaps: String = formats
        .split(' ')
        .map(|pt| match pt {
            "0" => "a=rtpmap:0 PCMU/8000\n".to_string(),
            "8" => "a=rtpmap:8 PCMA/8000\n".to_string(),
            "18" => "a=rtpmap:18 G729/8000\n".to_string(),
            "101" => "a=rtpmap:101 telephone-event/8000\n".to_string(),
            _ => String::new(),
        })
        .collect();
    let sdp = format!(
        "v=0\no=raw 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
         m=audio {rtp_port} RTP/AVP {formats}\n{rtpmaps}a=sendrecv\n"
    )
    .replace('\n', "\r\n");
    format!(
        "INVITE sip:{service}@{server} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id};rport\n\
         Max-Forwards: 70\nFrom: <sip:053188886666@127.0.0.1>;tag=raw\nTo: <sip:{service}@{server}>\n\
         Call-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:caller@{local}>\n\
         Content-Type: application/sdp\nContent-Length: {len}\n\n{sdp}",
        server = sip.server,
        local = sip.local(),
        len = sdp.len(),
    )
}

impl RawCall {
    /// INVITE and wait for the final answer: Ok(call) on 200 (ACKed), Err(status) else.
    fn start(server: &Server, service: &str, formats: &str) -> Result<RawCall, u16> {
        let sip = RawUdp::new(server.sip);
        let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("rtp");
        rtp.set_read_timeout(Some(Duration::from_millis(1000))).ok();
        let call_id = format!("raw-{}-{}", std::process::id(), rand_suffix());
        let rtp_port = rtp.local_addr().expect("addr").port();
        sip.send(&invite_text(&sip, service, &call_id, rtp_port, formats));
        let final_response = loop {
            let resp = sip.recv().ok_or(0u16)?;
            if status_of(&resp) >= 200 {
                break resp;
            }
        };
        let status = status_of(&final_response);
        if status != 200 {
            return Err(status);
        }
        let to = header(&final_response, "To").unwrap_or_default();
        let to_tag = to.split("tag=").nth(1).unwrap_or_default().to_string();
        let body = final_response.split("\r\n\r\n").nth(1).unwrap_or_default();
        let port: u16 = body
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let call = RawCall {
            sip,
            rtp,
            call_id,
            to_tag,
            server_rtp: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        };
        call.in_dialog("ACK", 1);
        Ok(call)
    }

    fn in_dialog(&self, method: &str, cseq: u32) {
        let branch = if method == "ACK" {
            format!("z9hG4bK-ack-{}", self.call_id)
        } else {
            format!("z9hG4bK-{method}-{}", self.call_id)
        };
        self.sip.send(&format!(
            "{method} sip:hotline@{server} SIP/2.0\nVia: SIP/2.0/UDP {local};branch={branch};rport\n\
             Max-Forwards: 70\nFrom: <sip:053188886666@127.0.0.1>;tag=raw\n\
             To: <sip:x@{server}>;tag={tag}\nCall-ID: {id}\nCSeq: {cseq} {method}\n\
             Content-Length: 0\n\n",
            server = self.sip.server,
            local = self.sip.local(),
            tag = self.to_tag,
            id = self.call_id,
        ));
    }

    fn bye(&self) -> Option<u16> {
        // Above any CSeq a test used for re-INVITEs.
        self.in_dialog("BYE", 20);
        loop {
            let resp = self.sip.recv()?;
            if resp.contains("CSeq: 20 BYE") {
                return Some(status_of(&resp));
            }
        }
    }

    fn send_rtp(&self, seq: u16, payload: &[u8]) {
        let mut packet = vec![0x80, 8];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        packet.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        packet.extend_from_slice(payload);
        self.rtp
            .send_to(&packet, self.server_rtp)
            .expect("send rtp");
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn echo_sends_each_rtp_packet_back_with_our_own_ssrc() {
    let server = Server::start_with(&media_config(), &[]);
    let call = RawCall::start(&server, "echo", "8 101").expect("answered");
    let mut echoed = 0;
    let mut buf = [0u8; 2048];
    for seq in 0..20u16 {
        let payload = [0x55u8 ^ (seq as u8); 160];
        call.send_rtp(seq, &payload);
        if let Ok((n, from)) = call.rtp.recv_from(&mut buf) {
            assert_eq!(from, call.server_rtp, "symmetric RTP");
            assert_eq!(n, 12 + 160);
            assert_eq!(buf[1] & 0x7f, 8, "PCMA");
            assert_ne!(
                &buf[8..12],
                &0x1234_5678u32.to_be_bytes(),
                "our SSRC, not theirs"
            );
            assert_eq!(&buf[12..n], &payload[..], "payload unchanged");
            echoed += 1;
        }
    }
    assert!(echoed >= 18, "echoed {echoed} of 20");
    assert_eq!(call.bye(), Some(200));
    assert!(wait_for_log(&server, "call ended", Duration::from_secs(5)));
}

#[test]
fn no_common_codec_is_488_and_other_sources_are_challenged() {
    let server = Server::start_with(&media_config(), &[]);
    assert_eq!(RawCall::start(&server, "echo", "18").err(), Some(488));
    // Unknown number on a trunk: nobody takes it.
    assert_eq!(RawCall::start(&server, "nobody", "8").err(), Some(480));
    let not_trunk =
        media_config().replace("sources = [\"127.0.0.1\"]", "sources = [\"127.0.0.2\"]");
    let server = Server::start_with(&not_trunk, &[]);
    // Not a trunk: challenged whatever the number (the toll-fraud guard refuses the
    // hotline with 403 only after an agent authenticated, see security_tollfraud.rs).
    assert_eq!(RawCall::start(&server, "053112348", "8").err(), Some(401));
    // A test extension from a non-trunk needs an agent's digest.
    assert_eq!(RawCall::start(&server, "echo", "8").err(), Some(401));
}

#[test]
fn silent_caller_is_hung_up_by_media_timeout_and_ports_are_released() {
    let server = Server::start_with(&media_config(), &[]);
    let call = RawCall::start(&server, "echo", "8").expect("answered");
    // No RTP at all: after media_timeout_secs (4 s) the server sends BYE.
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut bye = None;
    while Instant::now() < deadline && bye.is_none() {
        if let Some(msg) = call.sip.recv()
            && msg.starts_with("BYE ")
        {
            bye = Some(msg);
        }
    }
    let bye = bye.expect("server sent BYE on media timeout");
    assert_eq!(header(&bye, "Call-ID"), Some(call.call_id.as_str()));
    let mut ok = String::from("SIP/2.0 200 OK\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for value in headers(&bye, name) {
            ok.push_str(&format!("{name}: {value}\n"));
        }
    }
    ok.push_str("Content-Length: 0\n\n");
    call.sip.send(&ok);
    assert!(
        wait_for_log(&server, "media_timeout", Duration::from_secs(3)),
        "{}",
        server.log()
    );
    // The range holds 20 port pairs: 25 more calls in a row only work if each call gives
    // its pair back.
    for _ in 0..25 {
        let call = RawCall::start(&server, "echo", "8").expect("answered: ports were released");
        assert_eq!(call.bye(), Some(200));
    }
}

/// The caller puts the call on hold (re-INVITE with `a=sendonly`): we answer `recvonly`,
/// stop expecting RTP (no media timeout while held), and resume on the next re-INVITE.
#[test]
fn hold_by_reinvite_is_answered_recvonly_and_suspends_the_media_timeout() {
    let server = Server::start_with(&media_config(), &[]);
    let call = RawCall::start(&server, "echo", "8").expect("answered");
    let reinvite = |cseq: u32, direction: &str| {
        let sdp = format!(
            "v=0\r\no=raw 1 {cseq} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na={direction}\r\n",
            call.rtp.local_addr().expect("addr").port()
        );
        call.sip.send(&format!(
            "INVITE sip:hotline@{server} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-re{cseq}-{id};rport\n\
             Max-Forwards: 70\nFrom: <sip:053188886666@127.0.0.1>;tag=raw\n\
             To: <sip:echo@{server}>;tag={tag}\nCall-ID: {id}\nCSeq: {cseq} INVITE\n\
             Contact: <sip:caller@{local}>\nContent-Type: application/sdp\nContent-Length: {len}\n\n{sdp}",
            server = call.sip.server,
            local = call.sip.local(),
            tag = call.to_tag,
            id = call.call_id,
            len = sdp.len(),
        ));
        let answer = loop {
            let resp = call.sip.recv().expect("answer to re-INVITE");
            if resp.contains(&format!("CSeq: {cseq} INVITE")) && status_of(&resp) >= 200 {
                break resp;
            }
        };
        call.in_dialog("ACK", cseq);
        answer
    };
    let held = reinvite(2, "sendonly");
    assert_eq!(status_of(&held), 200, "{held}");
    assert!(held.contains("a=recvonly"), "{held}");
    // Held for longer than media_timeout_secs (4 s) without RTP: no BYE.
    let quiet_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < quiet_until {
        if let Some(msg) = call.sip.recv() {
            assert!(
                !msg.starts_with("BYE "),
                "hung up while held:\n{}",
                server.log()
            );
        }
    }
    let resumed = reinvite(3, "sendrecv");
    assert_eq!(status_of(&resumed), 200, "{resumed}");
    assert!(resumed.contains("a=sendrecv"), "{resumed}");
    assert_eq!(call.bye(), Some(200));
}

/// A host never named in SDP or signalling (127.0.0.2) sending RTP straight to a call's
/// port (worse than spraying the pool: it knows the port) takes none of the call's
/// audio, while the caller at its SDP address hears all of it. Before the latching rule
/// the stranger's first packet took the prompt away from the caller.
#[test]
fn a_stranger_sending_rtp_to_a_calls_port_gets_none_of_its_audio() {
    let server = Server::start_with(&media_config(), &[]);
    let call = RawCall::start(&server, "play", "8 101").expect("answered");
    let stranger = std::net::UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    stranger
        .set_read_timeout(Some(Duration::from_millis(20)))
        .ok();
    call.rtp
        .set_read_timeout(Some(Duration::from_millis(20)))
        .ok();
    let mut packet = vec![0x80, 8, 0, 0, 0, 0, 0, 0, 0x66, 0x66, 0x66, 0x66];
    packet.extend_from_slice(&[0xD5; 160]);
    let (mut stolen, mut heard) = (0, 0);
    let mut buf = [0u8; 2048];
    for seq in 0..100u16 {
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        stranger
            .send_to(&packet, call.server_rtp)
            .expect("stranger sends");
        if stranger.recv_from(&mut buf).is_ok() {
            stolen += 1;
        }
        if call.rtp.recv_from(&mut buf).is_ok() {
            heard += 1;
        }
    }
    assert_eq!(stolen, 0, "the stranger got the call's audio");
    assert!(
        heard >= 50,
        "the caller heard {heard} packets of 100 frames"
    );
    let _ = call.bye();
    assert!(
        wait_for_log(
            &server,
            "RTP from hosts not in the call dropped",
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
    assert!(
        server.metric("hotline_rtp_foreign_dropped_total") >= 100,
        "the stranger's packets are counted"
    );
}

/// Reflection: an INVITE (from a trunk) whose SDP names a third party, never ACKed,
/// sends that party nothing, however long the server retransmits its 200; multicast and
/// broadcast media addresses are refused with 488.
#[test]
fn no_media_goes_to_an_unconfirmed_or_non_unicast_address() {
    let server = Server::start_with(&media_config(), &[]);
    let victim = std::net::UdpSocket::bind("127.0.0.3:0").expect("bind 127.0.0.3");
    victim
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok();
    let victim_port = victim.local_addr().expect("addr").port();
    let sip = RawUdp::new(server.sip);
    let invite = invite_text(&sip, "play", "reflect-1", victim_port, "8")
        .replace("c=IN IP4 127.0.0.1", "c=IN IP4 127.0.0.3");
    sip.send(&invite);
    let answered = std::iter::from_fn(|| sip.recv())
        .take(10)
        .any(|r| status_of(&r) == 200);
    assert!(answered, "{}", server.log());
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut reflected = 0;
    while Instant::now() < deadline {
        if victim.recv_from(&mut buf).is_ok() {
            reflected += 1;
        }
    }
    assert_eq!(reflected, 0, "packets sent to the unconfirmed address");

    for group in ["224.0.0.1", "255.255.255.255"] {
        let sip = RawUdp::new(server.sip);
        let invite = invite_text(&sip, "play", &format!("reflect-{group}"), 4000, "8")
            .replace("c=IN IP4 127.0.0.1", &format!("c=IN IP4 {group}"));
        // The address changed length: the Content-Length follows.
        let invite = invite.replace("\r\n", "\n");
        let (head, body) = invite.split_once("\n\n").expect("body");
        let length = body.replace('\n', "\r\n").len();
        let head = head
            .lines()
            .map(|l| {
                if l.starts_with("Content-Length") {
                    format!("Content-Length: {length}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        sip.send(&format!("{head}\n\n{body}"));
        let status = std::iter::from_fn(|| sip.recv())
            .take(10)
            .map(|r| status_of(&r))
            .find(|s| *s >= 200);
        assert_eq!(status, Some(488), "c={group}");
    }
}
