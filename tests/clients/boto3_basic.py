"""boto3 against Nubo's S3 API: buckets, objects, listings, copies, errors.

Run by tests/s3_clients.rs with the endpoint in NUBO_S3_ENDPOINT."""
import os
import boto3
import botocore
import urllib3

from s3common import ENDPOINT, client, code

s3 = client()
s3.create_bucket(Bucket="boto-basic")
assert code(lambda: s3.create_bucket(Bucket="boto-basic")) == "BucketAlreadyOwnedByYou"
assert code(lambda: s3.create_bucket(Bucket="Bad_Name")) == "InvalidBucketName"
assert "boto-basic" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
# A bucket is listed as soon as CreateBucket answers, and gone as soon as
# DeleteBucket does (the account's listing is updated before either is
# acknowledged).
for r in range(20):
    made = [f"listed-{r}-{i}" for i in range(3)]
    for n in made:
        s3.create_bucket(Bucket=n)
    assert set(made) <= {b["Name"] for b in s3.list_buckets()["Buckets"]}, r
    for n in made:
        s3.delete_bucket(Bucket=n)
    assert not set(made) & {b["Name"] for b in s3.list_buckets()["Buckets"]}, r
# ListBuckets by prefix, a page at a time.
for i in range(3):
    s3.create_bucket(Bucket=f"paged-bucket-{i}")
names, token = [], None
for _ in range(10):
    page = s3.list_buckets(Prefix="paged-bucket-", MaxBuckets=2, **({"ContinuationToken": token} if token else {}))
    assert page.get("Prefix") == "paged-bucket-", page
    names += [b["Name"] for b in page["Buckets"]]
    token = page.get("ContinuationToken")
    if not token:
        break
assert names == [f"paged-bucket-{i}" for i in range(3)], names
for i in range(3):
    s3.delete_bucket(Bucket=f"paged-bucket-{i}")
s3.head_bucket(Bucket="boto-basic")
assert code(lambda: s3.head_bucket(Bucket="no-such-bucket")) in ("404", "NoSuchBucket")
assert s3.get_bucket_location(Bucket="boto-basic").get("LocationConstraint") in (None, "")

body = b"hello s3 " * 1000
put = s3.put_object(Bucket="boto-basic", Key="dir/a.txt", Body=body, Metadata={"color": "red"}, ContentType="text/plain")
got = s3.get_object(Bucket="boto-basic", Key="dir/a.txt")
assert got["Body"].read() == body
assert got["Metadata"] == {"color": "red"}, got["Metadata"]
assert got["ContentType"] == "text/plain"
assert got["ETag"] == put["ETag"]
assert s3.get_object(Bucket="boto-basic", Key="dir/a.txt", Range="bytes=0-4")["Body"].read() == b"hello"
assert s3.head_object(Bucket="boto-basic", Key="dir/a.txt")["ContentLength"] == len(body)
assert code(lambda: s3.get_object(Bucket="boto-basic", Key="dir/a.txt", IfMatch='"nope"')) == "PreconditionFailed"
# Dates and ETags as S3's preconditions (they reach the object layer as
# Unix seconds and ETag lists).
import datetime
future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
past = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
assert code(lambda: s3.get_object(Bucket="boto-basic", Key="dir/a.txt", IfModifiedSince=future)) == "304"
assert code(lambda: s3.get_object(Bucket="boto-basic", Key="dir/a.txt", IfUnmodifiedSince=past)) == "PreconditionFailed"
assert code(lambda: s3.get_object(Bucket="boto-basic", Key="dir/a.txt", IfNoneMatch=put["ETag"])) == "304"
assert s3.get_object(Bucket="boto-basic", Key="dir/a.txt", IfModifiedSince=past, IfMatch=put["ETag"])["Body"].read() == body
assert code(lambda: s3.get_object(Bucket="boto-basic", Key="dir/a.txt", Range="bytes=999999-")) == "InvalidRange"
# A HEAD of a range answers as its GET would: 206, the range's length and
# Content-Range (Swift's s3api makes the same of Swift's whole HEAD).
h = s3.head_object(Bucket="boto-basic", Key="dir/a.txt", Range="bytes=0-4")
assert h["ResponseMetadata"]["HTTPStatusCode"] == 206, h
assert (h["ContentLength"], h["ContentRange"]) == (5, f"bytes 0-4/{len(body)}"), h
assert code(lambda: s3.head_object(Bucket="boto-basic", Key="dir/a.txt", Range="bytes=999999-")) == "416"
# This store has only STANDARD: another class is refused, not ignored.
assert code(lambda: s3.put_object(Bucket="boto-basic", Key="cold", Body=b"x", StorageClass="GLACIER")) == "InvalidStorageClass"
assert code(lambda: s3.copy_object(Bucket="boto-basic", Key="cold", CopySource={"Bucket": "boto-basic", "Key": "dir/a.txt"},
                                   StorageClass="STANDARD_IA")) == "InvalidStorageClass"
assert code(lambda: s3.copy_object(Bucket="boto-basic", Key="cold", CopySource={"Bucket": "boto-basic", "Key": "dir/a.txt"},
                                   MetadataDirective="MOVE")) == "InvalidArgument"
s3.put_object(Bucket="boto-basic", Key="standard", Body=b"x", StorageClass="STANDARD")
s3.delete_object(Bucket="boto-basic", Key="standard")
over = s3.get_object(Bucket="boto-basic", Key="dir/a.txt", ResponseContentType="application/x-custom")
assert over["ContentType"] == "application/x-custom"
assert code(lambda: s3.get_object(Bucket="boto-basic", Key="missing")) == "NoSuchKey"
assert code(lambda: s3.get_object(Bucket="no-such-bucket", Key="x")) == "NoSuchBucket"

