//! Webhooks: tenant and per-upload targets, endpoints, the event outbox, deliveries
//! with leases, and the attempt log. Events are inserted by `events::enqueue_event` inside
//! the caller's transaction, so a state change and the event reporting it commit
//! together or not at all. One file per concern:
//!
//! - `targets`: the tenant default and an upload's own URL;
//! - `endpoints`: managed endpoints and what they subscribe to;
//! - `events`: the outbox, fan-out to targets, test events, redelivery;
//! - `formats`: the peer formats' events (`lifecycle`, `media`) of each transition;
//! - `deliveries`: one row per (event, target), leased by dispatchers;
//! - `attempts`: the log of every send and what it did to its delivery;
//! - `retention`: pruning old, settled history.

use serde_json::Value;

use crate::{MetaError, Result};

mod attempts;
mod deliveries;
mod endpoints;
mod event_rows;
mod events;
mod formats;
mod retention;
mod targets;

pub use attempts::{AttemptOutcome, AttemptRecord, WebhookAttempt, SNIPPET_MAX_BYTES};
pub use deliveries::{
    ClaimedDelivery, DeliveryStatus, DeliveryTarget, ResolvedTarget, WebhookDelivery,
};
pub use endpoints::{EndpointPatch, NewEndpoint, WebhookEndpoint};
pub use event_rows::WebhookEvent;
pub use events::NewWebhookEvent;
pub(crate) use events::{enqueue_event, enqueue_file_event, enqueue_file_events};
pub(crate) use formats::{rendition_published, upload_started};
pub use targets::TenantWebhook;

fn corrupt(what: &'static str, value: &str) -> MetaError {
    MetaError::Corrupt {
        what,
        detail: format!("unexpected value {value:?}"),
    }
}

fn prefixed_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

fn json_text(value: &Value, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| MetaError::Corrupt {
        what,
        detail: e.to_string(),
    })
}
