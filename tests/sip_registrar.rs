//! The server as agents' softphones see it: real peers (sipsak, SIPp, baresip) and a raw
//! UDP client against the real binary on loopback.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn sipsak_options_gets_200_over_udp_and_tcp() {
    let sipsak = require("sipsak");
    let server = Server::start();
    for transport in ["udp", "tcp"] {
        let out = run_bounded(
            Command::new(&sipsak)
                .arg("-E")
                .arg(transport)
                .arg("-s")
                .arg(format!("sip:ping@{}", server.sip))
                .arg("-vv"),
            Duration::from_secs(10),
        );
        assert_eq!(
            out.status,
            Some(0),
            "sipsak over {transport}: {}{}",
            out.stdout,
            out.stderr
        );
        assert!(out.stdout.contains("200 OK"), "{}", out.stdout);
    }
}

#[test]
fn sipp_registers_with_digest_reregisters_and_unregisters_over_udp_and_tcp() {
    let sipp = require("sipp");
    let server = Server::start();
    for (transport, port) in [("u1", free_port()), ("t1", free_port())] {
        let dir = tempfile::tempdir().expect("tmp");
        let out = run_bounded(
            Command::new(&sipp)
                .current_dir(dir.path())
                .args(["-sf", &path_str(&sipp_scenario("register_auth.xml"))])
                .args(["-s", "1001", "-au", "1001", "-ap", "secret1001"])
                .args(["-m", "1", "-t", transport, "-i", "127.0.0.1"])
                .args(["-p", &port.to_string(), "-nostdin", "-timeout", "15"])
                .arg(server.sip.to_string()),
            Duration::from_secs(20),
        );
        assert_eq!(
            out.status,
            Some(0),
            "sipp over {transport}:\n{}\n{}\nserver log:\n{}",
            out.stdout,
            out.stderr,
            server.log()
        );
    }
    // Registered, re-registered and un-registered: nothing is left bound.
    assert_eq!(server.metric("hotline_sip_registrations"), 0);
    assert!(server.metric("hotline_sip_responses_total{direction=\"out\",status=\"200\"}") >= 6);
}

#[test]
fn baresip_registers_with_the_shipped_example_agent() {
    let baresip = require("baresip");
    let dir = tempfile::tempdir().expect("tmp");
    // The shipped config as is, except its paths (the test runs elsewhere).
    let server = Server::start_in(dir, &shipped_config(), &[]);
    let phone = tempfile::tempdir().expect("tmp");
    let sip_port = free_port();
    std::fs::write(
        phone.path().join("accounts"),
        format!(
            "<sip:1001@{};transport=udp>;auth_pass=jinan-1001;regint=60\n",
            server.sip
        ),
    )
    .expect("accounts");
    std::fs::write(
        phone.path().join("config"),
        format!(
            "sip_listen 127.0.0.1:{sip_port}\nmodule_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule account.so\naudio_player nil\naudio_source nil\n"
        ),
    )
    .expect("config");
    let out = run_bounded(
        Command::new(&baresip)
            .arg("-f")
            .arg(phone.path())
            .args(["-t", "3"]),
        Duration::from_secs(15),
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("200 OK") && all.contains("1 binding"),
        "baresip did not register:\n{all}\nserver log:\n{}",
        server.log()
    );
}

#[test]
fn unknown_user_and_wrong_password_get_identical_answers() {
    let server = Server::start();
    let answer = |user: &str| {
        let client = RawUdp::new(server.sip);
        let resp = register_with_password(&client, user, "not-the-password", false, 300)
            .expect("an answer");
        // Compare the shape: status, header names, challenge parameters (nonces differ).
        let names: Vec<String> = resp
            .lines()
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_string()))
            .collect();
        let challenge = header(&resp, "WWW-Authenticate").unwrap_or("").to_string();
        let params: Vec<String> = ["realm", "algorithm", "qop", "opaque", "stale"]
            .iter()
            .map(|p| format!("{p}={:?}", digest_param(&challenge, p)))
            .collect();
        (status_of(&resp), names, params, resp.len())
    };
    let existing = answer("1001");
    let missing = answer("9999");
    assert_eq!(existing.0, 401);
    assert_eq!(existing.0, missing.0, "status");
    assert_eq!(existing.1, missing.1, "header names");
    assert_eq!(existing.2, missing.2, "challenge parameters");
    // Lengths differ only by the user name's length in From/To/Call-ID/Contact… which are
    // the client's own; the server adds nothing that depends on the user's existence.
    assert_eq!(existing.3, missing.3, "response length");
}

