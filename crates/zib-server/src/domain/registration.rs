//! Registering an upload: validating what it names, picking an originator, issuing a
//! fresh data key and the node capabilities for it. Shared by the tenant API's
//! initiate and the S3 gateway, so both create files the same way.

use rand::seq::SliceRandom;
use zib_crypto::envelope::{Header, Layout};
use zib_crypto::{CapabilitySigner, DataKey};
use zib_meta::{FilePhase, FileRow, NodeRow};
use zib_proto::api::{PartTarget, Registration, UploadType};
use zib_proto::node_rpc::{CapabilityClaims, CapabilityOp};
use zib_proto::{BlobId, EnvelopeParams, FileId, NodeId};

use super::directory::NodeDirectory;
use super::node_client::urls;
use super::placement;
use crate::error::{ApiError, ApiResult};
use crate::state::{now_ms, rfc3339, AppState, Inner};

pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// S3's bucket naming rules (general purpose buckets): 3–63 of `a-z 0-9 . -`,
/// starting and ending with a letter or digit, no `..`, `.-` or `-.`, not shaped like
/// an IP address, none of the prefixes and suffixes S3 reserves. One rule for the
/// tenant API and S3, so a bucket made on one is reachable on the other; the OpenAPI
/// document (`InitiateRequest.bucket`) states it as patterns.
pub fn validate_bucket(name: &str) -> Result<(), ApiError> {
    match bucket_name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(ApiError::invalid(
            "bucket",
            format!("invalid bucket name {name:?}: {problem}"),
        )),
    }
}

/// What makes `name` an invalid bucket name, if anything.
fn bucket_name_problem(name: &str) -> Option<&'static str> {
    const RESERVED_PREFIXES: [&str; 3] = ["xn--", "sthree-", "amzn-s3-demo-"];
    const RESERVED_SUFFIXES: [&str; 4] = ["-s3alias", "--ol-s3", ".mrap", "--x-s3"];
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(3..=63).contains(&name.len()) {
        return Some("use 3 to 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Some("use only a-z, 0-9, '.' and '-'");
    }
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return Some("start and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Some("no '..', '.-' or '-.'");
    }
    // Shaped like an IPv4 address (the OpenAPI document states the same pattern).
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() == 4 && labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Some("a bucket name is not an IP address");
    }
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        || RESERVED_SUFFIXES.iter().any(|s| name.ends_with(s))
    {
        return Some("the prefixes xn--, sthree-, amzn-s3-demo- and the suffixes -s3alias, --ol-s3, .mrap, --x-s3 are reserved");
    }
    None
}

