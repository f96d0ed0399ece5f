//! CopyObject and UploadPartCopy, server-side.
//!
//! A copy is a new object, not a second name for the old one: the CDN's read path
//! (`domain::read::plaintext_stream`) opens the source chunk by chunk and feeds the
//! plaintext to the gateway's sealing path (`gateway::put_object`), so the copy gets a
//! file id and a data key of its own, obeys the same overwrite rule as a PUT, and
//! nothing leaves the server in clear. The source's MD5 (its ETag) is the expected
//! digest of what is sealed, so a read that went wrong can never complete the copy.
//! UploadPartCopy feeds a range of the source into the multipart spool the same way.
//!
//! The attributes (`x-amz-metadata-directive`): COPY (the default) takes the source's
//! content type, headers and user metadata; REPLACE takes them from the request.
//! Tags follow `x-amz-tagging-directive` the same way; checksums describe the bytes, so
//! they are always the source's. A copy onto itself is allowed only with REPLACE (as
//! S3: otherwise 400 `InvalidRequest`) and updates the current object in place.

use futures::StreamExt;
use s3s::dto::{
    CopyObjectInput, CopyObjectOutput, CopyObjectResult, CopyPartResult, CopySource, ETagCondition,
    MetadataDirective, StreamingBlob, TaggingDirective, Timestamp, UploadPartCopyInput,
    UploadPartCopyOutput,
};
use s3s::{s3_error, S3Error, S3Result};
use zib_meta::{FileRow, ObjectHeaders, Tags};

use crate::domain::read::plaintext_stream;
use crate::domain::registration::{validate_bucket, validate_content_type, validate_key};
use crate::error::ApiError;
use crate::state::AppState;

use super::checksums::Expected;
use super::conditional::WriteCondition;
use super::errors::{api_to_s3, internal, no_such_bucket, no_such_key};
use super::gateway::{self, PutRequest};
use super::multipart::{self, PartUpload};
use super::object_headers::{ObjectAttrs, WriteAttrs};
use super::refused::NewObjectOptions;
use super::sse::EncryptionHeaders;

/// A readable source object and what a copy compares and takes from it.
struct Source {
    file: FileRow,
    /// Hex MD5 of the plaintext (gateway uploads); `None` for SDK uploads.
    md5: Option<String>,
    bucket: String,
    key: String,
}

impl Source {
    /// The ETag S3 clients saw for it (the same rule as HEAD and listings).
    fn etag(&self) -> String {
        self.md5
            .clone()
            .unwrap_or_else(|| self.file.file_id.0.simple().to_string())
    }

    fn last_modified_ms(&self) -> i64 {
        self.file.distributed_at.unwrap_or(self.file.created_at)
    }
}

/// `x-amz-copy-source`, as the tenant may see it: another tenant's object, a missing
/// bucket or key all look absent.
async fn source(state: &AppState, tenant_id: &str, copy_source: &CopySource) -> S3Result<Source> {
    let CopySource::Bucket {
        bucket,
        key,
        version_id,
    } = copy_source
    else {
        return Err(s3_error!(
            NotImplemented,
            "access point and outpost copy sources are not supported; use bucket/key"
        ));
    };
    if version_id.as_deref().is_some_and(|v| v != "null") {
        return Err(s3_error!(
            NoSuchVersion,
            "buckets are not versioned: the only version of an object is \"null\""
        ));
    }
    let found = state
        .store
        .bucket(tenant_id, bucket)
        .await
        .map_err(internal)?;
    if found.is_none() {
        return Err(no_such_bucket(bucket));
    }
    let file = state
        .store
        .object(tenant_id, bucket, key)
        .await
        .map_err(internal)?
        .filter(|f| f.phase.is_readable())
        .ok_or_else(|| no_such_key(bucket, key))?;
    let md5 = state
        .store
        .plaintext_md5(file.file_id)
        .await
        .map_err(internal)?;
    Ok(Source {
        file,
        md5,
        bucket: bucket.to_string(),
        key: key.to_string(),
    })
}

/// The `x-amz-copy-source-if-*` headers, with S3's precedence: a matching If-Match
/// wins over a failing If-Unmodified-Since, a failing If-None-Match over a passing
/// If-Modified-Since. Dates compare at the second, as HTTP dates carry.
struct Conditions<'a> {
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

/// The `x-amz-copy-source-if-*` headers of a CopyObject or UploadPartCopy input.
macro_rules! copy_source_conditions {
    ($input:expr) => {
        Conditions {
            if_match: $input.copy_source_if_match.as_ref(),
            if_none_match: $input.copy_source_if_none_match.as_ref(),
            if_modified_since: $input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: $input.copy_source_if_unmodified_since.as_ref(),
        }
    };
}

