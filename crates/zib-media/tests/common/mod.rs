//! What the zib-media tests share: the real ffmpeg (installed by
//! scripts/install-media-deps.sh when missing), clips made with lavfi, a ranged HTTP
//! file server (the node serves sources this way) and an HTTP PUT sink (where ffmpeg
//! writes HLS).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use zib_media::Tools;

/// Installs ffmpeg when missing (once per test binary) and returns the tools.
/// Panics when it cannot: a machine without ffmpeg must fail these tests, loudly.
pub fn tools() -> Tools {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-media-deps.sh");
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            status.success(),
            "installing ffmpeg failed ({status}): the media tests need it"
        );
    });
    Tools::from_env()
}

/// A test clip's shape.
#[derive(Clone, Copy, Debug)]
pub struct Clip {
    pub w: u32,
    pub h: u32,
    pub fps: u32,
    pub secs: f64,
    pub audio: bool,
}

/// `w`x`h`, 30 fps, `secs` long, with audio when `audio`.
pub fn clip(w: u32, h: u32, secs: f64, audio: bool) -> Clip {
    Clip {
        w,
        h,
        fps: 30,
        secs,
        audio,
    }
}

/// Makes a clip with ffmpeg from lavfi's `testsrc2` (+ a `sine` tone when `audio`),
/// `secs` long, `w`x`h` at `fps`, into `dir/name`. `extra` go before the output name
/// (e.g. `-movflags +faststart`). Fast settings: clips are inputs, not products.
pub fn make_clip(dir: &Path, name: &str, clip: Clip, extra: &[&str]) -> PathBuf {
    let Clip {
        w,
        h,
        fps,
        secs,
        audio,
    } = clip;
    let out = dir.join(name);
    let video = format!("testsrc2=size={w}x{h}:rate={fps}:duration={secs}");
    let mut cmd = Command::new(tools().ffmpeg);
    cmd.args([
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        &video,
    ]);
    let sine = format!("sine=frequency=440:sample_rate=44100:duration={secs}");
    if audio {
        cmd.args(["-f", "lavfi", "-i", &sine, "-c:a", "aac", "-b:a", "64k"]);
    }
    cmd.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ]);
    cmd.args(extra).arg(&out);
    let status = cmd.status().expect("run ffmpeg to make a clip");
    assert!(status.success(), "making {name} failed");
    out
}

/// Re-muxes `src` with a display rotation (what a phone held upright writes).
pub fn rotate_clip(src: &Path, dst: &Path, degrees: i32) {
    let rotate = format!("rotate={degrees}");
    let status = Command::new(tools().ffmpeg)
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y", "-i"])
        .arg(src)
        .args(["-c", "copy", "-metadata:s:v:0", &rotate])
        .arg(dst)
        .status()
        .expect("run ffmpeg to rotate a clip");
    assert!(status.success(), "rotating {} failed", src.display());
}

