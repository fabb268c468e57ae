#!/usr/bin/env bash
# Issue 2's "done when": a SIPp OPTIONS + REGISTER (digest) flood at the highest rate the
# server sustains, for DURATION seconds, sampling the server's RSS every 10 s and checking
# its log for errors. Prints RSS start/end/slope; exits non-zero when RSS grows beyond
# the threshold, errors appear in the log or the flood itself fails.
#
#   bench/options-flood.sh                  # 10 minutes (plus a ~30 s rate search)
#   DURATION=60 bench/options-flood.sh      # quick run
#   RATE=1500 DURATION=600 bench/options-flood.sh
#
# Env: HOTLINE_BIN (default target/release/hotline), DURATION (600 s), RATE (default: a
# ramp of RAMP_SECS (35 s, longer than Timer J) steps from START_RATE (100/s), x1.5 each,
# then one bisection, finds the highest rate with < 0.1 % failures; the flood runs at
# RATE_FRACTION of it, default 100 %), WARMUP (DURATION/2: RSS before that is warm-up —
# bounded tables filling, allocator arenas; a 10-minute run on 2 cores grew ~25 MB in
# its first 4 minutes, then stayed flat), MAX_GROWTH_KB (4096: allowed RSS growth from
# the end of warm-up to the end), AGENTS (20).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-600}
RATE_FRACTION=${RATE_FRACTION:-100}
MAX_GROWTH_KB=${MAX_GROWTH_KB:-4096}
WARMUP=${WARMUP:-$((DURATION / 2))}
need "$SIPP" sip-tester
need sipsak sipsak
need curl curl
SCENARIO=$BENCH_ROOT/tests/sipp/options_flood.xml

PORT=$(free_port)
start_hotline "$PORT" "$(free_port)"
TARGET=127.0.0.1:$PORT

RAMP_SECS=${RAMP_SECS:-35}
ramp_step() {
  local rate=$1
  drained
  sipp_step "ramp-$rate" "$SCENARIO" "$TARGET" "$rate" $((rate * RAMP_SECS))
  printf '  ramp: offered %6d/s -> %7d ok, %6d failed, delivered %6d/s\n' \
    "$rate" "$STEP_OK" "$STEP_FAILED" "$STEP_RATE" >&2
  step_passed "$rate" $((rate * RAMP_SECS))
}
if [[ -z ${RATE:-} ]]; then
  best=0 failed_at=0 rate=${START_RATE:-100}
  while ((rate <= ${MAX_RATE:-16000})); do
    if ramp_step "$rate"; then best=$rate; else failed_at=$rate; break; fi
    rate=$((rate * 3 / 2))
  done
  ((best > 0)) || die "no rate passed the ramp"
  mid=$(((best + failed_at) / 2))
  if ((failed_at > 0 && mid > best)) && ramp_step "$mid"; then best=$mid; fi
  RATE=$((best * RATE_FRACTION / 100))
fi
drained
CALLS=$((RATE * DURATION))
echo "flood: $RATE OPTIONS+REGISTER calls/s for ${DURATION}s ($CALLS calls, 3 transactions each)" >&2

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$HOTLINE_PID/status"; }
log_lines_before=$(wc -l <"$HOTLINE_LOG")
mkdir -p "$WORK/sipp/flood"
(cd "$WORK/sipp/flood" && exec timeout $((DURATION + 60)) "$SIPP" -sf "$SCENARIO" \
  -s 3001 -au 3001 -ap pw-3001 -i 127.0.0.1 -p "$(free_port)" -m "$CALLS" -r "$RATE" -rp 1000 \
  -l $((RATE * 4 + 100)) -recv_timeout 4000 -timeout $((DURATION + 50)) -nostdin \
  -trace_stat -stf stat.csv -fd 10 "$TARGET" >sipp.out 2>&1) &
FLOOD_PID=$!
BENCH_PIDS+=("$FLOOD_PID")

