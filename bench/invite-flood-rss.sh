#!/usr/bin/env bash
# RSS of `hotline serve` (the shipped config, a copy in a work directory) before and after a
# flood of un-ACKed INVITEs from the trunk address (127.0.0.1), once the calls it let in
# have ended and their entries are gone (64·T1 after the end; with the shipped timers all
# is gone ~100 s after the flood, hence WAIT 110):
#
#     bench/invite-flood-rss.sh [N=1500] [WAIT=110]
#
# HOTLINE_BIN picks the binary (default target/release/hotline; target/debug/hotline for a
# debug build). Prints idle / after the flood / WAIT s later RSS (KiB) from invite-flood.py,
# then the SIP transactions still held, and the difference to idle. Exits 1 when RSS stays more than
# MAX_GROWTH_KIB (default 3072) above idle.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
N=${1:-1500}
WAIT=${2:-110}
MAX_GROWTH_KIB=${MAX_GROWTH_KIB:-3072}
[[ -x $HOTLINE_BIN ]] || die "no $HOTLINE_BIN (cargo build --release, or HOTLINE_BIN=target/debug/hotline)"
need python3 python3

cp -a "$BENCH_ROOT/config" "$WORK/etc"
sip=$(free_port)
http=$(free_port)
"$HOTLINE_BIN" serve --config "$WORK/etc/hotline.toml" \
  --sip-listen "127.0.0.1:$sip" --http-listen "127.0.0.1:$http" \
  --data-dir "$WORK/data" >"$WORK/hotline.log" 2>&1 &
pid=$!
BENCH_PIDS+=("$pid")
for _ in $(seq 1 300); do
  grep -q "hotline ready" "$WORK/hotline.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$WORK/hotline.log" >&2; die "hotline exited"; }
  sleep 0.1
done
grep -q "hotline ready" "$WORK/hotline.log" || die "hotline did not start"
sleep 2 # let start-up settle before the idle figure
echo "binary $HOTLINE_BIN; $(machine)"
out=$(python3 "$BENCH_ROOT/bench/invite-flood.py" "$pid" "$sip" "$N" "$WAIT")
echo "$out"
tx=$(curl -s "http://127.0.0.1:$http/metrics" | awk '/^hotline_sip_transactions /{print $2}')
echo "SIP transactions held at the end: ${tx:-?}"
idle=$(awk '/^idle rss KiB/{print $NF}' <<<"$out")
last=$(awk '/s later rss KiB/{print $NF}' <<<"$out")
growth=$((last - idle))
echo "growth over idle: $growth KiB (bound $MAX_GROWTH_KIB)"
if ((growth > MAX_GROWTH_KIB)); then exit 1; fi
