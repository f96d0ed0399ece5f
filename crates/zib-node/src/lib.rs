//! A ZiB storage node: keeps ciphertext under opaque blob ids on local disk, accepts
//! one-time uploads authorised by server-signed capability tokens, erasure-codes what
//! it receives and pushes the shards to the peers the server names, serves shards to
//! the CDN and peers, and heartbeats to the server to pick up commands.
//!
//! The `zib` binary and the integration tests start it with [`start`].

mod audit;
mod budget;
#[cfg(feature = "ai")]
mod compute;
mod config;
mod control;
mod distribute;
mod error;
mod http;
mod incoming;
mod intake;
mod jobs;
mod parts;
mod resume;
mod rpc;
mod segments;
mod shards;
mod state;
mod store;
mod streamed;
mod workers;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zib_proto::NodeId;
use zib_util::worker::{Registry, Runner};

pub use config::NodeConfig;
pub use error::NodeError;
pub use rpc::RpcError;
pub use store::blob_path;

use crate::state::NodeState;
use crate::store::BlobStore;

/// How long `start` waits for the first registration before leaving it to the
/// background loop: the server may live on another host that is not up yet.
const FIRST_REGISTRATION_WAIT: Duration = Duration::from_secs(3);
/// `stop` lets in-flight requests finish, but not forever.
const GRACEFUL_STOP_LIMIT: Duration = Duration::from_secs(30);

/// A started node. Dropping it leaves the node running; call [`RunningNode::stop`].
pub struct RunningNode {
    pub node_id: NodeId,
    pub addr: SocketAddr,
    cancel: CancellationToken,
    http_task: JoinHandle<()>,
    /// Heartbeat, resume and (when ffmpeg works) the encoder and the compute worker.
    workers: Runner,
}

impl RunningNode {
    /// Graceful: stop accepting, let in-flight requests finish, stop heartbeats.
    pub async fn stop(self) {
        self.cancel.cancel();
        // A distribution cut short here resumes at the next start: its marker stays.
        self.workers.stop().await;
        let http_abort = self.http_task.abort_handle();
        if tokio::time::timeout(GRACEFUL_STOP_LIMIT, self.http_task)
            .await
            .is_err()
        {
            tracing::warn!(node_id = %self.node_id, "in-flight requests did not finish in time; aborting them");
            http_abort.abort();
        }
    }

    /// Like a crash: every task ends at once.
    pub fn abort(self) {
        self.cancel.cancel();
        self.workers.abort();
        self.http_task.abort();
    }
}

/// Serves the node on `listener` and registers it with the server (retrying in the
/// background while the server is unreachable; uploads answer 503 until then).
pub async fn start(
    config: NodeConfig,
    listener: tokio::net::TcpListener,
) -> Result<RunningNode, NodeError> {
    if config.heartbeat_interval.is_zero() {
        return Err(NodeError::Config(
            "heartbeat_interval must be greater than zero".into(),
        ));
    }
    let data_dir_error = |source| NodeError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    };
    tokio::fs::create_dir_all(&config.data_dir)
        .await
        .map_err(data_dir_error)?;
    let node_id = match config.node_id.clone() {
        Some(id) => id,
        None => load_or_create_node_id(&config.data_dir).await?,
    };
    let store = BlobStore::open(config.data_dir.clone())
        .await
        .map_err(data_dir_error)?;
    let addr = listener.local_addr().map_err(NodeError::Listener)?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();

    let mut state = NodeState::new(node_id.clone(), public_url, store, &config)?;
    let encoder = jobs::find_tools(config.encode, config.media_tools()).await;
    if encoder.is_some() {
        state.capabilities.push(jobs::ENCODE_CAPABILITY.to_string());
    }
    // Models load before registration: the node advertises what it can run.
    #[cfg(feature = "ai")]
    let ai = load_ai(&config, encoder.clone()).await;
    #[cfg(feature = "ai")]
    if let Some((_, models)) = &ai {
        state
            .capabilities
            .extend(models.capabilities().iter().map(ToString::to_string));
    }
    #[cfg(not(feature = "ai"))]
    if config.ai && config.models_dir.is_some() {
        tracing::info!(
            "models_dir is set but this node was built without the ai feature: it runs no AI"
        );
    }
    let state = Arc::new(state);

    let cancel = CancellationToken::new();
    #[cfg(feature = "ai")]
    let compute = ai.map(|(tools, models)| {
        Arc::new(compute::Compute::new(
            state.clone(),
            tools,
            models,
            cancel.clone(),
        ))
    });
    let registry = Registry::new();
    let router = http::router(state.clone()).layer(axum::Extension(registry.clone()));
    let shutdown = cancel.clone().cancelled_owned();
    let http_task = tokio::spawn(async move {
        http::serve(listener, router, shutdown).await;
    });

    let registered =
        match tokio::time::timeout(FIRST_REGISTRATION_WAIT, control::register(&state)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) if control::is_refusal(&e) => {
                cancel.cancel();
                http_task.abort();
                return Err(NodeError::RegistrationRefused {
                    server_url: state.server.base_url().to_string(),
                    reason: e.to_string(),
                });
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "registration failed; retrying in the background");
                false
            }
            Err(_) => {
                tracing::warn!(
                    "server did not answer registration in time; retrying in the background"
                );
                false
            }
        };

    let mut workers = Runner::new(registry);
    workers.spawn(
        control::Heartbeat::new(state.clone(), config.heartbeat_interval, registered),
        0.0,
    );
    workers.spawn(resume::Resume::new(state.clone()), 0.0);
    if let Some(tools) = encoder {
        let encoder = jobs::Encoder::new(state.clone(), tools, cancel.clone());
        #[cfg(feature = "ai")]
        let encoder = match &compute {
            Some(compute) => encoder.with_compute(compute.clone()),
            None => encoder,
        };
        workers.spawn(encoder, 0.0);
    }
    #[cfg(feature = "ai")]
    if let Some(compute) = compute {
        workers.spawn(compute::ComputeWorker::new(compute), 0.0);
    }
    tracing::info!(node_id = %node_id, %addr, public_url = %state.public_url, "node started");

    Ok(RunningNode {
        node_id,
        addr,
        cancel,
        http_task,
        workers,
    })
}

