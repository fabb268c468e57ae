//! An order's callback call (H-11, H-12-3 回拨解答), end to end with real peers on
//! 127.0.0.1: the agent who registered the order presses 回拨 in the console
//! (`POST /api/orders/{id}/call_back`); the server rings their own phone (baresip,
//! registered as agent 1001, its microphone a 1400 Hz tone), then dials the order's
//! contact number through the outbound trunk, where SIPp stands as the carrier's
//! callee: it checks the INVITE is for that number from the hotline's, answers and
//! talks a 600 Hz tone. Judged from the receivers: what the carrier received, what the
//! agent's phone played, the recording's two channels, and the order's history. The
//! agent is signed in to the Jinan queue: paused while the call runs, available after.

mod common;

use std::path::Path;
use std::time::Duration;

use common::phone::{Baresip, Heard, runs, tone_wav, wav_samples, windows};
use common::queue::{SUPERVISOR_TOKEN, agent_states, feature_code, sha256_hex, wait_state};
use common::trunk::{alaw_tone, carrier_scenario, config, sipp, start, streaming_carrier_scenario};
use common::*;

const ORDER_NUMBER: &str = "13812345678";
const CONTACT_TONE: f64 = 600.0;
const AGENT_TONE: f64 = 1400.0;

/// The agent who answers calls on 1001's phone, a callback clerk on 1002's, a
/// dispatcher and a legal-aid handler, and the supervisor the queue helpers read agent
/// states as.
fn users() -> String {
    format!(
        r#"
[[users]]
id = "sup"
name = "督办"
password = "sup-password"
roles = ["supervisor"]
unit = "province"
api_token = "{}"
{USERS}"#,
        sha256_hex(SUPERVISOR_TOKEN)
    )
}

const USERS: &str = r#"
[[users]]
id = "zhang"
name = "值班员 张明"
password = "pw-zhang"
roles = ["agent"]
unit = "jinan"
agent = "1001"

[[users]]
id = "wu"
name = "回访员 吴静"
password = "pw-wu"
roles = ["callback_staff"]
unit = "jinan"
agent = "1002"

[[users]]
id = "li"
name = "转办员 李华"
password = "pw-li"
roles = ["dispatcher"]
unit = "jinan"

[[users]]
id = "fang"
name = "承办人 王芳"
password = "pw-fang"
roles = ["unit_handler"]
unit = "legal-aid"
"#;

fn order_with_contact(server: &Server, session: &(String, String)) -> String {
    let (status, resp) = create_order(server, session, "回拨解答");
    assert_eq!(status, 201, "create: {resp}");
    let order = body_json(&resp);
    // The agent sees the number masked (H-12-4); the server dials it in full.
    assert_eq!(order["fields"]["contact_phone"], "138****5678", "{order}");
    order["id"].as_str().expect("id").to_owned()
}

/// `extension`'s phone (baresip) registered, answering whatever rings, its microphone
/// playing `source`, for `seconds`.
fn registered_phone(
    server: &Server,
    (extension, password): (&str, &str),
    source: &Path,
    seconds: u32,
) -> Baresip {
    let before = server.metric("hotline_sip_registrations");
    let phone = Baresip::agent(server, extension, password, source, seconds);
    assert!(
        wait_until(Duration::from_secs(10), || server
            .metric("hotline_sip_registrations")
            > before),
        "{}",
        server.log()
    );
    phone
}

/// The `call_logged` `order_callback` event of the order, once written.
fn order_callback_fact(server: &Server, session: &(String, String), id: &str) -> serde_json::Value {
    let mut fact = serde_json::Value::Null;
    wait_until(Duration::from_secs(10), || {
        let (_, resp) = get(server, session, &format!("/api/orders/{id}/events"));
        fact = body_json(&resp)
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["kind"]["type"] == "call_logged" && e["kind"]["call"]["what"] == "order_callback"
            })
            .cloned()
            .unwrap_or_default();
        !fact.is_null()
    });
    fact
}

fn call_back(server: &Server, session: &(String, String), id: &str, body: &str) -> (u16, String) {
    http(
        server.http,
        "POST",
        &format!("/api/orders/{id}/call_back"),
        session,
        body,
    )
}

