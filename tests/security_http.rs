//! The HTTP side under attack, against the real binary on loopback: idle-connection
//! floods (caps, header timeout, the open-file limit and the SIP/RTP reserve); logins
//! and bearer tokens (throttles, login CSRF, cookie and security headers).

mod common;

use common::*;
use std::io::Read;
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

fn source(last: u8) -> IpAddr {
    [127, 0, 0, last].into()
}

/// The shared test config with tight HTTP limits.
fn capped_config(header_timeout_secs: u64, total: usize, per_source: usize) -> String {
    format!(
        "{TEST_CONFIG}\n[http]\nheader_timeout_secs = {header_timeout_secs}\n\
         max_connections = {total}\nmax_connections_per_source = {per_source}\n"
    )
}

/// Whether the server has closed `stream` (EOF or reset) without sending anything.
fn closed_by_server(stream: &TcpStream) -> bool {
    let mut reader = stream;
    stream.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 64];
    let closed = match reader.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).expect("blocking");
    closed
}

/// `count` idle connections from `from`; then (after the server had time to close
/// the ones over a cap) those it kept open.
fn idle_connections(server: &Server, from: IpAddr, count: usize) -> Vec<TcpStream> {
    let opened: Vec<TcpStream> = (0..count)
        .map(|_| connect_from(from, server.http))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    opened
        .into_iter()
        .filter(|s| !closed_by_server(s))
        .collect()
}

#[test]
fn idle_connections_over_the_caps_are_closed_at_once_and_the_rest_after_the_header_timeout() {
    let server = Server::start_with(&capped_config(5, 50, 20), &[]);
    // One source opens 40 idle connections: 20 are kept, 20 closed at once.
    let first = idle_connections(&server, source(1), 40);
    assert_eq!(first.len(), 20, "per-source cap");
    // Another client is still served.
    assert_eq!(server.http_get_from(source(2), "/healthz").0, 200);
    // Two more sources fill the total (50): the last one gets only 10.
    let second = idle_connections(&server, source(3), 20);
    let third = idle_connections(&server, source(4), 20);
    assert_eq!((second.len(), third.len()), (20, 10), "total cap");
    let opened = Instant::now();
    // Full: even a new address is closed at once.
    assert_eq!(server.http_get_from(source(5), "/healthz").0, 0);
    // No request head within 5 s: every idle connection is closed.
    let held: Vec<&TcpStream> = first.iter().chain(&second).chain(&third).collect();
    let deadline = opened + Duration::from_secs(10);
    while Instant::now() < deadline && !held.iter().all(|s| closed_by_server(s)) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let open = held.iter().filter(|s| !closed_by_server(s)).count();
    assert_eq!(
        open, 0,
        "idle connections left open after the header timeout"
    );
    // The flooding source is served again.
    assert_eq!(server.http_get_from(source(1), "/healthz").0, 200);
    assert_eq!(
        server.metric("hotline_http_connections_refused_total{reason=\"per_source\"}"),
        20
    );
    assert_eq!(
        server.metric("hotline_http_connections_refused_total{reason=\"total\"}"),
        11
    );
}

