#!/usr/bin/env bash
# Install the Debian package on a throw-away copy of this machine and run it as an
# operator would, without touching the machine itself: an overlay of / (changes land in
# WORK) in a private mount and PID namespace, chrooted. Needs root, unshare, overlayfs.
#
# scripts/check-deb-install.sh DEB WORK SIP_PORT HTTP_PORT
#
# Steps (each must succeed): dpkg -i; the hotline user and the modes of /etc/hotline and
# /var/lib/hotline; `hotline user add --token` as root; the server as user hotline with
# the unit's limits (no new privileges, no capabilities, LimitNOFILE (at most the hard
# limit this machine allows), the file system
# read-only but /var/lib/hotline as ProtectSystem=strict + ReadWritePaths); an order
# created and read with the printed token; `hotline backup` as user hotline while it
# runs; SIGTERM; the database moved away and `hotline restore` as root; the server again
# reading the same order; dpkg -r keeping /var/lib/hotline.
set -euo pipefail
deb="$(realpath "$1")"; work="$(realpath "$2")"; sip_port="$3"; http_port="$4"
[ "$(id -u)" = 0 ] || { echo "needs root (unshare, mount, chroot)" >&2; exit 1; }
mkdir -p "$work/upper" "$work/work" "$work/root"
cp "$deb" "$work/pkg.deb"

exec unshare --mount --pid --fork --propagation private bash -euo pipefail -s \
    "$work" "$sip_port" "$http_port" <<'INNER'
work="$1"; sip_port="$2"; http_port="$3"
m="$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$m"
mount -t proc proc "$m/proc"
mount --rbind /dev "$m/dev"
mount -t tmpfs tmpfs "$m/run"
in_root() { chroot "$m" "$@"; }
step() { echo "== $*"; }

step "dpkg -i"
in_root dpkg -i "$work/pkg.deb"
in_root getent passwd hotline >/dev/null
[ "$(in_root stat -c '%U:%G %a' /var/lib/hotline)" = "hotline:hotline 750" ]
[ "$(in_root stat -c '%U:%G %a' /etc/hotline/hotline.toml)" = "root:hotline 640" ]

step "hotline user add --token"
out="$(in_root hotline user add --config /etc/hotline/hotline.toml --role dispatcher --city jinan --token)"
echo "$out"
token="$(printf '%s\n' "$out" | sed -n 's/^api token: //p')"
[ -n "$token" ]
[ "$(in_root stat -c '%U:%G %a' /etc/hotline/hotline.toml)" = "root:hotline 640" ]

# ProtectSystem=strict + ReadWritePaths=/var/lib/hotline + PrivateTmp, as far as
# mounts go: everything read-only but the state directory and a private /tmp.
mount --bind "$m/var/lib/hotline" "$m/var/lib/hotline"
mount -t tmpfs tmpfs "$m/tmp"
mount -o remount,bind,ro "$m"

as_service() { # the unit's User=, NoNewPrivileges=, CapabilityBoundingSet=, LimitNOFILE=
    # LimitNOFILE=65536, or as close as this machine lets root go (a container's
    # hard limit may be lower).
    local nofile; nofile="$(ulimit -Hn)"
    [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
    ${exec_it:+exec} chroot "$m" prlimit --nofile="$nofile:$nofile" -- setpriv --reuid=hotline --regid=hotline \
        --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
}
serve() {
    # exec: $! is the server itself (chroot, prlimit, setpriv and env exec in turn).
    (exec_it=1 as_service env HOTLINE_CONFIG=/etc/hotline/hotline.toml /usr/bin/hotline serve \
        --config /etc/hotline/hotline.toml \
        --sip-listen "127.0.0.1:$sip_port" --http-listen "127.0.0.1:$http_port") \
        >>"$work/serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
        grep -q "hotline ready" "$work/serve.log" && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log"; return 1; }
        sleep 0.1
    done
    cat "$work/serve.log"; return 1
}
stop() { kill -TERM "$pid"; local rc=0; wait "$pid" || rc=$?; [ "$rc" = 0 ] || { echo "server exit $rc"; tail -20 "$work/serve.log"; return 1; }; }
order() { in_root hotline order --url "http://127.0.0.1:$http_port" --token "$token" "$@"; }

step "serve as user hotline"
serve
grep "hotline ready" "$work/serve.log"
created="$(order --output json create --category consultation --description "安装测试 咨询" \
    --business-area legal_aid --contact-name 张三 --contact-phone 13812345678 \
    --channel phone --received-at "$(date +%Y-%m-%dT%H:%M:%S%:z)")"
id="$(printf '%s' "$created" | grep -o '"id": *"GD[0-9A-Z]*"' | grep -o 'GD[0-9A-Z]*' | head -n 1)"
[ -n "$id" ] || { echo "no order id in: $created"; exit 1; }
order get "$id" | grep -q "$id"

step "hotline backup as user hotline while serving"
as_service hotline backup /var/lib/hotline/backup.db --config /etc/hotline/hotline.toml
stop

step "restore as root into a new database"
mkdir -p "$work/moved"
mv "$m/var/lib/hotline/hotline.db" "$work/moved/"
rm -f "$m/var/lib/hotline/hotline.db-wal" "$m/var/lib/hotline/hotline.db-shm"
in_root hotline restore /var/lib/hotline/backup.db --config /etc/hotline/hotline.toml
[ "$(in_root stat -c '%U:%G' /var/lib/hotline/hotline.db)" = "hotline:hotline" ]
: > "$work/serve.log"
serve
order get "$id" | grep -q "$id"
stop

step "dpkg -r keeps the data"
mount -o remount,bind,rw "$m"
in_root dpkg -r hotline
[ -f "$m/var/lib/hotline/hotline.db" ]
echo "== install check ok"
INNER
