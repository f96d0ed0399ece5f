"""Drives the wire details of ZiB's S3 surface with boto3 and plain HTTP, and prints
one JSON document of what it saw for crates/zib-cli/tests/s3_wire.rs to check: keys
with characters URLs treat specially round-trip byte for byte through every path,
listings encode as asked, errors carry request ids, presigned expiry limits.

Usage: s3_wire.py ENDPOINT BUCKET BEARER
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import json
import sys
import urllib.error
import urllib.parse
import urllib.request

from botocore import handlers
from botocore.exceptions import ClientError

from s3_support import client

endpoint, bucket, bearer = sys.argv[1:4]
s3 = client(endpoint)
# A client that does not ask for EncodingType=url (botocore does by default for
# listings, and decodes what comes back): what the server lists as-is.
raw_lists = client(endpoint)
for op, decode in (("ListObjects", handlers.decode_list_object),
                   ("ListObjectsV2", handlers.decode_list_object_v2)):
    raw_lists.meta.events.unregister("before-parameter-build.s3." + op,
                                     handlers.set_list_objects_encoding_type_url)
    raw_lists.meta.events.unregister("after-call.s3." + op, decode)
out = {}

KEYS = [
    "a+b",
    "a b",
    "a%2Bb",
    "100%",
    "%",
    "caf\u00e9/\u65e5\u672c \u00fc.txt",
    "what?x=1",
    "hash#tag",
    "k=v&w=z",
    "dir/plus+ space%20",
]


def error_of(call):
    try:
        call()
    except ClientError as e:
        meta = e.response["ResponseMetadata"]
        return {"code": e.response["Error"]["Code"],
                "status": meta["HTTPStatusCode"],
                "request_id": meta.get("RequestId"),
                "header_request_id": meta.get("HTTPHeaders", {}).get("x-amz-request-id")}
    return None


def http(method, url, headers=None, body=None):
    """(status, headers, body) without following redirects."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with opener.open(req) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def quote_key(key):
    return urllib.parse.quote(key, safe="/~")


def body_of(key):
    return ("body of " + key).encode()


s3.create_bucket(Bucket=bucket)
for key in KEYS:
    s3.put_object(Bucket=bucket, Key=key, Body=body_of(key))

out["head"] = {k: s3.head_object(Bucket=bucket, Key=k)["ContentLength"] == len(body_of(k))
               for k in KEYS}
out["get"] = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() == body_of(k) for k in KEYS}
out["keys"] = KEYS
out["v1"] = [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]]
out["v2"] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
out["v1_raw"] = [o["Key"] for o in raw_lists.list_objects(Bucket=bucket)["Contents"]]
out["v2_raw"] = [o["Key"] for o in raw_lists.list_objects_v2(Bucket=bucket)["Contents"]]
# A prefix with `+` and a delimiter, each listed (and so encoded) by botocore.
r = s3.list_objects_v2(Bucket=bucket, Prefix="dir/plus+", Delimiter=" ")
out["v2_plus_prefix"] = {"prefixes": [p["Prefix"] for p in r.get("CommonPrefixes", [])],
                         "prefix": r.get("Prefix"), "delimiter": r.get("Delimiter")}
# Pages of one, resuming with StartAfter / Marker on keys with `+` and `%`.
pages, token = [], None
while True:
    args = {"Bucket": bucket, "MaxKeys": 1, "StartAfter": "a+b"}
    if token:
        args["ContinuationToken"] = token
    r = s3.list_objects_v2(**args)
    pages += [o["Key"] for o in r.get("Contents", [])]
    if not r["IsTruncated"]:
        break
    token = r["NextContinuationToken"]
out["v2_after_plus"] = pages
pages, marker = [], "a b"
while True:
    r = s3.list_objects(Bucket=bucket, MaxKeys=1, Marker=marker, Delimiter="/")
    got = [o["Key"] for o in r.get("Contents", [])] + \
        [p["Prefix"] for p in r.get("CommonPrefixes", [])]
    pages += got
    if not r["IsTruncated"]:
        break
    marker = r["NextMarker"]
out["v1_after_space"] = pages

# Presigned GET (a redirect to the CDN, followed) and Bearer GET (same).
presigned, bearer_get = {}, {}
for key in KEYS:
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                    ExpiresIn=300)
    with urllib.request.urlopen(url) as r:
        presigned[key] = r.read() == body_of(key)
    req = urllib.request.Request("%s/%s/%s" % (endpoint, bucket, quote_key(key)),
                                 headers={"Authorization": bearer})
    with urllib.request.urlopen(req) as r:
        bearer_get[key] = r.read() == body_of(key)
out["presigned"] = presigned
out["bearer_get"] = bearer_get

