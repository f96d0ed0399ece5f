//! What the S3 surface does not offer, refused out loud: `NotImplemented` (501) with
//! a sentence saying what instead, never a 200 for something that was not done.
//!
//! Operations ZiB does not implement at all (bucket policies, lifecycle, CORS,
//! website, object lock, replication, notifications, ...) keep s3s's default answer,
//! which is the same 501 with "<Operation> is not implemented yet". This module
//! covers what arrives *inside* operations ZiB does answer: ACL and object-lock
//! headers on a PUT, ACL bodies, versioning switched on, browser POST uploads, and
//! AWS Signature V2. The full table is in docs/s3.md.

use http::{HeaderMap, Uri};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Result};

use zib_meta::Tenant;

use super::errors::{internal, no_such_key, with_request_id};
use super::versions::{self, require_bucket};
use crate::state::AppState;

fn refuse(what: &str) -> S3Error {
    with_request_id(s3_error!(NotImplemented, "{what}"))
}

const ACL_ONLY_PRIVATE: &str = "ACLs are not supported: every bucket and object is private to \
     its tenant (only the canned ACL `private` is accepted); share objects through their \
     CDN URL or presigned URLs";

/// Object ACLs that say what ZiB does anyway: only the tenant (who owns both the
/// bucket and the object) has access.
fn object_acl_is_private(acl: Option<&ObjectCannedACL>) -> bool {
    acl.is_none_or(|a| {
        matches!(
            a.as_str(),
            ObjectCannedACL::PRIVATE | ObjectCannedACL::BUCKET_OWNER_FULL_CONTROL
        )
    })
}

fn no_grants(grants: &[Option<&String>]) -> S3Result<()> {
    if grants.iter().any(Option::is_some) {
        return Err(refuse(ACL_ONLY_PRIVATE));
    }
    Ok(())
}

/// The options of a new object (PutObject, CreateMultipartUpload) that ZiB cannot
/// honour: ACLs beyond private, grants, object lock, website redirects, storage
/// classes other than STANDARD.
#[allow(clippy::too_many_arguments)]
fn object_options(
    acl: Option<&ObjectCannedACL>,
    grants: [Option<&String>; 4],
    lock_mode: Option<&ObjectLockMode>,
    lock_until: bool,
    legal_hold: Option<&ObjectLockLegalHoldStatus>,
    website_redirect: Option<&String>,
    storage_class: Option<&StorageClass>,
) -> S3Result<()> {
    if !object_acl_is_private(acl) {
        return Err(refuse(ACL_ONLY_PRIVATE));
    }
    no_grants(&grants)?;
    if lock_mode.is_some() || lock_until || legal_hold.is_some() {
        return Err(refuse(
            "object lock (retention, legal hold) is not supported: a tenant can always delete its objects",
        ));
    }
    if website_redirect.is_some() {
        return Err(refuse(
            "website hosting (x-amz-website-redirect-location) is not supported",
        ));
    }
    if storage_class.is_some_and(|c| c.as_str() != StorageClass::STANDARD) {
        return Err(refuse(
            "storage classes are not supported: every object is stored erasure-coded as STANDARD",
        ));
    }
    Ok(())
}

/// A new object's refused options, checked alike for every write that makes one.
pub trait NewObjectOptions {
    fn refuse_unsupported_options(&self) -> S3Result<()>;
}

macro_rules! new_object_options {
    ($($input:ty),*) => {$(
        impl NewObjectOptions for $input {
            fn refuse_unsupported_options(&self) -> S3Result<()> {
                object_options(
                    self.acl.as_ref(),
                    [
                        self.grant_full_control.as_ref(),
                        self.grant_read.as_ref(),
                        self.grant_read_acp.as_ref(),
                        self.grant_write_acp.as_ref(),
                    ],
                    self.object_lock_mode.as_ref(),
                    self.object_lock_retain_until_date.is_some(),
                    self.object_lock_legal_hold_status.as_ref(),
                    self.website_redirect_location.as_ref(),
                    self.storage_class.as_ref(),
                )
            }
        }
    )*};
}

