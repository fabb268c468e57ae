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