for k in ["dir/b.txt", "dir/sub/c.txt", "top.txt"]:
    s3.put_object(Bucket="boto-basic", Key=k, Body=k.encode())
import time
for _ in range(100):
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="boto-basic").get("Contents", [])]
    if len(keys) == 4:
        break
    time.sleep(0.05)
assert keys == ["dir/a.txt", "dir/b.txt", "dir/sub/c.txt", "top.txt"], keys
v2 = s3.list_objects_v2(Bucket="boto-basic", Delimiter="/")
assert [p["Prefix"] for p in v2["CommonPrefixes"]] == ["dir/"]
assert [o["Key"] for o in v2["Contents"]] == ["top.txt"]
page = s3.list_objects_v2(Bucket="boto-basic", MaxKeys=2)
assert page["IsTruncated"] and page["KeyCount"] == 2
rest = s3.list_objects_v2(Bucket="boto-basic", ContinuationToken=page["NextContinuationToken"])
assert [o["Key"] for o in rest["Contents"]] == ["dir/sub/c.txt", "top.txt"]
assert [o["Key"] for o in s3.list_objects_v2(Bucket="boto-basic", StartAfter="dir/b.txt")["Contents"]] == ["dir/sub/c.txt", "top.txt"]
v1 = s3.list_objects(Bucket="boto-basic", Prefix="dir/", Delimiter="/")
assert [o["Key"] for o in v1["Contents"]] == ["dir/a.txt", "dir/b.txt"]
owned = s3.list_objects_v2(Bucket="boto-basic", FetchOwner=True, MaxKeys=1)["Contents"][0]
assert owned["Owner"]["ID"] == "AUTH_test", owned
s3.put_object(Bucket="boto-basic", Key="odd key+&=.txt", Body=b"odd")
for _ in range(100):  # listings catch up with writes within milliseconds
    enc = s3.list_objects_v2(Bucket="boto-basic", Prefix="odd", EncodingType="url")
    if enc.get("Contents"):
        break
    time.sleep(0.05)
assert enc["Contents"][0]["Key"] in ("odd key+&=.txt", "odd%20key%2B%26%3D.txt"), enc["Contents"][0]["Key"]
# boto3 decodes url-encoded keys itself; the wire form proves the encoding.
v4 = client(signature_version="s3v4")
raw_url = v4.generate_presigned_url("list_objects_v2", Params={"Bucket": "boto-basic", "Prefix": "odd", "EncodingType": "url"})
wire = urllib3.PoolManager().request("GET", raw_url).data
assert b"<Key>odd%20key%2B%26%3D.txt</Key>" in wire, wire
s3.delete_object(Bucket="boto-basic", Key="odd key+&=.txt")
summed = s3.put_object(Bucket="boto-basic", Key="summed", Body=b"checksummed", ChecksumAlgorithm="SHA256")
head = s3.head_object(Bucket="boto-basic", Key="summed", ChecksumMode="ENABLED")
assert head.get("ChecksumSHA256") == summed["ChecksumSHA256"], (head.get("ChecksumSHA256"), summed.get("ChecksumSHA256"))
s3.delete_object(Bucket="boto-basic", Key="summed")
versions = s3.list_object_versions(Bucket="boto-basic")
assert all(v["VersionId"] == "null" for v in versions["Versions"])

s3.copy_object(Bucket="boto-basic", Key="copy.txt", CopySource={"Bucket": "boto-basic", "Key": "dir/a.txt"})
c = s3.get_object(Bucket="boto-basic", Key="copy.txt")
assert c["Body"].read() == body and c["Metadata"] == {"color": "red"}
s3.copy_object(Bucket="boto-basic", Key="copy.txt", CopySource={"Bucket": "boto-basic", "Key": "dir/a.txt"},
               MetadataDirective="REPLACE", Metadata={"shape": "round"}, ContentType="text/x")
c = s3.head_object(Bucket="boto-basic", Key="copy.txt")
assert c["Metadata"] == {"shape": "round"} and c["ContentType"] == "text/x"
assert code(lambda: s3.copy_object(Bucket="boto-basic", Key="x", CopySource={"Bucket": "boto-basic", "Key": "dir/a.txt"},
                                   CopySourceIfMatch='"nope"')) == "PreconditionFailed"

assert code(lambda: client("wrong").list_buckets()) == "SignatureDoesNotMatch"
anon = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", config=botocore.config.Config(signature_version=botocore.UNSIGNED))
assert code(lambda: anon.list_objects_v2(Bucket="boto-basic")) == "AccessDenied"

assert code(lambda: s3.delete_bucket(Bucket="boto-basic")) == "BucketNotEmpty"
keys = ["dir/a.txt", "dir/b.txt", "dir/sub/c.txt", "top.txt", "copy.txt", "never-existed"]
out = s3.delete_objects(Bucket="boto-basic", Delete={"Objects": [{"Key": k} for k in keys]})
assert sorted(d["Key"] for d in out["Deleted"]) == sorted(keys), out
quiet = s3.delete_objects(Bucket="boto-basic", Delete={"Objects": [{"Key": "x"}], "Quiet": True})
assert not quiet.get("Deleted")
for _ in range(100):
    try:
        s3.delete_bucket(Bucket="boto-basic")
        break
    except botocore.exceptions.ClientError:
        time.sleep(0.05)
assert code(lambda: s3.head_bucket(Bucket="boto-basic")) in ("404", "NoSuchBucket")
print("boto3 basic: ok")