new_object_options!(PutObjectInput, CreateMultipartUploadInput, CopyObjectInput);

pub fn create_bucket(input: &CreateBucketInput) -> S3Result<()> {
    if input
        .acl
        .as_ref()
        .is_some_and(|a| a.as_str() != BucketCannedACL::PRIVATE)
    {
        return Err(refuse(ACL_ONLY_PRIVATE));
    }
    no_grants(&[
        input.grant_full_control.as_ref(),
        input.grant_read.as_ref(),
        input.grant_read_acp.as_ref(),
        input.grant_write.as_ref(),
        input.grant_write_acp.as_ref(),
    ])?;
    if input.object_lock_enabled_for_bucket == Some(true) {
        return Err(refuse("object lock is not supported"));
    }
    Ok(())
}

/// PutObjectAcl: only `x-amz-acl: private` (what every object already is), on an
/// object that exists.
pub async fn put_object_acl(
    state: &AppState,
    tenant: &Tenant,
    input: &PutObjectAclInput,
) -> S3Result<()> {
    if !object_acl_is_private(input.acl.as_ref()) || input.access_control_policy.is_some() {
        return Err(refuse(ACL_ONLY_PRIVATE));
    }
    no_grants(&[
        input.grant_full_control.as_ref(),
        input.grant_read.as_ref(),
        input.grant_read_acp.as_ref(),
        input.grant_write.as_ref(),
        input.grant_write_acp.as_ref(),
    ])?;
    versions::check_version_id(input.version_id.as_deref())?;
    require_object(state, tenant, &input.bucket, &input.key).await
}

/// PutBucketAcl: only `x-amz-acl: private`, on a bucket that exists.
pub async fn put_bucket_acl(
    state: &AppState,
    tenant: &Tenant,
    input: &PutBucketAclInput,
) -> S3Result<()> {
    let private = input
        .acl
        .as_ref()
        .is_none_or(|a| a.as_str() == BucketCannedACL::PRIVATE);
    if !private || input.access_control_policy.is_some() {
        return Err(refuse(ACL_ONLY_PRIVATE));
    }
    no_grants(&[
        input.grant_full_control.as_ref(),
        input.grant_read.as_ref(),
        input.grant_read_acp.as_ref(),
        input.grant_write.as_ref(),
        input.grant_write_acp.as_ref(),
    ])?;
    require_bucket(state, tenant, &input.bucket).await
}

/// GetBucketAcl: the tenant, owner, with FULL_CONTROL.
pub async fn get_bucket_acl(
    state: &AppState,
    tenant: &Tenant,
    input: &GetBucketAclInput,
) -> S3Result<GetBucketAclOutput> {
    require_bucket(state, tenant, &input.bucket).await?;
    let (owner, grants) = private_acl(tenant);
    Ok(GetBucketAclOutput {
        owner: Some(owner),
        grants: Some(grants),
    })
}

/// GetObjectAcl: the tenant, owner, with FULL_CONTROL.
pub async fn get_object_acl(
    state: &AppState,
    tenant: &Tenant,
    input: &GetObjectAclInput,
) -> S3Result<GetObjectAclOutput> {
    versions::check_version_id(input.version_id.as_deref())?;
    require_object(state, tenant, &input.bucket, &input.key).await?;
    let (owner, grants) = private_acl(tenant);
    Ok(GetObjectAclOutput {
        owner: Some(owner),
        grants: Some(grants),
        ..Default::default()
    })
}

async fn require_object(
    state: &AppState,
    tenant: &Tenant,
    bucket: &str,
    key: &str,
) -> S3Result<()> {
    require_bucket(state, tenant, bucket).await?;
    let readable = state
        .store
        .object(&tenant.id, bucket, key)
        .await
        .map_err(internal)?
        .is_some_and(|f| f.phase.is_readable());
    if readable {
        Ok(())
    } else {
        Err(no_such_key(bucket, key))
    }
}

