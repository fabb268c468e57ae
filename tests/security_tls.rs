//! TLS on every hop but media (issue 16): the consoles and the API over HTTPS with the
//! server's own certificate, plain HTTP redirected to it, the session cookie `Secure`;
//! `check-config` naming a TLS file it cannot use; SIP over TLS with a real softphone.

mod common;

use std::process::Command;
use std::time::Duration;

use common::tls::{
    curl, curl_status, pem_fingerprint, self_signed_certificate, with_tls_listeners,
};
use common::{ORDER_DESK_CONFIG, Server, TEST_CONFIG, fill_placeholders, path_str, run_bounded};

fn tls_server() -> (Server, common::tls::TlsPorts) {
    let (config, ports) = with_tls_listeners(&format!("{TEST_CONFIG}\n{ORDER_DESK_CONFIG}"));
    (Server::start_with(&config, &[]), ports)
}

#[test]
fn the_console_and_the_api_work_over_https_and_plain_http_redirects_there() {
    let (server, ports) = tls_server();
    let certificate = self_signed_certificate(&server);
    assert!(certificate.is_file(), "no self-signed certificate made");
    let fingerprint = pem_fingerprint(&certificate);
    let log = server.log();
    assert!(
        log.contains(&format!("SHA-256 {fingerprint}")),
        "the fingerprint is not in the log:\n{log}"
    );
    let ready = log
        .lines()
        .find(|l| l.contains("hotline ready"))
        .expect("ready line");
    assert!(
        ready.contains(&format!("https://{}/", ports.https)) && ready.contains(&fingerprint),
        "the ready line names the HTTPS console and the fingerprint: {ready}"
    );

    // The console page, with the certificate checked (curl trusts only it).
    let base = format!("https://{}", ports.https);
    let page = curl(&certificate, &[&format!("{base}/")]);
    assert_eq!(curl_status(&page), 200, "{}{}", page.stdout, page.stderr);
    assert!(
        page.stdout.contains("<html") || page.stdout.contains("<!doctype"),
        "{}",
        page.stdout
    );

    // Sign in over HTTPS: the session cookie is Secure, and it works for the API.
    let login = curl(
        &certificate,
        &[
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"user":"9001","password":"pw-9001"}"#,
            &format!("{base}/api/login"),
        ],
    );
    assert_eq!(curl_status(&login), 200, "{}{}", login.stdout, login.stderr);
    let set_cookie = login
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .expect("Set-Cookie");
    assert!(set_cookie.contains("; Secure"), "over HTTPS: {set_cookie}");
    let cookie = set_cookie.split(';').next().expect("cookie");
    let me = curl(
        &certificate,
        &[
            "-H",
            &format!("Cookie: {cookie}"),
            &format!("{base}/api/me"),
        ],
    );
    assert_eq!(curl_status(&me), 200, "{}{}", me.stdout, me.stderr);
    assert!(me.stdout.contains("\"9001\""), "{}", me.stdout);

    // Plain HTTP: redirected to the same host on the HTTPS port, the method kept (308);
    // health probes and Prometheus are still answered there.
    let plain = curl(
        &certificate,
        &[&format!("http://{}/api/orders?page=2", server.http)],
    );
    assert_eq!(curl_status(&plain), 308, "{}", plain.stdout);
    let location = plain
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .map(str::trim);
    assert_eq!(
        location,
        Some(format!("https://127.0.0.1:{}/api/orders?page=2", ports.https.port()).as_str())
    );
    let followed = curl(&certificate, &["-L", &format!("http://{}/", server.http)]);
    assert_eq!(curl_status(&followed), 200, "{}", followed.stdout);
    assert_eq!(server.http_get("/healthz").0, 200);
    assert_eq!(server.http_get("/metrics").0, 200);

    // A client that does not trust the certificate is stopped by its own check.
    let untrusted = run_bounded(
        Command::new("curl").args(["-sS", "--max-time", "5", &format!("{base}/healthz")]),
        Duration::from_secs(10),
    );
    assert_ne!(
        untrusted.status,
        Some(0),
        "a self-signed certificate is not trusted by default"
    );

    // A restart presents the same certificate (phones and browsers pinned it).
    let server = server.restart(&[]);
    assert_eq!(
        pem_fingerprint(&self_signed_certificate(&server)),
        fingerprint
    );
    assert!(server.log().contains(&format!("SHA-256 {fingerprint}")));
    let again = curl(&certificate, &[&format!("{base}/healthz")]);
    assert_eq!(curl_status(&again), 200, "{}{}", again.stdout, again.stderr);
}

