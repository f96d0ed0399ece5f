#!/usr/bin/env bash
# End-to-end upload and download through `zib dev` on loopback, against baselines
# measured in the same run: the same bytes written with `dd conv=fdatasync` (raw
# disk) and served by nginx (a plain static file server).
#
#   bench/e2e.sh [SIZE_MIB]      (default 1024; run with 4096 to check memory stays flat)
#
# Prints MB/s, ratios to the baselines, and peak RSS of the zib dev process (server +
# 6 nodes in one process) and of the uploading client, from /usr/bin/time -v. The
# download is timed twice: as zib dev serves it (the CDN reads its in-process nodes'
# disks) and with --shards-over-http (shards fetched over loopback HTTP, the path of
# a cluster of separate hosts).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/zib-bench}
rm -rf "$work" && mkdir -p "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true' EXIT

command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
# ZIB_BIN: another build to compare (e.g. the previous commit's), else this tree's.
if [ -n "${ZIB_BIN:-}" ]; then zib=$ZIB_BIN; else
  cargo build --release -q -p zib-cli
  zib=$PWD/target/release/zib
fi

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1/1048576/($3-$2):.0f}')"; }

echo "generating ${size_mib} MiB of random data"
head -c $((size_mib * 1048576)) /dev/urandom > "$work/src.bin"
bytes=$(stat -c %s "$work/src.bin")

# Raw disk: the same bytes written and synced.
t0=$(now); dd if="$work/src.bin" of="$work/dd.bin" bs=4M conv=fdatasync status=none; t1=$(now)
disk=$(rate "$bytes" "$t0" "$t1"); rm -f "$work/dd.bin"

# Static file server on loopback.
cat > "$work/nginx.conf" <<CONF
daemon on; pid $work/nginx.pid; error_log $work/nginx.err;
events {}
http { access_log off; sendfile on;
  server { listen 127.0.0.1:18089; root $work; } }
CONF
nginx -c "$work/nginx.conf"
sleep 0.3
# Best of three for both servers: single loopback transfers vary run to run.
best_download() {
  local best=0 r t0 t1
  for _ in 1 2 3; do
    t0=$(now); curl -s -o /dev/null "$1"; t1=$(now)
    r=$(rate "$bytes" "$t0" "$t1")
    [ "$r" -gt "$best" ] && best=$r
  done
  echo "$best"
}
static=$(best_download http://127.0.0.1:18089/src.bin)

# zib dev writes credentials.json once its nodes are up.
wait_for_credentials() {
  for _ in $(seq 1 600); do [ -f "$work/dev/credentials.json" ] && break; sleep 0.1; done
}

# zib dev, measured by /usr/bin/time -v.
/usr/bin/time -v "$zib" dev --data-dir "$work/dev" --listen 127.0.0.1:0 --nodes 6 \
  2> "$work/dev.log" & dev_pid=$!
wait_for_credentials
eval "$(python3 -c "
import json; c = json.load(open('$work/dev/credentials.json'))
print(f\"export ZIB_API_URL={c['api_url']} ZIB_ACCESS_KEY={c['access_key']} ZIB_SECRET_KEY={c['secret_key']}\")")"

# Bytes the cluster process wrote to disk during the upload (/proc/PID/io: the zib
# process under time -v), per byte uploaded.
zib_pid=$(pgrep -P "$dev_pid" zib | head -1)
written() { awk '/^write_bytes/ {print $2}' "/proc/$zib_pid/io"; }
w0=$(written)
t0=$(now)
/usr/bin/time -v "$zib" upload --bucket bench --key src.bin "$work/src.bin" > "$work/upload.json" 2> "$work/upload.time"
t1=$(now)
w1=$(written)
up=$(rate "$bytes" "$t0" "$t1")
url=$(python3 -c "import json; print(json.load(open('$work/upload.json'))['cdn_url'])")

# The upload's dirty pages are flushed first, as they were before nginx was timed:
# a download should not pay for the upload's writeback.
sync
# Timed like the baseline (into /dev/null, best of three), then checked byte for byte untimed.
down=$(best_download "$url")
curl -s "$url" | cmp -s "$work/src.bin" - && same=yes || same=NO
stored=$(du -sb "$work/dev/nodes" | cut -f1)

# Ctrl-C the cluster: time -v then reports its peak RSS.
pkill -INT -P "$dev_pid" zib || true
wait "$dev_pid" || true
dev_rss=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$work/dev.log")

# The same file again, the CDN fetching shards over loopback HTTP as in a cluster of
# separate hosts (zib dev otherwise reads its in-process nodes' disks directly).
rm -f "$work/dev/credentials.json"
"$zib" dev --data-dir "$work/dev" --listen 127.0.0.1:0 --nodes 6 --shards-over-http \
  2> "$work/dev-http.log" & http_pid=$!
wait_for_credentials
api=$(python3 -c "import json; print(json.load(open('$work/dev/credentials.json'))['api_url'])")
http_url="$api/objects/$(python3 -c "import json; print(json.load(open('$work/upload.json'))['file_id'])")"
for _ in $(seq 1 100); do curl -sfI "$http_url" >/dev/null && break; sleep 0.1; done
down_http=$(best_download "$http_url")
curl -s "$http_url" | cmp -s "$work/src.bin" - && same_http=yes || same_http=NO
kill -INT "$http_pid"; wait "$http_pid" || true
cli_rss=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$work/upload.time")

cat <<REPORT

size                     ${size_mib} MiB (byte-identical after download: $same)
raw disk write (dd)      $disk MB/s
static server (nginx)    $static MB/s
zib upload               $up MB/s   ratio to raw disk: $(python3 -c "print(f'{$up/$disk:.2f}')")  (target >= 0.3)
zib download (CDN)       $down MB/s   ratio to nginx: $(python3 -c "print(f'{$down/$static:.2f}')")  (target >= 0.5)
  shards over HTTP       $down_http MB/s   ratio to nginx: $(python3 -c "print(f'{$down_http/$static:.2f}')")  (byte-identical: $same_http; zib dev --shards-over-http)
peak RSS zib dev         ${dev_rss} MiB (server + 6 nodes; target < 300)
peak RSS zib upload      ${cli_rss} MiB
bytes on nodes / bytes   $(python3 -c "print(f'{$stored/$bytes:.2f}')") (shards (k+m)/k; a multipart upload's whole envelope is dropped once the file is safe)
disk written / uploaded  $(python3 -c "print(f'{($w1-$w0)/$bytes:.2f}')") (write_bytes of zib dev during the upload; 1.5 is the 4+2 floor)
REPORT
