//! `GET /v1/upload/{blob_id}/parts?token=T`: what this node already holds of an
//! upload, so a client that crashed or lost its connection resumes with only the
//! missing parts.
//!
//! Authorised by what only the registration's holder has: the upload's complete
//! token (multipart) or its upload token (single). Listing spends nothing, so the
//! same token still completes the upload afterwards; a spent or expired token lists
//! nothing (the registration is over).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::Json;
use serde::Deserialize;
use zib_proto::api::{PartStored, UploadParts};
use zib_proto::error_codes as codes;
use zib_proto::node_rpc::{CapabilityClaims, CapabilityOp};

use crate::error::NodeApiError;
use crate::intake::parse_blob;
use crate::state::NodeState;

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

pub async fn list_parts(
    State(state): State<Arc<NodeState>>,
    UrlPath(blob): UrlPath<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Json<UploadParts>, NodeApiError> {
    let blob = parse_blob(&blob)?;
    let token = query.as_ref().ok().and_then(|q| q.0.token.as_deref());
    let claims = holder_claims(&state, token, blob)?;

    let upload_id = blob.to_string();
    // A single upload erasure-coded as it arrived leaves only its marker.
    if state.store.exists(blob).await || state.store.is_distributed(blob).await {
        let phase = if state.store.is_distributed(blob).await {
            "distributed"
        } else {
            "stored"
        };
        return Ok(Json(UploadParts {
            upload_id,
            state: phase.to_string(),
            parts: Vec::new(),
        }));
    }
    // A spent token with nothing stored: the upload was completed and then deleted
    // (or refused); there is nothing left to resume.
    if state.store.token_used(&claims.jti).await {
        return Err(NodeApiError::conflict(
            codes::TOKEN_USED,
            "upload token already used",
        ));
    }
    let mut parts = Vec::new();
    if let Some(count) = claims.parts {
        for part in 1..=count {
            // A marker is written only once its part's bytes are durable (kept here,
            // or coded onto their holders).
            if let Some(held) = state.store.part_held(blob, part).await {
                parts.push(PartStored {
                    part_number: part,
                    size: held.size,
                    status: "stored".to_string(),
                });
            }
        }
    }
    Ok(Json(UploadParts {
        upload_id,
        state: "receiving".to_string(),
        parts,
    }))
}

/// The complete token of a multipart upload, or the token of a single upload.
fn holder_claims(
    state: &NodeState,
    token: Option<&str>,
    blob: zib_proto::BlobId,
) -> Result<CapabilityClaims, NodeApiError> {
    match state.verify_token(token, CapabilityOp::Complete, blob) {
        Ok(claims) => Ok(claims),
        Err(e) if e.code == codes::WRONG_OPERATION => {
            state
                .verify_token(token, CapabilityOp::Upload, blob)
                .map_err(|_| {
                    NodeApiError::forbidden(
                        codes::WRONG_OPERATION,
                        "listing an upload's parts needs its complete token (multipart) or its upload token (single)",
                    )
                })
        }
        Err(e) => Err(e),
    }
}