/// The left (caller) and right (agent) channels of a stereo recording.
fn channels(path: &Path) -> (Vec<i16>, Vec<i16>, u32) {
    let mut reader = hound::WavReader::open(path).expect("wav");
    let spec = reader.spec();
    assert_eq!(spec.channels, 2, "stereo: {}", path.display());
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let left = samples.iter().step_by(2).copied().collect();
    let right = samples.iter().skip(1).step_by(2).copied().collect();
    (left, right, spec.sample_rate)
}

/// The status line and headers of a GET whose body is binary (a WAV).
fn response_head(server: &Server, session: &(String, String), path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(server.http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {}\r\n\r\n",
        session.0
    )
    .expect("write");
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    text.split("\r\n\r\n").next().unwrap_or_default().to_owned()
}

fn tone_windows(samples: &[i16], rate: u32, frequency: f64) -> usize {
    windows(samples, rate, frequency)
        .iter()
        .filter(|w| **w == Heard::Tone)
        .count()
}

#[test]
fn an_agent_calls_the_orders_contact_back_from_the_console_through_the_trunk() {
    let carrier_port = free_port();
    let server = start(&format!("{}{}", config(carrier_port, 3), users()));
    let dir = tempfile::tempdir().expect("tmp");
    let agent_source = dir.path().join("agent.wav");
    tone_wav(&agent_source, AGENT_TONE, 30.0);
    alaw_tone(&dir.path().join("tone.alaw"), CONTACT_TONE, 10.0);

    let zhang = login(&server, "zhang", "pw-zhang");
    let wu = login(&server, "wu", "pw-wu");
    let id = order_with_contact(&server, &zhang);
    let other = order_with_contact(&server, &zhang);

    // Refused before anything rings: no phone registered yet; a number in the request;
    // a callback clerk, whose step this order has not reached.
    let (status, resp) = call_back(&server, &zhang, &id, "");
    assert_eq!(status, 422, "{resp}");
    assert_eq!(body_json(&resp)["code"], "no_registered_phone", "{resp}");
    let (status, resp) = call_back(&server, &zhang, &id, r#"{"number":"13900001111"}"#);
    assert_eq!(status, 422, "{resp}");
    assert_eq!(body_json(&resp)["code"], "invalid_body", "{resp}");
    let (status, resp) = call_back(&server, &wu, &id, "{}");
    assert_eq!(status, 403, "{resp}");

    let phone = registered_phone(&server, ("1001", "secret1001"), &agent_source, 25);
    let signed_in = feature_code(&server, "1001", "*11");
    assert_eq!(signed_in.status, Some(0), "*11: {}", server.log());
    assert!(
        wait_state(&server, "1001", "available", Duration::from_secs(5)),
        "{:?}",
        agent_states(&server)
    );
    // The carrier's callee: the INVITE must be for the order's number from 12348; it
    // answers and talks its tone for 5 s, then hangs up.
    let scenario = streaming_carrier_scenario(dir.path(), ORDER_NUMBER, 5000, "tone.alaw");
    let carrier = {
        let cwd = dir.path().to_path_buf();
        std::thread::spawn(move || {
            run_bounded(
                sipp(&scenario, carrier_port)
                    .current_dir(cwd)
                    .args(["-m", "1", "-timeout", "25"]),
                Duration::from_secs(28),
            )
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let (status, resp) = call_back(&server, &zhang, &id, "{}");
    assert_eq!(status, 202, "{resp}\n{}", server.log());
    let started = body_json(&resp);
    assert_eq!(started["state"], "ringing_phone", "{started}");
    assert_eq!(started["phone"], "1001", "{started}");
    let call_id = started["call_id"].as_str().expect("call id").to_owned();
    // One call per order at a time.
    let (status, resp) = call_back(&server, &zhang, &id, "{}");
    assert_eq!(status, 409, "{resp}");
    assert_eq!(body_json(&resp)["code"], "call_in_progress", "{resp}");
    // And one phone places one call: another order waits.
    let (status, resp) = call_back(&server, &zhang, &other, "{}");
    assert_eq!(status, 409, "{resp}");
    assert_eq!(body_json(&resp)["code"], "phone_busy", "{resp}");
    // The console follows the call.
    let state_path = format!("/api/orders/{id}/call_back");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (_, resp) = get(&server, &zhang, &state_path);
            body_json(&resp)["state"] == "connected"
        }),
        "{}",
        server.log()
    );
    // No queue call is offered to the phone meanwhile.
    assert!(
        agent_states(&server).contains(&(
            "1001".to_owned(),
            "paused".to_owned(),
            Some("order-callback".to_owned())
        )),
        "{:?}",
        agent_states(&server)
    );

    let carrier = carrier.join().expect("carrier thread");
    let phone = phone.finish();
    let context = format!(
        "carrier: {:?}\n{}\n{}\nphone:\n{}\nserver:\n{}",
        carrier.status,
        carrier.stdout,
        carrier.stderr,
        phone.log(),
        server.log()
    );
    // The carrier received the INVITE for the order's number (its scenario checks it)
    // and nothing else: one call.
    assert_eq!(carrier.status, Some(0), "{context}");
    let log = server.log();
    assert_eq!(
        log.matches("dialling the order's contact through the trunk")
            .count(),
        1,
        "{context}"
    );
    assert_log_keeps_number_private(&log, ORDER_NUMBER);
    // The agent's phone played the contact's tone.
    let heard = phone
        .heard
        .as_ref()
        .unwrap_or_else(|| panic!("the phone had no call:\n{context}"));
    let (samples, rate) = wav_samples(heard);
    let heard = windows(&samples, rate, CONTACT_TONE);
    let tone = heard.iter().filter(|w| **w == Heard::Tone).count();
    assert!(
        tone >= 35,
        "the phone played the contact for {} ms of 5 s: {:?}\n{context}",
        tone * 100,
        runs(&heard)
    );

    // The console shows the end and its outcome.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (_, resp) = get(&server, &zhang, &state_path);
            body_json(&resp)["state"] == "ended"
        }),
        "{context}"
    );
    let (_, resp) = get(&server, &zhang, &state_path);
    let ended = body_json(&resp);
    assert_eq!(ended["outcome"], "answered", "{ended}");
    assert!(
        ended["talk_secs"].as_u64().is_some_and(|s| s >= 4),
        "{ended}"
    );

    // The recording holds both sides: the contact left, the agent right.
    let wavs: Vec<_> = find_wavs(&server.dir.path().join("recordings"))
        .into_iter()
        .filter(|p| p.display().to_string().contains(&call_id))
        .collect();
    assert_eq!(wavs.len(), 1, "{wavs:?}\n{context}");
    let (left, right, rate) = channels(&wavs[0]);
    assert!(
        tone_windows(&left, rate, CONTACT_TONE) >= 35,
        "the contact's side recorded\n{context}"
    );
    assert!(
        tone_windows(&right, rate, AGENT_TONE) >= 35,
        "the agent's side recorded\n{context}"
    );

    // The order's history: who called, when, the outcome, the time talked, the
    // recording's URL — which plays for the agent who made the call.
    let fact = order_callback_fact(&server, &zhang, &id);
    assert!(!fact.is_null(), "{context}");
    let call = &fact["kind"]["call"];
    assert_eq!(call["call_id"], call_id.as_str(), "{fact}");
    assert_eq!(call["by"], "zhang", "{fact}");
    assert_eq!(call["phone"], "1001", "{fact}");
    assert_eq!(call["result"], "answered", "{fact}");
    assert!(call["talk_secs"].as_u64().is_some_and(|s| s >= 4), "{fact}");
    assert!(fact["at"].is_string(), "{fact}");
    assert_eq!(fact["actor"], "system", "{fact}");
    let url = call["recording_url"].as_str().expect("recording url");
    assert_eq!(url, format!("/api/recordings/{call_id}"));
    let head = response_head(&server, &zhang, url);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("audio/wav"), "{head}");
    // And the call is a call record of the order's city.
    let (_, calls) = server.api_get("/api/calls?limit=10");
    assert!(
        calls.contains(&call_id) && calls.contains("order_callback"),
        "{calls}"
    );
}

