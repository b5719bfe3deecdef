"""The S3 edges clients hit: an empty delimiter, the stored content headers,
object and bucket tags, CORS,
presigned URL limits and expiry (SigV4 and SigV2), SigV4 with Date instead of
X-Amz-Date, DeleteObjects limits, error bodies that name their request, and
UploadPartCopy ranges outside the source."""
import datetime
import hashlib
import hmac
import time
from urllib.parse import urlparse

import urllib3

from s3common import ENDPOINT, client, code

http = urllib3.PoolManager()
s3 = client()
s3.create_bucket(Bucket="edges")
for k in ["a/1", "a/2", "b", "c/d/e"]:
    s3.put_object(Bucket="edges", Key=k, Body=b"x")

# An empty delimiter is no delimiter.
out = s3.list_objects_v2(Bucket="edges", Delimiter="")
assert [o["Key"] for o in out["Contents"]] == ["a/1", "a/2", "b", "c/d/e"], out
assert not out.get("CommonPrefixes"), out
out = s3.list_objects(Bucket="edges", Delimiter="")
assert len(out["Contents"]) == 4 and not out.get("CommonPrefixes"), out

# Content headers are stored and returned on GET and HEAD.
expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
s3.put_object(Bucket="edges", Key="headers", Body=b"x", CacheControl="max-age=60",
              ContentDisposition='attachment; filename="x.bin"', ContentEncoding="identity",
              ContentLanguage="de", Expires=expires)
for got in (s3.head_object(Bucket="edges", Key="headers"), s3.get_object(Bucket="edges", Key="headers")):
    assert got["CacheControl"] == "max-age=60", got
    assert got["ContentDisposition"] == 'attachment; filename="x.bin"', got
    assert got["ContentEncoding"] == "identity", got
    assert got["ContentLanguage"] == "de", got
    assert got["Expires"] == expires, got

# Presigned URLs (SigV4): at most a week; an expired PUT is refused. boto3
# presigns with SigV2 unless told otherwise: that is checked below.
v4 = client(signature_version="s3v4")
week = 7 * 24 * 3600
ok = v4.generate_presigned_url("get_object", Params={"Bucket": "edges", "Key": "b"}, ExpiresIn=week)
assert http.request("GET", ok).status == 200
too_long = v4.generate_presigned_url("get_object", Params={"Bucket": "edges", "Key": "b"}, ExpiresIn=week + 1)
# botocore will not sign a negative expiry: the URL is edited (the check
# comes before the signature's).
negative = ok.replace(f"X-Amz-Expires={week}", "X-Amz-Expires=-5")
assert negative != ok
for bad, url in ((week + 1, too_long), (-5, negative)):
    r = http.request("GET", url)
    assert r.status == 403 and b"AuthorizationQueryParametersError" in r.data, (bad, r.status, r.data)
    assert b"<RequestId>" in r.data
put = v4.generate_presigned_url("put_object", Params={"Bucket": "edges", "Key": "late"}, ExpiresIn=1)
time.sleep(2.5)
r = http.request("PUT", put, body=b"too late")
assert r.status == 403, (r.status, r.data)
assert code(lambda: s3.head_object(Bucket="edges", Key="late")) in ("404", "NoSuchKey")
v2 = client(signature_version="s3")
url = v2.generate_presigned_url("get_object", Params={"Bucket": "edges", "Key": "b"}, ExpiresIn=60)
assert "Signature=" in url and "X-Amz-" not in url, url
assert "Signature=" in s3.generate_presigned_url("get_object", Params={"Bucket": "edges", "Key": "b"})
assert http.request("GET", url).status == 200
assert http.request("GET", url.replace("Signature=", "Signature=A")).status == 403
url = v2.generate_presigned_url("get_object", Params={"Bucket": "edges", "Key": "b"}, ExpiresIn=1)
time.sleep(2.5)
assert http.request("GET", url).status == 403
# SigV2 in the Authorization header.
assert v2.get_object(Bucket="edges", Key="b")["Body"].read() == b"x"


