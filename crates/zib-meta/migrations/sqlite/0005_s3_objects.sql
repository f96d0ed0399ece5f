-- What S3 clients keep with an object besides its bytes, and the S3 surface's own
-- bookkeeping (docs/s3.md). One migration for the whole S3 surface change.

-- JSON object: the standard headers stored with an object (cache_control,
-- content_disposition, content_encoding, content_language, expires) and its user
-- metadata (`metadata`: x-amz-meta-* names without the prefix, lower-case). NULL: none.
ALTER TABLE files ADD COLUMN object_headers TEXT;

-- JSON array of [key, value] pairs: the object's tag set, in the order given. NULL: none.
ALTER TABLE files ADD COLUMN tags TEXT;

-- JSON object: algorithm name (crc32, crc32c, sha1, sha256, crc64nvme) -> base64
-- checksum of the plaintext, as the client sent and the gateway verified it. NULL: none.
ALTER TABLE files ADD COLUMN checksums TEXT;

-- What an S3 PUT onto a key holding another object does: 'conflict' (the contract's
-- 409) or 'supersede' (replace it, as an SDK re-upload does).
ALTER TABLE buckets ADD COLUMN overwrite_mode TEXT NOT NULL DEFAULT 'conflict';

-- Completed multipart uploads, so a client retrying CompleteMultipartUpload after a
-- lost answer gets the same result instead of NoSuchUpload.
CREATE TABLE s3_completed_uploads (
    upload_id    TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    bucket       TEXT NOT NULL,
    object_key   TEXT NOT NULL,
    file_id      TEXT NOT NULL,
    etag         TEXT NOT NULL,
    completed_at BIGINT NOT NULL
);
CREATE INDEX s3_completed_uploads_by_age ON s3_completed_uploads (completed_at);