/// The ACL every bucket and object has: the tenant, owner, with FULL_CONTROL.
fn private_acl(tenant: &Tenant) -> (Owner, Grants) {
    let owner = Owner {
        id: Some(tenant.id.clone()),
        display_name: Some(tenant.name.clone()),
    };
    let grant = Grant {
        grantee: Some(Grantee {
            id: owner.id.clone(),
            display_name: owner.display_name.clone(),
            email_address: None,
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    };
    (owner, vec![grant])
}

pub fn versioning_on() -> S3Error {
    refuse(
        "versioning is not supported: a bucket keeps one version of each key (versionId \
         \"null\"); GetBucketVersioning answers that it was never enabled",
    )
}

pub fn post_object() -> S3Error {
    refuse(
        "browser POST uploads (HTML forms with a POST policy) are not supported: use a \
         presigned PUT URL or the SDK",
    )
}

/// What is refused from the request line and headers alone, before s3s checks any
/// signature: AWS Signature V2, and browser POST uploads.
pub fn before_auth(method: &http::Method, headers: &HeaderMap, uri: &Uri) -> Option<S3Error> {
    signature_v2(headers, uri).or_else(|| browser_post(method, headers))
}

/// A browser form upload (`POST` with `multipart/form-data`, PostObject). Refused here
/// because s3s would first check its POST policy against the path as it sees it.
fn browser_post(method: &http::Method, headers: &HeaderMap) -> Option<S3Error> {
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    (method == http::Method::POST && form).then(post_object)
}

/// AWS Signature V2, in the `Authorization` header (`AWS access:signature`) or as a
/// presigned URL (`AWSAccessKeyId`, `Signature`, `Expires`): retired by AWS and not
/// offered here. Checked before s3s looks at the request, so the answer says so
/// instead of a signature mismatch.
fn signature_v2(headers: &HeaderMap, uri: &Uri) -> Option<S3Error> {
    let header_v2 = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS ") && !v.starts_with("AWS4-"));
    let query_v2 = uri.query().is_some_and(|q| {
        let names: Vec<String> = q
            .split('&')
            .map(|p| p.split('=').next().unwrap_or("").to_ascii_lowercase())
            .collect();
        names.iter().any(|n| n == "awsaccesskeyid") && names.iter().any(|n| n == "signature")
    });
    (header_v2 || query_v2).then(|| {
        refuse(
            "AWS Signature Version 2 is not supported: sign with Signature Version 4 \
             (boto3: Config(signature_version=\"s3v4\"))",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_v2_is_told_apart_from_v4() {
        let uri: Uri = "/s3/b/k".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert!(signature_v2(&headers, &uri).is_none());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=x".parse().unwrap(),
        );
        assert!(signature_v2(&headers, &uri).is_none());
        headers.insert("authorization", "AWS ZK123:c2ln".parse().unwrap());
        assert!(signature_v2(&headers, &uri).is_some());
        let presigned: Uri = "/s3/b/k?AWSAccessKeyId=ZK1&Signature=abc&Expires=1"
            .parse()
            .unwrap();
        assert!(signature_v2(&HeaderMap::new(), &presigned).is_some());
        let v4: Uri = "/s3/b/k?X-Amz-Signature=abc&X-Amz-Credential=x"
            .parse()
            .unwrap();
        assert!(signature_v2(&HeaderMap::new(), &v4).is_none());
    }

    #[test]
    fn only_form_posts_are_browser_uploads() {
        let mut form = HeaderMap::new();
        form.insert(
            "content-type",
            "multipart/form-data; boundary=x".parse().unwrap(),
        );
        assert!(browser_post(&http::Method::POST, &form).is_some());
        assert!(browser_post(&http::Method::PUT, &form).is_none());
        let mut xml = HeaderMap::new();
        xml.insert("content-type", "application/xml".parse().unwrap());
        assert!(browser_post(&http::Method::POST, &xml).is_none());
        assert!(browser_post(&http::Method::POST, &HeaderMap::new()).is_none());
    }
}
