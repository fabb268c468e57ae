#!/usr/bin/env bash
# The one server command: builds the browser consoles when needed (web/dist is embedded
# into the binary by build.rs), then runs the server. Arguments go to `hotline serve`,
# e.g. scripts/serve.sh --config config/hotline.toml --http-listen 127.0.0.1:8080
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f web/dist/index.html ] || [ -n "$(find web/src web/index.html web/package.json -newer web/dist/index.html -print -quit 2>/dev/null)" ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "building the web consoles (web/dist)…" >&2
        (cd web && npm ci --no-audit --no-fund && npm run build)
    else
        echo "warning: npm not found; serving without the web consoles (a page explains how to build them)" >&2
    fi
fi

exec cargo run --release -- serve "$@"
