//! A job's source video: its envelope ciphertext for the node holding the job's
//! lease (`lifecycle::source` for an encoding job), whole or one range of it, read from the shards as
//! the CDN reads them. The node decrypts in memory with the claim's data key. A
//! compute job reads its file the same way (`file_source`, `job_source`).

use bytes::Bytes;
use futures::Stream;
use zib_meta::FileRow;
use zib_proto::jobs::{JobSource, SourcePart};

use crate::domain::read::{self, range::RangeRequest};
use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::{AppState, Inner};

/// What to answer: `range` of `total` envelope bytes (`None`: all of them).
pub struct SourceRead<S> {
    pub range: Option<std::ops::Range<u64>>,
    pub total: u64,
    pub body: S,
}

/// The envelope bytes of `file` (the source of `what`, a job whose lease the caller
/// checked) the `Range` header asks for; `410 Gone` once the file is unreadable.
pub async fn file_source(
    state: &AppState,
    file: &FileRow,
    what: &str,
    range_header: Option<&str>,
) -> ApiResult<SourceRead<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static>> {
    if !file.phase.is_readable() {
        return Err(ApiError::Gone(format!(
            "the source of {what} is no longer readable ({})",
            file.phase.as_str()
        )));
    }
    let total = file.ciphertext_size;
    let (range, window) = match read::range::parse(range_header, total) {
        RangeRequest::Full => (None, 0..total),
        RangeRequest::Partial(r) => (Some(r.clone()), r),
        RangeRequest::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { len: total }),
    };
    let body = read::ciphertext_stream(state, file, window).await?;
    Ok(SourceRead { range, total, body })
}

/// What a claim tells the node about `file`, read at `url` (`…/source`): its sizes,
/// envelope parameters (each part's, for a file stored in parts) and data key, which
/// the node decrypts with in memory.
pub async fn job_source(state: &Inner, file: &FileRow, url: String) -> ApiResult<JobSource> {
    let dek = state
        .config
        .master_key
        .unwrap(&file.wrapped_dek, file.file_id.0.as_bytes())
        .map_err(InternalError::from)?;
    let parts = if file.in_listed_parts() {
        state
            .store
            .file_parts(file.file_id)
            .await?
            .into_iter()
            .map(|p| SourcePart {
                size: p.size,
                ciphertext_size: p.ciphertext_size,
                nonce_prefix: hex::encode(&p.nonce_prefix),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(JobSource {
        url,
        size: file.size,
        ciphertext_size: file.ciphertext_size,
        chunk_size: file.chunk_size,
        nonce_prefix: hex::encode(&file.nonce_prefix),
        data_key: hex::encode(dek.as_bytes()),
        parts,
    })
}
