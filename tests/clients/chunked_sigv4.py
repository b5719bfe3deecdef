"""aws-chunked uploads with per-chunk signatures
(STREAMING-AWS4-HMAC-SHA256-PAYLOAD), which no installed client sends by
default, built by hand from the SigV4 spec: a good upload is stored, a
chunk with a forged signature is refused and nothing is stored."""
import datetime
import hashlib
import hmac
from urllib.parse import urlparse

import urllib3

from s3common import ENDPOINT, client, code

ACCESS, SECRET, REGION = "test:tester", "testing", "us-east-1"
host = urlparse(ENDPOINT).netloc
s3 = client()
s3.create_bucket(Bucket="chunked")


def sha(b):
    return hashlib.sha256(b).hexdigest()


def hm(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def upload(key, chunks, forge_chunk=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/{REGION}/s3/aws4_request"
    signing_key = hm(hm(hm(hm(("AWS4" + SECRET).encode(), day), REGION), "s3"), "aws4_request")
    decoded = sum(len(c) for c in chunks)
    # Framed length: each chunk "<hex len>;chunk-signature=<64>\r\n<data>\r\n", then the final empty chunk.
    def frame_len(n):
        return len(f"{n:x};chunk-signature=") + 64 + 2 + n + 2
    total = sum(frame_len(len(c)) for c in chunks) + frame_len(0)
    headers = {
        "host": host,
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-date": amz_date,
        "x-amz-decoded-content-length": str(decoded),
        "content-encoding": "aws-chunked",
        "content-length": str(total),
    }
    signed = sorted(headers)
    canonical = "\n".join(["PUT", f"/chunked/{key}", "",
                           "".join(f"{h}:{headers[h]}\n" for h in signed), ";".join(signed),
                           "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"])
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{sha(canonical.encode())}"
    seed = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS}/{scope}, "
                                f"SignedHeaders={';'.join(signed)}, Signature={seed}")
    body, prev = b"", seed
    for i, c in enumerate(chunks + [b""]):
        sts = f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{prev}\n{sha(b'')}\n{sha(c)}"
        sig = hmac.new(signing_key, sts.encode(), hashlib.sha256).hexdigest()
        if forge_chunk == i:
            sig = "0" * 64
        body += f"{len(c):x};chunk-signature={sig}\r\n".encode() + c + b"\r\n"
        prev = sig
    assert len(body) == total
    return urllib3.PoolManager().request("PUT", f"{ENDPOINT}/chunked/{key}", body=body, headers=headers)


chunks = [b"a" * 65536, b"b" * 65536, b"tail"]
r = upload("good", chunks)
assert r.status == 200, (r.status, r.data)
assert s3.get_object(Bucket="chunked", Key="good")["Body"].read() == b"".join(chunks)
r = upload("forged", chunks, forge_chunk=1)
assert r.status in (400, 403), (r.status, r.data)
assert code(lambda: s3.head_object(Bucket="chunked", Key="forged")) in ("404", "NoSuchKey")
print("chunked sigv4: ok")
