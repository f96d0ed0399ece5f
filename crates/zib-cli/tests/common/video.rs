//! Video test support: clips generated with ffmpeg (lavfi `testsrc2` + `sine`, never
//! a checked-in file), ffprobe on CDN URLs, HLS playlist parsing, a tiny static HTTP
//! server (to hand ffmpeg a doctored playlist), and the tenant encoding API.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

static MEDIA_DEPS: Once = Once::new();

/// ffmpeg and ffprobe on PATH: `scripts/install-media-deps.sh` when the repository
/// has it, else whatever is installed (Debian's 5.1 in /usr/bin).
pub fn ensure_media() {
    MEDIA_DEPS.call_once(|| {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-media-deps.sh");
        if script.exists() {
            let status = Command::new("bash").arg(&script).status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "{} failed",
                script.display()
            );
        }
        for tool in ["ffmpeg", "ffprobe"] {
            let ok = Command::new(tool)
                .arg("-version")
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                ok,
                "{tool} is not installed (scripts/install-media-deps.sh)"
            );
        }
    });
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Clip {
    pub width: u32,
    pub height: u32,
    pub seconds: u32,
    pub fps: u32,
    pub audio: bool,
    /// `-movflags +faststart` (moov first); false leaves ffmpeg's default, moov last.
    pub faststart: bool,
    /// Written into the container's title: a plaintext marker to hunt for on disks.
    pub marker: Option<String>,
    /// Brightness swings slowly (a 12 s sine) on top of `testsrc2`'s motion, so frames
    /// a second or more apart differ clearly in gray and a frame-time check can fail.
    pub drift: bool,
}

impl Clip {
    pub fn new(width: u32, height: u32, seconds: u32) -> Clip {
        Clip {
            width,
            height,
            seconds,
            fps: 30,
            audio: true,
            faststart: true,
            marker: None,
            drift: false,
        }
    }
    /// The same clip with [`Clip::drift`] and `fps` frames a second.
    pub fn drifting(self, fps: u32) -> Clip {
        Clip {
            drift: true,
            fps,
            ..self
        }
    }
    pub fn frames(&self) -> u64 {
        u64::from(self.seconds) * u64::from(self.fps)
    }
}

/// Generates `clip` as an H.264 (+ AAC) MP4 in `dir`. Fast preset: the test is the
/// encoder under test, not this.
pub fn make_clip(dir: &Path, name: &str, clip: &Clip) -> PathBuf {
    ensure_media();
    let path = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
    ])
    .arg(format!(
        "testsrc2=size={}x{}:rate={}:duration={}{}",
        clip.width,
        clip.height,
        clip.fps,
        clip.seconds,
        if clip.drift {
            ",eq=eval=frame:brightness='0.2*sin(2*PI*t/12)'"
        } else {
            ""
        }
    ));
    if clip.audio {
        cmd.args(["-f", "lavfi", "-i"]).arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={}",
            clip.seconds
        ));
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "60",
    ]);
    if clip.audio {
        cmd.args(["-c:a", "aac", "-b:a", "96k"]);
    }
    if clip.faststart {
        cmd.args(["-movflags", "+faststart"]);
    }
    if let Some(marker) = &clip.marker {
        cmd.arg("-metadata").arg(format!("title={marker}"));
    }
    cmd.arg(&path);
    let out = cmd.output().expect("run ffmpeg");
    assert!(
        out.status.success(),
        "generating {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// The top-level MP4 boxes, in file order (`ftyp`, `moov`, `mdat`, ...).
pub fn top_level_boxes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read clip");
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size32 = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as u64;
        let kind = String::from_utf8_lossy(&bytes[at + 4..at + 8]).to_string();
        let size = match size32 {
            1 if at + 16 <= bytes.len() => {
                u64::from_be_bytes(bytes[at + 8..at + 16].try_into().unwrap())
            }
            0 => (bytes.len() - at) as u64,
            n => n,
        };
        boxes.push(kind);
        if size < 8 {
            break;
        }
        at += size as usize;
    }
    boxes
}

