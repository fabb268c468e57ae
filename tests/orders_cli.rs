//! `hotline order …` against a running server started by the test: create, list, get,
//! events and commands over HTTP with bearer tokens; API errors shown as the API's
//! code, message and field.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Server, TEST_CONFIG, run_bounded};
use serde_json::Value;
use sha2::{Digest, Sha256};

const INTAKE_TOKEN: &str = "cli-intake-token-42";
const HANDLER_TOKEN: &str = "cli-handler-token-42";

fn config() -> String {
    let sha = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    format!(
        r#"{TEST_CONFIG}
[[units]]
id = "jinan"
name = "济南市司法局"
kind = "city"
parent = "province"

[[units]]
id = "jinan-legal-aid"
name = "济南市法律援助中心"
kind = "institution"
parent = "jinan"

[[users]]
id = "intake"
name = "受理员"
password = "intake-password"
roles = ["agent", "dispatcher"]
unit = "jinan"
api_token = "{}"

[[users]]
id = "aid-handler"
name = "承办人"
password = "handler-password"
roles = ["unit_handler"]
unit = "jinan-legal-aid"
api_token = "{}"
"#,
        sha(INTAKE_TOKEN),
        sha(HANDLER_TOKEN)
    )
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `hotline order <args>` with the server's URL in HOTLINE_URL and `token` (if any) in
/// HOTLINE_TOKEN.
fn order(server: &Server, token: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotline"));
    cmd.arg("order")
        .args(args)
        .env("HOTLINE_URL", format!("http://{}", server.http))
        .env_remove("HOTLINE_TOKEN")
        .env("RUST_LOG", "warn");
    if let Some(token) = token {
        cmd.env("HOTLINE_TOKEN", token);
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(30));
    Run {
        code: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    }
}

fn ok(run: &Run) -> &str {
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    &run.stdout
}

fn json(run: &Run) -> Value {
    serde_json::from_str(ok(run)).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

#[test]
fn an_order_goes_from_intake_to_handling_through_the_command_line() {
    let server = Server::start_with(&config(), &[]);
    let created = json(&order(
        &server,
        Some(INTAKE_TOKEN),
        &[
            "--output",
            "json",
            "create",
            "--category",
            "complaint",
            "--description",
            "律师收费不透明",
            "--contact-name",
            "张三",
            "--contact-phone",
            "13812345678",
            "--business-area",
            "unknown",
            "--city",
            "jinan",
            "--idempotency-key",
            "cli-1",
        ],
    ));
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["state"], "pending_dispatch", "{created}");
    // The same create again (same Idempotency-Key): the same order.
    let again = json(&order(
        &server,
        Some(INTAKE_TOKEN),
        &[
            "--output",
            "json",
            "create",
            "--category",
            "complaint",
            "--description",
            "律师收费不透明",
            "--contact-name",
            "张三",
            "--contact-phone",
            "13812345678",
            "--business-area",
            "unknown",
            "--city",
            "jinan",
            "--idempotency-key",
            "cli-1",
        ],
    ));
    assert_eq!(again["id"], created["id"]);

    // The dispatcher's inbox as a table.
    let list = order(
        &server,
        Some(INTAKE_TOKEN),
        &["list", "--state", "pending_dispatch", "--sort", "deadline"],
    );
    let table = ok(&list);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    assert!(
        lines.iter().any(|l| l.starts_with(&id)
            && l.contains("pending_dispatch")
            && l.contains("complaint")),
        "{table}"
    );
    assert!(table.contains("1 in total"), "{table}");

    let dispatched = order(
        &server,
        Some(INTAKE_TOKEN),
        &["dispatch", &id, "--units", "jinan-legal-aid"],
    );
    assert!(
        ok(&dispatched).contains("state         dispatched"),
        "{}",
        dispatched.stdout
    );

    // The handling unit: sees it in its list, signs, starts.
    let theirs = order(&server, Some(HANDLER_TOKEN), &["list"]);
    assert!(ok(&theirs).contains(&id), "{}", theirs.stdout);
    ok(&order(&server, Some(HANDLER_TOKEN), &["sign", &id]));
    let started = json(&order(
        &server,
        Some(HANDLER_TOKEN),
        &["--output", "json", "start", &id, "--version", "4"],
    ));
    assert_eq!(started["state"], "in_progress", "{started}");
    assert_eq!(started["lead_unit"], "jinan-legal-aid");
    // `hotline serve` numbers orders (`[orders] number_prefix`), and the number finds
    // the order as its id does.
    let number = started["number"].as_str().unwrap_or_default().to_owned();
    assert!(number.starts_with("鲁12348-"), "{started}");
    let by_number = order(&server, Some(HANDLER_TOKEN), &["get", &number]);
    assert!(
        ok(&by_number).contains(&format!("number        {number}")),
        "{}",
        by_number.stdout
    );
    let got = order(&server, Some(HANDLER_TOKEN), &["get", &id]);
    let got = ok(&got);
    assert!(got.contains("state         in_progress"), "{got}");
    assert!(got.contains("lead unit     jinan-legal-aid"), "{got}");
    let events = order(&server, Some(HANDLER_TOKEN), &["events", &id]);
    let events = ok(&events);
    for kind in ["created", "dispatched", "signed", "started"] {
        assert!(events.contains(kind), "{kind}: {events}");
    }

    // Errors: the API's code, message and field on stderr, exit 1.
    let again = order(&server, Some(HANDLER_TOKEN), &["sign", &id]);
    assert_eq!(again.code, Some(1), "{}", again.stdout);
    assert!(
        again.stderr.contains("HTTP 422 illegal_transition:")
            && again.stderr.contains("in_progress"),
        "{}",
        again.stderr
    );
    let stale = order(
        &server,
        Some(HANDLER_TOKEN),
        &["add_note", &id, "--note", "x", "--version", "1"],
    );
    assert_eq!(stale.code, Some(1));
    assert!(
        stale.stderr.contains("HTTP 409 version_conflict"),
        "{}",
        stale.stderr
    );
    let blank = order(
        &server,
        Some(INTAKE_TOKEN),
        &[
            "create",
            "--category",
            "complaint",
            "--description",
            " ",
            "--city",
            "jinan",
        ],
    );
    assert_eq!(blank.code, Some(1));
    assert!(
        blank
            .stderr
            .contains("HTTP 422 missing_field: description is required (field: description)"),
        "{}",
        blank.stderr
    );
    let bad_filter = order(&server, Some(INTAKE_TOKEN), &["list", "--sort", "sideways"]);
    assert!(
        bad_filter.stderr.contains("(field: sort)"),
        "{}",
        bad_filter.stderr
    );
    let stranger = order(&server, Some("not-a-token"), &["get", &id]);
    assert_eq!(stranger.code, Some(1));
    assert!(
        stranger.stderr.contains("HTTP 401 unauthenticated"),
        "{}",
        stranger.stderr
    );
    let no_token = order(&server, None, &["list"]);
    assert_eq!(no_token.code, Some(2));
    assert!(
        no_token.stderr.contains("HOTLINE_TOKEN"),
        "{}",
        no_token.stderr
    );
    let unknown = order(&server, Some(INTAKE_TOKEN), &["fly", &id]);
    assert_eq!(unknown.code, Some(2));
    assert!(
        unknown.stderr.contains("unknown order command"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn a_server_that_is_not_there_is_a_clear_error() {
    // A free port can be taken by a server of a test running beside this one before
    // the command connects: then another port is tried.
    let mut stderr = String::new();
    for _ in 0..3 {
        let port = common::free_port();
        let out = run_bounded(
            Command::new(env!("CARGO_BIN_EXE_hotline"))
                .args([
                    "order",
                    "--url",
                    &format!("http://127.0.0.1:{port}"),
                    "--token",
                    "t",
                    "list",
                ])
                .env("RUST_LOG", "warn"),
            Duration::from_secs(30),
        );
        assert_eq!(out.status, Some(1), "{}", out.stderr);
        stderr = out.stderr;
        if stderr.contains("cannot connect to 127.0.0.1") {
            break;
        }
    }
    assert!(stderr.contains("cannot connect to 127.0.0.1"), "{stderr}");
    let ftp = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_hotline")).args([
            "order",
            "--url",
            "ftp://example.org",
            "--token",
            "t",
            "list",
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(ftp.status, Some(2));
    assert!(
        ftp.stderr
            .contains("the URL must start with http:// or https://"),
        "{}",
        ftp.stderr
    );
}
