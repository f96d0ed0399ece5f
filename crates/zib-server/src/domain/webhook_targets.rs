//! Webhook targets a tenant hands us (an endpoint, the customer default, or one
//! upload's `pipeline.webhook_url`): checked against the SSRF guard before they are
//! stored, so a refused URL stores nothing.

use zib_proto::pipeline::Pipeline;
use zib_proto::FileId;

use super::ssrf;
use crate::error::{ApiError, ApiResult};
use crate::state::{now_ms, AppState};

/// Bounds on a secret a tenant brings: long enough to resist guessing, short
/// enough to sit in a header computation without surprise.
const MIN_SECRET_LEN: usize = 16;
const MAX_SECRET_LEN: usize = 256;
const MAX_URL_LEN: usize = 2048;

/// Checks a target URL: its form first, exactly as the OpenAPI document states it
/// (at most 2048 characters, starting `http://` or `https://` in any case), then the
/// SSRF guard (it must parse, have a host, and resolve to allowed addresses). Any
/// refusal is a 400 on `field`.
pub async fn check_target(state: &AppState, field: &'static str, url: &str) -> ApiResult<String> {
    if url.chars().count() > MAX_URL_LEN {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_URL_LEN} characters"),
        ));
    }
    let scheme_ok = ["http://", "https://"].iter().any(|prefix| {
        url.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    });
    if !scheme_ok {
        return Err(ApiError::invalid(
            field,
            format!("{url:?} must start http:// or https://: only http and https webhook URLs are allowed"),
        ));
    }
    ssrf::check_url(url, state.config.allow_private_webhook_targets)
        .await
        .map(|u| u.to_string())
        .map_err(|reason| ApiError::invalid(field, reason))
}

/// Counted in characters, as the document's `minLength`/`maxLength` are; control
/// characters are refused (the document's `pattern`).
pub fn check_secret(field: &'static str, secret: &str) -> ApiResult<()> {
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.chars().count())
        || secret.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            field,
            format!(
                "must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} printable characters \
                 (or omit it and let ZiB generate a whsec_ secret)"
            ),
        ));
    }
    Ok(())
}

/// An upload's own webhook target, from `pipeline.webhook_url` / `webhook_secret`.
pub struct RequestTarget {
    url: String,
    secret: Option<String>,
}

/// Checks the per-request target of an initiate's `pipeline` (before the file is
/// registered, so a refused URL registers nothing).
pub async fn request_target(
    state: &AppState,
    pipeline: &Pipeline,
) -> ApiResult<Option<RequestTarget>> {
    let Some(url) = &pipeline.webhook_url else {
        return Ok(None);
    };
    let url = check_target(state, "pipeline.webhook_url", url).await?;
    let secret = pipeline.webhook_secret.clone();
    if let Some(s) = &secret {
        check_secret("pipeline.webhook_secret", s)?;
    }
    Ok(Some(RequestTarget { url, secret }))
}

/// Stores the target with the file: its events go there instead of the tenant
/// default.
pub async fn store_request_target(
    state: &AppState,
    file_id: FileId,
    target: Option<RequestTarget>,
) -> ApiResult<()> {
    if let Some(t) = target {
        state
            .store
            .set_file_webhook(file_id, &t.url, t.secret.as_deref(), now_ms())
            .await?;
    }
    Ok(())
}
