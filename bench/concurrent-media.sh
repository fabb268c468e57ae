#!/usr/bin/env bash
# Concurrent media calls against the real server, on 127.0.0.1 only.
#
#   bench/concurrent-media.sh [CALLS] [HOLD_SECS] [EXTENSION]
#
# CALLS (default 50, at most 300) SIPp calls to the test extension EXTENSION (echo or
# record, default record) are placed at 20 calls/s; each streams real G.711 A-law speech
# (tests/fixtures/audio, looped with rtp_stream) for HOLD_SECS (default 60, at most 120)
# and hangs up. While all calls are up, the script samples the server process: CPU% (utime
# + stime over the hold window, /proc) and RSS; it prints the concurrent calls the server
# reported answered, failed calls, CPU%, RSS growth per call, and the packets SIPp sent.
#
# HOTLINE_BIN selects the binary (default target/release/hotline, built if missing).
#
# Measured 2026-11-28 on the 2-core build machine (release build, SIPp on the same host):
#   bench/concurrent-media.sh 300 60 record → 300 concurrent recorded calls, 0 failed,
#     server 10.5 % of one core, RSS 14.4 → 31.3 MB (57 kB per call), 300 WAVs of 60.0 s
#   bench/concurrent-media.sh 300 60 echo   → 300 concurrent echo calls, 0 failed,
#     server 14.3 % of one core, 32 kB per call
#   bench/concurrent-media.sh 200 60 record → 9.1 %, 56 kB per call
# 300 is this script's cap (SIPp's own RTP streaming is the heavier side here), not the
# server's limit.
# Anchor (ANCHOR=rtpengine, the default; ANCHOR=none to skip): after our run, rtpengine
# (userspace, --table=-1, ng control on 127.0.0.1) relays the same number of G.711 A-law
# streams (the same speech, 20 ms packets) for the same hold, set up by offer/answer over
# the ng protocol (bench/rtpengine-streams.py, bencode over UDP); its CPU% and RSS per
# stream are sampled the same way and printed next to ours with the ratio. The driver
# sends and receives in one process, so it also reports packet loss and the relay's
# one-way delay p50/p99 (send time kept per RTP sequence number); a --direct run without
# the relay (same driver, 15 s) gives the measurement's own noise floor.
# Not part of `cargo test`: it takes 2 × HOLD_SECS + ~35 s.
set -euo pipefail

