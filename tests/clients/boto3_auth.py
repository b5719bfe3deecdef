"""SigV4 at the edges: presigned GET/PUT fetched with plain HTTP, expiry,
tampered bodies, bad digests, virtual-host addressing, request ids."""
import base64
import os
import time
from urllib.parse import urlparse

import boto3
import botocore
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from s3common import ENDPOINT, client, code

PORT = urlparse(ENDPOINT).port
s3 = client(signature_version="s3v4")
http = urllib3.PoolManager()

s3.create_bucket(Bucket="auth-edges")
s3.put_object(Bucket="auth-edges", Key="k", Body=b"presigned content")

url = s3.generate_presigned_url("get_object", Params={"Bucket": "auth-edges", "Key": "k"}, ExpiresIn=60)
assert "X-Amz-Signature" in url
r = http.request("GET", url)
assert r.status == 200 and r.data == b"presigned content", (r.status, r.data)
assert r.headers.get("x-amz-request-id")

put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "auth-edges", "Key": "uploaded"}, ExpiresIn=60)
r = http.request("PUT", put_url, body=b"sent with a presigned PUT")
assert r.status == 200, (r.status, r.data)
assert s3.get_object(Bucket="auth-edges", Key="uploaded")["Body"].read() == b"sent with a presigned PUT"

tampered = url.replace("X-Amz-Expires=60", "X-Amz-Expires=600")
r = http.request("GET", tampered)
assert r.status == 403 and b"SignatureDoesNotMatch" in r.data, (r.status, r.data)

short = s3.generate_presigned_url("get_object", Params={"Bucket": "auth-edges", "Key": "k"}, ExpiresIn=1)
time.sleep(2.1)
r = http.request("GET", short)
assert r.status == 403 and b"AccessDenied" in r.data, (r.status, r.data)

# A signed payload hash that does not match the body that arrives.
creds = Credentials("test:tester", "testing")
req = AWSRequest(method="PUT", url=f"{ENDPOINT}/auth-edges/tampered", data=b"the signed body")
S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
headers = dict(req.headers.items())
assert headers["X-Amz-Content-SHA256"] != "UNSIGNED-PAYLOAD"
r = http.request("PUT", f"{ENDPOINT}/auth-edges/tampered", body=b"THE SIGNED BODY", headers=headers)
assert r.status == 400 and (b"XAmzContentSHA256Mismatch" in r.data or b"BadDigest" in r.data), (r.status, r.data)
assert code(lambda: s3.head_object(Bucket="auth-edges", Key="tampered")) in ("404", "NoSuchKey")

wrong_md5 = base64.b64encode(b"\0" * 16).decode()
assert code(lambda: s3.put_object(Bucket="auth-edges", Key="md5", Body=b"x", ContentMD5=wrong_md5)) == "BadDigest"
assert code(lambda: s3.head_object(Bucket="auth-edges", Key="md5")) in ("404", "NoSuchKey")
good_md5 = base64.b64encode(bytes.fromhex("9dd4e461268c8034f5c8564e155c67a6")).decode()  # md5("x")
s3.put_object(Bucket="auth-edges", Key="md5", Body=b"x", ContentMD5=good_md5)

# Virtual-host style: the bucket in the Host header.
host = f"auth-edges.s3.localhost:{PORT}"
req = AWSRequest(method="GET", url=f"http://{host}/k")
S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
pool = urllib3.HTTPConnectionPool("127.0.0.1", PORT)
r = pool.request("GET", "/k", headers=dict(req.headers.items()) | {"Host": host})
assert r.status == 200 and r.data == b"presigned content", (r.status, r.data)
print("boto3 auth: ok")
