//! The Debian package (`scripts/build-deb.sh`): built around the test binary (a debug
//! build: no release build in CI for this), its contents and control data checked with
//! `dpkg-deb -c` / `-I`, its systemd unit accepted by `systemd-analyze verify` without a
//! warning and hardened, and its `/etc/hotline/hotline.toml` naming only paths the
//! package installs — checked by `check-config` and a server started on it. Then
//! installed with dpkg on a throw-away overlay of this machine and run as an operator
//! would (`scripts/check-deb-install.sh`).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Server, path_str, repo_root, require, run_bounded};

fn run(program: &str, args: &[&str]) -> common::Output {
    run_bounded(
        Command::new(require(program)).args(args),
        Duration::from_secs(300),
    )
}

/// `Key=value` lines of a unit (the last value wins, as systemd reads most keys).
fn unit_keys(text: &str) -> HashMap<String, Vec<String>> {
    let mut keys: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines().map(str::trim) {
        if let Some((k, v)) = line.split_once('=')
            && !line.starts_with('#')
        {
            keys.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    keys
}

/// `scripts/build-deb.sh` around the test binary; the .deb's path.
fn build_package(out_dir: &Path) -> String {
    let build = run_bounded(
        Command::new("bash")
            .arg(repo_root().join("scripts/build-deb.sh"))
            .args(["--binary", env!("CARGO_BIN_EXE_hotline")])
            .args(["--out", &path_str(out_dir)]),
        Duration::from_secs(300),
    );
    assert_eq!(build.status, Some(0), "{}{}", build.stdout, build.stderr);
    let deb = build.stdout.lines().last().expect("deb path").to_owned();
    assert!(Path::new(&deb).is_file(), "{deb}");
    deb
}

#[test]
fn the_debian_package_installs_a_hardened_service_with_its_config_and_state_directory() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let deb = build_package(out_dir.path());

    let info = run("dpkg-deb", &["-I", &deb]);
    assert_eq!(info.status, Some(0), "{}", info.stderr);
    for needle in [
        "Package: hotline",
        "Depends: libc6, libgcc-s1, adduser, ca-certificates",
        "conffiles",
        "postinst",
    ] {
        assert!(
            info.stdout.contains(needle),
            "no {needle:?} in\n{}",
            info.stdout
        );
    }
    let conffiles = run("dpkg-deb", &["-I", &deb, "conffiles"]);
    assert_eq!(conffiles.stdout.trim(), "/etc/hotline/hotline.toml");

    let listing = run("dpkg-deb", &["-c", &deb]);
    assert_eq!(listing.status, Some(0), "{}", listing.stderr);
    let entry = |mode: &str, path: &str| {
        listing
            .stdout
            .lines()
            .any(|l| l.starts_with(mode) && l.contains(" root/root ") && l.ends_with(path))
    };
    for (mode, path) in [
        ("-rwxr-xr-x", " ./usr/bin/hotline"),
        ("-rw-r-----", " ./etc/hotline/hotline.toml"),
        ("drwxr-x---", " ./var/lib/hotline/"),
        ("-rw-r--r--", " ./lib/systemd/system/hotline.service"),
        (
            "-rw-r--r--",
            " ./usr/share/hotline/calendar/cn-workdays.toml",
        ),
        ("-rw-r--r--", " ./usr/share/hotline/prompts/zh/beep.wav"),
    ] {
        assert!(entry(mode, path), "no {mode} {path} in\n{}", listing.stdout);
    }

    let control = tempfile::tempdir().expect("tempdir");
    let e = run("dpkg-deb", &["-e", &deb, &path_str(control.path())]);
    assert_eq!(e.status, Some(0), "{}", e.stderr);
    for script in ["postinst", "prerm", "postrm"] {
        let path = path_str(&control.path().join(script));
        let syntax = run("sh", &["-n", &path]);
        assert_eq!(syntax.status, Some(0), "{script}: {}", syntax.stderr);
    }
    let postinst = std::fs::read_to_string(control.path().join("postinst")).expect("postinst");
    assert!(postinst.contains("adduser --system --group"), "{postinst}");

    let root = tempfile::tempdir().expect("tempdir");
    let x = run("dpkg-deb", &["-x", &deb, &path_str(root.path())]);
    assert_eq!(x.status, Some(0), "{}", x.stderr);
    let unit_path = root.path().join("lib/systemd/system/hotline.service");
    let unit = std::fs::read_to_string(&unit_path).expect("unit");
    let keys = unit_keys(&unit);
    let one = |k: &str| keys.get(k).and_then(|v| v.last()).map(String::as_str);
    assert_eq!(one("User"), Some("hotline"));
    assert_eq!(one("ProtectSystem"), Some("strict"));
    assert_eq!(one("ReadWritePaths"), Some("/var/lib/hotline"));
    assert_eq!(one("NoNewPrivileges"), Some("yes"));
    assert_eq!(one("CapabilityBoundingSet"), Some(""));
    assert_eq!(one("StandardError"), Some("journal"));
    assert!(
        one("LimitNOFILE").and_then(|v| v.parse::<u64>().ok()) >= Some(65536),
        "{unit}"
    );
    assert_eq!(
        one("ExecStart"),
        Some("/usr/bin/hotline serve --config /etc/hotline/hotline.toml")
    );

    // systemd-analyze checks that ExecStart exists: point it at the extracted binary.
    // It exits 0 on unknown keys or bad values too, so any output is a failure.
    let binary = root.path().join("usr/bin/hotline");
    let check_unit = root.path().join("hotline.service");
    std::fs::write(
        &check_unit,
        unit.replace("/usr/bin/hotline", &path_str(&binary)),
    )
    .expect("write");
    let verify = run("systemd-analyze", &["verify", &path_str(&check_unit)]);
    assert_eq!(verify.status, Some(0), "{}{}", verify.stdout, verify.stderr);
    assert_eq!(
        format!("{}{}", verify.stdout, verify.stderr).trim(),
        "",
        "systemd-analyze verify warns"
    );

    // The packaged config names installed paths only; relocated into the extracted
    // tree it passes check-config with the packaged binary and serves.
    let config =
        std::fs::read_to_string(root.path().join("etc/hotline/hotline.toml")).expect("config");
    for line in [
        "data_dir = \"/var/lib/hotline\"",
        "calendar = \"/usr/share/hotline/calendar/cn-workdays.toml\"",
        "prompts_dir = \"/usr/share/hotline/prompts/zh\"",
    ] {
        assert!(config.lines().any(|l| l.starts_with(line)), "no {line}");
    }
    let relocated = config
        .replace(
            "/usr/share/hotline",
            &path_str(&root.path().join("usr/share/hotline")),
        )
        .replace(
            "/var/lib/hotline",
            &path_str(&root.path().join("var/lib/hotline")),
        );
    assert!(
        !relocated
            .lines()
            .any(|l| l.split('#').next().is_some_and(|v| v.contains("\"../"))),
        "relative paths left in the packaged config"
    );
    let config_path = root.path().join("relocated.toml");
    std::fs::write(&config_path, &relocated).expect("write");
    let check = run_bounded(
        Command::new(&binary).args(["check-config", &path_str(&config_path)]),
        Duration::from_secs(60),
    );
    assert_eq!(check.status, Some(0), "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains(": ok"), "{}", check.stdout);
    let server = Server::start_with(&relocated, &[]);
    assert!(server.log().contains("hotline ready"));
}

/// dpkg -i, `hotline user add --token`, the server as user `hotline` with the unit's
/// limits and a read-only file system but `/var/lib/hotline`, an order through the
/// token, a backup while serving, a restore as root, the order again, dpkg -r keeping
/// the data — on an overlay of `/` in a private mount namespace (the machine itself is
/// not changed). No systemd runs here (not PID 1), so the unit itself is not started:
/// its settings are applied by hand (setpriv, prlimit, read-only bind mounts).
#[test]
fn the_package_installs_on_a_copy_of_this_machine_and_serves_backs_up_and_restores() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let deb = build_package(out_dir.path());
    let work = tempfile::tempdir().expect("tempdir");
    let (sip, http) = (common::free_port(), common::free_port());
    let out = run_bounded(
        Command::new("bash")
            .arg(repo_root().join("scripts/check-deb-install.sh"))
            .args([
                &deb,
                &path_str(work.path()),
                &sip.to_string(),
                &http.to_string(),
            ]),
        Duration::from_secs(300),
    );
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("== install check ok"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("backup written: /var/lib/hotline/backup.db"),
        "{}",
        out.stdout
    );
}
