//! The tenant's own uploads as the pipeline's stages take them: a file named by id
//! that is neither derived nor another tenant's, and uploaded far enough to be read.
//! Encoding requests and compute submissions share these answers (404 / 409).

use zib_meta::{FilePhase, FileRow};
use zib_proto::FileId;

use crate::error::{ApiError, ApiResult};
use crate::state::Inner;

/// The tenant's uploaded file `raw` names (a file id), ready to be read: `404` for
/// anything else (another tenant's, a derived file, a cancelled upload), `409` while
/// it uploads.
pub(crate) async fn uploaded_file(state: &Inner, tenant_id: &str, raw: &str) -> ApiResult<FileRow> {
    // Any other string than a file id names no file (to name an object by its key,
    // pass `bucket` too).
    let not_found = || ApiError::NotFound(format!("file {raw} not found"));
    let id: FileId = raw.parse().map_err(|_| not_found())?;
    // A file the pipeline derived (a poster, a variant's stream) is not an upload: it
    // has no source of its own to encode or analyse.
    if state.store.derived_file(id).await?.is_some() {
        return Err(not_found());
    }
    let file = state
        .store
        .file_for_tenant(tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    ready(&file)?;
    Ok(file)
}

/// A file can be encoded once uploaded and distributed; a cancelled (superseded)
/// or failed upload is gone.
pub(crate) fn ready(file: &FileRow) -> ApiResult<()> {
    match file.phase {
        FilePhase::Distributed | FilePhase::Safe => Ok(()),
        FilePhase::Pending | FilePhase::Uploading => Err(ApiError::Conflict(format!(
            "file {} is not uploaded yet",
            file.file_id
        ))),
        FilePhase::Cancelled | FilePhase::Failed => Err(ApiError::NotFound(format!(
            "file {} not found ({})",
            file.file_id,
            file.cancelled_reason.as_deref().unwrap_or("cancelled")
        ))),
    }
}
