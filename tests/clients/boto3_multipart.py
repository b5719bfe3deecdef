"""Multipart uploads through boto3: parts, listing, completion rules, abort,
UploadPartCopy with ranges, and the transfer manager's own multipart."""
import hashlib
import io
import os
import boto3
import botocore
from boto3.s3.transfer import TransferConfig

from s3common import client, code, pages

s3 = client()
MiB = 1024 * 1024

s3.create_bucket(Bucket="mpu")
parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)]
up = s3.create_multipart_upload(Bucket="mpu", Key="big/object.bin", ContentType="application/x-big", Metadata={"k": "v"})
uid = up["UploadId"]
assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="mpu").get("Uploads", [])] == [uid]
etags = []
for i, data in enumerate(parts_data, start=1):
    r = s3.upload_part(Bucket="mpu", Key="big/object.bin", UploadId=uid, PartNumber=i, Body=data)
    assert r["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    etags.append(r["ETag"])
listed = s3.list_parts(Bucket="mpu", Key="big/object.bin", UploadId=uid)["Parts"]
assert [p["PartNumber"] for p in listed] == [1, 2, 3] and listed[2]["Size"] == 1000
parts = [{"PartNumber": i, "ETag": e} for i, e in enumerate(etags, start=1)]
assert code(lambda: s3.complete_multipart_upload(Bucket="mpu", Key="big/object.bin", UploadId=uid,
            MultipartUpload={"Parts": [parts[1], parts[0]]})) == "InvalidPartOrder"
assert code(lambda: s3.complete_multipart_upload(Bucket="mpu", Key="big/object.bin", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0000"'}]})) == "InvalidPart"
done = s3.complete_multipart_upload(Bucket="mpu", Key="big/object.bin", UploadId=uid, MultipartUpload={"Parts": parts})
want = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in etags)).hexdigest() + "-3"
assert done["ETag"].strip('"') == want, (done["ETag"], want)
got = s3.get_object(Bucket="mpu", Key="big/object.bin")
whole = b"".join(parts_data)
assert got["Body"].read() == whole
assert got["ETag"].strip('"') == want and got["ContentType"] == "application/x-big" and got["Metadata"] == {"k": "v"}
assert s3.get_object(Bucket="mpu", Key="big/object.bin", Range="bytes=5242870-5242889")["Body"].read() == whole[5242870:5242890]
assert code(lambda: s3.list_parts(Bucket="mpu", Key="big/object.bin", UploadId=uid)) == "NoSuchUpload"

# One part of it (`partNumber`), by GET and HEAD: 206, its bytes and range,
# the count of parts and the whole object's ETag, as S3 answers.
def status(fn):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]
    raise AssertionError("expected an error")


start = 0
for n, data in enumerate(parts_data, start=1):
    end = start + len(data) - 1
    r = s3.get_object(Bucket="mpu", Key="big/object.bin", PartNumber=n)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 206 and r["Body"].read() == data, n
    assert (r["PartsCount"], r["ContentLength"], r["ContentRange"]) == (3, len(data), f"bytes {start}-{end}/{len(whole)}"), r
    assert r["ETag"].strip('"') == want
    h = s3.head_object(Bucket="mpu", Key="big/object.bin", PartNumber=n)
    assert h["ResponseMetadata"]["HTTPStatusCode"] == 206 and (h["PartsCount"], h["ContentLength"]) == (3, len(data)), h
    start = end + 1
# Past the last part: 416 InvalidPartNumber (S3's, and Swift s3api's).
assert status(lambda: s3.get_object(Bucket="mpu", Key="big/object.bin", PartNumber=4)) == (416, "InvalidPartNumber")
assert status(lambda: s3.head_object(Bucket="mpu", Key="big/object.bin", PartNumber=4))[0] == 416
assert code(lambda: s3.get_object(Bucket="mpu", Key="big/object.bin", PartNumber=0)) == "InvalidArgument"
assert code(lambda: s3.get_object(Bucket="mpu", Key="big/object.bin", PartNumber=1, Range="bytes=0-1")) == "InvalidRequest"
# GetObjectAttributes: the parts' count, and (the upload kept checksums,
# as boto3 sends CRC32 by default) each part's number, size and checksum,
# a page at a time.
attrs = s3.get_object_attributes(Bucket="mpu", Key="big/object.bin",
                                 ObjectAttributes=["ETag", "ObjectSize", "StorageClass", "ObjectParts", "Checksum"])
