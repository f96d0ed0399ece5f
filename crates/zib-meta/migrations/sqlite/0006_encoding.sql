-- Video encoding (docs/video.md): jobs with leases, the HLS renditions and segments
-- they produce, and where each encrypted segment is replicated. One migration for the
-- whole encoding change.

-- One encode of one file. `id` is the encoding_id tenants see (UUIDv4).
CREATE TABLE encoding_jobs (
    id                 TEXT PRIMARY KEY,
    file_id            TEXT NOT NULL REFERENCES files (file_id),
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    phase              TEXT NOT NULL CHECK (phase IN (
        'queued', 'encoding', 'sharding', 'local_complete', 'replicating', 'safe',
        'failed', 'failed_user_action', 'cancelled')),
    -- 0-100, continuous across encoding and sharding (the tenant-facing progress).
    progress           BIGINT NOT NULL DEFAULT 0,
    -- 0-100 within the current phase (my-jobs' phase_progress_pct), and a sentence.
    phase_progress_pct DOUBLE PRECISION NOT NULL DEFAULT 0,
    phase_detail       TEXT,
    phase_updated_at   BIGINT NOT NULL,
    -- JSON: what this job was asked for besides the encode itself (transcription,
    -- vision, thumbnails, aspect_variants), for the stages that plug in later.
    options            TEXT NOT NULL DEFAULT '{}',
    -- The AES-128 key of this job's segments, wrapped under the master key
    -- (associated data: the job id). Never leaves the backend except to the node
    -- holding the lease, in memory.
    wrapped_hls_key    BLOB NOT NULL,
    -- The node holding the lease, its token's hash and when the lease lapses.
    lease_node         TEXT,
    lease_token_hash   TEXT,
    lease_expires_at   BIGINT,
    -- The node that encoded (and holds every segment until `safe`).
    node_id            TEXT,
    retry_count        BIGINT NOT NULL DEFAULT 0,
    -- While phase = 'failed': not claimable before this time.
    retry_after        BIGINT,
    error_message      TEXT,
    -- JSON: what ffprobe found (duration, width, height, frame rate, codecs, audio).
    probe              TEXT,
    -- Why it was cancelled (cancel, supersede, delete, replaced by a forced encode).
    cancelled_reason   TEXT,
    -- Last progress sent as encoding.progress (throttle), and when.
    progress_event_pct BIGINT,
    progress_event_at  BIGINT,
    created_at         BIGINT NOT NULL,
    started_at         BIGINT,
    completed_at       BIGINT,
    replication_safe_at BIGINT
);

CREATE INDEX encoding_jobs_by_file ON encoding_jobs (file_id, created_at);
CREATE INDEX encoding_jobs_by_tenant ON encoding_jobs (tenant_id, created_at);
CREATE INDEX encoding_jobs_by_phase ON encoding_jobs (phase);

-- The job whose segments the CDN serves for a file: set when a job's every rung is
-- stored, replaced atomically when a forced re-encode gets there too.
CREATE TABLE live_encodings (
    file_id    TEXT PRIMARY KEY REFERENCES files (file_id),
    job_id     TEXT NOT NULL REFERENCES encoding_jobs (id),
    updated_at BIGINT NOT NULL
);

-- A job's own webhook target (Pattern 1 on encoding/request); beats the file's and
-- the tenant's.
CREATE TABLE job_webhooks (
    job_id     TEXT PRIMARY KEY REFERENCES encoding_jobs (id),
    url        TEXT NOT NULL,
    secret     TEXT,
    created_at BIGINT NOT NULL
);

-- One rung of a job's ladder. Published (joins the master playlist) once every
-- segment of it is stored.
CREATE TABLE hls_renditions (
    job_id            TEXT NOT NULL REFERENCES encoding_jobs (id),
    name              TEXT NOT NULL,            -- '360p', '480p', ...
    width             BIGINT NOT NULL,
    height            BIGINT NOT NULL,
    -- bits/s: the peak over segments, and the mean (total bits / duration).
    bandwidth         BIGINT,
    average_bandwidth BIGINT,
    codecs            TEXT NOT NULL,            -- 'avc1.64001f,mp4a.40.2'
    frame_rate        DOUBLE PRECISION,
    segment_count     BIGINT NOT NULL DEFAULT 0,
    published_at      BIGINT,
    PRIMARY KEY (job_id, name)
);

-- One encrypted TS segment. `iv` is the AES-128-CBC IV (16 bytes).
CREATE TABLE hls_segments (
    job_id      TEXT NOT NULL REFERENCES encoding_jobs (id),
    rendition   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    blake3      BLOB NOT NULL,
    iv          BLOB NOT NULL,
    blob_id     TEXT NOT NULL UNIQUE,
    -- Precomputed audit challenges, JSON as for shards.
    challenges  TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (job_id, rendition, seq)
);

-- Each whole copy of a segment. The same blob_id on every holder.
CREATE TABLE segment_replicas (
    blob_id       TEXT NOT NULL,
    node_id       TEXT NOT NULL,
    -- 1 on the node that encoded it (not counted toward `safe`).
    is_origin     BIGINT NOT NULL DEFAULT 0,
    verified_at   BIGINT,
    needs_repair  BIGINT NOT NULL DEFAULT 0,
    last_audit_at BIGINT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (blob_id, node_id)
);

CREATE INDEX segment_replicas_by_node ON segment_replicas (node_id);
CREATE INDEX segment_replicas_unverified ON segment_replicas (verified_at) WHERE verified_at IS NULL;
CREATE INDEX segment_replicas_needing_repair ON segment_replicas (needs_repair) WHERE needs_repair = 1;

-- The upload's declared pipeline (`Pipeline::to_json`, webhook secret left out: it
-- lives in file_webhooks), read back for the pipeline status's `declared` and to
-- enqueue the declared stages once the upload is distributed. NULL: none declared.
ALTER TABLE files ADD COLUMN pipeline TEXT;
