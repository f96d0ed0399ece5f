//! The dispatcher: a worker that leases due deliveries from the outbox, POSTs each
//! signed event, logs every attempt and schedules the retry. All its state is in
//! the store, so it picks up after a restart, and leases keep several servers from
//! sending the same attempt twice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use serde_json::Value;
use zib_crypto::webhook::{standard_signature, zib_signature};
use zib_meta::{AttemptOutcome, AttemptRecord, ClaimedDelivery, WebhookEvent, SNIPPET_MAX_BYTES};
use zib_proto::events::{FILE_READY, FILE_REPLICATED};

use super::{Tick, Worker, WorkerHandle};
use crate::domain::ssrf;
use crate::state::{now_ms, AppState};

/// Deliveries leased per tick; they are sent concurrently.
const BATCH: u32 = 32;
/// The lease outlives the request timeout by this, so a slow send is never taken
/// over by another dispatcher while it is still running.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Up to this fraction of a retry delay is added at random.
const JITTER: f64 = 0.2;

pub struct Dispatcher {
    http: reqwest::Client,
}

impl Dispatcher {
    pub fn new(state: &AppState) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            // A redirect would send the event somewhere the guard never checked.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host where the guard cannot see it.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: state.config.allow_private_webhook_targets,
            }))
            .user_agent(concat!("ZiB-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http })
    }
}

impl Worker for Dispatcher {
    fn name(&self) -> &'static str {
        "webhook-dispatcher"
    }

    fn interval(&self, state: &AppState) -> Duration {
        state.config.webhook_poll_interval
    }

    async fn tick(&mut self, state: &AppState, me: &WorkerHandle) -> Result<Tick, String> {
        let lease = state.config.webhook_timeout + LEASE_MARGIN;
        let claimed = state
            .store
            .claim_webhook_deliveries(now_ms(), lease.as_millis() as i64, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if claimed.is_empty() {
            me.set_status("nothing due");
            return Ok(Tick::Idle);
        }
        me.set_status(format!("last tick: {} deliveries attempted", claimed.len()));
        let sends = claimed.iter().map(|c| deliver(state, &self.http, c));
        let results = futures::future::join_all(sends).await;
        for r in results {
            r?;
        }
        Ok(Tick::Busy)
    }
}

