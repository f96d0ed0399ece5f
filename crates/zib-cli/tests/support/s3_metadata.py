"""Drives what an S3 object carries besides its bytes with boto3, as an integrator
would: metadata and standard headers (S3 and the CDN), conditional reads and writes,
SSE and tagging. Prints one JSON document of what it saw for
crates/zib-cli/tests/s3_metadata.rs to check.

Usage: s3_metadata.py ENDPOINT BUCKET CDN_URL
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import base64
import datetime
import email.header
import gzip
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

from botocore.exceptions import ClientError

from s3_support import client, error_of

endpoint, bucket, cdn_url = sys.argv[1:4]
s3 = client(endpoint)
out = {}


def status_of(call):
    try:
        r = call()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]
    return r["ResponseMetadata"]["HTTPStatusCode"]


def rfc2047(value):
    """Non-ASCII metadata travels RFC 2047-encoded, as S3 sends it back."""
    return "=?UTF-8?B?" + base64.b64encode(value.encode()).decode() + "?="


def decoded(metadata):
    return {k: "".join(part.decode(enc or "ascii") if isinstance(part, bytes) else part
                       for part, enc in email.header.decode_header(v))
            for k, v in metadata.items()}


def described(r):
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    return {
        "metadata": decoded(r.get("Metadata", {})),
        "cache_control": r.get("CacheControl"),
        "content_disposition": r.get("ContentDisposition"),
        "content_encoding": r.get("ContentEncoding"),
        "content_language": r.get("ContentLanguage"),
        "expires": headers.get("expires"),
        "content_type": r.get("ContentType"),
        "sse": r.get("ServerSideEncryption"),
    }


def cdn(file_id, method="GET", headers=None):
    req = urllib.request.Request(f"{cdn_url}/{file_id}", method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


# --- metadata and the standard headers ---------------------------------------------
text = ("a report that travels gzip-encoded\n" * 50).encode()
body = gzip.compress(text)
doc = "docs/report.txt"
put = s3.put_object(
    Bucket=bucket, Key=doc, Body=body, ContentType="text/plain",
    Metadata={"Project": "zib", "note": rfc2047("café crème")},
    CacheControl="no-cache, max-age=0",
    ContentDisposition='attachment; filename="report.txt"',
    ContentEncoding="gzip", ContentLanguage="fr-CH",
    Expires=datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc),
    Tagging="team=storage&note=two%20words",
    ServerSideEncryption="AES256",
)
out["put_sse"] = put.get("ServerSideEncryption")
doc_etag = put["ETag"].strip('"')
out["doc_etag"] = doc_etag

head = s3.head_object(Bucket=bucket, Key=doc)
out["head"] = described(head)
out["head"]["tag_count"] = head["ResponseMetadata"]["HTTPHeaders"].get("x-amz-tagging-count")
file_id = head["ResponseMetadata"]["HTTPHeaders"]["x-zib-file-id"]
last_modified = head["LastModified"]

got = s3.get_object(Bucket=bucket, Key=doc)
out["get"] = described(got)
out["get"]["tag_count"] = got.get("TagCount")
out["get"]["same_bytes"] = got["Body"].read() == body

r = s3.get_object(Bucket=bucket, Key=doc, ResponseContentDisposition="inline",
                  ResponseCacheControl="max-age=5", ResponseContentType="application/x-zib")
r["Body"].read()
out["overridden"] = {"content_disposition": r.get("ContentDisposition"),
                     "cache_control": r.get("CacheControl"),
                     "content_type": r.get("ContentType")}

out["metadata_too_large"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="docs/too-much", Body=b"x", Metadata={"big": "y" * 2100}))
out["too_large_stored"] = error_of(lambda: s3.head_object(Bucket=bucket, Key="docs/too-much"))

# The CDN serves the same headers.
status, headers, data = cdn(file_id)
out["cdn"] = {k: headers.get(k) for k in [
    "content-disposition", "cache-control", "content-encoding", "content-language",
    "expires", "x-amz-meta-project", "x-amz-meta-note"]}
out["cdn"]["status"] = status
out["cdn"]["same_bytes"] = data == body
status, headers, _ = cdn(file_id, "HEAD")
out["cdn"]["head_status"] = status
out["cdn"]["head_disposition"] = headers.get("content-disposition")

s3.put_object(Bucket=bucket, Key="docs/plain.txt", Body=b"plain")
plain_id = s3.head_object(Bucket=bucket, Key="docs/plain.txt")[
    "ResponseMetadata"]["HTTPHeaders"]["x-zib-file-id"]
_, headers, _ = cdn(plain_id)
out["cdn_plain"] = {k: headers.get(k) for k in ["cache-control", "content-disposition"]}

# --- multipart: what Create was given is the object's at Complete ------------------
mp_key = "docs/parts.bin"
part1, part2 = os.urandom(300_000), os.urandom(1000)
mp = s3.create_multipart_upload(Bucket=bucket, Key=mp_key, Metadata={"kind": "multi"},
                                ContentDisposition='attachment; filename="parts.bin"',
                                Tagging="m=1")
uid = mp["UploadId"]
e1 = s3.upload_part(Bucket=bucket, Key=mp_key, UploadId=uid, PartNumber=1, Body=part1)["ETag"]
e2 = s3.upload_part(Bucket=bucket, Key=mp_key, UploadId=uid, PartNumber=2, Body=part2)["ETag"]
s3.complete_multipart_upload(Bucket=bucket, Key=mp_key, UploadId=uid, MultipartUpload={
    "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
out["mp_head"] = described(s3.head_object(Bucket=bucket, Key=mp_key))
out["mp_tags"] = s3.get_object_tagging(Bucket=bucket, Key=mp_key)["TagSet"]
out["mp_same"] = s3.get_object(Bucket=bucket, Key=mp_key)["Body"].read() == part1 + part2

# --- conditional reads ---------------------------------------------------------------
before = last_modified - datetime.timedelta(days=1)
now = last_modified


def conditions(read, etag):
    return {
        "if_none_match_same": read(IfNoneMatch=f'"{etag}"'),
        "if_none_match_other": read(IfNoneMatch='"other"'),
        "if_match_same": read(IfMatch=f'"{etag}"'),
        "if_match_other": read(IfMatch='"other"'),
        "if_modified_since_now": read(IfModifiedSince=now),
        "if_modified_since_before": read(IfModifiedSince=before),
        "if_unmodified_since_before": read(IfUnmodifiedSince=before),
        "if_unmodified_since_now": read(IfUnmodifiedSince=now),
        "if_match_wins_over_unmodified_since":
            read(IfMatch=f'"{etag}"', IfUnmodifiedSince=before),
        "if_none_match_other_wins_over_modified_since":
            read(IfNoneMatch='"other"', IfModifiedSince=now),
    }


def s3_get(**kw):
    def call():
        r = s3.get_object(Bucket=bucket, Key=doc, **kw)
        r["Body"].read()
        return r
    return status_of(call)


out["get_conditional"] = conditions(s3_get, doc_etag)
out["head_conditional"] = conditions(
    lambda **kw: status_of(lambda: s3.head_object(Bucket=bucket, Key=doc, **kw)), doc_etag)
try:
    s3.head_object(Bucket=bucket, Key=doc, IfNoneMatch=f'"{doc_etag}"')
except ClientError as e:
    out["not_modified_etag"] = e.response["ResponseMetadata"]["HTTPHeaders"].get(
        "etag", "").strip('"')

HEADER_NAMES = {"IfNoneMatch": "If-None-Match", "IfMatch": "If-Match",
                "IfModifiedSince": "If-Modified-Since",
                "IfUnmodifiedSince": "If-Unmodified-Since"}


def cdn_get(**kw):
    headers = {}
    for name, value in kw.items():
        if isinstance(value, datetime.datetime):
            value = value.astimezone(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
        headers[HEADER_NAMES[name]] = value
    return cdn(file_id, headers=headers)[0]


out["cdn_conditional"] = conditions(cdn_get, file_id)
out["cdn_s3_etag"] = {"if_none_match": cdn_get(IfNoneMatch=f'"{doc_etag}"'),
                      "if_match": cdn_get(IfMatch=f'"{doc_etag}"')}


def presigned_status(headers):
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": doc})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


# A presigned GET is checked against S3's ETag before its redirect to the CDN.
out["presigned_conditional"] = {
    "if_none_match_same": presigned_status({"If-None-Match": f'"{doc_etag}"'}),
    "if_match_other": presigned_status({"If-Match": '"other"'}),
    "if_match_same": presigned_status({"If-Match": f'"{doc_etag}"'}),
}

# --- conditional writes --------------------------------------------------------------
out["put_if_none_match_existing"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key=doc, Body=b"other", IfNoneMatch="*"))
out["put_if_none_match_new"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="docs/created-once", Body=b"first", IfNoneMatch="*"))
out["put_if_none_match_new_stored"] = s3.get_object(
    Bucket=bucket, Key="docs/created-once")["Body"].read() == b"first"
out["put_if_match_same"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="docs/created-once", Body=b"first",
    IfMatch='"' + hashlib.md5(b"first").hexdigest() + '"'))
out["put_if_match_other"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="docs/created-once", Body=b"first", IfMatch='"0123"'))
out["put_if_match_missing"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="docs/never", Body=b"x", IfMatch='"0123"'))
out["put_if_match_other_bytes"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="docs/created-once", Body=b"FIRST",
    IfMatch='"' + hashlib.md5(b"first").hexdigest() + '"'))


def complete_with(key, **kw):
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1,
                          Body=b"complete me")["ETag"]
    return error_of(lambda: s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}, **kw))


out["complete_if_none_match_existing"] = complete_with(doc, IfNoneMatch="*")
out["complete_if_none_match_new"] = complete_with("docs/completed-once", IfNoneMatch="*")

# --- SSE -----------------------------------------------------------------------------
customer_key = os.urandom(32)
out["put_sse_c"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="sse/c", Body=b"secret", SSECustomerAlgorithm="AES256",
    SSECustomerKey=customer_key))
out["after_sse_c"] = error_of(lambda: s3.head_object(Bucket=bucket, Key="sse/c"))
try:
    s3.put_object(Bucket=bucket, Key="sse/c", Body=b"secret", SSECustomerAlgorithm="AES256",
                  SSECustomerKey=customer_key)
except ClientError as e:
    out["sse_c_message"] = "SSE-C" in e.response["Error"].get("Message", "")
out["put_kms"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="sse/kms", Body=b"secret", ServerSideEncryption="aws:kms"))
out["after_kms"] = error_of(lambda: s3.head_object(Bucket=bucket, Key="sse/kms"))
out["put_kms_dsse"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="sse/dsse", Body=b"secret", ServerSideEncryption="aws:kms:dsse"))
out["after_kms_dsse"] = error_of(lambda: s3.head_object(Bucket=bucket, Key="sse/dsse"))
out["create_mp_kms"] = error_of(lambda: s3.create_multipart_upload(
    Bucket=bucket, Key="sse/mp", ServerSideEncryption="aws:kms", SSEKMSKeyId="alias/x"))
out["create_mp_sse_c"] = error_of(lambda: s3.create_multipart_upload(
    Bucket=bucket, Key="sse/mp", SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key))
out["get_sse_c"] = error_of(lambda: s3.get_object(
    Bucket=bucket, Key=doc, SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key))
out["head_sse_c"] = error_of(lambda: s3.head_object(
    Bucket=bucket, Key=doc, SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key))

# --- tagging -------------------------------------------------------------------------
out["tags_at_put"] = s3.get_object_tagging(Bucket=bucket, Key=doc)["TagSet"]
s3.put_object_tagging(Bucket=bucket, Key=doc,
                      Tagging={"TagSet": [{"Key": "stage", "Value": "final"}]})
out["tags_replaced"] = s3.get_object_tagging(Bucket=bucket, Key=doc)["TagSet"]
s3.delete_object_tagging(Bucket=bucket, Key=doc)
out["tags_deleted"] = s3.get_object_tagging(Bucket=bucket, Key=doc)["TagSet"]


def tag_set(pairs):
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs]}


ten = [(f"k{i}", str(i)) for i in range(10)]
out["tags_eleven"] = error_of(lambda: s3.put_object_tagging(
    Bucket=bucket, Key=doc, Tagging=tag_set(ten + [("k10", "10")])))
out["tags_long_key"] = error_of(lambda: s3.put_object_tagging(
    Bucket=bucket, Key=doc, Tagging=tag_set([("k" * 129, "v")])))
out["tags_long_value"] = error_of(lambda: s3.put_object_tagging(
    Bucket=bucket, Key=doc, Tagging=tag_set([("k", "v" * 257)])))
s3.put_object_tagging(Bucket=bucket, Key=doc, Tagging=tag_set(ten))
out["tags_ten_ok"] = len(s3.get_object_tagging(Bucket=bucket, Key=doc)["TagSet"])
out["tags_header_eleven"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="docs/tagged", Body=b"x",
    Tagging="&".join(f"k{i}=v" for i in range(11))))
out["tags_header_eleven_stored"] = error_of(lambda: s3.head_object(
    Bucket=bucket, Key="docs/tagged"))
out["tagging_missing_key"] = error_of(lambda: s3.get_object_tagging(
    Bucket=bucket, Key="docs/nothing-here"))

print(json.dumps(out, default=str))
