//! Conversions of ZiB's rows into the s3s DTOs several operations answer with.

use s3s::dto::{ETag, Timestamp};

pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from(zib_util::time::datetime(ms))
}

/// The MD5 of the plaintext for gateway uploads; other files (encrypted by the SDK,
/// whose plaintext the server never sees) get their file id, stable and unique.
pub fn etag(md5: Option<&str>, file_id: zib_proto::FileId) -> ETag {
    ETag::Strong(
        md5.map(str::to_string)
            .unwrap_or_else(|| file_id.0.simple().to_string()),
    )
}
