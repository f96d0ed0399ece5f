//! `zib server`, `zib node`, `zib keygen`, `zib tenant create`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use zib_crypto::{CapabilitySigner, MasterKey};
use zib_node::NodeConfig;
use zib_proto::{ErasureParams, NodeId};
use zib_server::ServerConfig;

use crate::config::{self, NodeFileConfig, ServerFileConfig};

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

pub fn keygen() {
    println!("master_key = \"{}\"", MasterKey::generate().to_hex());
    println!(
        "capability_key = \"{}\"",
        CapabilitySigner::generate().seed_hex()
    );
    println!("cluster_token = \"{}\"", random_token());
}

/// Turns the file/env configuration into the server's, checking the secrets.
pub fn server_config(file: &ServerFileConfig, bound: std::net::SocketAddr) -> Result<ServerConfig> {
    let master_key = MasterKey::from_hex(
        file.master_key
            .as_deref()
            .context("master_key is required (ZIB_MASTER_KEY); `zib keygen` prints one")?,
    )
    .context("master_key must be 64 hex characters")?;
    let signer = CapabilitySigner::from_seed_hex(
        file.capability_key
            .as_deref()
            .context("capability_key is required (ZIB_CAPABILITY_KEY); `zib keygen` prints one")?,
    )
    .map_err(|e| anyhow::anyhow!("capability_key: {e}"))?;
    let cluster_token = file
        .cluster_token
        .clone()
        .filter(|t| t.len() >= 16)
        .context("cluster_token is required, at least 16 characters (ZIB_CLUSTER_TOKEN)")?;
    let public_url = file
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let mut c = ServerConfig::with_secrets(
        file.database.clone(),
        public_url.clone(),
        master_key,
        signer,
        cluster_token,
    );
    c.cdn_base_url = file.cdn_url.clone().unwrap_or(public_url);
    c.erasure = ErasureParams {
        data_shards: file.data_shards,
        parity_shards: file.parity_shards,
        shard_size: file.shard_size,
    };
    zib_erasure::Codec::new(c.erasure).context("invalid erasure parameters")?;
    anyhow::ensure!(
        (1..=zib_crypto::envelope::MAX_CHUNK_SIZE).contains(&file.chunk_size),
        "chunk_size must be between 1 and {} bytes",
        zib_crypto::envelope::MAX_CHUNK_SIZE
    );
    anyhow::ensure!(
        file.part_size >= u64::from(file.chunk_size),
        "part_size must be at least one chunk ({} bytes)",
        file.chunk_size
    );
    c.chunk_size = file.chunk_size;
    c.multipart_threshold = file.multipart_threshold;
    c.part_size = file.part_size;
    c.max_file_size = file.max_file_size;
    c.upload_expiry = Duration::from_secs(file.upload_expiry_secs);
    c.node_offline_after = Duration::from_secs(file.node_offline_after_secs);
    c.heartbeat_interval = Duration::from_secs(file.heartbeat_interval_secs);
    c.shard_fetch_timeout = Duration::from_secs(file.shard_fetch_timeout_secs);
    c.repair_after = Duration::from_secs(file.repair_after_secs);
    c.repair_pace = file.repair_pace;
    c.verify_interval = Duration::from_secs(file.verify_interval_secs.max(1));
    c.audit_interval = Duration::from_secs(file.audit_interval_secs.max(1));
    c.safe_min_peers = file.safe_min_peers;
    c.garbage_grace = Duration::from_secs(file.garbage_grace_secs);
    c.collect_interval = Duration::from_secs(file.collect_interval_secs.max(1));
    c.webhook_retry_schedule = config::parse_retry_schedule(&file.webhook_retry_schedule)?;
    c.webhook_timeout = Duration::from_secs(file.webhook_timeout_secs.max(1));
    c.webhook_poll_interval = Duration::from_millis(file.webhook_poll_interval_ms.max(10));
    c.webhook_secret_overlap = Duration::from_secs(file.webhook_secret_overlap_secs);
    anyhow::ensure!(
        file.webhook_retention_days >= 1,
        "webhook_retention_days must be at least 1"
    );
    c.webhook_retention =
        Duration::from_secs(file.webhook_retention_days.saturating_mul(24 * 3600));
    c.allow_private_webhook_targets = file.allow_private_webhook_targets;
    anyhow::ensure!(
        file.s3_multipart_expiry_days >= 1,
        "s3_multipart_expiry_days must be at least 1"
    );
    c.s3_multipart_expiry =
        Duration::from_secs(file.s3_multipart_expiry_days.saturating_mul(24 * 3600));
    c.s3_complete_wait = Duration::from_millis(file.s3_complete_wait_ms);
    Ok(c)
}

pub async fn server(path: Option<&Path>) -> Result<()> {
    let file: ServerFileConfig = config::load(path)?;
    let listener = TcpListener::bind(&file.listen)
        .await
        .with_context(|| format!("binding {}", file.listen))?;
    let config = server_config(&file, listener.local_addr()?)?;
    let server = zib_server::start(config, listener).await?;
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

pub async fn node(path: Option<&Path>) -> Result<()> {
    let file: NodeFileConfig = config::load(path)?;
    let listener = TcpListener::bind(&file.listen)
        .await
        .with_context(|| format!("binding {}", file.listen))?;
    let node_id = file
        .node_id
        .as_deref()
        .map(str::parse::<NodeId>)
        .transpose()
        .map_err(|e| anyhow::anyhow!("node_id: {e}"))?;
    let config = NodeConfig {
        node_id,
        data_dir: file.data_dir.clone(),
        public_url: file.public_url.clone(),
        server_url: file.server_url.trim_end_matches('/').to_string(),
        cluster_token: file
            .cluster_token
            .clone()
            .context("cluster_token is required (ZIB_CLUSTER_TOKEN)")?,
        capacity_bytes: file.capacity_bytes,
        zone: file.zone.clone(),
        heartbeat_interval: Duration::from_secs(file.heartbeat_interval_secs.max(1)),
    };
    let node = zib_node::start(config, listener).await?;
    tracing::info!(node = %node.node_id, addr = %node.addr, "node running");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    node.stop().await;
    Ok(())
}

pub async fn tenant_create(
    name: &str,
    config_path: Option<&Path>,
    data_dir: Option<&Path>,
) -> Result<()> {
    // The master key seals the secret for S3 signature checks (docs/s3.md).
    let (database, master_key) = match data_dir {
        Some(dir) => (
            crate::dev::database_path(dir),
            crate::dev::stored_master_key(dir)?,
        ),
        None => {
            let file = config::load::<ServerFileConfig>(config_path)?;
            let key = MasterKey::from_hex(file.master_key.as_deref().context(
                "master_key is required (ZIB_MASTER_KEY): it seals the secret for S3 signatures",
            )?)
            .context("master_key must be 64 hex characters")?;
            (file.database, key)
        }
    };
    let store = zib_meta::Store::open_sqlite(&database)
        .await
        .with_context(|| format!("opening metadata store {}", database.display()))?;
    let (tenant, secret) =
        zib_server::auth::create_tenant_with_s3(&store, &master_key, name).await?;
    println!(
        "{}",
        serde_json::json!({
            "tenant_id": tenant.id,
            "name": tenant.name,
            "access_key": tenant.access_key,
            "secret_key": secret,
        })
    );
    eprintln!("The secret key is shown only now: store it safely.");
    Ok(())
}
