//! The S3 operations ZiB answers, for the tenant the outer layer authenticated.
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use zib_meta::{FileRow, ListFrom, S3ObjectEntry};

use crate::domain::read::plaintext_stream;
use crate::domain::read::range::{self, RangeRequest};
use crate::domain::registration::{validate_bucket, validate_content_type, validate_key};
use crate::error::ApiError;
use crate::state::AppState;

use super::checksums::{self, Algo, UploadChecksum};
use super::completion;
use super::conditional::WriteCondition;
use super::copy;
use super::dto::{etag, timestamp};
use super::errors::{api_to_s3, internal, no_such_bucket, no_such_key};
use super::gateway::{self, PutRequest};
use super::listing::{self, Entry, Page};
use super::multipart::{self, PartUpload};
use super::object_headers::{self, Described, WriteAttrs};
use super::refused::NewObjectOptions;
use super::sse::{self, EncryptionHeaders};
use super::{buckets, refused, tagging, versions, TenantCtx};

mod list;

pub struct ZibS3 {
    pub state: AppState,
}

fn tenant<T>(req: &S3Request<T>) -> S3Result<&zib_meta::Tenant> {
    req.extensions
        .get::<TenantCtx>()
        .map(|t| &t.0)
        .ok_or_else(|| s3_error!(AccessDenied, "request is not authenticated"))
}

