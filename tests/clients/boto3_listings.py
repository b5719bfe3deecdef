"""Listings show every acknowledged write: writers that list right after
each PUT and each DELETE (as `aws s3 sync`, rclone and test suites do), and a
multipart object listed with the size and ETag HEAD gives it."""
import os
import threading

from s3common import client

s3 = client(max_pool_connections=16)
MiB = 1024 * 1024
s3.create_bucket(Bucket="listed")

WRITERS, EACH = 8, int(os.environ.get("NUBO_LISTING_OBJECTS", "2000")) // 8
misses = []


def writer(w):
    for i in range(EACH):
        key = f"w{w}/o{i:04d}"
        s3.put_object(Bucket="listed", Key=key, Body=b"x" * (i % 7 + 1))
        got = s3.list_objects_v2(Bucket="listed", Prefix=key).get("Contents", [])
        if [o["Key"] for o in got] != [key]:
            misses.append(("put", key))
        s3.delete_object(Bucket="listed", Key=key)
        got = s3.list_objects_v2(Bucket="listed", Prefix=key).get("Contents", [])
        if got:
            misses.append(("delete", key))


threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not misses, f"{len(misses)} of {2 * WRITERS * EACH} listings missed a write: {misses[:5]}"
print(f"{2 * WRITERS * EACH} listings, each right after its write: 0 missed")

# A multipart object is listed as the whole object.
up = s3.create_multipart_upload(Bucket="listed", Key="mpu.bin")
uid = up["UploadId"]
assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="listed")["Uploads"]] == [uid]
parts = []
for n, data in enumerate([os.urandom(5 * MiB), os.urandom(3 * MiB)], start=1):
    r = s3.upload_part(Bucket="listed", Key="mpu.bin", UploadId=uid, PartNumber=n, Body=data)
    parts.append({"PartNumber": n, "ETag": r["ETag"]})
s3.complete_multipart_upload(Bucket="listed", Key="mpu.bin", UploadId=uid,
                             MultipartUpload={"Parts": parts})
head = s3.head_object(Bucket="listed", Key="mpu.bin")
listed = s3.list_objects_v2(Bucket="listed", Prefix="mpu.bin")["Contents"]
assert len(listed) == 1, listed
assert listed[0]["Size"] == head["ContentLength"] == 8 * MiB, (listed, head["ContentLength"])
assert listed[0]["ETag"] == head["ETag"] and head["ETag"].endswith('-2"'), (listed[0]["ETag"], head["ETag"])
v1 = s3.list_objects(Bucket="listed", Prefix="mpu.bin")["Contents"][0]
assert v1["Size"] == 8 * MiB and v1["ETag"] == head["ETag"], v1

# Delimiters of more than one character, as S3 takes them.
for key in ["x--1--a", "x--1--b", "x--2", "x-3"]:
    s3.put_object(Bucket="listed", Key=key, Body=b"d")
grouped = s3.list_objects_v2(Bucket="listed", Prefix="x", Delimiter="--")
assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["x--"], grouped
assert [o["Key"] for o in grouped["Contents"]] == ["x-3"], grouped
deeper = s3.list_objects_v2(Bucket="listed", Prefix="x--", Delimiter="--")
assert [p["Prefix"] for p in deeper["CommonPrefixes"]] == ["x--1--"], deeper
assert [o["Key"] for o in deeper["Contents"]] == ["x--2"], deeper
