//! `fuzz/smoke.sh` runs this (or `cargo +nightly fuzz run sdp_parse`); seeds in
//! `fuzz/corpus/sdp_parse/`. The properties live in [`hotline::fuzz::sdp`], shared with the
//! fixed-seed mutation test in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hotline::fuzz::sdp(data));