/// The body as sent: the stored payload, plus `cdn_url` where the file is readable.
pub fn render_body(state: &AppState, event: &WebhookEvent) -> Vec<u8> {
    let mut payload = event.payload.clone();
    if matches!(event.event_type.as_str(), FILE_READY | FILE_REPLICATED) {
        let file_id = event.file_id.as_deref().and_then(|f| f.parse().ok());
        if let (Some(file_id), Value::Object(map)) = (file_id, &mut payload) {
            map.insert("cdn_url".into(), Value::String(state.cdn_url(file_id)));
        }
    }
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// Every header of one attempt. `timestamp` is the attempt's (unix seconds), so a
/// retry hours later still passes a receiver's replay window; the event id is the
/// same on every attempt, for deduplication.
pub fn signed_headers(
    event: &WebhookEvent,
    body: &[u8],
    secrets: &[String],
    timestamp: i64,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("x-zib-event", &event.event_type);
    put("x-zib-event-id", &event.id);
    put("x-zib-timestamp", &timestamp.to_string());
    put("webhook-id", &event.id);
    put("webhook-timestamp", &timestamp.to_string());
    if let Some(f) = &event.file_id {
        put("x-zib-file-id", f);
    }
    if let Some(j) = &event.job_id {
        put("x-zib-job-id", j);
    }
    if let Some(current) = secrets.first() {
        put("x-zib-signature", &zib_signature(current, body));
    }
    if let Some(previous) = secrets.get(1) {
        put("x-zib-signature-previous", &zib_signature(previous, body));
    }
    if !secrets.is_empty() {
        let sigs: Vec<String> = secrets
            .iter()
            .map(|s| standard_signature(s, &event.id, timestamp, body))
            .collect();
        put("webhook-signature", &sigs.join(" "));
    }
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h
}

/// The delay before retry number `round_attempts` (0-based), with jitter; `None`
/// when the schedule is spent.
pub fn retry_delay(schedule: &[Duration], round_attempts: u32) -> Option<Duration> {
    let base = *schedule.get(round_attempts as usize)?;
    let extra = rand::thread_rng().gen_range(0.0..=JITTER);
    Some(base.mul_f64(1.0 + extra))
}

async fn deliver(
    state: &AppState,
    http: &reqwest::Client,
    claimed: &ClaimedDelivery,
) -> Result<(), String> {
    let store = &state.store;
    let now = now_ms();
    let target = store
        .resolve_webhook_target(claimed, now)
        .await
        .map_err(|e| e.to_string())?;
    let target = match target {
        Ok(t) => t,
        Err(reason) => {
            let record = AttemptRecord {
                url: claimed.delivery.url.clone(),
                status_code: None,
                latency_ms: 0,
                response_snippet: None,
                error: Some(reason),
            };
            store
                .finish_webhook_attempt(claimed, &record, AttemptOutcome::Failed, now)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
    };

    let body = render_body(state, &claimed.event);
    let started = Instant::now();
    let (status_code, snippet, error) =
        match ssrf::check_url(&target.url, state.config.allow_private_webhook_targets).await {
            Err(refusal) => (None, None, Some(format!("refused: {refusal}"))),
            Ok(url) => {
                let headers = signed_headers(&claimed.event, &body, &target.secrets, now / 1000);
                send(http, url, headers, body, state.config.webhook_timeout).await
            }
        };
    let latency_ms = started.elapsed().as_millis() as u64;
    let succeeded = status_code.is_some_and(|c| (200..300).contains(&c));
    let outcome = if succeeded {
        AttemptOutcome::Succeeded
    } else {
        match retry_delay(
            &state.config.webhook_retry_schedule,
            claimed.delivery.round_attempts,
        ) {
            Some(d) => AttemptOutcome::RetryAt(now_ms() + d.as_millis() as i64),
            None => AttemptOutcome::Failed,
        }
    };
    tracing::info!(
        event_id = %claimed.event.id,
        event = %claimed.event.event_type,
        delivery = %claimed.delivery.id,
        url = %target.url,
        status = ?status_code,
        error = ?error,
        latency_ms,
        outcome = ?outcome,
        "webhook attempt"
    );
    let record = AttemptRecord {
        url: target.url,
        status_code,
        latency_ms,
        response_snippet: snippet,
        error,
    };
    let held = store
        .finish_webhook_attempt(claimed, &record, outcome, now_ms())
        .await
        .map_err(|e| e.to_string())?;
    if !held {
        tracing::warn!(delivery = %claimed.delivery.id, "webhook lease expired during the attempt");
    }
    Ok(())
}

/// Status, the first KiB of the response, or the transport error.
async fn send(
    http: &reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    body: Vec<u8>,
    timeout: Duration,
) -> (Option<u16>, Option<String>, Option<String>) {
    let request = http
        .post(url)
        .headers(headers)
        .header(
            USER_AGENT,
            concat!("ZiB-Webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .body(body)
        .timeout(timeout);
    let mut resp = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            let what = if e.is_timeout() {
                format!("timed out after {timeout:?}")
            } else {
                error_chain(&e)
            };
            return (None, None, Some(what));
        }
    };
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    let mut read_error = None;
    while bytes.len() < SNIPPET_MAX_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                read_error = Some(if e.is_timeout() {
                    format!("timed out reading the response after {timeout:?}")
                } else {
                    error_chain(&e)
                });
                break;
            }
        }
    }
    bytes.truncate(SNIPPET_MAX_BYTES);
    let snippet = String::from_utf8_lossy(&bytes).into_owned();
    // A 2xx whose body then broke still counts: the receiver answered.
    (
        Some(status),
        (!snippet.is_empty()).then_some(snippet),
        read_error,
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Resolves like the system, but never hands the HTTP client a forbidden address:
/// the check that ran before the send cannot be undone by a DNS answer that
/// changed in between.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || ssrf::forbidden_reason(a.ip()).is_none())
                .collect();
            if addrs.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves to no address a webhook may be sent to").into();
                return Err(e);
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> WebhookEvent {
        WebhookEvent {
            id: "evt_1".into(),
            tenant_id: "ten_x".into(),
            event_type: "file.ready".into(),
            file_id: Some("f".into()),
            job_id: None,
            payload: serde_json::json!({"event": "file.ready"}),
            created_at: 0,
        }
    }

    #[test]
    fn headers_carry_both_signatures_during_an_overlap() {
        let body = br#"{"event":"file.ready"}"#;
        let secrets = vec!["whsec_bmV3".to_string(), "whsec_b2xk".to_string()];
        let h = signed_headers(&event(), body, &secrets, 1_700_000_000);
        assert_eq!(h["x-zib-event"], "file.ready");
        assert_eq!(h["x-zib-file-id"], "f");
        assert!(h.get("x-zib-job-id").is_none());
        assert_eq!(h["webhook-id"], "evt_1");
        assert_eq!(h["webhook-timestamp"], "1700000000");
        let sig = h["x-zib-signature"].to_str().unwrap();
        assert!(zib_crypto::webhook::verify_zib_signature(
            &secrets[0],
            body,
            sig
        ));
        let prev = h["x-zib-signature-previous"].to_str().unwrap();
        assert!(zib_crypto::webhook::verify_zib_signature(
            &secrets[1],
            body,
            prev
        ));
        let std_sig = h["webhook-signature"].to_str().unwrap();
        for s in &secrets {
            assert!(zib_crypto::webhook::verify_standard_signature(
                s,
                "evt_1",
                1_700_000_000,
                body,
                std_sig
            ));
        }
    }

    #[test]
    fn unsigned_without_secrets() {
        let h = signed_headers(&event(), b"{}", &[], 1);
        assert!(h.get("x-zib-signature").is_none());
        assert!(h.get("webhook-signature").is_none());
    }

    #[test]
    fn retries_follow_the_schedule_with_bounded_jitter() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(30)];
        let d0 = retry_delay(&schedule, 0).unwrap();
        assert!(d0 >= Duration::from_secs(5) && d0 <= Duration::from_secs(6));
        let d1 = retry_delay(&schedule, 1).unwrap();
        assert!(d1 >= Duration::from_secs(30) && d1 <= Duration::from_secs(36));
        assert!(retry_delay(&schedule, 2).is_none());
    }
}
