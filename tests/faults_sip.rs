//! Faults at the SIP edge: the process killed or stopped under load, garbage on the wire,
//! a source opening too many TCP connections. The real binary on loopback, bounded.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AGENTS: u32 = 20;

/// The test config plus agents 3001..3020 (password pw-30NN).
fn config_with_agents() -> String {
    let mut config = TEST_CONFIG.to_string();
    for id in 3001..3001 + AGENTS {
        config.push_str(&format!(
            "\n[[agents]]\nid = \"{id}\"\nname = \"坐席{id}\"\ncity = \"jinan\"\n\
             password = \"pw-{id}\"\nroles = [\"agent\"]\n"
        ));
    }
    config
}

/// One SIPp per agent (SIPp 3.6.1 cannot take per-call digest credentials from an `-inf`
/// file), each registering its agent `calls` times at `rate` per second in the
/// background; every 200 is logged as "registered USER" in a log file under `dir`.
fn register_flood(
    server: &Server,
    dir: &std::path::Path,
    rate: u32,
    calls: u32,
    transport: &str,
) -> Vec<Child> {
    let sipp = require("sipp");
    (3001..3001 + AGENTS)
        .map(|id| {
            Command::new(&sipp)
                .current_dir(dir)
                .args(["-sf", &path_str(&sipp_scenario("bench_register.xml"))])
                .args(["-s", &id.to_string(), "-au", &id.to_string()])
                .args(["-ap", &format!("pw-{id}")])
                .args(["-t", transport, "-i", "127.0.0.1"])
                .args(["-p", &free_port().to_string()])
                .args(["-r", &rate.to_string(), "-m", &calls.to_string()])
                .args(["-recv_timeout", "3000", "-timeout", "60", "-nostdin"])
                .arg("-trace_logs")
                .arg(server.sip.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sipp")
        })
        .collect()
}

/// Agents whose REGISTER got its 200, from SIPp's log file.
fn acknowledged(dir: &std::path::Path) -> BTreeSet<String> {
    let mut users = BTreeSet::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with("_logs.log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text.lines() {
                if let Some(user) = line.trim().strip_prefix("registered ") {
                    users.insert(user.trim().to_string());
                }
            }
        }
    }
    users
}

fn stop(children: Vec<Child>) {
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Restart the server in the same data directory after it was killed.
fn restart(mut server: Server) -> Server {
    server.kill();
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tmp"));
    drop(server);
    let config = std::fs::read_to_string(dir.path().join("hotline.toml")).expect("config");
    Server::start_in(dir, &config, &[])
}

#[test]
fn kill_9_mid_register_flood_keeps_every_acknowledged_binding() {
    let server = Server::start_with(&config_with_agents(), &[]);
    let work = tempfile::tempdir().expect("tmp");
    // Every agent re-registers 20 times a second: the kill lands while bindings are
    // being acknowledged and written.
    let flood = register_flood(&server, work.path(), 20, 400, "u1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged(work.path()).len() < AGENTS as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut server = server;
    server.kill(); // SIGKILL: no shutdown path runs
    std::thread::sleep(Duration::from_millis(200));
    stop(flood);
    let acked = acknowledged(work.path());
    assert!(
        acked.len() >= AGENTS as usize,
        "the flood did not register enough agents before the kill: {acked:?}"
    );
    let restarted = restart(server);
    let restored = restarted.metric("hotline_sip_registrations");
    // Each agent has one contact (SIPp's address with its user part): one binding each.
    assert!(
        restored >= acked.len() as u64,
        "{} agents got their 200 but only {restored} bindings came back: {acked:?}\n{}",
        acked.len(),
        restarted.log()
    );
    assert!(restored <= u64::from(AGENTS));
    let dump = std::process::Command::new("sqlite3")
        .arg(restarted.data_dir().join("hotline.db"))
        .arg("select aor from registrations")
        .output();
    if let Ok(out) = dump
        && out.status.success()
    {
        let stored = String::from_utf8_lossy(&out.stdout).into_owned();
        for user in &acked {
            assert!(stored.contains(user.as_str()), "{user} missing in {stored}");
        }
    }
}

#[test]
fn sigterm_during_a_register_flood_exits_0_within_the_drain_timeout() {
    let mut server = Server::start_with(&config_with_agents(), &[]);
    let work = tempfile::tempdir().expect("tmp");
    let flood = register_flood(&server, work.path(), 20, 2_000, "u1");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !acknowledged(work.path()).is_empty(),
        "the flood is running: {}",
        server.log()
    );
    let started = Instant::now();
    let code = server.terminate();
    let took = started.elapsed();
    stop(flood);
    assert_eq!(code, Some(0), "exit status; log:\n{}", server.log());
    // The HTTP side gets 10 s to drain; the SIP side stops at once.
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert!(server.log().contains("stopped"), "{}", server.log());
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// xorshift64*: deterministic bytes so a failure can be replayed.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.next() % n).unwrap_or(0)
    }
}

