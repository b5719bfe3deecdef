"""boto3 with EC2 credentials made through `nubo identity credential
create`: S3 requests signed with one reach the credential's project's
account, and nothing else; a `reader`'s credential reads and writes
nothing."""
import os

import boto3
from botocore.config import Config

from s3common import ENDPOINT, code
from s3common import client as dev_client


def client(access, secret):
    return boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id=access,
                        aws_secret_access_key=secret, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}))


s3 = client(os.environ["NUBO_EC2_ACCESS"], os.environ["NUBO_EC2_SECRET"])
s3.create_bucket(Bucket="ec2-bucket")
s3.put_object(Bucket="ec2-bucket", Key="k", Body=b"hello from ec2")
assert s3.get_object(Bucket="ec2-bucket", Key="k")["Body"].read() == b"hello from ec2"
names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
assert names == ["ec2-bucket"], names
# The dev key's account (project test) is another project: its buckets
# are not this credential's.
dev_client().create_bucket(Bucket="dev-bucket")
assert code(lambda: s3.list_objects_v2(Bucket="dev-bucket")) in ("AccessDenied", "NoSuchBucket")
# A wrong secret for a real access key, and an unknown access key.
assert code(lambda: client(os.environ["NUBO_EC2_ACCESS"], "wrong").list_buckets()) == "SignatureDoesNotMatch"
assert code(lambda: client("nope:" + "0" * 32, "x").list_buckets()) == "InvalidAccessKeyId"
# A reader of the same project reads, and writes nothing.
reader = client(os.environ["NUBO_EC2_READER_ACCESS"], os.environ["NUBO_EC2_READER_SECRET"])
assert reader.get_object(Bucket="ec2-bucket", Key="k")["Body"].read() == b"hello from ec2"
assert [o["Key"] for o in reader.list_objects_v2(Bucket="ec2-bucket")["Contents"]] == ["k"]
assert code(lambda: reader.put_object(Bucket="ec2-bucket", Key="r", Body=b"r")) == "AccessDenied"
assert code(lambda: reader.delete_object(Bucket="ec2-bucket", Key="k")) == "AccessDenied"
assert code(lambda: reader.create_bucket(Bucket="reader-bucket")) == "AccessDenied"
print("boto3 with EC2 credentials: ok")
