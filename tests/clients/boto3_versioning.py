"""S3 versioning with boto3: enabling and suspending, version ids on every
write, reads and deletes of versions, delete markers, ListObjectVersions
(with paging and prefixes), multipart uploads and copies as versions, and
the clean-up conformance suites do (delete every version, then the
bucket). The same versions through python-swiftclient."""
import hashlib
import random
import time

from s3common import client, code, pages, swift_connection

s3 = client()
swift = swift_connection()


B = "versioned"
s3.create_bucket(Bucket=B)
assert "Status" not in s3.get_bucket_versioning(Bucket=B)
s3.put_object(Bucket=B, Key="k", Body=b"before")  # the null version
s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
assert s3.get_bucket_versioning(Bucket=B)["Status"] == "Enabled"

ids = []
for body in [b"one", b"two", b"three"]:
    r = s3.put_object(Bucket=B, Key="k", Body=body)
    assert r.get("VersionId") not in (None, "null"), r
    ids.append(r["VersionId"])
assert len(set(ids)) == 3
got = s3.get_object(Bucket=B, Key="k")
assert got["Body"].read() == b"three" and got["VersionId"] == ids[2], got
for vid, body in zip(ids, [b"one", b"two", b"three"]):
    o = s3.get_object(Bucket=B, Key="k", VersionId=vid)
    assert o["Body"].read() == body and o["VersionId"] == vid
    assert s3.head_object(Bucket=B, Key="k", VersionId=vid)["ContentLength"] == len(body)
assert s3.get_object(Bucket=B, Key="k", VersionId="null")["Body"].read() == b"before"
assert code(lambda: s3.get_object(Bucket=B, Key="k", VersionId="1234567890.12345")) == "NoSuchVersion"

listed = s3.list_object_versions(Bucket=B, Prefix="k")
versions = listed["Versions"]
assert [v["VersionId"] for v in versions] == ids[::-1] + ["null"], versions
assert [v["IsLatest"] for v in versions] == [True, False, False, False]
assert versions[0]["ETag"] == '"%s"' % hashlib.md5(b"three").hexdigest()
assert versions[0]["Size"] == 5

# A plain listing shows the current version, with its size and ETag.
cur = s3.list_objects_v2(Bucket=B)["Contents"]
assert [(c["Key"], c["Size"], c["ETag"]) for c in cur] == [
    ("k", 5, '"%s"' % hashlib.md5(b"three").hexdigest())], cur

# Delete: a marker hides the key; deleting the marker brings it back.
d = s3.delete_object(Bucket=B, Key="k")
assert d["DeleteMarker"] and d["VersionId"], d
assert code(lambda: s3.get_object(Bucket=B, Key="k")) == "NoSuchKey"
assert s3.list_objects_v2(Bucket=B).get("KeyCount") == 0
listed = s3.list_object_versions(Bucket=B)
assert listed["DeleteMarkers"][0]["IsLatest"] and listed["DeleteMarkers"][0]["VersionId"] == d["VersionId"]
assert not any(v["IsLatest"] for v in listed["Versions"])
assert code(lambda: s3.get_object(Bucket=B, Key="k", VersionId=d["VersionId"])) == "MethodNotAllowed"
s3.delete_object(Bucket=B, Key="k", VersionId=d["VersionId"])
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"three"
# Deleting the current version makes the previous one current.
s3.delete_object(Bucket=B, Key="k", VersionId=ids[2])
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"two"
assert s3.list_object_versions(Bucket=B)["Versions"][0]["VersionId"] == ids[1]

# Tags (and Swift's metadata POSTs) go to the current version.
s3.put_object_tagging(Bucket=B, Key="k", Tagging={"TagSet": [{"Key": "colour", "Value": "red"}]})
assert s3.get_object_tagging(Bucket=B, Key="k")["TagSet"] == [{"Key": "colour", "Value": "red"}]
assert s3.get_object(Bucket=B, Key="k")["TagCount"] == 1

