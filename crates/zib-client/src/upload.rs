//! Uploading with a registration: what the browser SDK's `uploadDirect` does, byte for
//! byte. Needs no tenant credential, only the registration the backend obtained.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::StatusCode;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zib_proto::api::{Registration, UploadParts, UploadReceipt, UploadResult, UploadType};
use zib_proto::error_codes as codes;

use crate::error::{error_from_response, Origin};
use crate::plan::{EnvelopePlan, PartPlan};
use crate::seal_stream::{sealed_part_stream, ChunkObserver, FailureSlot};
use crate::{ClientError, Progress, ProgressFn, Stage, UploadOptions};

/// First retry delay of a failed part; doubled per attempt.
const RETRY_BASE_DELAY: Duration = Duration::from_millis(500);
/// Cap on one retry delay: a node restarting takes seconds, and a longer wait only
/// holds the whole upload back.
const RETRY_MAX_DELAY: Duration = Duration::from_secs(8);
/// The node's answer when a retried part had in fact been stored the first time.
const PART_ALREADY_UPLOADED: &str = zib_proto::error_codes::PART_ALREADY_UPLOADED;
/// The node's answer while another request is still writing the same part.
const PART_IN_PROGRESS: &str = zib_proto::error_codes::IN_PROGRESS;

/// Metadata of `path`, refused unless it is a regular file: both the one-shot upload and
/// the upload against a registration must size the same file the same way.
pub(crate) async fn regular_file_metadata(path: &Path) -> Result<std::fs::Metadata, ClientError> {
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|e| ClientError::io(format!("reading {}", path.display()), e))?;
    if !metadata.is_file() {
        return Err(ClientError::Config(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(metadata)
}

pub async fn upload_with_registration(
    http: &reqwest::Client,
    reg: &Registration,
    path: &Path,
    opts: &UploadOptions,
) -> Result<UploadResult, ClientError> {
    check_not_expired(reg, OffsetDateTime::now_utc())?;
    let plan = Arc::new(EnvelopePlan::from_registration(reg)?);
    let metadata = regular_file_metadata(path).await?;
    if metadata.len() != reg.file_size {
        return Err(ClientError::Registration(format!(
            "{} is {} bytes but the registration is for {} bytes",
            path.display(),
            metadata.len(),
            reg.file_size
        )));
    }
    let path: Arc<Path> = Arc::from(path);
    let tracker = Arc::new(Tracker::new(
        opts.progress.clone(),
        reg.file_size,
        reg.ciphertext_size,
    ));
    let retries = opts.part_retries;
    let result = UploadResult {
        file_id: reg.file_id,
        cdn_url: reg.cdn_url.clone(),
    };

    // What the node already holds of this registration (a resumed upload).
    let held = if opts.resume {
        match upload_parts_held(http, reg).await {
            Ok(held) => Some(held),
            // Spent with nothing left on the node: completed before (and the full
            // copy dropped once safe), or completed and deleted.
            Err(e) if is_token_used(&e) => return Err(outcome_unknown(reg, e)),
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let held_state = held.as_ref().map(|h| h.state.as_str());
    if held_state == Some("distributed") {
        tracing::info!(file_id = %reg.file_id, "the node had already stored and distributed this upload");
        tracker.chunk_sent(reg.file_size, reg.ciphertext_size);
        tracker.report(Stage::Completing, 1, 1);
        return Ok(result);
    }

    match reg.upload_type {
        UploadType::Single => {
            let url = reg.upload_url.as_deref().ok_or_else(|| {
                ClientError::Registration(
                    "invalid registration: single upload without upload_url".into(),
                )
            })?;
            if held_state == Some("stored") {
                // The node has every byte and distributes on its own.
                return Err(outcome_unknown(
                    reg,
                    ClientError::Registration(
                        "the node holds the whole upload and is still distributing it".into(),
                    ),
                ));
            }
            let part = plan.whole();
            let fully_sent = AtomicBool::new(false);
            let receipt = with_retries(retries, Retry::ConnectOnly, || {
                put_sealed(
                    http,
                    url,
                    &path,
                    &plan,
                    part,
                    &tracker,
                    Target::Whole(&fully_sent),
                )
            })
            .await
            .map_err(|e| {
                // A spent token here is as likely a replayed registration: only a
                // lost or 5xx answer to a body sent whole leaves the outcome open.
                if fully_sent.load(Ordering::Relaxed) && maybe_committed(&e) && !is_token_used(&e) {
                    outcome_unknown(reg, e)
                } else {
                    e
                }
            })?;
            log_receipt(&receipt);
        }
        UploadType::Multipart => {
            let complete_url = reg.complete_url.as_deref().ok_or_else(|| {
                ClientError::Registration(
                    "invalid registration: multipart upload without complete_url".into(),
                )
            })?;
            let mut parts = plan.parts(reg)?;
            if let Some(held) = &held {
                let stored = held.state == "stored";
                parts.retain(|(number, _, part)| {
                    let have = stored || held.parts.iter().any(|p| p.part_number == *number);
                    if have {
                        tracker.chunk_sent(part.plaintext_len, part.ciphertext_len);
                    }
                    !have
                });
                tracing::info!(
                    file_id = %reg.file_id,
                    missing = parts.len(),
                    "resuming: sending only the parts the node does not hold"
                );
            }
            futures::stream::iter(parts.into_iter().map(Ok))
                .try_for_each_concurrent(opts.concurrency.max(1), |(number, url, part)| {
                    let path = path.clone();
                    let plan = plan.clone();
                    let tracker = tracker.clone();
                    async move {
                        let label = format!("part {number}");
                        with_retries(retries, Retry::Transient, || {
                            put_sealed(
                                http,
                                url,
                                &path,
                                &plan,
                                part,
                                &tracker,
                                Target::Part(&label),
                            )
                        })
                        .await
                        .map(|_| ())
                    }
                })
                .await?;
            tracker.completing_started();
            let receipt =
                match with_retries(retries, Retry::ConnectOnly, || complete(http, complete_url))
                    .await
                {
                    Ok(receipt) => receipt,
                    // Resuming: an earlier run (whose answer was lost) completed it. A
                    // plain replay of a used registration stays a refusal.
                    Err(e) if opts.resume && is_already_completed(&e) => None,
                    Err(e) if maybe_committed(&e) => return Err(outcome_unknown(reg, e)),
                    Err(e) => return Err(e),
                };
            log_receipt(&receipt);
        }
    }
    tracker.report(Stage::Completing, 1, 1);
    Ok(result)
}

/// `GET {node}/v1/upload/{blob}/parts`: what the node already holds of this
/// registration's upload, authorised by its complete token (or a single upload's
/// token) and spending nothing.
pub async fn upload_parts_held(
    http: &reqwest::Client,
    reg: &Registration,
) -> Result<UploadParts, ClientError> {
    let url = parts_url(reg)?;
    let resp =
        http.get(&url).send().await.map_err(|e| {
            ClientError::transport(Origin::Node, &url, e).about("listing held parts")
        })?;
    if !resp.status().is_success() {
        return Err(error_from_response(Origin::Node, resp)
            .await
            .about("listing held parts"));
    }
    resp.json::<UploadParts>()
        .await
        .map_err(|e| ClientError::transport(Origin::Node, &url, e))
}

/// The parts-listing URL beside the registration's complete (or single upload) URL,
/// with the same token.
fn parts_url(reg: &Registration) -> Result<String, ClientError> {
    let target = match reg.upload_type {
        UploadType::Multipart => reg.complete_url.as_deref(),
        UploadType::Single => reg.upload_url.as_deref(),
    }
    .ok_or_else(|| ClientError::Registration("invalid registration: no upload URL".into()))?;
    let (base, query) = target.split_once('?').unwrap_or((target, ""));
    let base = base.strip_suffix("/complete").unwrap_or(base);
    Ok(format!("{base}/parts?{query}"))
}

fn outcome_unknown(reg: &Registration, source: ClientError) -> ClientError {
    ClientError::OutcomeUnknown {
        file_id: reg.file_id,
        cdn_url: reg.cdn_url.clone(),
        source: Box::new(source),
    }
}

fn is_token_used(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status: 409, code, .. } if code == codes::TOKEN_USED)
}

fn is_already_completed(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status: 409, code, .. } if code == codes::UPLOAD_ALREADY_COMPLETED)
}