impl Conditions<'_> {
    fn check(&self, source: &Source) -> S3Result<()> {
        let etag = source.etag();
        let matches = |c: &ETagCondition| match c {
            ETagCondition::Any => true,
            ETagCondition::ETag(e) => e.value().trim_matches('"') == etag,
        };
        let modified = source.last_modified_ms().div_euclid(1000);
        let secs = |t: &Timestamp| time::OffsetDateTime::from(t.clone()).unix_timestamp();
        let failed = || {
            s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            )
        };
        match (self.if_match, self.if_unmodified_since) {
            (Some(c), _) if !matches(c) => return Err(failed()),
            (None, Some(t)) if modified > secs(t) => return Err(failed()),
            _ => {}
        }
        match (self.if_none_match, self.if_modified_since) {
            (Some(c), _) if matches(c) => Err(failed()),
            (None, Some(t)) if modified <= secs(t) => Err(failed()),
            _ => Ok(()),
        }
    }
}

/// Plaintext chunks read ahead of the sealing.
const READ_AHEAD: usize = 4;

/// The source's plaintext in `window`, as a request body for the sealing path. A task
/// of its own reads it (node reads are not `Sync`, as a body must be) and stops when
/// the sealing stops listening; a read that fails midway fails the copy as
/// `ServiceUnavailable`, not as a short client body.
async fn plaintext(
    state: &AppState,
    source: &Source,
    window: std::ops::Range<u64>,
) -> S3Result<StreamingBlob> {
    if window.is_empty() {
        return Ok(StreamingBlob::from(s3s::Body::empty()));
    }
    let unreadable = |e: ApiError| match e {
        // Not temporary: the S3 form of the CDN's `502 unreadable`.
        ApiError::Unreadable(_) => api_to_s3(e),
        e => s3_error!(
            ServiceUnavailable,
            "the copy source is temporarily unreadable ({}); retry",
            e.status()
        ),
    };
    let stream = plaintext_stream(state, &source.file, window)
        .await
        .map_err(unreadable)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, S3Error>>(READ_AHEAD);
    let file_id = source.file.file_id;
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| {
                tracing::warn!(file = %file_id, error = %e, "reading a copy source failed");
                s3_error!(
                    ServiceUnavailable,
                    "reading the copy source failed midway; retry"
                )
            });
            let failed = piece.is_err();
            if tx.send(piece).await.is_err() || failed {
                return;
            }
        }
    });
    Ok(StreamingBlob::wrap(futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
    })))
}

/// SSE-C, KMS, object lock, ACLs and website redirects would be promises ZiB does not
/// keep: refused, never ignored.
/// What a copy cannot honour, refused as a PUT refuses it; and a source encrypted
/// with a customer key, which no object is.
fn refuse_unkept_promises(input: &CopyObjectInput) -> S3Result<()> {
    input.refuse_unsupported_encryption()?;
    if input.copy_source_sse_customer_algorithm.is_some()
        || input.copy_source_sse_customer_key.is_some()
    {
        return Err(s3_error!(
            NotImplemented,
            "objects are always encrypted with keys the server manages (AES256); SSE-C is not supported"
        ));
    }
    input.refuse_unsupported_options()
}

/// Whether a directive header says REPLACE (absent: COPY).
fn replaces(value: Option<&str>, header: &str) -> S3Result<bool> {
    match value {
        None | Some("COPY") => Ok(false),
        Some("REPLACE") => Ok(true),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "{header} must be COPY or REPLACE, not {other:?}"
        )),
    }
}

/// The attributes the copy gets.
struct Attributes {
    content_type: String,
    headers: ObjectHeaders,
    tags: Tags,
}

async fn attributes(
    state: &AppState,
    source: &Source,
    input: &CopyObjectInput,
    metadata_replaced: bool,
) -> S3Result<Attributes> {
    // What the request asks for, checked as a PUT's (metadata size, tag limits).
    let asked = input.object_attrs()?;
    let (content_type, headers) = if metadata_replaced {
        let content_type = validate_content_type(input.content_type.clone()).map_err(api_to_s3)?;
        (content_type, asked.headers)
    } else {
        let headers = state
            .store
            .object_headers(source.file.file_id)
            .await
            .map_err(internal)?;
        (source.file.content_type.clone(), headers)
    };
    let tags_replaced = replaces(
        input
            .tagging_directive
            .as_ref()
            .map(TaggingDirective::as_str),
        "x-amz-tagging-directive",
    )?;
    let tags = if tags_replaced {
        asked.tags
    } else {
        state
            .store
            .object_tags(source.file.file_id)
            .await
            .map_err(internal)?
    };
    Ok(Attributes {
        content_type,
        headers,
        tags,
    })
}

async fn apply(state: &AppState, file: &FileRow, attrs: &Attributes) -> S3Result<()> {
    let store = &state.store;
    store
        .set_object_headers(file.file_id, &attrs.headers)
        .await
        .map_err(internal)?;
    store
        .set_object_tags(file.file_id, &attrs.tags)
        .await
        .map_err(internal)
}

fn md5_bytes(hex_md5: Option<&str>) -> Option<[u8; 16]> {
    hex::decode(hex_md5?).ok()?.try_into().ok()
}

