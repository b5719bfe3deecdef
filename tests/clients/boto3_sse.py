"""Server-side encryption with boto3: SSE-S3 (per request and as a bucket's
default) and SSE-C, on PUT, GET, HEAD, ranges, copies, multipart uploads
and versions, with the refusals S3 gives (no key, a wrong key, a bad key
MD5, a key for an unencrypted object, KMS); checksums and Content-MD5 still
checked on the plaintext; python-swiftclient reading the same objects.

The bodies carry the marker `MARKER`; the Rust test that runs this script
then looks for it in every file of the cluster's data and must not find it
(an unencrypted control object proves it would)."""
import base64
import hashlib
import os

from s3common import client, code, swift_connection

s3 = client()
swift = swift_connection()
MARKER = b"NUBO-SSE-SECRET-MARKER"
CONTROL = b"NUBO-PLAIN-CONTROL-MARKER"


def body(n, seed):
    """`n` bytes starting with the marker, then bytes that vary."""
    out = bytearray(MARKER * 4)
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d-%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


def md5(b):
    return '"%s"' % hashlib.md5(b).hexdigest()


# A recognisable key, which the Rust test looks for (raw and in base64)
# in every file of the cluster's data: it must never be stored.
KEY = b"NUBO-SSE-C-CUSTOMER-KEY-32-BYTES"
assert len(KEY) == 32
OTHER = os.urandom(32)
SSEC = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": KEY}
WRONG = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": OTHER}

B = "sse"
s3.create_bucket(Bucket=B)

# --- SSE-S3 ---------------------------------------------------------------
big = body(200 * 1024 + 7, 1)
r = s3.put_object(Bucket=B, Key="s3", Body=big, ServerSideEncryption="AES256")
assert r["ServerSideEncryption"] == "AES256" and r["ETag"] == md5(big), r
got = s3.get_object(Bucket=B, Key="s3")
assert got["Body"].read() == big and got["ServerSideEncryption"] == "AES256", got
head = s3.head_object(Bucket=B, Key="s3")
assert head["ContentLength"] == len(big) and head["ETag"] == md5(big), head
for a, b in [(0, 0), (65535, 65537), (1, 200 * 1024), (131000, len(big) - 1), (len(big) - 5, len(big) - 1)]:
    part = s3.get_object(Bucket=B, Key="s3", Range=f"bytes={a}-{b}")
    assert part["Body"].read() == big[a:b + 1], (a, b)
    assert part["ContentRange"] == f"bytes {a}-{b}/{len(big)}", part["ContentRange"]
assert s3.get_object(Bucket=B, Key="s3", Range="bytes=-10")["Body"].read() == big[-10:]
assert code(lambda: s3.get_object(Bucket=B, Key="s3", Range=f"bytes={len(big)}-")) == "InvalidRange"
listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=B)["Contents"]}
assert listed["s3"]["Size"] == len(big) and listed["s3"]["ETag"] == md5(big), listed["s3"]
# Empty and small bodies.
for n in [0, 1, 65536]:
    data = body(n, 2)
    s3.put_object(Bucket=B, Key=f"s3-{n}", Body=data, ServerSideEncryption="AES256")
    assert s3.get_object(Bucket=B, Key=f"s3-{n}")["Body"].read() == data
    assert s3.head_object(Bucket=B, Key=f"s3-{n}")["ContentLength"] == n
# The plaintext's checksum and MD5 are checked: a wrong one stores nothing.
small = body(1000, 3)
assert code(lambda: s3.put_object(Bucket=B, Key="bad-sum", Body=small, ServerSideEncryption="AES256",
                                  ChecksumCRC32="AAAAAA==")) == "BadDigest"
assert code(lambda: s3.put_object(Bucket=B, Key="bad-md5", Body=small, ServerSideEncryption="AES256",
                                  ContentMD5=base64.b64encode(b"0" * 16).decode())) == "BadDigest"
assert code(lambda: s3.head_object(Bucket=B, Key="bad-sum")) == "404"
assert code(lambda: s3.head_object(Bucket=B, Key="bad-md5")) == "404"
r = s3.put_object(Bucket=B, Key="sum", Body=small, ServerSideEncryption="AES256", ChecksumAlgorithm="SHA256",
                  ContentMD5=base64.b64encode(hashlib.md5(small).digest()).decode())
sha = base64.b64encode(hashlib.sha256(small).digest()).decode()
assert r["ChecksumSHA256"] == sha
assert s3.head_object(Bucket=B, Key="sum", ChecksumMode="ENABLED")["ChecksumSHA256"] == sha
assert code(lambda: s3.put_object(Bucket=B, Key="kms", Body=b"x", ServerSideEncryption="aws:kms")) == "InvalidArgument"

