# Shared helpers for the bench/ scripts (sourced, not run). Everything listens on
# 127.0.0.1 only; every process started here is stopped by cleanup().
# shellcheck shell=bash

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOTLINE_BIN=${HOTLINE_BIN:-$BENCH_ROOT/target/release/hotline}
SIPP=${SIPP:-sipp}
WORK=$(mktemp -d /tmp/hotline-bench.XXXXXX)
BENCH_PIDS=()

cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ -z ${KEEP_WORK:-} ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

die() {
  echo "bench: $*" >&2
  exit 2
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (apt-get install -y $2)"
}

machine() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  echo "$(nproc) cores, ${cpu:-unknown CPU}, $(uname -r)"
}

# A free TCP+UDP port on 127.0.0.1 (the kernel picks, we check both are free).
free_port() {
  python3 - <<'PY'
import socket
for _ in range(50):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
PY
}

# Agents 3001..30NN with password pw-30NN (the load uses 3001; the rest size the config).
AGENTS=${AGENTS:-20}

write_hotline_config() {
  local file=$1 i
  cat >"$file" <<TOML
[server]
domain = "hotline.test"
calendar = "$BENCH_ROOT/config/calendar/cn-workdays.toml"
recordings_dir = "$WORK/recordings"

[sip]
# MD5 with qop=auth: the same digest work the Kamailio anchor does.
digest_algorithms = ["MD5"]
auth_failures_before_ban = 1000

[[trunks]]
name = "bench-trunk"
sources = ["127.0.0.9"]

[[cities]]
id = "jinan"
name = "济南"
area_codes = ["0531"]
numbers = ["053112348"]

[[units]]
id = "province"
name = "山东省司法厅"
kind = "province"
TOML
  for ((i = 1; i <= AGENTS; i++)); do
    cat >>"$file" <<TOML

[[agents]]
id = "$((3000 + i))"
name = "坐席$((3000 + i))"
city = "jinan"
password = "pw-$((3000 + i))"
roles = ["agent"]
TOML
  done
}

# start_hotline PORT HTTP_PORT -> sets HOTLINE_PID, HOTLINE_LOG
start_hotline() {
  local port=$1 http=$2 dir=$WORK/hotline
  [[ -x $HOTLINE_BIN ]] || die "no $HOTLINE_BIN (cargo build --release, or set HOTLINE_BIN)"
  mkdir -p "$dir"
  write_hotline_config "$dir/hotline.toml"
  HOTLINE_LOG=$dir/hotline.log
  HOTLINE_HTTP=$http
  (cd "$dir" && RUST_LOG=${HOTLINE_RUST_LOG:-info} exec "$HOTLINE_BIN" serve \
    --config "$dir/hotline.toml" --sip-listen "127.0.0.1:$port" \
    --http-listen "127.0.0.1:$http" --data-dir "$dir/data" >"$HOTLINE_LOG" 2>&1) &
  HOTLINE_PID=$!
  BENCH_PIDS+=("$HOTLINE_PID")
  local i
  for ((i = 0; i < 200; i++)); do
    grep -q "hotline ready" "$HOTLINE_LOG" 2>/dev/null && return 0
    kill -0 "$HOTLINE_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$HOTLINE_LOG" >&2
  die "hotline did not start"
}

# Wait (at most 40 s) until hotline's transaction table has drained, so a load step does
# not start with the previous step's transactions still held (Timer J keeps a UDP
# non-INVITE transaction 32 s).
drained() {
  local i n
  for ((i = 0; i < 80; i++)); do
    n=$(curl -s "http://127.0.0.1:$HOTLINE_HTTP/metrics" | awk '/^hotline_sip_transactions / {print $2}')
    [[ ${n:-0} -lt 100 ]] && return 0
    sleep 0.5
  done
}

# start_kamailio PORT -> sets KAMAILIO_PID
start_kamailio() {
  local port=$1 dir=$WORK/kamailio
  need kamailio kamailio
  mkdir -p "$dir"
  kamailio -f "$BENCH_ROOT/bench/kamailio/kamailio.cfg" -DD -E \
    -l "udp:127.0.0.1:$port" -l "tcp:127.0.0.1:$port" \
    -Y "$dir" -P "$dir/kamailio.pid" >"$dir/kamailio.log" 2>&1 &
  KAMAILIO_PID=$!
  BENCH_PIDS+=("$KAMAILIO_PID")
  local i
  for ((i = 0; i < 100; i++)); do
    if sipsak -s "sip:ping@127.0.0.1:$port" >/dev/null 2>&1; then return 0; fi
    kill -0 "$KAMAILIO_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$dir/kamailio.log" >&2
  die "kamailio did not start"
}

# sipp_step NAME SCENARIO TARGET RATE CALLS [extra sipp args…]
# Runs one bounded SIPp load and sets STEP_OK STEP_FAILED STEP_RATE (successful calls per
# second of wall time, first call to last answer) and STEP_RC (SIPp's exit status).
sipp_step() {
  local name=$1 scenario=$2 target=$3 rate=$4 calls=$5
  shift 5
  local dir=$WORK/sipp/$name
  mkdir -p "$dir"
  local limit=$((calls / rate + 30))
  set +e
  (cd "$dir" && timeout "$limit" "$SIPP" -sf "$scenario" -s 3001 -au 3001 -ap pw-3001 \
    -i 127.0.0.1 -p "$(free_port)" -m "$calls" -r "$rate" -rp 1000 -l $((rate * 4 + 100)) \
    -recv_timeout 4000 -timeout $((limit - 5)) -nostdin -trace_stat -stf stat.csv \
    "$@" "$target" >sipp.out 2>&1)
  STEP_RC=$?
  set -e
  STEP_OK=0 STEP_FAILED=$calls STEP_RATE=0
  [[ -s $dir/stat.csv ]] || return 0
  read -r STEP_OK STEP_FAILED STEP_RATE < <(awk -F';' '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { last = $0 }
    END {
      n = split(last, f, ";")
      split(f[col["StartTime"]], s, "\t"); split(f[col["CurrentTime"]], c, "\t")
      ok = f[col["SuccessfulCall(C)"]]; failed = f[col["FailedCall(C)"]]
      secs = c[3] - s[3]; if (secs <= 0) secs = 1
      printf "%d %d %.0f\n", ok, failed, ok / secs
    }' "$dir/stat.csv")
  # Calls SIPp never finished (killed by the time limit) count as failed.
  local unfinished=$((calls - STEP_OK - STEP_FAILED))
  if ((unfinished > 0)); then STEP_FAILED=$((STEP_FAILED + unfinished)); fi
}

# Did a step pass: < 0.1 % failures and the server kept up (>= 90 % of the offered rate)?
step_passed() {
  local rate=$1 calls=$2
  ((STEP_FAILED * 1000 < calls)) && ((STEP_RATE * 10 >= rate * 9))
}

median() {
  sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
