//! CompleteMultipartUpload, retried or not.
//!
//! A client whose answer was lost (a timeout, a dropped connection) sends the same
//! Complete again. S3 answers it with the same result, so ZiB does too: a completed
//! upload is recorded in `s3_completed_uploads` (before its spool is removed) and a
//! Complete for an upload that has no spool any more answers from that record, to the
//! same tenant, bucket and key only (anyone else gets `NoSuchUpload`, as for an id that
//! never existed). The collector forgets records after `s3_multipart_expiry_days`.
//!
//! A retry that arrives while the first Complete is still storing must not store the
//! object a second time: each Complete reserves its upload id here first, and a later
//! one waits for the first one's result instead. The reservation is released only
//! after the record is written and the spool removed, so a retry that finds no
//! reservation finds either the spool (nothing was stored yet) or the record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use futures::future::BoxFuture;
use http::StatusCode;
use s3s::dto::{CompleteMultipartUploadInput, CompleteMultipartUploadOutput, ETag};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};
use tokio::sync::watch;
use zib_meta::CompletedUpload;

use crate::state::AppState;

use super::checksums;
use super::conditional::WriteCondition;
use super::errors::internal;
use super::gateway::Stored;
use super::multipart::{self, ListedPart};
use super::sse::{self, EncryptionHeaders};

/// Who may see an upload: its tenant, bucket and key.
type Owner = (String, String, String);

/// What a Complete ended with, shared with the retries that waited for it.
#[derive(Clone)]
enum Outcome {
    Stored(Stored),
    Failed {
        code: S3ErrorCode,
        message: String,
        status: Option<StatusCode>,
    },
}

impl Outcome {
    fn of(result: &S3Result<Stored>) -> Outcome {
        match result {
            Ok(stored) => Outcome::Stored(stored.clone()),
            Err(e) => Outcome::failed(e),
        }
    }

    fn failed(e: &S3Error) -> Outcome {
        Outcome::Failed {
            code: e.code().clone(),
            message: e.message().unwrap_or_default().to_string(),
            status: e.status_code(),
        }
    }

    fn into_result(self) -> S3Result<Stored> {
        match self {
            Outcome::Stored(stored) => Ok(stored),
            Outcome::Failed {
                code,
                message,
                status,
            } => {
                let mut err = S3Error::with_message(code, message);
                if let Some(status) = status {
                    err.set_status_code(status);
                }
                Err(err)
            }
        }
    }
}

struct InFlight {
    token: u64,
    owner: Owner,
    done: watch::Receiver<Option<Outcome>>,
}

/// Completes in progress on this server, by upload id (ids are random: one map serves
/// every server state of the process).
static IN_FLIGHT: LazyLock<Mutex<HashMap<String, InFlight>>> = LazyLock::new(Default::default);
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(0);

fn in_flight() -> std::sync::MutexGuard<'static, HashMap<String, InFlight>> {
    // A panic while the lock was held leaves the map itself consistent.
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// This request's claim on an upload id; released (and the waiters answered) on drop.
struct Reservation {
    upload_id: String,
    token: u64,
    tx: watch::Sender<Option<Outcome>>,
}

impl Reservation {
    fn finish(self, outcome: Outcome) {
        self.tx.send_replace(Some(outcome));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut map = in_flight();
        if map
            .get(&self.upload_id)
            .is_some_and(|f| f.token == self.token)
        {
            map.remove(&self.upload_id);
        }
    }
}

