#!/usr/bin/env bash
# List latency with a large order table: seed N orders (default 1,000,000) directly into
# a fresh SQLite file and a fresh PostgreSQL database (`bench/orders.rs --seed`: K
# template orders through the pure core and Store::append_order_events, the rest SQL
# copies of their projection rows), start `hotline serve` on each, and sample
#   GET /api/orders?per_page=50&sort=deadline                       (unfiltered)
#   GET /api/orders?per_page=50&sort=deadline&city=jinan&state=pending_dispatch&category=complaint
# as the province admin (whole province in scope), pages 1-20; and the unit-scoped lists
# (the store reads the user's unit's rows of order_scope, migration 0007):
#   handler    (jinan-legal-aid, an institution)   GET /api/orders?per_page=50&sort=deadline
#   dispatcher (jinan, the city: its whole subtree) the same, and &state=pending_dispatch
# The anchor is the database's own floor: the same two statements the store runs per
# request (the page and the COUNT) run by sqlite3 / psql on the same database in the
# same run, timed by the client (`.timer on` / `\timing`), summed per request. Not part
# of `cargo test`.
#
#   bench/orders-1m.sh [N] [templates]       (defaults 1000000 10000)
#   PG_ADMIN=postgres://postgres@127.0.0.1:5432/postgres   ("off" to skip PostgreSQL)
#   SQLITE=off (PostgreSQL only)   SAMPLES=300 (requests per list)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
TEMPLATES=${2:-10000}
SAMPLES=${SAMPLES:-300}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
PORT=${PORT:-18490}
cargo build --release --bin hotline --bench orders
BIN=target/release/hotline
BENCH=$(ls -t target/release/deps/orders-* | grep -v '\.d$' | head -1)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The shipped config, with the reminder scheduler slowed to once a day: the seeded
# orders are mostly past their limits, and a first pass raising ~10^5 reminders while
# the lists are sampled would measure that bulk write, not the list.
CONFIG=$WORK/hotline.toml
{ cat config/hotline.toml; printf '\n[notify]\nreminder_interval_secs = 86400\n'; } >"$CONFIG"

PAGE_SQL="SELECT snapshot FROM orders ORDER BY due_sort, id LIMIT 50 OFFSET %d;"
COUNT_SQL="SELECT COUNT(*) FROM orders;"
FILTER="WHERE state = 'pending_dispatch' AND city = 'jinan' AND category = 'complaint'"
FPAGE_SQL="SELECT snapshot FROM orders $FILTER ORDER BY due_sort, id LIMIT 50 OFFSET %d;"
FCOUNT_SQL="SELECT COUNT(*) FROM orders $FILTER;"
# Unit-scoped lists: what the store runs for a user of unit $1 (state filter in $2).
scope_page() { echo "SELECT o.snapshot FROM order_scope s CROSS JOIN orders o WHERE o.id = s.order_id AND s.unit = '$1'${2:-} ORDER BY s.due_sort, s.order_id LIMIT 50 OFFSET %d;"; }
scope_count() { echo "SELECT COUNT(*) FROM order_scope s WHERE s.unit = '$1'${2:-};"; }
PENDING=" AND s.state = 'pending_dispatch'"

queries() { # $1 = page printf format, $2 = count SQL: SAMPLES requests, pages 1-20
  for i in $(seq 0 $((SAMPLES - 1))); do
    printf "$1\n" $(( (i % 20) * 50 ))
    echo "$2"
  done
}

# p50 / p99 of per-request time (page + count), from one time in ms per line.
pairs_p() {
  awk 'NR % 2 == 1 { a = $1; next } { print a + $1 }' | sort -n |
    awk '{ v[NR] = $1 } END { p50 = v[int(NR * 0.50 + 0.999)]; p99 = v[int(NR * 0.99 + 0.999)];
      printf "%.1f %.1f", p50, p99 }'
}

floor_sqlite() { # $1 = db file, $2 = page fmt, $3 = count SQL (the timer prints on stdout)
  { echo ".timer on"; queries "$2" "$3"; } | sqlite3 "$1" |
    sed -n 's/^Run Time: real \([0-9.]*\).*/\1/p' | awk '{ print $1 * 1000 }' | pairs_p
}