# --- SSE-C ----------------------------------------------------------------
data = body(150 * 1024, 4)
r = s3.put_object(Bucket=B, Key="c", Body=data, **SSEC)
assert r["SSECustomerAlgorithm"] == "AES256", r
key_md5 = base64.b64encode(hashlib.md5(KEY).digest()).decode()
assert r["SSECustomerKeyMD5"] == key_md5 and r["ETag"] != md5(data), r
got = s3.get_object(Bucket=B, Key="c", **SSEC)
assert got["Body"].read() == data and got["SSECustomerKeyMD5"] == key_md5, got
assert s3.head_object(Bucket=B, Key="c", **SSEC)["ContentLength"] == len(data)
part = s3.get_object(Bucket=B, Key="c", Range="bytes=70000-140000", **SSEC)
assert part["Body"].read() == data[70000:140001]
assert code(lambda: s3.get_object(Bucket=B, Key="c")) == "InvalidRequest"
assert code(lambda: s3.head_object(Bucket=B, Key="c")) == "400"
assert code(lambda: s3.get_object(Bucket=B, Key="c", **WRONG)) == "AccessDenied"
assert code(lambda: s3.head_object(Bucket=B, Key="c", **WRONG)) == "403"
# With its MD5 given, boto3 sends the key as given: base64.
bad_md5 = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(KEY).decode(),
           "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(OTHER).digest()).decode()}
assert code(lambda: s3.put_object(Bucket=B, Key="c2", Body=b"x", **bad_md5)) == "InvalidArgument"
assert code(lambda: s3.get_object(Bucket=B, Key="c", **bad_md5)) == "InvalidArgument"
short = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": b"short"}
assert code(lambda: s3.put_object(Bucket=B, Key="c2", Body=b"x", **short)) == "InvalidArgument"
assert code(lambda: s3.put_object(Bucket=B, Key="c2", Body=b"x", SSECustomerAlgorithm="AES128",
                                  SSECustomerKey=KEY)) == "InvalidEncryptionAlgorithmError"
assert code(lambda: s3.put_object(Bucket=B, Key="c2", Body=b"x", ServerSideEncryption="AES256", **SSEC)) \
    == "InvalidArgument"
assert code(lambda: s3.head_object(Bucket=B, Key="c2")) == "404"
# A key for an object that is not encrypted with one.
s3.put_object(Bucket=B, Key="plain", Body=CONTROL * 100)
assert code(lambda: s3.get_object(Bucket=B, Key="plain", **SSEC)) == "InvalidRequest"
assert code(lambda: s3.get_object(Bucket=B, Key="s3", **SSEC)) == "InvalidRequest"

# --- Copies ---------------------------------------------------------------
src = {"Bucket": B, "Key": "c"}
assert code(lambda: s3.copy_object(Bucket=B, Key="copy", CopySource=src)) == "InvalidRequest"
assert code(lambda: s3.copy_object(Bucket=B, Key="copy", CopySource=src,
                                   CopySourceSSECustomerAlgorithm="AES256",
                                   CopySourceSSECustomerKey=OTHER)) == "AccessDenied"
r = s3.copy_object(Bucket=B, Key="copy", CopySource=src, CopySourceSSECustomerAlgorithm="AES256",
                   CopySourceSSECustomerKey=KEY, ServerSideEncryption="AES256")
assert r["ServerSideEncryption"] == "AES256", r
assert s3.get_object(Bucket=B, Key="copy")["Body"].read() == data
# SSE-S3 to SSE-C, and an object re-encrypted in place.
s3.copy_object(Bucket=B, Key="copy2", CopySource={"Bucket": B, "Key": "s3"}, **SSEC)
assert s3.get_object(Bucket=B, Key="copy2", **SSEC)["Body"].read() == big
s3.copy_object(Bucket=B, Key="copy2", CopySource={"Bucket": B, "Key": "copy2"},
               CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=KEY,
               ServerSideEncryption="AES256")
assert s3.get_object(Bucket=B, Key="copy2")["Body"].read() == big

# --- Multipart ------------------------------------------------------------
MB = 1024 * 1024
p1, p2 = body(5 * MB, 5), body(100 * 1024 + 3, 6)
up = s3.create_multipart_upload(Bucket=B, Key="mpu-c", **SSEC)
assert up["SSECustomerKeyMD5"] == key_md5
uid = up["UploadId"]
assert code(lambda: s3.upload_part(Bucket=B, Key="mpu-c", UploadId=uid, PartNumber=1, Body=p1)) == "InvalidRequest"
assert code(lambda: s3.upload_part(Bucket=B, Key="mpu-c", UploadId=uid, PartNumber=1, Body=p1, **WRONG)) \
    == "AccessDenied"
e1 = s3.upload_part(Bucket=B, Key="mpu-c", UploadId=uid, PartNumber=1, Body=p1, **SSEC)["ETag"]
e2 = s3.upload_part_copy(Bucket=B, Key="mpu-c", UploadId=uid, PartNumber=2,
                         CopySource={"Bucket": B, "Key": "s3"}, CopySourceRange="bytes=0-102402",
                         **SSEC)["CopyPartResult"]["ETag"]
