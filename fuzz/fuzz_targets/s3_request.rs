//! S3 requests as the surface's inner service sees them: the path and query rewritten
//! by `s3::inner_uri` (prefix and presigned-signature parameters removed), then
//! routed, query-parsed and body-parsed by s3s (pinned =0.14.1) into an operation,
//! whose listing parameters go through the surface's own `s3::listing` helpers.
//! The operations here are stubs: what is fuzzed is everything before them.
//!
//! Input: `METHOD /path?query` on the first line, `Name: value` header lines, a
//! blank line, then the body.
//!
//! Properties: no panic; bad input is a 4xx (or 501 for an operation the surface
//! does not serve), never a 500; continuation tokens round-trip; a marker naming a
//! common prefix resumes past every key under it; `encoding-type=url` names are
//! printable ASCII without `+` and decode back to the name.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Request, S3Response, S3Result, S3};
use zib_meta::ListFrom;
use zib_server::s3::listing;

struct Stub;

/// `%XX` to its byte, anything else as it is: the inverse `encoding-type=url` needs.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[async_trait::async_trait]
impl S3 for Stub {
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = &req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        for name in [
            Some(&prefix),
            input.marker.as_ref(),
            input.delimiter.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let encoded = listing::url_encode(name);
            assert!(encoded.bytes().all(|b| b.is_ascii_graphic() && b != b'+'));
            assert_eq!(percent_decode(&encoded), name.as_bytes());
        }
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        if let Some(marker) = input.marker.as_deref().filter(|m| !m.is_empty()) {
            match listing::from_marker(marker, &prefix, delimiter) {
                Some(ListFrom::After(k)) => assert_eq!(k, marker),
                Some(ListFrom::AtOrAfter(k)) => {
                    assert!(k.as_str() > marker, "{k:?} <= {marker:?}");
                    assert!(!k.starts_with(marker));
                }
                None => assert!(marker.chars().all(|c| c == char::MAX)),
            }
            if let Some(d) = delimiter {
                if let Some(p) = listing::common_prefix(marker, &prefix, Some(d)) {
                    assert!(marker.starts_with(p) && p.ends_with(d));
                }
            }
        }
        Ok(S3Response::new(ListObjectsOutput::default()))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        if let Some(token) = req.input.continuation_token.as_deref() {
            if let Some(from) = listing::decode_token(token) {
                let again = listing::encode_token(&from);
                assert_eq!(listing::decode_token(&again), Some(from));
            }
        }
        if let Some(after) = req.input.start_after.as_deref() {
            let from = ListFrom::After(after.to_string());
            assert_eq!(
                listing::decode_token(&listing::encode_token(&from)),
                Some(from)
            );
        }
        Ok(S3Response::new(ListObjectsV2Output::default()))
    }

    async fn complete_multipart_upload(
        &self,
        _req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        Ok(S3Response::new(CompleteMultipartUploadOutput::default()))
    }

    async fn delete_objects(
        &self,
        _req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        Ok(S3Response::new(DeleteObjectsOutput::default()))
    }

    async fn delete_object(
        &self,
        _req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        _req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        Ok(S3Response::new(ListMultipartUploadsOutput::default()))
    }

    async fn list_parts(
        &self,
        _req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        Ok(S3Response::new(ListPartsOutput::default()))
    }
}

fn service() -> &'static (tokio::runtime::Runtime, S3Service) {
    static SERVICE: OnceLock<(tokio::runtime::Runtime, S3Service)> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        (rt, S3ServiceBuilder::new(Stub).build())
    })
}

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let mut lines = head.lines();
    let Some((method, target)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return;
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let Ok(outer) = format!("{}{target}", zib_server::s3::PREFIX).parse::<http::Uri>() else {
        return;
    };
    let Ok(uri) = zib_server::s3::inner_uri(&outer) else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(uri);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    let Ok(req) = builder.body(s3s::Body::from(bytes::Bytes::copy_from_slice(body))) else {
        return;
    };
    let (rt, service) = service();
    let resp = rt.block_on(service.call(req));
    if let Ok(resp) = resp {
        assert_ne!(
            resp.status(),
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "a 500 for {head:?}"
        );
    }
});
