//! `POST /v1/api/upload/initiate`: validate, pick an originator, issue a data key and
//! the capabilities for one upload.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use rand::seq::SliceRandom;
use zib_crypto::envelope::{Header, Layout};
use zib_crypto::{CapabilitySigner, DataKey};
use zib_meta::{FilePhase, FileRow};
use zib_proto::api::{InitiateRequest, PartTarget, Registration, UploadType};
use zib_proto::node_rpc::{CapabilityClaims, CapabilityOp};
use zib_proto::{BlobId, EnvelopeParams, FileId};

use crate::auth::AuthTenant;
use crate::error::{ApiError, ApiResult};
use crate::placement;
use crate::state::{now_ms, rfc3339, AppState};

pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// S3's bucket naming rules: 3–63 of `a-z 0-9 . -`, starting and ending alphanumeric.
pub fn validate_bucket(name: &str) -> Result<(), ApiError> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ends_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !(3..=63).contains(&name.len()) || !ok_chars || !ends_ok || name.contains("..") {
        return Err(ApiError::invalid(
            "bucket",
            format!("invalid bucket name {name:?}: use 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit"),
        ));
    }
    Ok(())
}

pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(ApiError::invalid("key", "must be 1 to 1024 bytes long"));
    }
    if key.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "key",
            "must not contain control characters",
        ));
    }
    Ok(())
}

pub fn validate_content_type(ct: Option<String>) -> Result<String, ApiError> {
    match ct {
        None => Ok(DEFAULT_CONTENT_TYPE.to_string()),
        Some(ct) if ct.trim().is_empty() => Ok(DEFAULT_CONTENT_TYPE.to_string()),
        Some(ct) => {
            let ok = ct.len() <= 255
                && ct.contains('/')
                && ct.bytes().all(|b| (0x20..0x7f).contains(&b));
            if ok {
                Ok(ct.trim().to_string())
            } else {
                Err(ApiError::invalid(
                    "content_type",
                    format!("{ct:?} is not a valid MIME type (e.g. image/png)"),
                ))
            }
        }
    }
}

fn validate_file_size(v: Option<serde_json::Value>, max: u64) -> Result<u64, ApiError> {
    let v = v.ok_or_else(|| ApiError::invalid("file_size", "is required (bytes, > 0)"))?;
    let n = v.as_u64().ok_or_else(|| {
        ApiError::invalid("file_size", format!("must be a positive integer, got {v}"))
    })?;
    if n == 0 {
        return Err(ApiError::invalid("file_size", "must be greater than 0"));
    }
    if n > max {
        return Err(ApiError::invalid(
            "file_size",
            format!("{n} bytes exceeds the maximum file size of {max} bytes"),
        ));
    }
    Ok(n)
}

/// Node capabilities a declared pipeline needs. Stages that this server does not run
/// yet are refused by name rather than silently accepted.
fn required_capabilities(pipeline: &Option<serde_json::Value>) -> Result<Vec<String>, ApiError> {
    match pipeline {
        None | Some(serde_json::Value::Null) => Ok(vec![]),
        Some(serde_json::Value::Object(stages)) => {
            for (name, value) in stages {
                match name.as_str() {
                    "webhook_url" | "webhook_secret" => {}
                    "encoding" | "transcription" | "vision" if value.is_null() => {}
                    "encoding" | "transcription" | "vision" => {
                        return Err(ApiError::Unavailable(format!(
                            "no storage nodes available that can run pipeline stage {name:?}"
                        )))
                    }
                    other => {
                        return Err(ApiError::invalid(
                            "pipeline",
                            format!(
                            "unknown stage {other:?} (expected encoding, transcription, vision)"
                        ),
                        ))
                    }
                }
            }
            Ok(vec![])
        }
        Some(_) => Err(ApiError::invalid("pipeline", "must be an object")),
    }
}

pub async fn initiate(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    body: Bytes,
) -> ApiResult<Json<Registration>> {
    let req: InitiateRequest = super::parse_json(&body)?;
    let bucket = req
        .bucket
        .ok_or_else(|| ApiError::invalid("bucket", "is required"))?;
    validate_bucket(&bucket)?;
    let key = req
        .key
        .ok_or_else(|| ApiError::invalid("key", "is required"))?;
    validate_key(&key)?;
    let file_size = validate_file_size(req.file_size, state.config.max_file_size)?;
    let content_type = validate_content_type(req.content_type)?;
    let required = required_capabilities(&req.pipeline)?;
    let webhook = crate::webhooks::request_target(&state, &req.pipeline).await?;

    let registered = register(
        &state,
        &tenant.id,
        bucket,
        key,
        file_size,
        content_type,
        &required,
    )
    .await?;
    crate::webhooks::store_request_target(&state, registered.registration.file_id, webhook).await?;
    Ok(Json(registered.registration))
}

/// A registered upload: what the tenant is handed, plus the key and header it
/// names, for callers that encrypt on the tenant's behalf (the S3 gateway).
pub struct Registered {
    pub registration: Registration,
    pub dek: DataKey,
    pub header: Header,
}

