//! The node's HTTP surface: routes, CORS for browser uploads, and request logging.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use tower_http::cors::{Any, CorsLayer};
use zib_proto::node_rpc::NodeHealth;

use crate::error::NodeApiError;
use crate::state::NodeState;
use crate::{audit, intake, shards};

pub fn router(state: Arc<NodeState>) -> Router {
    // Browsers upload straight to the node from the tenant's origin.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::PUT, Method::POST, Method::GET, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::CONTENT_LENGTH])
        .expose_headers([header::ETAG, header::CONTENT_LENGTH]);
    let uploads = Router::new()
        .route("/v1/upload/{blob_id}", put(intake::put_upload))
        .route("/v1/upload/{blob_id}/parts", get(crate::parts::list_parts))
        .route("/v1/upload/{blob_id}/parts/{part}", put(intake::put_part))
        .route("/v1/upload/{blob_id}/complete", post(intake::complete))
        .layer(cors);
    // Players on any origin read segments straight from the node (hls.js uses
    // ranged requests for some streams).
    let segments = Router::new()
        .route("/v1/segments/{blob_id}", get(crate::segments::get_segment))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
                .allow_headers([header::RANGE])
                .expose_headers([
                    header::CONTENT_LENGTH,
                    header::CONTENT_RANGE,
                    header::ACCEPT_RANGES,
                ]),
        );
    Router::new()
        .route("/healthz", get(health))
        .route(
            "/v1/shards/{blob_id}",
            put(intake::put_shard)
                .get(shards::get_shard)
                .delete(shards::delete_shard),
        )
        .route("/v1/shards/{blob_id}/challenge", post(audit::challenge))
        .route("/v1/blobs", get(audit::inventory))
        .route("/v1/workers", get(crate::workers::list))
        .merge(uploads)
        .merge(segments)
        .fallback(|| async { NodeApiError::not_found("no such endpoint on this node") })
        // Bodies are streamed to disk and bounded by each token's size, not here.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn health(State(state): State<Arc<NodeState>>) -> impl IntoResponse {
    Json(NodeHealth {
        status: "ok".to_string(),
        node_id: state.node_id.clone(),
        registered: state.is_registered(),
        used_bytes: state.store.used_bytes(),
        free_bytes: state.free_bytes(),
        upload_buffers: zib_proto::node_rpc::BufferUse {
            limit_bytes: state.buffers.limit(),
            in_use_bytes: state.buffers.in_use(),
            high_water_bytes: state.buffers.high_water(),
        },
    })
}

/// One line per request. The query string is left out on purpose: tokens live there.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        target: "zib_node::http",
        %method,
        %path,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Each connection's read buffer grows to at most this. hyper reads ahead while a
/// handler waits for its turn (the buffer budget), and its default cap (~400 KiB)
/// times a few hundred waiting uploads was the node's largest use of memory.
const CONNECTION_READ_BUFFER: usize = 64 * 1024;

/// Serves `router` over HTTP/1.1 until `shutdown`, then lets open requests finish.
/// (`axum::serve` has no knob for the read buffer.)
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .max_buf_size(CONNECTION_READ_BUFFER)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}
