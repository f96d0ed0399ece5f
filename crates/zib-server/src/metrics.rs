//! `GET /metrics`: Prometheus/OpenMetrics text. Request and CDN-byte counters are
//! kept as requests pass; worker runs, nodes online, files by phase, files below
//! full redundancy and webhook
//! deliveries are read at scrape time (from the worker registry and the store), so
//! every server behind a load balancer reports the same store-wide gauges.
//!
//! Served without authentication, as Prometheus scrapers expect: it carries counts
//! only, never ids, keys or tenant names (docs/operations.md, "Status").

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use zib_meta::{DeliveryStatus, FilePhase};

use crate::domain::directory::NodeDirectory;
use crate::error::{ApiError, InternalError};
use crate::state::AppState;

/// The route label of requests that matched no route (the raw path is never a
/// label: it would carry file ids and grow without bound).
const UNMATCHED: &str = "unmatched";
const CDN_ROUTE_PREFIX: &str = "/objects/";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    status: String,
}

type DurationFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Counters kept while serving, handed to the middleware as its state and to the
/// scrape as an extension (not kept in `AppState`, which everything depends on).
/// Cloning shares them.
#[derive(Clone)]
pub struct Metrics(Arc<Counters>);

struct Counters {
    requests: Family<RequestLabels, Counter>,
    durations: DurationFamily,
    cdn_bytes_out: Counter,
    cdn_bytes_in: Counter,
}

fn duration_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics(Arc::new(Counters {
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            cdn_bytes_out: Counter::default(),
            cdn_bytes_in: Counter::default(),
        }))
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// Middleware: counts and times every request by matched route, and counts the
/// body bytes the CDN sends and S3 uploads bring in as they stream.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED.to_string());
    let method = request.method().clone();
    let m = metrics.0.clone();
    let upload =
        matches!(method, Method::PUT | Method::POST) && route.starts_with(crate::s3::PREFIX);
    let request = if upload {
        let counter = m.cdn_bytes_in.clone();
        request.map(|inner| Body::new(Counted { inner, counter }))
    } else {
        request
    };
    let started = Instant::now();
    let response = next.run(request).await;
    m.requests
        .get_or_create(&RequestLabels {
            route: route.clone(),
            method: method.as_str().to_string(),
            status: response.status().as_u16().to_string(),
        })
        .inc();
    let cdn = method == Method::GET && route.starts_with(CDN_ROUTE_PREFIX);
    m.durations
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    if !cdn {
        return response;
    }
    let counter = m.cdn_bytes_out.clone();
    response.map(|inner| Body::new(Counted { inner, counter }))
}

/// A body that counts its data bytes as they pass, and keeps the inner body's size
/// hint (so a known length still goes out as `Content-Length`).
struct Counted {
    inner: Body,
    counter: Counter,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.counter.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

async fn scrape(
    State(state): State<AppState>,
    Extension(metrics): Extension<Metrics>,
) -> Result<Response, ApiError> {
    let mut registry = Registry::default();
    let m = &metrics.0;
    registry.register(
        "zib_http_requests",
        "HTTP requests answered, by matched route, method and status",
        m.requests.clone(),
    );
    registry.register(
        "zib_http_request_duration_seconds",
        "Time to the response head, by matched route",
        m.durations.clone(),
    );
    registry.register(
        "zib_cdn_bytes_out",
        "Body bytes sent by the CDN (/objects/)",
        m.cdn_bytes_out.clone(),
    );
    registry.register(
        "zib_unreadable_reads",
        "Reads (CDN, S3 GetObject) refused or cut short: a chunk does not decrypt although every shard matches its hash",
        crate::domain::read::UNREADABLE_READS.clone(),
    );
    registry.register(
        "zib_cdn_bytes_in",
        "Request body bytes received by uploads through the server (S3)",
        m.cdn_bytes_in.clone(),
    );

    let runs = Family::<WorkerLabels, Counter>::default();
    for w in state.workers.statuses() {
        for (result, n) in [("ok", w.runs.saturating_sub(w.errors)), ("error", w.errors)] {
            runs.get_or_create(&WorkerLabels {
                worker: w.name.clone(),
                result: result.to_string(),
            })
            .inc_by(n);
        }
    }
    registry.register(
        "zib_worker_runs",
        "Background worker ticks of this server, by worker and result",
        runs,
    );

    let online_since = crate::domain::directory::online_since(&state);
    let below = state
        .store
        .count_files_below_full_redundancy(online_since)
        .await?;
    let below_full = Gauge::<i64>::default();
    below_full.set(i64::try_from(below).unwrap_or(i64::MAX));
    registry.register(
        "zib_files_below_full_redundancy",
        "Distributed or safe files with a segment short of its k+m distinct live holders (a shard lost, corrupt, on an offline node or doubled up): what repair is working on",
        below_full,
    );

    let online = NodeDirectory::load(&state).await?.online().len();
    let nodes_online = Gauge::<i64>::default();
    nodes_online.set(i64::try_from(online).unwrap_or(i64::MAX));
    registry.register(
        "zib_nodes_online",
        "Nodes heard from recently",
        nodes_online,
    );

    let files = Family::<PhaseLabels, Gauge>::default();
    let counted = state.store.count_files_by_phase().await?;
    for phase in [
        FilePhase::Pending,
        FilePhase::Uploading,
        FilePhase::Distributed,
        FilePhase::Safe,
        FilePhase::Cancelled,
        FilePhase::Failed,
    ] {
        let n = counted
            .iter()
            .find(|(p, _)| *p == phase)
            .map_or(0, |(_, n)| *n);
        files
            .get_or_create(&PhaseLabels {
                phase: phase.as_str().to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register("zib_files", "Files by lifecycle phase", files);

    let deliveries = Family::<DeliveryLabels, Gauge>::default();
    for status in [DeliveryStatus::Pending, DeliveryStatus::Failed] {
        let n = state.store.count_webhook_deliveries(status).await?;
        deliveries
            .get_or_create(&DeliveryLabels {
                status: status.as_str().to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register(
        "zib_webhook_deliveries",
        "Webhook deliveries waiting to be sent (pending) or out of attempts (failed)",
        deliveries,
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|e| ApiError::Internal(InternalError::Other(format!("encoding metrics: {e}"))))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