/// True when the `moov` box comes after `mdat`: a player (or ffmpeg) must seek to
/// the end before it can decode the first frame.
pub fn moov_at_end(path: &Path) -> bool {
    let boxes = top_level_boxes(path);
    let moov = boxes.iter().position(|b| b == "moov");
    let mdat = boxes.iter().position(|b| b == "mdat");
    matches!((moov, mdat), (Some(m), Some(d)) if m > d)
}

/// ffprobe's streams of a file or URL (`-show_streams -show_format`).
pub fn probe(input: &str) -> Value {
    ensure_media();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            input,
        ])
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

pub fn streams_of(probe: &Value, kind: &str) -> Vec<Value> {
    probe["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|s| s["codec_type"] == kind)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Decodes every video frame of `input` (the first video stream): the count, or
/// `Err(stderr)` when ffprobe fails outright.
pub fn count_frames(input: &str) -> Result<u64, String> {
    ensure_media();
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "json",
            input,
        ])
        .output()
        .expect("run ffprobe");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        return Err(stderr);
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {stderr}"))?;
    v["streams"][0]["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .ok_or(stderr)
}

/// `ffmpeg -i input -f null -`: decodes every stream; Ok(stderr) on success.
pub fn decode_all(input: &str) -> Result<String, String> {
    ensure_media();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-xerror", "-i", input])
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        Ok(stderr)
    } else {
        Err(stderr)
    }
}

/// One `#EXT-X-STREAM-INF` of a master playlist.
#[derive(Clone, Debug)]
pub struct Variant {
    pub attrs: HashMap<String, String>,
    /// Absolute (resolved against the master's URL).
    pub url: String,
}

impl Variant {
    pub fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map(String::as_str).unwrap_or("")
    }
    pub fn resolution(&self) -> (u32, u32) {
        let (w, h) = self
            .attr("RESOLUTION")
            .split_once('x')
            .unwrap_or(("0", "0"));
        (w.parse().unwrap_or(0), h.parse().unwrap_or(0))
    }
    pub fn number(&self, name: &str) -> f64 {
        self.attr(name).parse().unwrap_or(f64::NAN)
    }
}

/// `KEY=VALUE,KEY="quoted, value"` as in an HLS attribute list.
pub fn parse_attrs(list: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = list;
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            let next = quoted.get(end + 1..).unwrap_or("");
            (&quoted[..end], next.strip_prefix(',').unwrap_or(next))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        out.insert(key.trim().to_string(), value.to_string());
        rest = next;
    }
    out
}

/// `uri` resolved against the playlist at `base`.
pub fn resolve(base: &str, uri: &str) -> String {
    reqwest::Url::parse(base)
        .and_then(|b| b.join(uri))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| uri.to_string())
}

pub fn variants(master: &str, master_url: &str) -> Vec<Variant> {
    let mut out = Vec::new();
    let mut pending: Option<HashMap<String, String>> = None;
    for line in master.lines().map(str::trim) {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            pending = Some(parse_attrs(attrs));
        } else if !line.is_empty() && !line.starts_with('#') {
            if let Some(attrs) = pending.take() {
                out.push(Variant {
                    attrs,
                    url: resolve(master_url, line),
                });
            }
        }
    }
    out
}

/// A media playlist's key line and segment URLs (absolute).
#[derive(Clone, Debug)]
pub struct Media {
    pub key: HashMap<String, String>,
    pub segments: Vec<String>,
    pub durations: Vec<f64>,
    pub target_duration: f64,
    pub ended: bool,
}

pub fn media(text: &str, url: &str) -> Media {
    let mut m = Media {
        key: HashMap::new(),
        segments: Vec::new(),
        durations: Vec::new(),
        target_duration: 0.0,
        ended: false,
    };
    for line in text.lines().map(str::trim) {
        if let Some(attrs) = line.strip_prefix("#EXT-X-KEY:") {
            m.key = parse_attrs(attrs);
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            m.durations.push(
                d.trim_end_matches(',')
                    .split(',')
                    .next()
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0.0),
            );
        } else if let Some(t) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            m.target_duration = t.parse().unwrap_or(0.0);
        } else if line == "#EXT-X-ENDLIST" {
            m.ended = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            m.segments.push(resolve(url, line));
        }
    }
    m
}

