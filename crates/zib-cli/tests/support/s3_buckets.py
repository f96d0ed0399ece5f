"""Drives ZiB's bucket-level S3 operations with boto3 and the tenant API with plain
HTTP, asserting as it goes, for crates/zib-cli/tests/s3_buckets.rs: DeleteBucket,
DeleteObjects, the versioning answers of an unversioned bucket, the `supersede`
overwrite mode, and every refused operation answering 501 NotImplemented.

Usage: s3_buckets.py ENDPOINT API_URL OTHER_BEARER
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. OTHER_BEARER is a
second tenant's `Bearer ak:sk`. Prints a JSON summary; a failed check exits non-zero.
"""

import base64
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
import uuid

import s3_support

endpoint, api_url, other_bearer = sys.argv[1:4]
access_key = os.environ["AWS_ACCESS_KEY_ID"]
secret_key = os.environ["AWS_SECRET_ACCESS_KEY"]
bearer = f"Bearer {access_key}:{secret_key}"


def client(signature_version="s3v4", ak=access_key, sk=secret_key):
    return s3_support.client(endpoint, signature_version, access_key=ak, secret_key=sk)


s3 = client()
other_ak, other_sk = other_bearer[len("Bearer "):].split(":", 1)
summary = {"refused": []}


def http(method, url, auth=None, body=None, headers=None):
    """(status, body bytes) of a plain HTTP request; errors are answers too."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if auth:
        req.add_header("Authorization", auth)
    if isinstance(body, dict):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def api(method, path, auth=bearer, body=None):
    status, raw = http(method, api_url + path, auth, body)
    return status, (json.loads(raw) if raw else None)


def error_of(call):
    return s3_support.error_of(call, message=True)


def expect_error(call, code, status, what):
    err = error_of(call)
    assert err is not None, f"{what}: succeeded, expected {code}"
    assert err["code"] == code and err["status"] == status, f"{what}: got {err}, expected {code} {status}"
    return err


def keys(bucket, prefix=""):
    r = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in r.get("Contents", [])]


def bucket_names():
    return [b["Name"] for b in s3.list_buckets()["Buckets"]]


# The other tenant's secret is sealed for SigV4 on its first Bearer request.
status, _ = http("GET", endpoint + "/", other_bearer)
assert status == 200, status
other = client(ak=other_ak, sk=other_sk)

# --- DeleteBucket ---------------------------------------------------------------
s3.create_bucket(Bucket="rb-empty")
r = s3.delete_bucket(Bucket="rb-empty")
assert r["ResponseMetadata"]["HTTPStatusCode"] == 204, r
assert "rb-empty" not in bucket_names()
expect_error(lambda: s3.head_bucket(Bucket="rb-empty"), "404", 404, "head of a deleted bucket")
expect_error(lambda: s3.delete_bucket(Bucket="rb-empty"), "NoSuchBucket", 404, "delete twice")
expect_error(lambda: s3.delete_bucket(Bucket="never-was"), "NoSuchBucket", 404, "delete missing")

s3.put_object(Bucket="rb-full", Key="stays.txt", Body=b"still here")
err = expect_error(lambda: s3.delete_bucket(Bucket="rb-full"), "BucketNotEmpty", 409, "non-empty")
assert err["message"], err
expect_error(lambda: other.delete_bucket(Bucket="rb-full"), "NoSuchBucket", 404, "another tenant's")
assert keys("rb-full") == ["stays.txt"]

s3.create_bucket(Bucket="rb-upload")
upload = s3.create_multipart_upload(Bucket="rb-upload", Key="half.bin")["UploadId"]
expect_error(lambda: s3.delete_bucket(Bucket="rb-upload"), "BucketNotEmpty", 409,
             "multipart upload in progress")
s3.abort_multipart_upload(Bucket="rb-upload", Key="half.bin", UploadId=upload)
s3.delete_bucket(Bucket="rb-upload")
assert "rb-upload" not in bucket_names()

# An emptied bucket can be deleted, and its name used again.
s3.put_object(Bucket="rb-reuse", Key="a", Body=b"first life")
s3.delete_object(Bucket="rb-reuse", Key="a")
s3.delete_bucket(Bucket="rb-reuse")
s3.put_object(Bucket="rb-reuse", Key="b", Body=b"second life")
assert keys("rb-reuse") == ["b"]
assert s3.get_object(Bucket="rb-reuse", Key="b")["Body"].read() == b"second life"

# --- the tenant API -----------------------------------------------------------------
status, body = api("DELETE", "/v1/api/me/buckets/rb-full")
assert status == 409 and body["code"] == "bucket_not_empty", (status, body)
status, body = api("DELETE", "/v1/api/me/buckets/rb-full", auth=other_bearer)
assert status == 404 and body["code"] == "not_found", (status, body)
status, body = api("DELETE", "/v1/api/me/buckets/never-was")
assert status == 404 and body["code"] == "not_found", (status, body)
status, body = api("PATCH", "/v1/api/me/buckets/api-made", body={"overwrite": "supersede"})
assert status == 200 and body["name"] == "api-made" and body["overwrite"] == "supersede", body
status, body = api("PATCH", "/v1/api/me/buckets/api-made", body={"overwrite": "sometimes"})
assert status == 400 and body["code"] == "invalid_field", (status, body)
status, body = api("PATCH", "/v1/api/me/buckets/api-made", body={})
assert status == 400 and body["code"] == "invalid_field", (status, body)
status, body = api("GET", "/v1/api/me/buckets")
modes = {b["name"]: b["overwrite"] for b in body["buckets"]}
assert modes["api-made"] == "supersede" and modes["rb-full"] == "conflict", modes
status, body = api("GET", "/v1/api/me/buckets", auth=other_bearer)
assert "api-made" not in [b["name"] for b in body["buckets"]], body
status, body = api("DELETE", "/v1/api/me/buckets/api-made")
assert status == 200 and body == {"success": True, "bucket": "api-made"}, (status, body)
assert "api-made" not in bucket_names()

# --- DeleteObjects --------------------------------------------------------------
for i in range(6):
    s3.put_object(Bucket="batch", Key=f"k{i}", Body=f"object {i}".encode())
r = s3.delete_objects(Bucket="batch", Delete={"Objects": [
    {"Key": "k0"}, {"Key": "k1"}, {"Key": "never-there"}]})
assert sorted(d["Key"] for d in r["Deleted"]) == ["k0", "k1", "never-there"], r
assert not r.get("Errors"), r
assert keys("batch") == ["k2", "k3", "k4", "k5"]
r = s3.delete_objects(Bucket="batch", Delete={"Objects": [{"Key": "k2"}, {"Key": "k3"}],
                                              "Quiet": True})
assert not r.get("Deleted") and not r.get("Errors"), r
assert keys("batch") == ["k4", "k5"]
r = s3.delete_objects(Bucket="batch", Delete={"Objects": [
    {"Key": "k4", "VersionId": "3HL4kqtJlcpXroDTDmJ"}, {"Key": "k5", "VersionId": "null"}]})
assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [("k4", "NoSuchVersion")], r
assert [d["Key"] for d in r["Deleted"]] == ["k5"], r
assert keys("batch") == ["k4"]
expect_error(lambda: s3.delete_objects(Bucket="batch", Delete={
    "Objects": [{"Key": f"x{i}"} for i in range(1001)]}), "MalformedXML", 400, "1001 keys")
expect_error(lambda: s3.delete_objects(Bucket="never-was", Delete={"Objects": [{"Key": "a"}]}),
             "NoSuchBucket", 404, "batch in a missing bucket")
expect_error(lambda: other.delete_objects(Bucket="batch", Delete={"Objects": [{"Key": "k4"}]}),
             "NoSuchBucket", 404, "batch in another tenant's bucket")
assert keys("batch") == ["k4"]
# S3 requires the list's Content-MD5 or checksum (boto3 and the CLI send one): a list
# without, or damaged on the way, deletes nothing.
s3.put_object(Bucket="batch", Key="guarded", Body=b"g")
listing = b'<Delete><Object><Key>guarded</Key></Object></Delete>'
md5_of = lambda b: base64.b64encode(hashlib.md5(b).digest()).decode()
status, raw = http("POST", f"{endpoint}/batch?delete", bearer, listing)
assert status == 400 and b"<Code>InvalidRequest</Code>" in raw, (status, raw)
status, raw = http("POST", f"{endpoint}/batch?delete", bearer, listing,
                   {"Content-MD5": md5_of(b"<Delete>something else</Delete>")})
assert status == 400 and b"<Code>BadDigest</Code>" in raw, (status, raw)
assert "guarded" in keys("batch")
status, raw = http("POST", f"{endpoint}/batch?delete", bearer, listing,
                   {"Content-MD5": md5_of(listing)})
assert status == 200 and b"<Deleted><Key>guarded</Key>" in raw, (status, raw)
assert keys("batch") == ["k4"]

# --- versioning, answered for an unversioned bucket ------------------------------
v = s3.get_bucket_versioning(Bucket="batch")
assert "Status" not in v and "MFADelete" not in v, v
expect_error(lambda: s3.get_bucket_versioning(Bucket="never-was"), "NoSuchBucket", 404,
             "versioning of a missing bucket")
for status_wanted in ["Enabled", "Suspended"]:
    expect_error(lambda: s3.put_bucket_versioning(
        Bucket="batch", VersioningConfiguration={"Status": status_wanted}),
        "NotImplemented", 501, f"versioning {status_wanted}")
assert "Status" not in s3.get_bucket_versioning(Bucket="batch")

version_keys = ["a/1", "a/2", "b", "c", "d"]
for k in version_keys:
    s3.put_object(Bucket="vers", Key=k, Body=k.encode())
r = s3.list_object_versions(Bucket="vers")
assert [x["Key"] for x in r["Versions"]] == version_keys, r
assert all(x["VersionId"] == "null" and x["IsLatest"] for x in r["Versions"]), r
assert not r.get("DeleteMarkers") and r["IsTruncated"] is False, r
r = s3.list_object_versions(Bucket="vers", Delimiter="/")
assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/"], r
assert [x["Key"] for x in r["Versions"]] == ["b", "c", "d"], r
r = s3.list_object_versions(Bucket="vers", Prefix="a/")
assert [x["Key"] for x in r["Versions"]] == ["a/1", "a/2"], r
paged, args = [], {"Bucket": "vers", "MaxKeys": 2}
while True:
    r = s3.list_object_versions(**args)
    paged += [x["Key"] for x in r.get("Versions", [])]
    if not r["IsTruncated"]:
        break
    assert r["NextVersionIdMarker"] == "null", r
    args.update(KeyMarker=r["NextKeyMarker"], VersionIdMarker=r["NextVersionIdMarker"])
assert paged == version_keys, paged
summary["paged_versions"] = paged

assert s3.get_object(Bucket="vers", Key="b", VersionId="null")["Body"].read() == b"b"
assert s3.head_object(Bucket="vers", Key="b", VersionId="null")["ContentLength"] == 1
expect_error(lambda: s3.get_object(Bucket="vers", Key="b", VersionId="3HL4kqtJlcpXroDTDmJ"),
             "NoSuchVersion", 404, "get of another version")
expect_error(lambda: s3.head_object(Bucket="vers", Key="b", VersionId="3HL4kqtJlcpXroDTDmJ"),
             "404", 404, "head of another version")
expect_error(lambda: s3.delete_object(Bucket="vers", Key="b", VersionId="3HL4kqtJlcpXroDTDmJ"),
             "NoSuchVersion", 404, "delete of another version")
assert "b" in keys("vers")
s3.delete_object(Bucket="vers", Key="b", VersionId="null")
assert "b" not in keys("vers")

# --- the supersede overwrite mode ---------------------------------------------------
status, _ = api("PATCH", "/v1/api/me/buckets/sync", body={"overwrite": "supersede"})
assert status == 200
s3.put_object(Bucket="sync", Key="notes.txt", Body=b"version one")
old_id = s3.head_object(Bucket="sync", Key="notes.txt")["ResponseMetadata"]["HTTPHeaders"]["x-zib-file-id"]
status, old_info = api("GET", f"/v1/api/file/{old_id}")
assert status == 200 and old_info["phase"] in ("distributed", "safe"), old_info
status, _ = http("GET", old_info["cdn_url"])
assert status == 200, status
# Same size, other bytes: what `rclone sync` sends for an edited file.
s3.put_object(Bucket="sync", Key="notes.txt", Body=b"version two")
new_id = s3.head_object(Bucket="sync", Key="notes.txt")["ResponseMetadata"]["HTTPHeaders"]["x-zib-file-id"]
assert new_id != old_id, (old_id, new_id)
assert s3.get_object(Bucket="sync", Key="notes.txt")["Body"].read() == b"version two"
status, info = api("GET", f"/v1/api/file/{old_id}")
assert status == 200 and info["phase"] == "cancelled", info
status, _ = http("GET", old_info["cdn_url"])
assert status in (404, 410), f"the superseded file is still served by the CDN: {status}"
# A multipart Complete over the key supersedes too, whatever its size.
part = b"p" * (5 * 1024 * 1024)
mpu = s3.create_multipart_upload(Bucket="sync", Key="notes.txt")["UploadId"]
etag = s3.upload_part(Bucket="sync", Key="notes.txt", UploadId=mpu, PartNumber=1, Body=part)["ETag"]
s3.complete_multipart_upload(Bucket="sync", Key="notes.txt", UploadId=mpu,
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
third = s3.head_object(Bucket="sync", Key="notes.txt")
assert third["ContentLength"] == len(part), third
third_id = third["ResponseMetadata"]["HTTPHeaders"]["x-zib-file-id"]
assert third_id not in (old_id, new_id)
assert api("GET", f"/v1/api/file/{new_id}")[1]["phase"] == "cancelled"
assert keys("sync") == ["notes.txt"]
summary["supersede"] = {"old": old_id, "new": new_id, "third": third_id}

# The default stays the contract's 409, also for a same-size body.
s3.put_object(Bucket="plain", Key="notes.txt", Body=b"version one")
expect_error(lambda: s3.put_object(Bucket="plain", Key="notes.txt", Body=b"version two"),
             "KeyAlreadyExists", 409, "default bucket overwrite")
expect_error(lambda: s3.put_object(Bucket="plain", Key="notes.txt", Body=b"longer version three"),
             "KeyAlreadyExists", 409, "default bucket overwrite, other size")
assert s3.get_object(Bucket="plain", Key="notes.txt")["Body"].read() == b"version one"
# Switching back to conflict restores the 409.
api("PATCH", "/v1/api/me/buckets/sync", body={"overwrite": "conflict"})
expect_error(lambda: s3.put_object(Bucket="sync", Key="notes.txt", Body=b"again"),
             "KeyAlreadyExists", 409, "bucket switched back to conflict")

# --- what is not offered answers 501 NotImplemented with a message ----------------
policy = json.dumps({"Version": "2012-10-17", "Statement": []})
lifecycle = {"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""},
                        "Expiration": {"Days": 1}}]}
cors = {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
website = {"IndexDocument": {"Suffix": "index.html"}}
replication = {"Role": "arn:aws:iam::1:role/r", "Rules": [{"Status": "Enabled", "Prefix": "",
               "Destination": {"Bucket": "arn:aws:s3:::elsewhere"}}]}
refusals = {
    "PutBucketPolicy": lambda: s3.put_bucket_policy(Bucket="plain", Policy=policy),
    "GetBucketPolicy": lambda: s3.get_bucket_policy(Bucket="plain"),
    "DeleteBucketPolicy": lambda: s3.delete_bucket_policy(Bucket="plain"),
    "GetBucketPolicyStatus": lambda: s3.get_bucket_policy_status(Bucket="plain"),
    "PutBucketLifecycleConfiguration": lambda: s3.put_bucket_lifecycle_configuration(
        Bucket="plain", LifecycleConfiguration=lifecycle),
    "GetBucketLifecycleConfiguration": lambda: s3.get_bucket_lifecycle_configuration(Bucket="plain"),
    "DeleteBucketLifecycle": lambda: s3.delete_bucket_lifecycle(Bucket="plain"),
    "PutBucketCors": lambda: s3.put_bucket_cors(Bucket="plain", CORSConfiguration=cors),
    "GetBucketCors": lambda: s3.get_bucket_cors(Bucket="plain"),
    "PutBucketWebsite": lambda: s3.put_bucket_website(Bucket="plain", WebsiteConfiguration=website),
    "GetBucketWebsite": lambda: s3.get_bucket_website(Bucket="plain"),
    "PutObjectLockConfiguration": lambda: s3.put_object_lock_configuration(
        Bucket="plain", ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}),
    "GetObjectLockConfiguration": lambda: s3.get_object_lock_configuration(Bucket="plain"),
    "PutObjectRetention": lambda: s3.put_object_retention(
        Bucket="plain", Key="notes.txt",
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": "2030-01-01T00:00:00Z"}),
    "PutObjectLegalHold": lambda: s3.put_object_legal_hold(
        Bucket="plain", Key="notes.txt", LegalHold={"Status": "ON"}),
    "PutBucketReplication": lambda: s3.put_bucket_replication(
        Bucket="plain", ReplicationConfiguration=replication),
    "GetBucketReplication": lambda: s3.get_bucket_replication(Bucket="plain"),
    "PutBucketNotificationConfiguration": lambda: s3.put_bucket_notification_configuration(
        Bucket="plain", NotificationConfiguration={}),
    "PutBucketLogging": lambda: s3.put_bucket_logging(Bucket="plain", BucketLoggingStatus={}),
    "PutBucketAccelerateConfiguration": lambda: s3.put_bucket_accelerate_configuration(
        Bucket="plain", AccelerateConfiguration={"Status": "Enabled"}),
    "PutBucketRequestPayment": lambda: s3.put_bucket_request_payment(
        Bucket="plain", RequestPaymentConfiguration={"Payer": "Requester"}),
    "RestoreObject": lambda: s3.restore_object(Bucket="plain", Key="notes.txt",
                                               RestoreRequest={"Days": 1}),
    "SelectObjectContent": lambda: s3.select_object_content(
        Bucket="plain", Key="notes.txt", Expression="select * from s3object",
        ExpressionType="SQL", InputSerialization={"CSV": {}}, OutputSerialization={"CSV": {}}),
    "PutBucketVersioning": lambda: s3.put_bucket_versioning(
        Bucket="plain", VersioningConfiguration={"Status": "Enabled"}),
    "PutBucketAcl public-read": lambda: s3.put_bucket_acl(Bucket="plain", ACL="public-read"),
    "PutBucketAcl grant": lambda: s3.put_bucket_acl(
        Bucket="plain", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"'),
    "PutObjectAcl public-read": lambda: s3.put_object_acl(
        Bucket="plain", Key="notes.txt", ACL="public-read"),
    "PutObjectAcl policy": lambda: s3.put_object_acl(
        Bucket="plain", Key="notes.txt", AccessControlPolicy={
            "Owner": {"ID": "x"}, "Grants": [{"Grantee": {"Type": "Group",
                "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"}]}),
    "CreateBucket public-read": lambda: s3.create_bucket(Bucket="refused-public", ACL="public-read"),
    "CreateBucket object lock": lambda: s3.create_bucket(
        Bucket="refused-locked", ObjectLockEnabledForBucket=True),
    "PutObject public-read": lambda: s3.put_object(
        Bucket="plain", Key="refused/acl", Body=b"x", ACL="public-read"),
    "PutObject grant": lambda: s3.put_object(
        Bucket="plain", Key="refused/grant", Body=b"x", GrantRead='id="someone"'),
    "PutObject object lock": lambda: s3.put_object(
        Bucket="plain", Key="refused/lock", Body=b"x", ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate="2030-01-01T00:00:00Z"),
    "PutObject storage class": lambda: s3.put_object(
        Bucket="plain", Key="refused/glacier", Body=b"x", StorageClass="GLACIER"),
    "PutObject website redirect": lambda: s3.put_object(
        Bucket="plain", Key="refused/redirect", Body=b"x", WebsiteRedirectLocation="/elsewhere"),
    "CreateMultipartUpload public-read": lambda: s3.create_multipart_upload(
        Bucket="plain", Key="refused/mpu", ACL="public-read-write"),
}
for name, call in refusals.items():
    err = error_of(call)
    assert err is not None, f"{name} was accepted; it must answer NotImplemented"
    assert err["status"] == 501 and err["code"] == "NotImplemented", f"{name}: {err}"
    assert err["message"], f"{name}: NotImplemented without a message"
    summary["refused"].append(name)
# Nothing refused was stored or created on the way.
assert keys("plain", "refused/") == [], keys("plain", "refused/")
names = bucket_names()
assert "refused-public" not in names and "refused-locked" not in names, names
assert s3.list_multipart_uploads(Bucket="plain").get("Uploads", []) == []

# What private means is accepted, and the ACL read back says so.
s3.put_object(Bucket="plain", Key="private.txt", Body=b"p", ACL="private")
s3.put_object_acl(Bucket="plain", Key="private.txt", ACL="private")
s3.put_bucket_acl(Bucket="plain", ACL="private")
s3.create_bucket(Bucket="private-bucket", ACL="private")
for acl in [s3.get_bucket_acl(Bucket="plain"),
            s3.get_object_acl(Bucket="plain", Key="private.txt")]:
    grants = [(g["Grantee"]["Type"], g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"]]
    assert grants == [("CanonicalUser", acl["Owner"]["ID"], "FULL_CONTROL")], acl
expect_error(lambda: s3.get_object_acl(Bucket="plain", Key="nope"), "NoSuchKey", 404, "acl of missing")

# Browser POST uploads: refused whether the form is presigned or sent with Bearer.
boundary = "zibboundary" + uuid.uuid4().hex


def form(fields):
    parts = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
                     + (b'; filename="f.txt"' if name == "file" else b"") + b"\r\n\r\n"
                     + (value if isinstance(value, bytes) else value.encode()) + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


form_headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
post = s3.generate_presigned_post("plain", "refused/post")
status, raw = http("POST", post["url"], None,
                   form(list(post["fields"].items()) + [("file", b"posted")]), form_headers)
assert status == 501 and b"<Code>NotImplemented</Code>" in raw, (status, raw)
status, raw = http("POST", f"{endpoint}/plain", bearer,
                   form([("key", "refused/post"), ("file", b"posted")]), form_headers)
assert status == 501 and b"<Code>NotImplemented</Code>" in raw, (status, raw)
assert keys("plain", "refused/") == []
summary["refused"].append("PostObject")

# AWS Signature V2, in the header and presigned.
v2 = client(signature_version="s3")
expect_error(lambda: v2.list_objects(Bucket="plain"), "NotImplemented", 501, "SigV2 header")
expect_error(lambda: v2.put_object(Bucket="plain", Key="refused/v2", Body=b"x"),
             "NotImplemented", 501, "SigV2 header PUT")
url = v2.generate_presigned_url("get_object", Params={"Bucket": "plain", "Key": "notes.txt"})
assert "Signature=" in url and "AWSAccessKeyId=" in url, url
status, raw = http("GET", url)
assert status == 501 and b"<Code>NotImplemented</Code>" in raw and b"Version 4" in raw, (status, raw)
assert keys("plain", "refused/") == []
summary["refused"].append("SigV2")

print(json.dumps(summary))
