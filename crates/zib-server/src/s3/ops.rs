//! The S3 operations ZiB answers, for the tenant the outer layer authenticated.
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderMap, HeaderValue, StatusCode};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use zib_meta::{FileRow, ListFrom, S3ObjectEntry};

use crate::domain::deletion;
use crate::domain::read::plaintext_stream;
use crate::domain::read::range::{self, RangeRequest};
use crate::domain::registration::{validate_bucket, validate_content_type, validate_key};
use crate::error::ApiError;
use crate::state::AppState;

use super::checksums::{self, Algo, UploadChecksum};
use super::errors::{api_to_s3, internal, no_such_bucket, no_such_key};
use super::gateway::{self, PutRequest};
use super::listing::{self, Entry, Page};
use super::multipart::{self, ListedPart, PartUpload};
use super::TenantCtx;

pub struct ZibS3 {
    pub state: AppState,
}

fn tenant<T>(req: &S3Request<T>) -> S3Result<&zib_meta::Tenant> {
    req.extensions
        .get::<TenantCtx>()
        .map(|t| &t.0)
        .ok_or_else(|| s3_error!(AccessDenied, "request is not authenticated"))
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from(zib_util::time::datetime(ms))
}

/// The MD5 of the plaintext for gateway uploads; other files (encrypted by the SDK,
/// whose plaintext the server never sees) get their file id, stable and unique.
fn etag(md5: Option<&str>, file_id: zib_proto::FileId) -> ETag {
    ETag::Strong(
        md5.map(str::to_string)
            .unwrap_or_else(|| file_id.0.simple().to_string()),
    )
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
        let tenant = tenant(&req)?;
        let buckets = self
            .state
            .store
            .list_bucket_stats(&tenant.id)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_at)),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                id: Some(tenant.id.clone()),
                display_name: Some(tenant.name.clone()),
            }),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let tenant = tenant(&req)?;
        let bucket = &req.input.bucket;
        validate_bucket(bucket).map_err(api_to_s3)?;
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
        let tenant = tenant(&req)?;
        let input = &req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        let from = match input.marker.as_deref().filter(|m| !m.is_empty()) {
            Some(marker) => listing::from_marker(marker, &prefix, delimiter),
            None => Some(ListFrom::AtOrAfter(String::new())),
        };
        let max = max_keys(input.max_keys)?;
        let page = self
            .page(&tenant.id, &input.bucket, &prefix, delimiter, from, max)
            .await?;
        let (contents, common_prefixes) = split(&page);
        // S3 returns NextMarker only with a delimiter; clients use the last key otherwise.
        let next_marker = (page.truncated && delimiter.is_some())
            .then(|| page.last_name().map(str::to_string))
            .flatten();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(prefix),
            marker: Some(input.marker.clone().unwrap_or_default()),
            max_keys: Some(max as i32),
            delimiter: input.delimiter.clone(),
            is_truncated: Some(page.truncated),
            next_marker,
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        let from = match (
            input.continuation_token.as_deref(),
            input.start_after.as_deref().filter(|s| !s.is_empty()),
        ) {
            (Some(token), _) => Some(listing::decode_token(token).ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "The continuation token provided is incorrect"
                )
            })?),
            (None, Some(after)) => Some(ListFrom::After(after.to_string())),
            (None, None) => Some(ListFrom::AtOrAfter(String::new())),
        };
        let max = max_keys(input.max_keys)?;
        let page = self
            .page(&tenant.id, &input.bucket, &prefix, delimiter, from, max)
            .await?;
        let (contents, common_prefixes) = split(&page);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket.clone()),
            prefix: Some(prefix),
            max_keys: Some(max as i32),
            key_count: Some(page.entries.len() as i32),
            delimiter: input.delimiter.clone(),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token.clone(),
            next_continuation_token: page.next.as_ref().map(listing::encode_token),
            start_after: input.start_after.clone(),
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let tenant = tenant(&req)?;
        let file = self
            .readable_object(&tenant.id, &req.input.bucket, &req.input.key)
            .await?;
        let md5 = self
            .state
            .store
            .plaintext_md5(file.file_id)
            .await
            .map_err(internal)?;
        let mut output = HeadObjectOutput {
            content_length: Some(file.size as i64),
            content_type: Some(file.content_type.clone()),
            e_tag: Some(etag(md5.as_deref(), file.file_id)),
            last_modified: Some(timestamp(file.distributed_at.unwrap_or(file.created_at))),
            accept_ranges: Some("bytes".to_string()),
            ..Default::default()
        };
        let mode = req.input.checksum_mode.as_ref();
        let sums = checksums::stored_if_asked(&self.state, file.file_id, mode).await?;
        checksums::fill!(output, &sums, typed);
        let mut resp = S3Response::new(output);
        if let Ok(v) = HeaderValue::from_str(&file.file_id.to_string()) {
            resp.headers.insert("x-zib-file-id", v);
        }
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
        let file = self
            .readable_object(&tenant.id, &req.input.bucket, &req.input.key)
            .await?;
        if req.extensions.get::<super::HeaderSigned>().is_none() {
            return Err(redirect(&self.state.cdn_url(file.file_id)));
        }
        // AWS SDKs and the AWS CLI turn any 307 on GetObject into an error instead of
        // following it, so header-signed requests get the same stream the CDN serves.
        let md5 = self
            .state
            .store
            .plaintext_md5(file.file_id)
            .await
            .map_err(internal)?;
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
            content_type: Some(file.content_type.clone()),
            e_tag: Some(etag(md5.as_deref(), file.file_id)),
            last_modified: Some(timestamp(file.distributed_at.unwrap_or(file.created_at))),
            accept_ranges: Some("bytes".to_string()),
            ..Default::default()
        };
        checksums::fill!(output, &sums, typed);
        Ok(S3Response::new(output))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let tenant_id = tenant(&req)?.id.clone();
        let input = req.input;
        validate_bucket(&input.bucket).map_err(api_to_s3)?;
        validate_key(&input.key).map_err(api_to_s3)?;
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
            },
        )
        .await?;
        let mut output = PutObjectOutput {
            e_tag: Some(ETag::Strong(stored.md5_hex)),
            size: Some(size as i64),
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
        validate_bucket(&input.bucket).map_err(api_to_s3)?;
        validate_key(&input.key).map_err(api_to_s3)?;
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
            checksum,
        )
        .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
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

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let tenant_id = tenant(&req)?.id.clone();
        let input = req.input;
        let mut listed = Vec::new();
        for part in input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
        {
            let (Some(number), Some(etag)) = (part.part_number, part.e_tag) else {
                return Err(s3_error!(
                    MalformedXML,
                    "every listed part needs a PartNumber and an ETag"
                ));
            };
            listed.push(ListedPart {
                number,
                etag: etag.into_value(),
                checksums: checksums::sent!(part),
            });
        }
        let ready = multipart::prepare_complete(
            &self.state,
            &tenant_id,
            &input.bucket,
            &input.key,
            &input.upload_id,
            listed,
        )
        .await?
        .with_object_checksum(&checksums::sent!(input))?;
        // Storing re-seals the whole object, so it takes longer the larger the object.
        // It runs on its own task (a client that gives up does not leave it half done);
        // when it outlasts `s3_complete_wait`, s3s answers 200 and keeps the connection
        // alive with whitespace until the result follows, as S3 does, so clients'
        // read timeouts do not fire; an error found that late is the document after
        // the whitespace (see `without_second_declaration`).
        let state = self.state.clone();
        let mut stored = tokio::spawn(async move { ready.store(&state).await });
        let (bucket, key) = (input.bucket, input.key);
        let joined = |j: Result<S3Result<gateway::Stored>, tokio::task::JoinError>| {
            j.map_err(|e| internal(format!("completing the upload: {e}")))?
        };
        let output = |stored: gateway::Stored, bucket: String, key: String| {
            let mut output = CompleteMultipartUploadOutput {
                bucket: Some(bucket),
                key: Some(key),
                e_tag: Some(ETag::Strong(stored.md5_hex)),
                ..Default::default()
            };
            checksums::fill!(output, &stored.checksums, typed);
            output
        };
        if let Ok(done) =
            tokio::time::timeout(self.state.config.s3_complete_wait, &mut stored).await
        {
            return Ok(S3Response::new(output(joined(done)?, bucket, key)));
        }
        let result = async move { Ok(output(joined(stored.await)?, bucket, key)) };
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            future: Some(Box::pin(result)),
            ..Default::default()
        }))
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

    /// Uploads in progress, by key then upload id (S3 orders a key's uploads by
    /// initiation), with `prefix`, `delimiter`, `key-marker`, `upload-id-marker` and
    /// `max-uploads`. A bucket with no upload lists empty, even one that does not exist.
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        let max = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
        let all =
            multipart::pending_uploads(&self.state, &tenant.id, &input.bucket, &prefix).await?;
        let key_marker = input.key_marker.as_deref();
        let id_marker = input.upload_id_marker.as_deref();
        let mut uploads = Vec::new();
        let mut common_prefixes: Vec<CommonPrefix> = Vec::new();
        let mut last: Option<(String, Option<String>)> = None;
        let mut truncated = false;
        for u in all {
            let past_marker = match (key_marker, id_marker) {
                (Some(k), Some(id)) => (u.key.as_str(), u.upload_id.as_str()) > (k, id),
                (Some(k), None) => u.key.as_str() > k,
                _ => true,
            };
            if !past_marker {
                continue;
            }
            let rolled_up = listing::common_prefix(&u.key, &prefix, delimiter).map(str::to_string);
            if let Some(common) = &rolled_up {
                if common_prefixes.last().and_then(|p| p.prefix.as_deref()) == Some(common.as_str())
                {
                    continue;
                }
                if key_marker.is_some_and(|k| k.starts_with(common.as_str())) {
                    continue;
                }
            }
            if uploads.len() + common_prefixes.len() == max {
                truncated = true;
                break;
            }
            match rolled_up {
                Some(common) => {
                    last = Some((common.clone(), None));
                    common_prefixes.push(CommonPrefix {
                        prefix: Some(common),
                    });
                }
                None => {
                    last = Some((u.key.clone(), Some(u.upload_id.clone())));
                    uploads.push(MultipartUpload {
                        key: Some(u.key),
                        upload_id: Some(u.upload_id),
                        initiated: Some(timestamp(u.created_ms)),
                        ..Default::default()
                    });
                }
            }
        }
        let (next_key, next_id) = match (truncated, last) {
            (true, Some((key, id))) => (Some(key), id),
            _ => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket.clone()),
            prefix: Some(prefix),
            delimiter: input.delimiter.clone(),
            key_marker: input.key_marker.clone(),
            upload_id_marker: input.upload_id_marker.clone(),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(uploads),
            common_prefixes: Some(common_prefixes),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
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

    /// Idempotent like S3: a missing key is a 204 too.
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let tenant = tenant(&req)?;
        let (bucket, key) = (&req.input.bucket, &req.input.key);
        self.require_bucket(&tenant.id, bucket).await?;
        let current = self
            .state
            .store
            .object(&tenant.id, bucket, key)
            .await
            .map_err(internal)?;
        if let Some(file) = current {
            deletion::delete_file(&self.state, &tenant.id, file.file_id)
                .await
                .map_err(api_to_s3)?;
        }
        Ok(S3Response::new(DeleteObjectOutput::default()))
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
