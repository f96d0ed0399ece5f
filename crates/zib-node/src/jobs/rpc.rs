//! The node's calls of the encoding-job protocol (`zib_proto::jobs`), on the same
//! client (cluster token, JSON) as every other node RPC.

use reqwest::StatusCode;
use zib_proto::jobs::{
    ArtifactKind, ArtifactStored, ClaimRequest, ClaimedJob, JobDone, JobFailure, JobProbed,
    LeaseRenewal, LeaseStatus, RenditionDone, ReplicasStored, SegmentStored, SegmentTargets,
    ThumbnailsRegistered, LEASE_HEADER,
};
use zib_proto::NodeId;

use crate::rpc::{RpcError, ServerClient};

/// The server's word that the lease lapsed or the job was cancelled.
pub fn is_gone(e: &RpcError) -> bool {
    e.status() == Some(StatusCode::GONE)
}

impl ServerClient {
    /// `None`: no job is waiting (`204`).
    pub async fn claim_job(&self, node_id: &NodeId) -> Result<Option<ClaimedJob>, RpcError> {
        self.post(
            "/v1/node/jobs/claim",
            &ClaimRequest {
                node_id: node_id.clone(),
            },
        )
        .await
    }

    pub async fn renew_lease(
        &self,
        job: &str,
        req: &LeaseRenewal,
    ) -> Result<LeaseStatus, RpcError> {
        self.post(&format!("/v1/node/jobs/{job}/lease"), req).await
    }

    pub async fn job_probed(&self, job: &str, req: &JobProbed) -> Result<(), RpcError> {
        self.ack(&format!("/v1/node/jobs/{job}/probed"), req).await
    }

    pub async fn segment_stored(
        &self,
        job: &str,
        req: &SegmentStored,
    ) -> Result<SegmentTargets, RpcError> {
        self.post(&format!("/v1/node/jobs/{job}/segments"), req)
            .await
    }

    pub async fn replicas_stored(&self, job: &str, req: &ReplicasStored) -> Result<(), RpcError> {
        self.ack(&format!("/v1/node/jobs/{job}/replicas"), req)
            .await
    }

    pub async fn rendition_published(
        &self,
        job: &str,
        rendition: &str,
        req: &RenditionDone,
    ) -> Result<(), RpcError> {
        self.ack(
            &format!("/v1/node/jobs/{job}/renditions/{rendition}/published"),
            req,
        )
        .await
    }

    /// Hands one artefact's plaintext to the server, which seals and stores it as a
    /// file of the tenant; the answer names that file and its CDN URL.
    pub async fn upload_artifact(
        &self,
        job: &str,
        lease: &str,
        kind: ArtifactKind,
        seq: u32,
        bytes: Vec<u8>,
    ) -> Result<ArtifactStored, RpcError> {
        self.post_bytes(
            &format!("/v1/node/jobs/{job}/artifacts/{}?seq={seq}", kind.as_str()),
            &[(LEASE_HEADER, lease)],
            kind.content_type(),
            bytes,
        )
        .await
    }

    pub async fn thumbnails_registered(
        &self,
        job: &str,
        req: &ThumbnailsRegistered,
    ) -> Result<(), RpcError> {
        self.ack(&format!("/v1/node/jobs/{job}/thumbnails"), req)
            .await
    }

    pub async fn job_done(&self, job: &str, req: &JobDone) -> Result<(), RpcError> {
        self.ack(&format!("/v1/node/jobs/{job}/done"), req).await
    }

    pub async fn job_failed(&self, job: &str, req: &JobFailure) -> Result<(), RpcError> {
        self.ack(&format!("/v1/node/jobs/{job}/failed"), req).await
    }

    /// A call answered `204` (or any body, ignored).
    async fn ack<B: serde::Serialize>(&self, path: &str, body: &B) -> Result<(), RpcError> {
        let _: serde_json::Value = self.post(path, body).await?;
        Ok(())
    }
}
