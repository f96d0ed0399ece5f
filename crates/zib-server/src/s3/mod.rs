//! The S3-compatible surface under `/s3/` (path-style): list buckets and objects
//! (V1 and V2), HEAD, GET (a redirect to the CDN), PUT (the gateway encrypts for the
//! tenant) and DELETE. See docs/s3.md.
//!
//! s3s does the protocol and the signature checks. It expects to own the whole URL
//! path, but a SigV4 signature covers the path as the client sent it, `/s3/...`
//! included, so the prefix cannot be stripped before verification. Two s3s services
//! therefore run in a row: the outer one sees the original request and only
//! authenticates it (header or presigned SigV4, or the contract's Bearer header
//! checked by [`bearer`]); its catch-all route then hands the request, prefix
//! stripped and credentials removed, to the inner one, which parses the S3 operation
//! and calls [`ops::ZibS3`] for the tenant found.

mod buckets;
mod checksums;
mod coded_parts;
mod completion;
mod conditional;
mod copy;
mod crc_combine;
mod dto;
mod errors;
mod gateway;
/// Public only for the fuzzer (fuzz/fuzz_targets/s3_request.rs).
#[doc(hidden)]
pub mod listing;
mod multipart;
mod multipart_upload;
mod object_headers;
mod ops;
mod refused;
mod spooled_parts;
mod sse;
mod tagging;
mod versions;
mod wire;

use std::convert::Infallible;

use axum::body::Body as AxumBody;
use axum::extract::FromRequestParts;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::{header, HeaderMap, Method, StatusCode, Uri};
use s3s::auth::{S3Auth, SecretKey};
use s3s::route::S3Route;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result, S3};
use zib_meta::Tenant;

use crate::auth::AuthTenant;
use crate::domain::s3_secret as secret;
use crate::state::AppState;
use errors::{api_to_s3, internal};

/// Where the surface is mounted.
pub const PREFIX: &str = "/s3";

tokio::task_local! {
    /// The tenant whose secret checked this request's SigV4 signature: put here by
    /// [`TenantAuth`] and taken by [`Forward`], so a signed request reads its tenant
    /// once, not twice.
    static SIGNED_BY: std::cell::RefCell<Option<Tenant>>;
}

/// The tenant a request to the inner service acts for.
#[derive(Clone)]
pub struct TenantCtx(pub Tenant);

/// Marks a request signed in its `Authorization` header (an AWS SDK or CLI), which
/// cannot follow a redirect on GetObject.
#[derive(Clone, Copy)]
pub struct HeaderSigned;

/// Set by [`bearer`] when the request carried `Authorization: Bearer ak:sk`.
#[derive(Clone)]
struct BearerTenant(Tenant);