fn object_dto(o: &S3ObjectEntry) -> Object {
    Object {
        key: Some(o.key.clone()),
        size: Some(o.size as i64),
        last_modified: Some(timestamp(o.modified_at)),
        e_tag: Some(etag(o.plaintext_md5.as_deref(), o.file_id)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

fn split(page: &Page) -> (Vec<Object>, Vec<CommonPrefix>) {
    let mut objects = Vec::new();
    let mut prefixes = Vec::new();
    for entry in &page.entries {
        match entry {
            Entry::Object(o) => objects.push(object_dto(o)),
            Entry::CommonPrefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(p.clone()),
            }),
        }
    }
    (objects, prefixes)
}

fn max_keys(requested: Option<i32>) -> S3Result<u32> {
    match requested {
        None => Ok(listing::MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok((n as u32).min(listing::MAX_KEYS)),
    }
}

impl ZibS3 {
    async fn require_bucket(&self, tenant_id: &str, bucket: &str) -> S3Result<()> {
        match self.state.store.bucket(tenant_id, bucket).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(no_such_bucket(bucket)),
            Err(e) => Err(internal(e)),
        }
    }

    /// Answers a request that only asks whether the tenant's bucket exists (HEAD
    /// bucket, bucket location): an empty output, or NoSuchBucket.
    async fn bucket_probe<I, O: Default>(
        &self,
        req: &S3Request<I>,
        bucket: &str,
    ) -> S3Result<S3Response<O>> {
        let tenant = tenant(req)?;
        self.require_bucket(&tenant.id, bucket).await?;
        Ok(S3Response::new(O::default()))
    }

    async fn readable_object(&self, tenant_id: &str, bucket: &str, key: &str) -> S3Result<FileRow> {
        self.require_bucket(tenant_id, bucket).await?;
        self.state
            .store
            .object(tenant_id, bucket, key)
            .await
            .map_err(internal)?
            .filter(|f| f.phase.is_readable())
            .ok_or_else(|| no_such_key(bucket, key))
    }

    #[allow(clippy::too_many_arguments)]
    async fn page(
        &self,
        tenant_id: &str,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        from: Option<ListFrom>,
        max: u32,
    ) -> S3Result<Page> {
        self.require_bucket(tenant_id, bucket).await?;
        let Some(from) = from else {
            // The cursor is past every possible key.
            return Ok(Page {
                entries: vec![],
                truncated: false,
                next: None,
            });
        };
        if max == 0 {
            return Ok(Page {
                entries: vec![],
                truncated: false,
                next: None,
            });
        }
        listing::list_page(
            &self.state.store,
            tenant_id,
            bucket,
            prefix,
            delimiter,
            from,
            max,
        )
        .await
        .map_err(internal)
    }
}

#[async_trait::async_trait]
impl S3 for ZibS3 {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.list_buckets_page(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let tenant = tenant(&req)?;
        let bucket = &req.input.bucket;
        validate_bucket(bucket).map_err(api_to_s3)?;
        refused::create_bucket(&req.input)?;
        self.state
            .store
            .ensure_bucket(&tenant.id, bucket)
            .await
            .map_err(internal)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket_probe(&req, &req.input.bucket).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket_probe(&req, &req.input.bucket).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        self.list_objects_v1(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.list_objects_v2_page(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let tenant = tenant(&req)?;
        req.input.refuse_unsupported_encryption()?;
        versions::check_version_id(req.input.version_id.as_deref())?;
        let file = self
            .readable_object(&tenant.id, &req.input.bucket, &req.input.key)
            .await?;
        let described = Described::load(&self.state, &file, &req.headers, &req.input).await?;
        let mode = req.input.checksum_mode.as_ref();
        let sums = checksums::stored_if_asked(&self.state, file.file_id, mode).await?;
        let mut resp = described.head(&file);
        checksums::fill!(resp.output, &sums, typed);
        Ok(resp)
    }

    /// Objects are read from the CDN: a 307 to `{cdn}/objects/{file_id}`, as S3 itself
    /// answers a temporary redirect (code `TemporaryRedirect`, `Location` header), for
    /// Bearer and presigned requests (browsers, curl -L, `requests` follow it).
    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let tenant = tenant(&req)?;
        req.input.refuse_unsupported_encryption()?;
        versions::check_version_id(req.input.version_id.as_deref())?;
        let file = self
            .readable_object(&tenant.id, &req.input.bucket, &req.input.key)
            .await?;
        if req.extensions.get::<super::HeaderSigned>().is_none() {
            // The CDN sends the stored headers; only the conditions are answered here.
            object_headers::preconditions(&self.state, &file, &req.headers).await?;
            return Err(redirect(&self.state.cdn_url(file.file_id)));
        }
        let described = Described::load(&self.state, &file, &req.headers, &req.input).await?;
        // AWS SDKs and the AWS CLI turn any 307 on GetObject into an error instead of
        // following it, so header-signed requests get the same stream the CDN serves.
        let requested = range::parse(
            req.headers
                .get(http::header::RANGE)
                .and_then(|v| v.to_str().ok()),
            file.size,
        );
        // S3 returns an object's checksums with the whole object only.
        let mode = matches!(requested, RangeRequest::Full)
            .then_some(req.input.checksum_mode.as_ref())
            .flatten();
        let sums = checksums::stored_if_asked(&self.state, file.file_id, mode).await?;
        let (window, content_range) = match requested {
            RangeRequest::Full => (0..file.size, None),
            RangeRequest::Partial(r) => {
                let content_range = format!("bytes {}-{}/{}", r.start, r.end - 1, file.size);
                (r, Some(content_range))
            }
            RangeRequest::Unsatisfiable => return Err(s3_error!(InvalidRange)),
        };
        let content_length = Some((window.end - window.start) as i64);
        let plaintext =
            plaintext_stream(&self.state, &file, window)
                .await
                .map_err(|e| match e {
                    // Not temporary: the S3 form of the CDN's `502 unreadable`.
                    ApiError::Unreadable(_) => api_to_s3(e),
                    e => s3_error!(
                        ServiceUnavailable,
                        "the object is temporarily unreadable ({})",
                        e.status()
                    ),
                })?;
        let body = StreamingBlob::from(s3s::Body::http_body_unsync(axum::body::Body::from_stream(
            plaintext,
        )));
        let mut output = GetObjectOutput {
            body: Some(body),
            content_length,
            content_range,
            ..Default::default()
        };
        described.fill_get(&mut output);
        checksums::fill!(output, &sums, typed);
        Ok(S3Response::new(output))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let tenant_id = tenant(&req)?.id.clone();
        let input = req.input;
        input.refuse_unsupported_encryption()?;
        let attrs = input.object_attrs()?;
        let condition =
            WriteCondition::from_headers(input.if_match.as_ref(), input.if_none_match.as_ref())?;
        validate_bucket(&input.bucket).map_err(api_to_s3)?;
        validate_key(&input.key).map_err(api_to_s3)?;
        input.refuse_unsupported_options()?;
        // Buckets come into being on first upload, as with `/v1/api/upload/initiate`.
        let size = content_length(input.content_length, "PutObject")?;
        let content_type = validate_content_type(input.content_type).map_err(api_to_s3)?;
        let expected_md5 = content_md5(input.content_md5.as_deref())?;
        // Every object also gets the CRC64NVME of its bytes, as S3 computes by default.
        let sums = checksums::expected!(req, input)?.with(Algo::Crc64Nvme);
        let body = input
            .body
            .unwrap_or_else(|| StreamingBlob::from(s3s::Body::empty()));
        let stored = gateway::put_object(
            &self.state,
            PutRequest {
                tenant_id,
                bucket: input.bucket,
                key: input.key,
                size,
                content_type,
                expected_md5,
                checksums: sums,
                body,
                attrs,
                condition,
            },
        )
        .await?;
        let mut output = PutObjectOutput {
            e_tag: Some(ETag::Strong(stored.md5_hex)),
            size: Some(size as i64),
            server_side_encryption: sse::reported(),
            ..Default::default()
        };
        checksums::fill!(output, &stored.checksums, typed);
        Ok(S3Response::new(output))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let tenant_id = tenant(&req)?.id.clone();
        let input = req.input;
        input.refuse_unsupported_encryption()?;
        let attrs = input.object_attrs()?;
        validate_bucket(&input.bucket).map_err(api_to_s3)?;
        validate_key(&input.key).map_err(api_to_s3)?;
        input.refuse_unsupported_options()?;
        let content_type = validate_content_type(input.content_type).map_err(api_to_s3)?;
        let checksum = UploadChecksum::from_request(
            input.checksum_algorithm.as_ref(),
            input.checksum_type.as_ref(),
        )?;
        let upload_id = multipart::create(
            &self.state,
            &tenant_id,
            &input.bucket,
            &input.key,
            content_type,
            attrs,
            checksum,
        )
        .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            server_side_encryption: sse::reported(),
            checksum_algorithm: checksum.map(UploadChecksum::algorithm),
            checksum_type: checksum.map(UploadChecksum::kind),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let tenant_id = tenant(&req)?.id.clone();
        let input = req.input;
        input.refuse_unsupported_encryption()?;
        let size = content_length(input.content_length, "UploadPart")?;
        let expected_md5 = content_md5(input.content_md5.as_deref())?;
        let sums = checksums::expected!(req, input)?;
        let stored = multipart::upload_part(
            &self.state,
            PartUpload {
                tenant_id,
                bucket: input.bucket,
                key: input.key,
                upload_id: input.upload_id,
                part_number: input.part_number,
                size,
                expected_md5,
                checksums: sums,
                body: input
                    .body
                    .unwrap_or_else(|| StreamingBlob::from(s3s::Body::empty())),
            },
        )
        .await?;
        let mut output = UploadPartOutput {
            e_tag: Some(ETag::Strong(stored.md5_hex)),
            ..Default::default()
        };
        checksums::fill!(output, &stored.checksums);
        Ok(S3Response::new(output))
    }

    /// A retry after a lost answer gets the same result (s3/completion.rs).
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let tenant_id = tenant(&req)?.id.clone();
        let output = completion::complete(&self.state, &tenant_id, req.input).await?;
        Ok(S3Response::new(output))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        multipart::abort(
            &self.state,
            &tenant.id,
            &input.bucket,
            &input.key,
            &input.upload_id,
        )
        .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.list_uploads(req).await
    }

    /// Every part at once: an upload has at most 10000.
    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let after = input.part_number_marker.unwrap_or(0);
        let max = input.max_parts.unwrap_or(1000).clamp(1, 1000);
        let (stored, checksum) = multipart::list_parts(
            &self.state,
            &tenant.id,
            &input.bucket,
            &input.key,
            &input.upload_id,
        )
        .await?;
        let rest: Vec<_> = stored.into_iter().filter(|p| p.number > after).collect();
        let truncated = rest.len() > max as usize;
        let page: Vec<Part> = rest
            .into_iter()
            .take(max as usize)
            .map(|p| {
                let mut part = Part {
                    part_number: Some(p.number),
                    size: Some(p.size as i64),
                    e_tag: Some(ETag::Strong(p.md5)),
                    last_modified: Some(timestamp(p.modified_ms)),
                    ..Default::default()
                };
                checksums::fill!(part, &p.checksums);
                part
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            upload_id: Some(input.upload_id.clone()),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: page.last().and_then(|p| p.part_number),
            max_parts: Some(max),
            is_truncated: Some(truncated),
            parts: Some(page),
            checksum_algorithm: checksum.map(UploadChecksum::algorithm),
            checksum_type: checksum.map(UploadChecksum::kind),
            ..Default::default()
        }))
    }

    /// Server-side: a new object sealed from the source's plaintext (s3/copy.rs).
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let tenant_id = tenant(&req)?.id.clone();
        let output = copy::copy_object(&self.state, &tenant_id, req.input).await?;
        Ok(S3Response::new(output))
    }

    /// A range of an object, sealed into the upload's spool as a part (s3/copy.rs).
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let tenant_id = tenant(&req)?.id.clone();
        let output = copy::upload_part_copy(&self.state, &tenant_id, req.input).await?;
        Ok(S3Response::new(output))
    }

    /// Idempotent like S3: a missing key is a 204 too.
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let tenant = tenant(&req)?;
        let (bucket, key) = (&req.input.bucket, &req.input.key);
        self.require_bucket(&tenant.id, bucket).await?;
        versions::check_version_id(req.input.version_id.as_deref())?;
        buckets::delete_key(&self.state, &tenant.id, bucket, key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let tenant_id = tenant(&req)?.id.clone();
        let input = req.input;
        let file = self
            .readable_object(&tenant_id, &input.bucket, &input.key)
            .await?;
        tagging::put(&self.state, file.file_id, input.tagging).await?;
        Ok(S3Response::new(PutObjectTaggingOutput::default()))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let tenant = tenant(&req)?;
        let (bucket, key) = (&req.input.bucket, &req.input.key);
        let file = self.readable_object(&tenant.id, bucket, key).await?;
        let tag_set = tagging::get(&self.state, file.file_id).await?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set,
            version_id: None,
        }))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let tenant = tenant(&req)?;
        let (bucket, key) = (&req.input.bucket, &req.input.key);
        let file = self.readable_object(&tenant.id, bucket, key).await?;
        tagging::delete(&self.state, file.file_id).await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let tenant = tenant(&req)?.clone();
        let output = buckets::delete_objects(&self.state, &tenant, req.input).await?;
        Ok(S3Response::new(output))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        buckets::delete_bucket(&self.state, tenant(&req)?, &req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let tenant = tenant(&req)?;
        let output =
            versions::get_bucket_versioning(&self.state, tenant, &req.input.bucket).await?;
        Ok(S3Response::new(output))
    }

    async fn put_bucket_versioning(
        &self,
        _req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        Err(refused::versioning_on())
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let tenant = tenant(&req)?;
        let output = versions::list_object_versions(&self.state, tenant, &req.input).await?;
        Ok(S3Response::new(output))
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let acl = refused::get_bucket_acl(&self.state, tenant(&req)?, &req.input).await?;
        Ok(S3Response::new(acl))
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        let acl = refused::get_object_acl(&self.state, tenant(&req)?, &req.input).await?;
        Ok(S3Response::new(acl))
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        refused::put_bucket_acl(&self.state, tenant(&req)?, &req.input).await?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        refused::put_object_acl(&self.state, tenant(&req)?, &req.input).await?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    async fn post_object(
        &self,
        _req: S3Request<PostObjectInput>,
    ) -> S3Result<S3Response<PostObjectOutput>> {
        Err(refused::post_object())
    }
}

/// The body's size: the envelope's is fixed before the first byte is sealed.
fn content_length(header: Option<i64>, operation: &str) -> S3Result<u64> {
    header
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| s3_error!(MissingContentLength, "{operation} needs a Content-Length"))
}

/// `Content-MD5` (base64 of 16 bytes), checked against the body before it is stored.
fn content_md5(header: Option<&str>) -> S3Result<Option<[u8; 16]>> {
    header
        .map(|b64| {
            STANDARD
                .decode(b64)
                .ok()
                .and_then(|v| <[u8; 16]>::try_from(v).ok())
                .ok_or_else(|| s3_error!(InvalidDigest))
        })
        .transpose()
}

fn redirect(location: &str) -> S3Error {
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("TemporaryRedirect".into()),
        "objects are served by the CDN: follow Location",
    );
    err.set_status_code(StatusCode::TEMPORARY_REDIRECT);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(http::header::LOCATION, v);
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    err.set_headers(headers);
    err
}