#[test]
fn ten_thousand_malformed_datagrams_leave_the_server_answering() {
    let server = Server::start();
    let client = RawUdp::new(server.sip);
    let valid = format!(
        "OPTIONS sip:ping@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-noise\r\n\
         Max-Forwards: 70\r\nFrom: <sip:n@x>;tag=1\r\nTo: <sip:ping@x>\r\nCall-ID: noise\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        server.sip,
        client.local()
    )
    .into_bytes();
    let mut noise = Noise(0x1234_5678_9abc_def1);
    for i in 0..10_000 {
        let datagram: Vec<u8> = match i % 3 {
            // Random bytes of random length.
            0 => (0..1 + noise.below(1400))
                .map(|_| noise.next() as u8)
                .collect(),
            // A valid request with a few bytes flipped: deep into the parser.
            1 => {
                let mut d = valid.clone();
                for _ in 0..1 + noise.below(8) {
                    let at = noise.below(d.len() as u64);
                    if let Some(b) = d.get_mut(at) {
                        *b = noise.next() as u8;
                    }
                }
                d
            }
            // A valid start with the rest cut or replaced by junk.
            _ => {
                let cut = noise.below(valid.len() as u64);
                let mut d = valid.get(..cut).unwrap_or_default().to_vec();
                d.extend((0..noise.below(200)).map(|_| noise.next() as u8));
                d
            }
        };
        client.send_bytes(&datagram);
        if i % 500 == 499 {
            // Don't just fill the socket buffer: let the server read.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Drain whatever the server answered to the noise, then check it still works.
    while client.recv().is_some() {}
    let probe = RawUdp::new(server.sip);
    let resp = probe
        .request(&format!(
            "OPTIONS sip:ping@{} SIP/2.0\nVia: SIP/2.0/UDP {};branch=z9hG4bK-after\n\
             Max-Forwards: 70\nFrom: <sip:p@x>;tag=1\nTo: <sip:ping@x>\nCall-ID: after\n\
             CSeq: 1 OPTIONS\nContent-Length: 0\n\n",
            server.sip,
            probe.local()
        ))
        .expect("still answering");
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(
        server.metric("hotline_sip_parse_errors_total") >= 1000,
        "parse errors counted"
    );
    let (status, _) = server.http_get("/healthz");
    assert_eq!(status, 200);
    assert!(!server.log().contains("panicked"), "{}", server.log());
    assert!(server.child_alive(), "server exited");
}

trait Alive {
    fn child_alive(&self) -> bool;
}
impl Alive for Server {
    fn child_alive(&self) -> bool {
        // try_wait needs &mut; /proc tells the same without it.
        std::path::Path::new(&format!("/proc/{}/status", self.child.id())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
                .unwrap_or_default()
                .contains("State:\tZ")
    }
}

fn options_over(stream: &mut TcpStream, server: SocketAddr, n: usize) -> Option<String> {
    let local = stream.local_addr().ok()?;
    let text = format!(
        "OPTIONS sip:ping@{server} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-tcp{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t@x>;tag={n}\r\nTo: <sip:ping@x>\r\nCall-ID: tcp-{n}\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(text.as_bytes()).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let mut answer = String::new();
    let mut buf = [0u8; 4096];
    while !answer.contains("\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => answer.push_str(&String::from_utf8_lossy(&buf[..k])),
        }
    }
    (!answer.is_empty()).then_some(answer)
}

/// A TCP connection from another loopback address (127.0.0.2).
fn connect_from(source: [u8; 4], server: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((source, 0)))
            .expect("bind 127.0.0.2");
        let stream = socket.connect(server).await.expect("connect");
        let std = stream.into_std().expect("std");
        std.set_nonblocking(false).expect("blocking");
        std
    })
}

