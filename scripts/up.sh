#!/usr/bin/env bash
# Installs everything, builds Nubo, and starts the local cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release --bin nubo
NUBO="$CARGO_TARGET_DIR/release/nubo"
# A local cluster: 3 storage nodes, the proxy on :8080, dev credentials.
# Flags pass through: ./scripts/up.sh --data-dir /tmp/n --proxy-port 9080
exec "$NUBO" up "$@"
