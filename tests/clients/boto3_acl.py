"""Canned ACLs: private and public-read on buckets and objects, what an
unsigned (anonymous) request may then read, through S3 and through Swift,
and the ACLs Nubo does not keep refused with S3's codes."""
import urllib.error
import urllib.request

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from s3common import ENDPOINT, client, code

s3 = client()
anon = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                    config=Config(signature_version=UNSIGNED))


def swift_anonymous(path):
    """The status of an unauthenticated Swift GET."""
    try:
        return urllib.request.urlopen(f"{ENDPOINT}/v1/AUTH_test/{path}").status
    except urllib.error.HTTPError as e:
        return e.code


# Objects in a private bucket: only a public-read object is readable.
s3.create_bucket(Bucket="acl-private")
s3.put_object(Bucket="acl-private", Key="secret", Body=b"no")
s3.put_object(Bucket="acl-private", Key="open", Body=b"yes", ACL="public-read")
assert code(lambda: anon.get_object(Bucket="acl-private", Key="secret")) == "AccessDenied"
assert anon.get_object(Bucket="acl-private", Key="open")["Body"].read() == b"yes"
assert anon.head_object(Bucket="acl-private", Key="open")["ContentLength"] == 3
assert code(lambda: anon.list_objects_v2(Bucket="acl-private")) == "AccessDenied"
assert code(lambda: anon.put_object(Bucket="acl-private", Key="x", Body=b"x")) == "AccessDenied"
assert code(lambda: anon.delete_object(Bucket="acl-private", Key="open")) == "AccessDenied"
grants = s3.get_object_acl(Bucket="acl-private", Key="open")["Grants"]
assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ"
           for g in grants), grants
assert len(s3.get_object_acl(Bucket="acl-private", Key="secret")["Grants"]) == 1
s3.put_object_acl(Bucket="acl-private", Key="open", ACL="private")
assert code(lambda: anon.get_object(Bucket="acl-private", Key="open")) == "AccessDenied"
s3.put_object_acl(Bucket="acl-private", Key="secret", ACL="public-read")
assert anon.get_object(Bucket="acl-private", Key="secret")["Body"].read() == b"no"

# A public-read bucket: anyone reads and lists it, through both APIs.
s3.create_bucket(Bucket="acl-public", ACL="public-read")
s3.put_object(Bucket="acl-public", Key="a", Body=b"A")
assert anon.get_object(Bucket="acl-public", Key="a")["Body"].read() == b"A"
assert [o["Key"] for o in anon.list_objects_v2(Bucket="acl-public")["Contents"]] == ["a"]
assert swift_anonymous("acl-public/a") == 200
grants = s3.get_bucket_acl(Bucket="acl-public")["Grants"]
assert [g["Permission"] for g in grants] == ["FULL_CONTROL", "READ"], grants
s3.put_bucket_acl(Bucket="acl-public", ACL="private")
assert code(lambda: anon.get_object(Bucket="acl-public", Key="a")) == "AccessDenied"
assert swift_anonymous("acl-public/a") == 401
assert len(s3.get_bucket_acl(Bucket="acl-public")["Grants"]) == 1

# What Nubo does not keep, and strangers.
assert code(lambda: s3.put_bucket_acl(Bucket="acl-public", ACL="public-read-write")) == "NotImplemented"
assert code(lambda: s3.put_bucket_acl(Bucket="acl-public", ACL="no-such-acl")) == "InvalidArgument"
assert code(lambda: s3.put_bucket_acl(Bucket="acl-public", GrantRead="uri=http://acs.amazonaws.com/groups/global/AllUsers")) == "NotImplemented"
assert code(lambda: anon.get_object(Bucket="no-such-bucket-at-all", Key="k")) == "AccessDenied"
assert code(lambda: anon.list_buckets()) == "AccessDenied"
print("boto3 ACLs: ok")
