#!/usr/bin/env bash
# Call setup rate: the highest calls per second with < 0.1 % failures, on 127.0.0.1 only.
#
#   bench/call-setup.sh
#
# Three sides, stepped in turn (alternating, same SIPp caller binary and audio):
#   plain    hotline, trunk INVITE to the `echo` test extension: answer, G.711 A-law RTP
#            (tests/sipp/call_audio.xml, caller.wav streamed), BYE after HOLD_MS.
#   full     hotline, INVITE to 053112348 in hours (HOTLINE_FAKE_NOW, a Wednesday 10:00):
#            greeting + menu, digit 1 as RFC 4733, the ACD (Jinan's queue, AGENTS agents
#            3001.. registered and signed in with *11, one call each at a time), the
#            chosen agent (a SIPp UAS answering for all of them, -rtp_echo) rings and
#            answers, bridged and recorded RTP, caller hangs up after FULL_HOLD_MS
#            (tests/sipp/bench_call_full.xml). A call counts as failed on the caller
#            side, and the agent side must have answered as many calls. The rate it can
#            reach is bounded by AGENTS / (FULL_HOLD_MS + set-up): raise AGENTS to go on.
#   kamailio Kamailio as a transaction-stateful proxy (bench/kamailio/proxy.cfg) relaying
#            the plain scenario's calls to a SIPp UAS: signalling only, an upper bound.
# Each side starts at START_RATE calls/s, doubles while it passes, stops at the first
# failure (one bisection). A step offers STEP_SECS seconds of calls. Prints a table with
# the ratios; exits non-zero when a run itself failed. Bounded: STEP_SECS=10 keeps the
# whole run under 8 minutes (each side stops by MAX_RATE).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

STEP_SECS=${STEP_SECS:-10}
START_RATE=${START_RATE:-10}
MAX_RATE=${MAX_RATE:-640}
HOLD_MS=${HOLD_MS:-1000}
FULL_HOLD_MS=${FULL_HOLD_MS:-2000}
AGENTS=${AGENTS:-300}
# [sip] max_new_calls_per_sec of the server (0: no admission limit). With OVERLOAD=1 the
# full side is offered twice its best passing rate once more, and its goodput (completed
# calls/s) is reported beside the sustainable figure: run once with ADMIT=0 to find the
# sustainable rate, then with ADMIT set to it.
ADMIT=${ADMIT:-0}
OVERLOAD=${OVERLOAD:-0}
BUDGET_SECS=${BUDGET_SECS:-450}
# Which sides to step (e.g. SIDES=kamailio to rerun the anchor alone).
SIDES=${SIDES:-plain full kamailio}
need "$SIPP" sip-tester
need curl curl
need kamailio kamailio
[[ -r /usr/share/sip-tester/dtmf_2833_1.pcap ]] || die "no SIPp DTMF pcaps (apt-get install -y sip-tester)"
BEGIN=$(date +%s)

OURS_PORT=$(free_port)
OURS_HTTP=$(free_port)
KAM_PORT=$(free_port)
AGENT_PORT=$(free_port)
KAM_UAS_PORT=$(free_port)

# --- our server: the echo test extension, the IVR, the ACD with AGENTS agents.
dir=$WORK/hotline
mkdir -p "$dir"
cat >"$dir/hotline.toml" <<TOML
[server]
domain = "hotline.test"
calendar = "$BENCH_ROOT/config/calendar/cn-workdays.toml"
recordings_dir = "$WORK/recordings"

[sip]
digest_algorithms = ["MD5"]
auth_failures_before_ban = 1000
max_new_calls_per_sec = $ADMIT

[[trunks]]
name = "bench-trunk"
sources = ["127.0.0.1"]

[[cities]]
id = "jinan"
name = "济南"
area_codes = ["0531"]
numbers = ["053112348"]

[[units]]
id = "province"
name = "山东省司法厅"
kind = "province"

[media]
rtp_port_min = 40000
rtp_port_max = 49999
media_timeout_secs = 20
prompts_dir = "$BENCH_ROOT/config/prompts/zh"

[calls]

[ivr]
greeting = "beep"
menu = "beep"
please_hold = "beep"
voice_message_intro = "beep"
digit_timeout_ms = 1000
max_retries = 0

