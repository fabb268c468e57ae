#!/usr/bin/env bash
# Work-order bench: start `hotline serve` on SQLite, then on PostgreSQL, and run
# bench/orders.rs against each (create + sign + start + reply per order over HTTP,
# then p99 of GET /api/orders). Not part of `cargo test`.
#
#   bench/orders.sh [N orders] [clients]        (default 2000 orders, 8 clients)
#   PG_ADMIN=postgres://postgres@127.0.0.1:5432/postgres   PostgreSQL to use ("off" to skip)
#   PROFILE=release|dev                                     (default release)
#   MAX_SECS=540  stop creating after that long per backend (figure + extrapolation)
#   SQLITE=off    PostgreSQL only;  SAMPLES=500  list requests sampled
#
# Measured 2026-11-28 (release, 2-core VM shared with other builds):
#   bench/orders.sh 10000 8      (load average ~2-3)
#   sqlite:   211 orders/s (842 req/s); GET /api/orders p50 7.3 ms, p99 13.2 ms (10k orders)
#   postgres: 197 orders/s (788 req/s); GET /api/orders p50 67 ms, p99 108 ms right after
#             the bulk load (no planner statistics yet); after ANALYZE p50 15 ms, p99 24 ms
#   bench/orders.sh 2000 8       (load average ~10): sqlite 140 orders/s, postgres 106 orders/s
# 2026-11-28, 100k (see bench/RESULTS-orders.md): sqlite 195 orders/s for all 100000
#   (513 s); postgres 139 orders/s, stopped at MAX_SECS=360 after 50019 (~720 s for all).
# 2026-11-28, 100k after the ledger head is locked last (MAX_SECS=600 bench/orders.sh
#   100000 8): sqlite 301 orders/s (332 s), postgres 417 orders/s (240 s), all 100000.
# Every commit is durable (SQLite synchronous=FULL) and serialized by the ledger head.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
CLIENTS=${2:-8}
PROFILE=${PROFILE:-release}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
PORT=${PORT:-18480}
MAX_SECS=${MAX_SECS:-0}   # stop creating after this many seconds per backend (0 = all N)
flag=$([ "$PROFILE" = release ] && echo --release || echo "")
cargo build $flag --bin hotline --bench orders
BIN=target/$([ "$PROFILE" = release ] && echo release || echo debug)/hotline
BENCH=$(ls -t target/$([ "$PROFILE" = release ] && echo release || echo debug)/deps/orders-* | grep -v '\.d$' | head -1)

run() { # $1 = label, $2 = DATABASE_URL, $3 = PostgreSQL URL to ANALYZE (optional)
  local data; data=$(mktemp -d)
  DATABASE_URL="$2" RUST_LOG=warn "$BIN" serve --config config/hotline.toml \
    --http-listen 127.0.0.1:$PORT --sip-listen 127.0.0.1:$((PORT + 1)) --data-dir "$data" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  echo "== $1 (N=$N, clients=$CLIENTS, $PROFILE)"
  "$BENCH" --url "127.0.0.1:$PORT" --orders "$N" --clients "$CLIENTS" --max-secs "$MAX_SECS" \
    --list-samples "${SAMPLES:-500}"
  if [ -n "${3:-}" ]; then # PostgreSQL: again once the planner has statistics (autovacuum would)
    psql "$3" -qc ANALYZE
    echo "after ANALYZE:"
    "$BENCH" --url "127.0.0.1:$PORT" --list-only
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}

[ "${SQLITE:-on}" = off ] || run sqlite "sqlite://$(mktemp -d)/bench.db?mode=rwc"
if [ "$PG_ADMIN" != off ]; then
  db=hotline_bench_$$
  psql "$PG_ADMIN" -qc "CREATE DATABASE $db" >/dev/null
  run postgres "${PG_ADMIN%/*}/$db" "${PG_ADMIN%/*}/$db"
  psql "$PG_ADMIN" -qc "DROP DATABASE $db" >/dev/null
fi