enum Claim {
    Mine(Reservation),
    /// Another Complete of the same upload is running: its result, when it comes.
    Waiting(BoxFuture<'static, S3Result<Stored>>),
}

fn claim(upload_id: &str, owner: &Owner) -> S3Result<Claim> {
    let mut map = in_flight();
    if let Some(running) = map.get(upload_id) {
        if &running.owner != owner {
            return Err(multipart::no_such_upload(upload_id));
        }
        tracing::info!(%upload_id, "a repeated Complete waits for the one storing");
        let mut done = running.done.clone();
        return Ok(Claim::Waiting(Box::pin(async move {
            let outcome = done
                .wait_for(Option::is_some)
                .await
                .map_err(|_| {
                    s3_error!(
                        ServiceUnavailable,
                        "an earlier CompleteMultipartUpload of this upload was interrupted; retry"
                    )
                })?
                .clone();
            outcome
                .ok_or_else(|| internal("a completion ended without its outcome"))?
                .into_result()
        })));
    }
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    let (tx, done) = watch::channel(None);
    map.insert(
        upload_id.to_string(),
        InFlight {
            token,
            owner: owner.clone(),
            done,
        },
    );
    Ok(Claim::Mine(Reservation {
        upload_id: upload_id.to_string(),
        token,
        tx,
    }))
}

/// Completed already (a retry), or being stored by this request or an earlier one.
enum Completion {
    Done(Stored),
    Storing(BoxFuture<'static, S3Result<Stored>>),
}

async fn start(
    state: &AppState,
    owner: Owner,
    upload_id: &str,
    listed: Vec<ListedPart>,
    condition: WriteCondition,
    object_checksum: s3s::dto::Checksum,
) -> S3Result<Completion> {
    let reservation = match claim(upload_id, &owner)? {
        Claim::Waiting(result) => return Ok(Completion::Storing(result)),
        Claim::Mine(reservation) => reservation,
    };
    let (tenant_id, bucket, key) = &owner;
    let prepared =
        multipart::prepare_complete(state, tenant_id, bucket, key, upload_id, listed, condition)
            .await
            .and_then(|ready| ready.with_object_checksum(&object_checksum));
    let ready = match prepared {
        Ok(ready) => ready,
        Err(e) if *e.code() == S3ErrorCode::NoSuchUpload => {
            let done = state
                .store
                .completed_upload(upload_id, tenant_id, bucket, key)
                .await
                .map_err(internal)?;
            return match done {
                Some(done) => {
                    // The object's checksums are the file's: a retry answers them too.
                    let checksums = state
                        .store
                        .object_checksums(done.file_id)
                        .await
                        .map_err(internal)?;
                    let stored = Stored {
                        file_id: done.file_id,
                        md5_hex: done.etag,
                        checksums,
                    };
                    reservation.finish(Outcome::Stored(stored.clone()));
                    Ok(Completion::Done(stored))
                }
                None => {
                    reservation.finish(Outcome::failed(&e));
                    Err(e)
                }
            };
        }
        Err(e) => {
            reservation.finish(Outcome::failed(&e));
            return Err(e);
        }
    };
    // Storing re-seals the whole object, so it takes longer the larger the object. It
    // runs on its own task: a client that gives up does not leave it half done.
    let state = state.clone();
    let stored = tokio::spawn(async move {
        let result = match ready.store(&state).await {
            Ok((stored, spool)) => {
                // Unrecorded, the spool stays: a retry then stores the same bytes again,
                // which the gateway answers as the same object (the collector removes
                // the spool later).
                if remember(&state, &reservation.upload_id, &owner, &stored).await {
                    spool.remove().await;
                }
                Ok(stored)
            }
            Err(e) => Err(e),
        };
        reservation.finish(Outcome::of(&result));
        result
    });
    Ok(Completion::Storing(Box::pin(async move {
        stored
            .await
            .map_err(|e| internal(format!("completing the upload: {e}")))?
    })))
}

/// Records a stored upload so a retry gets the same answer; whether it was written.
async fn remember(state: &AppState, upload_id: &str, owner: &Owner, stored: &Stored) -> bool {
    let (tenant_id, bucket, key) = owner;
    let done = CompletedUpload {
        upload_id: upload_id.to_string(),
        tenant_id: tenant_id.clone(),
        bucket: bucket.clone(),
        key: key.clone(),
        file_id: stored.file_id,
        etag: stored.md5_hex.clone(),
        completed_at: crate::state::now_ms(),
    };
    match state.store.record_completed_upload(&done).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(%upload_id, error = %e, "could not record the completed upload");
            false
        }
    }
}

/// `{public_url}/s3/{bucket}/{key}`, the key percent-encoded but for `/`.
fn location(state: &AppState, bucket: &str, key: &str) -> String {
    let mut encoded = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!(
        "{}{}/{bucket}/{encoded}",
        state.config.public_url.trim_end_matches('/'),
        super::PREFIX
    )
}

/// CompleteMultipartUpload: the result at once when storing is done within
/// `s3_complete_wait`; past that, s3s answers 200 and keeps the connection alive with
/// whitespace until the result follows, as S3 does, so clients' read timeouts do not
/// fire (an error found that late is the document after the whitespace; see
/// `without_second_declaration`).
pub async fn complete(
    state: &AppState,
    tenant_id: &str,
    input: CompleteMultipartUploadInput,
) -> S3Result<CompleteMultipartUploadOutput> {
    input.refuse_unsupported_encryption()?;
    let condition =
        WriteCondition::from_headers(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let mut listed = Vec::new();
    for part in input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
    {
        let (Some(number), Some(etag)) = (part.part_number, part.e_tag) else {
            return Err(s3_error!(
                MalformedXML,
                "every listed part needs a PartNumber and an ETag"
            ));
        };
        listed.push(ListedPart {
            number,
            etag: etag.into_value(),
            checksums: checksums::sent!(part),
        });
    }
    let object_checksum = checksums::sent!(input);
    let (bucket, key) = (input.bucket, input.key);
    let owner = (tenant_id.to_string(), bucket.clone(), key.clone());
    let location = location(state, &bucket, &key);
    let output = move |stored: Stored| {
        let mut output = CompleteMultipartUploadOutput {
            bucket: Some(bucket),
            key: Some(key),
            e_tag: Some(ETag::Strong(stored.md5_hex)),
            location: Some(location),
            server_side_encryption: sse::reported(),
            ..Default::default()
        };
        checksums::fill!(output, &stored.checksums, typed);
        output
    };
    let mut storing = match start(
        state,
        owner,
        &input.upload_id,
        listed,
        condition,
        object_checksum,
    )
    .await?
    {
        Completion::Done(stored) => return Ok(output(stored)),
        Completion::Storing(storing) => storing,
    };
    if let Ok(done) = tokio::time::timeout(state.config.s3_complete_wait, &mut storing).await {
        return Ok(output(done?));
    }
    // The late answer is written outside this request's task: it names the request
    // id captured here, like every other S3 error document.
    let request_id = crate::request_id::current();
    let result = async move {
        storing.await.map(output).map_err(|mut e| {
            if let Some(id) = request_id {
                e.set_request_id(id);
            }
            e
        })
    };
    Ok(CompleteMultipartUploadOutput {
        future: Some(Box::pin(result)),
        ..Default::default()
    })
}
