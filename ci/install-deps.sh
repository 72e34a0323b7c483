#!/usr/bin/env bash
# Install the Debian packages the test suite and benchmarks need:
#   slurm-wlm  - slurmctld, slurmd and the client commands (sbatch, srun, ...)
#   munge      - Slurm's authentication daemon
#   binutils   - nm (symbol checks)
#   hyperfine  - benchmarks
#   procps     - pgrep/ps, used by ci/slurm-testbed.sh
#   chromium   - headless browser: renders `pseg-slurm report` pages in the tests
#   podman, runc - build and run containers/Dockerfile (tests/cli/container.rs); runc
#                because Podman's default crun refuses a hybrid cgroup layout
#   debootstrap - the offline Debian 12 base image and root filesystem (ci/rootfs-test.sh)
#
# Idempotent: when every package is already installed it does nothing (no
# apt-get update), so re-runs are fast.  As a non-root user it only prints
# what is missing and exits 0; the Slurm tests then skip.
set -euo pipefail

PACKAGES=(slurm-wlm munge binutils hyperfine procps chromium podman runc debootstrap debian-archive-keyring)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all present: ${PACKAGES[*]}"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    cat >&2 <<EOF
install-deps: ############################################################
install-deps: NOT ROOT: cannot install the missing packages:
install-deps:     ${missing[*]}
install-deps: run as root:  apt-get update && apt-get install -y ${missing[*]}
install-deps: tests that need a real Slurm will SKIP on this machine.
install-deps: ############################################################
EOF
    exit 0
fi

echo "install-deps: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

# The Debian packages try to start their daemons through systemd/init
# scripts; where there is no init system that fails harmlessly.  The test
# cluster is started by ci/slurm-testbed.sh with its own configuration.
echo "install-deps: done"