assert attrs["ETag"].strip('"') == want and attrs["ObjectSize"] == len(whole), attrs
assert attrs["StorageClass"] == "STANDARD" and attrs["ObjectParts"]["TotalPartsCount"] == 3, attrs
assert attrs["Checksum"]["ChecksumType"] == "COMPOSITE", attrs
listed_parts = attrs["ObjectParts"]["Parts"]
assert [(p["PartNumber"], p["Size"]) for p in listed_parts] == [(1, 5 * MiB), (2, 5 * MiB), (3, 1000)], listed_parts
assert all(p.get("ChecksumCRC32") for p in listed_parts), listed_parts
page = s3.get_object_attributes(Bucket="mpu", Key="big/object.bin", ObjectAttributes=["ObjectParts"],
                                MaxParts=2, PartNumberMarker=1)["ObjectParts"]
assert [p["PartNumber"] for p in page["Parts"]] == [2, 3] and not page["IsTruncated"], page
page = s3.get_object_attributes(Bucket="mpu", Key="big/object.bin", ObjectAttributes=["ObjectParts"], MaxParts=1)["ObjectParts"]
assert page["IsTruncated"] and page["NextPartNumberMarker"] == 1, page
assert "ETag" not in page and "ObjectSize" not in s3.get_object_attributes(
    Bucket="mpu", Key="big/object.bin", ObjectAttributes=["ETag"])
assert code(lambda: s3.get_object_attributes(Bucket="mpu", Key="big/object.bin", ObjectAttributes=["Colour"])) == "InvalidArgument"
assert code(lambda: s3.get_object_attributes(Bucket="mpu", Key="nothing", ObjectAttributes=["ETag"])) == "NoSuchKey"
# An object not uploaded in parts is its only part.
s3.put_object(Bucket="mpu", Key="plain", Body=b"0123456789")
plain = s3.get_object_attributes(Bucket="mpu", Key="plain", ObjectAttributes=["ObjectParts", "ObjectSize"])
assert plain["ObjectSize"] == 10 and "ObjectParts" not in plain, plain
r = s3.get_object(Bucket="mpu", Key="plain", PartNumber=1)
assert r["ResponseMetadata"]["HTTPStatusCode"] == 206 and r["Body"].read() == b"0123456789"
assert r["ContentRange"] == "bytes 0-9/10" and "PartsCount" not in r
assert status(lambda: s3.get_object(Bucket="mpu", Key="plain", PartNumber=2)) == (416, "InvalidPartNumber")
s3.delete_object(Bucket="mpu", Key="plain")
# An upload not completed has no object to read a part of.
pending = s3.create_multipart_upload(Bucket="mpu", Key="pending")["UploadId"]
s3.upload_part(Bucket="mpu", Key="pending", UploadId=pending, PartNumber=1, Body=b"x")
assert code(lambda: s3.get_object(Bucket="mpu", Key="pending", PartNumber=1)) == "NoSuchKey"
s3.abort_multipart_upload(Bucket="mpu", Key="pending", UploadId=pending)
assert [o["Key"] for o in s3.list_objects_v2(Bucket="mpu")["Contents"]] == ["big/object.bin"]
assert "mpu+segments" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]

