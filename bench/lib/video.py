"""bench/video.sh: what an encode costs, against plain ffmpeg in the same run.

For each clip length (generated: testsrc2 + sine, 1080p30, H.264 + AAC, fast-start),
first plain ffmpeg turns the local file into the same ladder (one process per rung,
lowest first, as the node does; no network, no encryption): the baseline. Then a
release cluster (one `zib server`, six `zib node`) gets the clip through `zib upload`
and `POST /v1/api/encoding/request`, and we time, from the request:
  playable  the master playlist first answers 200 (the lowest rung is live)
  complete  the job reaches local_complete (every rung live): the ladder's wall time
  safe      every segment verified on 3 peers
and sample every node's VmHWM (peak RSS) twice a second.

Thumbnails cost (--thumbnails-seconds, default 20): on one more cluster, the same clip
uploaded twice is encoded with the defaults (poster + sprite storyboard) and with
`thumbnails: false`, one after the other, each timed from the request to local_complete
(the artefacts are registered before it); the ratio is what thumbnails add to the wall
time of an encode. Standard library only."""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from zibcluster import Cluster, fetch, http_json, peak_rss_mib, upload  # noqa: E402

# The ladder by short side with its video/audio kbps, as zib-media's plan has it
# (capped VBR: maxrate 1.07x, bufsize 2x), so the baseline does the same work.
LADDER = [(360, 800, 96), (480, 1400, 96), (720, 2800, 128), (1080, 5000, 128), (2160, 16000, 128)]


def generate(path, seconds, width=1920, height=1080):
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-movflags", "+faststart", path],
        check=True,
    )


def baseline(src, out_dir, height, preset):
    """Plain ffmpeg, same ladder from the local file; returns wall seconds."""
    t0 = time.time()
    for rung, v, a in [r for r in LADDER if r[0] <= height]:
        d = os.path.join(out_dir, f"{rung}p")
        os.makedirs(d, exist_ok=True)
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", src,
             "-vf", f"scale=-2:{rung},format=yuv420p", "-c:v", "libx264", "-preset", preset,
             "-b:v", f"{v}k", "-maxrate", f"{v * 107 // 100}k", "-bufsize", f"{v * 2}k",
             "-g", "120", "-keyint_min", "120", "-sc_threshold", "0",
             "-force_key_frames", "expr:gte(t,n_forced*4)",
             "-c:a", "aac", "-b:a", f"{a}k", "-ac", "2", "-ar", "48000",
             "-f", "hls", "-hls_time", "4", "-hls_playlist_type", "vod",
             "-hls_segment_filename", os.path.join(d, "seg%05d.ts"),
             os.path.join(d, "index.m3u8")],
            check=True,
        )
    return time.time() - t0


