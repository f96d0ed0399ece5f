//! Node configuration: one field per key of `zib node`'s TOML file (each also
//! `ZIB_<KEY>`), with its default and a doc line.
//!
//! Adding a key: a field here with a `///` line, its default in `Default`, a row in
//! `docs/operations.md` (a zib-cli test checks the table against this struct).
#![deny(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zib_proto::NodeId;

use crate::NodeError;

/// Every `zib node` key. [`crate::start`] runs a node with it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Address `zib node` listens on ([`crate::start`] is handed the bound listener).
    pub listen: String,
    /// URL the server, peers and browsers reach this node at; `None`:
    /// `http://{bound local addr}`.
    pub public_url: Option<String>,
    /// The server (or load balancer), e.g. `http://127.0.0.1:7070`.
    pub server_url: String,
    /// Bearer for `/v1/node/*` on the server and for shard reads/deletes on nodes
    /// (required; the server's value).
    pub cluster_token: String,
    /// Where blobs live, plus `node.json` with the node id.
    pub data_dir: PathBuf,
    /// `None`: read from `{data_dir}/node.json`, or generate one and persist it there.
    pub node_id: Option<NodeId>,
    /// Space offered; free space is this minus what is stored.
    pub capacity_bytes: u64,
    /// Memory for segments being erasure-coded and pushed, shared by all the uploads
    /// this node distributes at once (each segment takes `(k + m) * shard_size`); past
    /// it, uploads are read more slowly rather than memory growing.
    pub upload_buffer_bytes: u64,
    /// Failure domain; placement spreads a segment's shards across zones.
    pub zone: Option<String>,
    /// How often the node reports and collects commands.
    #[serde(
        rename = "heartbeat_interval_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub heartbeat_interval: Duration,
    /// Run video encoding jobs when ffmpeg and ffprobe work here (the node then
    /// advertises `encode`); `false` never does.
    pub encode: bool,
    /// The ffmpeg binary; `None`: `ffmpeg` on `PATH`.
    pub ffmpeg: Option<PathBuf>,
    /// The ffprobe binary; `None`: `ffprobe` on `PATH`.
    pub ffprobe: Option<PathBuf>,
    /// Load the AI models found in `models_dir` at start-up and run the transcription
    /// and vision jobs they allow; `false` loads nothing (and a node built without
    /// the `ai` feature never does).
    pub ai: bool,
    /// Where the AI models live (`scripts/install-models.sh`); `None`:
    /// `$ZIB_MODELS_DIR`, else `~/.cache/zib/models`.
    pub models_dir: Option<PathBuf>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7080".into(),
            public_url: None,
            server_url: "http://127.0.0.1:7070".into(),
            cluster_token: String::new(),
            data_dir: PathBuf::from("zib-node-data"),
            node_id: None,
            capacity_bytes: 100 * 1024 * 1024 * 1024,
            upload_buffer_bytes: 48 * 1024 * 1024,
            zone: None,
            heartbeat_interval: Duration::from_secs(5),
            encode: true,
            ffmpeg: None,
            ffprobe: None,
            ai: true,
            models_dir: None,
        }
    }
}

impl NodeConfig {
    /// The ffmpeg tools this node uses: the configured paths, else what
    /// [`zib_media::Tools::from_env`] finds.
    pub fn media_tools(&self) -> zib_media::Tools {
        let mut tools = zib_media::Tools::from_env();
        if let Some(ffmpeg) = &self.ffmpeg {
            tools.ffmpeg = ffmpeg.clone();
        }
        if let Some(ffprobe) = &self.ffprobe {
            tools.ffprobe = ffprobe.clone();
        }
        tools
    }

    /// What a configuration file means beyond its values: a cluster token is
    /// required, a trailing `/` of `server_url` is dropped and a heartbeat interval
    /// under a second is one second.
    pub fn checked(mut self) -> Result<Self, NodeError> {
        if self.cluster_token.is_empty() {
            return Err(NodeError::Config(
                "cluster_token is required (ZIB_CLUSTER_TOKEN)".into(),
            ));
        }
        self.server_url = self.server_url.trim_end_matches('/').to_string();
        self.heartbeat_interval = self.heartbeat_interval.max(Duration::from_secs(1));
        Ok(self)
    }
}
