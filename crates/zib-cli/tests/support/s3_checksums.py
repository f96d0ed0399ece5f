"""Drives the checksums of ZiB's S3 surface with boto3 (>= 1.36, with awscrt for
CRC64NVME) and prints one JSON document of what it saw, next to what it expected,
for crates/zib-cli/tests/s3_checksums.rs to check.

Usage: s3_checksums.py ENDPOINT BUCKET
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

import base64
import hashlib
import json
import os
import sys
import zlib

import awscrt.checksums
import boto3
import botocore.httpchecksum
from boto3.s3.transfer import TransferConfig

import s3_support

endpoint, bucket = sys.argv[1:3]
ALGOS = ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"]


def client(**config):
    return s3_support.client(endpoint, **config)


s3 = client()
out = {}


def raw(algo, data):
    if algo == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    if algo == "CRC32C":
        return awscrt.checksums.crc32c(data).to_bytes(4, "big")
    if algo == "CRC64NVME":
        return awscrt.checksums.crc64nvme(data).to_bytes(8, "big")
    return hashlib.new(algo.lower(), data).digest()


def b64(algo, data):
    return base64.b64encode(raw(algo, data)).decode()


def error_of(call):
    return s3_support.error_of(call, message=True)


def absent(key):
    return error_of(lambda: s3.head_object(Bucket=bucket, Key=key)) is not None


def seen_headers(c):
    """Records how each PutObject / UploadPart carried its checksum."""
    seen = []

    def text(v):
        return v.decode() if isinstance(v, bytes) else v

    def hook(request, **_):
        h = request.headers
        seen.append({"content_sha256": text(h.get("x-amz-content-sha256")),
                     "trailer": text(h.get("x-amz-trailer"))})

    c.meta.events.register("before-send.s3.PutObject", hook)
    c.meta.events.register("before-send.s3.UploadPart", hook)
    return seen


s3.create_bucket(Bucket=bucket)
body = b"checksummed bytes " * 1000

# 1. Each algorithm in a header (botocore's choice over plain HTTP), then read back
#    with checksum mode: HEAD and a full GET return it (botocore also validates the
#    GET body against it), a ranged GET does not.
header_seen = seen_headers(s3)
for algo in ALGOS:
    key = f"header/{algo}"
    put = s3.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm=algo)
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    data = got["Body"].read()
    ranged = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", Range="bytes=0-9")
    plain_head = s3.head_object(Bucket=bucket, Key=key)
    out[f"header_{algo}"] = {
        "want": b64(algo, body),
        "put": put.get(f"Checksum{algo}"),
        "head": head.get(f"Checksum{algo}"),
        "head_type": head.get("ChecksumType"),
        "get": got.get(f"Checksum{algo}"),
        "get_bytes_ok": data == body,
        "ranged": ranged.get(f"Checksum{algo}"),
        "plain_head": plain_head.get(f"Checksum{algo}"),
        # S3 also keeps a CRC64NVME of every object.
        "crc64nvme": head.get("ChecksumCRC64NVME"),
        "want_crc64nvme": b64("CRC64NVME", body),
    }
out["header_seen"] = list(header_seen)

# 2. The default of boto3 against S3 over TLS: the checksum as the trailer of an
#    aws-chunked body (STREAMING-UNSIGNED-PAYLOAD-TRAILER). botocore only does this
#    for https URLs, so this client is told its URL is https.
real_urlparse = botocore.httpchecksum.urlparse


def as_if_tls(url):
    return real_urlparse(url)._replace(scheme="https")


botocore.httpchecksum.urlparse = as_if_tls
trailing = client()
trailer_seen = seen_headers(trailing)
out["default_calculation"] = trailing.meta.config.request_checksum_calculation
trailing.put_object(Bucket=bucket, Key="trailer/default", Body=body)
for algo in ALGOS:
    key = f"trailer/{algo}"
    put = trailing.put_object(Bucket=bucket, Key=key, Body=body, ChecksumAlgorithm=algo)
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    out[f"trailer_{algo}"] = {"want": b64(algo, body), "put": put.get(f"Checksum{algo}"),
                              "head": head.get(f"Checksum{algo}")}
out["trailer_default"] = {
    "want": b64("CRC32", body),
    "head": s3.head_object(Bucket=bucket, Key="trailer/default",
                           ChecksumMode="ENABLED").get("ChecksumCRC32"),
    "bytes_ok": s3.get_object(Bucket=bucket, Key="trailer/default")["Body"].read() == body,
}
# UploadPart takes the same path: a part with a trailing CRC32C.
tuid = s3.create_multipart_upload(Bucket=bucket, Key="trailer/mp",
                                  ChecksumAlgorithm="CRC32C")["UploadId"]
tpart = trailing.upload_part(Bucket=bucket, Key="trailer/mp", UploadId=tuid, PartNumber=1,
                             Body=body, ChecksumAlgorithm="CRC32C")
tdone = s3.complete_multipart_upload(
    Bucket=bucket, Key="trailer/mp", UploadId=tuid,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": tpart["ETag"],
                                "ChecksumCRC32C": tpart["ChecksumCRC32C"]}]})
out["trailer_part"] = {
    "want": b64("CRC32C", body), "part": tpart.get("ChecksumCRC32C"),
    "complete": tdone.get("ChecksumCRC32C"),
    "want_complete": base64.b64encode(raw("CRC32C", raw("CRC32C", body))).decode() + "-1",
}
out["trailer_seen"] = list(trailer_seen)

# A trailer that lies: botocore's CRC32 made wrong for one request.
crc32_cls = botocore.httpchecksum._CHECKSUM_CLS["crc32"]


class WrongCrc32(crc32_cls):
    def digest(self):
        return bytes(b ^ 0xFF for b in super().digest())


botocore.httpchecksum._CHECKSUM_CLS["crc32"] = WrongCrc32
out["trailer_wrong"] = error_of(lambda: trailing.put_object(
    Bucket=bucket, Key="trailer/wrong", Body=body, ChecksumAlgorithm="CRC32"))
botocore.httpchecksum._CHECKSUM_CLS["crc32"] = crc32_cls
botocore.httpchecksum.urlparse = real_urlparse
out["trailer_wrong_absent"] = absent("trailer/wrong")

# 2b. The signed form other SDKs (Java, Go) send: STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER,
#     every chunk and the trailer signed. botocore never sends it, so it is built here:
#     botocore signs the headers (the seed signature), this code the chunks.
def signed_trailer_put(key, data, algo, value, tamper=False):
    import hmac
    import urllib.error
    import urllib.request
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest

    streaming = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"

    class StreamingAuth(S3SigV4Auth):
        def payload(self, request):
            return streaming

    creds = boto3.Session().get_credentials().get_frozen_credentials()
    trailer = f"x-amz-checksum-{algo.lower()}"
    chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)] + [b""]
    sig_len = 64

    def chunk_len(c):
        return len(f"{len(c):x};chunk-signature=") + sig_len + 2 + len(c) + 2

    trailer_block_len = (len(f"{trailer}:{value}\r\n") + len("x-amz-trailer-signature:")
                         + sig_len + 2 + 2)
    encoded_len = sum(chunk_len(c) for c in chunks[:-1]) + (
        len("0;chunk-signature=") + sig_len + 2) + trailer_block_len
    headers = {"Content-Encoding": "aws-chunked", "Content-Type": "application/octet-stream",
               "Content-Length": str(encoded_len), "x-amz-decoded-content-length": str(len(data)),
               "x-amz-trailer": trailer}
    request = AWSRequest(method="PUT", url=f"{endpoint}/{bucket}/{key}", headers=headers)
    StreamingAuth(creds, "s3", "us-east-1").add_auth(request)
    prev = request.headers["Authorization"].split("Signature=")[1]
    amz_date = request.headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"

    def sign(msg):
        key_ = ("AWS4" + creds.secret_key).encode()
        for part in (amz_date[:8], "us-east-1", "s3", "aws4_request"):
            key_ = hmac.new(key_, part.encode(), hashlib.sha256).digest()
        return hmac.new(key_, msg.encode(), hashlib.sha256).hexdigest()

    empty = hashlib.sha256(b"").hexdigest()
    body = b""
    for c in chunks:
        prev = sign(f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{prev}\n{empty}\n"
                    f"{hashlib.sha256(c).hexdigest()}")
        body += f"{len(c):x};chunk-signature={prev}\r\n".encode() + c
        if c:
            body += b"\r\n"
    canonical = f"{trailer}:{value}\n".encode()
    trailer_sig = sign(f"AWS4-HMAC-SHA256-TRAILER\n{amz_date}\n{scope}\n{prev}\n"
                       f"{hashlib.sha256(canonical).hexdigest()}")
    body += f"{trailer}:{value}\r\nx-amz-trailer-signature:{trailer_sig}\r\n\r\n".encode()
    assert len(body) == encoded_len, (len(body), encoded_len)
    if tamper:
        # One payload byte changed after signing: its chunk signature no longer holds.
        at = body.index(b"\r\n") + 2
        body = body[:at] + bytes([body[at] ^ 1]) + body[at + 1:]
    sent = urllib.request.Request(request.url, data=body, method="PUT",
                                  headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(sent) as resp:
            return {"status": resp.status, "checksum": resp.headers.get(trailer)}
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        code = text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in text else text
        return {"status": e.code, "code": code}


out["signed_trailer"] = {
    "want": b64("SHA256", body),
    "put": signed_trailer_put("signed/ok", body, "SHA256", b64("SHA256", body)),
    "head": s3.head_object(Bucket=bucket, Key="signed/ok", ChecksumMode="ENABLED")
    .get("ChecksumSHA256") if not absent("signed/ok") else None,
    "bytes_ok": not absent("signed/ok")
    and s3.get_object(Bucket=bucket, Key="signed/ok")["Body"].read() == body,
    "wrong": signed_trailer_put("signed/wrong", body, "SHA256", b64("SHA256", b"other")),
    "wrong_absent": absent("signed/wrong"),
    "tampered": signed_trailer_put("signed/tampered", body, "SHA256", b64("SHA256", body),
                                   tamper=True),
    "tampered_absent": absent("signed/tampered"),
}

# 3. A wrong checksum header: BadDigest, nothing stored.
wrong = {}
for algo in ALGOS:
    key = f"wrong/{algo}"
    bad = base64.b64encode(bytes(len(raw(algo, b"")))).decode()
    wrong[algo] = {"error": error_of(lambda: s3.put_object(
        Bucket=bucket, Key=key, Body=body, **{f"Checksum{algo}": bad})),
        "absent": absent(key)}
out["wrong"] = wrong
out["malformed"] = error_of(lambda: s3.put_object(
    Bucket=bucket, Key="wrong/malformed", Body=body, ChecksumSHA256="bm90IGEgc2hhMjU2"))

# 4. No checksum sent at all: the object still has its CRC64NVME.
bare = client(request_checksum_calculation="when_required")
bare.put_object(Bucket=bucket, Key="bare", Body=body)
head = s3.head_object(Bucket=bucket, Key="bare", ChecksumMode="ENABLED")
out["bare"] = {"crc64nvme": head.get("ChecksumCRC64NVME"), "want": b64("CRC64NVME", body),
               "crc32": head.get("ChecksumCRC32")}

# 5. Multipart, COMPOSITE (SHA256): parts checked and listed, the object's checksum is
#    the SHA256 of the parts' SHA256s, `-2`.
part1, part2 = os.urandom(1024 * 1024 + 7), os.urandom(333)
key = "mp/composite"
uid = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")
p1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid["UploadId"], PartNumber=1, Body=part1,
                    ChecksumAlgorithm="SHA256")
p2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid["UploadId"], PartNumber=2, Body=part2,
                    ChecksumAlgorithm="SHA256")
bad_part = error_of(lambda: s3.upload_part(
    Bucket=bucket, Key=key, UploadId=uid["UploadId"], PartNumber=3, Body=part2,
    ChecksumSHA256=b64("SHA256", part1)))
listing = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid["UploadId"])
listed = listing["Parts"]
parts = [{"PartNumber": 1, "ETag": p1["ETag"], "ChecksumSHA256": p1["ChecksumSHA256"]},
         {"PartNumber": 2, "ETag": p2["ETag"], "ChecksumSHA256": p2["ChecksumSHA256"]}]
lying = [dict(parts[0]), parts[1]]
lying[0]["ChecksumSHA256"] = b64("SHA256", part2)
wrong_listed = error_of(lambda: s3.complete_multipart_upload(
    Bucket=bucket, Key=key, UploadId=uid["UploadId"], MultipartUpload={"Parts": lying}))
done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid["UploadId"],
                                    MultipartUpload={"Parts": parts})
head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
out["composite"] = {
    "create_algorithm": uid.get("ChecksumAlgorithm"),
    "create_type": uid.get("ChecksumType"),
    "parts": [p1.get("ChecksumSHA256"), p2.get("ChecksumSHA256")],
    "want_parts": [b64("SHA256", part1), b64("SHA256", part2)],
    "bad_part": bad_part,
    "listed": [p.get("ChecksumSHA256") for p in listed],
    "listed_algorithm": listing.get("ChecksumAlgorithm"),
    "listed_type": listing.get("ChecksumType"),
    "wrong_listed": wrong_listed,
    "complete": done.get("ChecksumSHA256"),
    "complete_type": done.get("ChecksumType"),
    "want": base64.b64encode(hashlib.sha256(raw("SHA256", part1) + raw("SHA256", part2))
                             .digest()).decode() + "-2",
    "head": head.get("ChecksumSHA256"),
    "head_type": head.get("ChecksumType"),
    "get_bytes_ok": got["Body"].read() == part1 + part2,
}

# 6. Multipart, FULL_OBJECT (CRC64NVME): Complete checks the whole object's checksum it
#    is sent; a wrong one is BadDigest and leaves the upload to complete again.
key = "mp/full"
whole = part1 + part2
uid = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC64NVME",
                                 ChecksumType="FULL_OBJECT")["UploadId"]
f1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=part1,
                    ChecksumAlgorithm="CRC64NVME")
f2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=2, Body=part2,
                    ChecksumAlgorithm="CRC64NVME")
parts = [{"PartNumber": 1, "ETag": f1["ETag"]}, {"PartNumber": 2, "ETag": f2["ETag"]}]


def complete_full(value):
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts},
        ChecksumCRC64NVME=value, ChecksumType="FULL_OBJECT")


wrong_full = error_of(lambda: complete_full(b64("CRC64NVME", part1)))
wrong_full_absent = absent(key)
done = complete_full(b64("CRC64NVME", whole))
head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
out["full"] = {
    "want": b64("CRC64NVME", whole),
    "parts": [f1.get("ChecksumCRC64NVME"), f2.get("ChecksumCRC64NVME")],
    "want_parts": [b64("CRC64NVME", part1), b64("CRC64NVME", part2)],
    "wrong": wrong_full,
    "wrong_absent": wrong_full_absent,
    "complete": done.get("ChecksumCRC64NVME"),
    "complete_type": done.get("ChecksumType"),
    "head": head.get("ChecksumCRC64NVME"),
    "head_type": head.get("ChecksumType"),
}

# CRC32 may be FULL_OBJECT too, when the upload asks for it.
key = "mp/full-crc32"
uid = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32",
                                 ChecksumType="FULL_OBJECT")["UploadId"]
c1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=part1,
                    ChecksumAlgorithm="CRC32")
c2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=2, Body=part2,
                    ChecksumAlgorithm="CRC32")
done = s3.complete_multipart_upload(
    Bucket=bucket, Key=key, UploadId=uid, ChecksumCRC32=b64("CRC32", whole),
    ChecksumType="FULL_OBJECT",
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": c1["ETag"]},
                               {"PartNumber": 2, "ETag": c2["ETag"]}]})
out["full_crc32"] = {"want": b64("CRC32", whole), "complete": done.get("ChecksumCRC32"),
                     "complete_type": done.get("ChecksumType")}

# 7. boto3's managed transfer with its defaults (multipart, CRC32 as boto3 chooses).
big = os.urandom(11 * 1024 * 1024 + 5)
path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"zib-checksums-{os.getpid()}.bin")
with open(path, "wb") as f:
    f.write(big)
s3.upload_file(path, bucket, "transfer/big.bin",
               Config=TransferConfig(multipart_threshold=5 * 1024 * 1024,
                                     multipart_chunksize=5 * 1024 * 1024))
os.remove(path)
head = s3.head_object(Bucket=bucket, Key="transfer/big.bin", ChecksumMode="ENABLED")
got = s3.get_object(Bucket=bucket, Key="transfer/big.bin")
out["transfer"] = {
    "checksums": {k: v for k, v in head.items() if k.startswith("Checksum")},
    "want_crc32": b64("CRC32", big),
    "want_crc64nvme": b64("CRC64NVME", big),
    "bytes_ok": got["Body"].read() == big,
}

print(json.dumps(out))