/// Runs ffprobe on `path`, returning (codec_type, codec_name, width, height) of each
/// stream.
pub fn streams_of(path: &Path) -> Vec<(String, String, u64, u64)> {
    let out = Command::new(tools().ffprobe)
        .args(["-v", "error", "-print_format", "json", "-show_streams"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    json["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap_or("").to_string(),
                s["codec_name"].as_str().unwrap_or("").to_string(),
                s["width"].as_u64().unwrap_or(0),
                s["height"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// A running loopback HTTP server; the runtime's task ends with the test.
pub struct Server {
    pub addr: SocketAddr,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }
}

/// Serves `router` on an ephemeral loopback port over HTTP/1 with half-closed
/// connections allowed. ffmpeg's HTTP PUT sends its last chunk and shuts the socket
/// without waiting for the answer; hyper's default (so `axum::serve`) treats that
/// EOF as the end of the connection and drops the request in flight: a segment is
/// silently lost now and then while ffmpeg exits 0. The node's sink must do the same.
async fn serve(router: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .half_close(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { addr }
}

/// How a [`files`] server behaves after sending the first `stall_after` bytes of any
/// response: hang (an unresponsive source), for the cancellation test.
#[derive(Clone, Default)]
pub struct FileOpts {
    pub stall_after: Option<usize>,
    /// Send the body in chunks of this many bytes, one per 100 ms (a slow source,
    /// so an encode is still running when a test acts on it).
    pub chunk_per_100ms: Option<usize>,
}

/// Serves the files of `dir` at `/{name}` with `Range: bytes=a-b` support (206 +
/// `Content-Range`), like the node's loopback source server.
pub async fn files(dir: &Path, opts: FileOpts) -> Server {
    let state = (dir.to_path_buf(), opts);
    let router = Router::new()
        .route("/{name}", get(serve_file))
        .with_state(state);
    serve(router).await
}

async fn serve_file(
    State((dir, opts)): State<(PathBuf, FileOpts)>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(data) = std::fs::read(dir.join(&name)) else {
        return status(StatusCode::NOT_FOUND);
    };
    let len = data.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .map(|(a, b)| {
            let start: usize = a.parse().unwrap_or(0);
            let end: usize = b.parse().map(|e: usize| e + 1).unwrap_or(len).min(len);
            (start, end)
        });
    let (code, start, end) = match range {
        Some((s, _)) if s >= len && len > 0 => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .unwrap_or_default();
        }
        Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e.max(s)),
        None => (StatusCode::OK, 0, len),
    };
    let part = Bytes::copy_from_slice(&data[start..end]);
    let mut builder = Response::builder()
        .status(code)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, part.len());
    if code == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", end.saturating_sub(1)),
        );
    }
    let body = match (opts.stall_after, opts.chunk_per_100ms) {
        (Some(n), _) if n < part.len() => stall(part.slice(..n)),
        (_, Some(n)) => paced(part, n.max(1)),
        _ => Body::from(part),
    };
    builder.body(body).unwrap_or_default()
}

/// A body that sends `head` and then never ends.
fn stall(head: Bytes) -> Body {
    use futures::StreamExt;
    let first = futures::stream::once(async move { Ok::<_, std::io::Error>(head) });
    Body::from_stream(first.chain(futures::stream::pending()))
}

/// A body sent `n` bytes at a time, one chunk per 100 ms.
fn paced(data: Bytes, n: usize) -> Body {
    let chunks = futures::stream::unfold(data, move |mut rest| async move {
        if rest.is_empty() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let chunk = rest.split_to(n.min(rest.len()));
        Some((Ok::<_, std::io::Error>(chunk), rest))
    });
    Body::from_stream(chunks)
}

fn status(code: StatusCode) -> Response {
    Response::builder()
        .status(code)
        .body(Body::empty())
        .unwrap_or_default()
}

/// What ffmpeg PUT to a [`sink`]: the last body per path, and every PUT in order.
#[derive(Clone, Default)]
pub struct Received {
    inner: Arc<Mutex<Puts>>,
}

/// The last body per path, and every PUT path in order.
type Puts = (BTreeMap<String, Bytes>, Vec<String>);

impl Received {
    pub fn get(&self, path: &str) -> Option<Bytes> {
        self.inner.lock().expect("sink lock").0.get(path).cloned()
    }

    pub fn paths(&self) -> Vec<String> {
        self.inner
            .lock()
            .expect("sink lock")
            .0
            .keys()
            .cloned()
            .collect()
    }

    pub fn puts(&self) -> Vec<String> {
        self.inner.lock().expect("sink lock").1.clone()
    }
}

/// An HTTP server that keeps every `PUT /{path}` body (ffmpeg's `-method PUT`).
pub async fn sink() -> (Server, Received) {
    let received = Received::default();
    let router = Router::new()
        .route("/{*path}", axum::routing::put(put_body))
        .layer(DefaultBodyLimit::disable())
        .with_state(received.clone());
    (serve(router).await, received)
}

async fn put_body(
    State(received): State<Received>,
    UrlPath(path): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let mut inner = received.inner.lock().expect("sink lock");
    inner.1.push(path.clone());
    inner.0.insert(path, body);
    StatusCode::CREATED
}

