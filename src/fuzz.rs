//! The properties the fuzz targets check (`fuzz/fuzz_targets/*.rs`, run by
//! `fuzz/smoke.sh`), shared with the fixed-seed mutation tests at the bottom so that
//! `cargo test` exercises them on every run without libFuzzer.
//!
//! Each function takes arbitrary bytes, drives one parser or decoder the way the server
//! does, and panics only when a property is broken: a panic inside the library (the bug
//! class fuzzing hunts), a round trip that does not hold, a length that does not add up,
//! an error the server would answer with 5xx for client input, or text that could reach
//! SQL without having been checked. Seeds live in `fuzz/corpus/<target>/`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, FixedOffset, TimeZone};

use crate::api::auth::User;
use crate::api::error::ApiError;
use crate::calendar::{Calendar, shanghai};
use crate::config::Config;
use crate::media::bridge::{LegMedia, RelayDirection, Relayed};
use crate::media::dtmf::{
    DtmfDigit, DtmfReceiver, EventEnd, InbandDetector, TELEPHONE_EVENT_LEN, TelephoneEvent,
    digit_packets,
};
use crate::media::g711::Codec;
use crate::media::rtp::{
    Marker, RTP_HEADER_LEN, RemoteMedia, RtcpIter, RtcpPacket, RtpHeader, RtpPacket, RtpSession,
    RtpSessionConfig, write_packet,
};
use crate::media::sdp::{self, Direction, LocalMedia, SessionDescription};
use crate::orders::OrdersContext;
use crate::ticket::{Order, OrderId};

// ---------------------------------------------------------------------------------------
// SDP

fn local_media() -> LocalMedia {
    LocalMedia::g711(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), 30000, 42, 1)
}

/// SDP (`sdp_parse`): parse → serialise → parse is the identity; every accessor runs;
/// answering an offer and reading an answer to our offer give consistent results whose
/// SDP round-trips too.
pub fn sdp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = SessionDescription::parse(&text) else {
        return;
    };
    let wire = parsed.to_string();
    assert_eq!(
        SessionDescription::parse(&wire).as_ref(),
        Ok(&parsed),
        "parse(to_string(sdp)) != sdp for {wire:?}"
    );
    let _ = parsed.direction();
    for m in &parsed.media {
        let _ = (m.direction(), m.ptime(), m.rtcp(), m.telephone_event());
        let _ = parsed.connection_for(m);
        for pt in m.payload_types().collect::<Vec<_>>() {
            let _ = (m.rtpmap(pt), m.fmtp(pt), m.codec_of(pt));
        }
    }

    let mut local = local_media();
    if data.len() % 2 == 1 {
        local.codecs.reverse();
        local.direction = Direction::SendOnly;
    }
    if let Ok(answer) = sdp::answer(&parsed, &local) {
        let negotiated = answer.media;
        assert!(local.codecs.contains(&negotiated.codec));
        assert_eq!(
            answer.sdp.media.len(),
            parsed.media.len(),
            "one m-line per offer m-line"
        );
        let offered: Vec<u8> = parsed
            .media
            .iter()
            .flat_map(|m| m.payload_types().collect::<Vec<_>>())
            .collect();
        assert!(offered.contains(&negotiated.payload_type));
        if let Some(pt) = negotiated.dtmf_payload_type {
            assert!(offered.contains(&pt));
        }
        let answer_text = answer.sdp.to_string();
        assert_eq!(
            SessionDescription::parse(&answer_text).as_ref(),
            Ok(&answer.sdp),
            "our answer does not round-trip: {answer_text:?}"
        );
        let _ = (negotiated.remote(), negotiated.is_held());
    }
    let ours = sdp::offer(&local);
    if let Ok(negotiated) = sdp::parse_answer(&ours, &parsed) {
        assert!(local.codecs.contains(&negotiated.codec));
        assert!(
            ours.media[0]
                .payload_types()
                .any(|pt| pt == negotiated.payload_type)
        );
    }
}

// ---------------------------------------------------------------------------------------
// RTP / RTCP / G.711 relay

