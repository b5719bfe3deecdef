#!/usr/bin/env bash
# Installs everything, builds Nubo, and starts the local cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release --bin nubo
NUBO="$CARGO_TARGET_DIR/release/nubo"
# `nubo up` (a local cluster with every service) arrives with the object
# store; until then this shows what the binary offers.
exec "$NUBO" --help