/// Waits (up to 10 s) until the sink holds `playlist` with `#EXT-X-ENDLIST` and
/// every segment it lists, and returns the playlist's text. ffmpeg may exit before
/// the server has finished reading its last PUTs, so the node must wait the same way.
pub async fn wait_for_rung(received: &Received, dir: &str, playlist: &str) -> String {
    let complete = || {
        let text =
            String::from_utf8_lossy(&received.get(&format!("{dir}/{playlist}"))?).into_owned();
        let all = text.contains("#EXT-X-ENDLIST")
            && zib_media::parse_media_playlist(&text)
                .iter()
                .all(|(name, _)| received.get(&format!("{dir}/{name}")).is_some());
        all.then_some(text)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(text) = complete() {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{dir}/{playlist} and its segments never all arrived: {:?}",
            received.puts()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `cond` every 50 ms for up to `limit`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

/// True while some process's command line contains `needle` (this test's unique
/// loopback port, so parallel tests do not see each other's ffmpeg).
pub fn process_running(needle: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            return false;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        cmd.starts_with(|c: char| c != '\0') && cmd.contains("ffmpeg") && cmd.contains(needle)
    })
}

/// Makes a `w`x`h` clip, `secs` long at `fps`, no audio, whose every frame differs
/// from the last across the whole picture: a diagonal luma sawtooth that slides 13 levels per
/// frame (`geq` on the frame number; 256 frames before it repeats). One frame early
/// or late is a clear difference.
pub fn make_sliding_clip(dir: &Path, name: &str, w: u32, h: u32, fps: u32, secs: f64) -> PathBuf {
    let out = dir.join(name);
    let src =
        format!("color=c=black:size={w}x{h}:rate={fps}:duration={secs},format=yuv420p,geq=lum='mod(2*X+Y+13*N\\,256)':cb=128:cr=128");
    let status = Command::new(tools().ffmpeg)
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(&src)
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "10",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&out)
        .status()
        .expect("run ffmpeg to make a clip");
    assert!(status.success(), "making {name} failed");
    out
}

/// Runs ffmpeg with `args` and returns its stdout (panics on failure: test inputs).
pub fn ffmpeg_stdout(args: &[&str]) -> Vec<u8> {
    let out = Command::new(tools().ffmpeg)
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// ffmpeg's own decode of the frame at `at` seconds of `input` (`-ss` before `-i`),
/// after `filters`, as raw 8-bit gray.
pub fn frame_gray(input: &Path, at: f64, filters: &str) -> Vec<u8> {
    let at = format!("{at:.3}");
    let vf = format!("{filters},format=gray");
    let input = input.to_string_lossy();
    ffmpeg_stdout(&[
        "-ss",
        &at,
        "-i",
        &input,
        "-frames:v",
        "1",
        "-vf",
        &vf,
        "-f",
        "rawvideo",
        "pipe:1",
    ])
}

/// A JPEG (written into `dir`) decoded after `filters`, as raw 8-bit gray.
pub fn jpeg_gray(dir: &Path, jpeg: &[u8], filters: &str) -> Vec<u8> {
    let path = dir.join(format!("decode-{}.jpg", jpeg.len()));
    std::fs::write(&path, jpeg).expect("write jpeg");
    let vf = format!("{filters},format=gray");
    let input = path.to_string_lossy();
    ffmpeg_stdout(&["-i", &input, "-vf", &vf, "-f", "rawvideo", "pipe:1"])
}

/// (width, height, sample_aspect_ratio, display_aspect_ratio) of the first video
/// stream of `path`.
pub fn video_shape(path: &Path) -> (u64, u64, String, String) {
    let out = Command::new(tools().ffprobe)
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-select_streams",
            "v:0",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let s = &json["streams"][0];
    (
        s["width"].as_u64().unwrap_or(0),
        s["height"].as_u64().unwrap_or(0),
        s["sample_aspect_ratio"].as_str().unwrap_or("").to_string(),
        s["display_aspect_ratio"].as_str().unwrap_or("").to_string(),
    )
}

/// Mean absolute difference of two equally long gray pictures (panics otherwise).
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "pictures of different sizes");
    assert!(!a.is_empty(), "empty pictures");
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}