/// After the last byte went out (or with the complete call): could the node have
/// committed the upload although this call failed? A clear refusal says no; so does
/// a connection that never opened. A spent token, a lost or 5xx answer say maybe.
fn maybe_committed(e: &ClientError) -> bool {
    match e {
        ClientError::Api { status, code, .. } if kept_nothing(*status, code) => false,
        ClientError::Api { status, code, .. } => {
            *status >= 500 || *status == 408 || (*status == 409 && code == codes::TOKEN_USED)
        }
        ClientError::Unreachable { source, .. } => !source.is_connect(),
        ClientError::Http(_) => true,
        _ => false,
    }
}

/// A single upload erasure-coded as it arrived answers `503 distribution_failed`
/// when placing its shards failed: nothing was kept and its token is unspent, so
/// the same PUT can be sent again (a stored upload that failed to distribute is
/// `502`).
fn kept_nothing(status: u16, code: &str) -> bool {
    status == 503 && code == codes::DISTRIBUTION_FAILED
}

fn check_not_expired(reg: &Registration, now: OffsetDateTime) -> Result<(), ClientError> {
    let expires_at = OffsetDateTime::parse(&reg.expires_at, &Rfc3339).map_err(|_| {
        ClientError::Registration(format!(
            "invalid registration: expires_at {:?} is not an RFC 3339 time",
            reg.expires_at
        ))
    })?;
    if now >= expires_at {
        return Err(ClientError::Registration(format!(
            "upload registration expired at {} (initiate a new upload)",
            reg.expires_at
        )));
    }
    Ok(())
}