pub async fn copy_object(
    state: &AppState,
    tenant_id: &str,
    input: CopyObjectInput,
) -> S3Result<CopyObjectOutput> {
    refuse_unkept_promises(&input)?;
    validate_bucket(&input.bucket).map_err(api_to_s3)?;
    validate_key(&input.key).map_err(api_to_s3)?;
    let source = source(state, tenant_id, &input.copy_source).await?;
    copy_source_conditions!(input).check(&source)?;
    let metadata_replaced = replaces(
        input
            .metadata_directive
            .as_ref()
            .map(MetadataDirective::as_str),
        "x-amz-metadata-directive",
    )?;
    let onto_itself = source.bucket == input.bucket && source.key == input.key;
    if onto_itself && !metadata_replaced {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself \
             without changing the object's metadata (use x-amz-metadata-directive: REPLACE)"
        ));
    }
    let attrs = attributes(state, &source, &input, metadata_replaced).await?;
    let (etag, file) = if onto_itself {
        state
            .store
            .set_content_type(source.file.file_id, &attrs.content_type)
            .await
            .map_err(internal)?;
        tracing::info!(file = %source.file.file_id, "s3 object metadata replaced in place");
        (source.etag(), source.file.clone())
    } else {
        let body = plaintext(state, &source, 0..source.file.size).await?;
        let stored = gateway::put_object(
            state,
            PutRequest {
                tenant_id: tenant_id.to_string(),
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                size: source.file.size,
                content_type: attrs.content_type.clone(),
                expected_md5: md5_bytes(source.md5.as_deref()),
                // Replaced by the source's below: they describe the same bytes.
                checksums: Expected::default(),
                body,
                attrs: ObjectAttrs {
                    headers: attrs.headers.clone(),
                    tags: attrs.tags.clone(),
                },
                condition: WriteCondition::default(),
            },
        )
        .await?;
        let etag = stored.md5_hex;
        let file = state
            .store
            .file(stored.file_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("a copy stored without its file row"))?;
        let checksums = state
            .store
            .object_checksums(source.file.file_id)
            .await
            .map_err(internal)?;
        state
            .store
            .set_object_checksums(file.file_id, &checksums)
            .await
            .map_err(internal)?;
        tracing::info!(from = %source.file.file_id, to = %file.file_id, "s3 object copied");
        (etag, file)
    };
    if onto_itself {
        apply(state, &file, &attrs).await?;
    }
    let modified = file.distributed_at.unwrap_or(file.created_at);
    Ok(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(s3s::dto::ETag::Strong(etag)),
            last_modified: Some(Timestamp::from(zib_util::time::datetime(modified))),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// `x-amz-copy-source-range: bytes=first-last` (both inclusive, within the source).
fn copy_range(header: Option<&str>, size: u64) -> S3Result<std::ops::Range<u64>> {
    let Some(header) = header else {
        return Ok(0..size);
    };
    let invalid = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where \
             first and last are the zero-based offsets of the first and last bytes to copy, \
             within the source object of size {size}"
        )
    };
    let (first, last) = header
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(invalid)?;
    let first: u64 = first.trim().parse().map_err(|_| invalid())?;
    let last: u64 = last.trim().parse().map_err(|_| invalid())?;
    if first > last || last >= size {
        return Err(invalid());
    }
    Ok(first..last + 1)
}

pub async fn upload_part_copy(
    state: &AppState,
    tenant_id: &str,
    input: UploadPartCopyInput,
) -> S3Result<UploadPartCopyOutput> {
    if input.sse_customer_algorithm.is_some() || input.copy_source_sse_customer_algorithm.is_some()
    {
        return Err(s3_error!(NotImplemented, "SSE-C is not supported"));
    }
    let source = source(state, tenant_id, &input.copy_source).await?;
    copy_source_conditions!(input).check(&source)?;
    let window = copy_range(input.copy_source_range.as_deref(), source.file.size)?;
    let size = window.end - window.start;
    let body = plaintext(state, &source, window).await?;
    let stored = multipart::upload_part(
        state,
        PartUpload {
            tenant_id: tenant_id.to_string(),
            bucket: input.bucket,
            key: input.key,
            upload_id: input.upload_id,
            part_number: input.part_number,
            size,
            expected_md5: None,
            checksums: Expected::default(),
            body,
        },
    )
    .await?;
    Ok(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(s3s::dto::ETag::Strong(stored.md5_hex)),
            last_modified: Some(Timestamp::from(time::OffsetDateTime::now_utc())),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_are_inclusive_and_within_the_source() {
        assert_eq!(copy_range(None, 10).ok(), Some(0..10));
        assert_eq!(copy_range(Some("bytes=0-0"), 10).ok(), Some(0..1));
        assert_eq!(copy_range(Some("bytes=3-9"), 10).ok(), Some(3..10));
        for bad in ["bytes=3-10", "bytes=5-4", "bytes=-3", "3-4", "bytes=a-b"] {
            assert!(copy_range(Some(bad), 10).is_err(), "{bad}");
        }
    }
}