# SigV4 with Date rather than X-Amz-Date.
def hm(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


now = datetime.datetime.now(datetime.timezone.utc)
amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
headers = {"host": urlparse(ENDPOINT).netloc, "date": now.strftime("%a, %d %b %Y %H:%M:%S GMT"),
           "x-amz-content-sha256": hashlib.sha256(b"").hexdigest()}
names = sorted(headers)
canonical = "\n".join(["GET", "/edges/b", "", "".join(f"{h}:{headers[h]}\n" for h in names), ";".join(names),
                       headers["x-amz-content-sha256"]])
scope = f"{day}/us-east-1/s3/aws4_request"
to_sign = f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
key = hm(hm(hm(hm(b"AWS4testing", day), "us-east-1"), "s3"), "aws4_request")
sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential=test:tester/{scope}, "
                            f"SignedHeaders={';'.join(names)}, Signature={sig}")
r = http.request("GET", f"{ENDPOINT}/edges/b", headers=headers)
assert r.status == 200 and r.data == b"x", (r.status, r.data)

# DeleteObjects takes at most 1000 keys.
many = {"Objects": [{"Key": f"k{i}"} for i in range(1001)]}
assert code(lambda: s3.delete_objects(Bucket="edges", Delete=many)) == "MalformedXML"

# Error bodies name their resource and request: the store's errors and s3s's.
missing = s3.generate_presigned_url("get_object", Params={"Bucket": "edges", "Key": "missing"})
r = http.request("GET", missing)
assert r.status == 404 and b"<RequestId>" in r.data and b"<Resource>/edges/missing</Resource>" in r.data, r.data
sig = ok.split("X-Amz-Signature=")[1][:64]
r = http.request("GET", ok.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:]))
assert r.status == 403 and b"<RequestId>" in r.data, r.data

# UploadPartCopy of a range outside the source.
s3.put_object(Bucket="edges", Key="src", Body=b"0123456789")
up = s3.create_multipart_upload(Bucket="edges", Key="dst")["UploadId"]
for bad in ("bytes=5-10", "bytes=10-12"):
    assert code(lambda: s3.upload_part_copy(Bucket="edges", Key="dst", UploadId=up, PartNumber=1,
                                            CopySource={"Bucket": "edges", "Key": "src"},
                                            CopySourceRange=bad)) == "InvalidRange", bad
part = s3.upload_part_copy(Bucket="edges", Key="dst", UploadId=up, PartNumber=1,
                           CopySource={"Bucket": "edges", "Key": "src"}, CopySourceRange="bytes=2-9")
s3.complete_multipart_upload(Bucket="edges", Key="dst", UploadId=up, MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
assert s3.get_object(Bucket="edges", Key="dst")["Body"].read() == b"23456789"

# Object tags: set with the object, on their own, copied, and removed.
def tags(key):
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket="edges", Key=key)["TagSet"]}


s3.put_object(Bucket="edges", Key="tagged", Body=b"data", Tagging="a=1&b=two%20words",
              Metadata={"owner": "me"})
assert tags("tagged") == {"a": "1", "b": "two words"}
assert s3.get_object(Bucket="edges", Key="tagged")["TagCount"] == 2
s3.put_object_tagging(Bucket="edges", Key="tagged", Tagging={"TagSet": [{"Key": "c", "Value": "3"}]})
assert tags("tagged") == {"c": "3"}
# Tagging touches neither the data nor the user metadata.
got = s3.get_object(Bucket="edges", Key="tagged")
assert got["Body"].read() == b"data" and got["Metadata"] == {"owner": "me"}, got
s3.copy_object(Bucket="edges", Key="tag-copy", CopySource={"Bucket": "edges", "Key": "tagged"})
assert tags("tag-copy") == {"c": "3"}
s3.copy_object(Bucket="edges", Key="tag-copy2", CopySource={"Bucket": "edges", "Key": "tagged"},
               TaggingDirective="REPLACE", Tagging="x=y")