pub fn router(state: AppState) -> Router<AppState> {
    let service = outer_service(&state);
    let handler = tower::service_fn(move |req: Request| {
        let service = service.clone();
        async move {
            let carries_body = carries_body(req.headers());
            if let Some(refusal) = refused::before_auth(req.method(), req.headers(), req.uri()) {
                return Ok::<_, Infallible>(s3_error_response(refusal));
            }
            let mut response = match service.call(req.map(s3s::Body::http_body_unsync)).await {
                Ok(resp) => resp.map(AxumBody::new),
                Err(e) => {
                    tracing::error!(error = ?e, "s3 service failed");
                    s3_error_response(s3_error!(InternalError, "internal error"))
                }
            };
            if carries_body
                && (response.status().is_client_error() || response.status().is_server_error())
            {
                // A refusal may come before the body is read (a 409 for a key of
                // another size, NoSuchUpload for a part). botocore sends the body
                // anyway once its `Expect: 100-continue` wait runs out, and the
                // connection must not read it as the next request (seen as a bare
                // 400 or SignatureDoesNotMatch on the call after): close it.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    Router::new()
        .route_service(PREFIX, handler.clone())
        .route_service(&format!("{PREFIX}/"), handler.clone())
        .route_service(&format!("{PREFIX}/{{*rest}}"), handler)
        .layer(axum::middleware::from_fn_with_state(state, bearer))
        .layer(axum::middleware::from_fn(wire::layer))
}

/// Whether a request announces a body (a length above 0, or chunked).
fn carries_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

fn outer_service(state: &AppState) -> S3Service {
    let inner = S3ServiceBuilder::new(ops::ZibS3 {
        state: state.clone(),
    })
    .build();
    let mut outer = S3ServiceBuilder::new(Unrouted);
    outer.set_auth(TenantAuth {
        state: state.clone(),
    });
    // The outer service reads `/s3/...` as bucket `s3`; real names are checked inside.
    outer.set_validation(AnyBucketName);
    outer.set_route(Forward {
        state: state.clone(),
        inner,
    });
    outer.build()
}

fn s3_error_response(err: S3Error) -> Response {
    match err.to_http_response() {
        Ok(resp) => resp.map(AxumBody::new),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The contract's `Authorization: Bearer access_key:secret_key`, checked exactly as on
/// `/v1/api`, then removed so s3s does not read it as a signature. It also seals the
/// tenant's secret for SigV4 when the server has not stored it yet (tenants created
/// before the S3 surface existed).
async fn bearer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let is_bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    if !is_bearer {
        return SIGNED_BY
            .scope(std::cell::RefCell::new(None), next.run(req))
            .await;
    }
    let (mut parts, body) = req.into_parts();
    let tenant = match AuthTenant::from_request_parts(&mut parts, &state).await {
        Ok(AuthTenant(tenant)) => tenant,
        Err(e) => return s3_error_response(api_to_s3(e)),
    };
    let secret = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(':'))
        .map(|(_, secret)| secret.trim().to_string());
    if let Some(secret) = secret {
        remember_secret(&state, &tenant, &secret).await;
    }
    parts.headers.remove(header::AUTHORIZATION);
    parts.extensions.insert(BearerTenant(tenant));
    next.run(Request::from_parts(parts, body)).await
}

async fn remember_secret(state: &AppState, tenant: &Tenant, secret: &str) {
    match state.store.has_tenant_s3_secret(&tenant.id).await {
        Ok(true) => {}
        Ok(false) => {
            let Some(sealed) = secret::seal_secret(&state.config.master_key, &tenant.id, secret)
            else {
                return;
            };
            match state.store.set_tenant_s3_secret(&tenant.id, &sealed).await {
                Ok(()) => tracing::info!(tenant = %tenant.id, "sealed the tenant's S3 secret"),
                Err(e) => tracing::warn!(error = %e, "could not seal the tenant's S3 secret"),
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not check the tenant's S3 secret"),
    }
}

/// Secrets for SigV4, unsealed from the store.
struct TenantAuth {
    state: AppState,
}

#[async_trait::async_trait]
impl S3Auth for TenantAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let found = self
            .state
            .store
            .tenant_s3_secret(access_key)
            .await
            .map_err(internal)?;
        match found {
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
            Some((_, None)) => Err(s3_error!(
                InvalidAccessKeyId,
                "SigV4 is not enabled for this access key yet: make one request with \
                 `Authorization: Bearer <access_key>:<secret_key>` to /s3/ first"
            )),
            Some((tenant, Some(sealed))) => {
                let key = secret::unseal_secret(&self.state.config.master_key, &tenant.id, &sealed)
                    .map(SecretKey::from)
                    .ok_or_else(|| internal("a sealed S3 secret does not open"))?;
                // Outside the surface's middleware (never in practice) it is read again.
                let _ = SIGNED_BY.try_with(|slot| *slot.borrow_mut() = Some(tenant));
                Ok(key)
            }
        }
    }
}

struct AnyBucketName;
impl s3s::validation::NameValidation for AnyBucketName {
    fn validate_bucket_name(&self, _name: &str) -> bool {
        true
    }
}

/// The tenant [`TenantAuth`] read for this request's signature, if it is the one
/// of `access_key`.
fn signed_by(access_key: &str) -> Option<Tenant> {
    SIGNED_BY
        .try_with(|slot| slot.borrow_mut().take())
        .ok()
        .flatten()
        .filter(|t| t.access_key == access_key)
}

/// The outer service never dispatches operations itself: everything is forwarded.
struct Unrouted;
impl S3 for Unrouted {}

struct Forward {
    state: AppState,
    inner: S3Service,
}

/// Query parameters that carry a presigned signature; verified by the outer service.
fn is_signature_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("x-amz-")
        || matches!(lower.as_str(), "awsaccesskeyid" | "signature" | "expires")
}

/// The request URI as the inner service must see it: prefix and signature gone.
/// Public only for the fuzzer.
#[doc(hidden)]
pub fn inner_uri(uri: &Uri) -> S3Result<Uri> {
    let path = uri.path();
    let rest = path
        .strip_prefix(PREFIX)
        .ok_or_else(|| s3_error!(InvalidURI, "S3 requests live under {PREFIX}/"))?;
    let rest = if rest.is_empty() { "/" } else { rest };
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !is_signature_param(pair.split('=').next().unwrap_or("")))
        .collect();
    let path_and_query = if query.is_empty() {
        rest.to_string()
    } else {
        format!("{rest}?{}", query.join("&"))
    };
    path_and_query
        .parse()
        .map_err(|_| s3_error!(InvalidURI, "the request path is not a valid URI"))
}

/// Headers the outer service already consumed (signature, aws-chunked framing).
fn inner_headers(mut headers: HeaderMap) -> HeaderMap {
    checksums::dechunked(&mut headers);
    for name in [
        "authorization",
        "x-amz-content-sha256",
        "x-amz-decoded-content-length",
        "x-amz-trailer",
        "x-amz-date",
        "x-amz-security-token",
    ] {
        headers.remove(name);
    }
    headers
}

#[async_trait::async_trait]
impl S3Route for Forward {
    fn is_match(
        &self,
        _method: &Method,
        _uri: &Uri,
        _headers: &HeaderMap,
        _extensions: &mut http::Extensions,
    ) -> bool {
        true
    }

    async fn check_access(&self, req: &mut S3Request<s3s::Body>) -> S3Result<()> {
        if req.credentials.is_some() || req.extensions.get::<BearerTenant>().is_some() {
            Ok(())
        } else {
            Err(s3_error!(
                AccessDenied,
                "sign the request (AWS Signature V4) or send `Authorization: Bearer <access_key>:<secret_key>`"
            ))
        }
    }

    async fn call(&self, req: S3Request<s3s::Body>) -> S3Result<S3Response<s3s::Body>> {
        let tenant = match (req.extensions.get::<BearerTenant>(), &req.credentials) {
            (Some(BearerTenant(tenant)), _) => tenant.clone(),
            (None, Some(cred)) => match signed_by(&cred.access_key) {
                Some(tenant) => tenant,
                None => self
                    .state
                    .store
                    .tenant_by_access_key(&cred.access_key)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| s3_error!(InvalidAccessKeyId))?,
            },
            (None, None) => return Err(s3_error!(AccessDenied, "request is not authenticated")),
        };
        let header_signed =
            req.credentials.is_some() && req.headers.contains_key(header::AUTHORIZATION);
        let completes_upload = req.method == Method::POST
            && req
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("uploadId=")));
        let uri = inner_uri(&req.uri)?;
        let mut body = req.input;
        if buckets::is_delete_objects(&req.method, &uri) {
            buckets::check_delete_body(&req.headers, &mut body).await?;
        }
        // The trailing checksum of an aws-chunked body: its name goes with the headers
        // the outer service consumed, its value arrives at the end of the body.
        let trailer = req
            .headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .zip(req.trailing_headers)
            .map(|(name, headers)| checksums::Trailer {
                name: name.to_string(),
                headers,
            });
        let mut inner = http::Request::builder()
            .method(req.method)
            .uri(uri)
            .body(body)
            .map_err(internal)?;
        *inner.headers_mut() = inner_headers(req.headers);
        inner.extensions_mut().insert(TenantCtx(tenant));
        if let Some(trailer) = trailer {
            inner.extensions_mut().insert(trailer);
        }
        if header_signed {
            inner.extensions_mut().insert(HeaderSigned);
        }
        let resp = self.inner.call(inner).await.map_err(|e| {
            tracing::error!(error = ?e, "inner s3 service failed");
            s3_error!(InternalError, "internal error")
        })?;
        let (parts, mut body) = resp.into_parts();
        let kept_alive = parts
            .headers
            .get(header::TRANSFER_ENCODING)
            .is_some_and(|v| v == "chunked");
        if completes_upload && kept_alive {
            body = without_second_declaration(body);
        }
        let mut out = S3Response::new(body);
        out.status = Some(parts.status);
        out.headers = parts.headers;
        Ok(out)
    }
}