#[test]
fn a_configured_certificate_is_served_and_check_config_names_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("pair");
    let cert_path = dir.path().join("hotline.crt");
    let key_path = dir.path().join("hotline.key");
    std::fs::write(&cert_path, pair.cert.pem()).expect("write");
    std::fs::write(&key_path, pair.signing_key.serialize_pem()).expect("write");
    let (base, ports) = with_tls_listeners(TEST_CONFIG);
    let config_with = |certificate: &str, key: &str| {
        format!(
            "{}\n[tls]\ncertificate = \"{certificate}\"\nprivate_key = \"{key}\"\n",
            fill_placeholders(&base)
        )
    };
    let check = |config: &str| {
        let path = dir.path().join("hotline.toml");
        std::fs::write(&path, config).expect("write config");
        run_bounded(
            Command::new(env!("CARGO_BIN_EXE_hotline"))
                .current_dir(dir.path())
                .args(["check-config", &path_str(&path)])
                .env_remove("HOTLINE_CONFIG"),
            Duration::from_secs(30),
        )
    };

    // Paths relative to the config file, as every path in it.
    let good = config_with("hotline.crt", "hotline.key");
    let out = check(&good);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&pem_fingerprint(&cert_path)),
        "{}",
        out.stdout
    );

    let out = check(&config_with("missing.crt", "hotline.key"));
    assert_eq!(out.status, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("cannot read the TLS certificate")
            && out.stdout.contains("missing.crt")
            && out.stdout.contains("No such file"),
        "{}",
        out.stdout
    );
    std::fs::write(dir.path().join("garbage.crt"), "hello\n").expect("write");
    let out = check(&config_with("garbage.crt", "hotline.key"));
    assert_eq!(out.status, Some(2), "{}", out.stdout);
    assert!(
        out.stdout.contains("garbage.crt holds no PEM certificate"),
        "{}",
        out.stdout
    );
    let other = rcgen::KeyPair::generate().expect("key");
    std::fs::write(dir.path().join("other.key"), other.serialize_pem()).expect("write");
    let out = check(&config_with("hotline.crt", "other.key"));
    assert_eq!(out.status, Some(2), "{}", out.stdout);
    assert!(
        out.stdout.contains("are not usable together"),
        "{}",
        out.stdout
    );
    let out = check(&format!(
        "{}\n[tls]\ncertificate = \"hotline.crt\"\n",
        fill_placeholders(&base)
    ));
    assert_eq!(out.status, Some(2), "{}", out.stdout);
    assert!(out.stdout.contains("tls.private_key"), "{}", out.stdout);

    // The server refuses to start on a bad file, saying why, and serves a good one.
    std::fs::write(
        dir.path().join("hotline.toml"),
        config_with("garbage.crt", "hotline.key"),
    )
    .expect("write");
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_hotline"))
            .current_dir(dir.path())
            .args([
                "serve",
                "--config",
                "hotline.toml",
                "--sip-listen",
                "127.0.0.1:0",
            ])
            .args(["--http-listen", "127.0.0.1:0"])
            .env_remove("DATABASE_URL"),
        Duration::from_secs(30),
    );
    assert_ne!(out.status, Some(0));
    assert!(
        out.stderr.contains("garbage.crt holds no PEM certificate"),
        "{}",
        out.stderr
    );
    let server = Server::start_with(
        &good
            .replace("hotline.crt", &path_str(&cert_path))
            .replace("hotline.key", &path_str(&key_path)),
        &[],
    );
    let ok = curl(&cert_path, &[&format!("https://{}/healthz", ports.https)]);
    assert_eq!(curl_status(&ok), 200, "{}{}", ok.stdout, ok.stderr);
    assert!(
        !self_signed_certificate(&server).exists(),
        "no self-signed one beside a configured one"
    );
}

