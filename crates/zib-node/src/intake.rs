//! Upload intake: single uploads, multipart parts and completion, and shards pushed
//! by peers. Bodies stream to disk and are never held whole in memory; each write is
//! bounded by the size its capability token names.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use zib_proto::api::{PartStored, UploadReceipt};
use zib_proto::error_codes as codes;
use zib_proto::node_rpc::{CapabilityClaims, CapabilityOp, ShardStored};
use zib_proto::BlobId;

use crate::distribute;
use crate::error::NodeApiError;
use crate::incoming::Incoming;
use crate::state::{InFlight, NodeState};
use crate::store::PartHeld;
use crate::streamed::{self, StreamedError};

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

type TokenParam = Result<Query<TokenQuery>, QueryRejection>;

fn token_of(query: &TokenParam) -> Option<&str> {
    query.as_ref().ok().and_then(|q| q.0.token.as_deref())
}

pub fn parse_blob(raw: &str) -> Result<BlobId, NodeApiError> {
    raw.parse().map_err(|_| {
        NodeApiError::bad_request(
            codes::INVALID_BLOB_ID,
            format!("blob id {raw:?} is not a UUID"),
        )
    })
}

/// `PUT /v1/upload/{blob_id}?token=T`: a whole envelope in one body.
pub async fn put_upload(
    State(state): State<Arc<NodeState>>,
    UrlPath(blob): UrlPath<String>,
    query: TokenParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, NodeApiError> {
    let (blob, claims, _guard) = claim(
        &state,
        &blob,
        &query,
        CapabilityOp::Upload,
        "another upload to this blob is in progress",
    )?;
    admit_whole(&state, blob, &claims, &headers).await?;
    let _turn = state.buffers.body().await;
    let mut incoming = Incoming::start(body, claims.size, claims.envelope.as_ref()).await?;
    let (plan, codec, span) = match distribute::plan_now(&state, blob, claims.size, None).await {
        Ok(planned) => planned,
        Err(e) => {
            if let Some(refusal) = refused(&e) {
                incoming.discard_rest().await;
                return Err(refusal);
            }
            // No plan yet (too few nodes online, the server unreachable): the upload
            // is kept whole here and distributed as soon as it can be.
            tracing::info!(%blob, error = %e, "no distribution plan yet; storing the upload whole first");
            return spool_and_distribute(&state, blob, &claims, incoming).await;
        }
    };
    let inline = plan.inline;
    let streamed = if inline {
        streamed::send_whole(&state, blob, claims.size, &mut incoming).await
    } else {
        streamed::distribute_as_received(&state, blob, plan, codec, span, None, &mut incoming).await
    };
    match streamed {
        Ok((shards, hash)) => {
            // What `GET …/parts` answers a client whose answer was lost (until the
            // server has the file safe and clears it). A file the server keeps
            // inline is safe as it answers, and the delete of this record it queues
            // then could reach this node before the record is written (and leave it
            // for good): none is written.
            if !inline {
                if let Err(e) = state.store.mark_distributed(blob).await {
                    tracing::warn!(%blob, error = %e, "could not record that the upload is distributed");
                }
            }
            if let Err(e) = spend_token(&state, &claims).await {
                // The server already refuses a second distribution of this upload.
                tracing::warn!(%blob, error = %e, "upload distributed, but its token could not be marked spent");
            }
            tracing::info!(%blob, size = claims.size, shards, "upload distributed as it arrived");
            let mut response = receipt(blob, claims.size);
            set_etag(&mut response, &hash);
            Ok(response)
        }
        Err(e) => Err(streamed_failure(blob, e, &mut incoming, "the upload").await),
    }
}

/// The answer to a body that could not be coded as it arrived: the body's own
/// error, the server's refusal, or `503` (nothing kept, the token unspent: retry).
async fn streamed_failure(
    blob: BlobId,
    error: StreamedError,
    incoming: &mut Incoming,
    what: &str,
) -> NodeApiError {
    let e = match error {
        StreamedError::Body(e) => return e,
        StreamedError::Distribute(e) => e,
    };
    incoming.discard_rest().await;
    if let Some(refusal) = refused(&e) {
        return refusal;
    }
    tracing::warn!(%blob, error = %e, "distribution failed while {what} arrived; nothing kept");
    NodeApiError::retry_later(
        codes::DISTRIBUTION_FAILED,
        format!(
            "placing the shards of {what} failed: {e}; nothing was kept and the token is \
             unspent, so retry {what}"
        ),
        1,
    )
}

/// The path of an upload no plan could be had for yet: the whole envelope is stored
/// and marked pending here first, so the resume task distributes it if this request
/// cannot.
async fn spool_and_distribute(
    state: &Arc<NodeState>,
    blob: BlobId,
    claims: &CapabilityClaims,
    incoming: Incoming,
) -> Result<Response, NodeApiError> {
    let (partial, hash) = store_partial(state, blob, claims, incoming).await?;
    mark_pending(state, blob, claims.size).await?;
    commit_partial(state, &partial, blob, claims.size, "upload").await?;
    tracing::info!(%blob, size = claims.size, "upload stored");
    let mut response = distribute_and_answer(state, blob, claims.size).await?;
    set_etag(&mut response, &hash);
    Ok(response)
}

/// `PUT /v1/upload/{blob_id}/parts/{n}?token=T`: one part, erasure-coded and pushed
/// to its holders as it arrives; or, when the server cannot place it now (or places
/// the upload whole), written at its offset in the partial file and coded at
/// `complete`. Parts may arrive in any order and in parallel.
pub async fn put_part(
    State(state): State<Arc<NodeState>>,
    UrlPath((blob, part)): UrlPath<(String, String)>,
    query: TokenParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, NodeApiError> {
    let blob = parse_blob(&blob)?;
    let part: u32 = part.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
        NodeApiError::bad_request(
            codes::INVALID_PART_NUMBER,
            format!("part number {part:?} is not a whole number of at least 1"),
        )
    })?;
    let claims = state.verify_token(token_of(&query), CapabilityOp::Part, blob)?;
    if claims.part != Some(part) {
        return Err(NodeApiError::forbidden(
            codes::WRONG_PART,
            match claims.part {
                Some(p) => format!("token was issued for part {p}, not part {part}"),
                None => "part token names no part number".to_string(),
            },
        ));
    }
    let offset = claims.offset.ok_or_else(|| {
        NodeApiError::forbidden(
            codes::INVALID_TOKEN,
            "part token names no ciphertext offset",
        )
    })?;
    let _guard = state
        .begin(format!("{blob}/part/{part}"))
        .ok_or_else(|| busy(&format!("part {part} is being uploaded by another request")))?;
    if state.store.part_held(blob, part).await.is_some() {
        return Err(NodeApiError::conflict(
            codes::PART_ALREADY_UPLOADED,
            format!("part {part} has already been uploaded"),
        ));
    }
    refuse_spent_token(&state, &claims).await?;
    if state.store.exists(blob).await {
        return Err(already_completed());
    }
    check_content_length(&headers, claims.size)?;
    check_room(&state, claims.size)?;
    let _turn = state.buffers.body().await;
    // Part 1 starts the envelope: its header is checked before anything is written.
    let issued = claims.envelope.as_ref().filter(|_| offset == 0);
    let mut incoming = Incoming::start(body, claims.size, issued).await?;

    match distribute::plan_now(&state, blob, claims.size, Some(part)).await {
        Ok((plan, codec, span)) => {
            let streamed = streamed::distribute_as_received(
                &state,
                blob,
                plan,
                codec,
                span,
                Some(part),
                &mut incoming,
            )
            .await;
            let (_, hash) = match streamed {
                Ok(done) => done,
                Err(e) => {
                    return Err(
                        streamed_failure(blob, e, &mut incoming, &format!("part {part}")).await,
                    )
                }
            };
            return part_held(&state, blob, part, &claims, true, &hash).await;
        }
        Err(e) => {
            if let Some(refusal) = refused(&e) {
                incoming.discard_rest().await;
                return Err(refusal);
            }
            if !e.placed_whole() {
                tracing::info!(%blob, part, error = %e, "no plan for the part yet; keeping it here until complete");
            }
        }
    }

    // Other parts share the partial file, so a failed part leaves it in place: its
    // range is simply rewritten by the retry.
    let hash = incoming
        .write_to(&state.store.partial_path(blob), Some(offset))
        .await?;
    part_held(&state, blob, part, &claims, false, &hash).await
}

