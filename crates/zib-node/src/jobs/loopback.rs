//! The loopback HTTP server ffmpeg talks to during one job: it reads the decrypted
//! source from `GET {base}/source` (ranged, so a `moov` atom at the end is one seek
//! away) and writes its HLS output with `PUT {base}/out/{name}`. Plaintext thus only
//! ever lives in this process's memory and in ffmpeg's; the key never leaves it.
//!
//! The server listens on 127.0.0.1 only, under a random path prefix: another local
//! process cannot guess where the plaintext is served.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::source::{Source, SourceError};
use crate::shards::parse_range;

/// The largest output file taken: a 4 s segment of the top rung is a few MB.
const MAX_OUTPUT: usize = 256 * 1024 * 1024;

/// A file ffmpeg wrote.
#[derive(Debug)]
pub enum Output {
    /// An MPEG-TS segment (`{rendition}_{seq}.ts`), still plaintext.
    Segment { name: String, bytes: Bytes },
    /// A media playlist (`{rendition}.m3u8`), as ffmpeg rewrote it.
    Playlist { name: String, text: String },
}

struct Shared {
    source: Arc<Source>,
    outputs: mpsc::UnboundedSender<Output>,
}

/// A running loopback server; dropping it stops the server.
pub struct Loopback {
    base: String,
    task: JoinHandle<()>,
}

impl Loopback {
    pub async fn start(
        source: Arc<Source>,
        outputs: mpsc::UnboundedSender<Output>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr: SocketAddr = listener.local_addr()?;
        let prefix = uuid::Uuid::new_v4().simple().to_string();
        let app = Router::new()
            .route(&format!("/{prefix}/source"), get(get_source))
            .route(&format!("/{prefix}/out/{{name}}"), put(put_output))
            .with_state(Arc::new(Shared { source, outputs }));
        let task = tokio::spawn(serve(listener, app));
        Ok(Self {
            base: format!("http://{addr}/{prefix}"),
            task,
        })
    }

    /// A loopback that only serves `source` (a compute job's ffmpeg reads it and
    /// writes to a pipe): output PUTs are answered `410`.
    #[cfg(feature = "ai")]
    pub async fn source_only(source: Arc<Source>) -> std::io::Result<Self> {
        let (outputs, _) = mpsc::unbounded_channel();
        Self::start(source, outputs).await
    }

    /// Where ffmpeg reads the plaintext source.
    pub fn source_url(&self) -> String {
        format!("{}/source", self.base)
    }

    /// Where ffmpeg writes `{name}.m3u8` and `{name}_{seq}.ts`.
    pub fn output_base(&self) -> String {
        format!("{}/out", self.base)
    }
}

/// HTTP/1 with half-closed connections allowed: ffmpeg's PUT sends its last chunk
/// and shuts its side of the socket without waiting for the answer, which hyper's
/// default (so `axum::serve`) takes for the end of the connection, dropping the
/// request in flight — a segment silently lost while ffmpeg exits 0.
///
/// Connections live in a set owned by this task: stopping the server ends them.
async fn serve(listener: tokio::net::TcpListener, app: Router) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "the encoder's loopback server stopped accepting");
                    return;
                }
            },
            // Reap finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `GET`/`HEAD {base}/source`, whole or one `bytes=` range, streamed window by
/// window so a full read never holds more than one window in memory.
async fn get_source(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let len = shared.source.size();
    let range = match headers.get(header::RANGE).map(|v| v.to_str()) {
        None => None,
        Some(Ok(value)) => match parse_range(value, len) {
            Ok(r) => Some(r),
            Err(msg) => {
                let mut response = (StatusCode::RANGE_NOT_SATISFIABLE, msg).into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return response;
            }
        },
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "bad Range header").into_response(),
    };
    let (status, start, end) = match range {
        Some((first, last)) => (StatusCode::PARTIAL_CONTENT, first, last + 1),
        None => (StatusCode::OK, 0, len),
    };
    let windows = shared.source.windows(start..end);
    let body = futures::stream::unfold(
        Reads::new(shared.source.clone(), windows),
        |mut reads| async move {
            let read = reads.next().await?;
            Some((read, reads))
        },
    );
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

/// The windows of one source response, read one ahead: while ffmpeg consumes a
/// window the next is already on its way from the server. Dropping it (ffmpeg
/// seeks and closes the connection) stops the read ahead.
struct Reads {
    source: Arc<Source>,
    windows: std::vec::IntoIter<std::ops::Range<u64>>,
    ahead: Option<ReadAhead>,
}

type WindowRead = Result<Bytes, SourceError>;

struct ReadAhead(JoinHandle<WindowRead>);

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Reads {
    fn new(source: Arc<Source>, windows: Vec<std::ops::Range<u64>>) -> Self {
        Self {
            source,
            windows: windows.into_iter(),
            ahead: None,
        }
    }

    fn start_next(&mut self) -> Option<ReadAhead> {
        let window = self.windows.next()?;
        let source = self.source.clone();
        Some(ReadAhead(tokio::spawn(async move {
            let read = source.read(window.clone()).await.map(Bytes::from);
            if let Err(e) = &read {
                tracing::warn!(error = %e, ?window, "could not read the source for ffmpeg");
            }
            read
        })))
    }

    /// The next window's plaintext; `None` at the end or after an error (ffmpeg
    /// then sees a cut connection).
    async fn next(&mut self) -> Option<WindowRead> {
        let current = match self.ahead.take() {
            Some(ahead) => ahead,
            None => self.start_next()?,
        };
        self.ahead = self.start_next();
        let mut current = current;
        let read = match (&mut current.0).await {
            Ok(read) => read,
            Err(e) => Err(SourceError::Unreachable(format!(
                "the read was stopped: {e}"
            ))),
        };
        if read.is_err() {
            self.ahead = None;
            self.windows = Vec::new().into_iter();
        }
        Some(read)
    }
}

/// `PUT {base}/out/{name}`: ffmpeg's output, handed to the job as it arrives.
async fn put_output(
    State(shared): State<Arc<Shared>>,
    UrlPath(name): UrlPath<String>,
    body: Body,
) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_OUTPUT).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(%name, error = %e, "could not take ffmpeg's output");
            return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
        }
    };
    let output = if name.ends_with(".ts") {
        Output::Segment { name, bytes }
    } else if name.ends_with(".m3u8") {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Output::Playlist { name, text },
            Err(_) => return (StatusCode::BAD_REQUEST, "playlist is not UTF-8").into_response(),
        }
    } else {
        return (StatusCode::BAD_REQUEST, "only .ts and .m3u8 are taken").into_response();
    };
    if shared.outputs.send(output).is_err() {
        // The job is over (cancelled): ffmpeg is being stopped anyway.
        return StatusCode::GONE.into_response();
    }
    StatusCode::CREATED.into_response()
}