#[test]
fn a_slow_request_head_is_cut_off_at_the_header_timeout() {
    use std::io::Write;
    let server = Server::start_with(&capped_config(2, 100, 10), &[]);
    let mut slow = connect_from(source(1), server.http);
    let started = Instant::now();
    // A byte a second never completes a head within 2 s.
    for byte in b"GET /healthz HTTP/1.1\r\n".iter().take(6) {
        if slow.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        if closed_by_server(&slow) {
            break;
        }
    }
    assert!(closed_by_server(&slow), "slowloris head still open");
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// A per-process RTP range so parallel test binaries do not collide.
fn rtp_range() -> (u16, u16) {
    let base = 42000 + (std::process::id() % 100) as u16 * 200;
    (base, base + 99)
}

#[test]
fn an_idle_http_flood_leaves_the_open_files_that_calls_need() {
    let (low, high) = rtp_range();
    let config = format!(
        "{TEST_CONFIG}\n[media]\nrtp_port_min = {low}\nrtp_port_max = {high}\n\n\
         [[test_extensions]]\nnumber = \"echo\"\nkind = \"echo\"\n\n\
         [http]\nmax_connections_per_source = 128\n"
    );
    // A service manager's usual soft limit, below the hard one.
    let server = Server::start_with_open_files(&config, 256, 1200);
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).expect("limits");
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let figures: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(
        figures,
        ["1200", "1200"],
        "soft limit raised to the hard one"
    );
    // 1200 - (100 RTP + 512 SIP over TCP + 256 other files) = 332 for HTTP.
    assert!(
        server.log().contains("open-file limit 1200")
            && server.log().contains("HTTP connections at most 332"),
        "{}",
        server.log()
    );
    // The incident: 1,010 idle connections (from ten addresses).
    let held: Vec<TcpStream> = (10..20)
        .flat_map(|last| (0..101).map(move |_| last))
        .filter_map(|last| {
            let s = connect_from(source(last), server.http);
            (!closed_by_server(&s)).then_some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let kept = held.iter().filter(|s| !closed_by_server(s)).count();
    assert!(kept <= 332, "{kept} HTTP connections kept");
    // A new call still gets its RTP sockets.
    let sip = RawUdp::new(server.sip);
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("rtp");
    let invite = pcma_invite_text(
        &sip,
        "echo",
        "flood-call",
        rtp.local_addr().expect("addr").port(),
    );
    let answer = final_response(&sip, &invite).expect("an answer to the INVITE");
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.contains("m=audio "), "{answer}");
    drop(held);
}

const JSON: &str = "Content-Type: application/json\r\n";
/// The test config's API client (see `TEST_CONFIG`).
const TOKEN: &str = "Authorization: Bearer hotline-test-token\r\n";

fn login_body(password: &str) -> String {
    format!(r#"{{"user":"test-dispatcher","password":"{password}"}}"#)
}

fn login_from(server: &Server, from: IpAddr, headers: &str, password: &str) -> (u16, String) {
    http_request_from(
        from,
        server.http,
        "POST",
        "/api/login",
        &format!("{JSON}{headers}"),
        &login_body(password),
    )
}

#[test]
fn wrong_passwords_throttle_the_guessing_address_not_the_user_and_logins_are_json_only() {
    let server = Server::start();
    // Login CSRF: another site's form can POST text/plain without a preflight.
    let (status, answer) = http_request_from(
        source(3),
        server.http,
        "POST",
        "/api/login",
        "Content-Type: text/plain\r\n",
        &login_body("test-dispatcher"),
    );
    assert_eq!(status, 415, "{answer}");
    for _ in 0..5 {
        assert_eq!(login_from(&server, source(2), "", "guess").0, 401);
    }
    let (status, answer) = login_from(&server, source(2), "", "test-dispatcher");
    assert_eq!(status, 429, "the guessing address waits: {answer}");
    assert!(header(&answer, "Retry-After").is_some(), "{answer}");
    // The user, from their own desk, is not locked out.
    let (status, answer) = login_from(&server, source(3), "", "test-dispatcher");
    assert_eq!(status, 200, "{answer}");
    let cookie = header(&answer, "Set-Cookie").expect("cookie");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert_eq!(
        server.metric("hotline_api_throttled_total{what=\"login\"}"),
        1
    );
}

#[test]
fn answers_carry_the_security_headers_and_api_answers_are_not_stored() {
    let server = Server::start();
    let (status, answer) = http_request_from(source(1), server.http, "GET", "/api/me", TOKEN, "");
    assert_eq!(status, 200, "{answer}");
    for (name, value) in [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ] {
        assert_eq!(header(&answer, name), Some(value), "{name}: {answer}");
    }
    let csp = header(&answer, "Content-Security-Policy").expect("CSP");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // A refusal is personal data's answer too.
    let (status, answer) = http_request_from(source(1), server.http, "GET", "/api/orders", "", "");
    assert_eq!(status, 401);
    assert_eq!(
        header(&answer, "Cache-Control"),
        Some("no-store"),
        "{answer}"
    );
}

#[test]
fn the_session_cookie_is_secure_behind_https_and_proxies_are_believed_only_when_trusted() {
    let proxy = source(5);
    let server = Server::start_with(
        &format!("{TEST_CONFIG}\n[http]\ntrusted_proxies = [\"{proxy}\"]\n"),
        &[],
    );
    let https = "X-Forwarded-Proto: https\r\n";
    let (_, answer) = login_from(&server, proxy, https, "test-dispatcher");
    let cookie = header(&answer, "Set-Cookie").expect("cookie");
    assert!(cookie.contains("; Secure"), "through the proxy: {cookie}");
    let (_, answer) = login_from(&server, source(6), https, "test-dispatcher");
    let cookie = header(&answer, "Set-Cookie").expect("cookie");
    assert!(!cookie.contains("Secure"), "not a proxy: {cookie}");
    // Clients behind the proxy are told apart by X-Forwarded-For; nobody else's counts.
    for _ in 0..5 {
        let guessing = "X-Forwarded-For: 192.0.2.1\r\n";
        assert_eq!(login_from(&server, proxy, guessing, "guess").0, 401);
    }
    let desk = "X-Forwarded-For: 192.0.2.2\r\n";
    assert_eq!(login_from(&server, proxy, desk, "test-dispatcher").0, 200);
    let forged = "X-Forwarded-For: 192.0.2.1\r\n";
    assert_eq!(
        login_from(&server, source(6), forged, "test-dispatcher").0,
        200,
        "an untrusted peer's X-Forwarded-For is ignored"
    );
    assert_eq!(
        login_from(
            &server,
            proxy,
            "X-Forwarded-For: 192.0.2.1\r\n",
            "test-dispatcher"
        )
        .0,
        429
    );

    let server = Server::start_with(
        &format!("{TEST_CONFIG}\n[http]\nsecure_cookies = true\n"),
        &[],
    );
    let (_, answer) = login_from(&server, source(1), "", "test-dispatcher");
    let cookie = header(&answer, "Set-Cookie").expect("cookie");
    assert!(cookie.contains("; Secure"), "configured: {cookie}");
}

#[test]
fn bearer_token_guesses_are_throttled_per_address() {
    let server = Server::start();
    for i in 0..10 {
        let guess = format!("Authorization: Bearer guess-{i}\r\n");
        let (status, _) = http_request_from(source(2), server.http, "GET", "/api/me", &guess, "");
        assert_eq!(status, 401);
    }
    let (status, answer) = http_request_from(source(2), server.http, "GET", "/api/me", TOKEN, "");
    assert_eq!(status, 429, "{answer}");
    assert!(header(&answer, "Retry-After").is_some(), "{answer}");
    let (status, _) = http_request_from(source(3), server.http, "GET", "/api/me", TOKEN, "");
    assert_eq!(status, 200, "another address is not throttled");
}