/// An agent's softphone registers over TLS (checking the server's certificate), takes a
/// queue call and hears the caller; the registration is stored as a TLS flow and the
/// call reaches the phone over that connection.
#[test]
fn an_agent_registered_over_tls_takes_a_queue_call_and_hears_the_caller() {
    use common::phone::{Baresip, tone_wav};
    use common::queue::{agent_states, feature_code, password, queue_config, start, wait_state};
    const CALLER_TONE: f64 = 600.0;
    // SIP over TLS only: the queue helpers use the API over plain HTTP.
    let (config, ports) = with_tls_listeners(&queue_config("linear", 15, 3));
    let config = config.replacen(&format!("https_listen = \"{}\"\n", ports.https), "", 1);
    // The test config closes idle flows after 3 s; baresip sends no keep-alives between
    // its registrations, and the call must reach it over its own TLS flow (the server
    // never opens one to a phone, nor falls back to plain TCP).
    let config = config.replace("tcp_idle_timeout_secs = 3", "tcp_idle_timeout_secs = 120");
    let server = start(&config);
    let tones = tempfile::tempdir().expect("tmp");
    let agent_source = tones.path().join("agent.wav");
    let caller_source = tones.path().join("caller.wav");
    tone_wav(&agent_source, 1400.0, 6.0);
    tone_wav(&caller_source, CALLER_TONE, 30.0);

    let certificate = self_signed_certificate(&server);
    let agent = Baresip::agent_over_tls(
        ports.sip_tls,
        &certificate,
        "1001",
        password("1001"),
        &agent_source,
        30,
    );
    let registered = common::wait_until(Duration::from_secs(10), || {
        server.metric("hotline_sip_registrations") > 0
    });
    assert!(registered, "no registration over TLS:\n{}", server.log());
    let db = rusqlite::Connection::open(server.data_dir().join("hotline.db")).expect("db");
    let (transport, contact): (String, String) = db
        .query_row(
            "SELECT transport, contact FROM registrations WHERE aor LIKE '1001@%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("binding stored");
    assert_eq!(transport, "TLS", "{contact}");
    assert!(contact.contains("transport=tls"), "{contact}");

    let signed_in = feature_code(&server, "1001", "*11");
    assert_eq!(signed_in.status, Some(0), "*11: {}", server.log());
    assert!(
        wait_state(&server, "1001", "available", Duration::from_secs(5)),
        "{:?}\n{}",
        agent_states(&server),
        server.log()
    );
    let caller = Baresip::caller(&server, "053188001234", "053112348", &caller_source, 22);
    let caller = caller.finish();
    let agent = agent.finish();
    let context = format!(
        "caller:\n{}\nagent:\n{}\nserver:\n{}",
        caller.log(),
        agent.log(),
        server.log()
    );
    let tone = agent
        .tone_ms(CALLER_TONE)
        .unwrap_or_else(|| panic!("the agent had no call:\n{context}"))
        / 100;
    assert!(
        tone >= 30,
        "the agent heard the caller for {} ms:\n{context}",
        tone * 100
    );
    assert!(agent.log().contains("Call established"), "{context}");
}

/// SIP over TLS has the limits of SIP over TCP: connections per source are capped over
/// both together, a connection that never completes its handshake or a message is
/// closed at the idle timeout, and sipsak gets its OPTIONS answered over TLS.
#[test]
fn sip_over_tls_answers_and_keeps_the_tcp_limits() {
    use std::io::Read;
    let (config, ports) = with_tls_listeners(
        &TEST_CONFIG.replace("[sip]\n", "[sip]\nmax_tcp_connections_per_source = 4\n"),
    );
    let server = Server::start_with(&config, &[]);
    let certificate = self_signed_certificate(&server);

    // sipsak checks the name in the URI with its port (`127.0.0.1:5061`) against the
    // certificate: the port goes in --remote-port instead.
    let out = run_bounded(
        Command::new(common::require("sipsak"))
            .args(["--transport=tls", "--tls-ca-cert"])
            .arg(&certificate)
            .args(["-vv", "-s", "sip:hotline@localhost", "-r"])
            .arg(ports.sip_tls.port().to_string()),
        Duration::from_secs(20),
    );
    assert!(
        out.stdout.contains("200 OK") || out.stdout.contains("SIP/2.0 200"),
        "sipsak over TLS:\n{}{}\n{}",
        out.stdout,
        out.stderr,
        server.log()
    );

    // Two over TCP and two over TLS from one address: the fifth is closed at once.
    let hold = |to: std::net::SocketAddr| std::net::TcpStream::connect(to).expect("connect");
    let held: Vec<std::net::TcpStream> = vec![
        hold(server.sip),
        hold(server.sip),
        hold(ports.sip_tls),
        hold(ports.sip_tls),
    ];
    std::thread::sleep(Duration::from_millis(300));
    let mut fifth = hold(ports.sip_tls);
    fifth
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    assert!(
        matches!(fifth.read(&mut byte), Ok(0) | Err(_)),
        "a fifth connection from one source stays closed"
    );
    // The refusal is logged by the server's own task: wait for the line to be written.
    let refused_line = || {
        server
            .log()
            .lines()
            .any(|l| l.contains("too many TCP connections from this source") && l.contains("tls"))
    };
    assert!(
        common::wait_until(Duration::from_secs(5), refused_line),
        "{}",
        server.log()
    );

    // A TLS connection that never says hello is closed at the idle timeout (3 s here).
    let mut silent = held.into_iter().nth(2).expect("tls");
    silent
        .set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    let started = std::time::Instant::now();
    let closed = matches!(silent.read(&mut byte), Ok(0));
    assert!(closed, "the silent TLS connection was closed");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}

/// SRTP (SDES) to an agent whose policy requires it: the phone (baresip, SRTP
/// mandatory, over TLS so that the keys travel encrypted) takes a queue call and hears
/// the caller; the same agent's plain-RTP offer is refused with 488.
#[test]
fn an_agent_requiring_srtp_takes_an_encrypted_call_and_plain_rtp_is_refused() {
    use common::phone::{Baresip, tone_wav};
    use common::queue::{AGENT_1002_TOKEN, feature_code, password, queue_config, start};
    const CALLER_TONE: f64 = 600.0;
    let (config, ports) = with_tls_listeners(&queue_config("linear", 15, 3));
    let config = config
        .replacen(&format!("https_listen = \"{}\"\n", ports.https), "", 1)
        .replace("tcp_idle_timeout_secs = 3", "tcp_idle_timeout_secs = 120")
        .replacen(
            "ha1_md5 = \"HA1_1002\"\n",
            "ha1_md5 = \"HA1_1002\"\nmedia_encryption = \"required\"\n",
            1,
        );
    let server = start(&config);
    let tones = tempfile::tempdir().expect("tmp");
    let agent_source = tones.path().join("agent.wav");
    let caller_source = tones.path().join("caller.wav");
    tone_wav(&agent_source, 1400.0, 6.0);
    tone_wav(&caller_source, CALLER_TONE, 30.0);

    // A plain-RTP offer from the agent (SIPp dialling the sign-in code) is refused.
    let plain = feature_code(&server, "1002", "*11");
    assert_ne!(plain.status, Some(0), "a plain call from 1002 went through");
    assert!(
        common::wait_for_log(
            &server,
            "plain RTP offered where SRTP is required; 488",
            Duration::from_secs(5)
        ),
        "{}",
        server.log()
    );
    assert!(
        !server.log().contains("feature code taken"),
        "the refused call signed the agent in"
    );

    let agent = Baresip::agent_over_tls_with(
        ports.sip_tls,
        &self_signed_certificate(&server),
        "1002",
        password("1002"),
        &agent_source,
        30,
        Some("srtp-mand"),
    );
    let registered = common::wait_until(Duration::from_secs(10), || {
        server.metric("hotline_sip_registrations") > 0
    });
    assert!(registered, "no registration:\n{}", server.log());
    let (status, answer) = common::http_request_from(
        [127, 0, 0, 1].into(),
        server.http,
        "POST",
        "/api/agents/1002/sign_in",
        &format!("Authorization: Bearer {AGENT_1002_TOKEN}\r\nContent-Type: application/json\r\n"),
        "{}",
    );
    assert_eq!(status, 200, "sign in: {answer}");

    let caller = Baresip::caller(&server, "053188001234", "053112348", &caller_source, 22);
    let caller = caller.finish();
    let agent = agent.finish();
    let context = format!(
        "caller:\n{}\nagent:\n{}\nserver:\n{}",
        caller.log(),
        agent.log(),
        server.log()
    );
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("agent answered; bridged") && l.contains("srtp=true")),
        "{context}"
    );
    let tone = agent
        .tone_ms(CALLER_TONE)
        .unwrap_or_else(|| panic!("the agent had no call:\n{context}"))
        / 100;
    assert!(
        tone >= 30,
        "the agent heard the caller for {} ms over SRTP:\n{context}",
        tone * 100
    );
}

