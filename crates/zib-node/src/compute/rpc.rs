//! The node's calls of the compute-job protocol (`zib_proto::compute`), on the same
//! client (cluster token, JSON) as every other node RPC.

use zib_proto::compute::{
    ClaimedComputeJob, ComputeClaimRequest, ComputeDone, ComputeLeaseRenewal, ComputeOutputKind,
};
use zib_proto::jobs::{ArtifactStored, JobFailure, LeaseStatus, LEASE_HEADER};
use zib_proto::NodeId;

use crate::rpc::{RpcError, ServerClient};

impl ServerClient {
    /// `None`: no compute job is waiting (`204`). `after_encoding_job` asks only for
    /// the AI runs of the encoding job this node just finished.
    pub async fn claim_compute(
        &self,
        node_id: &NodeId,
        after_encoding_job: Option<&str>,
    ) -> Result<Option<ClaimedComputeJob>, RpcError> {
        self.post(
            "/v1/node/compute/claim",
            &ComputeClaimRequest {
                node_id: node_id.clone(),
                after_encoding_job: after_encoding_job.map(str::to_string),
            },
        )
        .await
    }

    pub async fn renew_compute_lease(
        &self,
        job: &str,
        req: &ComputeLeaseRenewal,
    ) -> Result<LeaseStatus, RpcError> {
        self.post(&format!("/v1/node/compute/{job}/lease"), req)
            .await
    }

    /// Hands one output's plaintext to the server, which seals and stores it as a
    /// derived file of the source and records it on the job.
    pub async fn compute_output(
        &self,
        job: &str,
        lease: &str,
        kind: ComputeOutputKind,
        bytes: Vec<u8>,
    ) -> Result<ArtifactStored, RpcError> {
        self.post_bytes(
            &format!("/v1/node/compute/{job}/outputs/{}", kind.as_str()),
            &[(LEASE_HEADER, lease)],
            kind.content_type(),
            bytes,
        )
        .await
    }

    pub async fn compute_done(&self, job: &str, req: &ComputeDone) -> Result<(), RpcError> {
        let _: serde_json::Value = self
            .post(&format!("/v1/node/compute/{job}/done"), req)
            .await?;
        Ok(())
    }

    pub async fn compute_failed(&self, job: &str, req: &JobFailure) -> Result<(), RpcError> {
        let _: serde_json::Value = self
            .post(&format!("/v1/node/compute/{job}/failed"), req)
            .await?;
        Ok(())
    }
}