/// A part's bytes are durable (`coded`: as shards on their holders; otherwise in
/// the partial file): its marker is written, its token spent, and the client told.
async fn part_held(
    state: &NodeState,
    blob: BlobId,
    part: u32,
    claims: &CapabilityClaims,
    coded: bool,
    hash: &blake3::Hash,
) -> Result<Response, NodeApiError> {
    let held = PartHeld {
        size: claims.size,
        coded,
    };
    state
        .store
        .mark_part(blob, part, held)
        .await
        .map_err(|e| NodeApiError::internal("could not record the stored part", e))?;
    spend_token(state, claims).await?;
    let mut response = Json(PartStored {
        part_number: part,
        size: claims.size,
        status: "stored".to_string(),
    })
    .into_response();
    set_etag(&mut response, hash);
    Ok(response)
}

/// `POST /v1/upload/{blob_id}/complete?token=T`: every part is in; store and distribute.
pub async fn complete(
    State(state): State<Arc<NodeState>>,
    UrlPath(blob): UrlPath<String>,
    query: TokenParam,
) -> Result<Response, NodeApiError> {
    let blob = parse_blob(&blob)?;
    let claims = state.verify_token(token_of(&query), CapabilityOp::Complete, blob)?;
    let parts = claims.parts.ok_or_else(|| {
        NodeApiError::forbidden(codes::INVALID_TOKEN, "complete token names no part count")
    })?;
    let _guard = state
        .begin(blob.to_string())
        .ok_or_else(|| busy("this upload is already being completed by another request"))?;

    if state.store.exists(blob).await {
        if state.store.is_distributed(blob).await {
            return Err(already_completed());
        }
        // Stored but not distributed: an earlier completion failed after the bytes
        // were safe. Distribution can simply be tried again.
        let stored = tokio::fs::metadata(state.store.blob_path(blob))
            .await
            .map_err(|e| NodeApiError::internal("could not read the stored upload", e))?
            .len();
        if stored != claims.size {
            return Err(NodeApiError::bad_request(
                codes::SIZE_MISMATCH,
                format!(
                    "the stored upload is {stored} bytes, but this token is for {} bytes",
                    claims.size
                ),
            ));
        }
        // The marker is gone if the server refused the upload earlier; ask again.
        if !state.store.is_pending(blob).await {
            mark_pending(&state, blob, claims.size).await?;
        }
        return distribute_and_answer(&state, blob, claims.size).await;
    }
    if state.store.is_distributed(blob).await {
        return Err(already_completed());
    }
    if state.store.is_pending(blob).await && state.store.marked_parts(blob).await.is_some() {
        // Completed part by part, but telling the server failed earlier: try again.
        return match distribute::finish_parts(&state, blob, parts).await {
            Ok(_) => Ok(receipt(blob, claims.size)),
            Err(e) => Err(distribution_failed(&state, blob, e)),
        };
    }
    refuse_spent_token(&state, &claims).await?;

    let mut missing = Vec::new();
    let mut total = 0u64;
    let mut any_coded = false;
    for part in 1..=parts {
        match state.store.part_held(blob, part).await {
            Some(held) => {
                total += held.size;
                any_coded |= held.coded;
            }
            None => missing.push(part.to_string()),
        }
    }
    if !missing.is_empty() {
        let noun = if missing.len() == 1 { "part" } else { "parts" };
        return Err(NodeApiError::bad_request(
            codes::MISSING_PARTS,
            format!("{noun} {} of {parts} not uploaded yet", missing.join(", ")),
        ));
    }
    let partial = state.store.partial_path(blob);
    let on_disk = tokio::fs::metadata(&partial)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    // Parts coded as they arrived left no bytes in the partial file.
    if (!any_coded && on_disk != claims.size) || total != claims.size {
        return Err(NodeApiError::bad_request(
            codes::SIZE_MISMATCH,
            format!(
                "the {parts} parts hold {total} bytes ({on_disk} on disk), but the upload is {} bytes",
                claims.size
            ),
        ));
    }

    spend_token(&state, &claims).await?;
    mark_pending(&state, blob, claims.size).await?;
    match distribute::finish_parts(&state, blob, parts).await {
        Ok(shards) => {
            tracing::info!(%blob, size = claims.size, parts, shards, "multipart upload distributed part by part");
            return Ok(receipt(blob, claims.size));
        }
        Err(distribute::DistributeError::WholeOnly) => {}
        Err(e) => return Err(distribution_failed(&state, blob, e)),
    }
    commit_partial(&state, &partial, blob, claims.size, "upload").await?;
    let _ = tokio::fs::remove_dir_all(state.store.parts_dir(blob)).await;
    tracing::info!(%blob, size = claims.size, parts, "multipart upload stored");
    distribute_and_answer(&state, blob, claims.size).await
}