#[test]
fn sha256_digest_and_stored_ha1_authenticate() {
    let server = Server::start();
    let client = RawUdp::new(server.sip);
    let resp = register_with_password(&client, "1001", "secret1001", true, 300).expect("answer");
    assert_eq!(status_of(&resp), 200, "SHA-256: {resp}");
    // Agent 1002 is configured with an MD5 HA1 only, no plain password.
    let client = RawUdp::new(server.sip);
    let resp = register_with_password(&client, "1002", "secret1002", false, 300).expect("answer");
    assert_eq!(status_of(&resp), 200, "HA1: {resp}");
    assert!(
        header(&resp, "Contact").is_some_and(|c| c.contains("expires=")),
        "{resp}"
    );
    assert_eq!(server.metric("hotline_sip_registrations"), 2);
}

#[test]
fn too_short_expiry_gets_423_with_min_expires() {
    let server = Server::start();
    let client = RawUdp::new(server.sip);
    let resp = register_with_password(&client, "1001", "secret1001", false, 5).expect("answer");
    assert_eq!(status_of(&resp), 423, "{resp}");
    assert_eq!(header(&resp, "Min-Expires"), Some("10"));
}

#[test]
fn repeated_failures_ban_the_source_and_are_logged() {
    let server = Server::start();
    let client = RawUdp::new(server.sip);
    // auth_failures_before_ban = 5 in the test config.
    for attempt in 1..=5 {
        let resp = register_with_password(&client, "1001", "guess", false, 300);
        assert!(resp.is_some(), "attempt {attempt} must still be answered");
    }
    // Banned: the next request from this source is dropped without an answer…
    assert!(
        client
            .request(&register_text(&client, "1001", 9, 300, None))
            .is_none()
    );
    // …even with the right password.
    let other = RawUdp::new(server.sip);
    assert!(register_with_password_silent(&other).is_none());
    assert_eq!(server.metric("hotline_sip_bans_total"), 1);
    assert!(server.metric("hotline_sip_dropped_total{reason=\"banned\"}") >= 2);
    assert!(server.log().contains("source banned"), "{}", server.log());
}

fn register_with_password_silent(client: &RawUdp) -> Option<String> {
    client.request(&register_text(client, "1001", 1, 300, None))
}

#[test]
fn registrations_survive_a_restart() {
    let mut server = Server::start();
    let client = RawUdp::new(server.sip);
    let resp = register_with_password(&client, "1001", "secret1001", false, 300).expect("answer");
    assert_eq!(status_of(&resp), 200, "{resp}");
    // The 200 is sent only after the binding is committed: kill -9 at once.
    server.kill();
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tmp"));
    drop(server);
    let config = std::fs::read_to_string(dir.path().join("hotline.toml")).expect("config");
    let restarted = Server::start_in(dir, &config, &[]);
    assert!(
        restarted.log().contains("restored_registrations=1"),
        "{}",
        restarted.log()
    );
    assert_eq!(restarted.metric("hotline_sip_registrations"), 1);
}

/// Issue 14: after a restart (the nonce secret is per process) phones answer the old
/// challenge with the right password. Each gets `stale=true` and none counts as a failure;
/// before, 11 REGISTERs from one NAT banned it.
#[test]
fn correct_answers_to_a_challenge_from_before_a_restart_are_stale_and_never_ban() {
    let config = TEST_CONFIG.replace("sources = [\"127.0.0.1\"]", "sources = [\"127.0.0.9\"]");
    let mut server = Server::start_with(&config, &[]);
    let client = RawUdp::new(server.sip);
    let first = client
        .request(&register_text(&client, "1001", 1, 300, None))
        .expect("challenge");
    let challenge = headers(&first, "WWW-Authenticate")
        .into_iter()
        .find(|c| c.contains("algorithm=MD5"))
        .expect("an MD5 challenge")
        .to_string();
    let realm = digest_param(&challenge, "realm").expect("realm");
    let nonce = digest_param(&challenge, "nonce").expect("nonce");
    let opaque = digest_param(&challenge, "opaque").expect("opaque");
    server.kill();
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().expect("tmp"));
    drop(server);
    let config = std::fs::read_to_string(dir.path().join("hotline.toml")).expect("config");
    let restarted = Server::start_in(dir, &config, &[]);
    let phone = RawUdp::new(restarted.sip);
    let uri = format!("sip:{}", restarted.sip);
    // auth_failures_before_ban = 5 in the test config.
    for n in 0..11u32 {
        let response = digest_response(&DigestInput {
            sha256: false,
            user: "1001",
            realm: &realm,
            password: "secret1001",
            method: "REGISTER",
            uri: &uri,
            nonce: &nonce,
            nc: "00000001",
            cnonce: "abc123",
        });
        let auth = format!(
            "Digest username=\"1001\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=MD5, cnonce=\"abc123\", qop=auth, nc=00000001, \
             opaque=\"{opaque}\""
        );
        let resp = phone
            .request(&register_text(&phone, "1001", 2 + n, 300, Some(&auth)))
            .unwrap_or_else(|| panic!("REGISTER {n} answered: {}", restarted.log()));
        assert_eq!(status_of(&resp), 401, "{resp}");
        assert!(
            headers(&resp, "WWW-Authenticate")
                .iter()
                .all(|c| c.contains("stale=true")),
            "{resp}"
        );
    }
    assert_eq!(restarted.metric("hotline_sip_bans_total"), 0);
    // The stale challenge's fresh nonce then registers.
    let resp = register_with_password(&phone, "1001", "secret1001", false, 300).expect("answer");
    assert_eq!(status_of(&resp), 200, "{resp}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start();
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
    assert!(server.log().contains("stopped"), "{}", server.log());
}

