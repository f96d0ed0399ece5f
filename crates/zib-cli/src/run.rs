//! `zib server`, `zib node`, `zib tenant create`.

use std::path::Path;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use zib_crypto::MasterKey;
use zib_node::NodeConfig;
use zib_server::config::ServerSettings;
use zib_server::ServerConfig;

use crate::{config, dev_dir};

pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: escape codes in a log file or journal are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn server(path: Option<&Path>) -> Result<()> {
    let settings: ServerSettings = config::load(path)?;
    let listener = TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let config = ServerConfig::new(settings, listener.local_addr()?)?;
    let server = zib_server::start(config, listener).await?;
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("shutting down");
    server.stop().await;
    Ok(())
}

pub async fn node(path: Option<&Path>) -> Result<()> {
    let config = config::load::<NodeConfig>(path)?.checked()?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
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
            dev_dir::database_path(dir),
            dev_dir::stored_master_key(dir)?,
        ),
        None => {
            let settings = config::load::<ServerSettings>(config_path)?;
            let key = MasterKey::from_hex(settings.master_key_hex.as_deref().context(
                "master_key is required (ZIB_MASTER_KEY): it seals the secret for S3 signatures",
            )?)
            .context("master_key must be 64 hex characters")?;
            (settings.database_path, key)
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