const RTCP_BUFFER: usize = 512;

/// RTP and RTCP (`rtp_parse`): the packet view's lengths add up and its header rebuilds
/// to the same fields; a plain packet rebuilds byte for byte; the bridge relays in place
/// with G.711 lengths preserved; compound RTCP parses without reading past a packet; and
/// the input drives an [`RtpSession`] (sequence, jitter and loss arithmetic on hostile
/// numbers) whose own reports parse back.
pub fn rtp(data: &[u8]) {
    rtp_packet(data);
    rtcp_packets(data);
    rtp_session(data);
}

fn rtp_packet(data: &[u8]) {
    let Ok(packet) = RtpPacket::parse(data) else {
        return;
    };
    assert_eq!(packet.csrc.len(), 4 * usize::from(data[0] & 0x0F));
    assert_eq!(packet.csrcs().count(), usize::from(data[0] & 0x0F));
    assert_eq!(
        packet.payload_offset + packet.payload.len() + usize::from(packet.padding),
        data.len(),
        "header + payload + padding must be the datagram"
    );
    assert!(packet.payload_offset >= RTP_HEADER_LEN);
    let header = RtpHeader {
        marker: packet.marker,
        payload_type: packet.payload_type,
        sequence: packet.sequence,
        timestamp: packet.timestamp,
        ssrc: packet.ssrc,
    };
    let mut out = vec![0u8; RTP_HEADER_LEN + packet.payload.len()];
    let written = write_packet(&header, packet.payload, &mut out).expect("buffer fits");
    assert_eq!(written, out.len());
    let again = RtpPacket::parse(&out).expect("a packet we wrote parses");
    assert_eq!(
        (
            again.marker,
            again.payload_type,
            again.sequence,
            again.timestamp,
            again.ssrc
        ),
        (
            header.marker,
            header.payload_type,
            header.sequence,
            header.timestamp,
            header.ssrc
        )
    );
    assert_eq!(again.payload, packet.payload);
    if data[0] == 0x80 {
        assert_eq!(out, data, "a plain packet rebuilds byte for byte");
    }

    // The bridge, both laws each way, with and without a recording buffer.
    for (from, to) in [
        (Codec::Pcmu, Codec::Pcma),
        (Codec::Pcma, Codec::Pcmu),
        (Codec::Pcmu, Codec::Pcmu),
    ] {
        let leg = |codec: Codec, pt: u8, dtmf: u8| LegMedia {
            codec,
            payload_type: pt,
            dtmf_payload_type: Some(dtmf),
        };
        let from_leg = leg(from, packet.payload_type, packet.payload_type ^ 1);
        let to_leg = leg(to, to.static_payload_type(), 101);
        let mut relay = RelayDirection::new(from_leg, to_leg);
        let mut out = crate::media::stream::OutboundStream::new(0x1234_5678, 1000, 160_000, 8000);
        let mut buf = data.to_vec();
        let mut pcm = vec![0i16; data.len() % 400];
        let pcm_len = pcm.len();
        match relay.relay(
            std::time::Instant::now(),
            &mut buf,
            data.len(),
            Some(&mut pcm),
            &mut out,
        ) {
            Ok(Relayed::Audio {
                len,
                payload_len,
                decoded,
                ..
            }) => {
                assert_eq!(payload_len, packet.payload.len());
                assert_eq!(len, RTP_HEADER_LEN + payload_len);
                assert_eq!(
                    decoded,
                    payload_len.min(pcm_len),
                    "G.711: one sample per byte"
                );
                let sent = RtpPacket::parse(&buf[..len]).expect("relayed packet parses");
                assert_eq!(sent.payload_type, to_leg.payload_type);
                assert_eq!(sent.payload.len(), payload_len);
                let table = from.transcode_table(to);
                for (out, code) in sent.payload.iter().zip(packet.payload) {
                    assert_eq!(*out, table[usize::from(*code)]);
                }
                for (sample, code) in pcm.iter().zip(packet.payload) {
                    assert_eq!(*sample, from.decode(*code));
                }
            }
            Ok(Relayed::Dtmf { .. } | Relayed::Dropped(_)) => {}
            Err(e) => panic!("a packet that parsed was refused by the relay: {e}"),
        }
    }
    let mut samples = vec![0i16; packet.payload.len()];
    for codec in [Codec::Pcmu, Codec::Pcma] {
        assert_eq!(
            codec.decode_into(packet.payload, &mut samples),
            samples.len()
        );
        let mut codes = vec![0u8; samples.len()];
        assert_eq!(codec.encode_into(&samples, &mut codes), codes.len());
    }
}