#[test]
fn tcp_connections_beyond_the_per_source_limit_are_refused_while_others_work() {
    let config = TEST_CONFIG.replace(
        "tcp_idle_timeout_secs = 3",
        "tcp_idle_timeout_secs = 30\nmax_tcp_connections_per_source = 4",
    );
    let server = Server::start_with(&config, &[]);
    let mut held = Vec::new();
    for n in 0..4 {
        let mut stream = TcpStream::connect(server.sip).expect("connect");
        let answer = options_over(&mut stream, server.sip, n).expect("answer");
        assert_eq!(status_of(&answer), 200, "connection {n}: {answer}");
        held.push(stream);
    }
    // The fifth and sixth from the same source: accepted by the kernel, closed unanswered.
    for n in 4..6 {
        let mut extra = TcpStream::connect(server.sip).expect("connect");
        assert!(
            options_over(&mut extra, server.sip, n).is_none(),
            "connection {n} beyond the limit was served"
        );
    }
    // The refusal is logged (the log is read from the server's stderr: allow it a moment
    // on a loaded machine).
    assert!(
        wait_for_log(&server, "too many TCP connections", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    // The connections within the limit still work…
    for (n, stream) in held.iter_mut().enumerate() {
        let answer = options_over(stream, server.sip, 10 + n).expect("held connection answers");
        assert_eq!(status_of(&answer), 200);
    }
    // …and another source is not affected.
    let mut other = connect_from([127, 0, 0, 2], server.sip);
    let answer = options_over(&mut other, server.sip, 20).expect("other source answered");
    assert_eq!(status_of(&answer), 200, "{answer}");
    // Closing one frees a slot for the crowded source (once the server has seen the
    // close: retry for a few seconds on a loaded machine).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut freed = None;
    while freed.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let mut again = TcpStream::connect(server.sip).expect("connect");
        freed = options_over(&mut again, server.sip, 30);
    }
    let answer = freed.expect("a slot was freed");
    assert_eq!(status_of(&answer), 200);
}

/// RSS of a process in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// `count` INVITEs to the hotline number that are never ACKed, from the trunk address,
/// 1 ms apart (what `bench/invite-flood.py` sends).
fn invite_flood(server: &Server, name: &str, count: usize) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = socket.local_addr().expect("local");
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 9 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    for i in 0..count {
        let invite = format!(
            "INVITE sip:053112348@{sip} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-{name}{i};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:053188880{n:03}@127.0.0.1>;tag=f{i}\r\n\
             To: <sip:053112348@127.0.0.1>\r\nCall-ID: {name}-{i}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:x@{local}>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{sdp}",
            sip = server.sip,
            n = i % 1000,
            len = sdp.len()
        );
        socket.send_to(invite.as_bytes(), server.sip).expect("send");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Issue 14 item 6: after 1,500 un-ACKed INVITEs from the trunk address, once the calls
/// they started have ended and their entries are gone, RSS is back within 3 MB of its
/// level before the flood (it stayed ~8 MB above: tables that never shrink, and pages
/// glibc's malloc keeps). The idle level is taken after one call, so that what the first
/// call loads once (prompts, code pages) counts as idle; not after a first flood, which
/// would already hold what the allocator kept from it. T1 50 ms and a 2 s media timeout
/// keep the calls short.
#[test]
fn memory_returns_near_its_idle_level_after_an_invite_flood() {
    let config = shipped_config()
        .replace("t1_ms = 500", "t1_ms = 50")
        .replace("media_timeout_secs = 30 ", "media_timeout_secs = 2 ");
    let server = Server::start_with(&config, &[]);
    let released = |times: usize| {
        wait_until(Duration::from_secs(90), || {
            server.log().matches("no calls left").count() >= times
        })
    };
    invite_flood(&server, "first", 1);
    assert!(released(1), "{}", server.log());
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(server.child.id());
    invite_flood(&server, "flood", 1500);
    let during = rss_kib(server.child.id());
    assert!(released(2), "{}", server.log());
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(server.child.id());
    eprintln!("RSS KiB: idle {idle}, after the flood {during}, calls gone {after}");
    assert!(
        after <= idle + 3 * 1024,
        "RSS {after} KiB once the calls are gone, {idle} KiB idle ({during} KiB after the flood)"
    );
}
