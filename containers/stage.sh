#!/usr/bin/env bash
# Fills containers/stage/ with what containers/pseg.def copies into the image:
#
#   containers/stage/bin/pseg-step    built here (static, so any Linux host can build it)
#   containers/stage/bin/pseg-slurm
#   containers/stage/bin/clavrxorb    your CLAVR-x executable (built with tracer support)
#   containers/stage/lib/             extra files clavrxorb needs (e.g. libraries of your
#                                     own build), given after it; may stay empty
#
# Usage (from anywhere; paths are taken as given):
#   bash containers/stage.sh /path/to/clavrxorb [FILE...]
#
# Environment:
#   STAGE=DIR          stage elsewhere (default: containers/stage beside this script)
#   PSEG_BIN_DIR=DIR   take pseg-step and pseg-slurm from DIR instead of building them
#                      (they must run on Debian 12: glibc 2.36 or older, or static);
#                      none: stage clavrxorb only (the Dockerfile's Rust-image build)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
stage=${STAGE:-$here/stage}

if [[ $# -lt 1 ]]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
clavrxorb=$1
shift
if [[ ! -f "$clavrxorb" || ! -x "$clavrxorb" ]]; then
    echo "stage: $clavrxorb is not an executable file" >&2
    exit 2
fi

if [[ -z "${PSEG_BIN_DIR:-}" ]]; then
    # Static glibc binaries: no dependence on the build host's C library. --target keeps the
    # flags off build scripts and proc macros.
    triple=$(rustc -vV | sed -n 's/^host: //p')
    echo "stage: building pseg-step and pseg-slurm (release, static, $triple)"
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --manifest-path "$repo/Cargo.toml" \
        --target "$triple" --bin pseg-step --bin pseg-slurm
    target_dir=${CARGO_TARGET_DIR:-$repo/target}
    PSEG_BIN_DIR=$target_dir/$triple/release
fi

rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/lib"
if [[ "$PSEG_BIN_DIR" != none ]]; then
    install -m 0755 "$PSEG_BIN_DIR/pseg-step" "$PSEG_BIN_DIR/pseg-slurm" "$stage/bin/"
fi
install -m 0755 "$clavrxorb" "$stage/bin/clavrxorb"
for extra in "$@"; do
    cp -L "$extra" "$stage/lib/"
done

echo "stage: $stage ready:"
(cd "$stage" && find . -type f | sort | sed 's/^/stage:   /')
if command -v ldd >/dev/null && ldd "$stage/bin/clavrxorb" >/dev/null 2>&1; then
    echo "stage: clavrxorb is dynamically linked; inside the image it needs:"
    ldd "$stage/bin/clavrxorb" | sed 's/^/stage:   /'
    echo "stage: install Debian's packages for these in pseg.def's %post (CLAVRXORB_PACKAGES)"
    echo "stage: or stage your own copies: bash containers/stage.sh $clavrxorb LIB..."
fi
