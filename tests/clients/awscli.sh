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

# Server-side encryption: SSE-S3 and SSE-C through `aws s3 cp`, a bucket's
# default through s3api; a read of an SSE-C object without its key fails.
head -c 300000 /dev/urandom > "$W/secret.bin"
aws s3 cp "$W/secret.bin" s3://cli-bucket/sse-s3.bin --sse AES256 --only-show-errors
[ "$(aws s3api head-object --bucket cli-bucket --key sse-s3.bin --query ServerSideEncryption --output text)" = AES256 ]
aws s3 cp s3://cli-bucket/sse-s3.bin "$W/sse-s3.back" --only-show-errors
cmp "$W/secret.bin" "$W/sse-s3.back"
head -c 32 /dev/urandom > "$W/customer.key"
aws s3 cp "$W/secret.bin" s3://cli-bucket/sse-c.bin --sse-c AES256 --sse-c-key "fileb://$W/customer.key" --only-show-errors
aws s3 cp s3://cli-bucket/sse-c.bin "$W/sse-c.back" --sse-c AES256 --sse-c-key "fileb://$W/customer.key" --only-show-errors
cmp "$W/secret.bin" "$W/sse-c.back"
if aws s3 cp s3://cli-bucket/sse-c.bin "$W/nokey" --only-show-errors 2>/dev/null; then echo "SSE-C read without its key"; exit 1; fi
aws s3api put-bucket-encryption --bucket cli-bucket \
  --server-side-encryption-configuration '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
aws s3 cp "$W/meta.txt" s3://cli-bucket/by-default.txt --only-show-errors
[ "$(aws s3api head-object --bucket cli-bucket --key by-default.txt --query ServerSideEncryption --output text)" = AES256 ]
aws s3api delete-bucket-encryption --bucket cli-bucket

# Lifecycle: a configuration set, shown back, refused when malformed, removed.
aws s3api put-bucket-lifecycle-configuration --bucket cli-bucket --lifecycle-configuration \
  '{"Rules":[{"ID":"tmp","Status":"Enabled","Filter":{"Prefix":"tmp/"},"Expiration":{"Days":3},"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":1}}]}'
[ "$(aws s3api get-bucket-lifecycle-configuration --bucket cli-bucket --query 'Rules[0].Expiration.Days' --output text)" = 3 ]
if aws s3api put-bucket-lifecycle-configuration --bucket cli-bucket --lifecycle-configuration \
  '{"Rules":[{"ID":"bad","Status":"Enabled","Filter":{"Prefix":""},"Expiration":{"Days":0}}]}' 2>"$W/lc.err"; then
  echo "Days 0 accepted"; exit 1
fi
grep -q InvalidArgument "$W/lc.err"
[ "$(aws s3api get-bucket-lifecycle-configuration --bucket cli-bucket --query 'Rules[0].ID' --output text)" = tmp ]
aws s3api delete-bucket-lifecycle --bucket cli-bucket
if aws s3api get-bucket-lifecycle-configuration --bucket cli-bucket 2>/dev/null; then echo "lifecycle survived"; exit 1; fi

aws s3 rm s3://cli-bucket --recursive --only-show-errors
for _ in $(seq 50); do aws s3 rb s3://cli-bucket 2>/dev/null && break; sleep 0.1; done
if aws s3 ls s3://cli-bucket >/dev/null 2>&1; then echo "bucket survived rb"; exit 1; fi
echo "aws cli: ok"