# Multipart and copies make versions too.
up = s3.create_multipart_upload(Bucket=B, Key="mp")
part = s3.upload_part(Bucket=B, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"m" * 100)
done = s3.complete_multipart_upload(Bucket=B, Key="mp", UploadId=up["UploadId"], MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
assert done.get("VersionId") not in (None, "null"), done
got = s3.get_object(Bucket=B, Key="mp")
assert got["Body"].read() == b"m" * 100 and got["VersionId"] == done["VersionId"]
mp_listed = s3.list_objects_v2(Bucket=B, Prefix="mp")["Contents"][0]
assert mp_listed["Size"] == 100 and mp_listed["ETag"] == done["ETag"], (mp_listed, done)
c = s3.copy_object(Bucket=B, Key="copy", CopySource={"Bucket": B, "Key": "k"})
assert c.get("VersionId") not in (None, "null"), c
assert s3.get_object(Bucket=B, Key="copy")["Body"].read() == b"two"
# A copy of an older version.
c = s3.copy_object(Bucket=B, Key="copy", CopySource={"Bucket": B, "Key": "k", "VersionId": ids[0]})
assert c["CopySourceVersionId"] == ids[0], c
assert s3.get_object(Bucket=B, Key="copy")["Body"].read() == b"one"
c = s3.copy_object(Bucket=B, Key="k", CopySource={"Bucket": B, "Key": "k", "VersionId": ids[0]})
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"one"  # restored as the newest
s3.delete_object(Bucket=B, Key="k", VersionId=c["VersionId"])

# Suspended: writes are the null version, replacing the null one only.
s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Suspended"})
assert s3.get_bucket_versioning(Bucket=B)["Status"] == "Suspended"
r = s3.put_object(Bucket=B, Key="k", Body=b"null-1")
assert r.get("VersionId") == "null", r
s3.put_object(Bucket=B, Key="k", Body=b"null-2")
vs = [v["VersionId"] for v in s3.list_object_versions(Bucket=B, Prefix="k")["Versions"]]
assert vs.count("null") == 1 and ids[0] in vs and ids[1] in vs, vs
assert s3.get_object(Bucket=B, Key="k")["Body"].read() == b"null-2"
assert s3.get_object(Bucket=B, Key="k", VersionId=ids[0])["Body"].read() == b"one"

# Paging through versions, and prefixes with a delimiter.
for i in range(5):
    s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=B, Key=f"dir/p{i % 2}", Body=b"%d" % i)
VERSION_MARKERS = {"NextKeyMarker": "KeyMarker", "NextVersionIdMarker": "VersionIdMarker"}
seen = pages(lambda **marks: s3.list_object_versions(Bucket=B, MaxKeys=2, **marks),
             lambda page: [(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])],
             VERSION_MARKERS)
everything = s3.list_object_versions(Bucket=B, MaxKeys=1000)
whole = [(v["Key"], v["VersionId"]) for v in everything.get("Versions", []) + everything.get("DeleteMarkers", [])]
assert sorted(seen) == sorted(whole) and len(seen) == len(set(seen)), (seen, whole)
grouped = s3.list_object_versions(Bucket=B, Delimiter="/")
assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["dir/"], grouped

# The same versions through Swift.
headers, rows = swift.get_container(B, query_string="versions")
swift_ids = [r["version_id"] for r in rows if r["name"] == "dir/p0"]
s3_ids = [v["VersionId"] for v in s3.list_object_versions(Bucket=B, Prefix="dir/p0")["Versions"]]
assert swift_ids == s3_ids, (swift_ids, s3_ids)
assert headers.get("x-versions-enabled") == "True", headers
h, body = swift.get_object(B, "dir/p0", query_string="version-id=" + s3_ids[-1])
assert body == b"0" and h["x-object-version-id"] == s3_ids[-1], h
# Versions containers are not buckets.
assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count(B) == 1
assert all("\x00" not in b["Name"] for b in s3.list_buckets()["Buckets"])

# Racing writers on one key: every write is a version, and the newest is
# current, however the writers interleave (10 rounds of 8).
from concurrent.futures import ThreadPoolExecutor
s3.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
for round_ in range(10):
    key = f"race-{round_}"
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda i: s3.put_object(Bucket=B, Key=key, Body=b"w%d" % i)["VersionId"],
                             range(8)))
    listed = s3.list_object_versions(Bucket=B, Prefix=key)["Versions"]
    assert sorted(v["VersionId"] for v in listed) == sorted(made), (listed, made)
    newest = max(made, key=float)
    assert listed[0]["VersionId"] == newest and listed[0]["IsLatest"], (listed, newest)
    assert s3.head_object(Bucket=B, Key=key)["VersionId"] == newest, round_

