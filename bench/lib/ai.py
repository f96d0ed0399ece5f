"""bench/ai.sh: what transcription and vision cost on a node (see the script's header).

Each run: a models directory of symlinks holding only the run's models (so node0's
peak RSS is that tier's), a fresh cluster (server + six nodes; node0 alone with
`ZIB_AI=true`), `zib upload` of the clip, `POST /v1/api/compute/{kind}`, polling
`GET /v1/api/compute/jobs/{id}` until complete while sampling node0's VmHWM.
Standard library only."""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from zibcluster import Cluster, upload  # noqa: E402

MODELS = os.environ.get("ZIB_MODELS_DIR") or os.path.expanduser("~/.cache/zib/models")
PARAGRAPH = (
    "The river runs quietly past the old mill at the edge of the village. "
    "In the spring the farmers plant wheat and barley in the wide fields. "
    "Children walk to school along the path beside the water every morning. "
    "On market days the square fills with stalls selling bread, cheese and fresh fruit. "
)
# (label, kind, tier, model directories under MODELS)
RUNS = [
    ("transcription fastest", "transcription", "fastest", ["whisper/tiny.en"]),
    ("transcription recommended", "transcription", "recommended", ["whisper/base"]),
    ("vision standard", "vision", "standard", ["ocr", "nudenet", "minilm", "whisper/tiny.en"]),
    ("vision hq", "vision", "hq", ["ocr", "nudenet", "minilm", "whisper/tiny.en", "whisper/base"]),
]


def make_clip(work, seconds):
    wav = os.path.join(work, "speech.wav")
    clip = os.path.join(work, "speech.mp4")
    text = PARAGRAPH * (1 + int(seconds // 20))
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", wav, text], check=True)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", wav,
         "-filter_complex",
         "testsrc2=size=1280x720:rate=25[v];[0:a]apad,aresample=48000[a]",
         "-map", "[v]", "-map", "[a]", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-movflags", "+faststart", clip],
        check=True,
    )
    return clip


def models_subset(work, label, dirs):
    root = os.path.join(work, "models-" + label.replace(" ", "-"))
    for d in dirs:
        src = os.path.join(MODELS, d)
        if not os.path.isdir(src):
            sys.exit(f"{src} missing: run scripts/install-models.sh")
        dst = os.path.join(root, d)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.symlink(src, dst)
    return root


def call(cluster, method, path, body=None):
    req = urllib.request.Request(
        cluster.api_url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {cluster.access_key}:{cluster.secret_key}",
                 "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def secs(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def run(zib, work, clip, seconds, label, kind, tier, dirs):
    models = models_subset(work, label, dirs)
    cdir = os.path.join(work, "cluster-" + label.replace(" ", "-"))
    os.environ["ZIB_MODELS_DIR"] = models
    cluster = Cluster(zib, cdir, nodes=6)
    cluster.start_server()
    for i in range(6):
        os.environ["ZIB_AI"] = "true" if i == 0 else "false"
        cluster.start_node(i)
    os.environ.pop("ZIB_AI", None)
    try:
        cluster.wait_nodes(timeout=300)
        ok, _, file_id, _, err = upload(zib, cluster.client_env(), clip, "bench", "speech.mp4")
        if not ok:
            raise RuntimeError(f"upload failed: {err}")
        t0 = time.time()
        job = call(cluster, "POST", f"/v1/api/compute/{kind}", {"file_id": file_id, "tier": tier})
        while True:
            cluster.sample_peaks()
            st = call(cluster, "GET", f"/v1/api/compute/jobs/{job['job_id']}")
            if st["status"] == "complete":
                break
            if st["status"] == "failed":
                raise RuntimeError(f"{label} failed: {st.get('error_message')}")
            if time.time() - t0 > 3600:
                raise RuntimeError(f"{label} not complete within an hour")
            time.sleep(0.5)
        wall = time.time() - t0
        cluster.sample_peaks()
        took = secs(st["completed_at"]) - secs(st["started_at"])
        peak = cluster.peak.get("node0", float("nan"))
    finally:
        cluster.stop()
    if kind == "transcription":
        figure = f"real-time factor {seconds / took:.1f}x"
    else:
        figure = f"{took / (seconds / 60):.1f} s per minute of video"
    print(f"{label:28} run {took:6.1f} s (wall {wall:6.1f} s)  {figure:32} node0 peak RSS {peak:.0f} MiB",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zib", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    clip = make_clip(a.work, a.seconds)
    print(f"clip: {a.seconds:.0f} s of espeak-ng speech over 1280x720 testsrc2; {os.cpu_count()} cores")
    for label, kind, tier, dirs in RUNS:
        run(a.zib, a.work, clip, a.seconds, label, kind, tier, dirs)


if __name__ == "__main__":
    main()
