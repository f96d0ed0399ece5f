-- Files stored as one envelope per part (S3 multipart uploads): each part is sealed
-- under the file's data key with a nonce prefix of its own and erasure-coded as it
-- arrives, its segments numbered from `first_segment`, so CompleteMultipartUpload
-- only writes rows. Such a file's own `nonce_prefix` is empty: it has no single
-- envelope. Rows of parts not listed at completion are dropped then.
CREATE TABLE file_parts (
    file_id         TEXT NOT NULL REFERENCES files (file_id),
    part_number     BIGINT NOT NULL,
    first_segment   BIGINT NOT NULL,
    segment_count   BIGINT NOT NULL,
    size            BIGINT NOT NULL,
    ciphertext_size BIGINT NOT NULL,
    nonce_prefix    BLOB NOT NULL,
    md5             TEXT NOT NULL,
    checksums       TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (file_id, part_number)
);
