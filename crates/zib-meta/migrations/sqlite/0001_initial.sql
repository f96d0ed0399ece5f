-- ZiB metadata schema, version 1.
-- Written to port to PostgreSQL with few edits: BIGINT/TEXT columns, standard DDL;
-- BLOB becomes BYTEA and AUTOINCREMENT becomes an identity column there.
-- Sizes and counters are unsigned in Rust and stored as signed 64-bit integers;
-- times are unix milliseconds.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    access_key  TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE buckets (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE files (
    file_id             TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    bucket_id           BIGINT NOT NULL REFERENCES buckets (id),
    object_key          TEXT NOT NULL,
    size                BIGINT NOT NULL,
    ciphertext_size     BIGINT NOT NULL,
    content_type        TEXT NOT NULL,
    phase               TEXT NOT NULL
        CHECK (phase IN ('pending', 'uploading', 'distributed', 'safe', 'cancelled', 'failed')),
    cancelled_reason    TEXT,
    wrapped_dek         BLOB NOT NULL,
    chunk_size          BIGINT NOT NULL,
    nonce_prefix        BLOB NOT NULL,
    data_shards         BIGINT NOT NULL,
    parity_shards       BIGINT NOT NULL,
    shard_size          BIGINT NOT NULL,
    originator          TEXT NOT NULL,
    upload_blob_id      TEXT NOT NULL UNIQUE,
    part_count          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    distributed_at      BIGINT,
    replication_safe_at BIGINT
);

CREATE INDEX files_by_tenant ON files (tenant_id, created_at);
CREATE INDEX files_by_bucket ON files (bucket_id);
CREATE INDEX files_by_phase ON files (phase);

-- The current file of each (bucket, key); the primary key also serves prefix listing.
CREATE TABLE objects (
    bucket_id  BIGINT NOT NULL REFERENCES buckets (id),
    object_key TEXT NOT NULL,
    file_id    TEXT NOT NULL REFERENCES files (file_id),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (bucket_id, object_key)
);

CREATE INDEX objects_by_file ON objects (file_id);

-- Node ids are not foreign keys: a shard or command must outlive a node's row.
CREATE TABLE shards (
    file_id     TEXT NOT NULL REFERENCES files (file_id),
    segment     BIGINT NOT NULL,
    shard_index BIGINT NOT NULL,
    node_id     TEXT NOT NULL,
    blob_id     TEXT NOT NULL UNIQUE,
    size        BIGINT NOT NULL,
    blake3      BLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (file_id, segment, shard_index)
);

CREATE INDEX shards_by_node ON shards (node_id);

CREATE TABLE nodes (
    node_id           TEXT PRIMARY KEY,
    public_url        TEXT NOT NULL,
    capacity_bytes    BIGINT NOT NULL,
    free_bytes        BIGINT NOT NULL,
    used_bytes        BIGINT NOT NULL,
    zone              TEXT,
    capabilities      TEXT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    registered_at     BIGINT NOT NULL
);

CREATE TABLE node_commands (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id    TEXT NOT NULL,
    action     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    acked_at   BIGINT
);

CREATE INDEX node_commands_pending ON node_commands (node_id, id) WHERE acked_at IS NULL;