/// The callback clerk on the callback step of an urgent order (dispatched, replied by
/// the legal-aid centre) calls back from the console; the contact's phone does not
/// answer (the carrier answers 480): the clerk's phone is let go, the console shows
/// "no answer", and the order's history has the attempt under the clerk's name — with
/// no time talked and no recording.
#[test]
fn a_callback_clerk_calls_back_on_the_callback_step_and_no_answer_is_logged() {
    let carrier_port = free_port();
    let server = start(&format!("{}{}", config(carrier_port, 3), users()));
    let dir = tempfile::tempdir().expect("tmp");
    let clerk_source = dir.path().join("clerk.wav");
    tone_wav(&clerk_source, AGENT_TONE, 20.0);
    let zhang = login(&server, "zhang", "pw-zhang");
    let body = serde_json::json!({
        "contact_name": "张三",
        "contact_phone": ORDER_NUMBER,
        "category": "consultation",
        "urgency": "urgent",
        "business_area": "legal_aid",
        "description": "紧急咨询，须回访",
        "channel": "phone",
        "city": "jinan",
    });
    let (status, resp) = http(
        server.http,
        "POST",
        "/api/orders",
        &zhang,
        &body.to_string(),
    );
    assert_eq!(status, 201, "{resp}");
    let id = body_json(&resp)["id"].as_str().expect("id").to_owned();
    let command = |session: &(String, String), name: &str, body: serde_json::Value| {
        let (status, resp) = http(
            server.http,
            "POST",
            &format!("/api/orders/{id}/{name}"),
            session,
            &body.to_string(),
        );
        assert_eq!(status, 200, "{name}: {resp}");
        body_json(&resp)
    };
    let li = login(&server, "li", "pw-li");
    let fang = login(&server, "fang", "pw-fang");
    let wu = login(&server, "wu", "pw-wu");
    command(&li, "dispatch", serde_json::json!({"units": ["legal-aid"]}));
    command(&fang, "sign", serde_json::json!({}));
    command(&fang, "start", serde_json::json!({}));
    let fed_back = command(
        &fang,
        "reply",
        serde_json::json!({"text": "可申请法律援助"}),
    );
    assert_eq!(fed_back["state"], "fed_back", "{fed_back}");

    let phone = registered_phone(&server, ("1002", "secret1002"), &clerk_source, 12);
    let scenario = carrier_scenario(dir.path(), "carrier_reject.xml", ORDER_NUMBER, 0);
    let carrier = std::thread::spawn(move || {
        run_bounded(
            sipp(&scenario, carrier_port).args(["-m", "1", "-timeout", "15"]),
            Duration::from_secs(18),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let (status, resp) = call_back(&server, &wu, &id, "");
    assert_eq!(status, 202, "{resp}\n{}", server.log());
    let started = body_json(&resp);
    assert_eq!(started["phone"], "1002", "{started}");
    let call_id = started["call_id"].as_str().expect("call id").to_owned();
    let carrier = carrier.join().expect("carrier thread");
    let phone = phone.finish();
    let context = format!(
        "carrier: {:?}\n{}\n{}\nphone:\n{}\nserver:\n{}",
        carrier.status,
        carrier.stdout,
        carrier.stderr,
        phone.log(),
        server.log()
    );
    assert_eq!(carrier.status, Some(0), "{context}");
    let state_path = format!("/api/orders/{id}/call_back");
    let mut ended = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            let (_, resp) = get(&server, &wu, &state_path);
            ended = body_json(&resp);
            ended["state"] == "ended"
        }),
        "{ended}\n{context}"
    );
    assert_eq!(ended["outcome"], "no_answer", "{ended}");
    let fact = order_callback_fact(&server, &wu, &id);
    let call = &fact["kind"]["call"];
    assert_eq!(call["call_id"], call_id.as_str(), "{fact}\n{context}");
    assert_eq!(call["by"], "wu", "{fact}");
    assert_eq!(call["by_name"], "回访员 吴静", "{fact}");
    assert_eq!(call["phone"], "1002", "{fact}");
    assert_eq!(call["result"], "no_answer", "{fact}");
    assert_eq!(call["talk_secs"], 0, "{fact}");
    assert!(call["recording_url"].is_null(), "{fact}");
    assert!(
        find_wavs(&server.dir.path().join("recordings"))
            .iter()
            .all(|p| !p.display().to_string().contains(&call_id)),
        "nothing recorded"
    );
}
