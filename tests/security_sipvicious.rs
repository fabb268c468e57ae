//! What a SIP scanner learns about the server: SIPVicious (`svwar`, `svcrack`, `svmap`,
//! Debian package `sipvicious`) against the real binary on loopback. Each run is bounded.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// The test config with agent 2001 added and the trunk moved off 127.0.0.1, so the
/// scanner (on 127.0.0.1) is an ordinary outside source.
fn scan_config(failures_before_ban: u32) -> String {
    TEST_CONFIG
        .replace("sources = [\"127.0.0.1\"]", "sources = [\"127.0.0.9\"]")
        .replace(
            "auth_failures_before_ban = 5",
            &format!("auth_failures_before_ban = {failures_before_ban}"),
        )
        + r#"
[[agents]]
id = "2001"
name = "王调解员"
city = "qingdao"
password = "secret2001"
roles = ["agent"]
"#
}

fn sipvicious(tool: &str, server: &Server, args: &[&str], limit: Duration) -> String {
    let program = require(tool);
    let work = tempfile::tempdir().expect("tmp");
    let out = run_bounded(
        Command::new(program)
            .current_dir(work.path())
            // sipvicious keeps session state under $HOME/.sipvicious.
            .env("HOME", work.path())
            .args(["-P", &free_port().to_string()])
            .args(["-p", &server.sip.port().to_string()])
            .args(args)
            .arg("127.0.0.1"),
        limit,
    );
    format!("{}{}", out.stdout, out.stderr)
}

/// Rows of a sipvicious result table that name one of `extensions`.
fn listed<'a>(output: &str, extensions: &[&'a str]) -> Vec<&'a str> {
    extensions
        .iter()
        .filter(|ext| {
            output
                .lines()
                .any(|l| l.starts_with('|') && l.split('|').any(|cell| cell.trim() == **ext))
        })
        .copied()
        .collect()
}

const REAL: [&str; 3] = ["1001", "1002", "2001"];

