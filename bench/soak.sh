#!/usr/bin/env bash
# Soak: calls at 70 % of the measured call-setup capacity for DURATION seconds (default
# 1800 = 30 min), on 127.0.0.1 only; not part of `cargo test`.
#
#   CAPACITY=<plain-path calls/s from bench/call-setup.sh> bench/soak.sh
#
# Traffic: the plain B2BUA path of bench/call-setup.sh (trunk INVITE to the `echo` test
# extension, G.711 A-law speech both ways, BYE after HOLD_MS = 1000 ms), at
# RATE = CAPACITY × 70 %. Every SAMPLE_SECS (10) the server's RSS (VmRSS, and its split
# into RssAnon / RssFile / RssShmem), open files (/proc/PID/fd), threads
# (/proc/PID/status) and SIP transactions (/metrics) are sampled into samples.csv. With
# SMAPS_DIR set, /proc/PID/smaps is copied there at each sample too, so that a rise can
# be traced to one mapping (that is how the 2026-11-28 step was found: one 45 MiB
# anonymous mapping replaced by a 91 MiB one, a hash table's buckets doubling). The report: first/last values and the least-squares slope of each
# over the second half of the run (the first half is warm-up: tables and allocator arenas
# filling), per minute; failed calls. Exits non-zero when calls failed (> 0.1 %), the
# server died, or RSS grew faster than MAX_RSS_SLOPE_KB (default 64 KiB/min) or open
# files at all over the second half.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[[ -n ${CAPACITY:-} ]] || die "set CAPACITY (plain-path calls/s measured by bench/call-setup.sh)"
DURATION=${DURATION:-1800}
SAMPLE_SECS=${SAMPLE_SECS:-10}
HOLD_MS=${HOLD_MS:-1000}
MAX_RSS_SLOPE_KB=${MAX_RSS_SLOPE_KB:-64}
RATE=$(((CAPACITY * 70 + 99) / 100))
((RATE >= 1)) || RATE=1
need "$SIPP" sip-tester
need curl curl

PORT=$(free_port)
HTTP=$(free_port)
dir=$WORK/hotline
mkdir -p "$dir"
cat >"$dir/hotline.toml" <<TOML
[server]
domain = "hotline.test"
calendar = "$BENCH_ROOT/config/calendar/cn-workdays.toml"
recordings_dir = "$WORK/recordings"

[[trunks]]
name = "bench-trunk"
sources = ["127.0.0.1"]

[[units]]
id = "province"
name = "山东省司法厅"
kind = "province"

[media]
rtp_port_min = 40000
rtp_port_max = 49999
media_timeout_secs = 20
prompts_dir = "$BENCH_ROOT/config/prompts/zh"

[[test_extensions]]
number = "echo"
kind = "echo"
TOML
[[ -x $HOTLINE_BIN ]] || die "no $HOTLINE_BIN (cargo build --release, or set HOTLINE_BIN)"
HOTLINE_LOG=$dir/hotline.log
(cd "$dir" && RUST_LOG=warn exec "$HOTLINE_BIN" serve --config "$dir/hotline.toml" \
  --sip-listen "127.0.0.1:$PORT" --http-listen "127.0.0.1:$HTTP" --data-dir "$dir/data" \
  >"$HOTLINE_LOG" 2>&1) &
HOTLINE_PID=$!
BENCH_PIDS+=("$HOTLINE_PID")
for ((i = 0; i < 200; i++)); do
  curl -fs "http://127.0.0.1:$HTTP/healthz" >/dev/null 2>&1 && break
  kill -0 "$HOTLINE_PID" 2>/dev/null || { cat "$HOTLINE_LOG" >&2; die "hotline did not start"; }
  sleep 0.1
done

CALLS=$((RATE * DURATION))
mkdir -p "$WORK/sipp"
cp "$BENCH_ROOT/tests/fixtures/audio/caller-speech-alaw.wav" "$WORK/sipp/caller.wav"
(cd "$WORK/sipp" && exec "$SIPP" -sf "$BENCH_ROOT/tests/sipp/call_audio.xml" -s echo \
  -i 127.0.0.1 -p "$(free_port)" -mi 127.0.0.1 -mp "$(free_port)" -r "$RATE" -m "$CALLS" \
  -l $((RATE * 8 + 50)) -d "$HOLD_MS" -recv_timeout 8000 -nostdin -trace_stat \
  -stf stat.csv -fd 10 "127.0.0.1:$PORT" >sipp.out 2>&1) &
