"""S3 lifecycle with boto3: configurations checked as S3 checks them (bad
input refused, nothing stored), and the storage nodes' worker applying
them, run now as of a later day (`POST /lifecycle?now=` on every node):
expiration by days with prefix, tag and size filters, disabled rules,
noncurrent versions (with NewerNoncurrentVersions), lone delete markers,
incomplete multipart uploads, and versions Object Lock keeps."""
import datetime
import json
import os
import time
import urllib.request

from s3common import client, code

s3 = client()
NODES = os.environ["NUBO_NODE_URLS"].split(",")
DAY = 86400


def run_lifecycle(days_later):
    """One pass on every node, as if `days_later` days had passed; the
    summed statistics."""
    now = int(time.time()) + days_later * DAY
    total = {}
    for n in NODES:
        req = urllib.request.Request(f"{n}/lifecycle?now={now}", method="POST", data=b"")
        with urllib.request.urlopen(req) as r:
            for k, v in json.load(r).items():
                total[k] = total.get(k, 0) + v
    return total


def keys(bucket):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def versions(bucket, key):
    r = s3.list_object_versions(Bucket=bucket, Prefix=key)
    found = [(v["VersionId"], False) for v in r.get("Versions", []) if v["Key"] == key]
    found += [(m["VersionId"], True) for m in r.get("DeleteMarkers", []) if m["Key"] == key]
    return found


def node_metric(name):
    total = 0
    for n in NODES:
        with urllib.request.urlopen(f"{n}/metrics") as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    total += int(line.split()[1])
    return total


