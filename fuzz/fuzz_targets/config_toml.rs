//! `fuzz/smoke.sh` runs this (or `cargo +nightly fuzz run config_toml`); seeds in
//! `fuzz/corpus/config_toml/`. The properties live in [`hotline::fuzz::config`], shared with the
//! fixed-seed mutation test in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hotline::fuzz::config(data));
