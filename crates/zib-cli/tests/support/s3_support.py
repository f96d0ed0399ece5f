"""What the boto3 support scripts share: a client pointed at ZiB's S3 surface the
way the tests use it, and the S3 error a call answers.

The scripts run as `python3 path/script.py`, which puts this folder on sys.path.
"""

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def client(endpoint, signature_version="s3v4", access_key=None, secret_key=None, **config):
    """A boto3 S3 client for `endpoint`: path-style, us-east-1, one attempt, signed with
    `signature_version`. Keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    unless given; other keyword arguments go to botocore's Config."""
    config = Config(signature_version=signature_version, s3={"addressing_style": "path"},
                    retries={"max_attempts": 1}, **config)
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                        config=config)


def error_of(call, message=False):
    """The S3 error `call()` answers, as {"code", "status"} (and "message" when asked);
    None when it succeeds."""
    try:
        call()
    except ClientError as e:
        error = {"code": e.response["Error"]["Code"]}
        if message:
            error["message"] = e.response["Error"].get("Message", "")
        error["status"] = e.response["ResponseMetadata"]["HTTPStatusCode"]
        return error
    return None