fn log_receipt(receipt: &Option<UploadReceipt>) {
    match receipt {
        Some(r) => {
            tracing::debug!(upload_id = %r.upload_id, size = r.size, status = %r.status, "node receipt")
        }
        None => tracing::debug!("node answered without a receipt body"),
    }
}

/// Which failures are worth another attempt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Only failures where nothing reached the node: a single-use token may already be
    /// spent otherwise.
    ConnectOnly,
    /// Also 5xx and broken transfers: parts are individually retryable by design.
    Transient,
}

enum Failure {
    /// Nothing reached the other side.
    NotSent(ClientError),
    /// The transfer broke or the node answered 5xx/408/429.
    Transient(ClientError),
    Fatal(ClientError),
}

impl Failure {
    fn map(self, f: impl FnOnce(ClientError) -> ClientError) -> Self {
        match self {
            Self::NotSent(e) => Self::NotSent(f(e)),
            Self::Transient(e) => Self::Transient(f(e)),
            Self::Fatal(e) => Self::Fatal(f(e)),
        }
    }
}

async fn with_retries<T, F, Fut>(
    retries: u32,
    policy: Retry,
    mut attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut tries = 0u32;
    loop {
        let err = match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failure::Fatal(err)) => return Err(err),
            Err(Failure::Transient(err)) if policy == Retry::ConnectOnly => return Err(err),
            Err(Failure::NotSent(err) | Failure::Transient(err)) => err,
        };
        if tries >= retries {
            return Err(err);
        }
        let delay = RETRY_BASE_DELAY
            .saturating_mul(1u32.checked_shl(tries).unwrap_or(u32::MAX))
            .min(RETRY_MAX_DELAY);
        tracing::warn!(error = %err, attempt = tries + 1, ?delay, "retrying");
        tokio::time::sleep(delay).await;
        tries += 1;
    }
}

fn classify_transport(url: &str, err: reqwest::Error) -> Failure {
    let not_sent = err.is_connect();
    let transient = err.is_timeout() || err.is_request() || err.is_body();
    let err = ClientError::transport(Origin::Node, url, err);
    if not_sent {
        Failure::NotSent(err)
    } else if transient {
        Failure::Transient(err)
    } else {
        Failure::Fatal(err)
    }
}

/// A non-success node answer. For parts, `Ok(None)` when the part was already stored.
async fn classify_status(
    resp: reqwest::Response,
    is_part: bool,
) -> Result<Option<UploadReceipt>, Failure> {
    let status = resp.status();
    let err = error_from_response(Origin::Node, resp).await;
    let code = match &err {
        ClientError::Api { code, .. } => code.as_str(),
        _ => "",
    };
    let conflict = status == StatusCode::CONFLICT;
    if is_part && conflict && code == PART_ALREADY_UPLOADED {
        return Ok(None);
    }
    if !is_part && kept_nothing(status.as_u16(), code) {
        return Err(Failure::NotSent(err));
    }
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        // Another request (an earlier attempt still draining) holds the part.
        || (is_part && conflict && code == PART_IN_PROGRESS);
    if transient {
        Err(Failure::Transient(err))
    } else {
        Err(Failure::Fatal(err))
    }
}

async fn read_receipt(resp: reqwest::Response) -> Option<UploadReceipt> {
    resp.json::<UploadReceipt>().await.ok()
}

