"""What one API writes, the other reads identically: content, ETag, user
metadata, content type. boto3 and python-swiftclient against one proxy."""
import hashlib
import json
import os

import boto3
import botocore
from swiftclient.client import Connection

ENDPOINT = os.environ["NUBO_S3_ENDPOINT"]
s3 = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id="test:tester",
                  aws_secret_access_key="testing", region_name="us-east-1")
swift = Connection(authurl=ENDPOINT + "/auth/v1.0", user="test:tester", key="testing")

s3.create_bucket(Bucket="cross")
body = os.urandom(300_000)
put = s3.put_object(Bucket="cross", Key="from-s3.bin", Body=body, Metadata={"origin": "boto3"}, ContentType="application/x-s3")
headers, got = swift.get_object("cross", "from-s3.bin")
assert got == body
assert '"' + headers["etag"].strip('"') + '"' == put["ETag"], (headers["etag"], put["ETag"])
assert headers["x-object-meta-origin"] == "boto3"
assert headers["content-type"] == "application/x-s3"

etag = swift.put_object("cross", "from-swift.bin", body[::-1], content_type="application/x-swift", headers={"X-Object-Meta-Origin": "swift"})
o = s3.get_object(Bucket="cross", Key="from-swift.bin")
assert o["Body"].read() == body[::-1]
assert o["ETag"] == '"' + etag + '"'
assert o["Metadata"] == {"origin": "swift"}
assert o["ContentType"] == "application/x-swift"
assert "cross" in [c["name"] for c in swift.get_account()[1]]

# A Swift static large object, seen through S3: listed with the size and
# ETag S3's HEAD gives it; a multipart upload, seen through Swift: listed
# with its total size and the SLO ETag Swift's HEAD gives it.
segs = [os.urandom(100_000), os.urandom(50_000)]
for i, seg in enumerate(segs):
    swift.put_object("cross", f"seg{i}", seg)
manifest = [{"path": f"/cross/seg{i}", "etag": hashlib.md5(seg).hexdigest(), "size_bytes": len(seg)}
            for i, seg in enumerate(segs)]
swift.put_object("cross", "slo", json.dumps(manifest), query_string="multipart-manifest=put")
head = s3.head_object(Bucket="cross", Key="slo")
listed = s3.list_objects_v2(Bucket="cross", Prefix="slo")["Contents"][0]
assert listed["Size"] == head["ContentLength"] == 150_000, (listed, head)
assert listed["ETag"] == head["ETag"], (listed["ETag"], head["ETag"])
up = s3.create_multipart_upload(Bucket="cross", Key="mpu")
part = s3.upload_part(Bucket="cross", Key="mpu", UploadId=up["UploadId"], PartNumber=1, Body=b"m" * 1000)
s3.complete_multipart_upload(Bucket="cross", Key="mpu", UploadId=up["UploadId"],
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
row = [o for o in swift.get_container("cross", prefix="mpu")[1]][0]
swift_head = swift.head_object("cross", "mpu")
assert row["bytes"] == int(swift_head["content-length"]) == 1000, (row, swift_head)
assert row["slo_etag"] == swift_head["etag"], (row, swift_head)
# Swift's middleware applies to S3 writes too: the older versioning mode
# archives an S3 overwrite, and a container quota refuses an S3 PUT.
swift.put_container("cross-archive")
swift.post_container("cross", {"X-Versions-Location": "cross-archive"})
s3.put_object(Bucket="cross", Key="kept", Body=b"first")
s3.put_object(Bucket="cross", Key="kept", Body=b"second")
archived = swift.get_container("cross-archive", prefix="004kept/")[1]
assert len(archived) == 1, archived
assert swift.get_object("cross-archive", archived[0]["name"])[1] == b"first"
swift.post_container("cross", {"X-Remove-Versions-Location": "x"})
swift.put_container("cross-quota", headers={"X-Container-Meta-Quota-Bytes": "10"})
s3.put_object(Bucket="cross-quota", Key="fits", Body=b"12345")
try:
    s3.put_object(Bucket="cross-quota", Key="too-big", Body=b"123456")
    raise AssertionError("an S3 PUT past the container quota")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "EntityTooLarge", e.response
names = [o["name"] for o in swift.get_container("cross-quota")[1]]
assert names == ["fits"], names
print("cross api: ok")
