-- The S3-compatible surface (docs/s3.md).
--
-- AWS Signature V4 needs each tenant's secret in clear to recompute signatures, but
-- tenants.secret_hash is one-way. s3_secret_sealed holds the secret encrypted by the
-- server (a fresh key wrapped under the master key, bound to the tenant id); NULL
-- until the server learns the secret (at creation, or on the tenant's next Bearer
-- request to /s3).
ALTER TABLE tenants ADD COLUMN s3_secret_sealed BLOB;

-- Hex MD5 of a file's plaintext, for files the S3 gateway encrypted itself: it is
-- the S3 ETag, and what tells an idempotent re-PUT from a conflicting one.
ALTER TABLE files ADD COLUMN plaintext_md5 TEXT;
