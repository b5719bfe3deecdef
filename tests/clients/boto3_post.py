"""Browser POST uploads (S3's POST Object with a signed policy), as a web
form sends them, from boto3's generate_presigned_post: the policy's
conditions hold (content-length-range, starts-with on the key),
`${filename}` takes the file's name, `success_action_status` picks the
answer, and a tampered or expired policy stores nothing."""
import base64
import json
import time

import urllib3

from s3common import client, code

s3 = client(signature_version="s3v4")
s3.create_bucket(Bucket="forms")
http = urllib3.PoolManager()


def post(p, data, filename="photo.jpg", **extra):
    fields = dict(p["fields"])
    fields.update(extra)
    fields["file"] = (filename, data)
    return http.request("POST", p["url"], fields=fields)


# A plain upload: 204 by default, stored as sent.
p = s3.generate_presigned_post("forms", "uploads/one.txt")
r = post(p, b"hello from a form")
assert r.status == 204, (r.status, r.data)
assert s3.get_object(Bucket="forms", Key="uploads/one.txt")["Body"].read() == b"hello from a form"

# ${filename}, a starts-with condition, and success_action_status=201.
p = s3.generate_presigned_post(
    "forms", "user/${filename}",
    Fields={"success_action_status": "201"},
    Conditions=[["starts-with", "$key", "user/"], {"success_action_status": "201"},
                ["content-length-range", 1, 1000]])
r = post(p, b"jpeg bytes", filename="cat.jpg")
assert r.status == 201 and b"<Key>user/cat.jpg</Key>" in r.data, (r.status, r.data)
assert s3.get_object(Bucket="forms", Key="user/cat.jpg")["Body"].read() == b"jpeg bytes"

# Too large for content-length-range: refused, nothing stored.
r = post(p, b"x" * 2000, filename="big.jpg")
assert r.status in (400, 403), (r.status, r.data)
assert code(lambda: s3.head_object(Bucket="forms", Key="user/big.jpg")) in ("404", "NoSuchKey")

# A key outside the policy's prefix: refused.
bad = dict(p["fields"])
bad["key"] = "elsewhere/x"
r = http.request("POST", p["url"], fields={**bad, "file": ("x", b"x")})
assert r.status == 403, (r.status, r.data)
assert code(lambda: s3.head_object(Bucket="forms", Key="elsewhere/x")) in ("404", "NoSuchKey")

# A tampered policy (still a valid document, so its signature fails): 403.
p = s3.generate_presigned_post("forms", "tampered", Conditions=[["content-length-range", 1, 10]])
doc = json.loads(base64.b64decode(p["fields"]["policy"]))
doc["conditions"] = [c for c in doc["conditions"] if not (isinstance(c, list) and c[0] == "content-length-range")]
forged = base64.b64encode(json.dumps(doc).encode()).decode()
r = post(p, b"x" * 100, policy=forged)
assert r.status == 403, (r.status, r.data)
# An unreadable one: 400 InvalidPolicyDocument.
r = post(p, b"x", policy="not a policy")
assert r.status == 400 and b"InvalidPolicyDocument" in r.data, (r.status, r.data)
assert code(lambda: s3.head_object(Bucket="forms", Key="tampered")) in ("404", "NoSuchKey")

# An expired policy: refused.
p = s3.generate_presigned_post("forms", "late", ExpiresIn=1)
time.sleep(2.5)
r = post(p, b"x")
assert r.status == 403, (r.status, r.data)
assert code(lambda: s3.head_object(Bucket="forms", Key="late")) in ("404", "NoSuchKey")
print("post uploads: ok")
