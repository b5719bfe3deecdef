"""S3 Object Lock with boto3: buckets created with it keep versions;
COMPLIANCE and GOVERNANCE retention and legal holds refuse version
deletes (GOVERNANCE yields to the bypass header); retention cannot be
shortened; a bucket default applies to every write (multipart too); the
Swift API obeys the same lock; a bucket without Object Lock refuses lock
headers."""
from datetime import datetime, timedelta, timezone

from swiftclient.client import ClientException

from s3common import client, code, swift_connection

s3 = client()
swift = swift_connection()


B = "locked"
s3.create_bucket(Bucket=B, ObjectLockEnabledForBucket=True)
assert s3.get_bucket_versioning(Bucket=B)["Status"] == "Enabled"
cfg = s3.get_object_lock_configuration(Bucket=B)["ObjectLockConfiguration"]
assert cfg["ObjectLockEnabled"] == "Enabled" and "Rule" not in cfg, cfg
assert code(lambda: s3.put_bucket_versioning(
    Bucket=B, VersioningConfiguration={"Status": "Suspended"})) == "InvalidBucketState"

until = (datetime.now(timezone.utc) + timedelta(days=1)).replace(microsecond=0)
v = s3.put_object(Bucket=B, Key="c", Body=b"kept", ObjectLockMode="COMPLIANCE",
                  ObjectLockRetainUntilDate=until)["VersionId"]
h = s3.head_object(Bucket=B, Key="c")
assert h["ObjectLockMode"] == "COMPLIANCE" and h["ObjectLockRetainUntilDate"] == until, h
assert code(lambda: s3.delete_object(Bucket=B, Key="c", VersionId=v)) == "AccessDenied"
assert code(lambda: s3.delete_object(Bucket=B, Key="c", VersionId=v,
                                     BypassGovernanceRetention=True)) == "AccessDenied"
many = s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": "c", "VersionId": v}]})
assert many["Errors"][0]["Code"] == "AccessDenied", many
# A DELETE without a version makes a marker; the version stays.
assert s3.delete_object(Bucket=B, Key="c")["DeleteMarker"]
assert s3.get_object(Bucket=B, Key="c", VersionId=v)["Body"].read() == b"kept"
r = s3.get_object_retention(Bucket=B, Key="c", VersionId=v)["Retention"]
assert r["Mode"] == "COMPLIANCE" and r["RetainUntilDate"] == until, r
assert code(lambda: s3.put_object_retention(Bucket=B, Key="c", VersionId=v, Retention={
    "Mode": "COMPLIANCE", "RetainUntilDate": until - timedelta(hours=1)})) == "AccessDenied"
assert code(lambda: s3.put_object_retention(Bucket=B, Key="c", VersionId=v, Retention={
    "Mode": "GOVERNANCE", "RetainUntilDate": until + timedelta(hours=1)})) == "AccessDenied"
