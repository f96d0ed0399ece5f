-- Small objects (issue 17): a file whose whole envelope is at most the server's
-- `inline_threshold_bytes` is kept here, sealed as any envelope, instead of as
-- shards on nodes. Nodes never hold it; it goes with the file's row and its
-- wrapped key, in the same store and the same backups (docs/architecture.md,
-- "Small objects inline").
CREATE TABLE inline_envelopes (
    file_id   TEXT PRIMARY KEY REFERENCES files (file_id),
    envelope  BLOB NOT NULL
);