/// 1 to 1024 characters (counted as the OpenAPI document's `maxLength` counts them),
/// none of them a control character.
pub fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.chars().count() > 1024 {
        return Err(ApiError::invalid(
            "key",
            "must be 1 to 1024 characters long",
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "key",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Absent, `null`, empty or only spaces: the default. Otherwise at most 255 printable
/// ASCII characters with a `/`, trimmed of surrounding spaces. The OpenAPI document
/// states the same as a pattern, so the two agree on every string.
pub fn validate_content_type(ct: Option<String>) -> Result<String, ApiError> {
    let Some(ct) = ct else {
        return Ok(DEFAULT_CONTENT_TYPE.to_string());
    };
    let printable = ct.len() <= 255 && ct.bytes().all(|b| (0x20..0x7f).contains(&b));
    let trimmed = ct.trim_matches(' ');
    if printable && trimmed.is_empty() {
        return Ok(DEFAULT_CONTENT_TYPE.to_string());
    }
    if printable && trimmed.contains('/') {
        return Ok(trimmed.to_string());
    }
    Err(ApiError::invalid(
        "content_type",
        format!("{ct:?} is not a valid MIME type (e.g. image/png)"),
    ))
}

/// A registered upload: what the tenant is handed, plus the key and header it
/// names, for callers that encrypt on the tenant's behalf (the S3 gateway).
pub struct Registered {
    pub registration: Registration,
    pub dek: DataKey,
    pub header: Header,
}

/// Who sends an upload's bytes to its originator, which decides the upload's shape.
#[derive(Clone, Copy, Debug)]
pub enum Sender<'a> {
    /// A tenant's client (browser, SDK, `zib upload`): in parts from
    /// `multipart_threshold`, so a large file goes in parallel and can resume; only
    /// to a node advertising every capability in `required`.
    Client { required: &'a [String] },
    /// The S3 gateway: one stream whatever the size, which the originator
    /// erasure-codes as it arrives (no second pass). An S3 client sends a failed
    /// PutObject again whole, so parts would add nothing.
    Server,
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
    sender: Sender<'_>,
) -> ApiResult<Registered> {
    let required = match sender {
        Sender::Client { required } => required,
        Sender::Server => &[],
    };
    let Draft {
        node,
        mut row,
        dek,
        header,
    } = draft(
        state,
        tenant_id,
        &bucket,
        &key,
        file_size,
        &content_type,
        required,
    )
    .await?;
    let layout = header.layout();
    let ciphertext_size = row.ciphertext_size;
    let file_id = row.file_id;
    let blob_id = row.upload_blob_id;
    let expires_ms = row.expires_at;
    let expires_unix = (expires_ms / 1000) as u64;
    let node_url = node.public_url.trim_end_matches('/').to_string();
    let upload_type = match sender {
        Sender::Client { .. } if file_size >= state.config.multipart_threshold => {
            UploadType::Multipart
        }
        _ => UploadType::Single,
    };

    // The tokens whose body starts at ciphertext offset 0 carry the header, so the
    // node can refuse a body that is not this upload's envelope before storing it.
    let issue = |op, size, part, offset: Option<u64>, parts| {
        let starts_envelope = matches!(op, CapabilityOp::Upload) || offset == Some(0);
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
                envelope: starts_envelope.then(|| header.to_params()),
                expires_at: expires_unix,
                jti: uuid::Uuid::new_v4().simple().to_string(),
            },
        )
    };

    let (upload_url, upload_id, parts, complete_url) = match upload_type {
        UploadType::Single => {
            let token = issue(CapabilityOp::Upload, ciphertext_size, None, None, None);
            (
                Some(urls::upload(&node_url, blob_id, &token)),
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
                    p.upload_url = urls::upload_part(&node_url, blob_id, p.part_number, &token);
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
            let complete = urls::upload_complete(&node_url, blob_id, &token);
            (None, Some(blob_id.to_string()), parts, Some(complete))
        }
    };

    row.part_count = parts.len() as u32;
    if upload_type == UploadType::Multipart {
        // Every part but the last holds this many plaintext bytes: the originator
        // codes each part on its own as it arrives (`domain::layout::layout_of`).
        row.part_size = part_plaintext_size(&layout, state.config.part_size);
    }
    insert_row(state, &mut row, tenant_id, &bucket).await?;
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

/// Registers the file an S3 multipart upload's parts are coded into: stored as one
/// envelope per part (no nonce prefix of its own, sizes known at completion), and
/// expiring `expires_in` after its last part unless completed.
pub async fn register_in_parts(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
    content_type: &str,
    expires_in: std::time::Duration,
) -> ApiResult<FileRow> {
    let Draft { mut row, .. } = draft(state, tenant_id, bucket, key, 0, content_type, &[]).await?;
    row.nonce_prefix = Vec::new();
    row.ciphertext_size = 0;
    row.expires_at = row.created_at + i64::try_from(expires_in.as_millis()).unwrap_or(i64::MAX / 2);
    insert_row(state, &mut row, tenant_id, bucket).await?;
    Ok(row)
}

/// Records a drafted row. The bucket may have been deleted between its lookup and
/// this insert: an upload names its bucket into being again, as on first upload.
async fn insert_row(
    state: &AppState,
    row: &mut FileRow,
    tenant_id: &str,
    bucket: &str,
) -> ApiResult<()> {
    match state.store.insert_file(row).await {
        Err(zib_meta::MetaError::BucketDeleted) => {
            row.bucket_id = state.store.ensure_bucket(tenant_id, bucket).await?.id;
            state.store.insert_file(row).await?;
        }
        inserted => inserted?,
    }
    Ok(())
}

/// What every registration starts from: an originator, a fresh data key and
/// envelope header, and the file row (phase `pending`), not recorded yet.
pub struct Draft {
    pub node: NodeRow,
    pub row: FileRow,
    pub dek: DataKey,
    pub header: Header,
}

/// Drafts the registration of an upload of `file_size` bytes to `bucket`/`key`
/// (inputs already validated), on an originator advertising `required`. Names the
/// bucket into being.
pub async fn draft(
    state: &AppState,
    tenant_id: &str,
    bucket: &str,
    key: &str,
    file_size: u64,
    content_type: &str,
    required: &[String],
) -> ApiResult<Draft> {
    let bucket_row = state.store.ensure_bucket(tenant_id, bucket).await?;
    draft_in(state, &bucket_row, key, file_size, content_type, required).await
}

/// [`draft`] into a bucket already looked up.
pub async fn draft_in(
    state: &AppState,
    bucket_row: &zib_meta::Bucket,
    key: &str,
    file_size: u64,
    content_type: &str,
    required: &[String],
) -> ApiResult<Draft> {
    let header = Header::new_random(state.config.chunk_size);
    let ciphertext_size = header.layout().ciphertext_len(file_size);
    let now = now_ms();
    let nodes = NodeDirectory::load(state).await?.placeable();
    let eligible = placement::eligible_originators(&nodes, ciphertext_size, required);
    let node = eligible
        .choose(&mut zib_util::rng::rng())
        .ok_or_else(|| no_originator(&nodes, required))?;
    let file_id = FileId::new_random();
    let dek = DataKey::generate();
    let row = FileRow {
        file_id,
        tenant_id: bucket_row.tenant_id.clone(),
        bucket_id: bucket_row.id,
        bucket: bucket_row.name.clone(),
        object_key: key.to_string(),
        size: file_size,
        ciphertext_size,
        content_type: content_type.to_string(),
        phase: FilePhase::Pending,
        cancelled_reason: None,
        wrapped_dek: state.config.master_key.wrap(&dek, file_id.0.as_bytes()),
        chunk_size: header.chunk_size,
        nonce_prefix: header.nonce_prefix.to_vec(),
        data_shards: state.config.erasure.data_shards,
        parity_shards: state.config.erasure.parity_shards,
        shard_size: state.config.erasure.shard_size,
        originator: node.node_id.clone(),
        upload_blob_id: BlobId::new_random(),
        part_count: 0,
        part_size: 0,
        expires_at: now + state.config.upload_expiry.as_millis() as i64,
        created_at: now,
        distributed_at: None,
    };
    Ok(Draft {
        node: (*node).clone(),
        row,
        dek,
        header,
    })
}

/// Why no node can take an upload: a declared stage nobody online runs is named, as
/// the 503 the API reference promises for it.
fn no_originator(online: &[zib_meta::NodeRow], required: &[String]) -> ApiError {
    match required
        .iter()
        .find(|c| !online.iter().any(|n| n.capabilities.contains(c)))
    {
        Some(missing) => ApiError::Unavailable(format!(
            "no storage nodes available that can run pipeline stage {missing:?}"
        )),
        None => ApiError::Unavailable("no storage nodes available".into()),
    }
}

fn sign(signer: &CapabilitySigner, claims: CapabilityClaims) -> String {
    signer.sign(&claims)
}

/// The plaintext bytes of every part but the last: `part_size` rounded down to whole
/// chunks (at least one).
fn part_plaintext_size(layout: &Layout, part_size: u64) -> u64 {
    let chunk = layout.chunk_size as u64;
    (part_size / chunk).max(1) * chunk
}

/// Cuts a file into parts of whole chunks; part 1 also carries the envelope header.
pub fn plan_parts(layout: &Layout, file_size: u64, part_size: u64) -> Vec<PartTarget> {
    let chunk = layout.chunk_size as u64;
    let chunks_per_part = part_plaintext_size(layout, part_size) / chunk;
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

/// A capability for `PUT /v1/shards/{blob_id}` on `node`, for exactly `size` bytes.
pub fn shard_capability(
    state: &Inner,
    node: &NodeId,
    blob_id: BlobId,
    size: u64,
    expires_at: u64,
) -> String {
    blob_capability(state, CapabilityOp::Shard, node, blob_id, size, expires_at)
}

/// A capability for `PUT /v1/shards/{blob_id}` of a whole `op` blob (a shard or an
/// HLS segment copy) on `node`, for exactly `size` bytes.
pub fn blob_capability(
    state: &Inner,
    op: CapabilityOp,
    node: &NodeId,
    blob_id: BlobId,
    size: u64,
    expires_at: u64,
) -> String {
    state.config.capability_signer.sign(&CapabilityClaims {
        op,
        node_id: node.clone(),
        blob_id,
        size,
        part: None,
        offset: None,
        parts: None,
        envelope: None,
        expires_at,
        jti: uuid::Uuid::new_v4().simple().to_string(),
    })
}

#[cfg(test)]
mod bucket_name_tests {
    use super::validate_bucket;

    #[test]
    fn bucket_names_follow_s3s_rules() {
        let long = "a".repeat(63);
        for ok in ["abc", "my-bucket.2024", "1.2.3", "a-b-c", long.as_str()] {
            assert!(validate_bucket(ok).is_ok(), "{ok}");
        }
        let too_long = "a".repeat(64);
        for bad in [
            "ab",
            too_long.as_str(),
            "Foo",
            "foo_bar",
            "-foo",
            "foo-",
            ".foo",
            "foo..bar",
            "foo-.bar",
            "foo.-bar",
            "192.168.1.1",
            "999.01.1.1",
            "xn--foo",
            "sthree-foo",
            "foo-s3alias",
            "foo--ol-s3",
            "foo.mrap",
            "foo--x-s3",
            "caf\u{e9}s",
        ] {
            assert!(validate_bucket(bad).is_err(), "{bad}");
        }
    }
}
