//! Tenant API for webhooks: the customer-level default (`/v1/api/customers/{id}/webhook`),
//! managed endpoints (`/v1/api/webhooks/endpoints`), and the event log with its
//! attempts and manual redelivery (`/v1/api/webhooks/events`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zib_meta::{
    EndpointPatch, NewEndpoint, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent,
};
use zib_proto::events::iso_millis;
use zib_proto::peer_events::WebhookFormat;

use crate::auth::AuthTenant;
use crate::body::parse_json;
use crate::domain::webhook_targets::{check_secret, check_target};
use crate::error::{ApiError, ApiResult};
use crate::state::{now_ms, AppState};

/// Longest listing a single call returns.
const MAX_LIMIT: u32 = 500;
const DEFAULT_LIMIT: u32 = 100;
const MAX_DESCRIPTION_LEN: usize = 1024;

/// The path's customer must be the caller's tenant; `me` names it without knowing
/// the id.
fn own_customer(tenant_id: &str, customer_id: &str) -> ApiResult<()> {
    if tenant_id == customer_id || customer_id == "me" {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "customer {customer_id} is not the customer of these credentials"
        )))
    }
}

// --- the customer-level default -------------------------------------------------------

fn tenant_webhook_json(customer_id: &str, t: Option<&zib_meta::TenantWebhook>) -> Value {
    let now = now_ms();
    json!({
        "customer_id": customer_id,
        "webhook_url": t.and_then(|t| t.url.clone()),
        "has_secret": t.is_some(),
        "previous_secret_valid_until": t
            .and_then(|t| t.previous_valid_until)
            .filter(|until| *until > now)
            .map(iso_millis),
    })
}