SIPP_PID=$!
BENCH_PIDS+=("$SIPP_PID")

echo "soak: ${DURATION}s at $RATE calls/s (70 % of $CAPACITY), sampling every ${SAMPLE_SECS}s" >&2
SAMPLES=$WORK/samples.csv
echo "t_s,rss_kb,rss_anon_kb,rss_file_kb,rss_shmem_kb,open_files,threads,transactions" >"$SAMPLES"
BEGIN=$(date +%s)
while :; do
  now=$(($(date +%s) - BEGIN))
  kill -0 "$HOTLINE_PID" 2>/dev/null || die "hotline died at ${now}s; log: $HOTLINE_LOG"
  # Only samples taken under load: once SIPp is done the call sockets close.
  ((now < DURATION)) && kill -0 "$SIPP_PID" 2>/dev/null || break
  # RSS split: anonymous (heap, arenas, stacks) vs file-backed (binary, SQLite files)
  # vs shared memory (SQLite's WAL index), so a rise can be placed.
  read -r rss anon file shmem threads < <(awk '/^VmRSS/ {r=$2} /^RssAnon/ {a=$2}
    /^RssFile/ {f=$2} /^RssShmem/ {s=$2} /^Threads/ {t=$2} END {print r, a, f, s, t}' \
    "/proc/$HOTLINE_PID/status")
  if [[ -n ${SMAPS_DIR:-} ]]; then
    mkdir -p "$SMAPS_DIR"
    cp "/proc/$HOTLINE_PID/smaps" "$SMAPS_DIR/smaps.$now" 2>/dev/null || true
  fi
  fds=$(find "/proc/$HOTLINE_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  tx=$(curl -s "http://127.0.0.1:$HTTP/metrics" | awk '/^hotline_sip_transactions / {print $2}')
  echo "$now,$rss,$anon,$file,$shmem,$fds,$threads,${tx:-0}" >>"$SAMPLES"
  sleep "$SAMPLE_SECS"
done
# Let SIPp finish the calls in flight.
for ((i = 0; i < 30; i++)); do kill -0 "$SIPP_PID" 2>/dev/null || break; sleep 1; done
kill "$SIPP_PID" 2>/dev/null || true
sleep 1

read -r OK FAILED < <(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
  { last = $0 } END { split(last, f, ";"); print f[col["SuccessfulCall(C)"]] + 0, f[col["FailedCall(C)"]] + 0 }' \
  "$WORK/sipp/stat.csv" 2>/dev/null || echo "0 0")

python3 - "$SAMPLES" "$MAX_RSS_SLOPE_KB" "$OK" "$FAILED" "$RATE" "$CAPACITY" "$(machine)" <<'PY'
import csv, sys
path, max_rss, ok, failed, rate, capacity, machine = sys.argv[1:]
rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(path))]
half = [r for r in rows if r["t_s"] >= rows[-1]["t_s"] / 2] or rows

def slope(key):
    xs = [r["t_s"] / 60 for r in half]
    ys = [r[key] for r in half]
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0

print(f"soak {rows[-1]['t_s']:.0f} s at {rate} calls/s (70 % of {capacity}), {machine}")
print(f"calls: {ok} ok, {failed} failed")
print("| sample | first | last | slope over the 2nd half, per minute |")
print("|---|---|---|---|")
for key, unit in [("rss_kb", "KiB"), ("rss_anon_kb", "KiB"), ("rss_file_kb", "KiB"), ("rss_shmem_kb", "KiB"), ("open_files", "fds"), ("threads", "threads"), ("transactions", "tx")]:
    print(f"| {key} | {rows[0][key]:.0f} | {rows[-1][key]:.0f} | {slope(key):+.2f} {unit}/min |")
bad = []
total = int(ok) + int(failed)
if total == 0 or int(failed) * 1000 > total:
    bad.append(f"failed calls {failed}/{total}")
if slope("rss_kb") > float(max_rss):
    bad.append(f"RSS slope {slope('rss_kb'):.1f} KiB/min > {max_rss}")
if slope("open_files") > 0.5:
    bad.append(f"open files growing {slope('open_files'):.2f}/min")
if bad:
    print("FAILED: " + "; ".join(bad))
    sys.exit(1)
PY
echo "samples: $SAMPLES (KEEP_WORK=1 keeps them)"
