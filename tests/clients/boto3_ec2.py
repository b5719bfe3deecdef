"""boto3 with an EC2 credential made through `nubo identity credential
create`: S3 requests signed with it reach the credential's project's
account, and nothing else."""
import os

import boto3
import botocore
from botocore.config import Config

ENDPOINT = os.environ["NUBO_S3_ENDPOINT"]


def client(access, secret):
    return boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=access,
                        aws_secret_access_key=secret, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}))


def code(fn):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("expected an error")


s3 = client(os.environ["NUBO_EC2_ACCESS"], os.environ["NUBO_EC2_SECRET"])
s3.create_bucket(Bucket="ec2-bucket")
s3.put_object(Bucket="ec2-bucket", Key="k", Body=b"hello from ec2")
assert s3.get_object(Bucket="ec2-bucket", Key="k")["Body"].read() == b"hello from ec2"
names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
assert names == ["ec2-bucket"], names
# The dev key's account (project test) is another project: its buckets
# are not this credential's.
dev = client("test:tester", "testing")
dev.create_bucket(Bucket="dev-bucket")
assert code(lambda: s3.list_objects_v2(Bucket="dev-bucket")) in ("AccessDenied", "NoSuchBucket")
# A wrong secret for a real access key, and an unknown access key.
assert code(lambda: client(os.environ["NUBO_EC2_ACCESS"], "wrong").list_buckets()) == "SignatureDoesNotMatch"
assert code(lambda: client("nope:" + "0" * 32, "x").list_buckets()) == "InvalidAccessKeyId"
print("boto3 with an EC2 credential: ok")