pub async fn get_customer_webhook(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(customer_id): Path<String>,
) -> ApiResult<Json<Value>> {
    own_customer(&tenant.id, &customer_id)?;
    let t = state.store.tenant_webhook(&tenant.id).await?;
    Ok(Json(tenant_webhook_json(&tenant.id, t.as_ref())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerWebhookPatch {
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, with = "double_option")]
    webhook_url: Option<Option<String>>,
    #[serde(default)]
    webhook_secret: Option<String>,
}

/// `PATCH /v1/api/customers/{customer_id}/webhook`: sets the default URL (and the
/// secret, if given). The first call generates a secret unless one is given, and
/// returns it: the only time it is shown.
pub async fn patch_customer_webhook(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(customer_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    own_customer(&tenant.id, &customer_id)?;
    let patch: CustomerWebhookPatch = parse_json(&body)?;
    let url = match &patch.webhook_url {
        Some(Some(u)) => Some(Some(check_target(&state, "webhook_url", u).await?)),
        Some(None) => Some(None),
        None => None,
    };
    if let Some(s) = &patch.webhook_secret {
        check_secret("webhook_secret", s)?;
    }
    let now = now_ms();
    let existing = state.store.tenant_webhook(&tenant.id).await?;
    let mut shown_secret = None;
    let current_url = existing.as_ref().and_then(|t| t.url.clone());
    let new_url = url.unwrap_or(current_url);
    let initial = match (&existing, &patch.webhook_secret) {
        (None, Some(s)) => s.clone(),
        (None, None) => {
            let s = zib_crypto::webhook::generate_secret();
            shown_secret = Some(s.clone());
            s
        }
        (Some(t), _) => t.secret.clone(),
    };
    let mut t = state
        .store
        .set_tenant_webhook_url(&tenant.id, new_url.as_deref(), &initial, now)
        .await?;
    if let (Some(_), Some(secret)) = (&existing, &patch.webhook_secret) {
        if *secret != t.secret {
            t = rotate(&state, &tenant.id, secret, now).await?;
        }
    }
    let mut out = tenant_webhook_json(&tenant.id, Some(&t));
    if let (Some(s), Value::Object(map)) = (shown_secret, &mut out) {
        map.insert("webhook_secret".into(), Value::String(s));
    }
    Ok(Json(out))
}

async fn rotate(
    state: &AppState,
    tenant_id: &str,
    new_secret: &str,
    now: i64,
) -> ApiResult<zib_meta::TenantWebhook> {
    let until = now + state.config.webhook_secret_overlap.as_millis() as i64;
    Ok(state
        .store
        .rotate_tenant_webhook_secret(tenant_id, new_secret, until, now)
        .await?)
}

/// `POST /v1/api/customers/{customer_id}/webhook/secret`: a new secret, shown once;
/// the previous one keeps signing for the overlap window.
pub async fn rotate_customer_secret(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(customer_id): Path<String>,
) -> ApiResult<Json<Value>> {
    own_customer(&tenant.id, &customer_id)?;
    let secret = zib_crypto::webhook::generate_secret();
    let now = now_ms();
    let t = rotate(&state, &tenant.id, &secret, now).await?;
    let mut out = tenant_webhook_json(&tenant.id, Some(&t));
    if let Value::Object(map) = &mut out {
        map.insert("webhook_secret".into(), Value::String(secret));
    }
    Ok(Json(out))
}

// --- endpoints -----------------------------------------------------------------------

fn endpoint_json(ep: &WebhookEndpoint) -> Value {
    json!({
        "id": ep.id,
        "url": ep.url,
        "description": ep.description,
        "event_types": ep.event_types,
        "enabled": ep.enabled,
        "format": ep.format.as_str(),
        "created_at": iso_millis(ep.created_at),
        "updated_at": iso_millis(ep.updated_at),
    })
}

/// `zib` (default), `lifecycle` or `media`.
fn parse_format(format: Option<&str>) -> ApiResult<Option<WebhookFormat>> {
    format
        .map(|f| {
            WebhookFormat::parse(f).ok_or_else(|| {
                ApiError::invalid(
                    "format",
                    format!("unknown format {f:?}; use zib, lifecycle or media"),
                )
            })
        })
        .transpose()
}

/// Event types are names of the endpoint's format's vocabulary (`video.ready` for a
/// lifecycle endpoint, `partial.finished` for a media one), or `*`.
fn check_event_types(types: &Option<Vec<String>>, format: WebhookFormat) -> ApiResult<()> {
    let Some(types) = types else { return Ok(()) };
    let known = format.event_types();
    if types.is_empty() {
        return Err(ApiError::invalid(
            "event_types",
            "must name at least one event type (or be omitted or null for every event)",
        ));
    }
    for t in types {
        if t != "*" && !known.contains(&t.as_str()) {
            return Err(ApiError::invalid(
                "event_types",
                format!(
                    "unknown event type {t:?} for format {}; known: {}",
                    format.as_str(),
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Counted in characters, as the document's `maxLength` is.
fn check_description(d: &str) -> ApiResult<()> {
    if d.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ApiError::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEndpoint {
    url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

pub async fn create_endpoint(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let req: CreateEndpoint = parse_json(&body)?;
    let url = req
        .url
        .ok_or_else(|| ApiError::invalid("url", "is required"))?;
    let url = check_target(&state, "url", &url).await?;
    let format = parse_format(req.format.as_deref())?.unwrap_or_default();
    check_event_types(&req.event_types, format)?;
    let description = req.description.unwrap_or_default();
    check_description(&description)?;
    let secret = match req.secret {
        Some(s) => {
            check_secret("secret", &s)?;
            s
        }
        None => zib_crypto::webhook::generate_secret(),
    };
    let ep = state
        .store
        .create_webhook_endpoint(
            &tenant.id,
            NewEndpoint {
                url,
                description,
                event_types: req.event_types,
                enabled: req.enabled.unwrap_or(true),
                secret,
                format,
            },
            now_ms(),
        )
        .await?;
    let mut out = endpoint_json(&ep);
    if let Value::Object(map) = &mut out {
        map.insert("secret".into(), Value::String(ep.secret.clone()));
    }
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn list_endpoints(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
) -> ApiResult<Json<Value>> {
    let eps = state.store.list_webhook_endpoints(&tenant.id).await?;
    Ok(Json(
        json!({"endpoints": eps.iter().map(endpoint_json).collect::<Vec<_>>()}),
    ))
}

async fn endpoint_or_404(
    state: &AppState,
    tenant_id: &str,
    id: &str,
) -> ApiResult<WebhookEndpoint> {
    state
        .store
        .webhook_endpoint(tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("webhook endpoint {id} not found")))
}

pub async fn get_endpoint(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let ep = endpoint_or_404(&state, &tenant.id, &id).await?;
    Ok(Json(endpoint_json(&ep)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchEndpoint {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// `null` subscribes to every event.
    #[serde(default, with = "double_option")]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    format: Option<String>,
}

pub async fn update_endpoint(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: PatchEndpoint = parse_json(&body)?;
    let current = endpoint_or_404(&state, &tenant.id, &id).await?;
    let url = match &req.url {
        Some(u) => Some(check_target(&state, "url", u).await?),
        None => None,
    };
    let format = parse_format(req.format.as_deref())?;
    // The subscription must make sense in the format the endpoint ends up with.
    let types = req.event_types.as_ref().unwrap_or(&current.event_types);
    check_event_types(types, format.unwrap_or(current.format))?;
    if let Some(d) = &req.description {
        check_description(d)?;
    }
    let ep = state
        .store
        .update_webhook_endpoint(
            &tenant.id,
            &id,
            EndpointPatch {
                url,
                description: req.description,
                event_types: req.event_types,
                enabled: req.enabled,
                format,
                secret: None,
            },
            now_ms(),
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("webhook endpoint {id} not found")))?;
    Ok(Json(endpoint_json(&ep)))
}

/// `PUT /v1/api/webhooks/endpoints/{id}`: a full update with the create call's body;
/// an omitted optional field takes its create default, except `secret`, which is
/// replaced only when given (a silent rotation would break the receiver).
pub async fn replace_endpoint(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: CreateEndpoint = parse_json(&body)?;
    endpoint_or_404(&state, &tenant.id, &id).await?;
    let url = req
        .url
        .ok_or_else(|| ApiError::invalid("url", "is required"))?;
    let url = check_target(&state, "url", &url).await?;
    let format = parse_format(req.format.as_deref())?.unwrap_or_default();
    check_event_types(&req.event_types, format)?;
    let description = req.description.unwrap_or_default();
    check_description(&description)?;
    if let Some(s) = &req.secret {
        check_secret("secret", s)?;
    }
    let ep = state
        .store
        .update_webhook_endpoint(
            &tenant.id,
            &id,
            EndpointPatch {
                url: Some(url),
                description: Some(description),
                event_types: Some(req.event_types),
                enabled: Some(req.enabled.unwrap_or(true)),
                format: Some(format),
                secret: req.secret,
            },
            now_ms(),
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("webhook endpoint {id} not found")))?;
    Ok(Json(endpoint_json(&ep)))
}

pub async fn delete_endpoint(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if !state
        .store
        .delete_webhook_endpoint(&tenant.id, &id, now_ms())
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "webhook endpoint {id} not found"
        )));
    }
    Ok(Json(json!({"id": id, "deleted": true})))
}

/// `POST /v1/api/webhooks/endpoints/{id}/test`: queues a `webhook.test` event for
/// this endpoint only; watch its deliveries for the outcome.
pub async fn test_endpoint(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let ep = endpoint_or_404(&state, &tenant.id, &id).await?;
    // The target may have moved since it was configured; say so now, not later.
    check_target(&state, "url", &ep.url).await?;
    let event = state
        .store
        .send_test_webhook(&tenant.id, &id, now_ms())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("webhook endpoint {id} not found")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"endpoint_id": id, "event_id": event.id, "event": event.event_type})),
    ))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    file_id: Option<String>,
}

/// The listing size: 1 to 500 as documented; anything else is refused by name rather
/// than clamped, so a caller asking for more learns the ceiling.
fn limit(q: &ListQuery) -> ApiResult<u32> {
    match q.limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::invalid(
            "limit",
            format!("{n} is out of range: use 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"),
        )),
    }
}