/// GET as text with status and headers (lower-case names).
pub fn fetch(url: &str) -> (u16, HashMap<String, String>, Vec<u8>) {
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
        .get(url)
        .header("Origin", "http://player.example")
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    (
        status,
        headers,
        resp.bytes().map(|b| b.to_vec()).unwrap_or_default(),
    )
}

pub fn fetch_text(url: &str) -> (u16, String) {
    let (status, _, body) = fetch(url);
    (status, String::from_utf8_lossy(&body).to_string())
}

/// A static HTTP/1.1 server on 127.0.0.1 answering GET from a path → body map.
pub struct StaticServer {
    pub port: u16,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl StaticServer {
    pub fn start() -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (files.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 4096];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let head = String::from_utf8_lossy(&buf).to_string();
                        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                        let path = path.split('?').next().unwrap_or("/").to_string();
                        let body = f.lock().unwrap().get(&path).cloned();
                        let (status, body) = match body {
                            Some(b) => ("200 OK", b),
                            None => ("404 Not Found", b"not here".to_vec()),
                        };
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(&body);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StaticServer { port, files, stop }
    }

    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) -> String {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), body.into());
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Decodes the media playlist at `rung_url` with `key` instead of the one it names:
/// the playlist is served from `local` with its key URI pointing at `key` and its
/// segment URIs made absolute. The frame count, or ffprobe's complaint.
pub fn decode_with_key(local: &StaticServer, rung_url: &str, key: &[u8]) -> Result<u64, String> {
    let (status, text) = fetch_text(rung_url);
    assert_eq!(status, 200, "{rung_url}: {text}");
    let n = local.files.lock().unwrap().len();
    let key_url = local.put(&format!("/k{n}.key"), key.to_vec());
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("#EXT-X-KEY:") {
            out.push_str(&format!("#EXT-X-KEY:METHOD=AES-128,URI=\"{key_url}\"\n"));
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            out.push_str(&resolve(rung_url, line.trim()));
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    count_frames(&local.put(&format!("/p{n}.m3u8"), out))
}

/// The tenant API, as a backend calls it.
#[derive(Clone)]
pub struct Tenant {
    pub api_url: String,
    pub bearer: String,
}

impl Tenant {
    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
            .request(method, format!("{}{path}", self.api_url))
            .header("Authorization", &self.bearer);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// `POST /v1/api/encoding/request` with `object_key` = the file id and `extra`.
    pub fn request_encode(&self, file_id: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({ "object_key": file_id });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.call(
            reqwest::Method::POST,
            "/v1/api/encoding/request",
            Some(body),
        )
    }

    pub fn job(&self, encoding_id: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::GET,
            &format!("/v1/api/encoding/jobs/{encoding_id}"),
            None,
        )
    }

    pub fn my_jobs(&self, status: &str) -> Vec<Value> {
        let (code, v) = self.call(
            reqwest::Method::GET,
            &format!("/v1/api/my-jobs?status={status}"),
            None,
        );
        assert_eq!(code, 200, "my-jobs: {v}");
        v["jobs"].as_array().cloned().unwrap_or_default()
    }

    /// Polls the job until `done(phase)`; panics on a terminal phase `done` refuses.
    pub fn wait_job(
        &self,
        encoding_id: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            let (code, job) = self.job(encoding_id);
            if code == 200 {
                let phase = job["phase"].as_str().unwrap_or("").to_string();
                if done(&phase) {
                    return job;
                }
                assert!(
                    !matches!(phase.as_str(), "failed_user_action" | "cancelled") || done(&phase),
                    "encoding {encoding_id} ended {phase}: {job}"
                );
                last = job;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on encoding {encoding_id}; last: {last}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `GET /v1/api/pipeline/{file_id}`.
    pub fn pipeline(&self, file_id: &str) -> Value {
        let (code, v) = self.call(
            reqwest::Method::GET,
            &format!("/v1/api/pipeline/{file_id}"),
            None,
        );
        assert_eq!(code, 200, "pipeline {file_id}: {v}");
        v
    }

    pub fn delete_file(&self, file_id: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/v1/api/file/{file_id}"),
            None,
        )
    }

    pub fn master_url(&self, file_id: &str) -> String {
        format!("{}/stream/{file_id}/master.m3u8", self.api_url)
    }
}

/// Phases at or past "every rung live".
pub fn playable_complete(phase: &str) -> bool {
    matches!(phase, "local_complete" | "replicating" | "safe")
}

/// One frame of `input` (a file or URL) as 8-bit gray at `w`×`h`: the frame at `at`
/// seconds (ffmpeg's accurate seek: decoded up to that time), the first when `None`;
/// cropped to `crop` = (x, y, width, height) first when given.
pub fn gray_frame(
    input: &str,
    at: Option<f64>,
    crop: Option<(u32, u32, u32, u32)>,
    w: u32,
    h: u32,
) -> Vec<u8> {
    ensure_media();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error"]);
    if let Some(at) = at {
        cmd.arg("-ss").arg(format!("{at:.3}"));
    }
    let crop = crop
        .map(|(x, y, cw, ch)| format!("crop={cw}:{ch}:{x}:{y},"))
        .unwrap_or_default();
    cmd.arg("-i")
        .arg(input)
        .args(["-frames:v", "1", "-vf"])
        .arg(format!("{crop}scale={w}:{h}:flags=area,format=gray"))
        .args(["-f", "rawvideo", "-"]);
    let out = cmd.output().expect("run ffmpeg");
    assert!(
        out.status.success() && out.stdout.len() == (w * h) as usize,
        "a {w}x{h} gray frame of {input} at {at:?}: {} bytes, {}",
        out.stdout.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Mean absolute difference of two gray images of the same size (0–255).
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "images of different sizes");
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len().max(1) as f64
}

/// The first video stream's (width, height, codec) of a file or URL, by ffprobe.
pub fn picture(input: &str) -> (u32, u32, String) {
    let p = probe(input);
    let v = streams_of(&p, "video")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{input} has no picture: {p}"));
    (
        v["width"].as_u64().unwrap_or(0) as u32,
        v["height"].as_u64().unwrap_or(0) as u32,
        v["codec_name"].as_str().unwrap_or("").to_string(),
    )
}

/// One cue of a sprite WebVTT track: `<sheet url>#xywh=x,y,w,h` for [start, end).
#[derive(Clone, Debug, PartialEq)]
pub struct SpriteCue {
    pub start: f64,
    pub end: f64,
    /// Absolute (resolved against the VTT's URL), without the fragment.
    pub sheet: String,
    pub xywh: (u32, u32, u32, u32),
}

/// `HH:MM:SS.mmm` or `MM:SS.mmm` in seconds.
pub fn vtt_time(t: &str) -> Option<f64> {
    let mut secs = 0.0;
    for part in t.trim().split(':') {
        secs = secs * 60.0 + part.parse::<f64>().ok()?;
    }
    Some(secs)
}

/// The cues of a sprite VTT; panics on anything that is not `WEBVTT` with
/// `start --> end` + `url#xywh=…` cues.
pub fn sprite_cues(text: &str, vtt_url: &str) -> Vec<SpriteCue> {
    assert!(text.starts_with("WEBVTT"), "not a WebVTT file: {text}");
    let mut cues = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some((a, b)) = line.split_once("-->") else {
            continue;
        };
        let times = (
            vtt_time(a),
            vtt_time(b.split_whitespace().next().unwrap_or("")),
        );
        let (Some(start), Some(end)) = times else {
            panic!("bad cue timing {line:?}: {text}");
        };
        let body = lines.next().unwrap_or("");
        let (url, frag) = body
            .split_once("#xywh=")
            .unwrap_or_else(|| panic!("cue without #xywh: {body:?}"));
        let n: Vec<u32> = frag
            .split(',')
            .map(|v| v.trim().parse().unwrap_or(u32::MAX))
            .collect();
        assert!(n.len() == 4 && !n.contains(&u32::MAX), "bad xywh {body:?}");
        cues.push(SpriteCue {
            start,
            end,
            sheet: resolve(vtt_url, url),
            xywh: (n[0], n[1], n[2], n[3]),
        });
    }
    cues
}

