#!/usr/bin/env bash
# Small objects through the S3 surface of `zib dev` (6 nodes in one process) on
# loopback: COUNT PUTs of SIZE bytes from 16 concurrent boto3 clients, then COUNT GETs,
# reporting objects/s, the zib dev process's CPU ms per PUT (server and nodes
# together, from /proc/PID/stat), its disk bytes written per PUT and during the GETs
# (/proc/PID/io). Each size runs twice in one sitting, on a fresh zib dev each time:
# sharded (`ZIB_INLINE_THRESHOLD=0`) and inline (the default threshold, or
# `INLINE_THRESHOLD=bytes` to see larger objects kept inline). zib dev's log
# goes through a pipe (as to journald), so what /proc/PID/io counts is zib's own
# writes. ZIB_BIN=path runs another build.
#
#   bench/s3_small.sh [COUNT] [SIZE...]      (defaults 1000 and 4096)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000}
shift || true
sizes=("${@:-4096}")
work=${BENCH_DIR:-${TMPDIR:-/tmp}/zib-bench-s3-small}
rm -rf "$work" && mkdir -p "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

bash scripts/install-s3-test-deps.sh
if [ -n "${ZIB_BIN:-}" ]; then zib=$ZIB_BIN; else
  cargo build --release -q -p zib-cli
  zib=$PWD/target/release/zib
fi

run() { # label inline_threshold size
  rm -rf "$work/dev"
  env ZIB_AI_NODES=0 ${2:+ZIB_INLINE_THRESHOLD=$2} "$zib" dev --data-dir "$work/dev" \
    --listen 127.0.0.1:0 --nodes 6 2>&1 > /dev/null | cat > "$work/dev.log" &
  local dev_pid=
  for _ in $(seq 1 600); do
    dev_pid=$(pgrep -n -f -- "--data-dir $work/dev" || true)
    [ -n "$dev_pid" ] && [ -f "$work/dev/credentials.json" ] && break; sleep 0.1
  done
  echo "-- $1 (inline_threshold ${2:-default})"
  python3 - "$work" "$dev_pid" "$count" "$3" <<'PY'
import concurrent.futures, json, os, sys, time
import boto3
from botocore.config import Config

work, pid, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
creds = json.load(open(f"{work}/dev/credentials.json"))
s3 = boto3.client(
    "s3", endpoint_url=creds["api_url"] + "/s3", region_name="us-east-1",
    aws_access_key_id=creds["access_key"], aws_secret_access_key=creds["secret_key"],
    config=Config(s3={"addressing_style": "path"}, max_pool_connections=16,
                  retries={"max_attempts": 5, "mode": "standard"}))
s3.create_bucket(Bucket="small-objects")
tick = os.sysconf("SC_CLK_TCK")

def cpu_ms():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / tick

def written():
    for line in open(f"/proc/{pid}/io"):
        if line.startswith("write_bytes"):
            return int(line.split()[1])

body = os.urandom(size)
def put(i):
    s3.put_object(Bucket="small-objects", Key=f"o/{i}", Body=body)
def get(i):
    assert s3.get_object(Bucket="small-objects", Key=f"o/{i}")["Body"].read() == body

def settle():
    # The durability workers verify the new shards after the PUTs: let them finish,
    # so the GETs are measured alone (under 64 KiB written in 2 s, at most 2 min).
    deadline = time.time() + 120
    while time.time() < deadline:
        w0 = written()
        time.sleep(2)
        if written() - w0 < 65536:
            return

def idle(seconds=5):
    # What zib dev spends with no request at all (six nodes' heartbeats, the
    # workers): per second, to tell the requests' own cost from it.
    c0, w0 = cpu_ms(), written()
    time.sleep(seconds)
    return (cpu_ms() - c0) / seconds, (written() - w0) / seconds

idle_cpu, idle_written = idle()
print(f"idle: zib dev CPU {idle_cpu:5.1f} ms/s, disk written {idle_written / 1024:6.1f} KiB/s")
for label, op in (("PUT", put), ("GET", get)):
    if label == "GET":
        settle()
    c0, w0, t0 = cpu_ms(), written(), time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(op, range(count)))
    c1, w1, t1 = cpu_ms(), written(), time.time()
    took = t1 - t0
    print(f"{count} x {size} B {label}: {count / took:6.0f} objects/s   "
          f"zib dev CPU {(c1 - c0) / count:5.2f} ms per {label} "
          f"({max(0, c1 - c0 - idle_cpu * took) / count:5.2f} above idle)   "
          f"disk written {(w1 - w0) / count / 1024:7.1f} KiB per {label} "
          f"({max(0, w1 - w0 - idle_written * took) / count / 1024:7.1f} above idle)")
PY
  kill "$dev_pid"; wait || true
}

for size in "${sizes[@]}"; do
  run sharded 0 "$size"
  run inline "${INLINE_THRESHOLD:-}" "$size"
done
