"""Load on a separate-process cluster (one `zib server`, six `zib node` on loopback):
first a one-client baseline, then UPLOADERS concurrent `zib upload` clients and
READERS concurrent CDN readers at once. Every byte read is checked against what was
uploaded (a wrong byte counts as an error). Prints errors, p50/p99 latency,
throughput, the ratio of loaded to baseline latency, and the peak RSS (VmHWM) of the
server and of each node."""

import argparse
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from zibcluster import Cluster, error_kind, fetch, percentile, sha256, upload  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--zib", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--uploaders", type=int, default=50)
ap.add_argument("--readers", type=int, default=100)
ap.add_argument("--uploads-each", type=int, default=4)
ap.add_argument("--reads-each", type=int, default=20)
ap.add_argument("--size-kib", type=int, default=512)
ap.add_argument("--seed-files", type=int, default=20)
ap.add_argument("--seed", type=int, default=None)
a = ap.parse_args()
seed = a.seed if a.seed is not None else random.randrange(1 << 32)
rng = random.Random(seed)
size = a.size_kib * 1024

cluster = Cluster(a.zib, a.work, nodes=6)
cluster.start()
env = cluster.client_env()
files = os.path.join(a.work, "files")
os.makedirs(files, exist_ok=True)


def make(name):
    path = os.path.join(files, name)
    data = rng.randbytes(size)
    with open(path, "wb") as f:
        f.write(data)
    return path, sha256(data)


lock = threading.Lock()
readable = []  # (cdn_url, sha256)
finished = {}  # group -> when its last client finished


def done(group):
    with lock:
        finished[group] = max(finished.get(group, 0), time.time())


def run_uploads(tag, count, lat, errs):
    for j in range(count):
        with lock:
            path, digest = make(f"{tag}-{j}.bin")
        ok, dt, _fid, url, err = upload(a.zib, env, path, "load", os.path.basename(path))
        with lock:
            if ok:
                lat.append(dt)
                readable.append((url, digest))
            else:
                errs.append(error_kind(err.splitlines()[-1]) if err else "failed")
        os.remove(path)
    done("upload")


def run_reads(count, lat, errs, r):
    for _ in range(count):
        with lock:
            url, digest = r.choice(readable)
        t0 = time.time()
        status, body = fetch(url)
        dt = time.time() - t0
        with lock:
            if status == 200 and sha256(body) == digest:
                lat.append(dt)
            else:
                errs.append(f"GET {status}" if status != 200 else "wrong bytes")
    done("read")


def report(name, lat, errs, wall, nbytes):
    n = len(lat) + len(errs)
    print(f"{name:<26} {n:>5} ops  {len(errs):>3} errors  p50 {percentile(lat, 50) * 1000:8.1f} ms"
          f"  p99 {percentile(lat, 99) * 1000:8.1f} ms  {len(lat) / wall:7.1f} ops/s"
          f"  {nbytes * len(lat) / wall / 1048576:7.1f} MiB/s")
    for e in sorted(set(errs))[:5]:
        print(f"    error: {e} (x{errs.count(e)})")


sampling = True


def sampler():
    while sampling:
        cluster.sample_peaks()
        time.sleep(0.5)


threading.Thread(target=sampler, daemon=True).start()
try:
    # Seed files for the readers, and the one-client baseline.
    seed_lat, seed_errs = [], []
    run_uploads("seed", a.seed_files, seed_lat, seed_errs)
    if not readable:
        sys.exit(f"no seed file uploaded: {seed_errs[:3]}")
    base_up, base_up_errs = [], []
    t0 = time.time()
    run_uploads("base", 5, base_up, base_up_errs)
    base_up_wall = time.time() - t0
    base_rd, base_rd_errs = [], []
    t0 = time.time()
    run_reads(40, base_rd, base_rd_errs, random.Random(seed + 1))
    base_rd_wall = time.time() - t0

    up_lat, up_errs, rd_lat, rd_errs = [], [], [], []
    threads = [threading.Thread(target=run_uploads, args=(f"u{i}", a.uploads_each, up_lat, up_errs))
               for i in range(a.uploaders)]
    threads += [threading.Thread(target=run_reads, args=(a.reads_each, rd_lat, rd_errs,
                                                         random.Random(seed + 2 + i)))
                for i in range(a.readers)]
    t0 = time.time()
    finished.clear()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    up_wall, rd_wall = finished["upload"] - t0, finished["read"] - t0
finally:
    sampling = False
    cluster.stop()

print(f"seed {seed}; {a.uploaders} uploaders x {a.uploads_each} and {a.readers} readers x "
      f"{a.reads_each}, files of {a.size_kib} KiB, server + 6 nodes as separate processes")
report("baseline upload (1)", base_up, base_up_errs, base_up_wall, size)
report("baseline CDN read (1)", base_rd, base_rd_errs, base_rd_wall, size)
report(f"upload ({a.uploaders} at once)", up_lat, up_errs, up_wall, size)
report(f"CDN read ({a.readers} at once)", rd_lat, rd_errs, rd_wall, size)
print(f"loaded / baseline p50: upload {percentile(up_lat, 50) / percentile(base_up, 50):.1f}x, "
      f"read {percentile(rd_lat, 50) / percentile(base_rd, 50):.1f}x  (uploads took {up_wall:.1f} s, "
      f"reads {rd_wall:.1f} s, side by side)")
nodes = [v for k, v in cluster.peak.items() if k.startswith("node")]
print(f"peak RSS: server {cluster.peak.get('server', float('nan')):.0f} MiB, nodes "
      f"max {max(nodes):.0f} MiB / mean {sum(nodes) / len(nodes):.0f} MiB")
errors = len(up_errs) + len(rd_errs) + len(base_up_errs) + len(base_rd_errs)
print(f"errors: {errors}")
sys.exit(1 if errors else 0)