/// A carrier that may use SRTP (`optional`): its caller's SRTP-only phone is answered
/// with SRTP, and caller and plain-RTP agent hear each other through the server, which
/// decrypts the caller's audio and encrypts the agent's.
#[test]
fn an_srtp_caller_on_an_optional_trunk_and_a_plain_agent_hear_each_other() {
    use common::phone::{Baresip, tone_wav};
    use common::queue::{feature_code, password, queue_config, start};
    const AGENT_TONE: f64 = 1400.0;
    const CALLER_TONE: f64 = 600.0;
    let config = queue_config("linear", 15, 3).replacen(
        "name = \"test-trunk\"\n",
        "name = \"test-trunk\"\nmedia_encryption = \"optional\"\n",
        1,
    );
    let server = start(&config);
    let tones = tempfile::tempdir().expect("tmp");
    let agent_source = tones.path().join("agent.wav");
    let caller_source = tones.path().join("caller.wav");
    tone_wav(&agent_source, AGENT_TONE, 8.0);
    tone_wav(&caller_source, CALLER_TONE, 30.0);
    let agent = Baresip::agent(&server, "1001", password("1001"), &agent_source, 30);
    let registered = common::wait_until(Duration::from_secs(10), || {
        server.metric("hotline_sip_registrations") > 0
    });
    assert!(registered, "{}", server.log());
    assert_eq!(
        feature_code(&server, "1001", "*11").status,
        Some(0),
        "{}",
        server.log()
    );

    let caller = Baresip::caller_with(
        &server,
        "053188001234",
        "053112348",
        &caller_source,
        22,
        "srtp-mand",
    );
    let caller = caller.finish();
    let agent = agent.finish();
    let context = format!(
        "caller:\n{}\nagent:\n{}\nserver:\n{}",
        caller.log(),
        agent.log(),
        server.log()
    );
    assert!(
        server.log().lines().any(|l| l.contains("call answered")
            && l.contains("dialled=053112348")
            && l.contains("srtp=true")),
        "{context}"
    );
    for (phone, tone, who) in [
        (&agent, CALLER_TONE, "the agent heard the caller"),
        (&caller, AGENT_TONE, "the caller heard the agent"),
    ] {
        let tone_windows = phone
            .tone_ms(tone)
            .unwrap_or_else(|| panic!("{who}: no call\n{context}"))
            / 100;
        assert!(
            tone_windows >= 30,
            "{who} for {} ms:\n{context}",
            tone_windows * 100
        );
    }
}
