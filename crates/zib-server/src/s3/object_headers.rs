//! User metadata (`x-amz-meta-*`), the five standard headers (`Cache-Control`,
//! `Content-Disposition`, `Content-Encoding`, `Content-Language`, `Expires`) and tags an
//! S3 write asks to keep with the object. They are stored on the file row when it is
//! registered (`zib_meta::object_attrs`) and returned by S3 GET/HEAD and the CDN.

use http::{HeaderMap, HeaderValue};
use s3s::dto::*;
use s3s::{s3_error, S3Response, S3Result};
use serde::{Deserialize, Serialize};
use zib_meta::{FileRow, ObjectHeaders, Tags};

use crate::state::AppState;

use super::errors::internal;
use super::{conditional, sse, tagging};

/// S3's limit on user metadata: the UTF-8 bytes of every name and value together.
pub const MAX_METADATA_BYTES: usize = 2048;

/// What a write asks of the object besides its bytes (kept in a multipart upload's
/// record until Complete).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ObjectAttrs {
    #[serde(default)]
    pub headers: ObjectHeaders,
    #[serde(default)]
    pub tags: Tags,
}

/// The writes that carry headers, metadata and `x-amz-tagging` (same field names in
/// each s3s input).
pub trait WriteAttrs {
    /// The attributes the request asks for, checked as S3 checks them.
    fn object_attrs(&self) -> S3Result<ObjectAttrs>;
}

macro_rules! write_attrs {
    ($($input:ty),*) => {$(
        impl WriteAttrs for $input {
            fn object_attrs(&self) -> S3Result<ObjectAttrs> {
                let headers = ObjectHeaders {
                    cache_control: self.cache_control.clone(),
                    content_disposition: self.content_disposition.clone(),
                    content_encoding: stored_encoding(self.content_encoding.as_deref()),
                    content_language: self.content_language.clone(),
                    expires: self.expires.as_ref().and_then(http_date),
                    metadata: user_metadata(self.metadata.as_ref())?,
                };
                let tags = match self.tagging.as_deref() {
                    Some(header) => tagging::parse_header(header)?,
                    None => Tags::new(),
                };
                Ok(ObjectAttrs { headers, tags })
            }
        }
    )*};
}

write_attrs!(PutObjectInput, CreateMultipartUploadInput, CopyObjectInput);

/// `aws-chunked` describes the request's framing, not the object: S3 drops it.
fn stored_encoding(header: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = header?
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

fn http_date(t: &Timestamp) -> Option<String> {
    let mut out = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

/// `x-amz-meta-*` as stored: names lower-case (HTTP names are case-insensitive), at
/// most [`MAX_METADATA_BYTES`] in all. s3s has already decoded RFC 2047 values.
fn user_metadata(
    metadata: Option<&Metadata>,
) -> S3Result<std::collections::BTreeMap<String, String>> {
    let Some(metadata) = metadata else {
        return Ok(Default::default());
    };
    let bytes: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_METADATA_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size ({bytes} bytes; at most {MAX_METADATA_BYTES})"
        ));
    }
    Ok(metadata
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect())
}

/// `response-cache-control`, `response-content-*`, `response-expires`: a signed GET or
/// HEAD may ask for other headers than the stored ones, for this answer only.
pub struct Overrides<'a> {
    cache_control: &'a Option<String>,
    content_disposition: &'a Option<String>,
    content_encoding: &'a Option<String>,
    content_language: &'a Option<String>,
    content_type: &'a Option<String>,
    expires: &'a Option<Timestamp>,
}

pub trait ResponseOverrides {
    fn overrides(&self) -> Overrides<'_>;
}

macro_rules! response_overrides {
    ($($input:ty),*) => {$(
        impl ResponseOverrides for $input {
            fn overrides(&self) -> Overrides<'_> {
                Overrides {
                    cache_control: &self.response_cache_control,
                    content_disposition: &self.response_content_disposition,
                    content_encoding: &self.response_content_encoding,
                    content_language: &self.response_content_language,
                    content_type: &self.response_content_type,
                    expires: &self.response_expires,
                }
            }
        }
    )*};
}

response_overrides!(GetObjectInput, HeadObjectInput);

/// The stored headers as s3s serializes them (RFC 2047 for non-ASCII metadata).
struct Served {
    cache_control: Option<String>,
    content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub content_type: Option<String>,
    pub expires: Option<Timestamp>,
    pub metadata: Option<Metadata>,
}

impl Served {
    fn new(headers: ObjectHeaders, content_type: String) -> Self {
        Served {
            cache_control: headers.cache_control,
            content_disposition: headers.content_disposition,
            content_encoding: headers.content_encoding,
            content_language: headers.content_language,
            content_type: Some(content_type),
            expires: headers
                .expires
                .and_then(|e| Timestamp::parse(TimestampFormat::HttpDate, &e).ok()),
            metadata: (!headers.metadata.is_empty())
                .then(|| headers.metadata.into_iter().collect()),
        }
    }

    /// The stored headers of `file`, as GET/HEAD answer them, with the request's
    /// `response-*` query parameters in place of what is stored.
    async fn load(
        state: &AppState,
        file: &FileRow,
        input: &impl ResponseOverrides,
    ) -> S3Result<Self> {
        let headers = state
            .store
            .object_headers(file.file_id)
            .await
            .map_err(internal)?;
        Ok(Served::new(headers, file.content_type.clone()).with_overrides(input))
    }

