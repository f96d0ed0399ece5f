//! Operator verbs over the server's admin endpoints, authenticated with the cluster
//! token: `zib nodes` and `zib drain` (docs/operations.md, "Draining a node").

use anyhow::{bail, Context, Result};
use clap::Args;
use zib_proto::admin::{NodeList, NodeStatus};

/// The server to ask, as a node is configured.
#[derive(Args)]
pub struct AdminArgs {
    /// The server's base URL.
    #[arg(long, env = "ZIB_SERVER_URL", default_value = "http://127.0.0.1:7070")]
    server: String,
    /// The cluster token (the secret nodes share with the server).
    #[arg(long, env = "ZIB_CLUSTER_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Args)]
pub struct DrainArgs {
    /// The node to drain (`ZB-XXXXXX`, as `zib nodes` lists it).
    node_id: String,
    /// End the drain: the node takes new data again.
    #[arg(long)]
    end: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

impl AdminArgs {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.trim_end_matches('/'))
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("asking {}", self.server))?;
        let status = response.status();
        let body = response.text().await.context("reading the answer")?;
        if !status.is_success() {
            bail!("the server answered {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("reading the answer: {body}"))
    }
}

/// `zib nodes`: one JSON line per node.
pub async fn nodes(args: AdminArgs) -> Result<()> {
    let http = reqwest::Client::new();
    let list: NodeList = args.send(http.get(args.url("/v1/admin/nodes"))).await?;
    for node in list.nodes {
        println!("{}", serde_json::to_string(&node)?);
    }
    Ok(())
}

/// `zib drain NODE_ID [--end]`: prints the node's status after the change.
pub async fn drain(args: DrainArgs) -> Result<()> {
    let http = reqwest::Client::new();
    let url = args
        .admin
        .url(&format!("/v1/admin/nodes/{}/drain", args.node_id));
    let request = if args.end {
        http.delete(url)
    } else {
        http.post(url)
    };
    let node: NodeStatus = args.admin.send(request).await?;
    println!("{}", serde_json::to_string(&node)?);
    if !args.end {
        eprintln!(
            "Draining: its shards and segment copies move to other nodes; `zib nodes` \
             shows it `drained` once it holds none, and it may then be stopped."
        );
    }
    Ok(())
}
