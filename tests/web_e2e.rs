//! End-to-end test of the browser consoles: the real `hotline` binary serves the API and
//! the embedded consoles; `web/e2e/run.mjs` drives headless Debian Chromium through
//! Playwright (`playwright-core`) along a whole work-order life: agent intake, dispatch,
//! return with a reason, re-dispatch, sign and reply, callback "satisfied" closes it,
//! and the supervisor's ranking shows the handling unit.
//!
//! Needs `node`, `web/node_modules` (`npm ci` in `web/`), a built `web/dist`
//! (`npm run build`, before `cargo test` so the binary embeds it) and `/usr/bin/chromium`.
//! Skipped (with a message) only when `node` is missing; anything else missing fails.
//! `HOTLINE_UPDATE_SCREENSHOTS=1` writes the screenshots to `docs/screenshots/`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Server, repo_root};

/// Demo users for the test, one per console (password `demo-<id>`), appended to the
/// shipped config.
const E2E_USERS: &str = r#"

[[users]]
id = "e2e-agent"
name = "王坐席"
password = "demo-e2e-agent"
roles = ["agent"]
unit = "jinan"

[[users]]
id = "e2e-dispatcher"
name = "赵转办"
password = "demo-e2e-dispatcher"
roles = ["dispatcher"]
unit = "jinan"

[[users]]
id = "e2e-aid"
name = "钱援助"
password = "demo-e2e-aid"
roles = ["unit_handler", "unit_head"]
unit = "jinan-legal-aid"

[[users]]
id = "e2e-lixia"
name = "孙承办"
password = "demo-e2e-lixia"
roles = ["unit_handler", "unit_head", "reviewer"]
unit = "jinan-lixia"

[[users]]
id = "e2e-callback"
name = "李回访"
password = "demo-e2e-callback"
roles = ["callback_staff"]
unit = "jinan"

[[users]]
id = "e2e-supervisor"
name = "周督办"
password = "demo-e2e-supervisor"
roles = ["supervisor"]
unit = "jinan"
"#;

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// The shipped config, with the calendar path made absolute (the server runs in a
/// temporary directory) and the e2e users added.
fn e2e_config(root: &Path) -> String {
    let shipped = std::fs::read_to_string(root.join("config/hotline.toml")).expect("read config");
    let calendar = root.join("config/calendar/cn-workdays.toml");
    let mut config = shipped.replace(
        "calendar = \"config/calendar/cn-workdays.toml\"",
        &format!("calendar = {:?}", calendar.display().to_string()),
    );
    config.push_str(E2E_USERS);
    config
}

#[test]
fn consoles_carry_an_order_from_intake_to_ranking_in_chromium() {
    if !on_path("node") {
        eprintln!(
            "SKIPPED web_e2e: `node` is not installed (install nodejs 20+ to run the browser test)"
        );
        return;
    }
    let root = repo_root();
    let web = root.join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules missing: run `npm ci` in web/ before `cargo test`"
    );
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium missing: apt-get install -y chromium"
    );

    let server = Server::start_with(&e2e_config(&root), &[]);
    let (status, body) = server.http_get("/");
    assert_eq!(status, 200, "GET / failed: {body}");
    assert!(
        !body.contains("控制台尚未构建"),
        "the binary embeds no consoles: run `npm run build` in web/ before `cargo test`"
    );

    let base = format!("http://{}", server.http);
    // The committed screenshots are refreshed on request only, so a test run does not
    // leave the work tree dirty: HOTLINE_UPDATE_SCREENSHOTS=1 cargo test --test web_e2e
    let shots = if std::env::var_os("HOTLINE_UPDATE_SCREENSHOTS").is_some() {
        root.join("docs/screenshots")
    } else {
        server.dir.path().join("screenshots")
    };
    let output = Command::new("node")
        .arg(web.join("e2e/run.mjs"))
        .arg(&base)
        .env("E2E_SCREENSHOTS", &shots)
        .current_dir(&web)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    // Give a failing run the server's side of the story too.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        output.status.success(),
        "browser e2e failed ({:?})\n--- node stdout\n{stdout}\n--- node stderr\n{stderr}\n--- server log (tail)\n{}",
        output.status.code(),
        server
            .log()
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(stdout.contains("E2E OK"), "{stdout}");
}
