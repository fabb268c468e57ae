//! `fuzz/smoke.sh` runs this (or `cargo +nightly fuzz run api_body`); seeds in
//! `fuzz/corpus/api_body/`. The properties live in [`hotline::fuzz::api`], shared with the
//! fixed-seed mutation test in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hotline::fuzz::api(data));