/// The ffmpeg tools and the models a compute node runs with, when `ai` is on,
/// ffmpeg works and at least one model loaded; the reason is logged otherwise.
#[cfg(feature = "ai")]
async fn load_ai(
    config: &NodeConfig,
    encoder: Option<zib_media::Tools>,
) -> Option<(zib_media::Tools, Arc<zib_ai::Models>)> {
    if !config.ai {
        tracing::info!("AI is switched off (ai = false)");
        return None;
    }
    let tools = match encoder {
        Some(tools) => tools,
        None => {
            let tools = config.media_tools();
            if let Err(e) = tools.check().await {
                tracing::warn!(error = %e, "ffmpeg/ffprobe unusable: this node runs no AI");
                return None;
            }
            tools
        }
    };
    let dir = config
        .models_dir
        .clone()
        .map(zib_ai::ModelsDir::new)
        .unwrap_or_else(zib_ai::ModelsDir::from_env);
    let models = compute::load_models(dir).await?;
    Some((tools, models))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct NodeIdentity {
    node_id: NodeId,
}

async fn load_or_create_node_id(data_dir: &Path) -> Result<NodeId, NodeError> {
    let path = data_dir.join("node.json");
    let file_error = |reason: String| NodeError::NodeIdFile {
        path: path.display().to_string(),
        reason,
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => serde_json::from_slice::<NodeIdentity>(&bytes)
            .map(|identity| identity.node_id)
            .map_err(|e| file_error(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let node_id = NodeId::new_random();
            let json = serde_json::to_vec_pretty(&NodeIdentity {
                node_id: node_id.clone(),
            })
            .map_err(|e| file_error(e.to_string()))?;
            // Write, fsync, rename, fsync the directory: a crash never leaves a
            // half-written identity, nor forgets one already announced.
            let tmp = data_dir.join("node.json.tmp");
            let dir = data_dir.to_path_buf();
            let final_path = path.clone();
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&json)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &final_path)?;
                std::fs::File::open(&dir)?.sync_all()
            })
            .await
            .map_err(|e| file_error(e.to_string()))?
            .map_err(|e| file_error(e.to_string()))?;
            Ok(node_id)
        }
        Err(e) => Err(file_error(e.to_string())),
    }
}

pub(crate) fn unix_now() -> u64 {
    zib_util::time::now_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn node_id_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_node_id(dir.path()).await.unwrap();
        let second = load_or_create_node_id(dir.path()).await.unwrap();
        assert_eq!(first, second);
    }

    #[tokio::test]
    async fn a_corrupt_identity_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        tokio::fs::write(dir.path().join("node.json"), b"{\"node_id\":\"nope\"}")
            .await
            .unwrap();
        let err = load_or_create_node_id(dir.path()).await.unwrap_err();
        assert!(err.to_string().contains("node.json"), "{err}");
    }
}
