//! `GET /v1/node/jobs/{id}/source`: the source video's envelope ciphertext for the
//! node holding the job's lease, whole or one range of it, read from the shards as
//! the CDN reads them. The node decrypts in memory with the claim's data key.

use bytes::Bytes;
use futures::Stream;

use super::lifecycle::leased_job;
use crate::domain::read::{self, range::RangeRequest};
use crate::error::{ApiError, ApiResult, InternalError};
use crate::state::AppState;

/// What to answer: `range` of `total` envelope bytes (`None`: all of them).
pub struct SourceRead<S> {
    pub range: Option<std::ops::Range<u64>>,
    pub total: u64,
    pub body: S,
}

/// The envelope bytes of the job's file the `Range` header asks for, if `token`
/// holds the job's lease (else `410 Gone`).
pub async fn source(
    state: &AppState,
    job_id: &str,
    token: &str,
    range_header: Option<&str>,
) -> ApiResult<SourceRead<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static>> {
    let job = leased_job(state, job_id, token).await?;
    // An aspect-variant job reads its parent's uploaded source, not its stream file.
    let source = job.source_file();
    let file = state.store.file(source).await?.ok_or_else(|| {
        InternalError::Other(format!("job {} names a missing file {source}", job.id))
    })?;
    if !file.phase.is_readable() {
        return Err(ApiError::Gone(format!(
            "the source of encoding job {job_id} is no longer readable ({})",
            file.phase.as_str()
        )));
    }
    let total = file.ciphertext_size;
    let (range, window) = match read::range::parse(range_header, total) {
        RangeRequest::Full => (None, 0..total),
        RangeRequest::Partial(r) => (Some(r.clone()), r),
        RangeRequest::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { len: total }),
    };
    let body = read::ciphertext_stream(state, &file, window).await?;
    Ok(SourceRead { range, total, body })
}
