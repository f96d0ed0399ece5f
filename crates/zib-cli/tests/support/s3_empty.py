"""Empty (0-byte) objects through ZiB's S3 surface with boto3, as an integrator would:
single PUT, a one-part multipart upload of nothing, HEAD, GET (whole and ranged),
a presigned GET, and the object `zib upload` stored. Prints one JSON document of what
it saw for crates/zib-cli/tests/empty_objects.rs to check.

Usage: s3_empty.py ENDPOINT BUCKET CLI_KEY
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import json
import sys
import urllib.request

from s3_support import client, error_of

endpoint, bucket, cli_key = sys.argv[1:4]
s3 = client(endpoint)
out = {}


def read(key, **kw):
    r = s3.get_object(Bucket=bucket, Key=key, **kw)
    return {"status": r["ResponseMetadata"]["HTTPStatusCode"],
            "length": r["ContentLength"], "body": r["Body"].read().hex(),
            "etag": r["ETag"].strip('"')}


def head(key):
    r = s3.head_object(Bucket=bucket, Key=key)
    return {"length": r["ContentLength"], "etag": r["ETag"].strip('"'),
            "file_id": r["ResponseMetadata"]["HTTPHeaders"].get("x-zib-file-id")}


put = s3.put_object(Bucket=bucket, Key="s3/put-empty", Body=b"", ContentType="text/plain")
out["put_etag"] = put["ETag"].strip('"')
out["head"] = head("s3/put-empty")
out["get"] = read("s3/put-empty")
# S3: a range with a first byte is unsatisfiable on an empty object, a suffix range
# is the (empty) whole.
out["range_first_byte"] = error_of(lambda: s3.get_object(Bucket=bucket, Key="s3/put-empty",
                                                         Range="bytes=0-0"))
out["range_open"] = error_of(lambda: s3.get_object(Bucket=bucket, Key="s3/put-empty",
                                                   Range="bytes=0-"))
out["range_suffix"] = read("s3/put-empty", Range="bytes=-1")

# A presigned (query SigV4) GET is a 307 to the CDN; urllib follows it.
url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "s3/put-empty"})
with urllib.request.urlopen(url) as resp:
    out["presigned"] = {"status": resp.status, "body": resp.read().hex(),
                        "final_url": resp.geturl()}

# Multipart: one empty part.
upload_id = s3.create_multipart_upload(Bucket=bucket, Key="s3/multipart-empty")["UploadId"]
part = s3.upload_part(Bucket=bucket, Key="s3/multipart-empty", UploadId=upload_id,
                      PartNumber=1, Body=b"")
done = s3.complete_multipart_upload(
    Bucket=bucket, Key="s3/multipart-empty", UploadId=upload_id,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
out["multipart_etag"] = done["ETag"].strip('"')
out["multipart_get"] = read("s3/multipart-empty")

# What `zib upload` stored reads the same way through S3.
out["cli_head"] = head(cli_key)
out["cli_get"] = read(cli_key)

listed = s3.list_objects_v2(Bucket=bucket)
out["listed"] = {o["Key"]: o["Size"] for o in listed.get("Contents", [])}

print(json.dumps(out))
