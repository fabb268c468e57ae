//! First start as an operator meets it: `hotline user add` creates a user with an
//! argon2 password hash and an API token printed once, so `hotline order` works
//! without hashing a token by hand; the ready line names the console and a first start
//! lists the demo users.

mod common;

use common::ops::{hotline, line_value};
use common::{Server, path_str, shipped_config};

#[test]
fn user_add_prints_a_token_that_hotline_order_uses_and_the_first_start_names_the_console() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("hotline.toml");
    std::fs::write(&config_path, shipped_config()).expect("write config");
    let config = path_str(&config_path);

    // A bad role or unit changes nothing.
    let before = std::fs::read_to_string(&config_path).expect("read");
    let out = hotline(
        dir.path(),
        &[
            "user", "add", "--config", &config, "--role", "janitor", "--token",
        ],
        &[],
    );
    assert_ne!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("roles"), "{}", out.stderr);
    let out = hotline(
        dir.path(),
        &[
            "user",
            "add",
            "--config",
            &config,
            "--role",
            "dispatcher",
            "--city",
            "atlantis",
        ],
        &[],
    );
    assert_ne!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("unknown unit \"atlantis\""),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&config_path).expect("read"), before);

    // As installed by the package: root:hotline 0640 (here gid 65534); kept as it was.
    {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::chown(&config_path, Some(0), Some(65534)).expect("chown (as root)");
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o640))
            .expect("chmod");
    }
    let out = hotline(
        dir.path(),
        &[
            "user",
            "add",
            "--config",
            &config,
            "--role",
            "dispatcher",
            "--city",
            "qingdao",
            "--name",
            "青岛转办员",
            "--token",
        ],
        &[],
    );
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("user dispatcher-qingdao"),
        "{}",
        out.stdout
    );
    let token = line_value(&out.stdout, "api token: ").expect("token printed");
    let password = line_value(&out.stdout, "password: ").expect("password printed");
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(&config_path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!((meta.uid(), meta.gid()), (0, 65534));
    }
    let text = std::fs::read_to_string(&config_path).expect("read");
    assert!(text.contains("password_hash = \"$argon2id$"), "{text}");
    assert!(!text.contains(&token), "the token itself is not stored");
    assert!(
        !text.contains(&password),
        "the password itself is not stored"
    );
    // The same id twice is refused.
    let out = hotline(
        dir.path(),
        &[
            "user",
            "add",
            "--config",
            &config,
            "--role",
            "dispatcher",
            "--city",
            "qingdao",
        ],
        &[],
    );
    assert!(out.stderr.contains("exists already"), "{}", out.stderr);

    let server = Server::start_in(dir, &text, &[]);
    let log = server.log();
    let console = format!("consoles at http://{}/", server.http);
    assert!(
        log.contains(&console),
        "ready line without {console}:\n{log}"
    );
    assert!(
        log.contains("dispatcher / demo-dispatcher (dispatcher)"),
        "first start lists the demo users:\n{log}"
    );

    let url = format!("http://{}", server.http);
    let out = hotline(
        server.dir.path(),
        &[
            "order",
            "--url",
            &url,
            "--token",
            &token,
            "--output",
            "json",
            "create",
            "--category",
            "consultation",
            "--description",
            "用户添加测试 咨询",
            "--business-area",
            "legal_aid",
            "--contact-name",
            "张三",
            "--contact-phone",
            "13812345678",
            "--channel",
            "phone",
            "--received-at",
            "2026-12-07T09:00:00+08:00",
        ],
        &[],
    );
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    let order: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let id = order["id"].as_str().expect("order id").to_owned();
    assert_eq!(order["fields"]["city"].as_str(), Some("qingdao"), "{order}");
    let out = hotline(
        server.dir.path(),
        &["order", "--url", &url, "get", &id],
        &[("HOTLINE_TOKEN", token.as_str())],
    );
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(&id), "{}", out.stdout);
    // A wrong token is refused.
    let out = hotline(
        server.dir.path(),
        &["order", "--url", &url, "--token", "0000", "get", &id],
        &[],
    );
    assert_ne!(out.status, Some(0), "{}{}", out.stdout, out.stderr);

    // The printed password signs in at the console (argon2 verified by the server).
    let none = (String::new(), String::new());
    let body = serde_json::json!({"user": "dispatcher-qingdao", "password": password}).to_string();
    let (status, resp) = common::http(server.http, "POST", "/api/login", &none, &body);
    assert_eq!(status, 200, "{resp}");
}
