"""Drives CopyObject, UploadPartCopy and repeated CompleteMultipartUpload through boto3
against ZiB's S3 surface and prints one JSON document of what it saw, for
crates/zib-cli/tests/s3_copy.rs to check.

Usage: s3_copy.py ENDPOINT BUCKET
The bucket holds `src/a.txt`, `src/ünï cödé.txt` and `src/big.bin` (put by the test).
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import datetime
import hashlib
import json
import sys
import threading
import time

from botocore.exceptions import ClientError

from s3_support import client, error_of

endpoint, bucket = sys.argv[1:3]
s3 = client(endpoint, read_timeout=300)
out = {}
SRC = {"Bucket": bucket, "Key": "src/a.txt"}


def head(b, key):
    r = s3.head_object(Bucket=b, Key=key)
    return {"etag": r["ETag"].strip('"'), "content_type": r["ContentType"],
            "length": r["ContentLength"],
            "file_id": r["ResponseMetadata"]["HTTPHeaders"].get("x-zib-file-id")}


def body(b, key):
    return s3.get_object(Bucket=b, Key=key)["Body"].read()


src = body(bucket, "src/a.txt")
out["src_head"] = head(bucket, "src/a.txt")

# COPY (the default directive): a new object with the source's bytes and attributes.
r = s3.copy_object(Bucket=bucket, Key="dst/copy.txt", CopySource=SRC)
out["copy"] = {"etag": r["CopyObjectResult"]["ETag"].strip('"'),
               "has_last_modified": "LastModified" in r["CopyObjectResult"]}
out["copy_head"] = head(bucket, "dst/copy.txt")
out["copy_same"] = body(bucket, "dst/copy.txt") == src

# REPLACE: the attributes come from the request.
s3.copy_object(Bucket=bucket, Key="dst/replaced.txt", CopySource=SRC,
               MetadataDirective="REPLACE", ContentType="application/x-replaced",
               Metadata={"shade": "green"}, CacheControl="max-age=60",
               TaggingDirective="REPLACE", Tagging="k=v+w&team=copy")
out["replaced_head"] = head(bucket, "dst/replaced.txt")

# Into another bucket, from a key that needs URL-encoding in x-amz-copy-source.
s3.create_bucket(Bucket="copy-other")
s3.copy_object(Bucket="copy-other", Key="from/unicode.txt",
               CopySource={"Bucket": bucket, "Key": "src/ünï cödé.txt"})
out["cross_same"] = body("copy-other", "from/unicode.txt") == body(bucket, "src/ünï cödé.txt")

# Onto itself: only with REPLACE, which changes the object in place.
out["self_copy"] = error_of(lambda: s3.copy_object(Bucket=bucket, Key="src/a.txt",
                                                   CopySource=SRC))
s3.copy_object(Bucket=bucket, Key="src/a.txt", CopySource=SRC, MetadataDirective="REPLACE",
               ContentType="text/x-self", Metadata={"edited": "yes"})
out["self_head"] = head(bucket, "src/a.txt")
out["self_same"] = body(bucket, "src/a.txt") == src

# Conditions on the source.
etag = out["src_head"]["etag"]
past = datetime.datetime(1990, 1, 1, tzinfo=datetime.timezone.utc)
future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
conditions = {
    "if_match_other": {"CopySourceIfMatch": '"0123456789abcdef0123456789abcdef"'},
    "if_none_match_same": {"CopySourceIfNoneMatch": f'"{etag}"'},
    "if_modified_since_future": {"CopySourceIfModifiedSince": future},
    "if_unmodified_since_past": {"CopySourceIfUnmodifiedSince": past},
}
out["conditions"] = {
    name: error_of(lambda args=args: s3.copy_object(Bucket=bucket, Key=f"dst/{name}",
                                                    CopySource=SRC, **args))
    for name, args in conditions.items()
}
s3.copy_object(Bucket=bucket, Key="dst/if-match.txt", CopySource=SRC,
               CopySourceIfMatch=f'"{etag}"', CopySourceIfModifiedSince=past)
out["conditional_copy_same"] = body(bucket, "dst/if-match.txt") == src

# What does not exist (or is another version) is refused with S3's codes.
out["missing_key"] = error_of(lambda: s3.copy_object(
    Bucket=bucket, Key="dst/x", CopySource={"Bucket": bucket, "Key": "src/nope"}))
out["missing_bucket"] = error_of(lambda: s3.copy_object(
    Bucket=bucket, Key="dst/x", CopySource={"Bucket": "no-such-bucket-here", "Key": "a"}))
out["other_version"] = error_of(lambda: s3.copy_object(
    Bucket=bucket, Key="dst/x", CopySource={**SRC, "VersionId": "3HL4kqtJlcpXroDTDmJ"}))
out["refused"] = {
    name: error_of(lambda args=args: s3.copy_object(Bucket=bucket, Key="dst/refused",
                                                    CopySource=SRC, **args))
    for name, args in {
        "sse_c": {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32},
        "kms": {"ServerSideEncryption": "aws:kms"},
        "acl": {"ACL": "public-read"},
    }.items()
}
out["refused_absent"] = error_of(lambda: s3.head_object(Bucket=bucket, Key="dst/refused"))
# The destination obeys the PUT rule: a key holding other bytes is not overwritten.
s3.put_object(Bucket=bucket, Key="dst/taken.txt", Body=b"other bytes")
out["taken"] = error_of(lambda: s3.copy_object(Bucket=bucket, Key="dst/taken.txt",
                                               CopySource=SRC))
out["taken_kept"] = body(bucket, "dst/taken.txt") == b"other bytes"

# UploadPartCopy: ranges of big.bin and a part of new bytes assemble an object.
big = body(bucket, "src/big.bin")
BIG = {"Bucket": bucket, "Key": "src/big.bin"}
uid = s3.create_multipart_upload(Bucket=bucket, Key="assembled.bin")["UploadId"]
cut = 1024 * 1024 + 7
p1 = s3.upload_part_copy(Bucket=bucket, Key="assembled.bin", UploadId=uid, PartNumber=1,
                         CopySource=BIG, CopySourceRange=f"bytes=0-{cut - 1}")
p2 = s3.upload_part_copy(Bucket=bucket, Key="assembled.bin", UploadId=uid, PartNumber=2,
                         CopySource=BIG, CopySourceRange=f"bytes={cut}-{len(big) - 1}")
p3 = s3.upload_part_copy(Bucket=bucket, Key="assembled.bin", UploadId=uid, PartNumber=3,
                         CopySource=SRC)
tail = b"and a tail sent as an ordinary part"
p4 = s3.upload_part(Bucket=bucket, Key="assembled.bin", UploadId=uid, PartNumber=4, Body=tail)
out["part_copy_etags"] = [p["CopyPartResult"]["ETag"].strip('"') for p in (p1, p2, p3)]
out["part_copy_md5s"] = [hashlib.md5(b).hexdigest() for b in (big[:cut], big[cut:], src)]
out["range_outside"] = error_of(lambda: s3.upload_part_copy(
    Bucket=bucket, Key="assembled.bin", UploadId=uid, PartNumber=5, CopySource=BIG,
    CopySourceRange=f"bytes=0-{len(big)}"))
parts = [{"PartNumber": n + 1, "ETag": p} for n, p in
         enumerate([p1["CopyPartResult"]["ETag"], p2["CopyPartResult"]["ETag"],
                    p3["CopyPartResult"]["ETag"], p4["ETag"]])]
s3.complete_multipart_upload(Bucket=bucket, Key="assembled.bin", UploadId=uid,
                             MultipartUpload={"Parts": parts})
out["assembled_same"] = body(bucket, "assembled.bin") == big + src + tail

# CompleteMultipartUpload sent again (a client retrying after a lost answer).
uid = s3.create_multipart_upload(Bucket=bucket, Key="retry.bin")["UploadId"]
data = [bytes([n]) * (512 * 1024 + n) for n in (1, 2)]
etags = [s3.upload_part(Bucket=bucket, Key="retry.bin", UploadId=uid, PartNumber=n + 1,
                        Body=d)["ETag"] for n, d in enumerate(data)]
listed = {"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]}
answers = [s3.complete_multipart_upload(Bucket=bucket, Key="retry.bin", UploadId=uid,
                                        MultipartUpload=listed) for _ in range(2)]
out["retry_answers"] = [{k: a.get(k) for k in ("Location", "Bucket", "Key", "ETag")}
                        for a in answers]
out["retry_md5"] = (hashlib.md5(b"".join(hashlib.md5(d).digest() for d in data)).hexdigest()
                    + f"-{len(data)}")
out["retry_upload_id"] = uid
out["retry_parts_xml"] = "".join(
    f"<Part><PartNumber>{n + 1}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags))
out["retry_same"] = body(bucket, "retry.bin") == b"".join(data)

# A part listed twice.
uid = s3.create_multipart_upload(Bucket=bucket, Key="dup.bin")["UploadId"]
e1 = s3.upload_part(Bucket=bucket, Key="dup.bin", UploadId=uid, PartNumber=1, Body=b"one")["ETag"]
e2 = s3.upload_part(Bucket=bucket, Key="dup.bin", UploadId=uid, PartNumber=2, Body=b"two")["ETag"]
out["duplicate_part"] = error_of(lambda: s3.complete_multipart_upload(
    Bucket=bucket, Key="dup.bin", UploadId=uid,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 1, "ETag": e1},
                               {"PartNumber": 2, "ETag": e2}]}))

# A retry sent while the first Complete may still be running.
uid = s3.create_multipart_upload(Bucket=bucket, Key="race.bin")["UploadId"]
race = b"R" * (64 * 1024 * 1024)
e = s3.upload_part(Bucket=bucket, Key="race.bin", UploadId=uid, PartNumber=1, Body=race)["ETag"]
results = {}


def complete(name, client):
    try:
        r = client.complete_multipart_upload(
            Bucket=bucket, Key="race.bin", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]})
        results[name] = r["ETag"].strip('"')
    except ClientError as err:
        results[name] = err.response["Error"]["Code"]


# Clients made beforehand: making one takes long enough to miss the window.
clients = [client(endpoint, read_timeout=300) for _ in range(2)]
first = threading.Thread(target=complete, args=("first", clients[0]))
first.start()
time.sleep(0.2)
complete("retry", clients[1])
first.join()
out["race"] = results
out["race_md5"] = hashlib.md5(hashlib.md5(race).digest()).hexdigest() + "-1"
out["race_upload_id"] = uid

print(json.dumps(out))