samples=$WORK/rss.tsv
start_s=$(date +%s)
while kill -0 "$FLOOD_PID" 2>/dev/null; do
  kill -0 "$HOTLINE_PID" 2>/dev/null || die "hotline died during the flood; log: $HOTLINE_LOG"
  now=$(($(date +%s) - start_s))
  printf '%d\t%d\n' "$now" "$(rss_kb)" >>"$samples"
  printf '  t=%4ds RSS %6d KiB\n' "$now" "$(rss_kb)" >&2
  sleep 10 & wait $! || true
done
set +e
wait "$FLOOD_PID"
flood_rc=$?
set -e
kill -0 "$HOTLINE_PID" 2>/dev/null || die "hotline died; log: $HOTLINE_LOG"
printf '%d\t%d\n' "$(($(date +%s) - start_s))" "$(rss_kb)" >>"$samples"

read -r ok failed delivered < <(awk -F';' '
  NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
  { last = $0 }
  END {
    split(last, f, ";"); split(f[col["StartTime"]], s, "\t"); split(f[col["CurrentTime"]], c, "\t")
    secs = c[3] - s[3]; if (secs <= 0) secs = 1
    printf "%d %d %.0f\n", f[col["SuccessfulCall(C)"]], f[col["FailedCall(C)"]], f[col["SuccessfulCall(C)"]] / secs
  }' "$WORK/sipp/flood/stat.csv")

# RSS after warm-up, at the end, and the least-squares slope (KiB/min) after warm-up.
read -r first_kb warm_kb end_kb slope < <(awk -v warm="$WARMUP" '
  NR == 1 { first = $2 }
  $1 >= warm { if (!n) w = $2; n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2; last = $2 }
  END {
    d = n * sxx - sx * sx
    s = (n > 1 && d != 0) ? (n * sxy - sx * sy) / d * 60 : 0
    printf "%d %d %d %.1f\n", first, w, last, s
  }' "$samples")
growth=$((end_kb - warm_kb))
errors=$(tail -n +"$((log_lines_before + 1))" "$HOTLINE_LOG" | grep -c -E "ERROR|WARN|panicked" || true)

echo
printf '| %s | %s |\n' figure value
printf '|---|---|\n'
printf '| offered rate (OPTIONS→200, REGISTER→401, REGISTER→200 per call) | %d calls/s (%d SIP transactions/s) |\n' "$RATE" $((RATE * 3))
printf '| duration | %d s |\n' "$DURATION"
printf '| calls ok / failed | %d / %d (delivered %d calls/s) |\n' "$ok" "$failed" "$delivered"
printf '| RSS at start / after %ds warm-up / end | %d / %d / %d KiB |\n' "$WARMUP" "$first_kb" "$warm_kb" "$end_kb"
printf '| RSS slope after warm-up | %s KiB/min (growth %d KiB, limit %d) |\n' "$slope" "$growth" "$MAX_GROWTH_KB"
printf '| warnings/errors in the log | %d |\n' "$errors"
printf '| command | `DURATION=%d bench/options-flood.sh` |\n' "$DURATION"
printf '| machine | %s |\n' "$(machine)"
printf '| date | %s |\n' "$(date -u +%Y-%m-%dT%H:%MZ)"

status=0
if ((flood_rc != 0 && flood_rc != 1)); then echo "FAIL: sipp exited $flood_rc" >&2; status=1; fi
if ((failed * 1000 > ok + failed)); then echo "FAIL: $failed failed calls (>= 0.1 %)" >&2; status=1; fi
if ((growth > MAX_GROWTH_KB)); then echo "FAIL: RSS grew $growth KiB after warm-up" >&2; status=1; fi
if ((errors > 0)); then
  echo "FAIL: $errors warning/error lines in the log:" >&2
  tail -n +"$((log_lines_before + 1))" "$HOTLINE_LOG" | grep -E "ERROR|WARN|panicked" | sort | uniq -c | sort -rn | head -5 >&2
  status=1
fi
exit "$status"
