//! RFC 4475 / RFC 5118 torture messages sent to the running server over UDP and TCP:
//! each gets the answer an endpoint owes it (or none, where none is owed), and the server
//! keeps answering afterwards. The parser-level classification is in `sip_torture.rs`.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = repo_root().join("tests/fixtures/sip/torture");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sip"))
        .map(|p: PathBuf| {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, std::fs::read(&p).expect("read fixture"))
        })
        .collect();
    out.sort();
    out
}

/// What the endpoint answers each message over UDP (`None`: nothing, as for responses
/// and for requests too broken to route an answer to). Reasons quote RFC 4475/5118.
fn expected_udp(name: &str) -> Option<u16> {
    match name {
        // §3.1.1 valid: processed. OPTIONS → 200; INVITE from a trunk source → 480 (no
        // call layer configured in this test); REGISTER → 401 challenge; unknown → 501.
        "rfc4475-wsinv" => Some(480),
        "rfc4475-intmeth" => Some(501),
        "rfc4475-esc01" => Some(480),
        "rfc4475-escnull" => Some(401),
        "rfc4475-esc02" => Some(501),
        "rfc4475-lwsdisp" => Some(200),
        "rfc4475-longreq" => Some(480),
        "rfc4475-dblreq" => Some(401),
        "rfc4475-semiuri" => Some(200),
        "rfc4475-transports" => Some(200),
        "rfc4475-mpart01" => Some(405), // MESSAGE: not served here
        "rfc4475-badbranch" => Some(200),
        "rfc4475-unreason" | "rfc4475-noreason" => None,
        // §3.1.2 invalid: 400 (505 for the version); responses are dropped.
        "rfc4475-badinv01" => Some(400),
        "rfc4475-clerr" => Some(400),
        "rfc4475-scalar02" => Some(400),
        "rfc4475-scalarlg" => None, // a response: discarded
        "rfc4475-quotbal" => Some(400),
        "rfc4475-ltgtruri" => Some(400),
        "rfc4475-lwsruri" => Some(400),
        "rfc4475-lwsstart" => Some(400),
        "rfc4475-trws" => Some(400),
        "rfc4475-escruri" => Some(400),
        "rfc4475-baddate" => Some(400),
        "rfc4475-regbadct" => Some(400),
        "rfc4475-badaspec" => Some(400),
        "rfc4475-baddn" => Some(400),
        "rfc4475-badvers" => Some(505),
        "rfc4475-mismatch01" => Some(400),
        "rfc4475-mismatch02" => Some(400),
        "rfc4475-multi01" => Some(400),
        "rfc4475-mcl01" => Some(400),
        "rfc4475-bcast" => None,
        "rfc4475-bext01" => Some(420),
        "rfc4475-invut" => Some(415),
        "rfc4475-novelsc" => Some(416),
        "rfc4475-unksm2" => Some(400),
        "rfc4475-unkscm" => Some(416),
        "rfc4475-bigcode" => None,
        "rfc4475-sdp01" => Some(406),
        "rfc4475-inv2543" => Some(480),
        "rfc4475-cparam01" | "rfc4475-cparam02" => Some(401),
        "rfc4475-regaut01" => Some(401),
        "rfc4475-regescrt" => Some(401),
        "rfc4475-zeromf" => Some(200),
        "rfc4475-dblreq2" => Some(401),
        "rfc4475-insuf" => None,
        "rfc4475-ncl" => Some(400),
        _ => Some(0),
    }
}

fn udp_answer(server: &Server, bytes: &[u8]) -> Option<u16> {
    let client = RawUdp::new(server.sip);
    client.send_bytes(bytes);
    client.recv().map(|r| status_of(&r))
}

fn tcp_answer(server: &Server, bytes: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(server.sip).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(700)))
        .ok();
    stream.write_all(bytes).expect("write");
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                let finals: Vec<&str> = text
                    .split("SIP/2.0 ")
                    .skip(1)
                    .filter(|s| !s.starts_with("100 "))
                    .collect();
                if let Some(first) = finals.first() {
                    return first.get(..3).and_then(|c| c.parse().ok());
                }
            }
        }
    }
    None
}