floor_psql() { # $1 = URL, $2 = page fmt, $3 = count SQL
  { echo '\timing on'; queries "$2" "$3"; } | psql -qAt "$1" |
    sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | pairs_p
}

api_p() { # bench output line → "p50 p99"
  sed -n 's/.*p50 \([0-9.]*\) ms, p99 \([0-9.]*\) ms.*/\1 \2/p'
}

ROWS=()
measure() { # $1 = label, $2 = DATABASE_URL, $3 = floor function, $4 = floor target
  echo "== $1: seeding $N orders"
  "$BENCH" --seed "$N" --templates "$TEMPLATES" --database "$2"
  local data; data=$(mktemp -d -p "$WORK")
  DATABASE_URL="$2" RUST_LOG=warn "$BIN" serve --config "$CONFIG" \
    --http-listen 127.0.0.1:$PORT --sip-listen 127.0.0.1:$((PORT + 1)) --data-dir "$data" &
  local pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  local out
  out=$("$BENCH" --url "127.0.0.1:$PORT" --list-only --filtered --list-user admin \
    --list-samples "$SAMPLES")
  echo "$out"
  local handler dispatcher
  handler=$("$BENCH" --url "127.0.0.1:$PORT" --list-only --list-user handler \
    --list-samples "$SAMPLES")
  echo "handler: $handler"
  dispatcher=$("$BENCH" --url "127.0.0.1:$PORT" --list-only --inbox --list-user dispatcher \
    --list-samples "$SAMPLES")
  echo "dispatcher: $dispatcher"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local api_all api_f api_h api_d api_di floor_all floor_f floor_h floor_d floor_di
  api_all=$(echo "$out" | sed -n 1p | api_p)
  api_f=$(echo "$out" | sed -n 2p | api_p)
  api_h=$(echo "$handler" | sed -n 1p | api_p)
  api_d=$(echo "$dispatcher" | sed -n 1p | api_p)
  api_di=$(echo "$dispatcher" | sed -n 2p | api_p)
  floor_all=$($3 "$4" "$PAGE_SQL" "$COUNT_SQL")
  floor_f=$($3 "$4" "$FPAGE_SQL" "$FCOUNT_SQL")
  floor_h=$($3 "$4" "$(scope_page jinan-legal-aid)" "$(scope_count jinan-legal-aid)")
  floor_d=$($3 "$4" "$(scope_page jinan)" "$(scope_count jinan)")
  floor_di=$($3 "$4" "$(scope_page jinan "$PENDING")" "$(scope_count jinan "$PENDING")")
  ROWS+=("$1 unfiltered $api_all $floor_all" "$1 filtered $api_f $floor_f"
    "$1 scoped-unit $api_h $floor_h" "$1 scoped-city $api_d $floor_d"
    "$1 city-inbox $api_di $floor_di")
}

[ "${SQLITE:-on}" = off ] ||
  measure sqlite "sqlite://$WORK/bench.db?mode=rwc" floor_sqlite "$WORK/bench.db"
if [ "$PG_ADMIN" != off ]; then
  db=hotline_bench1m_$$
  psql "$PG_ADMIN" -qc "CREATE DATABASE $db" >/dev/null
  measure postgres "${PG_ADMIN%/*}/$db" floor_psql "${PG_ADMIN%/*}/$db"
  psql "$PG_ADMIN" -qc "DROP DATABASE $db" >/dev/null
fi

echo
echo "N=$N orders, $SAMPLES requests per query, pages 1-20 of 50; ms"
printf '%-9s %-11s %9s %9s %11s %11s %9s\n' backend list "API p50" "API p99" "floor p50" "floor p99" "p99 ratio"
for r in "${ROWS[@]}"; do
  set -- $r
  ratio=$(awk -v a="$4" -v f="$6" 'BEGIN { if (f > 0) printf "%.1fx", a / f; else print "-" }')
  printf '%-9s %-11s %9s %9s %11s %11s %9s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$ratio"
done
