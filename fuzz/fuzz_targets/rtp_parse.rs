//! `fuzz/smoke.sh` runs this (or `cargo +nightly fuzz run rtp_parse`); seeds in
//! `fuzz/corpus/rtp_parse/`. The properties live in [`hotline::fuzz::rtp`], shared with the
//! fixed-seed mutation test in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hotline::fuzz::rtp(data));
