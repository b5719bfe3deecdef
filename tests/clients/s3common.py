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


def swift_connection():
    """python-swiftclient, as the dev user, for what one API writes and the
    other reads."""
    from swiftclient.client import Connection
    return Connection(authurl=ENDPOINT + "/auth/v1.0", user="test:tester", key="testing")