fn delivery_json(d: &WebhookDelivery) -> Value {
    json!({
        "id": d.id,
        "event_id": d.event_id,
        "event": d.event_type,
        "target": d.target.as_str(),
        "endpoint_id": d.endpoint_id,
        "url": d.url,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "next_attempt_at": (d.status == zib_meta::DeliveryStatus::Pending)
            .then(|| iso_millis(d.next_attempt_at)),
        "last_error": d.last_error,
        "created_at": iso_millis(d.created_at),
        "updated_at": iso_millis(d.updated_at),
    })
}

pub async fn endpoint_deliveries(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = limit(&q)?;
    endpoint_or_404(&state, &tenant.id, &id).await?;
    let list = state
        .store
        .list_endpoint_deliveries(&tenant.id, &id, limit)
        .await?;
    Ok(Json(json!({
        "endpoint_id": id,
        "deliveries": list.iter().map(delivery_json).collect::<Vec<_>>(),
    })))
}

// --- events --------------------------------------------------------------------------

fn event_json(e: &WebhookEvent) -> Value {
    json!({
        "id": e.id,
        "event": e.event_type,
        "format": WebhookFormat::of_payload(&e.payload).as_str(),
        "file_id": e.file_id,
        "job_id": e.job_id,
        "created_at": iso_millis(e.created_at),
        "payload": e.payload,
    })
}

pub async fn list_events(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = limit(&q)?;
    let list = state
        .store
        .list_webhook_events(&tenant.id, q.file_id.as_deref(), limit)
        .await?;
    Ok(Json(
        json!({"events": list.iter().map(event_json).collect::<Vec<_>>()}),
    ))
}

async fn event_or_404(state: &AppState, tenant_id: &str, id: &str) -> ApiResult<WebhookEvent> {
    state
        .store
        .webhook_event(tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("webhook event {id} not found")))
}

pub async fn get_event(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let event = event_or_404(&state, &tenant.id, &id).await?;
    let deliveries = state.store.list_event_deliveries(&tenant.id, &id).await?;
    let mut out = event_json(&event);
    if let Value::Object(map) = &mut out {
        map.insert(
            "deliveries".into(),
            deliveries.iter().map(delivery_json).collect(),
        );
    }
    Ok(Json(out))
}

fn attempt_json(a: &WebhookAttempt) -> Value {
    json!({
        "id": a.id,
        "delivery_id": a.delivery_id,
        "event_id": a.event_id,
        "attempt": a.attempt,
        "url": a.url,
        "status_code": a.status_code,
        "latency_ms": a.latency_ms,
        "response_snippet": a.response_snippet,
        "error": a.error,
        "attempted_at": iso_millis(a.attempted_at),
    })
}

pub async fn event_attempts(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    event_or_404(&state, &tenant.id, &id).await?;
    let list = state.store.list_event_attempts(&tenant.id, &id).await?;
    Ok(Json(json!({
        "event_id": id,
        "attempts": list.iter().map(attempt_json).collect::<Vec<_>>(),
    })))
}

pub async fn redeliver_event(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let count = state
        .store
        .redeliver_webhook_event(&tenant.id, &id, now_ms())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("webhook event {id} not found")))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"event_id": id, "deliveries": count})),
    ))
}

/// Tells "absent" from "null" for PATCH fields.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}