/// Picks an originator, issues a fresh data key and the capabilities, and records the
/// file row (phase `pending`). Inputs are already validated. Shared by `initiate` and
/// the S3 gateway's PUT so both create files the same way.
pub async fn register(
    state: &AppState,
    tenant_id: &str,
    bucket: String,
    key: String,
    file_size: u64,
    content_type: String,
    required: &[String],
) -> ApiResult<Registered> {
    let header = Header::new_random(state.config.chunk_size);
    let layout = header.layout();
    let ciphertext_size = layout.ciphertext_len(file_size);

    let now = now_ms();
    let nodes: Vec<_> = state
        .store
        .list_nodes()
        .await?
        .into_iter()
        .filter(|n| state.is_online(n.last_heartbeat_at, now))
        .collect();
    let eligible = placement::eligible_originators(&nodes, ciphertext_size, required);
    let node = eligible
        .choose(&mut rand::thread_rng())
        .ok_or_else(|| ApiError::Unavailable("no storage nodes available".into()))?;

    let bucket_row = state.store.ensure_bucket(tenant_id, &bucket).await?;
    let file_id = FileId::new_random();
    let blob_id = BlobId::new_random();
    let dek = DataKey::generate();
    let expires_ms = now + state.config.upload_expiry.as_millis() as i64;
    let expires_unix = (expires_ms / 1000) as u64;
    let node_url = node.public_url.trim_end_matches('/').to_string();
    let upload_type = if file_size >= state.config.multipart_threshold {
        UploadType::Multipart
    } else {
        UploadType::Single
    };

    let issue = |op, size, part, offset, parts| {
        sign(
            &state.config.capability_signer,
            CapabilityClaims {
                op,
                node_id: node.node_id.clone(),
                blob_id,
                size,
                part,
                offset,
                parts,
                expires_at: expires_unix,
                jti: uuid::Uuid::new_v4().simple().to_string(),
            },
        )
    };

    let (upload_url, upload_id, parts, complete_url) = match upload_type {
        UploadType::Single => {
            let token = issue(CapabilityOp::Upload, ciphertext_size, None, None, None);
            (
                Some(format!("{node_url}/v1/upload/{blob_id}?token={token}")),
                None,
                vec![],
                None,
            )
        }
        UploadType::Multipart => {
            let parts = plan_parts(&layout, file_size, state.config.part_size)
                .into_iter()
                .map(|mut p| {
                    let token = issue(
                        CapabilityOp::Part,
                        p.ciphertext_size,
                        Some(p.part_number),
                        Some(p.ciphertext_offset),
                        None,
                    );
                    p.upload_url = format!(
                        "{node_url}/v1/upload/{blob_id}/parts/{}?token={token}",
                        p.part_number
                    );
                    p
                })
                .collect::<Vec<_>>();
            let token = issue(
                CapabilityOp::Complete,
                ciphertext_size,
                None,
                None,
                Some(parts.len() as u32),
            );
            let complete = format!("{node_url}/v1/upload/{blob_id}/complete?token={token}");
            (None, Some(blob_id.to_string()), parts, Some(complete))
        }
    };

    let row = FileRow {
        file_id,
        tenant_id: tenant_id.to_string(),
        bucket_id: bucket_row.id,
        bucket: bucket.clone(),
        object_key: key.clone(),
        size: file_size,
        ciphertext_size,
        content_type: content_type.clone(),
        phase: FilePhase::Pending,
        cancelled_reason: None,
        wrapped_dek: state.config.master_key.wrap(&dek, file_id.0.as_bytes()),
        chunk_size: header.chunk_size,
        nonce_prefix: header.nonce_prefix.to_vec(),
        data_shards: state.config.erasure.data_shards,
        parity_shards: state.config.erasure.parity_shards,
        shard_size: state.config.erasure.shard_size,
        originator: node.node_id.clone(),
        upload_blob_id: blob_id,
        part_count: parts.len() as u32,
        expires_at: expires_ms,
        created_at: now,
        distributed_at: None,
    };
    state.store.insert_file(&row).await?;
    tracing::info!(%file_id, node = %node.node_id, size = file_size, "upload initiated");

    let registration = Registration {
        upload_type,
        file_id,
        bucket,
        key,
        file_size,
        content_type,
        node_id: node.node_id.clone(),
        node_url,
        upload_url,
        upload_id,
        parts,
        complete_url,
        encryption_key: dek.to_base64(),
        envelope: EnvelopeParams {
            version: zib_crypto::envelope::VERSION,
            chunk_size: header.chunk_size,
            nonce_prefix: hex::encode(header.nonce_prefix),
        },
        ciphertext_size,
        cdn_url: state.cdn_url(file_id),
        expires_at: rfc3339(expires_ms),
    };
    Ok(Registered {
        registration,
        dek,
        header,
    })
}

fn sign(signer: &CapabilitySigner, claims: CapabilityClaims) -> String {
    signer.sign(&claims)
}

/// Cuts a file into parts of whole chunks; part 1 also carries the envelope header.
pub fn plan_parts(layout: &Layout, file_size: u64, part_size: u64) -> Vec<PartTarget> {
    let chunk = layout.chunk_size as u64;
    let chunks_per_part = (part_size / chunk).max(1);
    let total_chunks = layout.chunk_count(file_size);
    let mut parts = Vec::new();
    let mut first_chunk = 0;
    while first_chunk < total_chunks {
        let last_chunk = (first_chunk + chunks_per_part).min(total_chunks);
        let plaintext_offset = first_chunk * chunk;
        let plaintext_end = (last_chunk * chunk).min(file_size);
        let ciphertext_offset = if first_chunk == 0 {
            0
        } else {
            layout.chunk_offset(first_chunk)
        };
        let ciphertext_end = if last_chunk == total_chunks {
            layout.ciphertext_len(file_size)
        } else {
            layout.chunk_offset(last_chunk)
        };
        parts.push(PartTarget {
            part_number: parts.len() as u32 + 1,
            upload_url: String::new(),
            plaintext_offset,
            plaintext_size: plaintext_end - plaintext_offset,
            ciphertext_offset,
            ciphertext_size: ciphertext_end - ciphertext_offset,
        });
        first_chunk = last_chunk;
    }
    parts
}
