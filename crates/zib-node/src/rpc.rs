//! The node's side of the server RPC (`/v1/node/...`, Bearer cluster token, JSON).

use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zib_proto::api::ErrorBody;
use zib_proto::node_rpc::{
    DistributedRequest, DistributionPlan, HeartbeatRequest, HeartbeatResponse, RegisterRequest,
    RegisterResponse, UploadReceivedRequest,
};
use zib_proto::{BlobId, NodeId};

/// Generous: `received` makes the server place every shard of a file.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("server at {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("server answered {status} to {path}: {message}")]
    Status {
        path: String,
        status: StatusCode,
        message: String,
        /// The server's own error body, when it sent one: some answers (a superseded
        /// upload) are passed on to the uploading client word for word.
        body: Option<Box<ErrorBody>>,
    },
    #[error("server's answer to {path} is not what this node expects: {reason}")]
    BadAnswer { path: String, reason: String },
}

impl RpcError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            RpcError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn server_body(&self) -> Option<&ErrorBody> {
        match self {
            RpcError::Status { body, .. } => body.as_deref(),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct ServerClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ServerClient {
    pub fn new(server_url: &str, token: String) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(RPC_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(Self {
            base: server_url.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, RpcError> {
        self.post("/v1/node/register", req).await
    }

    pub async fn heartbeat(&self, req: &HeartbeatRequest) -> Result<HeartbeatResponse, RpcError> {
        self.post("/v1/node/heartbeat", req).await
    }

    pub async fn upload_received(
        &self,
        upload: BlobId,
        req: &UploadReceivedRequest,
    ) -> Result<DistributionPlan, RpcError> {
        self.post(&format!("/v1/node/uploads/{upload}/received"), req)
            .await
    }

    pub async fn upload_distributed(
        &self,
        upload: BlobId,
        req: &DistributedRequest,
    ) -> Result<(), RpcError> {
        let _: serde_json::Value = self
            .post(&format!("/v1/node/uploads/{upload}/distributed"), req)
            .await?;
        Ok(())
    }

    /// A small upload's whole envelope, which the server keeps itself (its plan said
    /// `inline`).
    pub async fn upload_inline(
        &self,
        upload: BlobId,
        node_id: &NodeId,
        envelope: Vec<u8>,
    ) -> Result<(), RpcError> {
        let _: serde_json::Value = self
            .post_bytes(
                &format!("/v1/node/uploads/{upload}/inline?node_id={node_id}"),
                &[],
                "application/octet-stream",
                envelope,
            )
            .await?;
        Ok(())
    }

    /// The cluster token (the encoder's source reads carry it too).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `POST {server}{path}` with `body` as JSON; an empty answer (`204`) reads as
    /// JSON `null` (so `()` or `None`).
    pub(crate) async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, RpcError> {
        let request = self.http.post(format!("{}{}", self.base, path)).json(body);
        self.send(path, request).await
    }

    /// `POST {server}{path}` with raw bytes of `content_type` and extra `headers`
    /// (an encoding job's artefact); the answer is read like [`Self::post`]'s.
    pub(crate) async fn post_bytes<R: DeserializeOwned>(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<R, RpcError> {
        let mut request = self
            .http
            .post(format!("{}{}", self.base, path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(path, request).await
    }

    /// Sends one request with the cluster token and reads the answer: a non-2xx is
    /// [`RpcError::Status`] (with the server's error body when it sent one).
    async fn send<R: DeserializeOwned>(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<R, RpcError> {
        // Sending and reading the answer fail the same way: the server was not heard.
        let unreachable = |source| RpcError::Unreachable {
            url: self.base.clone(),
            source,
        };
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let body = serde_json::from_slice::<ErrorBody>(&bytes)
                .ok()
                .map(Box::new);
            let message = match &body {
                Some(body) => format!("{} ({})", body.error, body.code),
                None => String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            };
            return Err(RpcError::Status {
                path: path.to_string(),
                status,
                message,
                body,
            });
        }
        // Some acknowledgements come back empty; treat that as JSON null.
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|e| RpcError::BadAnswer {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }
}
