"""A Swift client can neither set nor remove the system metadata S3 keeps
on a container (bucket tags, CORS rules): X-Container-Sysmeta-* and
X-Remove-Container-Sysmeta-* are dropped, as Swift's gatekeeper drops them."""
import os

from swiftclient import client as swift

from s3common import client

ENDPOINT = os.environ["NUBO_S3_ENDPOINT"]
s3 = client()
s3.create_bucket(Bucket="guarded")
s3.put_bucket_tagging(Bucket="guarded", Tagging={"TagSet": [{"Key": "team", "Value": "storage"}]})
s3.put_bucket_cors(Bucket="guarded", CORSConfiguration={"CORSRules": [
    {"AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["GET"]}]})

url, token = swift.get_auth(f"{ENDPOINT}/auth/v1.0", "test:tester", "testing")
swift.post_container(url, token, "guarded", headers={
    "X-Remove-Container-Sysmeta-S3-Tagging": "x",
    "X-Container-Sysmeta-S3-Cors": '[{"id":null,"origins":["*"],"methods":["PUT","DELETE"],"headers":["*"],"expose":[],"max_age":null}]',
    "X-Container-Meta-Plain": "kept",
})
assert swift.head_container(url, token, "guarded")["x-container-meta-plain"] == "kept"
tags = s3.get_bucket_tagging(Bucket="guarded")["TagSet"]
assert tags == [{"Key": "team", "Value": "storage"}], tags
rules = s3.get_bucket_cors(Bucket="guarded")["CORSRules"]
assert rules[0]["AllowedOrigins"] == ["https://app.example.com"], rules
assert rules[0]["AllowedMethods"] == ["GET"], rules
print("cross-API sysmeta: ok")
