"""What the S3 client scripts share: the endpoint, a client, error codes,
and a python-swiftclient connection to the same cluster."""
import os

import boto3
import botocore
from botocore.config import Config

ENDPOINT = os.environ["NUBO_S3_ENDPOINT"]


def client(secret="testing", **config):
    return boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id="test:tester",
                        aws_secret_access_key=secret, region_name="us-east-1", config=Config(**config))


def code(fn):
    """The S3 error code `fn` fails with (it must fail)."""
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError("expected an error")


def pages(fetch, read, markers, limit=50):
    """Every item of a paged S3 listing: `fetch(**marks)` asks for a page,
    `read(page)` gives its items, and `markers` maps each `Next...` field of
    a page to the marker the next request sends. Bounded: a listing whose
    pages never end fails the test instead of hanging it."""
    seen, marks = [], {}
    for _ in range(limit):
        page = fetch(**marks)
        seen += read(page)
        if not page["IsTruncated"]:
            return seen
        marks = {arg: page[field] for field, arg in markers.items() if page.get(field)}
    raise AssertionError("the pages do not end")


def swift_connection():
    """python-swiftclient, as the dev user, for what one API writes and the
    other reads."""
    from swiftclient.client import Connection
    return Connection(authurl=ENDPOINT + "/auth/v1.0", user="test:tester", key="testing")
