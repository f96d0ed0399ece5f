//! A job's AES-128 segment key: 16 random bytes, stored only wrapped under the master
//! key with the job id as associated data (`encoding_jobs.wrapped_hls_key`). The
//! wrap holds a 32-byte data key whose first 16 bytes are the AES-128 key; the claim
//! (`ClaimedJob::hls_key`) and the CDN's `/stream/{file_id}/key` both read it here,
//! so the key a node encrypts with is always the key players are served.

use zib_crypto::DataKey;

use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::Inner;

/// AES-128: 16 bytes.
pub const HLS_KEY_LEN: usize = 16;

/// A fresh random key for `job_id`, wrapped for storage.
pub fn new_wrapped_hls_key(state: &Inner, job_id: &str) -> Vec<u8> {
    state
        .config
        .master_key
        .wrap(&DataKey::generate(), job_id.as_bytes())
}

/// The 16 key bytes of `job_id` from its stored wrap.
pub fn unwrap_hls_key(state: &Inner, job_id: &str, wrapped: &[u8]) -> ApiResult<[u8; HLS_KEY_LEN]> {
    let key = state
        .config
        .master_key
        .unwrap(wrapped, job_id.as_bytes())
        .map_err(|e| {
            ApiError::Internal(InternalError::Other(format!(
                "unwrapping the HLS key of job {job_id}: {e}"
            )))
        })?;
    let mut out = [0u8; HLS_KEY_LEN];
    out.copy_from_slice(&key.as_bytes()[..HLS_KEY_LEN]);
    Ok(out)
}
