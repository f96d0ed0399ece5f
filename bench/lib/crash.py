"""Crash run: separate `zib server` + six `zib node` processes on loopback; UPLOADERS
clients run `zib upload` in a loop while a seeded chaos loop kill -9s the server or a
node (at most PARITY nodes down at once) at random points and restarts them. Then
every process is brought back and the cluster is left to settle. Checks:
  lost  = uploads the client was told succeeded that do not read back byte for byte
  stuck = files still pending / uploading / distributed when the settle time is up
Both must be 0. The seed is printed; `--seed` replays the same chaos schedule (the
timing of the processes themselves is not deterministic)."""

import argparse
import collections
import os
import random
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from zibcluster import Cluster, error_kind, fetch, sha256, upload  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--zib", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--seed", type=int, default=None)
ap.add_argument("--duration", type=float, default=60)
ap.add_argument("--settle", type=float, default=120)
ap.add_argument("--uploaders", type=int, default=8)
ap.add_argument("--size-kib", type=int, default=256)
ap.add_argument("--max-nodes-down", type=int, default=2)
ap.add_argument("--upload-expiry", type=int, default=30)
a = ap.parse_args()
seed = a.seed if a.seed is not None else random.randrange(1 << 32)
print(f"crash run seed {seed} (replay: SEED={seed} bench/crash.sh)", flush=True)
chaos_rng = random.Random(seed)
data_rng = random.Random(seed ^ 0x5EED)

cluster = Cluster(a.zib, a.work, nodes=6, extra_env={
    # Registrations left by a killed upload expire within the settle time.
    "ZIB_UPLOAD_EXPIRY_SECS": str(a.upload_expiry),
    "ZIB_GARBAGE_GRACE_SECS": "5",
})
cluster.start()
env = cluster.client_env()
files = os.path.join(a.work, "files")
os.makedirs(files, exist_ok=True)
lock = threading.Lock()
acked = []      # (file_id, cdn_url, sha256, key)
failed = []     # (key, sha256, error)
stop_at = time.time() + a.duration
events = []


def uploader(i):
    n = 0
    while time.time() < stop_at:
        key = f"u{i}-{n}.bin"
        with lock:
            body = data_rng.randbytes(a.size_kib * 1024 + data_rng.randrange(4096))
        path = os.path.join(files, key)
        with open(path, "wb") as f:
            f.write(body)
        ok, _dt, fid, url, err = upload(a.zib, env, path, "crash", key, timeout=120)
        with lock:
            if ok:
                acked.append((fid, url, sha256(body), key))
            else:
                failed.append((key, sha256(body), error_kind(err.splitlines()[-1]) if err else "failed"))
        os.remove(path)
        n += 1
        if not ok:
            time.sleep(0.2)


def chaos():
    down = {}  # node index -> restart time
    t0 = time.time()
    while time.time() < stop_at:
        time.sleep(chaos_rng.uniform(0.5, 3.0))
        now = time.time()
        for i, at in list(down.items()):
            if now >= at:
                cluster.start_node(i)
                events.append((now - t0, f"restart node{i}"))
                del down[i]
        if chaos_rng.random() < 0.3:
            cluster.kill_server()
            events.append((time.time() - t0, "kill -9 server"))
            time.sleep(chaos_rng.uniform(0.2, 3.0))
            cluster.start_server(wait=False)
            events.append((time.time() - t0, "restart server"))
        elif len(down) < a.max_nodes_down:
            i = chaos_rng.choice([n for n in range(len(cluster.node_ports)) if n not in down])
            cluster.kill_node(i)
            events.append((time.time() - t0, f"kill -9 node{i}"))
            down[i] = time.time() + chaos_rng.uniform(1.0, 8.0)
    for i in down:
        cluster.start_node(i)
        events.append((time.time() - t0, f"restart node{i}"))


def phases():
    db = sqlite3.connect(f"file:{cluster.env['ZIB_DATABASE']}?mode=ro", uri=True, timeout=10)
    try:
        return dict(db.execute("SELECT file_id, phase FROM files").fetchall())
    finally:
        db.close()


def shard_detail(fid):
    """Shards, distinct holders, verified shards and shards marked for repair."""
    db = sqlite3.connect(f"file:{cluster.env['ZIB_DATABASE']}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT node_id, verified_at, needs_repair FROM shards WHERE file_id = ?",
                          (fid,)).fetchall()
    finally:
        db.close()
    return (f"{len(rows)} shards on {len({r[0] for r in rows})} distinct nodes, "
            f"{sum(1 for r in rows if r[1])} verified, {sum(1 for r in rows if r[2])} marked for repair")


NON_TERMINAL = {"pending", "uploading", "distributed"}
try:
    threads = [threading.Thread(target=uploader, args=(i,)) for i in range(a.uploaders)]
    threads.append(threading.Thread(target=chaos))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if cluster.server is None:
        cluster.start_server(wait=False)
    cluster.wait_healthy()
    cluster.wait_nodes()
    t_settle = time.time()
    while True:
        stuck = {f: p for f, p in phases().items() if p in NON_TERMINAL}
        if not stuck or time.time() - t_settle > a.settle:
            break
        time.sleep(2)
    settled_in = time.time() - t_settle
    lost = []
    for fid, url, digest, key in acked:
        status, body = fetch(url)
        if status != 200 or sha256(body) != digest:
            lost.append((fid, key, status, "wrong bytes" if status == 200 else body[:200]))
    final = phases()
finally:
    cluster.stop()

print(f"{a.duration:.0f} s of uploads by {a.uploaders} clients ({a.size_kib} KiB files), "
      f"{sum(1 for _, e in events if e.startswith('kill'))} kill -9 "
      f"({sum(1 for _, e in events if e == 'kill -9 server')} of the server)")
print(f"uploads acknowledged {len(acked)}, failed at the client {len(failed)}")
by_phase = collections.Counter(final.values())
print("files by phase after settle: " + ", ".join(f"{p} {n}" for p, n in sorted(by_phase.items())))
acked_ids = {fid for fid, *_ in acked}
late = [f for f, p in final.items() if f not in acked_ids and p in ("distributed", "safe")]
print(f"failed at the client but readable after all: {len(late)}")
for e in sorted(set(e for *_, e in failed))[:6]:
    print(f"    client error: {e} (x{sum(1 for *_, x in failed if x == e)})")
print(f"settle: {'done' if not stuck else 'NOT done'} after {settled_in:.0f} s")
print(f"lost: {len(lost)}")
for fid, key, status, why in lost[:20]:
    print(f"    LOST {fid} ({key}): GET {status} {why!r}")
print(f"stuck: {len(stuck)}")
for fid, p in list(stuck.items())[:20]:
    print(f"    STUCK {fid} in {p}: {shard_detail(fid)}")
with open(os.path.join(a.work, "events.txt"), "w") as f:
    for t, e in events:
        f.write(f"{t:7.2f} s  {e}\n")
print(f"chaos schedule: {os.path.join(a.work, 'events.txt')}; logs: {a.work}/*.log")
sys.exit(1 if lost or stuck else 0)
