"""Drives ZiB's S3 surface with boto3, as an integrator would, and prints one JSON
document of what it saw for crates/zib-cli/tests/s3.rs to check. It leaves one
multipart upload pending (its id is in the output) for the test to inspect.

Usage: s3_boto3.py ENDPOINT BUCKET MARKER BIG_FILE
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import hashlib
import json
import os
import sys
import urllib.request

from boto3.s3.transfer import TransferConfig

from s3_support import client, error_of

endpoint, bucket, marker, big_path = sys.argv[1:5]
s3 = client(endpoint)
out = {}


small = ("hello from boto3 " + marker + "\n").encode()
big = open(big_path, "rb").read()

put = s3.put_object(Bucket=bucket, Key="docs/hello.txt", Body=small, ContentType="text/plain")
out["put_etag"] = put["ETag"].strip('"')
out["small_md5"] = hashlib.md5(small).hexdigest()
s3.put_object(Bucket=bucket, Key="big/blob.bin", Body=big)
for key in ["page/a/1", "page/a/2", "page/b/1", "page/c", "page/d", "page/e"]:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

out["buckets"] = [b["Name"] for b in s3.list_buckets()["Buckets"]]

# V2 pagination: two keys a page, following continuation tokens.
pages, keys, token = [], [], None
while True:
    args = {"Bucket": bucket, "Prefix": "page/", "MaxKeys": 2}
    if token:
        args["ContinuationToken"] = token
    r = s3.list_objects_v2(**args)
    page = [o["Key"] for o in r.get("Contents", [])]
    pages.append({"keys": page, "key_count": r["KeyCount"], "truncated": r["IsTruncated"]})
    keys += page
    if not r["IsTruncated"]:
        break
    token = r["NextContinuationToken"]
out["v2_pages"] = pages
out["v2_keys"] = keys

r = s3.list_objects_v2(Bucket=bucket, Prefix="page/", Delimiter="/")
out["v2_delimited"] = {
    "keys": [o["Key"] for o in r.get("Contents", [])],
    "prefixes": [p["Prefix"] for p in r.get("CommonPrefixes", [])],
}

# V1 with a delimiter, one entry a page, following NextMarker.
entries, marker_v1 = [], ""
for _ in range(20):
    r = s3.list_objects(Bucket=bucket, Prefix="page/", Delimiter="/", MaxKeys=1, Marker=marker_v1)
    entries += [o["Key"] for o in r.get("Contents", [])]
    entries += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
    if not r["IsTruncated"]:
        break
    marker_v1 = r["NextMarker"]
out["v1_entries"] = entries

got = s3.get_object(Bucket=bucket, Key="docs/hello.txt")["Body"].read()
out["get_same"] = got == small
out["get_big_same"] = s3.get_object(Bucket=bucket, Key="big/blob.bin")["Body"].read() == big
ranged = s3.get_object(Bucket=bucket, Key="big/blob.bin", Range="bytes=100-199")["Body"].read()
out["range_same"] = ranged == big[100:200]

# A presigned (query SigV4) GET is answered with a 307 to the CDN; urllib follows it.
url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "docs/hello.txt"})
with urllib.request.urlopen(url) as resp:
    out["presigned_same"] = resp.read() == small
    out["presigned_final_url"] = resp.geturl()

head = s3.head_object(Bucket=bucket, Key="docs/hello.txt")
out["head"] = {
    "etag": head["ETag"].strip('"'),
    "length": head["ContentLength"],
    "content_type": head["ContentType"],
    "file_id": head["ResponseMetadata"]["HTTPHeaders"].get("x-zib-file-id"),
    "has_last_modified": "LastModified" in head,
}
out["big_file_id"] = s3.head_object(Bucket=bucket, Key="big/blob.bin")[
    "ResponseMetadata"]["HTTPHeaders"].get("x-zib-file-id")

out["same_put_again"] = error_of(lambda: s3.put_object(Bucket=bucket, Key="docs/hello.txt", Body=small))
out["different_put"] = error_of(
    lambda: s3.put_object(Bucket=bucket, Key="docs/hello.txt", Body=b"other bytes"))
out["missing_bucket"] = error_of(lambda: s3.list_objects_v2(Bucket="no-such-bucket-here"))
out["missing_key"] = error_of(lambda: s3.head_object(Bucket=bucket, Key="nope"))

wrong = client(endpoint, access_key=os.environ["AWS_ACCESS_KEY_ID"],
               secret_key="wrong-" + os.environ["AWS_SECRET_ACCESS_KEY"])
out["wrong_secret"] = error_of(lambda: wrong.list_buckets())
unknown = client(endpoint, access_key="ZKNOSUCHKEY", secret_key="x")
out["unknown_key"] = error_of(lambda: unknown.list_buckets())

d1 = s3.delete_object(Bucket=bucket, Key="page/e")
d2 = s3.delete_object(Bucket=bucket, Key="page/e")
out["delete_statuses"] = [d1["ResponseMetadata"]["HTTPStatusCode"],
                          d2["ResponseMetadata"]["HTTPStatusCode"]]
out["after_delete"] = error_of(lambda: s3.head_object(Bucket=bucket, Key="page/e"))

# Multipart: boto3's upload_file splits at 8 MiB, sends parts concurrently, completes.
MiB = 1024 * 1024
mp_data = (marker.encode() + os.urandom(4066)) * 5000  # about 19.5 MiB: parts 8, 8, 3.5
mp_path = big_path + ".multipart"
with open(mp_path, "wb") as f:
    f.write(mp_data)
transfer = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=3)
s3.upload_file(mp_path, bucket, "mp/object.bin", Config=transfer, ExtraArgs={"ContentType": "video/mp4"})
out["mp_get_same"] = s3.get_object(Bucket=bucket, Key="mp/object.bin")["Body"].read() == mp_data
head = s3.head_object(Bucket=bucket, Key="mp/object.bin")
out["mp_head"] = {"length": head["ContentLength"], "content_type": head["ContentType"],
                  "etag": head["ETag"].strip('"'),
                  "file_id": head["ResponseMetadata"]["HTTPHeaders"].get("x-zib-file-id")}
out["mp_md5"] = hashlib.md5(mp_data).hexdigest()
mp_parts = [mp_data[i:i + 8 * MiB] for i in range(0, len(mp_data), 8 * MiB)]
out["mp_etag"] = (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in mp_parts)).hexdigest()
                  + f"-{len(mp_parts)}")
out["mp_len"] = len(mp_data)

# An upload left pending: a part sent twice keeps the second, bad completes are refused
# and change nothing.
uid = s3.create_multipart_upload(Bucket=bucket, Key="mp/pending", ContentType="text/plain")["UploadId"]
first = (marker + " pending part one ").encode() * 400
p1 = s3.upload_part(Bucket=bucket, Key="mp/pending", UploadId=uid, PartNumber=1, Body=first)
s3.upload_part(Bucket=bucket, Key="mp/pending", UploadId=uid, PartNumber=2, Body=b"replaced")
second = ("second " + marker).encode()
p2 = s3.upload_part(Bucket=bucket, Key="mp/pending", UploadId=uid, PartNumber=2, Body=second)
parts = s3.list_parts(Bucket=bucket, Key="mp/pending", UploadId=uid)["Parts"]
out["pending_parts"] = [{"number": p["PartNumber"], "size": p["Size"], "etag": p["ETag"].strip('"')}
                        for p in parts]
out["pending_part_md5s"] = [hashlib.md5(first).hexdigest(), hashlib.md5(second).hexdigest()]
out["pending_part_etags"] = [p1["ETag"].strip('"'), p2["ETag"].strip('"')]


def complete(upload_id, parts, key="mp/pending"):
    return lambda: s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]})


out["out_of_order"] = error_of(complete(uid, [(2, p2["ETag"]), (1, p1["ETag"])]))
out["wrong_etag"] = error_of(complete(uid, [(1, p1["ETag"]), (2, p1["ETag"])]))
out["missing_part"] = error_of(complete(uid, [(1, p1["ETag"]), (3, p2["ETag"])]))
out["other_key"] = error_of(lambda: s3.upload_part(Bucket=bucket, Key="mp/other", UploadId=uid,
                                                   PartNumber=1, Body=b"x"))
out["bad_upload_id"] = error_of(lambda: s3.list_parts(Bucket=bucket, Key="mp/pending",
                                                      UploadId="../../../etc"))
out["pending_not_listed"] = "mp/pending" not in [
    o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="mp/").get("Contents", [])]
out["pending_upload_id"] = uid

# Completing onto a key that holds other bytes is the contract's 409, as a PUT: refused
# at once when the sizes differ, in the completion's answer when the bytes must be
# compared. Either way the key keeps its object and the upload can still be aborted.
def complete_over_hello(body):
    cid = s3.create_multipart_upload(Bucket=bucket, Key="docs/hello.txt")["UploadId"]
    cp = s3.upload_part(Bucket=bucket, Key="docs/hello.txt", UploadId=cid, PartNumber=1, Body=body)
    seen = error_of(complete(cid, [(1, cp["ETag"])], key="docs/hello.txt"))
    # Gone already when the completion succeeded.
    error_of(lambda: s3.abort_multipart_upload(Bucket=bucket, Key="docs/hello.txt", UploadId=cid))
    return seen


out["complete_over_other_size"] = complete_over_hello(small + b"longer")
out["complete_over_same_size"] = complete_over_hello(b"X" * len(small))
out["complete_over_same_bytes"] = complete_over_hello(small)
out["hello_kept"] = s3.get_object(Bucket=bucket, Key="docs/hello.txt")["Body"].read() == small

# Uploads in progress: listed by key, a page at a time, or rolled up by a delimiter.
sid = s3.create_multipart_upload(Bucket=bucket, Key="mp/second")["UploadId"]
listed, args = [], {"Bucket": bucket, "Prefix": "mp/", "MaxUploads": 1}
for _ in range(5):
    r = s3.list_multipart_uploads(**args)
    listed.append({"uploads": [[u["Key"], u["UploadId"]] for u in r.get("Uploads", [])],
                   "truncated": r["IsTruncated"]})
    if not r["IsTruncated"]:
        break
    args.update(KeyMarker=r["NextKeyMarker"], UploadIdMarker=r["NextUploadIdMarker"])
out["in_progress_pages"] = listed
out["in_progress_ids"] = [uid, sid]
r = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
out["in_progress_rolled_up"] = [p["Prefix"] for p in r.get("CommonPrefixes", [])]
s3.abort_multipart_upload(Bucket=bucket, Key="mp/second", UploadId=sid)

# Aborted: the parts are gone and the id is unknown from then on.
aid = s3.create_multipart_upload(Bucket=bucket, Key="mp/aborted")["UploadId"]
ap = s3.upload_part(Bucket=bucket, Key="mp/aborted", UploadId=aid, PartNumber=1, Body=b"abc")
out["abort_status"] = s3.abort_multipart_upload(
    Bucket=bucket, Key="mp/aborted", UploadId=aid)["ResponseMetadata"]["HTTPStatusCode"]
out["after_abort"] = error_of(lambda: s3.list_parts(Bucket=bucket, Key="mp/aborted", UploadId=aid))
out["complete_after_abort"] = error_of(complete(aid, [(1, ap["ETag"])], key="mp/aborted"))

print(json.dumps(out))
