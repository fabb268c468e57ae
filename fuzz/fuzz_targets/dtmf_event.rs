//! `fuzz/smoke.sh` runs this (or `cargo +nightly fuzz run dtmf_event`); seeds in
//! `fuzz/corpus/dtmf_event/`. The properties live in [`hotline::fuzz::dtmf`], shared with the
//! fixed-seed mutation test in `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hotline::fuzz::dtmf(data));
