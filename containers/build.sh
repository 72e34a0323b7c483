#!/usr/bin/env bash
# Builds the pseg image (containers/Dockerfile) from this checkout and your clavrxorb:
#
#   bash containers/build.sh /path/to/clavrxorb [TAG] [FILE...]     # TAG: pseg:latest
#
# 1. stages clavrxorb (and FILEs, e.g. libraries of your own build) as containers/stage.sh
#    does, with static pseg-step and pseg-slurm built on this host when cargo is here;
# 2. makes sure the base image debian:12-slim is there: pulled, or, with no registry in
#    reach, made offline from a debootstrapped Debian 12 (needs root and the machine's apt
#    mirror) and imported under that name;
# 3. builds with Podman (or Docker when that is what the machine has), with the host's
#    network so that apt-get inside reaches the mirror.
#
# pseg-step and pseg-slurm come from the Rust image (rust:1-slim-bookworm) when it is there
# or can be pulled, otherwise from the host-built static binaries in containers/stage/bin.
#
# Environment:
#   ENGINE=podman|docker   the engine (default: podman when installed, else docker)
#   BINARIES=build|stage   force where pseg-step comes from (see above)
#   BASE_ROOTFS=DIR        a debootstrapped Debian 12 to import when debian:12-slim is
#                          missing (default: pull, else debootstrap with ci/rootfs-test.sh)
#   PSEG_BIN_DIR=DIR       take pseg-step and pseg-slurm from DIR (see stage.sh)
#   CLAVRXORB_PACKAGES="libgfortran5 ..."   Debian packages a dynamically linked
#                          clavrxorb needs (see the Dockerfile)
#   CONTEXT=DIR            build context (default: this checkout); the stage goes to
#                          DIR/containers/stage. Only BINARIES=stage works outside a checkout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
context=${CONTEXT:-$repo}
BASE=debian:12-slim
RUST=docker.io/library/rust:1-slim-bookworm

if [[ $# -lt 1 ]]; then
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
clavrxorb=$1
tag=${2:-pseg:latest}
shift $(($# >= 2 ? 2 : 1))

say() { echo "build: $*" >&2; }

engine=${ENGINE:-}
if [[ -z "$engine" ]]; then
    if command -v podman >/dev/null; then
        engine=podman
    elif command -v docker >/dev/null; then
        engine=docker
    else
        say "neither podman nor docker is installed (Debian: apt-get install podman runc)"
        exit 3
    fi
fi

has_image() { "$engine" image inspect "$1" >/dev/null 2>&1; }
# An offline machine fails the pull at once; a filtered one may hang, hence the timeout.
can_pull() { has_image "$1" || timeout 300 "$engine" pull "$1" >&2; }

# 1. Stage. Without cargo the binaries come from the Rust image, and only clavrxorb is staged.
binaries=${BINARIES:-}
stage_env=()
if [[ -z "${PSEG_BIN_DIR:-}" ]] && ! command -v cargo >/dev/null; then
    [[ -n "$binaries" ]] || binaries=build
    if [[ "$binaries" == stage ]]; then
        say "BINARIES=stage needs cargo on this machine or PSEG_BIN_DIR"
        exit 2
    fi
    stage_env=(PSEG_BIN_DIR=none)
fi
env STAGE="$context/containers/stage" "${stage_env[@]}" bash "$here/stage.sh" "$clavrxorb" "$@" >&2

# 2. The base image.
if ! has_image "$BASE"; then
    if [[ -z "${BASE_ROOTFS:-}" ]] && can_pull "$BASE"; then
        :
    else
        rootfs=${BASE_ROOTFS:-$repo/target/rootfs/bookworm-minbase}
        if [[ -z "${BASE_ROOTFS:-}" ]]; then
            say "cannot pull $BASE: debootstrapping Debian 12 into $rootfs instead"
            bash "$repo/ci/rootfs-test.sh" "$rootfs" >&2
        fi
        if [[ ! -x "$rootfs/bin/sh" ]]; then
            say "$rootfs is not a root filesystem (no bin/sh)"
            exit 2
        fi
        say "importing $rootfs as $BASE"
        tar -C "$rootfs" --exclude=./.pseg-rootfs-complete -c . | "$engine" import - "$BASE" >&2
    fi
fi

# 3. Build.
if [[ -z "$binaries" ]]; then
    if can_pull "$RUST"; then binaries=build; else binaries=stage; fi
fi
say "building $tag with $engine (pseg-step from: $binaries)"
args=(build -f "$here/Dockerfile" --build-arg "BINARIES=$binaries" --network host -t "$tag")
if [[ -n "${CLAVRXORB_PACKAGES:-}" ]]; then
    args+=(--build-arg "CLAVRXORB_PACKAGES=$CLAVRXORB_PACKAGES")
fi
if [[ "$engine" == podman ]]; then
    # Docker's BuildKit finds the ignore file beside the Dockerfile itself.
    args+=(--ignorefile "$here/Dockerfile.dockerignore")
fi
args+=("$context")
"$engine" "${args[@]}" >&2
say "built $tag"
echo "$tag"