# Racing writers and deleters: every PUT is a version, every DELETE a
# marker, and the newest of them all is current (a marker: no object).
def write_or_delete(key, i):
    if i % 3 == 2:
        r = s3.delete_object(Bucket=B, Key=key)
        assert r.get("DeleteMarker"), r
        return ("marker", r["VersionId"])
    return ("version", s3.put_object(Bucket=B, Key=key, Body=b"m%d" % i)["VersionId"])

for round_ in range(10):
    key = f"mixed-{round_}"
    with ThreadPoolExecutor(6) as pool:
        made = list(pool.map(lambda i: write_or_delete(key, i), range(6)))
    kind, newest = max(made, key=lambda m: float(m[1]))
    page = s3.list_object_versions(Bucket=B, Prefix=key)
    listed = page.get("Versions", []) + page.get("DeleteMarkers", [])
    assert sorted(v["VersionId"] for v in listed) == sorted(m[1] for m in made), (listed, made)
    latest = [v["VersionId"] for v in listed if v["IsLatest"]]
    assert latest == [newest], (latest, made)
    if kind == "marker":
        assert code(lambda: s3.head_object(Bucket=B, Key=key)) in ("404", "NoSuchKey"), (round_, made)
    else:
        assert s3.head_object(Bucket=B, Key=key)["VersionId"] == newest, (round_, made)
        assert s3.get_object(Bucket=B, Key=key)["Body"].read() == b"m%d" % [m[1] for m in made].index(newest)

# Deletes by version id racing new versions: deleting the current version
# makes the newest one left current, and neither that relink nor a second
# deleter's may overtake a newer version written meanwhile (30 rounds:
# three versions, then the newest two deleted while two more are written).
def delete_or_write(key, job):
    if job[0] == "delete":
        s3.delete_object(Bucket=B, Key=key, VersionId=job[1])
        return None
    return s3.put_object(Bucket=B, Key=key, Body=job[1])["VersionId"]

for round_ in range(30):
    key = f"relink-{round_}"
    old = [s3.put_object(Bucket=B, Key=key, Body=b"old%d" % i)["VersionId"] for i in range(3)]
    jobs = [("delete", old[2]), ("put", b"new0"), ("delete", old[1]), ("put", b"new1")]
    with ThreadPoolExecutor(4) as pool:
        made = [m for m in pool.map(lambda j: delete_or_write(key, j), jobs) if m]
    newest = max(made, key=float)
    listed = s3.list_object_versions(Bucket=B, Prefix=key)["Versions"]
    assert sorted(v["VersionId"] for v in listed) == sorted([old[0]] + made), (round_, listed, made)
    assert [v["VersionId"] for v in listed if v["IsLatest"]] == [newest], (round_, listed, made)
    got = s3.get_object(Bucket=B, Key=key)
    assert got["VersionId"] == newest, (round_, got["VersionId"], old, made)
    assert got["Body"].read() == (b"new0", b"new1")[made.index(newest)], round_

# Deletes by version id racing each other (40 rounds: four versions; the
# current one deleted, and the one before it a moment later, so that the
# second delete lands while the first relinks the newest version left).
# They take turns under the object's lease: neither relinks a version the
# other is removing, and the oldest two are left, the newer current.
def delete_after(key, pause, version):
    time.sleep(pause)
    s3.delete_object(Bucket=B, Key=key, VersionId=version)

for round_ in range(40):
    key = f"redelete-{round_}"
    old = [s3.put_object(Bucket=B, Key=key, Body=b"old%d" % i)["VersionId"] for i in range(4)]
    jobs = [(0, old[3]), (random.uniform(0, 0.012), old[2])]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda j: delete_after(key, *j), jobs))
    listed = s3.list_object_versions(Bucket=B, Prefix=key)["Versions"]
    assert sorted(v["VersionId"] for v in listed) == sorted(old[:2]), (round_, listed)
    assert [v["VersionId"] for v in listed if v["IsLatest"]] == [old[1]], (round_, listed)
    got = s3.get_object(Bucket=B, Key=key)
    assert got["VersionId"] == old[1], (round_, got["VersionId"], old)
    assert got["Body"].read() == b"old1", round_

# DeleteObjects names the delete marker it makes, and the one it removes
# by its id.
made = s3.delete_objects(Bucket=B, Delete={"Objects": [{"Key": "dm-batch"}]})["Deleted"][0]
assert made["DeleteMarker"] and made["DeleteMarkerVersionId"], made
gone = s3.delete_objects(Bucket=B, Delete={"Objects": [
    {"Key": "dm-batch", "VersionId": made["DeleteMarkerVersionId"]}]})["Deleted"][0]
