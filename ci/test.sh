#!/usr/bin/env bash
# The project's whole test run: the README's test command, and all .ci/run does.
# Installs what the tests need (as root), starts the one-node Slurm test bed for the
# end-to-end tests, runs the gates, and stops the test bed again, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install-deps.sh

if [[ "$(id -u)" -eq 0 ]] && command -v slurmctld >/dev/null; then
    bash ci/slurm-testbed.sh up
    trap 'bash ci/slurm-testbed.sh down' EXIT
    eval "$(bash ci/slurm-testbed.sh env)"
else
    echo "test.sh: ###### no Slurm test bed here (needs root); Slurm tests will SKIP ######" >&2
fi

cargo fmt --all --check
bash ci/check-layers.sh
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --locked
cargo test --workspace --locked