#[test]
fn svwar_finds_no_extension_with_or_without_force() {
    let server = Server::start_with(&scan_config(1000), &[]);
    let range = ["-e", "995-1010,1999-2003,9999"];
    let plain = sipvicious("svwar", &server, &range, Duration::from_secs(60));
    assert!(plain.contains("found nothing"), "{plain}");
    assert!(listed(&plain, &REAL).is_empty(), "{plain}");
    // --force scans anyway, with REGISTER and with OPTIONS: still nothing stands out.
    for method in ["REGISTER", "OPTIONS"] {
        let mut args = vec!["--force", "-m", method];
        args.extend(range);
        let forced = sipvicious("svwar", &server, &args, Duration::from_secs(90));
        assert!(listed(&forced, &REAL).is_empty(), "{method}: {forced}");
        assert!(forced.contains("found nothing"), "{method}: {forced}");
    }
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Status, header names and challenge of a wrong-password REGISTER, and how long the
/// authenticated round trip took.
fn wrong_password_answer(server: &Server, user: &str) -> (u16, Vec<String>, String, Duration) {
    let client = RawUdp::new(server.sip);
    let first = client
        .request(&register_text(&client, user, 1, 300, None))
        .expect("challenge");
    let challenge = header(&first, "WWW-Authenticate").expect("WWW-Authenticate");
    let realm = digest_param(challenge, "realm").expect("realm");
    let nonce = digest_param(challenge, "nonce").expect("nonce");
    let opaque = digest_param(challenge, "opaque").expect("opaque");
    let uri = format!("sip:{}", server.sip);
    let response = digest_response(&DigestInput {
        sha256: false,
        user,
        realm: &realm,
        password: "wrong-password",
        method: "REGISTER",
        uri: &uri,
        nonce: &nonce,
        nc: "00000001",
        cnonce: "c0ffee",
    });
    let auth = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc=00000001, \
         opaque=\"{opaque}\""
    );
    let started = Instant::now();
    let resp = client
        .request(&register_text(&client, user, 2, 300, Some(&auth)))
        .expect("answer");
    let elapsed = started.elapsed();
    let names = resp
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
        .collect();
    let challenges: Vec<String> = headers(&resp, "WWW-Authenticate")
        .iter()
        .map(|c| {
            ["realm", "algorithm", "qop", "stale", "opaque"]
                .iter()
                .map(|p| format!("{p}={:?};", digest_param(c, p)))
                .collect()
        })
        .collect();
    (status_of(&resp), names, challenges.join("|"), elapsed)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[test]
fn unknown_users_get_the_same_challenge_as_real_ones_in_status_headers_and_timing() {
    let server = Server::start_with(&scan_config(1000), &[]);
    let (mut real_times, mut unknown_times) = (Vec::new(), Vec::new());
    for round in 0..20 {
        let real = wrong_password_answer(&server, REAL[round % REAL.len()]);
        let unknown = wrong_password_answer(&server, &format!("{}", 5000 + round));
        assert_eq!(real.0, 401, "a wrong password is challenged again");
        assert_eq!(real.0, unknown.0, "status");
        assert_eq!(real.1, unknown.1, "header names");
        assert_eq!(real.2, unknown.2, "challenge parameters");
        real_times.push(real.3);
        unknown_times.push(unknown.3);
    }
    // Both go through the same digest computation (a dummy HA1 for unknown users), so the
    // medians differ by scheduling noise only: well under a millisecond on loopback. The
    // bound is loose because CI machines are shared.
    let (real, unknown) = (median(real_times), median(unknown_times));
    let gap = real.abs_diff(unknown);
    assert!(
        gap < Duration::from_millis(3) || gap < real.max(unknown) / 2,
        "timing differs: real users {real:?}, unknown users {unknown:?}"
    );
}

#[test]
fn svcrack_finds_no_password_and_gets_the_source_banned() {
    // Ban after 5 failures, as in the test config.
    let server = Server::start_with(&scan_config(5), &[]);
    let work = tempfile::tempdir().expect("tmp");
    let words = work.path().join("words.txt");
    // A small dictionary of common guesses; the real password is not in it.
    std::fs::write(
        &words,
        "password\n123456\n1001\nadmin\nsecret\nqwerty\nletmein\n12348\nhotline\nsecret1000\n\
         secret1002\n0000\n",
    )
    .expect("wordlist");
    let out = sipvicious(
        "svcrack",
        &server,
        &["-u", "1001", "-d", &path_str(&words)],
        Duration::from_secs(60),
    );
    assert!(out.contains("found nothing"), "{out}");
    assert!(!out.contains("secret1001"), "{out}");
    assert!(server.metric("hotline_sip_bans_total") >= 1, "{out}");
    assert!(server.metric("hotline_sip_dropped_total{reason=\"banned\"}") >= 1);
    assert!(server.log().contains("source banned"), "{}", server.log());
    // The ban holds even for the right password from the scanner's address.
    let client = RawUdp::new(server.sip);
    assert!(
        register_with_password_or_none(&client).is_none(),
        "a banned source is still answered"
    );
}

/// Issue 14: svcrack run from the carrier's address banned it, and 12348 calls from the
/// trunk were dropped for 300 s. Now the user it attacks is banned from there, the trunk
/// is not: its INVITEs are still answered.
#[test]
fn svcrack_from_the_trunk_address_bans_the_user_not_the_trunk() {
    // The test config: the trunk is 127.0.0.1, where svcrack runs; 5 failures per user.
    let server = Server::start_with(&scan_config(5).replace("127.0.0.9", "127.0.0.1"), &[]);
    let work = tempfile::tempdir().expect("tmp");
    let words = work.path().join("words.txt");
    std::fs::write(
        &words,
        "password\n123456\nadmin\nqwerty\nletmein\n12348\nhotline\n",
    )
    .expect("wordlist");
    let out = sipvicious(
        "svcrack",
        &server,
        &["-u", "1001", "-d", &path_str(&words)],
        Duration::from_secs(60),
    );
    assert!(out.contains("found nothing"), "{out}");
    assert!(server.metric("hotline_sip_bans_total") >= 1, "{out}");
    assert!(
        server.log().contains("source banned for one user"),
        "{}",
        server.log()
    );
    let client = RawUdp::new(server.sip);
    let local = client.local();
    let mut call = client
        .request(&format!(
            "INVITE sip:053112348@hotline.test SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-after-svcrack\n\
             Max-Forwards: 70\nFrom: <sip:053188886666@carrier>;tag=c1\nTo: <sip:053112348@hotline.test>\n\
             Call-ID: after-svcrack\nCSeq: 1 INVITE\nContact: <sip:carrier@{local}>\n\
             Content-Length: 0\n\n"
        ))
        .expect("the trunk's INVITE is answered");
    while status_of(&call) < 200 {
        call = client.recv().expect("a final answer");
    }
    // No SDP offer: 488 (the answer is what matters, not its code).
    assert!(status_of(&call) >= 400, "{call}");
    let to = header(&call, "To").expect("To");
    client.send(&format!(
        "ACK sip:053112348@hotline.test SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-after-svcrack\n\
         Max-Forwards: 70\nFrom: <sip:053188886666@carrier>;tag=c1\nTo: {to}\n\
         Call-ID: after-svcrack\nCSeq: 1 ACK\nContent-Length: 0\n\n"
    ));
    // 1001 from there is what is banned.
    let banned = register_with_password_or_none(&client);
    assert!(banned.is_none(), "{banned:?}\n{}", server.log());
}

fn register_with_password_or_none(client: &RawUdp) -> Option<String> {
    client.request(&register_text(client, "1001", 1, 300, None))
}

#[test]
fn svmap_sees_no_server_version_string() {
    let server = Server::start_with(&scan_config(1000), &[]);
    for method in ["OPTIONS", "REGISTER", "INVITE"] {
        let out = sipvicious("svmap", &server, &["-m", method], Duration::from_secs(40));
        let row = out
            .lines()
            .find(|l| l.contains(&format!("127.0.0.1:{}", server.sip.port())))
            .unwrap_or_else(|| panic!("svmap did not find the server with {method}: {out}"));
        assert!(row.contains("unknown"), "{method}: svmap identified {row}");
        assert!(!row.to_ascii_lowercase().contains("hotline"), "{row}");
    }
    // And in our own words: no Server or User-Agent header in any answer.
    let client = RawUdp::new(server.sip);
    let local = client.local();
    for (method, uri) in [
        ("OPTIONS", "sip:ping@hotline.test"),
        ("REGISTER", "sip:hotline.test"),
        ("INVITE", "sip:053112348@hotline.test"),
        ("FOO", "sip:x@hotline.test"),
    ] {
        let resp = client
            .request(&format!(
                "{method} {uri} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-map-{method}\n\
                 Max-Forwards: 70\nFrom: <sip:scan@x>;tag=1\nTo: <{uri}>\nCall-ID: map-{method}\n\
                 CSeq: 1 {method}\nContact: <sip:scan@{local}>\nContent-Length: 0\n\n"
            ))
            .unwrap_or_else(|| panic!("{method} answered"));
        for name in ["Server", "User-Agent", "Organization", "Warning"] {
            assert!(header(&resp, name).is_none(), "{method}: {name} in {resp}");
        }
    }
}