#[test]
fn healthz_and_metrics_answer_over_http() {
    let server = Server::start();
    let (status, body) = server.http_get("/healthz");
    assert_eq!(status, 200);
    assert!(body.contains("\"database\":\"ok\""), "{body}");
    let client = RawUdp::new(server.sip);
    let resp = client
        .request(&format!(
            "OPTIONS sip:ping@{} SIP/2.0\nVia: SIP/2.0/UDP {};branch=z9hG4bK-opt1\n\
             Max-Forwards: 70\nFrom: <sip:probe@x>;tag=1\nTo: <sip:ping@x>\nCall-ID: opt1\n\
             CSeq: 1 OPTIONS\nContent-Length: 0\n\n",
            server.sip,
            client.local()
        ))
        .expect("OPTIONS answered");
    assert_eq!(status_of(&resp), 200);
    assert!(server.metric("hotline_sip_requests_total{direction=\"in\",method=\"OPTIONS\"}") >= 1);
}

#[test]
fn call_records_need_a_login_and_mask_numbers_for_roles_that_do_not_need_them() {
    let server = Server::start();
    let (status, _) = server.http_get("/api/calls");
    assert_eq!(
        status, 401,
        "anonymous reads of callers' numbers are refused"
    );
    let (status, body) = server.api_get("/api/calls?caller=13812345678");
    assert_eq!(status, 200, "a dispatcher may search by number: {body}");
}

/// Issue 14: a REGISTER's 200 says the binding is stored. With the database locked by
/// another writer the commit waits, then fails after the persistence wait (800 ms): the
/// phone's retransmissions meanwhile must get no 200 (the transaction used to hand them
/// the 200 it already held, before the commit), and the answer in the end is 503.
#[test]
fn a_register_retransmitted_while_its_commit_is_pending_gets_no_200() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let server = Server::start();
    let phone = RawUdp::new(server.sip);
    let register =
        authorized_register(&phone, "1001", "secret1001", false, 3600).expect("challenged");
    // Another writer holds the database (SQLite in WAL mode: writers wait for it). The
    // server's own background writers (the report pass at start-up, schedulers) may hold
    // it for a moment: sqlite3 waits for them (`.timeout`) rather than failing its BEGIN
    // and leaving the database unlocked.
    let mut locker = Command::new(require("sqlite3"))
        .arg(server.data_dir().join("hotline.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sqlite3");
    let mut stdin = locker.stdin.take().expect("stdin");
    stdin
        .write_all(b".timeout 10000\n.bail on\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n")
        .expect("lock");
    let mut line = String::new();
    BufReader::new(locker.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("sqlite3 answers");
    assert_eq!(line.trim(), "locked");

    phone.send(&register);
    std::thread::sleep(Duration::from_millis(150));
    phone.send(&register); // T1 would be 500 ms; any retransmission is a retransmission
    std::thread::sleep(Duration::from_millis(150));
    phone.send(&register);
    let answers = responses_within(&phone, Duration::from_millis(2500));
    let _ = stdin.write_all(b"ROLLBACK;\n.quit\n");
    drop(stdin);
    let _ = locker.wait();
    let finals: Vec<u16> = answers
        .iter()
        .map(|a| status_of(a))
        .filter(|s| *s >= 200)
        .collect();
    assert!(
        !finals.contains(&200),
        "a 200 before the binding was stored: {answers:?}\n{}",
        server.log()
    );
    assert_eq!(finals.first(), Some(&503), "{answers:?}\n{}", server.log());

    // The lock gone, a new registration is stored and answered 200.
    let phone = RawUdp::new(server.sip);
    let answer = register_with_password(&phone, "1001", "secret1001", false, 3600)
        .expect("REGISTER answered");
    assert_eq!(status_of(&answer), 200, "{answer}\n{}", server.log());
}
