#!/usr/bin/env bash
# Build the Debian package of the hotline server with dpkg-deb (no cargo-deb needed):
#   /usr/bin/hotline, /etc/hotline/hotline.toml (conffile, paths made absolute),
#   /usr/share/hotline/{calendar,prompts,mobile-prefixes.csv}, /var/lib/hotline (state),
#   /lib/systemd/system/hotline.service (hardened, dedicated user, journald).
#
# scripts/build-deb.sh [--binary PATH] [--out DIR] [--version V]
#   --binary PATH  package this binary (e.g. target/debug/hotline for a quick test
#                  package); default: build it with `cargo build --release --locked`
#                  (web/dist must exist: the consoles are embedded; scripts/serve.sh
#                  builds them).
#   --out DIR      where the .deb goes (default: target/deb)
# Prints the path of the .deb on its last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
binary=""
out="$root/target/deb"
version=""
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --version) version="$2"; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--out DIR] [--version V]" >&2; exit 2 ;;
    esac
done
if [ -z "$version" ]; then
    version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)"
fi
if [ -z "$binary" ]; then
    (cd "$root" && cargo build --release --locked)
    binary="$root/target/release/hotline"
fi
[ -x "$binary" ] || { echo "no executable at $binary" >&2; exit 1; }
arch="$(dpkg --print-architecture)"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/hotline"
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" \
    "$pkg/usr/share/hotline" "$pkg/usr/share/doc/hotline"
install -d -m 0750 "$pkg/etc/hotline" "$pkg/var/lib/hotline"
install -m 0755 "$binary" "$pkg/usr/bin/hotline"
install -m 0644 "$root/packaging/hotline.service" "$pkg/lib/systemd/system/hotline.service"
cp -r "$root/config/calendar" "$root/config/prompts" "$pkg/usr/share/hotline/"
install -m 0644 "$root/config/mobile-prefixes.csv" "$pkg/usr/share/hotline/"
find "$pkg/usr/share/hotline" -type d -exec chmod 0755 {} +
find "$pkg/usr/share/hotline" -type f -exec chmod 0644 {} +
install -m 0644 "$root/README.md" "$pkg/usr/share/doc/hotline/README.md"

# The shipped config with its relative paths made absolute for the installed layout.
config="$pkg/etc/hotline/hotline.toml"
cp "$root/config/hotline.toml" "$config"
replace() { # FROM TO: exactly the shipped line, or the build fails
    grep -qxF "$1" <(sed 's/[[:space:]]*#.*$//' "$config") \
        || { echo "config/hotline.toml no longer has: $1" >&2; exit 1; }
    local from_re
    from_re="$(printf '%s' "$1" | sed 's/[][\.*^$/]/\\&/g')"
    sed -i "s/^${from_re}/$(printf '%s' "$2" | sed 's/[\/&]/\\&/g')/" "$config"
}
replace 'data_dir = "../data"' 'data_dir = "/var/lib/hotline"'
replace 'recordings_dir = "../recordings"' 'recordings_dir = "/var/lib/hotline/recordings"'
replace 'calendar = "calendar/cn-workdays.toml"' 'calendar = "/usr/share/hotline/calendar/cn-workdays.toml"'
replace 'prompts_dir = "prompts/zh"' 'prompts_dir = "/usr/share/hotline/prompts/zh"'
sed -i 's|^# mobile_prefixes = "mobile-prefixes.csv"|# mobile_prefixes = "/usr/share/hotline/mobile-prefixes.csv"|' "$config"
chmod 0640 "$config"

cat > "$pkg/usr/share/doc/hotline/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: hotline
License: MIT or Apache-2.0
COPYRIGHT

install -m 0755 "$root/packaging/deb/postinst" "$root/packaging/deb/prerm" \
    "$root/packaging/deb/postrm" "$pkg/DEBIAN/"
echo "/etc/hotline/hotline.toml" > "$pkg/DEBIAN/conffiles"
size_kb="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: hotline
Version: $version
Architecture: $arch
Maintainer: 12348 hotline <hotline@localhost>
Installed-Size: $size_kb
Depends: libc6, libgcc-s1, adduser, ca-certificates
Recommends: postgresql-client
Suggests: postgresql
Section: net
Priority: optional
Description: 12348 public legal-service hotline server (Shandong)
 One binary taking calls to 12348 (SIP/RTP): Mandarin IVR, queues of on-duty
 agents per city, work orders through the provincial transfer workflow, and
 browser consoles. Runs as the systemd service hotline (user hotline), state in
 /var/lib/hotline, config in /etc/hotline/hotline.toml, logs in the journal.
CONTROL

mkdir -p "$out"
deb="$out/hotline_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip -z6 --build "$pkg" "$deb" >&2
echo "$deb"