    fn with_overrides(mut self, input: &impl ResponseOverrides) -> Self {
        let o = input.overrides();
        let replace = |slot: &mut Option<String>, with: &Option<String>| {
            if with.is_some() {
                slot.clone_from(with);
            }
        };
        replace(&mut self.cache_control, o.cache_control);
        replace(&mut self.content_disposition, o.content_disposition);
        replace(&mut self.content_encoding, o.content_encoding);
        replace(&mut self.content_language, o.content_language);
        replace(&mut self.content_type, o.content_type);
        if o.expires.is_some() {
            self.expires.clone_from(o.expires);
        }
        self
    }

    fn fill_head(self, out: &mut HeadObjectOutput) {
        out.cache_control = self.cache_control;
        out.content_disposition = self.content_disposition;
        out.content_encoding = self.content_encoding;
        out.content_language = self.content_language;
        out.content_type = self.content_type;
        out.expires = self.expires;
        out.metadata = self.metadata;
    }

    fn fill_get(self, out: &mut GetObjectOutput) {
        out.cache_control = self.cache_control;
        out.content_disposition = self.content_disposition;
        out.content_encoding = self.content_encoding;
        out.content_language = self.content_language;
        out.content_type = self.content_type;
        out.expires = self.expires;
        out.metadata = self.metadata;
    }
}

/// Checks a read's conditional headers against the ETag S3 serves for `file`; the
/// ETag and modification time it compared. Enough for a GET answered by a redirect.
pub async fn preconditions(
    state: &AppState,
    file: &FileRow,
    headers: &HeaderMap,
) -> S3Result<(String, i64)> {
    let md5 = state
        .store
        .plaintext_md5(file.file_id)
        .await
        .map_err(internal)?;
    let e_tag = conditional::served_etag(md5.as_deref(), file);
    let modified_ms = file.distributed_at.unwrap_or(file.created_at);
    conditional::check_read(headers, &e_tag, modified_ms)?;
    Ok((e_tag, modified_ms))
}

/// What HEAD and GET answer about an object besides its bytes, once the request's
/// preconditions hold (otherwise the 304 / 412 is the error).
pub struct Described {
    e_tag: String,
    modified_ms: i64,
    served: Served,
    tag_count: Option<i32>,
}

impl Described {
    pub async fn load(
        state: &AppState,
        file: &FileRow,
        headers: &HeaderMap,
        input: &impl ResponseOverrides,
    ) -> S3Result<Self> {
        let (e_tag, modified_ms) = preconditions(state, file, headers).await?;
        Ok(Described {
            e_tag,
            modified_ms,
            served: Served::load(state, file, input).await?,
            tag_count: tagging::count(state, file.file_id).await?,
        })
    }

    fn last_modified(&self) -> Timestamp {
        Timestamp::from(zib_util::time::datetime(self.modified_ms))
    }

    /// HEAD's answer, with the file id (`x-zib-file-id`) and `x-amz-tagging-count`.
    pub fn head(self, file: &FileRow) -> S3Response<HeadObjectOutput> {
        let mut output = HeadObjectOutput {
            content_length: Some(file.size as i64),
            e_tag: Some(ETag::Strong(self.e_tag.clone())),
            last_modified: Some(self.last_modified()),
            accept_ranges: Some("bytes".to_string()),
            server_side_encryption: sse::reported(),
            ..Default::default()
        };
        let tag_count = self.tag_count;
        self.served.fill_head(&mut output);
        let mut resp = S3Response::new(output);
        if let Ok(v) = HeaderValue::from_str(&file.file_id.to_string()) {
            resp.headers.insert("x-zib-file-id", v);
        }
        if let Some(n) = tag_count {
            resp.headers
                .insert("x-amz-tagging-count", HeaderValue::from(n));
        }
        resp
    }

    /// Fills GET's answer (the body, length and range are the caller's).
    pub fn fill_get(self, out: &mut GetObjectOutput) {
        out.e_tag = Some(ETag::Strong(self.e_tag.clone()));
        out.last_modified = Some(self.last_modified());
        out.accept_ranges = Some("bytes".to_string());
        out.server_side_encryption = sse::reported();
        out.tag_count = self.tag_count;
        self.served.fill_get(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_chunked_is_not_stored() {
        assert_eq!(stored_encoding(Some("aws-chunked")), None);
        assert_eq!(
            stored_encoding(Some("aws-chunked,gzip")),
            Some("gzip".to_string())
        );
        assert_eq!(stored_encoding(Some("br")), Some("br".to_string()));
        assert_eq!(stored_encoding(None), None);
    }

    #[test]
    fn metadata_over_2_kb_is_refused() {
        let mut m = Metadata::default();
        m.insert("Name".into(), "x".repeat(2044));
        assert_eq!(
            user_metadata(Some(&m))
                .unwrap()
                .get("name")
                .map(String::len),
            Some(2044)
        );
        m.insert("b".into(), "y".into());
        let err = user_metadata(Some(&m)).unwrap_err();
        assert_eq!(*err.code(), s3s::S3ErrorCode::MetadataTooLarge);
    }
}
