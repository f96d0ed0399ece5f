//! Versioning, answered truthfully for buckets that are never versioned: a key has
//! one version, the current object, whose id is S3's `"null"` (what S3 itself calls
//! the version of an object stored while versioning was off). Backup tools and
//! `aws s3api` ask these questions before they trust a bucket; switching versioning
//! on is refused (`refused::versioning_on`).

use s3s::dto::*;
use s3s::{s3_error, S3Result};
use zib_meta::{ListFrom, Tenant};

use super::dto::{etag, timestamp};
use super::errors::{internal, no_such_bucket, with_request_id};
use super::listing::{self, Entry};
use crate::state::AppState;

/// The only version id a key has.
pub const NULL_VERSION: &str = "null";

/// `encoding-type=url`: names percent-encoded (every byte but the unreserved ones and
/// `/`), as S3 sends them and botocore decodes them (with `unquote_plus`, so a `+` left
/// as is would come back as a space).
fn url_encoded(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A request naming a version: `"null"` is the current object, anything else does
/// not exist here.
pub fn check_version_id(version_id: Option<&str>) -> S3Result<()> {
    match version_id {
        None | Some(NULL_VERSION) => Ok(()),
        Some(other) => Err(no_such_version(other)),
    }
}

pub fn no_such_version(version_id: &str) -> s3s::S3Error {
    with_request_id(s3_error!(
        NoSuchVersion,
        "version {version_id:?} does not exist: buckets are not versioned, each key's only \
         version is \"null\""
    ))
}

/// GetBucketVersioning: an empty `VersioningConfiguration`, S3's answer for a bucket
/// whose versioning was never enabled.
pub async fn get_bucket_versioning(
    state: &AppState,
    tenant: &Tenant,
    bucket: &str,
) -> S3Result<GetBucketVersioningOutput> {
    require_bucket(state, tenant, bucket).await?;
    Ok(GetBucketVersioningOutput::default())
}

/// NoSuchBucket unless the tenant has `bucket`.
pub(super) async fn require_bucket(
    state: &AppState,
    tenant: &Tenant,
    bucket: &str,
) -> S3Result<()> {
    match state.store.bucket(&tenant.id, bucket).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(no_such_bucket(bucket)),
        Err(e) => Err(internal(e)),
    }
}

/// ListObjectVersions: the listing of current objects, each one version `"null"`
/// and latest, with S3's paging (`key-marker`, `version-id-marker`, `max-keys`) and
/// `prefix` / `delimiter` roll-ups. There are never delete markers.
pub async fn list_object_versions(
    state: &AppState,
    tenant: &Tenant,
    input: &ListObjectVersionsInput,
) -> S3Result<ListObjectVersionsOutput> {
    require_bucket(state, tenant, &input.bucket).await?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
    let key_marker = input.key_marker.as_deref().filter(|k| !k.is_empty());
    if let Some(version_marker) = input.version_id_marker.as_deref().filter(|v| !v.is_empty()) {
        if key_marker.is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "A version-id marker cannot be specified without a key marker."
            ));
        }
        check_version_id(Some(version_marker))?;
    }
    let max = match input.max_keys {
        None => listing::MAX_KEYS,
        Some(n) if n < 0 => {
            return Err(s3_error!(InvalidArgument, "max-keys must not be negative"))
        }
        Some(n) => (n as u32).min(listing::MAX_KEYS),
    };
    // One version per key: whether the marker names its "null" version or none,
    // the listing resumes after that key.
    let from = match key_marker {
        Some(marker) => listing::from_marker(marker, &prefix, delimiter),
        None => Some(ListFrom::AtOrAfter(String::new())),
    };
    let page = match from {
        Some(from) if max > 0 => listing::list_page(
            &state.store,
            &tenant.id,
            &input.bucket,
            &prefix,
            delimiter,
            from,
            max,
        )
        .await
        .map_err(internal)?,
        _ => listing::Page {
            entries: vec![],
            truncated: false,
            next: None,
        },
    };
    let encode = input
        .encoding_type
        .as_ref()
        .is_some_and(|e| e.as_str() == EncodingType::URL);
    let name = |n: &str| {
        if encode {
            url_encoded(n)
        } else {
            n.to_string()
        }
    };
    let owner = Owner {
        id: Some(tenant.id.clone()),
        display_name: Some(tenant.name.clone()),
    };
    let mut versions = Vec::new();
    let mut common_prefixes = Vec::new();
    for entry in &page.entries {
        match entry {
            Entry::Object(o) => versions.push(ObjectVersion {
                key: Some(name(&o.key)),
                version_id: Some(NULL_VERSION.to_string()),
                is_latest: Some(true),
                size: Some(o.size as i64),
                last_modified: Some(timestamp(o.modified_at)),
                e_tag: Some(etag(o.plaintext_md5.as_deref(), o.file_id)),
                owner: Some(owner.clone()),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                ..Default::default()
            }),
            Entry::CommonPrefix(p) => common_prefixes.push(CommonPrefix {
                prefix: Some(name(p)),
            }),
        }
    }
    let (next_key_marker, next_version_id_marker) = match page.entries.last() {
        Some(Entry::Object(o)) if page.truncated => {
            (Some(name(&o.key)), Some(NULL_VERSION.to_string()))
        }
        Some(Entry::CommonPrefix(p)) if page.truncated => (Some(name(p)), None),
        _ => (None, None),
    };
    Ok(ListObjectVersionsOutput {
        name: Some(input.bucket.clone()),
        prefix: Some(name(&prefix)),
        delimiter: delimiter.map(name),
        key_marker: Some(name(input.key_marker.as_deref().unwrap_or_default())),
        version_id_marker: Some(input.version_id_marker.clone().unwrap_or_default()),
        max_keys: Some(max as i32),
        is_truncated: Some(page.truncated),
        next_key_marker,
        next_version_id_marker,
        versions: Some(versions),
        common_prefixes: Some(common_prefixes),
        encoding_type: input.encoding_type.clone(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::url_encoded;

    #[test]
    fn url_encoding_keeps_plus_and_space_apart() {
        assert_eq!(url_encoded("a+b c/ü?#%"), "a%2Bb%20c/%C3%BC%3F%23%25");
        assert_eq!(url_encoded("plain/key-1_~.txt"), "plain/key-1_~.txt");
    }
}
