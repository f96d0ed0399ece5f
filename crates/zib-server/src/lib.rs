//! The ZiB server: tenant API, CDN and node RPC over one metadata store. It keeps
//! no state of its own, so several can run behind a load balancer.

pub mod admin;
pub mod api;
pub mod auth;
pub mod body;
pub mod cdn;
pub mod config;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod node_rpc;
pub mod openapi;
pub mod request_id;
pub mod s3;
pub mod sdk;
pub mod state;
pub mod webhooks;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, Method};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::cors::{Any, CorsLayer};
use zib_meta::Store;
use zib_util::worker::{Registry, Runner};

pub use config::{LocalBlobPath, LocalNodes, ServerConfig};
pub use error::ApiError;
use state::{AppState, Inner};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the metadata store at {path}: {source}")]
    Store {
        path: String,
        source: zib_meta::MetaError,
    },
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("reading the listener address: {0}")]
    Listener(#[from] std::io::Error),
}

/// A server running on its own tasks.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    workers: Runner,
    _stall_watch: tokio_util::task::AbortOnDropHandle<()>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish.
    pub async fn stop(self) {
        self.workers.signal_stop();
        let _ = self.shutdown.send(());
        let _ = self.task.await;
        self.workers.stop().await;
    }

    /// Stops at once, like a crash.
    pub fn abort(self) {
        self.task.abort();
        self.workers.abort();
    }

    /// Resolves when the server task ends.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

pub fn router(state: AppState) -> Router {
    let counters = metrics::Metrics::default();
    // Browsers read the CDN and call nothing else cross-origin without a backend.
    let cdn_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers([
            header::RANGE,
            header::IF_NONE_MATCH,
            header::IF_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_UNMODIFIED_SINCE,
        ])
        .expose_headers([
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ETAG,
            header::ACCEPT_RANGES,
            header::CONTENT_DISPOSITION,
            header::CONTENT_ENCODING,
        ]);
    Router::new()
        .merge(api::router())
        .merge(node_rpc::router())
        .merge(cdn::router().layer(cdn_cors))
        .merge(sdk::router())
        .merge(s3::router(state.clone()))
        .merge(webhooks::router())
        .merge(openapi::router())
        .merge(admin::router())
        .merge(metrics::router())
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(axum::middleware::from_fn(error::json_rejections))
        .layer(axum::middleware::from_fn(request_id::layer))
        .layer(axum::middleware::from_fn_with_state(
            counters.clone(),
            metrics::track,
        ))
        .layer(axum::Extension(counters))
        .with_state(state)
}

/// Opens the store and serves on `listener` until stopped.
pub async fn start(
    config: ServerConfig,
    listener: TcpListener,
) -> Result<RunningServer, StartError> {
    let store = Store::open_sqlite(&config.database_path)
        .await
        .map_err(|source| StartError::Store {
            path: config.database_path.display().to_string(),
            source,
        })?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()?;
    let nodes = domain::node_client::NodeClient::new(http.clone(), &config.cluster_token);
    let state = AppState(Arc::new(Inner {
        config,
        store,
        http,
        nodes,
        workers: Registry::new(),
        stalls: Default::default(),
        part_coding: tokio::sync::Semaphore::new(domain::part_coding::PARTS_AT_ONCE),
    }));
    let stall_watch = tokio_util::task::AbortOnDropHandle::new(state.stalls.start());
    let addr = listener.local_addr()?;
    let mut workers = Runner::new(state.workers.clone());
    workers::spawn_all(&state, &mut workers);
    let app = router(state);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "server stopped with an error");
        }
    });
    tracing::info!(%addr, "server listening");
    Ok(RunningServer {
        addr,
        shutdown: tx,
        task,
        workers,
        _stall_watch: stall_watch,
    })
}