CALLS=${1:-50}
HOLD=${2:-60}
EXT=${3:-record}
(( CALLS >= 1 && CALLS <= 300 )) || { echo "CALLS must be 1..300" >&2; exit 2; }
(( HOLD >= 5 && HOLD <= 120 )) || { echo "HOLD_SECS must be 5..120" >&2; exit 2; }
[[ $EXT == echo || $EXT == record ]] || { echo "EXTENSION must be echo or record" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${HOTLINE_BIN:-$ROOT/target/release/hotline}
if [[ ! -x $BIN ]]; then
  (cd "$ROOT" && cargo build --release --bin hotline)
fi
command -v sipp >/dev/null || { echo "sipp is not installed" >&2; exit 2; }

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SIP_PORT=$(free_port)
HTTP_PORT=$(free_port)

cat > "$WORK/hotline.toml" <<EOF
[server]
domain = "bench.test"
calendar = "$ROOT/config/calendar/cn-workdays.toml"

[[trunks]]
name = "bench"
sources = ["127.0.0.1"]

[media]
rtp_port_min = 40000
rtp_port_max = 41999
media_timeout_secs = 20
prompts_dir = "$ROOT/config/prompts/zh"
max_test_call_secs = $((HOLD + 60))

[[test_extensions]]
number = "echo"
kind = "echo"

[[test_extensions]]
number = "record"
kind = "record"
EOF

(cd "$WORK" && RUST_LOG=warn "$BIN" serve --config "$WORK/hotline.toml" \
  --sip-listen "127.0.0.1:$SIP_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
  --data-dir "$WORK/data" > "$WORK/server.log" 2>&1) &
sleep 0.2
SERVER_PID=$(pgrep -f -n "hotline serve --config $WORK/hotline.toml" || true)
for _ in $(seq 50); do
  curl -fs "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
[[ -n $SERVER_PID ]] || { echo "server did not start"; cat "$WORK/server.log"; exit 1; }

cp "$ROOT/tests/fixtures/audio/caller-speech-alaw.wav" "$WORK/caller.wav"
# The test scenario streams once; the bench loops the speech for the whole hold.
sed 's/rtp_stream="caller.wav,1,8"/rtp_stream="caller.wav,-1,8"/' \
  "$ROOT/tests/sipp/call_audio.xml" > "$WORK/bench_call.xml"

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
HZ=$(getconf CLK_TCK)

RSS0=$(rss_kb)
(cd "$WORK" && timeout $((HOLD + 60)) sipp -sf bench_call.xml -s "$EXT" \
  -i 127.0.0.1 -mi 127.0.0.1 -mp 50000 -p "$(free_port)" \
  -r 20 -m "$CALLS" -l "$CALLS" -d $((HOLD * 1000)) -nostdin -bg \
  -trace_stat -fd 5 -stf stats.csv "127.0.0.1:$SIP_PORT" > sipp.out 2>&1) || true
SIPP_PID=$(pgrep -n -x sipp || true)

# Wait for the calls to ramp up, then measure over the steady part of the hold.
RAMP=$(( CALLS / 20 + 3 ))
sleep "$RAMP"
T0=$(date +%s.%N); C0=$(cpu_ticks)
WINDOW=$(( HOLD - RAMP - 2 ))
(( WINDOW > 2 )) || WINDOW=2
sleep "$WINDOW"
T1=$(date +%s.%N); C1=$(cpu_ticks); RSS1=$(rss_kb)
# Concurrent calls = bound RTP sockets of the server's range / 2 (RTP + RTCP per call).
ACTIVE=$(( $(ss -uanp 'sport >= :40000 and sport <= :41999' | grep -c "pid=$SERVER_PID," || true) / 2 ))

# Let the calls end.
for _ in $(seq $((HOLD + 60))); do
  [[ -n $SIPP_PID ]] && kill -0 "$SIPP_PID" 2>/dev/null || break
  sleep 1
done

CPU=$(python3 -c "print(round(100*($C1-$C0)/$HZ/($T1-$T0),1))")
PER_CALL=$(python3 -c "print(round(($RSS1-$RSS0)/max(1,$CALLS)))")
stat() {
  python3 - "$WORK/stats.csv" "$1" <<'PY' 2>/dev/null || echo "?"
import sys
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
print(rows[-1][rows[0].index(sys.argv[2])])
PY
}
SUCCESS=$(stat "SuccessfulCall(C)")
FAILED=$(stat "FailedCall(C)")
RECORDINGS=$(find "$WORK/recordings" -name '*.wav' 2>/dev/null | wc -l)
# Seconds of audio in the recordings (min / max): checks the RTP really flowed all along.
DURATIONS=$(find "$WORK/recordings" -name '*.wav' -exec soxi -D {} \; 2>/dev/null | sort -n | sed -n '1p;$p' | tr '\n' ' ')

echo "calls=$CALLS hold=${HOLD}s extension=$EXT binary=$BIN"
echo "concurrent_calls_during_hold=$ACTIVE"
echo "cpu_percent_of_one_core=$CPU (server, over ${WINDOW}s with all calls up)"
echo "rss_idle_kb=$RSS0 rss_loaded_kb=$RSS1 rss_per_call_kb=$PER_CALL"
echo "sipp_successful=$SUCCESS sipp_failed=$FAILED recordings=$RECORDINGS recording_seconds_min_max=$DURATIONS"
if [[ $SUCCESS == "?" || $SUCCESS == 0 ]]; then
  echo "--- sipp output"; tail -20 "$WORK/sipp.out"; ls "$WORK"
fi
grep -iE "warn|error" "$WORK/server.log" | grep -v "calendar for" | head -5 || true

# --- Anchor: rtpengine relaying the same streams.
[[ ${ANCHOR:-rtpengine} == rtpengine ]] || exit 0
command -v rtpengine >/dev/null || { echo "rtpengine is not installed (apt-get install -y rtpengine-daemon)" >&2; exit 2; }
kill "$SERVER_PID" 2>/dev/null || true
NG_PORT=$(free_port)
rtpengine --foreground --interface=127.0.0.1 --listen-ng="127.0.0.1:$NG_PORT" \
  --port-min=42000 --port-max=43999 --table=-1 --log-stderr --log-level=3 \
  --pidfile="$WORK/rtpengine.pid" > "$WORK/rtpengine.log" 2>&1 &
RTPE_PID=$!
sleep 1
kill -0 "$RTPE_PID" 2>/dev/null || { cat "$WORK/rtpengine.log"; echo "rtpengine did not start"; exit 1; }
SERVER_PID=$RTPE_PID   # rss_kb/cpu_ticks/cleanup now follow rtpengine
ORSS0=$RSS0 ORSS1=$RSS1 OCPU=$CPU
RSS0=$(rss_kb)
python3 "$ROOT/bench/rtpengine-streams.py" "$NG_PORT" "$CALLS" "$HOLD" "$WORK/caller.wav" \
  > "$WORK/rtpengine-streams.out" &
DRIVER=$!
sleep 3
T0=$(date +%s.%N); C0=$(cpu_ticks)
AWINDOW=$(( HOLD - 5 ))
(( AWINDOW > 2 )) || AWINDOW=2
sleep "$AWINDOW"
T1=$(date +%s.%N); C1=$(cpu_ticks); RSS1=$(rss_kb)
wait "$DRIVER" || { echo "rtpengine driver failed"; cat "$WORK/rtpengine-streams.out"; exit 1; }
RCPU=$(python3 -c "print(round(100*($C1-$C0)/$HZ/($T1-$T0),1))")
python3 "$ROOT/bench/rtpengine-streams.py" 0 "$CALLS" 15 "$WORK/caller.wav" --direct \
  > "$WORK/direct.out"
kill "$RTPE_PID" 2>/dev/null || true
echo "rtpengine_anchor: $(cat "$WORK/rtpengine-streams.out")"
echo "no_relay_floor:   $(cat "$WORK/direct.out")"
python3 - "$CALLS" "$OCPU" "$ORSS0" "$ORSS1" "$RCPU" "$RSS0" "$RSS1" "$EXT" <<'PY'
import sys
n, ocpu, o0, o1, rcpu, r0, r1, ext = sys.argv[1:]
n = int(n)
ours_cpu, rtpe_cpu = float(ocpu) / n, float(rcpu) / n
ours_kb, rtpe_kb = (int(o1) - int(o0)) / n, (int(r1) - int(r0)) / n
print(f"| per stream ({n} streams) | hotline ({ext}) | rtpengine (relay) | ratio hotline/rtpengine |")
print("|---|---|---|---|")
ratio = lambda a, b: f"{a / b:.2f}" if b > 0 else "n/a (anchor 0)"
print(f"| CPU % of one core | {ours_cpu:.3f} | {rtpe_cpu:.3f} | {ratio(ours_cpu, rtpe_cpu)} |")
print(f"| RSS growth, kB | {ours_kb:.0f} | {rtpe_kb:.0f} | {ratio(ours_kb, rtpe_kb)} |")
print(f"| total CPU % / RSS kB loaded | {ocpu} / {o1} | {rcpu} / {r1} | |")
PY
