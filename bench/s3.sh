#!/usr/bin/env bash
# S3 surface uploads through `zib dev` on loopback with boto3, against the raw disk
# (the same bytes written with `dd conv=fdatasync`) measured in the same run:
# - a single PutObject of the whole file;
# - a multipart upload (parts of PART_MIB sent THREADS at a time, as boto3's
#   upload_file does), its parts phase and its CompleteMultipartUpload timed apart:
#   each part is coded as it arrives, so Complete only writes rows;
# - disk bytes zib dev wrote per byte uploaded, for each (/proc/PID/io; the 4+2
#   erasure floor is 1.5);
# - peak RSS of zib dev (server + 6 nodes in one process) from /usr/bin/time -v: it
#   must not grow with the size.
#
#   bench/s3.sh [SIZE_MIB] [PART_MIB] [THREADS]      (defaults 1024, 8 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
part_mib=${2:-8}
threads=${3:-10}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/zib-bench-s3}
rm -rf "$work" && mkdir -p "$work"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
bash scripts/install-s3-test-deps.sh
cargo build --release -q -p zib-cli
zib=$PWD/target/release/zib

echo "generating ${size_mib} MiB of random data"
head -c $((size_mib * 1048576)) /dev/urandom > "$work/src.bin"
t0=$(date +%s.%N); dd if="$work/src.bin" of="$work/dd.bin" bs=4M conv=fdatasync status=none; t1=$(date +%s.%N)
disk=$(python3 -c "print(f'{$size_mib/($t1-$t0):.0f}')"); rm -f "$work/dd.bin"

/usr/bin/time -v "$zib" dev --data-dir "$work/dev" --listen 127.0.0.1:0 --nodes 6 \
  2> "$work/dev.log" & dev_pid=$!
for _ in $(seq 1 600); do [ -f "$work/dev/credentials.json" ] && break; sleep 0.1; done
zib_pid=$(pgrep -P "$dev_pid" -x zib)

python3 - "$work" "$part_mib" "$disk" "$zib_pid" "$threads" <<'PY'
import concurrent.futures, json, os, sys, time
import boto3
from botocore.config import Config

work, part_mib, disk, pid = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
threads = int(sys.argv[5])

def written():
    for line in open(f"/proc/{pid}/io"):
        if line.startswith("write_bytes"):
            return int(line.split()[1])

creds = json.load(open(f"{work}/dev/credentials.json"))
s3 = boto3.client("s3", endpoint_url=creds["api_url"] + "/s3", region_name="us-east-1",
                  aws_access_key_id=creds["access_key"], aws_secret_access_key=creds["secret_key"],
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                read_timeout=600, retries={"max_attempts": 1},
                                max_pool_connections=threads))
src = f"{work}/src.bin"
size = os.path.getsize(src)
mib = size / 1048576

with open(src, "rb") as f:
    w0, t0 = written(), time.time()
    s3.put_object(Bucket="bench", Key="single.bin", Body=f)
    single = time.time() - t0
    single_written = (written() - w0) / size

part = part_mib * 1048576
def send(n):
    with open(src, "rb") as f:
        f.seek((n - 1) * part)
        body = f.read(part)
    r = s3.upload_part(Bucket="bench", Key="multi.bin", UploadId=uid, PartNumber=n, Body=body)
    return {"PartNumber": n, "ETag": r["ETag"]}

w0, t0 = written(), time.time()
uid = s3.create_multipart_upload(Bucket="bench", Key="multi.bin")["UploadId"]
with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    parts = list(pool.map(send, range(1, (size + part - 1) // part + 1)))
t1 = time.time()
s3.complete_multipart_upload(Bucket="bench", Key="multi.bin", UploadId=uid,
                             MultipartUpload={"Parts": parts})
t2 = time.time()
multi_written = (written() - w0) / size
head = s3.head_object(Bucket="bench", Key="multi.bin")
assert head["ContentLength"] == size, head

print(f"raw disk (dd conv=fdatasync)        {disk:7.0f} MB/s")
print(f"S3 PutObject, one request           {mib / single:7.0f} MB/s  ratio to disk {mib / single / disk:.2f}")
print(f"S3 multipart, {len(parts)} parts of {part_mib} MiB x {threads} threads {mib / (t2 - t0):7.0f} MB/s  ratio to disk {mib / (t2 - t0) / disk:.2f}, to PutObject {single / (t2 - t0):.2f}")
print(f"  parts phase {t1 - t0:6.1f} s ({mib / (t1 - t0):.0f} MB/s), CompleteMultipartUpload {t2 - t1:6.1f} s ({mib / (t2 - t1):.0f} MB/s)")
print(f"disk written per byte uploaded: PutObject {single_written:.2f}, multipart {multi_written:.2f}")
PY

pkill -INT -P "$dev_pid" zib || true
wait "$dev_pid" || true
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/dev.log")
echo "zib dev peak RSS: $((rss / 1024)) MiB"
rm -rf "$work"
