-- Webhooks: where events go, the outbox of events, one delivery per (event, target),
-- and every attempt of every delivery.

-- The tenant's default target (the contract's customer-level webhook). During a
-- rotation the previous secret keeps signing until previous_valid_until.
CREATE TABLE tenant_webhooks (
    tenant_id            TEXT PRIMARY KEY REFERENCES tenants (id),
    url                  TEXT,
    secret               TEXT NOT NULL,
    previous_secret      TEXT,
    previous_valid_until BIGINT,
    updated_at           BIGINT NOT NULL
);

-- A per-upload target (`pipeline.webhook_url` at initiate). Not a foreign key: the
-- target must outlive a deleted file's row, for its file.deleted event.
CREATE TABLE file_webhooks (
    file_id    TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT,
    created_at BIGINT NOT NULL
);

-- Subscriptions managed through /v1/api/webhooks/endpoints.
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    url         TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of event types; NULL: every event.
    event_types TEXT,
    enabled     BIGINT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, created_at);

-- The outbox: written in the transaction of the state change it reports.
CREATE TABLE webhook_events (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    event_type TEXT NOT NULL,
    file_id    TEXT,
    job_id     TEXT,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX webhook_events_by_tenant ON webhook_events (tenant_id, created_at);
CREATE INDEX webhook_events_by_file ON webhook_events (file_id);

-- One per (event, target). `target` says where the URL and secret come from at send
-- time: the file's per-request config, the tenant default, or an endpoint.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES webhook_events (id),
    tenant_id       TEXT NOT NULL,
    target          TEXT NOT NULL CHECK (target IN ('request', 'tenant', 'endpoint')),
    endpoint_id     TEXT,
    -- The URL last sent to (the target's URL when the delivery was created).
    url             TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    -- Every attempt ever made, and those since the last manual redelivery (which
    -- pick the next backoff step).
    attempts        BIGINT NOT NULL,
    round_attempts  BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    -- A dispatcher holds a delivery while it sends; an expired lease frees it.
    lease_until     BIGINT,
    lease_token     TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at);

CREATE TABLE webhook_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      TEXT NOT NULL REFERENCES webhook_deliveries (id),
    event_id         TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    url              TEXT NOT NULL,
    status_code      BIGINT,
    latency_ms       BIGINT NOT NULL,
    -- At most 1 KiB of the response body.
    response_snippet TEXT,
    error            TEXT,
    attempted_at     BIGINT NOT NULL
);

CREATE INDEX webhook_attempts_by_event ON webhook_attempts (event_id, id);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);