assert tags("tag-copy2") == {"x": "y"}
s3.delete_object_tagging(Bucket="edges", Key="tagged")
assert tags("tagged") == {}
assert "TagCount" not in s3.get_object(Bucket="edges", Key="tagged")
eleven = {"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}
assert code(lambda: s3.put_object_tagging(Bucket="edges", Key="tagged", Tagging=eleven)) == "InvalidTag"
assert code(lambda: s3.put_object(Bucket="edges", Key="dup", Body=b"x", Tagging="a=1&a=2")) == "InvalidTag"
assert code(lambda: s3.get_object_tagging(Bucket="edges", Key="missing")) == "NoSuchKey"
up = s3.create_multipart_upload(Bucket="edges", Key="mpu-tagged", Tagging="m=p")["UploadId"]
e = s3.upload_part(Bucket="edges", Key="mpu-tagged", UploadId=up, PartNumber=1, Body=b"z")["ETag"]
s3.complete_multipart_upload(Bucket="edges", Key="mpu-tagged", UploadId=up,
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
assert tags("mpu-tagged") == {"m": "p"}

# Bucket tags.
assert code(lambda: s3.get_bucket_tagging(Bucket="edges")) == "NoSuchTagSet"
s3.put_bucket_tagging(Bucket="edges", Tagging={"TagSet": [{"Key": "team", "Value": "storage"},
                                                          {"Key": "cost", "Value": "42"}]})
got = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket="edges")["TagSet"]}
assert got == {"team": "storage", "cost": "42"}, got
fifty_one = {"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(51)]}
assert code(lambda: s3.put_bucket_tagging(Bucket="edges", Tagging=fifty_one)) == "InvalidTag"
s3.delete_bucket_tagging(Bucket="edges")
assert code(lambda: s3.get_bucket_tagging(Bucket="edges")) == "NoSuchTagSet"
assert code(lambda: s3.get_bucket_tagging(Bucket="no-such-bucket")) == "NoSuchBucket"


# CORS: rules, preflights answered without credentials, headers on answers.
def preflight(origin, method, headers=None, key="edges/b"):
    h = {"Access-Control-Request-Method": method}
    if origin:
        h["Origin"] = origin
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return http.request("OPTIONS", f"{ENDPOINT}/{key}", headers=h)


assert code(lambda: s3.get_bucket_cors(Bucket="edges")) == "NoSuchCORSConfiguration"
assert preflight("https://app.example.com", "GET").status == 403
s3.put_bucket_cors(Bucket="edges", CORSConfiguration={"CORSRules": [{
    "AllowedOrigins": ["https://*.example.com"], "AllowedMethods": ["GET", "PUT"],
    "AllowedHeaders": ["x-amz-*", "content-type"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600}]})
rules = s3.get_bucket_cors(Bucket="edges")["CORSRules"]
assert rules[0]["AllowedOrigins"] == ["https://*.example.com"] and rules[0]["MaxAgeSeconds"] == 600, rules
r = preflight("https://app.example.com", "PUT", "Content-Type, X-Amz-Date")
assert r.status == 200, (r.status, r.data)
assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
assert "PUT" in r.headers["Access-Control-Allow-Methods"] and r.headers["Access-Control-Max-Age"] == "600"
assert r.headers["Access-Control-Allow-Headers"] == "content-type, x-amz-date"
assert preflight("https://evil.test", "GET").status == 403
assert preflight("https://app.example.com", "DELETE").status == 403
assert preflight("https://app.example.com", "GET", "authorization").status == 403
assert preflight(None, "GET").status == 400
# An answer to a request with an allowed Origin carries the CORS headers.
url = v4.generate_presigned_url("get_object", Params={"Bucket": "edges", "Key": "b"})
r = http.request("GET", url, headers={"Origin": "https://app.example.com"})
assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example.com", r.headers
assert r.headers["Access-Control-Expose-Headers"] == "ETag"
r = http.request("GET", url, headers={"Origin": "https://evil.test"})
assert "Access-Control-Allow-Origin" not in r.headers
bad = {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]}
assert code(lambda: s3.put_bucket_cors(Bucket="edges", CORSConfiguration=bad)) == "InvalidRequest"
s3.delete_bucket_cors(Bucket="edges")
assert code(lambda: s3.get_bucket_cors(Bucket="edges")) == "NoSuchCORSConfiguration"
assert preflight("https://app.example.com", "GET").status == 403
print("edges: ok")