assert gone["DeleteMarker"] and gone["DeleteMarkerVersionId"] == made["DeleteMarkerVersionId"], gone
assert gone["VersionId"] == made["DeleteMarkerVersionId"], gone

# Paging ListObjectVersions: every version once, in order; the first of a
# key on a page that goes on within it is not the latest; with a
# delimiter a common prefix counts once, is listed once and is the next
# page's key marker.
P = "paged-versions"
s3.create_bucket(Bucket=P)
s3.put_bucket_versioning(Bucket=P, VersioningConfiguration={"Status": "Enabled"})
made = {k: [s3.put_object(Bucket=P, Key=k, Body=b"v")["VersionId"] for _ in range(3)] for k in ["a", "b/x", "b/y", "c"]}


def walk(**kw):
    return pages(lambda **marks: s3.list_object_versions(Bucket=P, MaxKeys=2, **kw, **marks),
                 lambda page: [(v["Key"], v["VersionId"], v["IsLatest"]) for v in page.get("Versions", [])]
                 + [("prefix", p["Prefix"], None) for p in page.get("CommonPrefixes", [])],
                 VERSION_MARKERS)


every = walk()
assert every == [(k, v, i == 0) for k in made for i, v in enumerate(reversed(made[k]))], every
grouped = walk(Delimiter="/")
assert grouped == [("a", v, i == 0) for i, v in enumerate(reversed(made["a"]))] + [("prefix", "b/", None)] + [
    ("c", v, i == 0) for i, v in enumerate(reversed(made["c"]))], grouped
assert code(lambda: s3.list_object_versions(Bucket=P, KeyMarker="a", VersionIdMarker="not-an-id")) == "InvalidArgument"
assert code(lambda: s3.list_object_versions(Bucket=P, VersionIdMarker=made["a"][0])) == "InvalidArgument"
for k, ids in made.items():
    s3.delete_objects(Bucket=P, Delete={"Objects": [{"Key": k, "VersionId": v} for v in ids]})
s3.delete_bucket(Bucket=P)

# A part of a versioned object uploaded in parts: of its current version
# (read through its link) and of the version by its id.
first_part, tail = b"p" * (5 * 1024 * 1024), b"tail"
u = s3.create_multipart_upload(Bucket=B, Key="mp-versioned")["UploadId"]
etags = [s3.upload_part(Bucket=B, Key="mp-versioned", UploadId=u, PartNumber=n, Body=d)["ETag"]
         for n, d in [(1, first_part), (2, tail)]]
done = s3.complete_multipart_upload(Bucket=B, Key="mp-versioned", UploadId=u, MultipartUpload={
    "Parts": [{"PartNumber": n, "ETag": e} for n, e in [(1, etags[0]), (2, etags[1])]]})
for by_id in [{}, {"VersionId": done["VersionId"]}]:
    part = s3.get_object(Bucket=B, Key="mp-versioned", PartNumber=2, **by_id)
    assert part["Body"].read() == tail and part["PartsCount"] == 2, by_id
    assert code(lambda: s3.get_object(Bucket=B, Key="mp-versioned", PartNumber=3, **by_id)) == "InvalidPartNumber"
    # Its attributes: the parts of the version the link names (the
    # upload kept boto3's default CRC32 checksums, so they are listed).
    attrs = s3.get_object_attributes(Bucket=B, Key="mp-versioned", ObjectAttributes=["ObjectSize", "ObjectParts"], **by_id)
    assert attrs["VersionId"] == done["VersionId"] and attrs["ObjectSize"] == len(first_part) + len(tail), attrs
    listed = attrs["ObjectParts"]
    assert listed["TotalPartsCount"] == 2, attrs
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, len(first_part)), (2, len(tail))], attrs

# A bucket with versions is not empty; the suites' clean-up empties it.
assert code(lambda: s3.delete_bucket(Bucket=B)) == "BucketNotEmpty"
while True:
    page = s3.list_object_versions(Bucket=B)
    items = page.get("Versions", []) + page.get("DeleteMarkers", [])
    if not items:
        break
    s3.delete_objects(Bucket=B, Delete={"Objects": [
        {"Key": v["Key"], "VersionId": v["VersionId"]} for v in items]})
s3.delete_bucket(Bucket=B)
assert code(lambda: s3.head_bucket(Bucket=B)) in ("404", "NoSuchBucket")
print("boto3 versioning: ok")