/// A kept-alive CompleteMultipartUpload answer starts with the XML declaration, then
/// whitespace, then the result. s3s 0.14.1 writes an error result with a declaration
/// of its own, which XML parsers refuse (botocore then reports code "500" instead of
/// S3's); the declaration of any later piece is dropped.
fn without_second_declaration(body: s3s::Body) -> s3s::Body {
    use futures::StreamExt;
    let mut first = true;
    let pieces = body.map(move |piece| -> std::io::Result<bytes::Bytes> {
        let piece = piece.map_err(std::io::Error::other)?;
        if std::mem::take(&mut first) {
            return Ok(piece);
        }
        Ok(strip_declaration(piece))
    });
    s3s::Body::from(s3s::dto::StreamingBlob::wrap(pieces))
}

/// Public only for the fuzzer.
#[doc(hidden)]
pub fn strip_declaration(piece: bytes::Bytes) -> bytes::Bytes {
    if piece.starts_with(b"<?xml") {
        if let Some(end) = piece.windows(2).position(|w| w == b"?>") {
            return piece.slice(end + 2..);
        }
    }
    piece
}

#[cfg(test)]
mod declaration_tests {
    use super::strip_declaration;
    use bytes::Bytes;

    #[test]
    fn only_a_leading_declaration_is_dropped() {
        let error = Bytes::from_static(
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>X</Code></Error>",
        );
        assert_eq!(
            strip_declaration(error),
            Bytes::from_static(b"<Error><Code>X</Code></Error>")
        );
        for kept in [
            &b" "[..],
            b"<CompleteMultipartUploadResult/>",
            b"<?xml unterminated",
        ] {
            assert_eq!(
                strip_declaration(Bytes::copy_from_slice(kept)),
                Bytes::copy_from_slice(kept)
            );
        }
    }
}
