#!/usr/bin/env bash
# Installs everything and runs every test: unit, property, integration, CLI,
# and each benchmark once in test mode (so benchmarks cannot rot).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings
# Every test binary runs even after one fails, so that a red run names
# every failure at once.
cargo test --release --workspace --all-targets --no-fail-fast