fn alive(server: &Server) -> bool {
    let client = RawUdp::new(server.sip);
    client
        .request(&format!(
            "OPTIONS sip:ping@{} SIP/2.0\nVia: SIP/2.0/UDP {};branch=z9hG4bK-alive{}\n\
             Max-Forwards: 70\nFrom: <sip:probe@x>;tag=1\nTo: <sip:ping@x>\nCall-ID: alive\n\
             CSeq: 1 OPTIONS\nContent-Length: 0\n\n",
            server.sip,
            client.local(),
            client.local().port()
        ))
        .is_some_and(|r| status_of(&r) == 200)
}

/// Several fixtures share a branch and sent-by: to one server they are retransmissions of
/// one transaction (answered to the first sender, correctly), so each gets a fresh server.
#[test]
fn every_torture_message_over_udp_gets_the_answer_an_endpoint_owes() {
    let mut wrong = Vec::new();
    for (name, bytes) in fixtures() {
        if name.starts_with("rfc5118") {
            continue; // checked below: IPv6 addresses in messages sent over IPv4 loopback
        }
        let server = Server::start();
        let got = udp_answer(&server, &bytes);
        let want = expected_udp(&name);
        if got != want {
            wrong.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
        assert!(alive(&server), "server stopped answering after {name}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn rfc5118_ipv6_messages_are_answered_or_dropped_and_never_stall_the_server() {
    let server = Server::start();
    for (name, bytes) in fixtures()
        .into_iter()
        .filter(|(n, _)| n.starts_with("rfc5118"))
    {
        let got = udp_answer(&server, &bytes);
        // Responses to IPv6 sent-by addresses go to the source (rport is not set, so the
        // sent-by port on the source IP): valid ones are processed, invalid get 400.
        assert!(
            got.is_none() || got.is_some_and(|s| (200..700).contains(&s)),
            "{name}: {got:?}"
        );
        assert!(alive(&server), "server stopped answering after {name}");
    }
}

#[test]
fn every_torture_message_over_tcp_is_answered_like_udp_or_the_stream_is_closed() {
    let mut closed = 0;
    for (name, bytes) in fixtures() {
        let server = Server::start();
        let got = tcp_answer(&server, &bytes);
        let udp = if name.starts_with("rfc5118") {
            got
        } else {
            expected_udp(&name)
        };
        // Over TCP a message without a usable Content-Length cannot be framed: the
        // connection is closed without an answer (RFC 3261 §18.3).
        assert!(
            got == udp || got.is_none(),
            "{name}: TCP {got:?}, UDP {udp:?}"
        );
        assert!(
            alive(&server),
            "server stopped answering after {name} over TCP"
        );
        closed += server.metric("hotline_sip_dropped_total{reason=\"bad_stream\"}");
    }
    assert!(closed >= 1, "some fixtures cannot be framed over TCP");
}

#[test]
fn oversized_and_slowloris_tcp_input_is_cut_off() {
    let server = Server::start();
    // 70 KiB of headers with no end: over the 64 KiB frame limit → closed.
    let mut stream = TcpStream::connect(server.sip).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut big = b"OPTIONS sip:x@y SIP/2.0\r\n".to_vec();
    while big.len() < 70 * 1024 {
        big.extend_from_slice(
            b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    let _ = stream.write_all(&big);
    let mut buf = [0u8; 16];
    let closed = matches!(stream.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "oversized stream must be closed");
    // A connection that sends half a message and then nothing is closed after the idle
    // timeout (3 s in the test config).
    let mut slow = TcpStream::connect(server.sip).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(10))).ok();
    slow.write_all(b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1")
        .expect("write");
    let started = Instant::now();
    let closed = matches!(slow.read(&mut buf), Ok(0) | Err(_));
    assert!(
        closed && started.elapsed() < Duration::from_secs(8),
        "idle connection not closed"
    );
    assert!(alive(&server));
}

/// Finals (not 100) read from a TCP stream until `count` arrived or 3 s passed.
fn tcp_finals(stream: &mut TcpStream, count: usize) -> Vec<String> {
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .ok();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut text = String::new();
    let mut chunk = [0u8; 8192];
    loop {
        let finals: Vec<String> = text
            .split("SIP/2.0 ")
            .skip(1)
            .filter(|s| !s.starts_with("100 "))
            .map(str::to_string)
            .collect();
        if finals.len() >= count || Instant::now() >= deadline {
            return finals;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return finals,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&chunk[..n])),
            Err(_) => {}
        }
    }
}

/// RFC 4475 §3.1.1.13 dblreq over TCP: the REGISTER, an extra CRLF, then an INVITE whose
/// body is 5 bytes longer than its Content-Length. Both requests are answered (RFC 3261
/// §7.5: a CRLF before a start line is ignored); the 5 stray bytes cannot be framed, so
/// the stream is closed, but only after the answers went out.
#[test]
fn dblreq_over_tcp_answers_both_requests_before_the_stream_is_closed() {
    let server = Server::start();
    let bytes = fixtures()
        .into_iter()
        .find(|(n, _)| n == "rfc4475-dblreq")
        .map(|(_, b)| b)
        .expect("dblreq fixture");
    let mut stream = TcpStream::connect(server.sip).expect("connect");
    stream.write_all(&bytes).expect("write");
    let finals = tcp_finals(&mut stream, 2);
    assert_eq!(finals.len(), 2, "{finals:?}");
    // REGISTER → 401 challenge; the INVITE gets its own final answer (400: its SDP
    // carries `m =video`).
    assert!(finals[0].starts_with("401 ") && finals[0].contains("CSeq: 8 REGISTER"));
    assert!(finals[1].contains("CSeq: 8 INVITE"), "{finals:?}");
}

/// Two requests separated by an extra CRLF on one stream: both answered, and the stream
/// stays open; a CRLFCRLF keep-alive ping gets a CRLF pong (RFC 5626 §4.4.1).
#[test]
fn extra_crlf_between_requests_keeps_the_tcp_stream_and_a_ping_gets_a_pong() {
    let server = Server::start();
    let mut stream = TcpStream::connect(server.sip).expect("connect");
    let local = stream.local_addr().expect("local");
    let options = |n: u32| {
        format!(
            "OPTIONS sip:ping@hotline.test SIP/2.0\r\n\
             Via: SIP/2.0/TCP {local};branch=z9hG4bK-crlf-{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:probe@x>;tag=1\r\nTo: <sip:ping@hotline.test>\r\n\
             Call-ID: crlf-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let wire = format!("{}\r\n{}", options(1), options(2));
    stream.write_all(wire.as_bytes()).expect("write");
    let finals = tcp_finals(&mut stream, 2);
    let codes: Vec<&str> = finals.iter().filter_map(|f| f.get(..3)).collect();
    assert_eq!(codes, ["200", "200"], "{finals:?}");
    stream.write_all(b"\r\n\r\n").expect("ping");
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut pong = [0u8; 2];
    stream.read_exact(&mut pong).expect("pong");
    assert_eq!(&pong, b"\r\n");
    // Still open: a third request on it is answered.
    stream.write_all(options(3).as_bytes()).expect("write");
    let finals = tcp_finals(&mut stream, 1);
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(
        server.metric("hotline_sip_dropped_total{reason=\"bad_stream\"}"),
        0
    );
}

/// Requests without the RFC 3261 magic cookie (RFC 2543 peers) that share a top Via are
/// different transactions when their Call-ID or CSeq differ (RFC 3261 §17.2.3); each gets
/// its own answer.
#[test]
fn cookieless_requests_sharing_a_via_each_get_their_own_answer() {
    let server = Server::start();
    let client = RawUdp::new(server.sip);
    let local = client.local();
    let options = |call_id: &str| {
        format!(
            "OPTIONS sip:ping@hotline.test SIP/2.0\nVia: SIP/2.0/UDP {local}\n\
             Max-Forwards: 70\nFrom: <sip:old@x>;tag=1\nTo: <sip:ping@hotline.test>\n\
             Call-ID: {call_id}\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"
        )
    };
    for call_id in ["rfc2543-a", "rfc2543-b", "rfc2543-c"] {
        let resp = client.request(&options(call_id)).expect("answer");
        assert_eq!(status_of(&resp), 200, "{resp}");
        assert_eq!(header(&resp, "Call-ID"), Some(call_id), "{resp}");
    }
}
