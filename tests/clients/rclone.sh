#!/usr/bin/env bash
# rclone with an S3 remote: copy, sync, check, lsjson.
set -euo pipefail
export RCLONE_CONFIG=/dev/null
export RCLONE_CONFIG_NUBO_TYPE=s3 RCLONE_CONFIG_NUBO_PROVIDER=Other RCLONE_CONFIG_NUBO_ENV_AUTH=false
export RCLONE_CONFIG_NUBO_ACCESS_KEY_ID=test:tester RCLONE_CONFIG_NUBO_SECRET_ACCESS_KEY=testing
export RCLONE_CONFIG_NUBO_ENDPOINT="$NUBO_S3_ENDPOINT" RCLONE_CONFIG_NUBO_REGION=us-east-1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/src/deep/er"
for i in $(seq 1 20); do head -c $((i * 1000)) /dev/urandom > "$W/src/file$i.bin"; done
head -c 30M /dev/urandom > "$W/src/deep/er/large.bin"
rclone mkdir nubo:rclone-bucket
rclone copy "$W/src" nubo:rclone-bucket/data
rclone check "$W/src" nubo:rclone-bucket/data
rm "$W/src/file1.bin"
echo changed > "$W/src/file2.bin"
rclone sync "$W/src" nubo:rclone-bucket/data
rclone check "$W/src" nubo:rclone-bucket/data
n=$(rclone lsjson -R --files-only nubo:rclone-bucket/data | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" -eq 20 ] || { echo "lsjson saw $n files"; exit 1; }
rclone copy nubo:rclone-bucket/data "$W/back"
diff -r "$W/src" "$W/back"
rclone purge nubo:rclone-bucket
echo "rclone: ok"
