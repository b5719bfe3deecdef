"""S3 checksums: every algorithm S3 defines is checked in headers (boto3
computes them, with awscrt for CRC32C and CRC64NVME) and in aws-chunked
trailers (unsigned and signed, built by hand from the SigV4 spec, as boto3
and the aws CLI send them over TLS). A wrong value is refused with BadDigest
and nothing is stored; a right one is kept and returned with checksum mode;
multipart uploads get per-part and composite or full-object checksums; two
writers racing on one key both hear 200."""
import base64
import datetime
import hashlib
import hmac
import threading
import zlib
from urllib.parse import urlparse

import urllib3
from awscrt import checksums as crt

from s3common import ENDPOINT, client, code

ACCESS, SECRET, REGION = "test:tester", "testing", "us-east-1"
host = urlparse(ENDPOINT).netloc
s3 = client()
s3.create_bucket(Bucket="sums")
DATA = b"hello world" * 1000


def b64(raw):
    return base64.b64encode(raw).decode()


def value(alg, data):
    if alg == "CRC32":
        return b64(zlib.crc32(data).to_bytes(4, "big"))
    if alg == "CRC32C":
        return b64(crt.crc32c(data).to_bytes(4, "big"))
    if alg == "CRC64NVME":
        return b64(crt.crc64nvme(data).to_bytes(8, "big"))
    return b64(hashlib.new(alg.lower(), data).digest())


ALGS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]


def missing(key):
    return code(lambda: s3.head_object(Bucket="sums", Key=key)) in ("404", "NoSuchKey")