/// Files under `roots` whose bytes contain any of `needles`.
pub fn files_containing(roots: &[PathBuf], needles: &[&[u8]]) -> Vec<(PathBuf, usize)> {
    let mut hits = Vec::new();
    for root in roots {
        for f in super::files_under(root) {
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            for (i, n) in needles.iter().enumerate() {
                if super::contains(&bytes, n) {
                    hits.push((f.clone(), i));
                }
            }
        }
    }
    hits
}

/// Uploads `path` with the Rust client (no pipeline declared); the file id.
pub fn upload_video(
    cluster: &super::procs::ProcCluster,
    path: &Path,
    bucket: &str,
    key: &str,
) -> String {
    super::rt()
        .block_on(cluster.client().upload_path(
            path,
            bucket,
            key,
            Some("video/mp4"),
            &zib_client::UploadOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("upload {key}: {e:#}"))
        .file_id
        .to_string()
}

/// Initiates with a declared `pipeline`, then uploads the bytes as the SDK would.
pub fn upload_declared(
    cluster: &super::procs::ProcCluster,
    path: &Path,
    bucket: &str,
    key: &str,
    pipeline: Value,
) -> String {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let tenant = Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.bearer(),
    };
    let (status, reg) = tenant.call(
        reqwest::Method::POST,
        "/v1/api/upload/initiate",
        Some(json!({"bucket": bucket, "key": key, "file_size": size,
                    "content_type": "video/mp4", "pipeline": pipeline})),
    );
    assert_eq!(status, 200, "{reg}");
    let reg: zib_proto::api::Registration = serde_json::from_value(reg).expect("registration");
    super::rt()
        .block_on(zib_client::upload_with_registration(
            cluster.client().http(),
            &reg,
            path,
            &zib_client::UploadOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("upload {key}: {e:#}"));
    reg.file_id.to_string()
}

/// `zib <args>` as the cluster's tenant.
pub fn zib_as_tenant(cluster: &super::procs::ProcCluster, args: &[&str]) -> std::process::Output {
    Command::new(super::zib_bin())
        .args(args)
        .env("ZIB_API_URL", &cluster.api_url)
        .env("ZIB_ACCESS_KEY", &cluster.access_key)
        .env("ZIB_SECRET_KEY", &cluster.secret_key)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run zib")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_lists_keep_quoted_commas() {
        let a =
            parse_attrs(r#"BANDWIDTH=800000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=640x360"#);
        assert_eq!(a["BANDWIDTH"], "800000");
        assert_eq!(a["CODECS"], "avc1.64001f,mp4a.40.2");
        assert_eq!(a["RESOLUTION"], "640x360");
    }

    #[test]
    fn sprite_cues_resolve_their_sheets() {
        let vtt = "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\n/objects/a#xywh=0,0,160,90\n\n\
                   00:05.000 --> 00:00:07.500\nhttp://c/objects/b#xywh=160,0,160,90\n";
        let cues = sprite_cues(vtt, "http://cdn:1/objects/v");
        assert_eq!(cues.len(), 2);
        assert_eq!(cues[0].sheet, "http://cdn:1/objects/a");
        assert_eq!((cues[1].start, cues[1].end), (5.0, 7.5));
        assert_eq!(cues[1].xywh, (160, 0, 160, 90));
        assert_eq!(mean_abs_diff(&[0, 10], &[4, 0]), 7.0);
    }
}
