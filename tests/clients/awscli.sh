#!/usr/bin/env bash
# The aws CLI against Nubo's S3 API: the high-level `aws s3` commands with a
# 200 MiB file (the CLI switches to multipart by itself) and `aws s3api`.
set -euo pipefail
export AWS_ACCESS_KEY_ID=test:tester AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
aws() { command aws --endpoint-url "$NUBO_S3_ENDPOINT" "$@"; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

head -c 200M /dev/urandom > "$W/big.bin"
aws s3 mb s3://cli-bucket
aws s3 cp "$W/big.bin" s3://cli-bucket/big.bin --only-show-errors
aws s3 cp s3://cli-bucket/big.bin "$W/back.bin" --only-show-errors
cmp "$W/big.bin" "$W/back.bin"
etag=$(aws s3api head-object --bucket cli-bucket --key big.bin --query ETag --output text)
[[ "$etag" == *-* ]] || { echo "expected a multipart ETag, got $etag"; exit 1; }

mkdir -p "$W/tree/sub"
echo alpha > "$W/tree/a.txt"
echo beta > "$W/tree/sub/b.txt"
aws s3 sync "$W/tree" s3://cli-bucket/tree --only-show-errors
for _ in $(seq 50); do
  n=$(aws s3 ls s3://cli-bucket/tree/ --recursive | wc -l)
  [ "$n" -eq 2 ] && break
  sleep 0.1
done
[ "$n" -eq 2 ] || { echo "sync listed $n objects"; exit 1; }
aws s3 sync s3://cli-bucket/tree "$W/tree2" --only-show-errors
diff -r "$W/tree" "$W/tree2"
listing=$(aws s3 ls s3://cli-bucket/)
grep -q "PRE tree/" <<<"$listing"
buckets=$(aws s3 ls)
grep -q cli-bucket <<<"$buckets"

echo meta > "$W/meta.txt"
aws s3api put-object --bucket cli-bucket --key meta.txt --body "$W/meta.txt" --metadata k=v --content-type text/x >/dev/null
[ "$(aws s3api head-object --bucket cli-bucket --key meta.txt --query 'Metadata.k' --output text)" = v ]
[ "$(aws s3api head-object --bucket cli-bucket --key meta.txt --query ContentType --output text)" = text/x ]
aws s3api copy-object --bucket cli-bucket --key meta-copy.txt --copy-source cli-bucket/meta.txt >/dev/null
aws s3api get-object --bucket cli-bucket --key meta-copy.txt "$W/copy.txt" >/dev/null
cmp "$W/meta.txt" "$W/copy.txt"
[ "$(aws s3api list-objects-v2 --bucket cli-bucket --delimiter / --query 'CommonPrefixes[0].Prefix' --output text)" = tree/ ]
aws s3api delete-objects --bucket cli-bucket --delete '{"Objects":[{"Key":"meta.txt"},{"Key":"meta-copy.txt"}]}' >/dev/null
if aws s3api head-object --bucket cli-bucket --key meta.txt >/dev/null 2>&1; then echo "meta.txt survived"; exit 1; fi
aws s3api get-bucket-location --bucket cli-bucket >/dev/null

aws s3 rm s3://cli-bucket --recursive --only-show-errors
for _ in $(seq 50); do aws s3 rb s3://cli-bucket 2>/dev/null && break; sleep 0.1; done
if aws s3 ls s3://cli-bucket >/dev/null 2>&1; then echo "bucket survived rb"; exit 1; fi
echo "aws cli: ok"