# -- headers: boto3 computes each algorithm; a wrong value is refused --------
for alg in ALGS:
    key = f"header-{alg}"
    out = s3.put_object(Bucket="sums", Key=key, Body=DATA, ChecksumAlgorithm=alg)
    assert out[f"Checksum{alg}"] == value(alg, DATA), (alg, out)
    got = s3.get_object(Bucket="sums", Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == DATA
    assert got[f"Checksum{alg}"] == value(alg, DATA), (alg, got)
    head = s3.head_object(Bucket="sums", Key=key, ChecksumMode="ENABLED")
    assert head[f"Checksum{alg}"] == value(alg, DATA) and head["ChecksumType"] == "FULL_OBJECT"
    # Without checksum mode, no checksum.
    assert f"Checksum{alg}" not in s3.head_object(Bucket="sums", Key=key)
    # A wrong value: BadDigest, and nothing stored.
    wrong = value(alg, b"other data")
    bad = f"bad-header-{alg}"
    assert code(lambda: s3.put_object(Bucket="sums", Key=bad, Body=DATA,
                                      **{f"Checksum{alg}": wrong})) == "BadDigest", alg
    assert missing(bad), alg
    # Nor does a wrong value replace an object that exists.
    assert code(lambda: s3.put_object(Bucket="sums", Key=key, Body=b"replacement",
                                      **{f"Checksum{alg}": wrong})) == "BadDigest", alg
    assert s3.get_object(Bucket="sums", Key=key)["Body"].read() == DATA

# The example from the issue: a CRC32 of zeros.
assert code(lambda: s3.put_object(Bucket="sums", Key="zeros", Body=b"abc",
                                  ChecksumCRC32="AAAAAA==")) == "BadDigest"
assert missing("zeros")
# A malformed value is refused before the body.
assert code(lambda: s3.put_object(Bucket="sums", Key="malformed", Body=b"abc",
                                  ChecksumCRC32="not base64!")) == "InvalidRequest"
assert missing("malformed")

# -- no checksum sent: S3 computes CRC64NVME ---------------------------------
plain = client(request_checksum_calculation="when_required")
plain.put_object(Bucket="sums", Key="default", Body=DATA)
head = s3.head_object(Bucket="sums", Key="default", ChecksumMode="ENABLED")
assert head["ChecksumCRC64NVME"] == value("CRC64NVME", DATA), head
# A ranged read carries no checksum.
assert "ChecksumCRC64NVME" not in s3.get_object(Bucket="sums", Key="default", Range="bytes=0-9",
                                                ChecksumMode="ENABLED")


# -- trailers, by hand: unsigned and signed ----------------------------------
def sha(b):
    return hashlib.sha256(b).hexdigest()


def hm(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def trailer_upload(key, data, alg, sent, signed, extra=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/{REGION}/s3/aws4_request"
    skey = hm(hm(hm(hm(("AWS4" + SECRET).encode(), day), REGION), "s3"), "aws4_request")
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" if signed else "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    trailer_name = f"x-amz-checksum-{alg.lower()}"
    headers = {
        "host": host,
        "x-amz-content-sha256": mode,
        "x-amz-date": amz_date,
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": trailer_name,
        "content-encoding": "aws-chunked",
    }
    headers.update(extra or {})
    chunks = [data[i:i + 8192] for i in range(0, len(data), 8192)]
    body = b""
    names = sorted(headers)
    canonical = "\n".join(["PUT", f"/sums/{key}", "", "".join(f"{h}:{headers[h]}\n" for h in names),
                           ";".join(names), mode])
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{sha(canonical.encode())}"
    seed = hmac.new(skey, to_sign.encode(), hashlib.sha256).hexdigest()
    prev = seed
    for c in chunks + [b""]:
        if signed:
            sts = f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{prev}\n{sha(b'')}\n{sha(c)}"
            sig = hmac.new(skey, sts.encode(), hashlib.sha256).hexdigest()
            body += f"{len(c):x};chunk-signature={sig}\r\n".encode()
            prev = sig
        else:
            body += f"{len(c):x}\r\n".encode()
        if c:
            body += c + b"\r\n"
    trailer = f"{trailer_name}:{sent}"
    body += trailer.encode() + b"\r\n"
    if signed:
        sts = f"AWS4-HMAC-SHA256-TRAILER\n{amz_date}\n{scope}\n{prev}\n{sha((trailer + chr(10)).encode())}"
        tsig = hmac.new(skey, sts.encode(), hashlib.sha256).hexdigest()
        body += f"x-amz-trailer-signature:{tsig}\r\n".encode()
    body += b"\r\n"
    headers["content-length"] = str(len(body))
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={seed}")
    return urllib3.PoolManager().request("PUT", f"{ENDPOINT}/sums/{key}", body=body, headers=headers)


for signed in (False, True):
    for alg in ALGS:
        key = f"trailer-{alg}-{signed}"
        r = trailer_upload(key, DATA, alg, value(alg, DATA), signed)
        assert r.status == 200, (alg, signed, r.status, r.data)
        got = s3.get_object(Bucket="sums", Key=key, ChecksumMode="ENABLED")
        assert got["Body"].read() == DATA
        assert got[f"Checksum{alg}"] == value(alg, DATA), (alg, signed, got)
        bad = f"bad-trailer-{alg}-{signed}"
        r = trailer_upload(bad, DATA, alg, value(alg, b"not the data"), signed)
        assert r.status == 400 and b"BadDigest" in r.data, (alg, signed, r.status, r.data)
        assert missing(bad), (alg, signed)

# -- multipart: per-part checksums, composite and full-object ---------------
part = 5 * 1024 * 1024
body = [bytes([i]) * part for i in range(2)] + [b"tail" * 100]
for alg, kind in [("SHA256", "COMPOSITE"), ("CRC32", "COMPOSITE"), ("CRC32C", "FULL_OBJECT"),
                  ("CRC64NVME", "FULL_OBJECT")]:
    key = f"mpu-{alg}"
    up = s3.create_multipart_upload(Bucket="sums", Key=key, ChecksumAlgorithm=alg,
                                    ChecksumType=kind)
    uid = up["UploadId"]
    parts = []
    for n, chunk in enumerate(body, 1):
        out = s3.upload_part(Bucket="sums", Key=key, UploadId=uid, PartNumber=n, Body=chunk,
                             ChecksumAlgorithm=alg)
        assert out[f"Checksum{alg}"] == value(alg, chunk), (alg, n, out)
        parts.append({"PartNumber": n, "ETag": out["ETag"], f"Checksum{alg}": out[f"Checksum{alg}"]})
    # A part whose named checksum differs is refused.
    wrong = [dict(p) for p in parts]
    wrong[0][f"Checksum{alg}"] = value(alg, b"x")
    assert code(lambda: s3.complete_multipart_upload(
        Bucket="sums", Key=key, UploadId=uid, MultipartUpload={"Parts": wrong})) == "InvalidPart"
    done = s3.complete_multipart_upload(Bucket="sums", Key=key, UploadId=uid,
                                        MultipartUpload={"Parts": parts})
    if kind == "COMPOSITE":
        raw = b"".join(base64.b64decode(value(alg, c)) for c in body)
        want = f"{value(alg, raw)}-{len(body)}"
    else:
        want = value(alg, b"".join(body))
    assert done[f"Checksum{alg}"] == want, (alg, done)
    head = s3.head_object(Bucket="sums", Key=key, ChecksumMode="ENABLED")
    assert head[f"Checksum{alg}"] == want and head["ChecksumType"] == kind, (alg, head)
# A part sent with another algorithm than the upload's is refused.
up = s3.create_multipart_upload(Bucket="sums", Key="mixed", ChecksumAlgorithm="SHA256")
assert code(lambda: s3.upload_part(Bucket="sums", Key="mixed", UploadId=up["UploadId"],
                                   PartNumber=1, Body=b"x", ChecksumAlgorithm="CRC32")) == "InvalidRequest"
# CRC64NVME cannot be composite.
assert code(lambda: s3.create_multipart_upload(Bucket="sums", Key="bad-kind", ChecksumAlgorithm="CRC64NVME",
                                               ChecksumType="COMPOSITE")) == "InvalidRequest"

# -- two writers on one key: the last one wins, both hear 200 ----------------
errors = []


def writer(i):
    c = client()
    for _ in range(20):
        try:
            c.put_object(Bucket="sums", Key="raced", Body=bytes([i]) * (100_000 + i))
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            errors.append(repr(e))


threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors[:3]
final = s3.get_object(Bucket="sums", Key="raced")["Body"].read()
assert len(set(final)) == 1 and len(final) == 100_000 + final[0]
print("checksums: ok")
