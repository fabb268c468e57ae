//! The `hotline` command line as an operator runs it: from any working directory (paths
//! in a config are relative to the config file), `ledger verify` refusing a database
//! that is not there, `check-config` reporting every problem at its own line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Output, TEST_CONFIG, fill_placeholders, path_str, repo_root, run_bounded};

fn hotline(cwd: &Path, args: &[&str]) -> Output {
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_hotline"))
            .current_dir(cwd)
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("HOTLINE_CONFIG"),
        Duration::from_secs(60),
    )
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect()
}

#[test]
fn shipped_config_and_calendar_are_found_from_any_directory() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let config = path_str(&repo_root().join("config/hotline.toml"));
    let out = hotline(elsewhere.path(), &["check-config", &config]);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains(": ok"), "{}", out.stdout);

    // The calendar commands take the calendar the config names.
    let out = hotline(
        elsewhere.path(),
        &[
            "calendar",
            "--config",
            &config,
            "is-working-day",
            "2026-10-01",
        ],
    );
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("not a working day"), "{}", out.stdout);
    let out = hotline(
        elsewhere.path(),
        &["calendar", "--config", &config, "check"],
    );
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);

    assert_eq!(entries(elsewhere.path()), Vec::<PathBuf>::new());
}

#[test]
fn data_lands_beside_the_config_and_ledger_verify_refuses_a_missing_database() {
    let root = tempfile::tempdir().expect("tempdir");
    let etc = root.path().join("etc");
    let cwd = root.path().join("elsewhere");
    for dir in [&etc, &cwd] {
        std::fs::create_dir(dir).expect("mkdir");
    }
    let config = fill_placeholders(TEST_CONFIG)
        .replace("[server]\n", "[server]\ndata_dir = \"../var/data\"\n");
    let config_path = etc.join("hotline.toml");
    std::fs::write(&config_path, config).expect("write config");
    let config_path = path_str(&config_path);
    let database = etc.join("../var/data/hotline.db");

    let out = hotline(&cwd, &["ledger", "verify", "--config", &config_path]);
    assert_ne!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains(&format!("database {} does not exist", database.display())),
        "{}",
        out.stderr
    );
    assert!(
        !root.path().join("var").exists(),
        "verify created the data directory"
    );

    let out = hotline(&cwd, &["migrate", "--config", &config_path]);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        database.is_file(),
        "migrate creates the database beside the config"
    );

    let out = hotline(&cwd, &["ledger", "verify", "--config", &config_path]);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ledger ok: 0 events"), "{}", out.stdout);

    assert_eq!(
        entries(&cwd),
        Vec::<PathBuf>::new(),
        "nothing in the working directory"
    );
}

#[test]
fn check_config_reports_every_typo_at_its_line_in_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = fill_placeholders(TEST_CONFIG);
    for (from, to) in [
        ("min_expires = 10", "min_expirse = 10"),
        ("sources = [\"127.0.0.1\"]", "sources = [\"127.0.0.one\"]"),
        ("roles = [\"agent\"]", "rolse = [\"agent\"]"),
        ("kind = \"province\"", "kind = \"provence\""),
    ] {
        assert!(config.contains(from), "TEST_CONFIG lost {from}");
        config = config.replacen(from, to, 1);
    }
    let path = dir.path().join("hotline.toml");
    std::fs::write(&path, &config).expect("write config");
    let out = hotline(dir.path(), &["check-config", &path_str(&path)]);
    assert_eq!(out.status, Some(2), "{}{}", out.stdout, out.stderr);
    for typo in ["min_expirse", "127.0.0.one", "rolse", "provence"] {
        let line = config
            .lines()
            .position(|l| l.contains(typo))
            .map(|i| i + 1)
            .expect("typo in config");
        assert!(
            out.stdout.contains(&format!("line {line}: ")),
            "{typo} (line {line}) not reported:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("has 4 problem(s)"), "{}", out.stdout);
}

/// W-19: the rankings' combined-score weights (`[ranking.weights]`) and the order
/// number prefix are checked: a negative weight, all weights 0, a prefix with a '-'
/// are reported at their lines; the shipped config passes.
#[test]
fn check_config_checks_ranking_weights_and_the_order_number_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |extra: &str| {
        let config = format!("{}\n{extra}", fill_placeholders(TEST_CONFIG));
        let path = dir.path().join("hotline.toml");
        std::fs::write(&path, &config).expect("write config");
        let out = hotline(dir.path(), &["check-config", &path_str(&path)]);
        (out, config)
    };
    let line_in = |config: &str, needle: &str| {
        config
            .lines()
            .position(|l| l.contains(needle))
            .map_or(0, |i| i + 1)
    };
    let (out, config) =
        check("[ranking.weights]\non_time_rate = -0.5\n\n[orders]\nnumber_prefix = \"鲁-12348\"\n");
    assert_eq!(out.status, Some(2), "{}{}", out.stdout, out.stderr);
    for (key, needle) in [
        ("ranking.weights.on_time_rate", "on_time_rate = -0.5"),
        ("orders.number_prefix", "number_prefix ="),
    ] {
        assert!(
            out.stdout
                .contains(&format!("line {}: {key}", line_in(&config, needle))),
            "{key} not reported at its line:\n{}",
            out.stdout
        );
    }
    let (out, _) = check(
        "[ranking.weights]\ncompletion_rate = 0\non_time_rate = 0\nsatisfaction_rate = 0\n\
         sign_in_rate = 0\ntransfer_rate = 0\n",
    );
    assert_eq!(out.status, Some(2), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("ranking.weights: the weights must not all be 0"),
        "{}",
        out.stdout
    );
    let shipped = repo_root().join("config/hotline.toml");
    let out = hotline(dir.path(), &["check-config", &path_str(&shipped)]);
    assert_eq!(out.status, Some(0), "{}{}", out.stdout, out.stderr);
}
