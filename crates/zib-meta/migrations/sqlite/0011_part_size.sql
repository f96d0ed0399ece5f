-- Multipart files whose parts are erasure-coded on their own as they arrive: the
-- plaintext bytes per part, from which the segment layout follows (no segment
-- crosses a part). 0: segments run across the whole envelope (single uploads, and
-- multipart files stored before this).
ALTER TABLE files ADD COLUMN part_size BIGINT NOT NULL DEFAULT 0;
