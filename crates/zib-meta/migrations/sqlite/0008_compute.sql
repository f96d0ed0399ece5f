-- AI compute jobs (docs/ai.md): transcription and vision runs on nodes that advertise
-- `transcription:<tier>` / `vision:<tier>`. One migration for the whole change.

-- One transcription or vision run over one stored video. `id` is the job_id tenants
-- see (UUIDv4). Asked with an encode (`encoding_job_id` set), it waits for that job to
-- end and is offered first to the node that encoded it; asked alone, any capable node
-- claims it.
CREATE TABLE compute_jobs (
    id               TEXT PRIMARY KEY,
    file_id          TEXT NOT NULL REFERENCES files (file_id),
    tenant_id        TEXT NOT NULL REFERENCES tenants (id),
    kind             TEXT NOT NULL CHECK (kind IN ('transcription', 'vision')),
    -- 'fastest' | 'recommended' | 'accurate' (transcription), 'standard' | 'hq' (vision)
    tier             TEXT NOT NULL,
    encoding_job_id  TEXT REFERENCES encoding_jobs (id),
    -- 'queued' also while waiting out a retry (`retry_after`); 'cancelled' (file deleted
    -- or superseded, or its encode cancelled) reads as 'failed' to tenants.
    status           TEXT NOT NULL CHECK (status IN (
        'queued', 'processing', 'complete', 'failed', 'cancelled')),
    -- 0-100, and a short sentence ("transcribing 01:30 of 04:00").
    progress         BIGINT NOT NULL DEFAULT 0,
    phase_detail     TEXT,
    lease_node       TEXT,
    lease_token_hash TEXT,
    lease_expires_at BIGINT,
    -- The node that ran (or runs) it.
    node_id          TEXT,
    retry_count      BIGINT NOT NULL DEFAULT 0,
    retry_after      BIGINT,
    error_message    TEXT,
    -- Outputs, each a derived file of `file_id`, recorded as the node stores them.
    srt_file_id      TEXT,
    vtt_file_id      TEXT,
    sidecar_file_id  TEXT,
    -- The spoken language the transcript is in ('en').
    language         TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    completed_at     BIGINT,
    updated_at       BIGINT NOT NULL
);

CREATE INDEX compute_jobs_by_file ON compute_jobs (file_id, created_at);
CREATE INDEX compute_jobs_by_status ON compute_jobs (status);
CREATE INDEX compute_jobs_by_encoding ON compute_jobs (encoding_job_id) WHERE encoding_job_id IS NOT NULL;