[[test_extensions]]
number = "echo"
kind = "echo"

[queues]
province_center = "jinan"

[[queues.queue]]
city = "jinan"
duty = "any_signed_in"
ring_timeout_secs = 15
wrap_up_secs = 0
announce_frequency_secs = 0
please_hold_secs = 0
max_wait_secs = 60
tier_rules = []
TOML
for ((a = 0; a < AGENTS; a++)); do
  id=$((3001 + a))
  printf '\n[[agents]]\nid = "%s"\nname = "坐席%s"\ncity = "jinan"\npassword = "pw-%s"\nroles = ["agent"]\n' "$id" "$id" "$id"
  printf '\n[[queues.agent]]\nid = "%s"\ncity = "jinan"\n' "$id"
done >>"$dir/hotline.toml"
[[ -x $HOTLINE_BIN ]] || die "no $HOTLINE_BIN (cargo build --release, or set HOTLINE_BIN)"
HOTLINE_LOG=$dir/hotline.log
HOTLINE_HTTP=$OURS_HTTP
(cd "$dir" && HOTLINE_FAKE_NOW=2026-03-04T10:00+08:00 RUST_LOG=${HOTLINE_RUST_LOG:-warn} \
  exec "$HOTLINE_BIN" serve --config "$dir/hotline.toml" --sip-listen "127.0.0.1:$OURS_PORT" \
  --http-listen "127.0.0.1:$OURS_HTTP" --data-dir "$dir/data" >"$HOTLINE_LOG" 2>&1) &
HOTLINE_PID=$!
BENCH_PIDS+=("$HOTLINE_PID")
for ((i = 0; i < 200; i++)); do
  curl -fs "http://127.0.0.1:$OURS_HTTP/healthz" >/dev/null 2>&1 && break
  kill -0 "$HOTLINE_PID" 2>/dev/null || { cat "$HOTLINE_LOG" >&2; die "hotline did not start"; }
  sleep 0.1
done