# --- Configurations: stored, shown back, and bad ones refused -------------
B = "lc-config"
s3.create_bucket(Bucket=B)
assert code(lambda: s3.get_bucket_lifecycle_configuration(Bucket=B)) == "NoSuchLifecycleConfiguration"
good = [
    {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 1}},
    {"ID": "old-style", "Status": "Disabled", "Prefix": "tmp/",
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
    {"ID": "tagged", "Status": "Enabled",
     "Filter": {"And": {"Prefix": "t/", "Tags": [{"Key": "class", "Value": "scratch"}],
                        "ObjectSizeGreaterThan": 10}},
     "NoncurrentVersionExpiration": {"NoncurrentDays": 3, "NewerNoncurrentVersions": 2}},
    {"ID": "dated", "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}},
     "Expiration": {"Date": datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)}},
    {"ID": "markers", "Status": "Enabled", "Filter": {},
     "Expiration": {"ExpiredObjectDeleteMarker": True}},
]
s3.put_bucket_lifecycle_configuration(Bucket=B, LifecycleConfiguration={"Rules": good})
shown = s3.get_bucket_lifecycle_configuration(Bucket=B)["Rules"]
assert [r["ID"] for r in shown] == [r["ID"] for r in good], shown
assert shown[0]["Filter"] == {"Prefix": "logs/"} and shown[0]["Expiration"] == {"Days": 1}, shown[0]
assert shown[1]["Prefix"] == "tmp/" and shown[1]["Status"] == "Disabled", shown[1]
assert shown[2]["Filter"]["And"]["Tags"] == [{"Key": "class", "Value": "scratch"}], shown[2]
assert shown[2]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 3, "NewerNoncurrentVersions": 2}
assert shown[3]["Expiration"]["Date"].year == 2030, shown[3]
assert shown[4]["Expiration"] == {"ExpiredObjectDeleteMarker": True}, shown[4]
# A rule without an ID gets one.
s3.put_bucket_lifecycle_configuration(Bucket=B, LifecycleConfiguration={"Rules": [
    {"Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 5}}]})
made = s3.get_bucket_lifecycle_configuration(Bucket=B)["Rules"]
assert len(made) == 1 and made[0]["ID"], made
s3.put_bucket_lifecycle_configuration(Bucket=B, LifecycleConfiguration={"Rules": good})

bad = {
    "MalformedXML": [
        {"ID": "no-filter", "Status": "Enabled", "Expiration": {"Days": 1}},
        {"ID": "two-kinds", "Status": "Enabled", "Filter": {"Prefix": ""},
         "Expiration": {"Days": 1, "ExpiredObjectDeleteMarker": True}},
        {"ID": "status", "Status": "enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}},
    ],
    "InvalidArgument": [
        {"ID": "zero", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 0}},
        {"ID": "x" * 256, "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}},
        {"ID": "noon", "Status": "Enabled", "Filter": {"Prefix": ""},
         "Expiration": {"Date": datetime.datetime(2030, 1, 1, 12, tzinfo=datetime.timezone.utc)}},
        {"ID": "nc", "Status": "Enabled", "Filter": {"Prefix": ""},
         "NoncurrentVersionExpiration": {"NoncurrentDays": -1}},
    ],
    "InvalidRequest": [
        {"ID": "no-action", "Status": "Enabled", "Filter": {"Prefix": ""}},
        {"ID": "abort-by-tag", "Status": "Enabled", "Filter": {"Tag": {"Key": "a", "Value": "b"}},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    ],
    "InvalidStorageClass": [
        {"ID": "transition", "Status": "Enabled", "Filter": {"Prefix": ""},
         "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]},
    ],
}
for expected, rules in bad.items():
    for rule in rules:
        got = code(lambda: s3.put_bucket_lifecycle_configuration(
            Bucket=B, LifecycleConfiguration={"Rules": [rule]}))
        assert got == expected, (rule["ID"][:20], got, expected)
dup = [good[0], dict(good[0], Filter={"Prefix": "other/"})]
assert code(lambda: s3.put_bucket_lifecycle_configuration(
    Bucket=B, LifecycleConfiguration={"Rules": dup})) == "InvalidArgument"
# Nothing refused was stored.
assert [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=B)["Rules"]] == [r["ID"] for r in good]
assert code(lambda: s3.put_bucket_lifecycle_configuration(
    Bucket="lc-no-such-bucket", LifecycleConfiguration={"Rules": good})) == "NoSuchBucket"
r = s3.delete_bucket_lifecycle(Bucket=B)
assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
assert code(lambda: s3.get_bucket_lifecycle_configuration(Bucket=B)) == "NoSuchLifecycleConfiguration"

# --- Expiration in an unversioned bucket ----------------------------------
P = "lc-plain"
s3.create_bucket(Bucket=P)
for k in ["logs/a", "logs/b", "data/c", "tmp/untagged", "sized/small"]:
    s3.put_object(Bucket=P, Key=k, Body=b"x")
s3.put_object(Bucket=P, Key="tmp/scratch", Body=b"x", Tagging="class=scratch")
s3.put_object(Bucket=P, Key="sized/big", Body=b"x" * 2000)
s3.put_bucket_lifecycle_configuration(Bucket=P, LifecycleConfiguration={"Rules": [
    {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 1}},
    {"ID": "scratch", "Status": "Enabled",
     "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "class", "Value": "scratch"}]}},
     "Expiration": {"Days": 2}},
    {"ID": "big", "Status": "Enabled",
     "Filter": {"And": {"Prefix": "sized/", "ObjectSizeGreaterThan": 1000}},
     "Expiration": {"Days": 1}},
    {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "data/"}, "Expiration": {"Days": 1}},
]})
# x-amz-expiration on PUT, GET and HEAD: the date and the rule.
r = s3.put_object(Bucket=P, Key="logs/new", Body=b"x")
assert 'rule-id="logs"' in r["Expiration"] and "00:00:00 GMT" in r["Expiration"], r
assert 'rule-id="logs"' in s3.head_object(Bucket=P, Key="logs/new")["Expiration"]
assert 'rule-id="logs"' in s3.get_object(Bucket=P, Key="logs/new")["Expiration"]
assert 'rule-id="scratch"' in s3.head_object(Bucket=P, Key="tmp/scratch")["Expiration"]
for untouched in ["data/c", "tmp/untagged", "sized/small"]:
    assert "Expiration" not in s3.head_object(Bucket=P, Key=untouched), untouched
s3.delete_object(Bucket=P, Key="logs/new")
before = keys(P)
stats = run_lifecycle(0)
assert stats["expired"] == 0 and keys(P) == before, (stats, keys(P))
metric_before = node_metric("nubo_lifecycle_expired_total")
stats = run_lifecycle(3)
assert stats["expired"] == 4, stats
assert keys(P) == ["data/c", "sized/small", "tmp/untagged"], keys(P)
assert node_metric("nubo_lifecycle_expired_total") == metric_before + 4
assert node_metric("nubo_lifecycle_passes_total") >= 2
# A second pass finds nothing more to do.
assert run_lifecycle(3)["expired"] == 0

# --- Versions: noncurrent expiry, delete markers, current expiry ----------
V = "lc-versions"
s3.create_bucket(Bucket=V)
s3.put_bucket_versioning(Bucket=V, VersioningConfiguration={"Status": "Enabled"})
kept = [s3.put_object(Bucket=V, Key="keep1/k", Body=b"%d" % i)["VersionId"] for i in range(3)]
s3.put_object(Bucket=V, Key="all/gone", Body=b"old")
s3.delete_object(Bucket=V, Key="all/gone")      # a marker over one version
s3.delete_object(Bucket=V, Key="all/lone")      # a marker alone
cur = s3.put_object(Bucket=V, Key="cur/c", Body=b"current")["VersionId"]
s3.put_bucket_lifecycle_configuration(Bucket=V, LifecycleConfiguration={"Rules": [
    {"ID": "keep-one", "Status": "Enabled", "Filter": {"Prefix": "keep1/"},
     "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}},
    {"ID": "all", "Status": "Enabled", "Filter": {"Prefix": "all/"},
     "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
     "Expiration": {"ExpiredObjectDeleteMarker": True}},
    {"ID": "current", "Status": "Enabled", "Filter": {"Prefix": "cur/"}, "Expiration": {"Days": 1}},
]})
stats = run_lifecycle(0)
assert stats["noncurrent_expired"] == 0 and stats["expired"] == 0, stats
# The lone marker is removed at once (it expires by being alone).
assert stats["delete_markers_removed"] == 1 and versions(V, "all/lone") == [], stats
stats = run_lifecycle(3)
assert stats["noncurrent_expired"] == 2, stats  # keep1/k's oldest, all/gone's only version
assert stats["delete_markers_removed"] == 1, stats  # all/gone's marker, then alone
assert stats["expired"] == 1, stats
assert sorted(v for v, _ in versions(V, "keep1/k")) == sorted(kept[1:]), versions(V, "keep1/k")
assert s3.get_object(Bucket=V, Key="keep1/k")["Body"].read() == b"2"
assert versions(V, "all/gone") == []
# The current version of cur/c is kept behind a delete marker.
cv = versions(V, "cur/c")
assert sorted(cv, key=lambda v: v[1]) == [(cur, False), (cv[-1][0], True)] and len(cv) == 2, cv
assert code(lambda: s3.get_object(Bucket=V, Key="cur/c")) == "NoSuchKey"
assert s3.get_object(Bucket=V, Key="cur/c", VersionId=cur)["Body"].read() == b"current"

# --- Object Lock keeps what the rules would remove ------------------------
L = "lc-locked"
s3.create_bucket(Bucket=L, ObjectLockEnabledForBucket=True)
until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
locked = s3.put_object(Bucket=L, Key="k", Body=b"kept", ObjectLockMode="GOVERNANCE",
                       ObjectLockRetainUntilDate=until)["VersionId"]
s3.put_object(Bucket=L, Key="k", Body=b"newer")
s3.put_bucket_lifecycle_configuration(Bucket=L, LifecycleConfiguration={"Rules": [
    {"ID": "nc", "Status": "Enabled", "Filter": {"Prefix": ""},
     "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
stats = run_lifecycle(3)
assert stats["retained"] == 1 and stats["noncurrent_expired"] == 0, stats
assert s3.get_object(Bucket=L, Key="k", VersionId=locked)["Body"].read() == b"kept"

# --- Incomplete multipart uploads -----------------------------------------
M = "lc-uploads"
s3.create_bucket(Bucket=M)
old = s3.create_multipart_upload(Bucket=M, Key="tmp/u1")["UploadId"]
s3.upload_part(Bucket=M, Key="tmp/u1", UploadId=old, PartNumber=1, Body=b"part")
other = s3.create_multipart_upload(Bucket=M, Key="keep/u2")["UploadId"]
s3.put_bucket_lifecycle_configuration(Bucket=M, LifecycleConfiguration={"Rules": [
    {"ID": "abort", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})
assert run_lifecycle(0)["uploads_aborted"] == 0
assert run_lifecycle(3)["uploads_aborted"] == 1
left = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=M).get("Uploads", [])]
assert left == [other], left
assert code(lambda: s3.list_parts(Bucket=M, Key="tmp/u1", UploadId=old)) == "NoSuchUpload"
assert code(lambda: s3.complete_multipart_upload(
    Bucket=M, Key="tmp/u1", UploadId=old,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": "x"}]})) == "NoSuchUpload"
# --- A Date rule: due once its day has come --------------------------------
T = "lc-dated"
s3.create_bucket(Bucket=T)
s3.put_object(Bucket=T, Key="old", Body=b"x")
s3.put_bucket_lifecycle_configuration(Bucket=T, LifecycleConfiguration={"Rules": [
    {"ID": "past", "Status": "Enabled", "Filter": {"Prefix": ""},
     "Expiration": {"Date": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)}}]})
# Nothing else anywhere is due today, so this pass expires exactly it.
assert run_lifecycle(0)["expired"] == 1
assert keys(T) == []
print("lifecycle: ok")
