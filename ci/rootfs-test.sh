#!/usr/bin/env bash
# Builds the base root filesystem the container recipes start from, without a container
# engine: a minimal Debian bookworm (debootstrap --variant=minbase), the same system as the
# `debian:12-slim` image that containers/pseg.def and containers/Dockerfile bootstrap from.
#
#   ci/rootfs-test.sh DIR
#
# DIR is a cache: once built (DIR/.pseg-rootfs-complete exists) the script returns at once,
# so only a fresh machine pays the ~1-3 minutes. The mirror is the one this machine's apt
# uses (/etc/apt/sources.list*), so no other network access is needed; the rootfs gets the
# same mirrors (main, -updates, -security) in its own apt sources, as the slim image has.
#
# The integration test tests/cli/container.rs calls this, then applies the recipe's %files
# and %post to a copy of DIR and runs its %test and %runscript in a chroot. Needs root
# (debootstrap and chroot); installs debootstrap with apt when missing.
set -euo pipefail

SUITE=bookworm
DEFAULT_MIRROR=http://deb.debian.org/debian

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
stamp="$dir/.pseg-rootfs-complete"

if [[ -e "$stamp" ]]; then
    echo "rootfs-test: cached: $dir ($(cat "$stamp"))"
    exit 0
fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "rootfs-test: needs root (debootstrap, chroot)" >&2
    exit 77
fi
# Tests run in parallel: one builds, the others wait for it and find it cached.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [[ -e "$stamp" ]]; then
    echo "rootfs-test: cached: $dir ($(cat "$stamp"))"
    exit 0
fi

# Every "URI suite" pair of the host's apt sources, one-line and deb822 formats alike.
host_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i+1) }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             {
                 uris = ""; suites = ""; types = ""; enabled = "yes"
                 for (i = 1; i <= NF; i++) {
                     if ($i ~ /^#/) continue
                     split($i, kv, ":[ \t]*")
                     key = tolower(kv[1]); val = substr($i, length(kv[1]) + 2)
                     sub(/^[ \t]+/, "", val)
                     if (key == "uris") uris = val
                     else if (key == "suites") suites = val
                     else if (key == "types") types = val
                     else if (key == "enabled") enabled = tolower(val)
                 }
                 if (types !~ /(^| )deb( |$)/ || enabled == "no") next
                 n = split(uris, u, " "); m = split(suites, s, " ")
                 for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print u[a], s[b]
             }' "$f"
    done
}

# The Debian archive mirror (a URI ending in /debian) and security mirror the host uses.
mirror=$(host_sources | awk '$1 ~ /\/debian\/?$/ { sub(/\/$/, "", $1); print $1; exit }')
security=$(host_sources | awk '$1 ~ /\/debian-security\/?$/ { sub(/\/$/, "", $1); print $1; exit }')
mirror=${mirror:-$DEFAULT_MIRROR}
security=${security:-${mirror%/debian}/debian-security}

if ! command -v debootstrap >/dev/null; then
    echo "rootfs-test: installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends debootstrap debian-archive-keyring
fi

start=$(date +%s)
rm -rf "$dir" "$dir.partial"
echo "rootfs-test: debootstrap --variant=minbase $SUITE from $mirror into $dir"
debootstrap --variant=minbase "$SUITE" "$dir.partial" "$mirror"

# The slim image's apt sources, pointing at the host's mirrors.
rm -f "$dir.partial/etc/apt/sources.list"
cat >"$dir.partial/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# Like the slim image: no package caches left behind.
rm -rf "$dir.partial/var/cache/apt/archives/"*.deb "$dir.partial/var/lib/apt/lists/"*

seconds=$(($(date +%s) - start))
echo "debootstrap $SUITE minbase from $mirror in ${seconds}s on $(date -u +%FT%TZ)" >"$dir.partial/.pseg-rootfs-complete"
mv "$dir.partial" "$dir"
echo "rootfs-test: built $dir in ${seconds}s"