/// What one PUT carries.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// The whole envelope; the flag is set when a failed attempt had sent every byte.
    Whole(&'a AtomicBool),
    /// A multipart part, named in errors (e.g. "part 3").
    Part(&'a str),
}

/// One attempt at PUTting a part (or the whole envelope). Progress made by a failed
/// attempt is taken back, so a retry does not count bytes twice.
async fn put_sealed(
    http: &reqwest::Client,
    url: &str,
    path: &Arc<Path>,
    plan: &Arc<EnvelopePlan>,
    part: PartPlan,
    tracker: &Arc<Tracker>,
    target: Target<'_>,
) -> Result<Option<UploadReceipt>, Failure> {
    let (label, fully_sent) = match target {
        Target::Whole(flag) => (None, Some(flag)),
        Target::Part(label) => (Some(label), None),
    };
    let attempt = Arc::new(AttemptCounters::default());
    let observer: ChunkObserver = {
        let attempt = attempt.clone();
        let tracker = tracker.clone();
        Arc::new(move |plain, sealed| {
            attempt.plain.fetch_add(plain, Ordering::Relaxed);
            attempt.sealed.fetch_add(sealed, Ordering::Relaxed);
            tracker.chunk_sent(plain, sealed);
        })
    };
    let failure = FailureSlot::default();
    let body = sealed_part_stream(path.clone(), plan.clone(), part, observer, failure.clone());
    let sent = http
        .put(url)
        .header(CONTENT_LENGTH, part.ciphertext_len)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    let result = match sent {
        Err(err) => Err(match failure.take() {
            Some(local) => Failure::Fatal(local),
            None => classify_transport(url, err),
        }),
        Ok(resp) if resp.status().is_success() => Ok(read_receipt(resp).await),
        Ok(resp) => classify_status(resp, label.is_some()).await,
    };
    match result {
        Err(failure) => {
            if let Some(flag) = fully_sent {
                if attempt.sealed.load(Ordering::Relaxed) >= part.ciphertext_len {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            tracker.take_back(
                attempt.plain.load(Ordering::Relaxed),
                attempt.sealed.load(Ordering::Relaxed),
            );
            Err(match label {
                Some(label) => failure.map(|err| err.about(label)),
                None => failure,
            })
        }
        Ok(receipt) => {
            // An already-stored part streamed nothing (or only part): count it whole.
            let plain_missing = part
                .plaintext_len
                .saturating_sub(attempt.plain.load(Ordering::Relaxed));
            let sealed_missing = part
                .ciphertext_len
                .saturating_sub(attempt.sealed.load(Ordering::Relaxed));
            if plain_missing > 0 || sealed_missing > 0 {
                tracker.chunk_sent(plain_missing, sealed_missing);
            }
            Ok(receipt)
        }
    }
}

async fn complete(http: &reqwest::Client, url: &str) -> Result<Option<UploadReceipt>, Failure> {
    let sent = http
        .post(url)
        .header(CONTENT_LENGTH, 0)
        .body(Vec::new())
        .send()
        .await;
    match sent {
        Err(err) => Err(classify_transport(url, err)),
        Ok(resp) if resp.status().is_success() => Ok(read_receipt(resp).await),
        Ok(resp) => classify_status(resp, false).await,
    }
    .map_err(|failure| failure.map(|err| err.about("complete")))
}

#[derive(Default)]
struct AttemptCounters {
    plain: AtomicU64,
    sealed: AtomicU64,
}

/// Turns chunk events from every part in flight into [`Progress`] reports.
struct Tracker {
    callback: Option<ProgressFn>,
    file_size: u64,
    ciphertext_size: u64,
    encrypted: AtomicU64,
    uploaded: AtomicU64,
    completing: AtomicBool,
}

impl Tracker {
    fn new(callback: Option<ProgressFn>, file_size: u64, ciphertext_size: u64) -> Self {
        Self {
            callback,
            file_size,
            ciphertext_size,
            encrypted: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
            completing: AtomicBool::new(false),
        }
    }

    fn report(&self, stage: Stage, done: u64, total: u64) {
        if let Some(callback) = &self.callback {
            callback(Progress { stage, done, total });
        }
    }

    fn chunk_sent(&self, plain: u64, sealed: u64) {
        let encrypted = self.encrypted.fetch_add(plain, Ordering::Relaxed) + plain;
        let uploaded = self.uploaded.fetch_add(sealed, Ordering::Relaxed) + sealed;
        if plain > 0 || self.file_size == 0 {
            self.report(
                Stage::Encrypting,
                encrypted.min(self.file_size),
                self.file_size,
            );
        }
        self.report(
            Stage::Uploading,
            uploaded.min(self.ciphertext_size),
            self.ciphertext_size,
        );
        if uploaded >= self.ciphertext_size {
            self.completing_started();
        }
    }

    fn take_back(&self, plain: u64, sealed: u64) {
        let _ = self
            .encrypted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(plain))
            });
        let _ = self
            .uploaded
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(sealed))
            });
    }

    /// Every byte is handed over; what remains is the node storing and distributing.
    fn completing_started(&self) {
        if !self.completing.swap(true, Ordering::Relaxed) {
            self.report(Stage::Completing, 0, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zib_proto::{EnvelopeParams, FileId, NodeId};

    fn registration(expires_at: &str) -> Registration {
        Registration {
            upload_type: UploadType::Single,
            file_id: FileId::new_random(),
            bucket: "b".into(),
            key: "k".into(),
            file_size: 0,
            content_type: "application/octet-stream".into(),
            node_id: NodeId::new_random(),
            node_url: "http://127.0.0.1:1".into(),
            upload_url: Some("http://127.0.0.1:1/upload".into()),
            upload_id: None,
            parts: vec![],
            complete_url: None,
            encryption_key: String::new(),
            envelope: EnvelopeParams {
                version: 1,
                chunk_size: 1024,
                nonce_prefix: "00112233445566".into(),
            },
            ciphertext_size: 32,
            cdn_url: "http://127.0.0.1:1/objects/x".into(),
            expires_at: expires_at.into(),
        }
    }

    #[test]
    fn expired_registrations_are_refused_by_name() {
        let now = OffsetDateTime::parse("2030-01-01T00:00:00Z", &Rfc3339).unwrap();
        let err = check_not_expired(&registration("2029-12-31T23:59:59Z"), now).unwrap_err();
        assert!(
            err.to_string().contains("upload registration expired"),
            "{err}"
        );
        assert!(check_not_expired(&registration("2030-01-01T00:10:00Z"), now).is_ok());
        let err = check_not_expired(&registration("tomorrow"), now).unwrap_err();
        assert!(err.to_string().contains("expires_at"), "{err}");
    }

    #[test]
    fn the_parts_listing_sits_beside_the_upload_url_with_its_token() {
        let mut reg = registration("2030-01-01T00:00:00Z");
        reg.upload_url = Some("http://n:1/v1/upload/b1?token=T1".into());
        assert_eq!(
            parts_url(&reg).unwrap(),
            "http://n:1/v1/upload/b1/parts?token=T1"
        );
        reg.upload_type = UploadType::Multipart;
        reg.complete_url = Some("http://n:1/v1/upload/b2/complete?token=T2".into());
        assert_eq!(
            parts_url(&reg).unwrap(),
            "http://n:1/v1/upload/b2/parts?token=T2"
        );
    }

    #[test]
    fn only_a_clear_refusal_after_the_last_byte_is_a_failure() {
        let api = |status: u16, code: &str| ClientError::Api {
            origin: crate::Origin::Node,
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(maybe_committed(&api(502, codes::DISTRIBUTION_FAILED)));
        assert!(maybe_committed(&api(503, "x")));
        // Erasure-coded as it arrived: nothing kept, the token unspent.
        assert!(!maybe_committed(&api(503, codes::DISTRIBUTION_FAILED)));
        assert!(maybe_committed(&api(409, codes::TOKEN_USED)));
        assert!(!maybe_committed(&api(400, codes::MISSING_PARTS)));
        assert!(!maybe_committed(&api(409, codes::UPLOAD_REFUSED)));
        assert!(!maybe_committed(&ClientError::Config("x".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_budget_and_skip_fatal_errors() {
        let calls = AtomicU64::new(0);
        let result: Result<(), _> = with_retries(2, Retry::Transient, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(Failure::Transient(ClientError::Config("boom".into())))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 3);

        calls.store(0, Ordering::Relaxed);
        let result: Result<(), _> = with_retries(5, Retry::Transient, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(Failure::Fatal(ClientError::Config("no".into())))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);

        calls.store(0, Ordering::Relaxed);
        let result: Result<(), _> = with_retries(5, Retry::ConnectOnly, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(Failure::Transient(ClientError::Config("5xx".into())))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
