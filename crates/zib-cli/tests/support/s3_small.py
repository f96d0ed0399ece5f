"""Small objects through ZiB's S3 surface with boto3: PUT objects of the sizes given
under `small/<size>` (each starts with MARKER, the rest pseudo-random from SEED), then
HEAD, GET whole and a ranged GET of each; then one PUT whose Content-MD5 is wrong,
and a HEAD of its key. Prints one JSON document of what it saw for
crates/zib-cli/tests/small_objects.rs to check.

Usage: s3_small.py ENDPOINT BUCKET MARKER SEED SIZE...
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import base64
import hashlib
import json
import random
import sys

from s3_support import client, error_of

endpoint, bucket, marker, seed = sys.argv[1:5]
sizes = [int(s) for s in sys.argv[5:]]
s3 = client(endpoint)
if error_of(lambda: s3.head_bucket(Bucket=bucket)) is not None:
    s3.create_bucket(Bucket=bucket)


def body_of(size, seed):
    rng = random.Random(seed)
    data = marker.encode() + bytes(rng.getrandbits(8) for _ in range(size))
    return data[:size]


def stored(key, body):
    put = s3.put_object(Bucket=bucket, Key=key, Body=body)
    head = s3.head_object(Bucket=bucket, Key=key)
    whole = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    seen = {"size": len(body), "md5": hashlib.md5(body).hexdigest(),
            "put_etag": put["ETag"].strip('"'), "head_etag": head["ETag"].strip('"'),
            "head_length": head["ContentLength"],
            "file_id": head["ResponseMetadata"]["HTTPHeaders"].get("x-zib-file-id"),
            "whole_matches": whole == body}
    if len(body) > 10:
        part = s3.get_object(Bucket=bucket, Key=key, Range="bytes=3-9")
        seen["range_matches"] = part["Body"].read() == body[3:10]
        seen["range_status"] = part["ResponseMetadata"]["HTTPStatusCode"]
    return seen


out = {"objects": [stored(f"small/{size}", body_of(size, f"{seed}/{size}")) for size in sizes]}
wrong_md5 = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
out["bad_md5_put"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="small/bad-md5", Body=body_of(4096, f"{seed}/bad"), ContentMD5=wrong_md5))
out["bad_md5_head"] = error_of(lambda: s3.head_object(Bucket=bucket, Key="small/bad-md5"))
print(json.dumps(out))