def api(cluster, method, path, body=None):
    req = urllib.request.Request(
        cluster.api_url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {cluster.access_key}:{cluster.secret_key}",
                 "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def encode_on_cluster(zib, work, src, seconds, timeout):
    cluster = Cluster(zib, os.path.join(work, "cluster"))
    cluster.start()
    peaks = {}
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            for i, p in enumerate(cluster.node_procs):
                if p is not None and p.poll() is None:
                    peaks[i] = max(peaks.get(i, 0), peak_rss_mib(p.pid))
            time.sleep(0.5)

    threading.Thread(target=sampler, daemon=True).start()
    try:
        ok, _, file_id, _, err = upload(zib, cluster.client_env(), src, "bench", f"clip-{seconds}.mp4")
        if not ok:
            raise RuntimeError(f"upload failed: {err}")
        # Let the upload settle, so the encode is timed alone.
        time.sleep(2)
        master = f"{cluster.api_url}/stream/{file_id}/master.m3u8"
        # The nodes' peaks so far are the upload's: reset them (Linux: clear_refs 5),
        # so the figure is the encode's alone.
        for p in cluster.node_procs:
            if p is not None:
                try:
                    with open(f"/proc/{p.pid}/clear_refs", "w") as f:
                        f.write("5")
                except OSError:
                    pass
        peaks.clear()
        ids = {}
        for i, port in enumerate(cluster.node_ports):
            try:
                ids[http_json(f"http://127.0.0.1:{port}/healthz")["node_id"]] = i
            except (OSError, KeyError, ValueError):
                pass
        t0 = time.time()
        job = api(cluster, "POST", "/v1/api/encoding/request", {"object_key": file_id})
        job_id = job["encoding_id"]
        playable = complete = safe = None
        while time.time() - t0 < timeout:
            now = time.time() - t0
            if playable is None and fetch(master, timeout=10)[0] == 200:
                playable = now
            phase = api(cluster, "GET", f"/v1/api/encoding/jobs/{job_id}").get("phase")
            if phase in ("failed_user_action", "cancelled"):
                raise RuntimeError(f"encode ended {phase}")
            if complete is None and phase in ("local_complete", "replicating", "safe"):
                complete = now
            if phase == "safe":
                safe = now
                break
            time.sleep(0.2)
        rows = api(cluster, "GET", "/v1/api/my-jobs?status=all")["jobs"]
        encoder = next((r.get("node_id") for r in rows if r.get("encoding_id") == job_id), None)
        node = ids.get(encoder)
        return {
            "playable_s": playable, "complete_s": complete, "safe_s": safe,
            "encoding_node_peak_rss_mib": peaks.get(node) if node is not None else None,
            "node_peaks_mib": peaks,
        }
    finally:
        stop.set()
        cluster.stop()


def time_to_complete(cluster, file_id, extra, timeout):
    """Seconds from the request (object_key + `extra`) to local_complete."""
    t0 = time.time()
    job = api(cluster, "POST", "/v1/api/encoding/request", {"object_key": file_id, **extra})
    job_id = job["encoding_id"]
    while time.time() - t0 < timeout:
        status = api(cluster, "GET", f"/v1/api/encoding/jobs/{job_id}")
        phase = status.get("phase")
        if phase in ("failed_user_action", "cancelled"):
            raise RuntimeError(f"encode ended {phase}")
        if phase in ("local_complete", "replicating", "safe"):
            wanted = extra.get("thumbnails", True) is not False
            if wanted != (status.get("thumbnails") is not None):
                raise RuntimeError(f"thumbnails {status.get('thumbnails')} with {extra}")
            return time.time() - t0
        time.sleep(0.2)
    return None


def thumbnails_cost(zib, work, src, seconds, timeout):
    """Wall time of an encode with default thumbnails and without, on one cluster."""
    cluster = Cluster(zib, os.path.join(work, "cluster-thumbnails"))
    cluster.start()
    try:
        ids = []
        for name in ("with", "without"):
            ok, _, file_id, _, err = upload(zib, cluster.client_env(), src, "bench",
                                            f"thumbs-{name}-{seconds}.mp4")
            if not ok:
                raise RuntimeError(f"upload failed: {err}")
            ids.append(file_id)
        time.sleep(2)
        with_s = time_to_complete(cluster, ids[0], {}, timeout)
        time.sleep(2)
        without_s = time_to_complete(cluster, ids[1], {"thumbnails": False}, timeout)
        return {"seconds": seconds, "with_thumbnails_s": with_s,
                "without_thumbnails_s": without_s}
    finally:
        cluster.stop()


def ratio(a, b):
    return None if a is None or not b else a / b


def fmt(v, unit=""):
    return "-" if v is None else f"{v:.2f}{unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zib", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--seconds", type=int, nargs="+", default=[60])
    ap.add_argument("--preset", default=os.environ.get("ZIB_BENCH_X264_PRESET", "veryfast"))
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--thumbnails-seconds", type=int, default=20,
                    help="clip length of the thumbnails-cost run (0 skips it)")
    args = ap.parse_args()
    rows = []
    for seconds in args.seconds:
        d = os.path.join(args.work, f"{seconds}s")
        os.makedirs(d, exist_ok=True)
        src = os.path.join(d, "clip.mp4")
        generate(src, seconds)
        base = baseline(src, os.path.join(d, "baseline"), 1080, args.preset)
        r = encode_on_cluster(args.zib, d, src, seconds, args.timeout)
        r.update(seconds=seconds, baseline_s=base)
        rows.append(r)
        print(json.dumps(r), flush=True)
    print()
    print(f"{'clip':>6} {'playable':>9} {'x clip':>7} {'complete':>9} {'ffmpeg':>8} "
          f"{'x ffmpeg':>9} {'safe':>8} {'x clip':>7} {'node RSS':>9}")
    for r in rows:
        print(f"{r['seconds']:>5}s {fmt(r['playable_s'], 's'):>9} "
              f"{fmt(ratio(r['playable_s'], r['seconds'])):>7} "
              f"{fmt(r['complete_s'], 's'):>9} {fmt(r['baseline_s'], 's'):>8} "
              f"{fmt(ratio(r['complete_s'], r['baseline_s'])):>9} "
              f"{fmt(r['safe_s'], 's'):>8} {fmt(ratio(r['safe_s'], r['seconds'])):>7} "
              f"{fmt(r['encoding_node_peak_rss_mib'], ' MiB'):>9}")
    print("\ngoals: playable <= 0.5x clip; complete <= 1.1x plain ffmpeg; node RSS flat with length")
    failed = any(r["safe_s"] is None for r in rows)
    if args.thumbnails_seconds > 0:
        seconds = args.thumbnails_seconds
        d = os.path.join(args.work, f"thumbnails-{seconds}s")
        os.makedirs(d, exist_ok=True)
        src = os.path.join(d, "clip.mp4")
        generate(src, seconds)
        t = thumbnails_cost(args.zib, d, src, seconds, args.timeout)
        print(json.dumps(t), flush=True)
        print(f"\nthumbnails cost ({seconds}s clip, request to local_complete): "
              f"defaults {fmt(t['with_thumbnails_s'], 's')}, thumbnails: false "
              f"{fmt(t['without_thumbnails_s'], 's')}, ratio "
              f"{fmt(ratio(t['with_thumbnails_s'], t['without_thumbnails_s']))}x")
        failed = failed or None in (t["with_thumbnails_s"], t["without_thumbnails_s"])
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