fn rtcp_packets(data: &[u8]) {
    let mut consumed_ok = 0usize;
    for item in RtcpIter::new(data) {
        let Ok(packet) = item else { break };
        consumed_ok += 1;
        match packet {
            RtcpPacket::SenderReport { reports, .. }
            | RtcpPacket::ReceiverReport { reports, .. } => {
                assert!(reports.iter().count() <= 31);
            }
            RtcpPacket::SourceDescription { cname, .. } => {
                if let Some(cname) = cname {
                    assert!(cname.len() <= 255);
                }
            }
            RtcpPacket::Bye { .. } | RtcpPacket::Other { .. } => {}
        }
    }
    // Each packet is at least 4 bytes.
    assert!(consumed_ok <= data.len() / 4);
}

/// Reads the input as a script of received packets: 2 bytes of milliseconds to wait, 2 of
/// sequence, 4 of timestamp, 1 choosing the SSRC/source, 1 of payload length.
fn rtp_session(data: &[u8]) {
    let base = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let remote: SocketAddr = "198.51.100.7:4000".parse().expect("address");
    let other: SocketAddr = "198.51.100.8:4000".parse().expect("address");
    let mut config = RtpSessionConfig::g711(7, 65_000, 0xFFFF_FF00, "hotline@fuzz".to_owned());
    config.media_timeout = Some(Duration::from_millis(2000));
    let mut session = RtpSession::new(
        config,
        base,
        wall,
        RemoteMedia {
            rtp: Some(remote),
            rtcp: None,
        },
    );
    let mut now = base;
    let mut accepted = 0u64;
    let mut payload = [0u8; 160];
    for record in data.chunks_exact(10) {
        let wait = u64::from(u16::from_be_bytes([record[0], record[1]]));
        now += Duration::from_millis(wait);
        let source = if record[8] & 0x80 == 0 { remote } else { other };
        let ssrc = u32::from(record[8] & 0x03);
        let len = usize::from(record[9]).min(payload.len());
        let header = RtpHeader {
            marker: Marker::Clear,
            payload_type: 0,
            sequence: u16::from_be_bytes([record[2], record[3]]),
            timestamp: u32::from_be_bytes([record[4], record[5], record[6], record[7]]),
            ssrc,
        };
        let mut buf = [0u8; RTP_HEADER_LEN + 160];
        payload[..len].fill(record[9]);
        let n = write_packet(&header, &payload[..len], &mut buf).expect("fits");
        let packet = RtpPacket::parse(&buf[..n]).expect("parses");
        if matches!(
            session.receive_rtp(now, source, &packet),
            crate::media::rtp::ReceiveOutcome::Accepted { .. }
        ) {
            accepted += 1;
        }
        if record[8] & 0x40 != 0 {
            let _ = session.receive_rtcp(now, source, record);
            let h = session.next_header(now, 8, Marker::Set, u32::from(header.sequence), len);
            assert_eq!(h.ssrc, 7);
        }
        session.handle_timeout(now);
        while let Some(event) = session.poll_event() {
            if event == crate::media::rtp::SessionEvent::RtcpDue {
                own_report_parses(&mut session, now);
            }
        }
        if let Some(at) = session.poll_timeout() {
            assert!(at > now, "a timer due now survived handle_timeout");
        }
        let stats = session.stats();
        assert!(stats.received <= accepted);
    }
    own_report_parses(&mut session, now);
    let _ = session.receive_rtcp(now, remote, data);
}

