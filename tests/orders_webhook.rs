//! The webhook notifier (TK-REMIND, TK-SUPERVISE) against the real `hotline` binary and a
//! real local HTTP receiver: an order taken now, whose transfer limit has passed on the
//! server's clock (`HOTLINE_FAKE_NOW` 30 days ahead: the reminder scheduler reads it,
//! the consoles' API keeps the wall clock), gets a red reminder POSTed after its commit;
//! a receiver that hangs or is down blocks neither the API nor the scheduler, failures
//! are counted in /metrics, and the notices arrive once it is back. An https receiver is
//! reached when the system's store (here `SSL_CERT_FILE`) trusts its certificate.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{Receiver, Server, TEST_CONFIG, free_port};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const INTAKE_TOKEN: &str = "intake-token-0123456789";
const BOSS_TOKEN: &str = "boss-token-0123456789";

fn config(webhook_port: u16) -> String {
    let sha = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    format!(
        r#"{TEST_CONFIG}
[[units]]
id = "jinan"
name = "济南市司法局"
kind = "city"
parent = "province"

[[users]]
id = "intake"
name = "受理员"
password = "intake-password"
roles = ["agent", "dispatcher"]
unit = "jinan"
api_token = "{}"

[[users]]
id = "boss"
name = "督办员"
password = "boss-password"
roles = ["supervisor"]
unit = "province"
api_token = "{}"

[notify]
webhook_url = "http://127.0.0.1:{webhook_port}/hooks/hotline"
reminder_interval_secs = 1
webhook_timeout_secs = 30
webhook_max_attempts = 40
webhook_backoff_ms = 200
"#,
        sha(INTAKE_TOKEN),
        sha(BOSS_TOKEN)
    )
}