/// `PUT /v1/shards/{blob_id}?token=T`: a shard pushed by the originator of an upload,
/// or (with a `Segment` token) an encrypted HLS segment pushed by the node that
/// encoded it, which is then also served publicly by `GET /v1/segments/{blob_id}`.
pub async fn put_shard(
    State(state): State<Arc<NodeState>>,
    UrlPath(blob): UrlPath<String>,
    query: TokenParam,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, NodeApiError> {
    let raw_blob = blob;
    let blob = parse_blob(&raw_blob)?;
    let claims = state.verify_token_for(
        token_of(&query),
        &[CapabilityOp::Shard, CapabilityOp::Segment],
        blob,
    )?;
    let _guard = state
        .begin(blob.to_string())
        .ok_or_else(|| busy("another write to this blob is in progress"))?;
    let (partial, hash) = receive_whole(&state, blob, &claims, &headers, body).await?;
    let what = if claims.op == CapabilityOp::Segment {
        // Marked before the commit: a crash in between leaves a marker without a
        // blob (a 404 either way), never a public blob that is not a segment.
        if let Err(e) = state.store.mark_segment(blob).await {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(NodeApiError::internal("could not record the segment", e));
        }
        "segment"
    } else {
        "shard"
    };
    commit_partial(&state, &partial, blob, claims.size, what).await?;
    let mut response = Json(ShardStored {
        blob_id: blob,
        size: claims.size,
        blake3: hash.to_hex().to_string(),
    })
    .into_response();
    set_etag(&mut response, &hash);
    Ok(response)
}

/// The start of a single upload: the path's blob id, the
/// token's claims for `op` on it, and the blob held against a concurrent write
/// (`busy_message` when another request holds it) until the guard drops.
fn claim<'a>(
    state: &'a NodeState,
    raw_blob: &str,
    query: &TokenParam,
    op: CapabilityOp,
    busy_message: &str,
) -> Result<(BlobId, CapabilityClaims, InFlight<'a>), NodeApiError> {
    let blob = parse_blob(raw_blob)?;
    let claims = state.verify_token(token_of(query), op, blob)?;
    let guard = state
        .begin(blob.to_string())
        .ok_or_else(|| busy(busy_message))?;
    Ok((blob, claims, guard))
}

