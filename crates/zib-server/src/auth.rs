//! Tenant credentials (`Authorization: Bearer access_key:secret_key`) and the node
//! cluster token. Secrets are stored as SHA-256 hashes and compared in constant time.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zib_meta::{Store, Tenant};

use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated tenant of a request.
pub struct AuthTenant(pub Tenant);

/// A request from a node of this cluster.
pub struct ClusterAuth;

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn random_string(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Creates a tenant and returns it with its secret key, which is shown only now.
pub async fn create_tenant(
    store: &Store,
    name: &str,
) -> Result<(Tenant, String), zib_meta::MetaError> {
    let access_key = format!("ZK{}", random_string(18).to_ascii_uppercase());
    let secret = format!("zs_{}", random_string(40));
    let tenant = store
        .create_tenant(name, &access_key, &hash_secret(&secret))
        .await?;
    Ok((tenant, secret))
}

/// Like [`create_tenant`], and also seals the secret under the master key so the
/// S3 surface can verify AWS Signature V4 from the first request (docs/s3.md).
pub async fn create_tenant_with_s3(
    store: &Store,
    master_key: &zib_crypto::MasterKey,
    name: &str,
) -> Result<(Tenant, String), zib_meta::MetaError> {
    let (tenant, secret) = create_tenant(store, name).await?;
    if let Some(sealed) = crate::domain::s3_secret::seal_secret(master_key, &tenant.id, &secret) {
        store.set_tenant_s3_secret(&tenant.id, &sealed).await?;
    }
    Ok((tenant, secret))
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing Authorization header: expected `Bearer <access_key>:<secret_key>`",
        ))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("Authorization header is not valid text"))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .ok_or(ApiError::Unauthorized(
            "malformed Authorization header: expected `Bearer <access_key>:<secret_key>`",
        ))
}

impl FromRequestParts<AppState> for AuthTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let (access_key, secret) = token.split_once(':').ok_or(ApiError::Unauthorized(
            "malformed credentials: expected `<access_key>:<secret_key>`",
        ))?;
        if access_key.is_empty() || secret.is_empty() {
            return Err(ApiError::Unauthorized(
                "malformed credentials: expected `<access_key>:<secret_key>`",
            ));
        }
        let presented = hash_secret(secret);
        let tenant = state.store.tenant_by_access_key(access_key).await?;
        // Compare against something even for an unknown key so timing says nothing.
        let expected = tenant
            .as_ref()
            .map(|t| t.secret_hash.clone())
            .unwrap_or_else(|| "0".repeat(64));
        let matches: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
        match tenant {
            Some(t) if matches => Ok(AuthTenant(t)),
            _ => Err(ApiError::Unauthorized("invalid access key or secret key")),
        }
    }
}

impl FromRequestParts<AppState> for ClusterAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let ok: bool = token
            .as_bytes()
            .ct_eq(state.config.cluster_token.as_bytes())
            .into();
        if ok {
            Ok(ClusterAuth)
        } else {
            Err(ApiError::Unauthorized("invalid cluster token"))
        }
    }
}
