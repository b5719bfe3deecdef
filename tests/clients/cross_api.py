"""What one API writes, the other reads identically: content, ETag, user
metadata, content type. boto3 and python-swiftclient against one proxy."""
import os
import boto3
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
print("cross api: ok")