/// Moves a fully received partial file into the blob store; `what` ("upload",
/// "shard") names it in the error.
async fn commit_partial(
    state: &NodeState,
    partial: &Path,
    blob: BlobId,
    size: u64,
    what: &str,
) -> Result<(), NodeApiError> {
    state.store.commit(partial, blob, size).await.map_err(|e| {
        NodeApiError::internal(&format!("could not move the {what} into the blob store"), e)
    })
}

/// Takes a whole-blob body (a single upload or a pushed shard) into the blob's
/// partial file, with the checks both share, and spends the token once the bytes
/// are durable. The caller commits the partial file into the store.
async fn receive_whole(
    state: &NodeState,
    blob: BlobId,
    claims: &CapabilityClaims,
    headers: &HeaderMap,
    body: Body,
) -> Result<(std::path::PathBuf, blake3::Hash), NodeApiError> {
    admit_whole(state, blob, claims, headers).await?;
    // A pushed shard is not an envelope: its token names no header.
    let incoming = Incoming::start(body, claims.size, claims.envelope.as_ref()).await?;
    store_partial(state, blob, claims, incoming).await
}

/// Writes a whole body into the blob's partial file (removed if the body fails) and
/// spends the token once the bytes are durable. The caller commits the file.
async fn store_partial(
    state: &NodeState,
    blob: BlobId,
    claims: &CapabilityClaims,
    incoming: Incoming,
) -> Result<(std::path::PathBuf, blake3::Hash), NodeApiError> {
    let partial = state.store.partial_path(blob);
    let received = incoming.write_to(&partial, None).await;
    if received.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    let hash = received?;
    spend_token(state, claims).await?;
    Ok((partial, hash))
}

/// The checks before any byte of a whole-blob body (an upload, a shard) is read.
async fn admit_whole(
    state: &NodeState,
    blob: BlobId,
    claims: &CapabilityClaims,
    headers: &HeaderMap,
) -> Result<(), NodeApiError> {
    refuse_spent_token(state, claims).await?;
    if state.store.exists(blob).await {
        return Err(NodeApiError::conflict(
            codes::BLOB_EXISTS,
            format!("blob {blob} is already stored on this node"),
        ));
    }
    check_content_length(headers, claims.size)?;
    check_room(state, claims.size)
}