# --- the agents: each of 3001.. registers with its contact at AGENT_PORT and signs in
# with *11 (from a port of its own); then one SIPp UAS there answers for all of them.
mkdir -p "$WORK/agent"
if [[ " $SIDES " == *" full "* ]]; then
  echo "registering and signing in $AGENTS agents" >&2
  for ((a = 0; a < AGENTS; a++)); do
    id=$((3001 + a))
    (cd "$WORK/agent" && timeout 20 "$SIPP" -sf "$BENCH_ROOT/tests/sipp/bench_call_agent_register.xml" \
      -s "$id" -au "$id" -ap "pw-$id" -i 127.0.0.1 -p "$AGENT_PORT" -m 1 -nostdin \
      "127.0.0.1:$OURS_PORT" >"register-$id.out" 2>&1) || die "agent $id did not register ($WORK/agent)"
  done
  # Agent $1 dials *11 from a port of its own; its exit status lands in sign-in-$1.rc.
  sign_in_agent() {
    (cd "$WORK/agent" && timeout 20 "$SIPP" -sf "$BENCH_ROOT/tests/sipp/acd_feature.xml" \
      -s '*11' -au "$1" -ap "pw-$1" -auth_uri "*11@127.0.0.1:$OURS_PORT" -set user "$1" \
      -i 127.0.0.1 -p "$(free_port)" -mi 127.0.0.1 -mp "$(free_port)" -m 1 -nostdin \
      "127.0.0.1:$OURS_PORT" >"sign-in-$1.out" 2>&1; echo $? >"sign-in-$1.rc")
  }
  # 20 at a time; `wait` names them (a bare `wait` would wait for the server too).
  batch=()
  for ((a = 0; a < AGENTS; a++)); do
    id=$((3001 + a))
    sign_in_agent "$id" &
    batch+=("$!")
    if ((${#batch[@]} == 20)); then wait "${batch[@]}"; batch=(); fi
  done
  ((${#batch[@]} == 0)) || wait "${batch[@]}"
  # Any that did not confirm (a port taken meanwhile, a lost datagram) tries once more.
  for ((a = 0; a < AGENTS; a++)); do
    id=$((3001 + a))
    [[ "$(cat "$WORK/agent/sign-in-$id.rc" 2>/dev/null)" == 0 ]] && continue
    sign_in_agent "$id"
  done
  signed_in=$(cat "$WORK"/agent/sign-in-*.rc | grep -c '^0$' || true)
  echo "  $signed_in of $AGENTS agents signed in" >&2
  ((signed_in == AGENTS)) || die "only $signed_in of $AGENTS agents signed in ($WORK/agent)"
  echo "  set-up took $(($(date +%s) - BEGIN)) s; the stepping budget starts now" >&2
  BEGIN=$(date +%s)
fi
(cd "$WORK/agent" && exec "$SIPP" -sn uas -i 127.0.0.1 -p "$AGENT_PORT" -mi 127.0.0.1 \
  -mp "$(free_port)" -rtp_echo -nostdin -trace_stat -stf stat.csv -fd 1 >uas.out 2>&1) &
BENCH_PIDS+=("$!")
AGENT_UAS_PID=$!

# --- Kamailio as a stateful proxy in front of its own SIPp UAS.
mkdir -p "$WORK/kamailio" "$WORK/kam-uas"
sed "s/UAS_PORT/$KAM_UAS_PORT/" "$BENCH_ROOT/bench/kamailio/proxy.cfg" >"$WORK/kamailio/proxy.cfg"
(cd "$WORK/kam-uas" && exec "$SIPP" -sn uas -i 127.0.0.1 -p "$KAM_UAS_PORT" -mi 127.0.0.1 \
  -mp "$(free_port)" -nostdin >uas.out 2>&1) &
BENCH_PIDS+=("$!")
kamailio -f "$WORK/kamailio/proxy.cfg" -DD -E -l "udp:127.0.0.1:$KAM_PORT" \
  -Y "$WORK/kamailio" -P "$WORK/kamailio/kamailio.pid" >"$WORK/kamailio/kamailio.log" 2>&1 &
KAMAILIO_PID=$!
BENCH_PIDS+=("$KAMAILIO_PID")
sleep 1
kill -0 "$KAMAILIO_PID" 2>/dev/null || { cat "$WORK/kamailio/kamailio.log" >&2; die "kamailio did not start"; }

alive() {
  kill -0 "$HOTLINE_PID" 2>/dev/null || die "hotline died; log: $HOTLINE_LOG"
  kill -0 "$KAMAILIO_PID" 2>/dev/null || die "kamailio died"
  kill -0 "$AGENT_UAS_PID" 2>/dev/null || die "the agent UAS died ($WORK/agent/uas.out)"
}

# Successful calls the agent UAS has seen so far.
agent_calls() {
  awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "SuccessfulCall(C)") c = i; next }
    { v = $c } END { print v + 0 }' "$WORK/agent/stat.csv" 2>/dev/null || echo 0
}

# CPU time (user + system, ms) of a process and its children: per step, divided by the
# calls that completed, it is the CPU each call cost (the server's own, not SIPp's).
CLK_TCK=$(getconf CLK_TCK)
tree_pids() {
  local p=$1 c
  echo "$p"
  for c in $(pgrep -P "$p" 2>/dev/null); do tree_pids "$c"; done
}
cpu_ms() {
  local t=0 p
  for p in $(tree_pids "$1"); do
    t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $((t * 1000 / CLK_TCK))
}
declare -A pid_of=([plain]=$HOTLINE_PID [full]=$HOTLINE_PID [kamailio]=$KAMAILIO_PID)
declare -A cpu_per_call=([plain]=- [full]=- [kamailio]=-)
declare -A next best pass fail done target scenario hold
target[plain]=127.0.0.1:$OURS_PORT target[full]=127.0.0.1:$OURS_PORT target[kamailio]=127.0.0.1:$KAM_PORT
scenario[plain]=$BENCH_ROOT/tests/sipp/call_audio.xml scenario[kamailio]=$BENCH_ROOT/tests/sipp/call_audio.xml
scenario[full]=$BENCH_ROOT/tests/sipp/bench_call_full.xml
hold[plain]=$HOLD_MS hold[kamailio]=$HOLD_MS hold[full]=$FULL_HOLD_MS
for side in plain full kamailio; do
  next[$side]=$START_RATE best[$side]=0 pass[$side]=0 fail[$side]=0 done[$side]=1
done
for side in $SIDES; do done[$side]=0; done

step() {
  local side=$1 rate=${next[$1]} calls service=echo before=0 answered
  calls=$((rate * STEP_SECS))
  [[ $side == full ]] && service=053112348
  [[ $side != kamailio ]] && drained
  [[ $side == full ]] && before=$(agent_calls)
  local cpu_before
  cpu_before=$(cpu_ms "${pid_of[$side]}")
  mkdir -p "$WORK/sipp/$side-$rate"
  cp "$BENCH_ROOT/tests/fixtures/audio/caller-speech-alaw.wav" "$WORK/sipp/$side-$rate/caller.wav"
  sipp_step "$side-$rate" "${scenario[$side]}" "${target[$side]}" "$rate" "$calls" \
    -s "$service" -d "${hold[$side]}" -mi 127.0.0.1 -mp "$(free_port)" \
    -l $((rate * (hold[$side] / 1000 + 6) + 50))
  # Read at once: the full side's wait for the agent UAS's count below is not the calls'.
  local cpu_after
  cpu_after=$(cpu_ms "${pid_of[$side]}")
  alive
  ((STEP_RC == 0 || STEP_RC == 1)) || die "sipp exited $STEP_RC ($WORK/sipp/$side-$rate)"
  # lib.sh's rate spans first call to last answer, which includes one call's length:
  # take it out (the full scenario also pauses 1.5 s for the menu and digit).
  local call_ms=${hold[$side]}
  [[ $side == full ]] && call_ms=$((call_ms + 1500))
  STEP_RATE=$(awk -F';' -v ok="$STEP_OK" -v len="$call_ms" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { last = $0 }
    END {
      split(last, f, ";"); split(f[col["StartTime"]], s, "\t"); split(f[col["CurrentTime"]], c, "\t")
      secs = c[3] - s[3] - len / 1000; if (secs < 1) secs = 1
      printf "%.0f\n", ok / secs
    }' "$WORK/sipp/$side-$rate/stat.csv" 2>/dev/null || echo 0)
  if [[ $side == full ]]; then
    # SIPp's built-in UAS counts a call 4 s after the BYE (it waits for retransmissions).
    sleep 5
    answered=$(($(agent_calls) - before))
    # A caller that hung up before the agent answered is a failed full-path call.
    if ((answered < STEP_OK)); then
      STEP_FAILED=$((STEP_FAILED + STEP_OK - answered))
      STEP_OK=$answered
    fi
  fi
  local cpu_call
  cpu_call=$(awk -v ms="$((cpu_after - cpu_before))" -v ok="$STEP_OK" \
    'BEGIN { if (ok > 0) printf "%.2f", ms / ok; else print "-" }')
  printf '  %-9s offered %5d/s -> %6d ok, %5d failed, delivered %5d/s, server CPU %s ms/call\n' \
    "$side" "$rate" "$STEP_OK" "$STEP_FAILED" "$STEP_RATE" "$cpu_call" >&2
  if step_passed "$rate" "$calls"; then
    if ((STEP_RATE > best[$side])); then
      best[$side]=$STEP_RATE
      cpu_per_call[$side]=$cpu_call
    fi
    pass[$side]=$rate
  else
    fail[$side]=$rate
  fi
  if ((fail[$side] == 0)); then
    next[$side]=$((rate * 2))
    ((next[$side] <= MAX_RATE)) || done[$side]=1
  elif ((pass[$side] == 0)); then
    done[$side]=1
  else
    local mid=$(((pass[$side] + fail[$side]) / 2))
    if ((mid > pass[$side] && mid < fail[$side] && rate == fail[$side] && rate > 2 * pass[$side] - 1)); then
      next[$side]=$mid
    else
      done[$side]=1
    fi
  fi
  if (($(date +%s) - BEGIN > BUDGET_SECS)); then
    echo "  time budget (${BUDGET_SECS}s) spent: stopping $side" >&2
    done[plain]=1 done[full]=1 done[kamailio]=1
  fi
}

echo "call-setup: hotline :$OURS_PORT (agent UAS :$AGENT_PORT) vs kamailio :$KAM_PORT -> UAS :$KAM_UAS_PORT; ${STEP_SECS}s steps from $START_RATE/s" >&2
while ((done[plain] == 0 || done[full] == 0 || done[kamailio] == 0)); do
  ((done[plain] == 0)) && step plain
  ((done[full] == 0)) && step full
  ((done[kamailio] == 0)) && step kamailio
done
overload_row=""
if ((OVERLOAD == 1 && pass[full] > 0)); then
  # Twice the sustainable rate: what still completes, per second.
  offered=$((2 * pass[full]))
  next[full]=$offered
  step full
  goodput=$(awk -v ok="$STEP_OK" -v rate="$offered" -v secs="$STEP_SECS" 'BEGIN { printf "%.0f", ok / secs }')
  overload_row=$(printf '| Overload, full path: offered **%s calls/s** (2× the best passing %s/s), `[sip] max_new_calls_per_sec = %s`: **goodput %s completed calls/s**, %s refused or failed | sustainable %s calls/s | %s | `ADMIT=%s OVERLOAD=1 bench/call-setup.sh` | %s | %s |' \
    "$offered" "${pass[full]}" "$ADMIT" "$goodput" "$STEP_FAILED" "${best[full]}" "$(awk -v a="$goodput" -v b="${best[full]}" 'BEGIN { printf "%.2f", a / b }')" "$ADMIT" "$(machine)" "$(date -u +%Y-%m-%d)")
fi
plain=${best[plain]} full=${best[full]} kam=${best[kamailio]}
[[ " $SIDES " != *" plain "* ]] || ((plain > 0)) || die "plain path passed no rate (lowest offered $START_RATE/s)"
[[ " $SIDES " != *" kamailio "* ]] || ((kam > 0)) || die "kamailio passed no rate (lowest offered $START_RATE/s)"
((kam > 0)) || kam=0.0001
capped=""
((fail[kamailio] == 0)) && capped=" (did not fail up to MAX_RATE=$MAX_RATE: a lower bound)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
kv=$(kamailio -v 2>/dev/null | awk '/^version/ {print $3; exit}')
errors=$(grep -c -E "ERROR|WARN|panicked" "$HOTLINE_LOG" || true)
peak_rss_mb=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$HOTLINE_PID/status" 2>/dev/null || echo -)

echo
printf '| %s | %s | %s | %s | %s | %s |\n' figure anchor ratio command machine date
printf '|---|---|---|---|---|---|\n'
[[ " $SIDES " == *" plain "* ]] &&
  printf '| Call setup, plain B2BUA path (trunk INVITE → echo extension, G.711 RTP, BYE after %d ms), %d s steps, <0.1%% failures: **%s calls/s**, server CPU %s ms/call | Kamailio %s stateful proxy (tm, record_route) → SIPp UAS, same SIPp calls, signalling only: %s calls/s%s, %s ms/call | %s | `bench/call-setup.sh` | %s | %s |\n' \
  "$HOLD_MS" "$STEP_SECS" "$plain" "${cpu_per_call[plain]}" "$kv" "$kam" "$capped" "${cpu_per_call[kamailio]}" "$(ratio "$plain" "$kam")" "$(machine)" "$(date -u +%Y-%m-%d)"
[[ " $SIDES " == *" full "* ]] &&
  printf '| Call setup, full path through the ACD (053112348 in hours → menu digit 1 RFC 4733 → Jinan queue, %d signed-in agents, one call each → SIPp agent answers → bridged, recorded RTP → caller BYE after %d ms), <0.1%% failures: **%s calls/s**, server CPU %s ms/call, peak RSS %s MB | same Kamailio proxy: %s calls/s%s, %s ms/call | %s | `bench/call-setup.sh` | %s | %s |\n' \
  "$AGENTS" "$FULL_HOLD_MS" "$full" "${cpu_per_call[full]}" "$peak_rss_mb" "$kam" "$capped" "${cpu_per_call[kamailio]}" "$(ratio "$full" "$kam")" "$(machine)" "$(date -u +%Y-%m-%d)"
[[ -n $overload_row ]] && echo "$overload_row"
echo
echo "hotline log: $errors warning/error lines; run took $(($(date +%s) - BEGIN)) s"
[[ " $SIDES " != *" full "* ]] || ((full > 0)) || die "full path passed no rate (lowest offered $START_RATE/s): see $WORK/sipp/full-$START_RATE (KEEP_WORK=1)"