# Multipart on such keys, then an upload listing in both encodings.
mp = {}
for key in ["mp/a+b %2B\u00e9?#", "mp/a b"]:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=1,
                          Body=body_of(key))
    if key == "mp/a b":
        pending = s3.list_multipart_uploads(Bucket=bucket, Prefix="mp/")
        mp["pending"] = [u["Key"] for u in pending.get("Uploads", [])]
        encoded = s3.list_multipart_uploads(Bucket=bucket, Prefix="mp/", EncodingType="url")
        mp["pending_encoded"] = [u["Key"] for u in encoded.get("Uploads", [])]
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    mp[key] = s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body_of(key)
out["multipart"] = mp

# ListObjectsV2 details: empty delimiter not echoed, empty continuation token.
status, _, body = http("GET", "%s/%s?list-type=2&delimiter=&prefix=a" % (endpoint, bucket),
                       {"Authorization": bearer})
out["empty_delimiter"] = {"status": status, "xml": body.decode()}
status, _, body = http("GET", "%s/%s?list-type=2&continuation-token=&prefix=a"
                       % (endpoint, bucket), {"Authorization": bearer})
out["empty_token"] = {"status": status, "xml": body.decode()}
r = s3.list_objects_v2(Bucket=bucket, ContinuationToken="", Prefix="a")
out["empty_token_boto3"] = [o["Key"] for o in r.get("Contents", [])]
status, _, body = http("GET", "%s/%s?list-type=2&encoding-type=url&prefix=a%%2B&start-after=a%%20"
                       % (endpoint, bucket), {"Authorization": bearer})
out["encoded_v2_xml"] = {"status": status, "xml": body.decode()}
status, _, body = http("GET", "%s/%s?encoding-type=url&marker=%%25&delimiter=%%20&max-keys=2"
                       % (endpoint, bucket), {"Authorization": bearer})
out["encoded_v1_xml"] = {"status": status, "xml": body.decode()}

# ListBuckets pages.
for name in ["wire-b1", "wire-b2", "wire-b3"]:
    s3.create_bucket(Bucket=name)
seen, token, calls = [], None, 0
while calls < 10:
    calls += 1
    args = {"MaxBuckets": 2, "Prefix": "wire-"}
    if token:
        args["ContinuationToken"] = token
    r = s3.list_buckets(**args)
    seen.append([b["Name"] for b in r["Buckets"]])
    token = r.get("ContinuationToken")
    if not token:
        break
out["bucket_pages"] = seen
out["all_buckets"] = [b["Name"] for b in s3.list_buckets()["Buckets"]]

# Request ids: on errors (body and header) and on successes (header).
err = error_of(lambda: s3.head_object(Bucket=bucket, Key="missing"))
out["missing_head"] = err
err = error_of(lambda: s3.get_object(Bucket=bucket, Key="missing"))
out["missing_get"] = err
ok = s3.head_object(Bucket=bucket, Key="a+b")["ResponseMetadata"]
out["ok_ids"] = {"request_id": ok["HTTPHeaders"].get("x-amz-request-id"),
                 "id_2": ok["HTTPHeaders"].get("x-amz-id-2"),
                 "zib_id": ok["HTTPHeaders"].get("x-request-id")}
status, headers, body = http("GET", "%s/%s/missing" % (endpoint, bucket),
                             {"Authorization": bearer})
out["missing_bearer"] = {"status": status, "xml": body.decode(),
                         "x-amz-request-id": headers.get("x-amz-request-id"),
                         "x-request-id": headers.get("x-request-id")}
status, headers, body = http("GET", "%s/" % endpoint)
out["anonymous"] = {"status": status, "xml": body.decode(),
                    "x-amz-request-id": headers.get("x-amz-request-id"),
                    "x-request-id": headers.get("x-request-id")}

# Presigned expiry limits (botocore signs whatever it is given).
week = 7 * 24 * 3600
for name, expires in [("week", week), ("over_week", week + 1), ("negative", -5)]:
    # botocore's CRT signer refuses a negative expiry: sign, then change it.
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a+b"},
                                    ExpiresIn=max(expires, 1))
    url = url.replace("X-Amz-Expires=%d&" % max(expires, 1), "X-Amz-Expires=%d&" % expires)
    status, _, body = http("GET", url)
    out["presign_" + name] = {"status": status, "xml": body.decode(errors="replace")}

# Bucket names as S3's rules.
names = {}
for name in ["foo-.bar", "foo.-bar", "foo..bar", "-foo", "foo-", "Foo", "ab", "a" * 64,
             "192.168.1.1", "xn--foo", "foo-s3alias", "foo--ol-s3", "foo_bar", "sthree-foo",
             "ok-name.with.dots", "a" * 63, "abc"]:
    names[name] = error_of(lambda: s3.create_bucket(Bucket=name))
out["bucket_names"] = names

# DELETE each key, then nothing is left of them.
for key in KEYS + ["mp/a+b %2B\u00e9?#", "mp/a b"]:
    s3.delete_object(Bucket=bucket, Key=key)
left = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
out["left_after_delete"] = [o["Key"] for o in left]

print(json.dumps(out))