fn receipt(blob: BlobId, size: u64) -> Response {
    Json(UploadReceipt {
        upload_id: blob.to_string(),
        size,
        status: "distributed".to_string(),
    })
    .into_response()
}

/// The server's final verdict on an upload (unknown, superseded, already
/// distributed…), as the uploader must see it; `None` when a retry may succeed.
fn refused(e: &distribute::DistributeError) -> Option<NodeApiError> {
    let refusal = e.final_refusal()?;
    tracing::info!(error = %refusal, "the server refused this upload");
    let status = refusal.status().unwrap_or(StatusCode::CONFLICT);
    Some(match refusal.server_body() {
        Some(body) => NodeApiError::relayed(status, body.code.clone(), body.error.clone()),
        None => NodeApiError::new(status, codes::UPLOAD_REFUSED, refusal.to_string()),
    })
}

async fn distribute_and_answer(
    state: &Arc<NodeState>,
    blob: BlobId,
    size: u64,
) -> Result<Response, NodeApiError> {
    match distribute::distribute(state, blob, size).await {
        Ok(shards) => {
            tracing::info!(%blob, shards, "upload distributed");
            Ok(receipt(blob, size))
        }
        Err(e) => Err(distribution_failed(state, blob, e)),
    }
}

/// The answer when a stored upload could not be distributed: the server's refusal,
/// or `502` while this node keeps retrying on its own (its pending marker stays).
fn distribution_failed(
    state: &NodeState,
    blob: BlobId,
    e: distribute::DistributeError,
) -> NodeApiError {
    if let Some(refusal) = refused(&e) {
        return refusal;
    }
    tracing::error!(%blob, error = %e, "distribution failed; the upload stays stored here and will be retried");
    state.retry_distribution_soon();
    NodeApiError::new(
        StatusCode::BAD_GATEWAY,
        codes::DISTRIBUTION_FAILED,
        format!(
            "the upload is stored on this node, but distributing it failed: {e}; \
             this node keeps retrying on its own"
        ),
    )
}

/// Durable before the upload enters the blob store, so a crash from here on leaves
/// an upload that the resume task distributes.
async fn mark_pending(state: &NodeState, blob: BlobId, size: u64) -> Result<(), NodeApiError> {
    state
        .store
        .mark_pending(blob, size)
        .await
        .map_err(|e| NodeApiError::internal("could not record the upload for distribution", e))
}

/// The server places uploads on nodes with room, but its view may be a heartbeat old.
fn check_room(state: &NodeState, size: u64) -> Result<(), NodeApiError> {
    let free = state.free_bytes();
    if size > free {
        return Err(NodeApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            codes::INSUFFICIENT_STORAGE,
            format!("this node has {free} bytes free, not enough for {size} bytes"),
        ));
    }
    Ok(())
}

fn check_content_length(headers: &HeaderMap, expected: u64) -> Result<(), NodeApiError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(());
    };
    let declared = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            NodeApiError::bad_request(
                codes::INVALID_CONTENT_LENGTH,
                "Content-Length is not a number",
            )
        })?;
    if declared != expected {
        return Err(NodeApiError::bad_request(
            codes::SIZE_MISMATCH,
            format!("Content-Length is {declared} bytes, but this token is for {expected} bytes"),
        ));
    }
    Ok(())
}

async fn refuse_spent_token(
    state: &NodeState,
    claims: &CapabilityClaims,
) -> Result<(), NodeApiError> {
    if state.store.token_used(&claims.jti).await {
        return Err(NodeApiError::conflict(
            codes::TOKEN_USED,
            "upload token already used",
        ));
    }
    Ok(())
}

async fn spend_token(state: &NodeState, claims: &CapabilityClaims) -> Result<(), NodeApiError> {
    state
        .store
        .mark_token_used(&claims.jti, claims.expires_at)
        .await
        .map_err(|e| NodeApiError::internal("could not record the spent token", e))
}

fn already_completed() -> NodeApiError {
    NodeApiError::conflict(codes::UPLOAD_ALREADY_COMPLETED, "upload already completed")
}

fn busy(message: &str) -> NodeApiError {
    NodeApiError::conflict(codes::IN_PROGRESS, message)
}

fn set_etag(response: &mut Response, hash: &blake3::Hash) {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", hash.to_hex())) {
        response.headers_mut().insert(header::ETAG, value);
    }
}