later = until + timedelta(days=1)
s3.put_object_retention(Bucket=B, Key="c", VersionId=v,
                        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
assert s3.get_object_retention(Bucket=B, Key="c", VersionId=v)["Retention"]["RetainUntilDate"] == later

# The Swift API obeys the same lock.
try:
    swift.delete_object(B, "c", query_string="version-id=" + v)
    raise AssertionError("Swift deleted a retained version")
except ClientException as e:
    assert e.http_status == 403, e
assert s3.get_object(Bucket=B, Key="c", VersionId=v)["Body"].read() == b"kept"
try:
    swift.put_object(B, "expiring", b"x", headers={"X-Delete-After": "60"})
    raise AssertionError("an expiring object in a locked bucket")
except ClientException as e:
    assert e.http_status == 400, e

# GOVERNANCE yields to the bypass header, and only to it.
g = s3.put_object(Bucket=B, Key="g", Body=b"g", ObjectLockMode="GOVERNANCE",
                  ObjectLockRetainUntilDate=until)["VersionId"]
assert code(lambda: s3.delete_object(Bucket=B, Key="g", VersionId=g)) == "AccessDenied"
assert code(lambda: s3.put_object_retention(Bucket=B, Key="g", VersionId=g, Retention={
    "Mode": "GOVERNANCE", "RetainUntilDate": until - timedelta(hours=1)})) == "AccessDenied"
s3.delete_object(Bucket=B, Key="g", VersionId=g, BypassGovernanceRetention=True)
assert code(lambda: s3.get_object(Bucket=B, Key="g", VersionId=g)) == "NoSuchVersion"

# Legal holds, on and off.
l = s3.put_object(Bucket=B, Key="l", Body=b"l", ObjectLockLegalHoldStatus="ON")["VersionId"]
assert s3.get_object_legal_hold(Bucket=B, Key="l", VersionId=l)["LegalHold"]["Status"] == "ON"
assert code(lambda: s3.delete_object(Bucket=B, Key="l", VersionId=l,
                                     BypassGovernanceRetention=True)) == "AccessDenied"
s3.put_object_legal_hold(Bucket=B, Key="l", VersionId=l, LegalHold={"Status": "OFF"})
s3.delete_object(Bucket=B, Key="l", VersionId=l)

# The bucket's default retention applies to every write.
s3.put_object_lock_configuration(Bucket=B, ObjectLockConfiguration={
    "ObjectLockEnabled": "Enabled",
    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
rule = s3.get_object_lock_configuration(Bucket=B)["ObjectLockConfiguration"]["Rule"]
assert rule["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}, rule
d = s3.put_object(Bucket=B, Key="d", Body=b"d")["VersionId"]
r = s3.get_object_retention(Bucket=B, Key="d", VersionId=d)["Retention"]
assert r["Mode"] == "GOVERNANCE", r
assert timedelta(hours=23) < r["RetainUntilDate"] - datetime.now(timezone.utc) <= timedelta(days=1), r
up = s3.create_multipart_upload(Bucket=B, Key="mp")
part = s3.upload_part(Bucket=B, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"m" * 10)
done = s3.complete_multipart_upload(Bucket=B, Key="mp", UploadId=up["UploadId"], MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
assert s3.head_object(Bucket=B, Key="mp")["ObjectLockMode"] == "GOVERNANCE"
assert code(lambda: s3.delete_object(Bucket=B, Key="mp", VersionId=done["VersionId"])) == "AccessDenied"
# A lock named by a multipart upload or a copy wins over the default.
up = s3.create_multipart_upload(Bucket=B, Key="mpc", ObjectLockMode="COMPLIANCE",
                                ObjectLockRetainUntilDate=until)
part = s3.upload_part(Bucket=B, Key="mpc", UploadId=up["UploadId"], PartNumber=1, Body=b"c" * 10)
s3.complete_multipart_upload(Bucket=B, Key="mpc", UploadId=up["UploadId"], MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
h = s3.head_object(Bucket=B, Key="mpc")
assert h["ObjectLockMode"] == "COMPLIANCE" and h["ObjectLockRetainUntilDate"] == until, h
c = s3.copy_object(Bucket=B, Key="held-copy", CopySource={"Bucket": B, "Key": "d"},
                   ObjectLockLegalHoldStatus="ON")
assert s3.get_object_legal_hold(Bucket=B, Key="held-copy")["LegalHold"]["Status"] == "ON"
assert code(lambda: s3.delete_object(Bucket=B, Key="held-copy", VersionId=c["VersionId"],
                                     BypassGovernanceRetention=True)) == "AccessDenied"
swift.put_object(B, "from-swift", b"s")
assert s3.head_object(Bucket=B, Key="from-swift")["ObjectLockMode"] == "GOVERNANCE"
assert code(lambda: s3.put_object_lock_configuration(Bucket=B, ObjectLockConfiguration={
    "ObjectLockEnabled": "Enabled",
    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}})) in (
    "InvalidArgument", "MalformedXML")

# Without Object Lock: lock headers are refused, and there is no configuration.
s3.create_bucket(Bucket="unlocked")
assert code(lambda: s3.put_object(Bucket="unlocked", Key="x", Body=b"x", ObjectLockMode="GOVERNANCE",
                                  ObjectLockRetainUntilDate=until)) == "InvalidRequest"
assert code(lambda: s3.get_object_lock_configuration(Bucket="unlocked")) == \
    "ObjectLockConfigurationNotFoundError"
assert code(lambda: s3.put_object_lock_configuration(Bucket="unlocked", ObjectLockConfiguration={
    "ObjectLockEnabled": "Enabled"})) == "InvalidBucketState"
print("boto3 object lock: ok")
