//! The listing operations' answers (buckets, objects V1 and V2, uploads in
//! progress) as S3 words them: `encoding-type=url` encodes every name it names, an
//! empty `delimiter` is no delimiter (and is not echoed), an empty
//! `continuation-token` is no token, `max-buckets` pages the bucket list.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use zib_meta::ListFrom;

use super::super::dto::timestamp;
use super::super::errors::internal;
use super::super::listing::{self, url_encode};
use super::super::multipart;
use super::{max_keys, split, tenant, ZibS3};

/// Whether names in the answer are URL-encoded: only `url` is a known encoding.
fn url_encoded(requested: Option<&EncodingType>) -> S3Result<bool> {
    match requested.map(EncodingType::as_str) {
        None => Ok(false),
        Some(EncodingType::URL) => Ok(true),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
}

/// A name as the answer carries it.
fn named(encode: bool, name: String) -> String {
    if encode {
        url_encode(&name)
    } else {
        name
    }
}

fn encode_lists(encode: bool, objects: &mut [Object], prefixes: &mut [CommonPrefix]) {
    if !encode {
        return;
    }
    for o in objects {
        o.key = o.key.take().map(|k| url_encode(&k));
    }
    for p in prefixes {
        p.prefix = p.prefix.take().map(|k| url_encode(&k));
    }
}

/// S3 answers at most this many buckets a page; without `max-buckets`, all of them.
const MAX_BUCKETS: i32 = 10_000;

impl ZibS3 {
    pub(super) async fn list_buckets_page(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let max = match input.max_buckets {
            None => None,
            Some(n) if (1..=MAX_BUCKETS).contains(&n) => Some(n as usize),
            Some(_) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-buckets must be between 1 and {MAX_BUCKETS}"
                ))
            }
        };
        let after = match input
            .continuation_token
            .as_deref()
            .filter(|t| !t.is_empty())
        {
            None => None,
            Some(token) => match listing::decode_token(token) {
                Some(ListFrom::After(name)) => Some(name),
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "The continuation token provided is incorrect"
                    ))
                }
            },
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let mut buckets: Vec<Bucket> = self
            .state
            .store
            .list_bucket_stats(&tenant.id)
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|b| b.name.starts_with(&prefix))
            .filter(|b| after.as_ref().is_none_or(|a| b.name.as_str() > a.as_str()))
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_at)),
                bucket_region: None,
            })
            .collect();
        // The next page starts after the last bucket of this one.
        let next = match max {
            Some(max) if buckets.len() > max => {
                buckets.truncate(max);
                buckets
                    .last()
                    .and_then(|b| b.name.clone())
                    .map(|name| listing::encode_token(&ListFrom::After(name)))
            }
            _ => None,
        };
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                id: Some(tenant.id.clone()),
                display_name: Some(tenant.name.clone()),
            }),
            continuation_token: next,
            prefix: input.prefix.clone(),
        }))
    }

    pub(super) async fn list_objects_v1(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let encode = url_encoded(input.encoding_type.as_ref())?;
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
        let (mut contents, mut common_prefixes) = split(&page);
        encode_lists(encode, &mut contents, &mut common_prefixes);
        // S3 returns NextMarker only with a delimiter; clients use the last key otherwise.
        let next_marker = (page.truncated && delimiter.is_some())
            .then(|| page.last_name().map(str::to_string))
            .flatten();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(named(encode, prefix)),
            marker: Some(named(encode, input.marker.clone().unwrap_or_default())),
            max_keys: Some(max as i32),
            delimiter: delimiter.map(|d| named(encode, d.to_string())),
            is_truncated: Some(page.truncated),
            next_marker: next_marker.map(|m| named(encode, m)),
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_v2_page(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let encode = url_encoded(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        // An empty token is no token (what AWS SDKs' paginators may send first).
        let from = match (
            input
                .continuation_token
                .as_deref()
                .filter(|t| !t.is_empty()),
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
        let (mut contents, mut common_prefixes) = split(&page);
        encode_lists(encode, &mut contents, &mut common_prefixes);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket.clone()),
            prefix: Some(named(encode, prefix)),
            max_keys: Some(max as i32),
            key_count: Some(page.entries.len() as i32),
            delimiter: delimiter.map(|d| named(encode, d.to_string())),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token.clone(),
            next_continuation_token: page.next.as_ref().map(listing::encode_token),
            start_after: input.start_after.clone().map(|s| named(encode, s)),
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    /// Uploads in progress, by key then upload id (S3 orders a key's uploads by
    /// initiation), with `prefix`, `delimiter`, `key-marker`, `upload-id-marker` and
    /// `max-uploads`. A bucket with no upload lists empty, even one that does not exist.
    pub(super) async fn list_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let tenant = tenant(&req)?;
        let input = &req.input;
        let encode = url_encoded(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        let max = input.max_uploads.unwrap_or(1000).clamp(1, 1000) as usize;
        let all =
            multipart::pending_uploads(&self.state, &tenant.id, &input.bucket, &prefix).await?;
        let key_marker = input.key_marker.as_deref().filter(|k| !k.is_empty());
        let id_marker = input.upload_id_marker.as_deref().filter(|i| !i.is_empty());
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
        if encode {
            for u in &mut uploads {
                u.key = u.key.take().map(|k| url_encode(&k));
            }
            for p in &mut common_prefixes {
                p.prefix = p.prefix.take().map(|k| url_encode(&k));
            }
        }
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket.clone()),
            prefix: Some(named(encode, prefix)),
            delimiter: delimiter.map(|d| named(encode, d.to_string())),
            key_marker: input.key_marker.clone().map(|k| named(encode, k)),
            upload_id_marker: input.upload_id_marker.clone(),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key.map(|k| named(encode, k)),
            next_upload_id_marker: next_id,
            uploads: Some(uploads),
            common_prefixes: Some(common_prefixes),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }
}