fn own_report_parses(session: &mut RtpSession, now: Instant) {
    let mut buf = [0u8; RTCP_BUFFER];
    let len = session.build_rtcp(now, &mut buf).expect("our report fits");
    let packets: Vec<_> = RtcpIter::new(&buf[..len]).collect();
    assert_eq!(packets.len(), 2, "SR or RR, then SDES");
    assert!(matches!(
        packets[0],
        Ok(RtcpPacket::SenderReport { ssrc: 7, .. } | RtcpPacket::ReceiverReport { ssrc: 7, .. })
    ));
    assert!(matches!(
        packets[1],
        Ok(RtcpPacket::SourceDescription {
            cname: Some(b"hotline@fuzz"),
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------
// RFC 4733

/// Telephone events (`dtmf_event`): the payload rebuilds to its bytes (less the reserved
/// bit); a stream of events through [`DtmfReceiver`] reports each digit at most once per
/// event and never stays open past its flush time; the send plan for any digit and length
/// is well formed; and the bytes as G.711 audio go through the in-band detector.
pub fn dtmf(data: &[u8]) {
    if let Ok(event) = TelephoneEvent::parse(data) {
        let mut out = [0u8; TELEPHONE_EVENT_LEN];
        assert_eq!(event.write(&mut out), Ok(TELEPHONE_EVENT_LEN));
        assert_eq!(out[0], data[0]);
        assert_eq!(out[1], data[1] & 0xBF, "only the reserved bit is dropped");
        assert_eq!(out[2..4], data[2..4]);
        assert_eq!(TelephoneEvent::parse(&out), Ok(event));
    }

    // A stream: 1 byte of milliseconds to wait, 4 of timestamp, then the 4-byte payload.
    let base = Instant::now();
    let flush = Duration::from_millis(600);
    let mut receiver = DtmfReceiver::new(flush);
    let mut now = base;
    let mut packets = 0usize;
    let mut reported = 0usize;
    for record in data.chunks_exact(9) {
        now += Duration::from_millis(u64::from(record[0]) * 4);
        let timestamp = u32::from_be_bytes([record[1], record[2], record[3], record[4]]);
        let Ok(event) = TelephoneEvent::parse(&record[5..]) else {
            unreachable!("4 bytes always parse")
        };
        packets += 1;
        receiver.receive(now, timestamp, &event);
        receiver.handle_timeout(now);
        while let Some(digit) = receiver.poll_digit() {
            reported += 1;
            assert!(digit.duration <= u32::from(u16::MAX));
        }
        if let Some(at) = receiver.poll_timeout() {
            assert!(at <= now + flush);
        }
    }
    receiver.handle_timeout(now + flush);
    assert_eq!(
        receiver.poll_timeout(),
        None,
        "nothing stays open past the flush time"
    );
    while receiver.poll_digit().is_some() {
        reported += 1;
    }
    assert!(reported <= packets, "at most one digit per packet");

    // The send plan.
    if let [code, volume, hi, lo, ..] = *data {
        let digit = DtmfDigit::from_event_code(code % 16).expect("0..16 are digits");
        let length = Duration::from_millis(u64::from(u16::from_be_bytes([hi, lo])));
        let plan: Vec<_> = digit_packets(digit, length, volume).collect();
        assert!(plan.len() >= 4);
        assert_eq!(plan[0].marker, Marker::Set);
        let (updates, end) = plan.split_at(plan.len() - 3);
        assert!(updates.iter().all(|p| p.event.end == EventEnd::Continuing));
        assert!(end.iter().all(|p| p.event.end == EventEnd::Ended));
        assert!(
            plan.windows(2)
                .all(|w| w[0].offset <= w[1].offset && w[0].event.duration <= w[1].event.duration)
        );
        assert!(
            plan.iter()
                .all(|p| p.event.volume <= 63 && p.event.event == digit.event_code())
        );
        // What we send, a receiver reads back as the same digit, once.
        let mut rx = DtmfReceiver::default();
        for p in &plan {
            rx.receive(base + p.offset, 8000, &p.event);
        }
        let got = rx.poll_digit().expect("our plan is received");
        assert_eq!(got.digit, digit);
        assert_eq!(rx.poll_digit(), None);
    }

    // In-band over the bytes as audio.
    let codec = if data.first().is_some_and(|b| b & 1 == 1) {
        Codec::Pcma
    } else {
        Codec::Pcmu
    };
    let mut samples = vec![0i16; data.len()];
    assert_eq!(codec.decode_into(data, &mut samples), data.len());
    let mut detector = InbandDetector::new();
    let mut fed = 0u64;
    for chunk in samples.chunks(97) {
        fed += chunk.len() as u64;
        for digit in detector.process(chunk) {
            assert!(digit.detected_at_sample <= fed);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Config

/// The config loader (`config_toml`): any text gives a config that validates clean, or
/// problems that each name a path and say something; a syntax error points at a line
/// inside the text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1);
    match Config::from_toml(text) {
        Ok(config) => {
            assert!(
                config.validate().is_empty(),
                "from_toml returned a config with problems"
            );
            let _ = config.database_url(None);
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "an error without a problem");
            for p in &problems {
                assert!(!p.path.is_empty(), "problem without a path: {p:?}");
                assert!(!p.message.is_empty(), "problem without a message: {p:?}");
                if let Some(line) = p.line {
                    assert!(
                        (1..=lines + 1).contains(&line),
                        "line {line} of {lines}: {p:?}"
                    );
                }
                let _ = p.to_string();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// API request bodies and list filters

struct ApiFixture {
    ctx: OrdersContext,
    users: Vec<User>,
    agents: Vec<String>,
}

fn api_fixture() -> &'static ApiFixture {
    static FIXTURE: OnceLock<ApiFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Read at run time, not embedded: the library (and so the server binary) must
        // not depend on the shipped config's contents, or every config edit rebuilds it.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = Config::load(&root.join("config/hotline.toml"))
            .unwrap_or_else(|e| panic!("the shipped config: {e}"));
        let calendar = Calendar::load(&config.server.calendar)
            .unwrap_or_else(|e| panic!("the shipped calendar: {e}"));
        let ctx = OrdersContext::from_config(&config, calendar);
        let auth = crate::api::auth::Auth::for_config(&config);
        let users = config
            .users
            .iter()
            .filter_map(|u| auth.user(&u.id).cloned())
            .collect();
        let agents = config.agents.iter().map(|a| a.id.clone()).collect();
        ApiFixture { ctx, users, agents }
    })
}

fn fuzz_clock() -> DateTime<FixedOffset> {
    shanghai()
        .with_ymd_and_hms(2026, 3, 2, 10, 0, 0)
        .single()
        .expect("a valid time")
}

/// Every answer to client input is a 4xx with a code and a reason.
fn assert_client_error(e: &ApiError, input: &[u8]) {
    assert!(
        e.status.is_client_error(),
        "{} for client input {:?}: {e:?}",
        e.status,
        String::from_utf8_lossy(input)
    );
    assert!(!e.code.is_empty() && !e.message.is_empty(), "{e:?}");
    let response = axum::response::IntoResponse::into_response(e.clone());
    assert_eq!(response.status(), e.status);
}

/// What may reach a SQL bind from a list filter: ids, enum names, digits.
fn is_plain_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.' | b' '))
}

/// The API (`api_body`): the input is a script of requests separated by `0xFF`; each is
/// one byte naming the endpoint (`L` login, `C` create order, `X` order command, `A`
/// agent state change, `O` order list query, `K` calls list query), one byte choosing the
/// user / command / action, then the body or query string. Every refusal is a 4xx with a
/// reason; what is accepted is consistent (a created order has a valid phone and a
/// description, a command moves the version on, list filters hold only plain tokens).
/// Commands apply to the order the script created last, so sequences walk the lifecycle.
pub fn api(data: &[u8]) {
    let fixture = api_fixture();
    let mut at = fuzz_clock();
    let mut order: Option<Order> = None;
    for (index, segment) in data.split(|b| *b == 0xFF).take(16).enumerate() {
        let [kind, choice, body @ ..] = segment else {
            continue;
        };
        at += chrono::Duration::minutes(7);
        let user = &fixture.users[usize::from(*choice) % fixture.users.len()];
        let outcome: Result<(), ApiError> = match kind {
            b'L' => crate::api::orders::decode_login(body).map(drop),
            b'C' => {
                let id = OrderId(format!("GD20260302{index:016X}"));
                crate::api::orders::decide_create(body, user, &fixture.ctx, at, id).map(
                    |(created, events)| {
                        assert!(!events.is_empty());
                        assert_eq!(created.version, events.len() as u64);
                        assert!(!created.fields.description.trim().is_empty());
                        let phone = &created.fields.contact.phone;
                        assert!(phone.is_empty() || is_plain_token(phone), "{phone:?}");
                        order = Some(created);
                    },
                )
            }
            b'X' => {
                let current = order
                    .clone()
                    .unwrap_or_else(|| Order::new(OrderId("GD0".into())));
                let known = crate::api::orders::COMMANDS;
                let pick = usize::from(*choice / 8) % (known.len() + UNKNOWN_COMMANDS.len());
                let name = known
                    .get(pick)
                    .or_else(|| UNKNOWN_COMMANDS.get(pick - known.len()))
                    .copied()
                    .unwrap_or("submit");
                crate::api::orders::decide_command(&current, name, body, user, &fixture.ctx, at)
                    .map(|(next, events)| {
                        assert_eq!(next.version, current.version + events.len() as u64);
                        order = Some(next);
                    })
            }
            b'A' => {
                let agent = fixture
                    .agents
                    .get(usize::from(*choice) % fixture.agents.len().max(1))
                    .map_or("1001", String::as_str);
                let action = ["sign_in", "sign_out", "pause", "unpause", "dance"]
                    [usize::from(*choice / 16) % 5];
                crate::api::queues::decode_agent_change(agent, action, body).map(drop)
            }
            b'O' => {
                let raw = String::from_utf8_lossy(body);
                crate::api::orders::decode_list_query(Some(&raw), user, &fixture.ctx, at).map(
                    |(filter, page)| {
                        assert!(page >= 1 && (1..=200).contains(&filter.limit));
                        assert!(filter.offset >= 0);
                        for text in [
                            &filter.city,
                            &filter.category,
                            &filter.area,
                            &filter.urgency,
                            &filter.unit,
                            &filter.phone,
                        ]
                        .into_iter()
                        .flatten()
                        {
                            assert!(is_plain_token(text), "{text:?} would reach SQL");
                        }
                    },
                )
            }
            b'K' => {
                let raw = String::from_utf8_lossy(body);
                let sees = choice & 1 == 0;
                crate::api::calls::decode_calls_query(Some(&raw), sees).map(|filter| {
                    assert!(filter.limit.is_some_and(|l| (1..=1000).contains(&l)));
                    for text in [&filter.city, &filter.category, &filter.caller, &filter.path]
                        .into_iter()
                        .flatten()
                    {
                        assert!(is_plain_token(text), "{text:?} would reach SQL");
                    }
                })
            }
            _ => continue,
        };
        if let Err(e) = outcome {
            assert_client_error(&e, segment);
        }
    }
}

/// Command names the API does not know, which the fuzzer also picks.
const UNKNOWN_COMMANDS: [&str; 2] = ["create", "../../etc/passwd"];

// ---------------------------------------------------------------------------------------
// Mutation helpers (the fixed-seed mutation tests here and in `tests/sip_torture.rs`)

/// Insert a copy of one line of `data` (repeated headers, SDP attributes, table rows …)
/// before itself; `choose(n)` picks which of the `n` lines (any value is taken modulo).
pub fn duplicate_a_line(data: &mut Vec<u8>, choose: impl FnOnce(usize) -> usize) {
    let len = data.len();
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(|i| *i < len)
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = starts[choose(starts.len()) % starts.len()];
    let end = data[start..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(len, |p| start + p + 1);
    let line = data[start..end].to_vec();
    data.splice(start..start, line);
}

#[cfg(test)]
mod tests;