s3.complete_multipart_upload(Bucket=B, Key="mpu-c", UploadId=uid, MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]}, **SSEC)
whole = p1 + big[:102403]
got = s3.get_object(Bucket=B, Key="mpu-c", **SSEC)
assert got["Body"].read() == whole and got["SSECustomerKeyMD5"] == key_md5
span = s3.get_object(Bucket=B, Key="mpu-c", Range=f"bytes={5 * MB - 10}-{5 * MB + 70000}", **SSEC)
assert span["Body"].read() == whole[5 * MB - 10:5 * MB + 70001]
# A part (`partNumber`) is its plaintext, placed by the parts' plaintext sizes.
second = s3.get_object(Bucket=B, Key="mpu-c", PartNumber=2, **SSEC)
assert second["Body"].read() == big[:102403] and second["PartsCount"] == 2
assert second["ContentRange"] == f"bytes {len(p1)}-{len(whole) - 1}/{len(whole)}", second["ContentRange"]
assert code(lambda: s3.get_object(Bucket=B, Key="mpu-c")) == "InvalidRequest"
assert code(lambda: s3.get_object(Bucket=B, Key="mpu-c", **WRONG)) == "AccessDenied"
assert s3.head_object(Bucket=B, Key="mpu-c", **SSEC)["ContentLength"] == len(whole)

# --- A bucket's default encryption ----------------------------------------
D = "sse-default"
s3.create_bucket(Bucket=D)
assert code(lambda: s3.get_bucket_encryption(Bucket=D)) == "ServerSideEncryptionConfigurationNotFoundError"
assert code(lambda: s3.put_bucket_encryption(Bucket=D, ServerSideEncryptionConfiguration={"Rules": [
    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})) == "InvalidArgument"
s3.put_bucket_encryption(Bucket=D, ServerSideEncryptionConfiguration={"Rules": [
    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
rule = s3.get_bucket_encryption(Bucket=D)["ServerSideEncryptionConfiguration"]["Rules"][0]
assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", rule
data_d = body(70000, 7)
assert s3.put_object(Bucket=D, Key="k", Body=data_d)["ServerSideEncryption"] == "AES256"
assert s3.head_object(Bucket=D, Key="k")["ServerSideEncryption"] == "AES256"
up = s3.create_multipart_upload(Bucket=D, Key="m")
assert up["ServerSideEncryption"] == "AES256"
e = s3.upload_part(Bucket=D, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=data_d)["ETag"]
assert e == md5(data_d)
done = s3.complete_multipart_upload(Bucket=D, Key="m", UploadId=up["UploadId"],
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
assert done["ServerSideEncryption"] == "AES256", done
assert s3.get_object(Bucket=D, Key="m")["Body"].read() == data_d
# A request's own SSE-C wins over the default.
s3.put_object(Bucket=D, Key="own", Body=data_d, **SSEC)
assert code(lambda: s3.get_object(Bucket=D, Key="own")) == "InvalidRequest"
# A Swift write into the bucket gets its default too.
swift.put_object(D, "from-swift", body(5000, 10))
assert s3.head_object(Bucket=D, Key="from-swift")["ServerSideEncryption"] == "AES256"
assert swift.get_object(D, "from-swift")[1] == body(5000, 10)
r = s3.delete_bucket_encryption(Bucket=D)
assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
assert "ServerSideEncryption" not in s3.put_object(Bucket=D, Key="after", Body=CONTROL * 10)

# --- Versions ---------------------------------------------------------------
V = "sse-versions"
s3.create_bucket(Bucket=V)
s3.put_bucket_versioning(Bucket=V, VersioningConfiguration={"Status": "Enabled"})
v1 = s3.put_object(Bucket=V, Key="k", Body=body(1000, 8), **SSEC)["VersionId"]
s3.put_object(Bucket=V, Key="k", Body=body(2000, 9), ServerSideEncryption="AES256")
assert s3.get_object(Bucket=V, Key="k")["Body"].read() == body(2000, 9)
assert s3.get_object(Bucket=V, Key="k", VersionId=v1, **SSEC)["Body"].read() == body(1000, 8)
assert code(lambda: s3.get_object(Bucket=V, Key="k", VersionId=v1)) == "InvalidRequest"
sizes = {v["VersionId"]: v["Size"] for v in s3.list_object_versions(Bucket=V)["Versions"]}
assert sorted(sizes.values()) == [1000, 2000], sizes

# --- Swift reads the same objects -----------------------------------------
headers, content = swift.get_object(B, "s3")
assert content == big and int(headers["content-length"]) == len(big)
assert headers["etag"] == hashlib.md5(big).hexdigest(), headers["etag"]
headers, content = swift.get_object(B, "s3", headers={"Range": "bytes=65530-65545"})
assert content == big[65530:65546]
try:
    swift.get_object(B, "c")
    raise AssertionError("an SSE-C object read through Swift")
except Exception as e:  # swiftclient.ClientException
    assert getattr(e, "http_status", None) == 403, e
print("sse: ok")