# A small part before the last: EntityTooSmall.
small = s3.create_multipart_upload(Bucket="mpu", Key="small")["UploadId"]
e1 = s3.upload_part(Bucket="mpu", Key="small", UploadId=small, PartNumber=1, Body=b"a" * 100)["ETag"]
e2 = s3.upload_part(Bucket="mpu", Key="small", UploadId=small, PartNumber=2, Body=b"b" * 100)["ETag"]
assert code(lambda: s3.complete_multipart_upload(Bucket="mpu", Key="small", UploadId=small,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})) == "EntityTooSmall"
# The list's order is checked before the parts' sizes.
assert code(lambda: s3.complete_multipart_upload(Bucket="mpu", Key="small", UploadId=small,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})) == "InvalidPartOrder"
# This store has only STANDARD: another class is refused, not ignored.
assert code(lambda: s3.create_multipart_upload(Bucket="mpu", Key="cold", StorageClass="GLACIER")) == "InvalidStorageClass"
s3.abort_multipart_upload(Bucket="mpu", Key="small", UploadId=small)
assert code(lambda: s3.upload_part(Bucket="mpu", Key="small", UploadId=small, PartNumber=3, Body=b"c")) == "NoSuchUpload"
assert s3.list_multipart_uploads(Bucket="mpu").get("Uploads", []) == []

# UploadPartCopy with a range of an existing object.
cp = s3.create_multipart_upload(Bucket="mpu", Key="copied")["UploadId"]
r = s3.upload_part_copy(Bucket="mpu", Key="copied", UploadId=cp, PartNumber=1,
                        CopySource={"Bucket": "mpu", "Key": "big/object.bin"}, CopySourceRange="bytes=0-5242879")
r2 = s3.upload_part_copy(Bucket="mpu", Key="copied", UploadId=cp, PartNumber=2,
                         CopySource={"Bucket": "mpu", "Key": "big/object.bin"}, CopySourceRange="bytes=10485760-10486759")
s3.complete_multipart_upload(Bucket="mpu", Key="copied", UploadId=cp, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]}]})
assert s3.get_object(Bucket="mpu", Key="copied")["Body"].read() == whole[:5 * MiB] + whole[10 * MiB:10 * MiB + 1000]

# Paging ListMultipartUploads: every upload once (two of one key among
# them), with key and upload-id markers; a common prefix counts once.
made = sorted((k, s3.create_multipart_upload(Bucket="mpu", Key=k)["UploadId"]) for k in ["k1", "k1", "k2", "d/k3"])


def uploads(**kw):
    return pages(lambda **marks: s3.list_multipart_uploads(Bucket="mpu", MaxUploads=1, **kw, **marks),
                 lambda page: [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
                 + [("prefix", p["Prefix"]) for p in page.get("CommonPrefixes", [])],
                 {"NextKeyMarker": "KeyMarker", "NextUploadIdMarker": "UploadIdMarker"}, limit=20)


assert uploads() == made, (uploads(), made)
assert uploads(Delimiter="/") == [("prefix", "d/")] + [u for u in made if u[0] != "d/k3"], uploads(Delimiter="/")
# A completion retried after it succeeded (its answer lost) succeeds again.
k, u = made[0]
e = s3.upload_part(Bucket="mpu", Key=k, UploadId=u, PartNumber=1, Body=b"once")["ETag"]
first = s3.complete_multipart_upload(Bucket="mpu", Key=k, UploadId=u, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
again = s3.complete_multipart_upload(Bucket="mpu", Key=k, UploadId=u, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
assert again["ETag"] == first["ETag"], (first, again)
# ... but not once another write replaced that object.
s3.put_object(Bucket="mpu", Key=k, Body=b"other")
assert code(lambda: s3.complete_multipart_upload(Bucket="mpu", Key=k, UploadId=u,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})) == "NoSuchUpload"
for k, u in made[1:]:
    s3.abort_multipart_upload(Bucket="mpu", Key=k, UploadId=u)

# The transfer manager splits by itself.
blob = os.urandom(17 * MiB)
s3.upload_fileobj(io.BytesIO(blob), "mpu", "managed.bin", Config=TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB))
assert s3.head_object(Bucket="mpu", Key="managed.bin")["ETag"].strip('"').endswith("-3")
out = io.BytesIO()
s3.download_fileobj("mpu", "managed.bin", out)
assert out.getvalue() == blob
print("boto3 multipart: ok")
