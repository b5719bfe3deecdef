"""Conditional writes are atomic: of 16 writers racing with
If-None-Match: * on one key, exactly one wins, in every one of 200 rounds
(as Terraform/OpenTofu state locking needs); the others hear 412
PreconditionFailed or 409 ConditionalRequestConflict. If-Match replaces only
the version it names, on PutObject and CompleteMultipartUpload."""
import threading
from concurrent.futures import ThreadPoolExecutor

import botocore

from s3common import client, code

s3 = client()
s3.create_bucket(Bucket="cond")
WRITERS, ROUNDS = 16, 200
clients = [client(max_pool_connections=4) for _ in range(WRITERS)]
barrier = threading.Barrier(WRITERS)


def attempt(i, key):
    barrier.wait()
    try:
        clients[i].put_object(Bucket="cond", Key=key, Body=f"writer {i}".encode(), IfNoneMatch="*")
        return ("won", i)
    except botocore.exceptions.ClientError as e:
        return (e.response["Error"]["Code"], i)


losses = {}
with ThreadPoolExecutor(WRITERS) as pool:
    for r in range(ROUNDS):
        key = f"lock-{r}"
        results = list(pool.map(lambda i: attempt(i, key), range(WRITERS)))
        winners = [i for what, i in results if what == "won"]
        assert len(winners) == 1, (r, results)
        for what, _ in results:
            if what != "won":
                assert what in ("PreconditionFailed", "ConditionalRequestConflict"), (r, results)
                losses[what] = losses.get(what, 0) + 1
        # The stored body is the winner's.
        body = s3.get_object(Bucket="cond", Key=key)["Body"].read()
        assert body == f"writer {winners[0]}".encode(), (r, body, winners)
print(f"conditional: {ROUNDS} rounds of {WRITERS} writers, one winner each; losses {losses}")

# If-Match: only the named version is replaced.
first = s3.put_object(Bucket="cond", Key="state", Body=b"v1")["ETag"]
second = s3.put_object(Bucket="cond", Key="state", Body=b"v2", IfMatch=first)["ETag"]
assert code(lambda: s3.put_object(Bucket="cond", Key="state", Body=b"v3", IfMatch=first)) == "PreconditionFailed"
assert s3.get_object(Bucket="cond", Key="state")["Body"].read() == b"v2"
assert code(lambda: s3.put_object(Bucket="cond", Key="absent", Body=b"x", IfMatch=first)) in ("NoSuchKey", "404")
s3.put_object(Bucket="cond", Key="state", Body=b"v4", IfMatch=second)
assert s3.get_object(Bucket="cond", Key="state")["Body"].read() == b"v4"

# CompleteMultipartUpload: If-None-Match and If-Match.
up = s3.create_multipart_upload(Bucket="cond", Key="state")["UploadId"]
etag = s3.upload_part(Bucket="cond", Key="state", UploadId=up, PartNumber=1, Body=b"mpu")["ETag"]
parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
assert code(lambda: s3.complete_multipart_upload(Bucket="cond", Key="state", UploadId=up,
                                                 MultipartUpload=parts, IfNoneMatch="*")) == "PreconditionFailed"
assert code(lambda: s3.complete_multipart_upload(Bucket="cond", Key="state", UploadId=up,
                                                 MultipartUpload=parts, IfMatch=first)) == "PreconditionFailed"
current = s3.head_object(Bucket="cond", Key="state")["ETag"]
done = s3.complete_multipart_upload(Bucket="cond", Key="state", UploadId=up, MultipartUpload=parts,
                                    IfMatch=current)
assert s3.get_object(Bucket="cond", Key="state")["Body"].read() == b"mpu"
# And If-Match with the multipart ETag it now has.
s3.put_object(Bucket="cond", Key="state", Body=b"after", IfMatch=done["ETag"])
assert s3.get_object(Bucket="cond", Key="state")["Body"].read() == b"after"
# Bucket names are global: another account cannot take one.
import boto3  # noqa: E402
from s3common import ENDPOINT  # noqa: E402

other = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id="test2:tester2",
                     aws_secret_access_key="testing2", region_name="us-east-1")
assert code(lambda: other.create_bucket(Bucket="cond")) == "BucketAlreadyExists"
assert code(lambda: s3.create_bucket(Bucket="cond")) == "BucketAlreadyOwnedByYou"
other.create_bucket(Bucket="theirs")
assert code(lambda: s3.create_bucket(Bucket="theirs")) == "BucketAlreadyExists"
other.delete_bucket(Bucket="theirs")
s3.create_bucket(Bucket="theirs")  # free again once deleted
assert code(lambda: other.create_bucket(Bucket="theirs")) == "BucketAlreadyExists"
print("conditional: ok")
