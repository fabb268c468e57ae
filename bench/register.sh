#!/usr/bin/env bash
# REGISTER with digest auth (401 -> 200) per second: hotline vs Kamailio's registrar with
# auth, the same SIPp scenario (tests/sipp/bench_register.xml, UDP), alternating runs:
# ours at rate R, kamailio at rate R, ours at the next rate, kamailio, …
# Each side ramps the offered rate (doubling, then bisecting once between the last pass
# and the first failure) and keeps the highest rate with < 0.1 % failed registrations at
# which it kept up (>= 90 % of the offered rate delivered).
#
# Steps last STEP_SECS (33 s): longer than Timer J (64*T1 = 32 s), during which a UDP
# server transaction is kept to absorb retransmissions, so a step shows the sustained
# rate and not a burst that fits in the transaction table.
#
#   bench/register.sh                 # ~6 min
#   STEP_SECS=4 START_RATE=500 MAX_RATE=16000 bench/register.sh   # bursts, ~3 min
#
# Env: HOTLINE_BIN (default target/release/hotline), STEP_SECS (33), START_RATE (300),
# MAX_RATE (8000), AGENTS (20).
# Exit status: 0 when every run completed (whatever the figures), non-zero when a run
# itself failed (a server died, SIPp could not run, the lowest rate already failed).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

STEP_SECS=${STEP_SECS:-33}
START_RATE=${START_RATE:-300}
MAX_RATE=${MAX_RATE:-8000}
need "$SIPP" sip-tester
need sipsak sipsak
need curl curl
SCENARIO=$BENCH_ROOT/tests/sipp/bench_register.xml

OURS_PORT=$(free_port)
OURS_HTTP=$(free_port)
KAM_PORT=$(free_port)
start_hotline "$OURS_PORT" "$OURS_HTTP"
start_kamailio "$KAM_PORT"

alive() {
  kill -0 "$HOTLINE_PID" 2>/dev/null || die "hotline died; log: $HOTLINE_LOG"
  kill -0 "$KAMAILIO_PID" 2>/dev/null || die "kamailio died"
}

# Ramp state per side: next rate, best delivered rate, last passing and first failing
# offered rate, done flag.
declare -A next best pass fail done port
port[hotline]=$OURS_PORT
port[kamailio]=$KAM_PORT
for side in hotline kamailio; do
  next[$side]=$START_RATE best[$side]=0 pass[$side]=0 fail[$side]=0 done[$side]=0
done

step() {
  local side=$1 rate=${next[$1]} calls
  calls=$((rate * STEP_SECS))
  [[ $side == hotline ]] && drained
  sipp_step "$side-$rate" "$SCENARIO" "127.0.0.1:${port[$side]}" "$rate" "$calls"
  alive
  ((STEP_RC == 0 || STEP_RC == 1)) || die "sipp exited $STEP_RC ($WORK/sipp/$side-$rate)"
  printf '  %-9s offered %6d/s -> %7d ok, %6d failed, delivered %6d/s\n' \
    "$side" "$rate" "$STEP_OK" "$STEP_FAILED" "$STEP_RATE" >&2
  if step_passed "$rate" "$calls"; then
    ((STEP_RATE > best[$side])) && best[$side]=$STEP_RATE
    pass[$side]=$rate
  else
    fail[$side]=$rate
  fi
  if ((fail[$side] == 0)); then
    next[$side]=$((rate * 2))
    ((next[$side] <= MAX_RATE)) || done[$side]=1
  elif ((pass[$side] == 0)); then
    done[$side]=1 # the lowest rate failed
  else
    local mid=$(((pass[$side] + fail[$side]) / 2))
    # One bisection between the last pass and the first failure.
    if ((mid > pass[$side] && mid < fail[$side] && rate == fail[$side] && rate > 2 * pass[$side] - 1)); then
      next[$side]=$mid
    else
      done[$side]=1
    fi
  fi
}

echo "register: hotline on :$OURS_PORT vs kamailio on :$KAM_PORT, ${STEP_SECS}s steps from $START_RATE/s" >&2
while ((done[hotline] == 0 || done[kamailio] == 0)); do
  ((done[hotline] == 0)) && step hotline
  ((done[kamailio] == 0)) && step kamailio
done
ours=${best[hotline]} kam=${best[kamailio]}
((ours > 0)) || die "hotline passed no rate (lowest offered $START_RATE/s)"
((kam > 0)) || die "kamailio passed no rate (lowest offered $START_RATE/s)"
errors=$(grep -c -E "ERROR|WARN|panicked" "$HOTLINE_LOG" || true)
ratio=$(awk -v a="$ours" -v b="$kam" 'BEGIN { printf "%.2f", a / b }')
capped=""
((done[kamailio] == 1 && fail[kamailio] == 0)) && capped=" (did not fail up to MAX_RATE=$MAX_RATE: a lower bound)"

echo
printf '| %s | %s | %s | %s | %s | %s |\n' figure anchor ratio command machine date
printf '|---|---|---|---|---|---|\n'
printf '| REGISTER with digest (MD5, qop=auth, 401→200) over UDP, sustained %d s, <0.1%% failures: **%s/s** | Kamailio %s registrar (sl, pv_www_authenticate, usrloc in memory): %s/s%s | %s | `bench/register.sh` | %s | %s |\n' \
  "$STEP_SECS" "$ours" "$(kamailio -v 2>/dev/null | awk '/^version/ {print $3; exit}')" "$kam" "$capped" \
  "$ratio" "$(machine)" "$(date -u +%Y-%m-%d)"
echo
echo "hotline log: $errors warning/error lines (startup warnings included)"