/// One HTTP/1.1 request with a bearer token; (status, JSON body).
fn api(server: &Server, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let mut s = TcpStream::connect(server.http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let body = if method == "GET" {
        String::new()
    } else {
        body.to_string()
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .expect("read (the server answered in time)");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = resp
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A complaint taken now: its transfer limit (one working day) is days ahead on the
/// wall clock.
fn new_order() -> Value {
    json!({
        "contact_name": "张三",
        "contact_phone": "13812345678",
        "category": "complaint",
        "business_area": "unknown",
        "description": "投诉无人转办",
        "city": "jinan",
    })
}

/// [`new_order`] received on the wall clock's today (given as its `received_at`): on a
/// server whose one clock runs [`thirty_days_ahead`], every limit of it has passed.
fn order_received_a_month_ago() -> Value {
    let mut body = new_order();
    body["received_at"] = json!(
        chrono::Utc::now()
            .with_timezone(&hotline::calendar::shanghai())
            .to_rfc3339()
    );
    body
}

/// The server's clock, 30 days ahead of the wall clock: every limit of an order
/// received today on the wall clock has passed on it.
fn thirty_days_ahead() -> (String, String) {
    let at = chrono::Utc::now().with_timezone(&hotline::calendar::shanghai())
        + chrono::Duration::days(30);
    (
        at.format("%Y-%m-%dT%H:%M%:z").to_string(),
        at.format("%Y-%m-%d").to_string(),
    )
}

#[test]
fn a_reminder_for_a_passed_limit_is_posted_after_its_commit() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    let receiver = Receiver::start(listener, true);
    let (fake_now, fake_day) = thirty_days_ahead();
    let server = Server::start_with(&config(port), &[("HOTLINE_FAKE_NOW", fake_now.as_str())]);
    let (status, order) = api(
        &server,
        "POST",
        "/api/orders",
        INTAKE_TOKEN,
        &order_received_a_month_ago(),
    );
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_str().expect("id").to_owned();
    let transfer_due = order["deadlines"]["transfer_due"].clone();
    let arrived = wait_until(Duration::from_secs(20), || {
        receiver
            .bodies()
            .iter()
            .any(|b| b["order_id"] == id.as_str())
    });
    assert!(arrived, "no notice for {id}; log:\n{}", server.log());
    let notice = receiver
        .bodies()
        .into_iter()
        .find(|b| b["order_id"] == id.as_str())
        .expect("notice");
    assert_eq!(notice["event"], "reminder", "{notice}");
    assert_eq!(notice["level"], "red", "{notice}");
    assert_eq!(notice["deadline"], "transfer", "{notice}");
    assert_eq!(notice["actor"], "system", "{notice}");
    assert_eq!(notice["due"], transfer_due, "{notice}");
    // Stamped by the server's clock.
    assert!(
        notice["at"]
            .as_str()
            .is_some_and(|at| at.starts_with(&fake_day)),
        "{notice} on {fake_day}"
    );
    let text = notice.to_string();
    assert!(
        !text.contains("13812345678") && !text.contains("张三"),
        "no contact in a notice: {text}"
    );
    let head = receiver.heads().concat();
    assert!(head.starts_with("POST /hooks/hotline HTTP/1.1"), "{head}");
    assert!(
        head.contains(&format!(
            "X-Hotline-Event: {}",
            notice["id"].as_str().unwrap_or("?")
        )),
        "{head}"
    );
    // The notice went out after the event was committed: the ledger has it.
    let (_, events) = api(
        &server,
        "GET",
        &format!("/api/orders/{id}/events"),
        INTAKE_TOKEN,
        &Value::Null,
    );
    let reminded = events
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"]["type"] == "reminded"))
        .unwrap_or_else(|| panic!("no reminded event: {events}"));
    assert_eq!(json!(reminded["seq"]), notice["seq"], "{reminded}");
    assert!(wait_until(Duration::from_secs(5), || server
        .metric("hotline_notify_webhook_delivered_total")
        >= 1));
    // Raised once: later passes (every second) add nothing.
    std::thread::sleep(Duration::from_millis(2500));
    let count = receiver
        .bodies()
        .iter()
        .filter(|b| b["order_id"] == id.as_str())
        .count();
    assert_eq!(count, 1, "{:?}", receiver.bodies());
    receiver.stop();
}

#[test]
fn a_hanging_then_down_receiver_blocks_nothing_and_gets_every_notice_once_back() {
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // A receiver that accepts and never answers (attempts hang for up to 30 s).
    let hole = Receiver::start(TcpListener::bind(addr).expect("bind"), false);
    // Wall clock throughout: the order comes from another channel with its own time of
    // receipt, 2025-09-30 16:00, so its transfer limit (2025-10-09 24:00) is long past.
    let server = Server::start_with(&config(port), &[]);
    let mut late = new_order();
    late["received_at"] = json!("2025-09-30T16:00:00+08:00");
    let (status, order) = api(&server, "POST", "/api/orders", INTAKE_TOKEN, &late);
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_str().expect("id").to_owned();
    // The scheduler records the reminder although its notice cannot be delivered.
    let reminded = wait_until(Duration::from_secs(20), || {
        let (_, events) = api(
            &server,
            "GET",
            &format!("/api/orders/{id}/events"),
            INTAKE_TOKEN,
            &Value::Null,
        );
        events.to_string().contains("\"reminded\"")
    });
    assert!(reminded, "no reminder recorded; log:\n{}", server.log());
    // A supervisor presses the order while the delivery hangs: answered (the
    // request does not wait for the webhook).
    let (status, pressed) = api(
        &server,
        "POST",
        &format!("/api/orders/{id}/supervise"),
        BOSS_TOKEN,
        &json!({"note": "请尽快转办"}),
    );
    assert_eq!(status, 200, "{pressed}");
    let (status, list) = api(&server, "GET", "/api/orders", BOSS_TOKEN, &Value::Null);
    assert_eq!((status, list["total"].clone()), (200, json!(1)), "{list}");

    // The receiver goes down: the hanging attempts fail, retries fail, all counted.
    hole.stop();
    assert!(
        wait_until(Duration::from_secs(20), || server
            .metric("hotline_notify_webhook_failures_total")
            >= 3),
        "failures not counted; log:\n{}",
        server.log()
    );
    // Back up on the same port: both notices arrive.
    let receiver = Receiver::start(TcpListener::bind(addr).expect("rebind"), true);
    let both = wait_until(Duration::from_secs(30), || {
        let bodies = receiver.bodies();
        bodies
            .iter()
            .any(|b| b["event"] == "reminder" && b["order_id"] == id.as_str())
            && bodies.iter().any(|b| {
                b["event"] == "supervision"
                    && b["order_id"] == id.as_str()
                    && b["note"] == "请尽快转办"
                    && b["actor"] == "boss"
            })
    });
    assert!(both, "got {:?}; log:\n{}", receiver.bodies(), server.log());
    assert!(server.metric("hotline_notify_webhook_delivered_total") >= 2);
    assert_eq!(
        server.metric("hotline_notify_webhook_dropped_total{reason=\"gave_up\"}"),
        0
    );
    receiver.stop();
}

/// The webhook config with Jinan's leader 王局长, whose alerts go to `leader_port`, and
/// the scheduler's own interval at ten minutes (only a commit wakes it sooner).
fn with_leader(ops_port: u16, leader_port: u16) -> String {
    let jinan = "numbers = [\"053112348\"]\n";
    let text = config(ops_port)
        .replace("reminder_interval_secs = 1", "reminder_interval_secs = 600")
        .replacen(
            jinan,
            &format!(
                "{jinan}\n[[cities.leaders]]\nname = \"王局长\"\ncontact = \"0531-12345678\"\n\
                 webhook_url = \"http://127.0.0.1:{leader_port}/leaders\"\n"
            ),
            1,
        );
    assert!(text.contains("[[cities.leaders]]"), "{text}");
    text
}

fn urgent_order(server: &Server) -> String {
    let mut body = new_order();
    body["urgency"] = json!("urgent");
    let (status, order) = api(server, "POST", "/api/orders", INTAKE_TOKEN, &body);
    assert_eq!(status, 201, "{order}");
    order["id"].as_str().expect("id").to_owned()
}

/// H-13-2 (报告领导): an urgent order taken through the API is reported to the city's
/// leaders at once — its commit wakes the scheduler, whose interval is ten minutes
/// here — by the real server: the alert is in the order's ledger, in the log with the
/// leader's name, and POSTed to the leader's own receiver, retried after a 500.
#[test]
fn an_urgent_order_is_reported_to_the_citys_leaders_at_once() {
    let ops = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let ops_port = ops.local_addr().expect("addr").port();
    let _ops = Receiver::start(ops, true);
    let leaders = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let leader_port = leaders.local_addr().expect("addr").port();
    let receiver = Receiver::failing_first(leaders, 1);
    let server = Server::start_with(&with_leader(ops_port, leader_port), &[]);
    let mut body = new_order();
    body["urgency"] = json!("urgent");
    let (status, order) = api(&server, "POST", "/api/orders", INTAKE_TOKEN, &body);
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_str().expect("id").to_owned();
    let arrived = wait_until(Duration::from_secs(20), || {
        receiver
            .bodies()
            .iter()
            .any(|b| b["order_id"] == id.as_str())
    });
    assert!(arrived, "no leader alert for {id}; log:\n{}", server.log());
    let alert = receiver
        .bodies()
        .into_iter()
        .find(|b| b["order_id"] == id.as_str())
        .expect("alert");
    assert_eq!(alert["event"], "leaders", "{alert}");
    assert_eq!(alert["alert"], "urgent_received", "{alert}");
    assert_eq!(alert["leader"]["name"], "王局长", "{alert}");
    assert_eq!(receiver.refused(), 1, "the first try was answered 500");
    let head = receiver.heads().concat();
    assert!(head.starts_with("POST /leaders HTTP/1.1"), "{head}");
    assert!(
        head.contains(&format!("X-Hotline-Event: {id}:")) && head.contains(":leader-0"),
        "{head}"
    );
    let (_, events) = api(
        &server,
        "GET",
        &format!("/api/orders/{id}/events"),
        INTAKE_TOKEN,
        &Value::Null,
    );
    let alerted = events
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"]["type"] == "leaders_alerted"))
        .unwrap_or_else(|| panic!("no leaders_alerted event: {events}"));
    assert_eq!(alerted["kind"]["leaders"], json!(["王局长"]), "{alerted}");
    assert!(
        wait_until(Duration::from_secs(5), || server.log().contains("报告领导")),
        "{}",
        server.log()
    );
    receiver.stop();
}

/// Nothing lost: a leader's receiver that is down when the alert is made gets it after
/// the server was killed (-9) and started again — the alert waited in the data
/// directory's journal — and exactly once.
#[test]
fn a_leaders_alert_survives_a_crash_while_the_receiver_is_down() {
    let ops = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let ops_port = ops.local_addr().expect("addr").port();
    let _ops = Receiver::start(ops, true);
    let leader_port = free_port();
    let server = Server::start_with(&with_leader(ops_port, leader_port), &[]);
    let id = urgent_order(&server);
    // Recorded, tried and journaled while nobody listens.
    assert!(
        wait_until(Duration::from_secs(20), || server
            .log()
            .contains("leader alert delivery failed")),
        "{}",
        server.log()
    );
    let journaled = std::fs::read_dir(server.data_dir())
        .expect("data dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("leader-notices-")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .any(|text| text.contains(&id));
    assert!(journaled, "the alert waits in the journal");
    let server = server.restart(&[]);
    let receiver = Receiver::start(
        TcpListener::bind(("127.0.0.1", leader_port)).expect("bind leader receiver"),
        true,
    );
    assert!(
        wait_until(Duration::from_secs(30), || receiver
            .bodies()
            .iter()
            .any(|b| b["order_id"] == id.as_str())),
        "not delivered after the restart; log:\n{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let copies = receiver
        .bodies()
        .iter()
        .filter(|b| b["order_id"] == id.as_str() && b["alert"] == "urgent_received")
        .count();
    assert_eq!(copies, 1, "{:?}", receiver.bodies());
    receiver.stop();
}

/// An https receiver on 127.0.0.1 with the self-signed test certificate
/// (tests/fixtures/tls), in a thread: answers 200 to each request; the JSON bodies.
fn tls_receiver(listener: TcpListener) -> std::sync::Arc<std::sync::Mutex<Vec<Value>>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = CertificateDer::from(include_bytes!("fixtures/tls/cert.der").to_vec());
    let key =
        PrivateKeyDer::try_from(include_bytes!("fixtures/tls/key.der").to_vec()).expect("test key");
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("certificate");
    let config = std::sync::Arc::new(config);
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = bodies.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().take(50) {
            let Ok(tcp) = tcp else { continue };
            tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut got = Vec::new();
            let mut chunk = [0_u8; 4096];
            let body = loop {
                let Ok(n) = tls.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                got.extend_from_slice(&chunk[..n]);
                let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    break Some(got[end + 4..end + 4 + length].to_vec());
                }
            };
            let Some(body) = body else { continue };
            let _ =
                tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            tls.conn.send_close_notify();
            let _ = tls.flush();
            if let (Ok(json), Ok(mut all)) = (serde_json::from_slice(&body), sink.lock()) {
                all.push(json);
            }
        }
    });
    bodies
}

