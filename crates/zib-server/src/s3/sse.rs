//! Server-side encryption headers. Every object is encrypted (its own data key,
//! AES-256-GCM, wrapped by the master key), which is what `AES256` (SSE-S3) promises:
//! it is accepted and reported on every write and read. KMS keys and customer keys
//! (SSE-C) are not offered, and refused rather than ignored: an SSE-C object that read
//! back without its key would tell the client something false.

use s3s::dto::*;
use s3s::{s3_error, S3Result};

/// What every object answer reports.
pub fn reported() -> Option<ServerSideEncryption> {
    Some(ServerSideEncryption::from_static(
        ServerSideEncryption::AES256,
    ))
}

fn refuse_kms(asked: &str) -> s3s::S3Error {
    s3_error!(
        NotImplemented,
        "server-side encryption {asked} is not supported: every object is already encrypted \
         with a key of its own under the server's master key (x-amz-server-side-encryption: \
         AES256); KMS keys are not offered"
    )
}

fn refuse_sse_c() -> s3s::S3Error {
    s3_error!(
        NotImplemented,
        "SSE-C (x-amz-server-side-encryption-customer-*) is not supported: the server does not \
         take customer keys; every object is encrypted with a key of its own (AES256), or \
         encrypt before upload with the ZiB SDK"
    )
}

/// The requests that may carry SSE headers, and which of them they may carry.
pub trait EncryptionHeaders {
    /// `NotImplemented` for anything but SSE-S3 (`AES256`).
    fn refuse_unsupported_encryption(&self) -> S3Result<()>;
}

macro_rules! writes {
    ($($input:ty),*) => {$(
        impl EncryptionHeaders for $input {
            fn refuse_unsupported_encryption(&self) -> S3Result<()> {
                if let Some(asked) = &self.server_side_encryption {
                    if asked.as_str() != ServerSideEncryption::AES256 {
                        return Err(refuse_kms(asked.as_str()));
                    }
                }
                if self.ssekms_key_id.is_some() || self.ssekms_encryption_context.is_some() {
                    return Err(refuse_kms("aws:kms"));
                }
                if self.bucket_key_enabled == Some(true) {
                    return Err(refuse_kms("with an S3 Bucket Key"));
                }
                refuse_customer_key(&self.sse_customer_algorithm, &self.sse_customer_key)
            }
        }
    )*};
}

macro_rules! reads {
    ($($input:ty),*) => {$(
        impl EncryptionHeaders for $input {
            fn refuse_unsupported_encryption(&self) -> S3Result<()> {
                refuse_customer_key(&self.sse_customer_algorithm, &self.sse_customer_key)
            }
        }
    )*};
}

writes!(PutObjectInput, CreateMultipartUploadInput, CopyObjectInput);
reads!(
    GetObjectInput,
    HeadObjectInput,
    UploadPartInput,
    CompleteMultipartUploadInput
);

fn refuse_customer_key(algorithm: &Option<String>, key: &Option<String>) -> S3Result<()> {
    if algorithm.is_some() || key.is_some() {
        return Err(refuse_sse_c());
    }
    Ok(())
}
