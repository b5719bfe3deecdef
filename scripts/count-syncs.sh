#!/bin/bash
# Sync calls per PUT while a load runs (e.g. `cargo bench --bench
# cluster_load -- --swift --small` in another shell): traces the fsync and
# fdatasync calls of one storage node for 5 s with strace, counts the PUTs
# the proxy answered in the same window, and prints sync calls per PUT over
# all nodes (the one node's count times the number of nodes). Needs strace
# and curl; run as root.
set -euo pipefail
nodes=$(pgrep -fc "storage-node --config")
node=$(pgrep -f "storage-node --config" | head -1)
proxy_conf=$(tr '\0' ' ' < "/proc/$(pgrep -f "nubo proxy --config" | head -1)/cmdline" | awk '{print $4}')
port=$(grep -E "^port" "$proxy_conf" | grep -oE "[0-9]+" | head -1)
puts() {
  curl -s "127.0.0.1:$port/metrics" | grep 'nubo_proxy_requests_total' |
    grep 'method="PUT"' | awk '{s+=$2} END {print s+0}'
}
out=$(mktemp)
before=$(puts)
timeout 5 strace -f -c -e trace=fsync,fdatasync -p "$node" -o "$out" 2>/dev/null || true
after=$(puts)
syncs=$(awk '/fsync|fdatasync/ {s+=$4} END {print s+0}' "$out")
echo "PUTs: $((after - before)); sync calls on one node: $syncs"
awk -v s="$syncs" -v n="$nodes" -v p="$((after - before))" \
  'BEGIN { if (p > 0) printf "sync calls per PUT over %d nodes: %.1f\n", n, s * n / p }'
cat "$out"
rm -f "$out"