#[test]
fn an_https_webhook_is_delivered_to_a_receiver_whose_certificate_is_trusted() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let port = listener.local_addr().expect("addr").port();
    let bodies = tls_receiver(listener);
    // The operator's way of trusting a private CA: the system's store, here replaced by
    // SSL_CERT_FILE holding only the receiver's self-signed certificate.
    let dir = tempfile::tempdir().expect("tempdir");
    let pem_path = dir.path().join("trusted.pem");
    let der = include_bytes!("fixtures/tls/cert.der");
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    std::fs::write(&pem_path, pem).expect("write pem");
    let config = config(port).replace(
        "webhook_url = \"http://127.0.0.1",
        "webhook_url = \"https://127.0.0.1",
    );
    assert!(config.contains("https://127.0.0.1"), "{config}");
    let (fake_now, _) = thirty_days_ahead();
    let server = Server::start_with(
        &config,
        &[
            ("HOTLINE_FAKE_NOW", fake_now.as_str()),
            ("SSL_CERT_FILE", pem_path.to_str().expect("utf-8 path")),
        ],
    );
    let (status, order) = api(
        &server,
        "POST",
        "/api/orders",
        INTAKE_TOKEN,
        &order_received_a_month_ago(),
    );
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_str().expect("id").to_owned();
    let arrived = wait_until(Duration::from_secs(20), || {
        bodies
            .lock()
            .is_ok_and(|b| b.iter().any(|b| b["order_id"] == id.as_str()))
    });
    assert!(
        arrived,
        "no notice for {id} over https; log:\n{}",
        server.log()
    );
    assert!(wait_until(Duration::from_secs(5), || server
        .metric("hotline_notify_webhook_delivered_total")
        >= 1));
}
