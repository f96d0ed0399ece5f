//! `zib dev`: a server on SQLite plus N nodes in one process, under one directory,
//! with working credentials. Restarting on the same directory keeps every file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use zib_crypto::MasterKey;
use zib_node::NodeConfig;
use zib_proto::NodeId;
use zib_server::config::ServerSettings;
use zib_server::ServerConfig;

use crate::dev_dir::{database_path, load_or_create_secrets, write_private};

/// Each in-process node's `upload_buffer_bytes` (a real node's default is 48 MiB).
const DEV_UPLOAD_BUFFER_BYTES: u64 = 24 * 1024 * 1024;

#[derive(clap::Args)]
pub struct DevArgs {
    /// Where the metadata, the nodes' shards and the credentials live.
    #[arg(long, default_value = "zib-dev-data")]
    data_dir: PathBuf,
    /// Address of the API and CDN (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// Storage nodes to run (erasure 4+2 from 6 nodes up).
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Have the CDN fetch shards from the nodes over HTTP, as in a cluster of
    /// separate hosts, instead of reading the in-process nodes' disks directly.
    #[arg(long)]
    shards_over_http: bool,
    /// How many of the nodes (the first ones) load the AI models and run
    /// transcription and vision jobs; the rest advertise no AI. Only in a build
    /// with the `ai` feature.
    #[arg(long, env = "ZIB_AI_NODES", default_value_t = 1)]
    ai_nodes: usize,
    /// Where the AI models live; default `$ZIB_MODELS_DIR`, else
    /// `~/.cache/zib/models` (scripts/install-models.sh fills it).
    #[arg(long, env = "ZIB_MODELS_DIR")]
    models_dir: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Credentials {
    access_key: String,
    secret_key: String,
    api_url: String,
    cdn_url: String,
}

/// Node ids already under `nodes/`, then fresh ones up to `count`.
fn node_ids(nodes_dir: &Path, count: usize) -> Result<Vec<NodeId>> {
    let mut ids = Vec::new();
    if nodes_dir.exists() {
        for entry in std::fs::read_dir(nodes_dir)
            .with_context(|| format!("listing {}", nodes_dir.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", nodes_dir.display()))?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<NodeId>().ok())
            {
                ids.push(id);
            }
        }
    }
    ids.sort();
    ids.truncate(count);
    while ids.len() < count {
        ids.push(NodeId::new_random());
    }
    Ok(ids)
}

/// 4+2 when there are enough nodes; smaller codes on tiny dev clusters.
fn dev_erasure(nodes: usize) -> (u8, u8) {
    if nodes >= 6 {
        (4, 2)
    } else {
        let parity: u8 = 1;
        (
            nodes.saturating_sub(parity as usize).clamp(1, 4) as u8,
            parity,
        )
    }
}

pub async fn run(args: DevArgs) -> Result<()> {
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let secrets = load_or_create_secrets(dir)?;

    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let api_url = format!("http://{addr}");
    let (data_shards, parity_shards) = dev_erasure(args.nodes);
    // Webhook and S3 timings honour `ZIB_WEBHOOK_*` and `ZIB_S3_*` (tests shorten them).
    let env = crate::config::load::<ServerSettings>(None)?;
    let settings = ServerSettings {
        listen: args.listen.clone(),
        public_url_setting: Some(api_url.clone()),
        cdn_url: Some(api_url.clone()),
        database_path: database_path(dir),
        master_key_hex: Some(secrets.master_key.clone()),
        capability_key: Some(secrets.capability_key.clone()),
        cluster_token: secrets.cluster_token.clone(),
        data_shards,
        parity_shards,
        heartbeat_interval: Duration::from_secs(1),
        node_offline_after: Duration::from_secs(6),
        verify_interval: Duration::from_secs(1),
        // Every shard, data and parity, challenged about once a minute: rot and
        // lost shards show up in minutes, not hours.
        audit_interval: Duration::from_secs(60),
        repair_after: Duration::from_secs(30),
        // Short enough to watch an abandoned upload expire and its bytes go within
        // minutes (~6: expiry, then grace, then the next sweep); each can be set
        // with its usual `ZIB_*` variable.
        upload_expiry: env_or(
            &env,
            "UPLOAD_EXPIRY_SECS",
            |s| s.upload_expiry,
            DEV_UPLOAD_EXPIRY,
        ),
        collect_interval: env_or(
            &env,
            "COLLECT_INTERVAL_SECS",
            |s| s.collect_interval,
            DEV_COLLECT_INTERVAL,
        ),
        garbage_grace: env_or(
            &env,
            "GARBAGE_GRACE_SECS",
            |s| s.garbage_grace,
            DEV_GARBAGE_GRACE,
        ),
        part_size: env.part_size,
        shard_size: env.shard_size,
        multipart_threshold: env.multipart_threshold,
        inline_threshold: env.inline_threshold,
        // Tiny dev clusters cannot have three peers besides the originator.
        safe_min_peers: 3.min(args.nodes.saturating_sub(1) as u32),
        // Receivers in development run on this machine.
        allow_private_webhook_targets: true,
        webhook_retry_schedule: env.webhook_retry_schedule,
        webhook_timeout: env.webhook_timeout,
        webhook_poll_interval: env.webhook_poll_interval,
        webhook_secret_overlap: env.webhook_secret_overlap,
        s3_multipart_expiry: env.s3_multipart_expiry,
        s3_complete_wait: env.s3_complete_wait,
        // Encoding leases and retries honour `ZIB_ENCODING_*` (tests shorten them).
        encoding_lease: env.encoding_lease,
        encoding_retry_budget: env.encoding_retry_budget,
        encoding_retry_backoff: env.encoding_retry_backoff,
        encoding_retry_backoff_max: env.encoding_retry_backoff_max,
        encoding_eviction_grace: env.encoding_eviction_grace,
        ..ServerSettings::default()
    };
    let nodes_dir = dir.join("nodes");
    let node_ids = node_ids(&nodes_dir, args.nodes)?;
    let mut config = ServerConfig::new(settings, addr)?;
    if !args.shards_over_http {
        config.local_nodes = Arc::new(
            node_ids
                .iter()
                .map(|id| {
                    let node_dir = nodes_dir.join(id.as_str());
                    let blob_path: zib_server::LocalBlobPath =
                        Arc::new(move |blob| zib_node::blob_path(&node_dir, blob));
                    (id.clone(), blob_path)
                })
                .collect(),
        );
    }
    // Every node's port first, and the addresses recorded before anything runs: on a
    // restart the store still holds last run's random ports, and a node resuming an
    // interrupted distribution (or the server) would otherwise call those until each
    // peer re-registered.
    let mut listeners = Vec::new();
    for _ in &node_ids {
        listeners.push(
            TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding a node port")?,
        );
    }
    refresh_node_urls(dir, &node_ids, &listeners).await?;
    let server = zib_server::start(config, listener).await?;

    let mut nodes = Vec::new();
    for (i, (node_id, listener)) in node_ids.into_iter().zip(listeners).enumerate() {
        let data_dir = nodes_dir.join(node_id.as_str());
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let node = zib_node::start(
            NodeConfig {
                node_id: Some(node_id),
                data_dir,
                public_url: None,
                server_url: api_url.clone(),
                cluster_token: secrets.cluster_token.clone(),
                capacity_bytes: 50 * 1024 * 1024 * 1024,
                // Six nodes share one process (and machine): half a real node's
                // budget each, still room for one upload's segments in flight.
                upload_buffer_bytes: DEV_UPLOAD_BUFFER_BYTES,
                zone: None,
                heartbeat_interval: Duration::from_secs(1),
                // Each AI node holds its own copy of the models in memory.
                ai: i < args.ai_nodes,
                models_dir: args.models_dir.clone(),
                ..NodeConfig::default()
            },
            listener,
        )
        .await?;
        nodes.push(node);
    }
    let master_key =
        MasterKey::from_hex(&secrets.master_key).context("secrets.json: master_key")?;
    let credentials = ensure_credentials(dir, &api_url, &master_key).await?;

    eprintln!(
        "\nZiB dev cluster: API and CDN at {api_url}, {} nodes (erasure {data_shards}+{parity_shards}), data in {}\n\
         Credentials: {}\n\n\
         Try it:\n  export ZIB_API_URL={api_url} ZIB_ACCESS_KEY={} ZIB_SECRET_KEY={}\n  \
         echo hello > hello.txt && zib upload --bucket demo --key hello.txt hello.txt\n  \
         zib get <file_id>\n\nCtrl-C stops.",
        nodes.len(),
        dir.display(),
        dir.join("credentials.json").display(),
        credentials.access_key,
        credentials.secret_key,
    );

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("shutting down");
    for node in nodes {
        node.stop().await;
    }
    server.stop().await;
    Ok(())
}

/// Dev defaults: see where they are used.
const DEV_UPLOAD_EXPIRY: Duration = Duration::from_secs(300);
const DEV_GARBAGE_GRACE: Duration = Duration::from_secs(60);
const DEV_COLLECT_INTERVAL: Duration = Duration::from_secs(5);

/// The dev default of a setting, unless `ZIB_{key}` is set.
fn env_or(
    env: &ServerSettings,
    key: &str,
    get: impl Fn(&ServerSettings) -> Duration,
    dev_default: Duration,
) -> Duration {
    if std::env::var_os(format!("ZIB_{key}")).is_some() {
        get(env)
    } else {
        dev_default
    }
}

/// Points the known nodes' rows at this run's ports before the server or any node
/// starts. Their last heartbeat is left as it was: a node is online again only once
/// it heartbeats (or still, if the restart was quicker than `node_offline_after`).
async fn refresh_node_urls(dir: &Path, ids: &[NodeId], listeners: &[TcpListener]) -> Result<()> {
    let db = database_path(dir);
    if !db.exists() {
        return Ok(());
    }
    let store = zib_meta::Store::open_sqlite(&db).await?;
    for (id, listener) in ids.iter().zip(listeners) {
        let url = format!("http://{}", listener.local_addr()?);
        if let Some(mut row) = store.node(id).await? {
            if row.public_url != url {
                tracing::info!(node_id = %id, old = %row.public_url, new = %url, "node address refreshed");
                row.public_url = url;
                store.upsert_node(&row).await?;
            }
        }
    }
    drop(store);
    Ok(())
}

/// The dev tenant's credentials, created on first start and rewritten with the
/// current URL on every start.
async fn ensure_credentials(
    dir: &Path,
    api_url: &str,
    master_key: &MasterKey,
) -> Result<Credentials> {
    let path = dir.join("credentials.json");
    let existing: Option<Credentials> = match std::fs::read_to_string(&path) {
        Ok(text) => Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let (access_key, secret_key) = match existing {
        Some(c) => (c.access_key, c.secret_key),
        None => {
            let store = zib_meta::Store::open_sqlite(&database_path(dir)).await?;
            let (tenant, secret) =
                zib_server::auth::create_tenant_with_s3(&store, master_key, "dev").await?;
            (tenant.access_key, secret)
        }
    };
    let credentials = Credentials {
        access_key,
        secret_key,
        api_url: api_url.to_string(),
        cdn_url: format!("{api_url}/objects"),
    };
    // Written last and atomically: tests wait for this file as the "ready" signal.
    let tmp = dir.join("credentials.json.tmp");
    write_private(&tmp, &serde_json::to_string_pretty(&credentials)?)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(credentials)
}
