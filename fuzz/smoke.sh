#!/usr/bin/env bash
# Bounded coverage-guided fuzz smoke of every target on the stable toolchain: libFuzzer
# (libfuzzer-sys) with LLVM SanitizerCoverage instrumentation and debug assertions
# (overflow checks on). `cargo +nightly fuzz run <target>` does the same with ASan.
#
# Usage: fuzz/smoke.sh [TOTAL_SECONDS] [TARGET...]
#   TOTAL_SECONDS (default 120) is split evenly across the targets run (all by default):
#   sip_parse sdp_parse rtp_parse dtmf_event config_toml api_body.
# Seeds: fuzz/corpus/<target>/ (committed; sip_parse also reads the RFC 4475/5118 corpus in
# tests/fixtures/sip/torture). New inputs go to $CARGO_TARGET_DIR/corpus/<target>/, so the
# committed seeds stay small. Every target runs even if an earlier one crashed; the script
# exits non-zero if any did, printing the reproducer path (fuzz/artifacts/<target>/...)
# and the command that replays it. Fix the library, then pin the input in a unit test.
set -euo pipefail
cd "$(dirname "$0")"
total="${1:-120}"
shift || true
all=(sip_parse sdp_parse rtp_parse dtmf_event config_toml api_body)
if (( $# )); then targets=("$@"); else targets=("${all[@]}"); fi
per=$(( total / ${#targets[@]} ))
(( per >= 1 )) || per=1
triple="x86_64-unknown-linux-gnu"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"

max_len() {
  case "$1" in
    sip_parse) echo 70000 ;;
    config_toml) echo 16384 ;;
    api_body) echo 8192 ;;
    sdp_parse) echo 4096 ;;
    *) echo 2048 ;;
  esac
}

bins=()
for t in "${targets[@]}"; do
  [[ -f "fuzz_targets/$t.rs" ]] || { echo "unknown fuzz target $t (one of ${all[*]})" >&2; exit 2; }
  bins+=(--bin "$t")
done

# --target keeps the instrumentation out of build scripts (they would not link).
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions" \
  cargo build --release --target "$triple" "${bins[@]}"

failed=()
summary=()
for t in "${targets[@]}"; do
  work="$CARGO_TARGET_DIR/corpus/$t"
  log="$CARGO_TARGET_DIR/fuzz-$t.log"
  mkdir -p "$work" "artifacts/$t"
  seeds=()
  [[ -d "corpus/$t" ]] && seeds+=("corpus/$t")
  [[ "$t" == sip_parse ]] && seeds+=(../tests/fixtures/sip/torture)
  echo "==> $t: ${per}s"
  status=0
  "$CARGO_TARGET_DIR/$triple/release/$t" \
    -max_total_time="$per" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    "$work" "${seeds[@]}" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  added=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  if (( status != 0 )); then
    repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    tail -n 40 "$log"
    echo "!! $t crashed (exit $status); reproducer: fuzz/${repro:-artifacts/$t/}"
    [[ -n "$repro" ]] && echo "!! replay: $CARGO_TARGET_DIR/$triple/release/$t fuzz/$repro"
    failed+=("$t")
    summary+=("$(printf '%-12s %4ss %10s runs %8s/s %6s new  CRASH %s' "$t" "$per" "${runs:-?}" "${rate:-?}" "${added:-?}" "fuzz/${repro:-}")")
  else
    summary+=("$(printf '%-12s %4ss %10s runs %8s/s %6s new  ok' "$t" "$per" "${runs:-?}" "${rate:-?}" "${added:-?}")")
  fi
done

echo
echo "fuzz smoke: ${#targets[@]} target(s), ${per}s each"
printf '%s\n' "${summary[@]}"
if (( ${#failed[@]} )); then
  echo "fuzz smoke FAILED: ${failed[*]}"
  exit 1
fi
