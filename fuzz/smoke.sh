#!/usr/bin/env bash
# Bounded coverage-guided fuzz smoke of the SIP parser on the stable toolchain: libFuzzer
# (libfuzzer-sys) with LLVM SanitizerCoverage instrumentation, seeded with the RFC 4475 /
# RFC 5118 corpus. `cargo +nightly fuzz run sip_parse` does the same with ASan.
# Usage: fuzz/smoke.sh [SECONDS]   (default 60). Exits non-zero on a crash; the crashing
# input is left in fuzz/artifacts/ to become a regression test.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
target="x86_64-unknown-linux-gnu"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
# --target keeps the instrumentation out of build scripts (they would not link).
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions" \
  cargo build --release --target "$target" --bin sip_parse
mkdir -p corpus/sip_parse artifacts/sip_parse
"$CARGO_TARGET_DIR/$target/release/sip_parse" \
  -max_total_time="$seconds" -max_len=70000 -print_final_stats=1 \
  -artifact_prefix=artifacts/sip_parse/ \
  corpus/sip_parse ../tests/fixtures/sip/torture
