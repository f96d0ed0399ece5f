"""A cluster of separate processes on loopback — one `zib server`, N `zib node` —
started, killed (SIGKILL) and restarted the way crates/zib-cli/tests/common/procs.rs
does it, for bench/load.sh and bench/crash.sh. Standard library only."""

import hashlib
import json
import os
import secrets
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def peak_rss_mib(pid):
    """The kernel's high-water mark of the process's resident set (VmHWM)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Cluster:
    def __init__(self, zib, work, nodes=6, extra_env=None):
        self.zib, self.work = zib, work
        os.makedirs(work, exist_ok=True)
        self.server_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.server_port}"
        self.env = {
            "ZIB_DATABASE": os.path.join(work, "meta.db"),
            "ZIB_MASTER_KEY": secrets.token_hex(32),
            "ZIB_CAPABILITY_KEY": secrets.token_hex(32),
            "ZIB_CLUSTER_TOKEN": secrets.token_hex(32),
            "ZIB_HEARTBEAT_INTERVAL_SECS": "1",
            "ZIB_NODE_OFFLINE_AFTER_SECS": "3",
            "ZIB_REPAIR_AFTER_SECS": "4",
            "ZIB_VERIFY_INTERVAL_SECS": "1",
            "ZIB_COLLECT_INTERVAL_SECS": "1",
        }
        self.env.update(extra_env or {})
        out = subprocess.run(
            [zib, "tenant", "create", "bench"],
            env={**os.environ, **self.env},
            capture_output=True,
            check=True,
        )
        t = json.loads(out.stdout)
        self.access_key, self.secret_key = t["access_key"], t["secret_key"]
        self.server = None
        self.node_ports = [free_port() for _ in range(nodes)]
        self.node_procs = [None] * nodes
        self.peak = {}  # name -> highest VmHWM seen across restarts
        self.lock = threading.Lock()

    def client_env(self):
        return {
            **os.environ,
            "ZIB_API_URL": self.api_url,
            "ZIB_ACCESS_KEY": self.access_key,
            "ZIB_SECRET_KEY": self.secret_key,
            "RUST_LOG": "warn",
        }

    def _log(self, name):
        return open(os.path.join(self.work, f"{name}.log"), "ab")

    def start_server(self, wait=True):
        env = {
            **os.environ,
            **self.env,
            "ZIB_LISTEN": f"127.0.0.1:{self.server_port}",
            "RUST_LOG": "info",
        }
        self.server = subprocess.Popen(
            [self.zib, "server"], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._log("server"),
        )
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout=60):
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.api_url}/healthz", timeout=2).read()
                return
            except (urllib.error.URLError, OSError):
                if time.time() > deadline:
                    raise RuntimeError("server did not become healthy")
                time.sleep(0.05)

    def start_node(self, i):
        d = os.path.join(self.work, f"node{i}")
        os.makedirs(d, exist_ok=True)
        env = {
            **os.environ,
            "ZIB_LISTEN": f"127.0.0.1:{self.node_ports[i]}",
            "ZIB_SERVER_URL": self.api_url,
            "ZIB_CLUSTER_TOKEN": self.env["ZIB_CLUSTER_TOKEN"],
            "ZIB_DATA_DIR": d,
            "ZIB_HEARTBEAT_INTERVAL_SECS": "1",
            "RUST_LOG": "info",
        }
        self.node_procs[i] = subprocess.Popen(
            [self.zib, "node"], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._log(f"node{i}"),
        )

    def node_registered(self, i):
        try:
            v = http_json(f"http://127.0.0.1:{self.node_ports[i]}/healthz", timeout=2)
            return v.get("registered") is True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_nodes(self, timeout=60):
        deadline = time.time() + timeout
        while not all(self.node_registered(i) for i in range(len(self.node_ports))):
            if time.time() > deadline:
                raise RuntimeError("nodes did not register")
            time.sleep(0.1)

    def start(self):
        self.start_server()
        for i in range(len(self.node_ports)):
            self.start_node(i)
        self.wait_nodes()

    def _note_peak(self, name, proc):
        if proc is not None and proc.poll() is None:
            with self.lock:
                self.peak[name] = max(self.peak.get(name, 0), peak_rss_mib(proc.pid))

    def sample_peaks(self):
        self._note_peak("server", self.server)
        for i, p in enumerate(self.node_procs):
            self._note_peak(f"node{i}", p)

    def kill_server(self):
        self._note_peak("server", self.server)
        if self.server is not None:
            self.server.kill()
            self.server.wait()
            self.server = None

    def kill_node(self, i):
        self._note_peak(f"node{i}", self.node_procs[i])
        if self.node_procs[i] is not None:
            self.node_procs[i].kill()
            self.node_procs[i].wait()
            self.node_procs[i] = None

    def stop(self):
        self.sample_peaks()
        for i in range(len(self.node_procs)):
            self.kill_node(i)
        self.kill_server()


def upload(zib, env, path, bucket, key, timeout=300):
    """`zib upload`; returns (ok, seconds, file_id or None, cdn_url or None, stderr)."""
    t0 = time.time()
    try:
        out = subprocess.run(
            [zib, "upload", "--bucket", bucket, "--key", key, path],
            env=env, capture_output=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, time.time() - t0, None, None, "timed out"
    dt = time.time() - t0
    if out.returncode != 0:
        return False, dt, None, None, out.stderr.decode(errors="replace").strip()
    try:
        v = json.loads(out.stdout.decode().strip().splitlines()[-1])
        return True, dt, v["file_id"], v["cdn_url"], ""
    except (ValueError, KeyError, IndexError) as e:
        return False, dt, None, None, f"unreadable output: {e}"


def fetch(url, timeout=60):
    """GET; returns (status, body) with status 0 on a connection failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e).encode()


def error_kind(message):
    """An error line with its file, ids and ports replaced, so like errors group."""
    import re
    m = re.sub(r"/\S+\.bin", "<file>", message)
    m = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", m)
    m = re.sub(r"127\.0\.0\.1:\d+", "<addr>", m)
    m = re.sub(r"ZB-[A-Z0-9]+", "<node>", m)
    m = re.sub(r"(shard|segment) \d+", r"\1 N", m)
    return m[:300]


def sha256(b):
    return hashlib.sha256(b).hexdigest()
