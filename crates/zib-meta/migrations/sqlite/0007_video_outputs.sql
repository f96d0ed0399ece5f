-- What an encode makes besides its HLS ladder (docs/video.md, "Thumbnails and aspect
-- variants"), and the webhook formats of peer platforms (docs/webhooks.md). One
-- migration for the whole change.

-- Files the video pipeline makes rather than a tenant uploads: a job's poster, sprite
-- sheets and sprite VTT (ordinary encrypted files with shards), and an aspect
-- variant's stream identity (no bytes of its own: `/stream/{file_id}/…` serves its
-- jobs' segments). Never in `objects` (so never listed, never overwritten by a key),
-- and removed with the file they derive from.
ALTER TABLE files ADD COLUMN derived_from TEXT;
-- 'poster' | 'sprite_sheet' | 'sprite_vtt' | 'aspect_variant'. NULL: uploaded.
ALTER TABLE files ADD COLUMN derived_kind TEXT;
CREATE INDEX files_by_derived_from ON files (derived_from) WHERE derived_from IS NOT NULL;

-- An aspect-variant job encodes another file's source: `file_id` is the variant's
-- stream file, `source_file_id` the uploaded file it reads (NULL: `file_id` itself),
-- `parent_job_id` the main job it belongs to, `aspect_ratio` the crop ('9:16').
ALTER TABLE encoding_jobs ADD COLUMN source_file_id TEXT;
ALTER TABLE encoding_jobs ADD COLUMN parent_job_id TEXT;
ALTER TABLE encoding_jobs ADD COLUMN aspect_ratio TEXT;
-- JSON `JobThumbnails` once the node registered them; NULL before (and for ever when
-- the tenant opted out).
ALTER TABLE encoding_jobs ADD COLUMN thumbnails TEXT;
CREATE INDEX encoding_jobs_by_parent ON encoding_jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;

-- The files a job produced (poster, sprite sheets, sprite VTT), so evicting or
-- deleting the job removes them too. `seq` orders sprite sheets.
CREATE TABLE job_artifacts (
    job_id     TEXT NOT NULL REFERENCES encoding_jobs (id),
    kind       TEXT NOT NULL CHECK (kind IN ('poster', 'sprite_sheet', 'sprite_vtt')),
    seq        BIGINT NOT NULL DEFAULT 0,
    file_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, kind, seq)
);

CREATE INDEX job_artifacts_by_file ON job_artifacts (file_id);

-- The payload vocabulary an endpoint receives: 'zib' (the reference's events),
-- 'lifecycle' (video.* envelopes) or 'media' (flat file.received / encoding.* /
-- partial.finished bodies).
ALTER TABLE webhook_endpoints ADD COLUMN format TEXT NOT NULL DEFAULT 'zib';

-- Transitions a peer vocabulary announces only once per video (the first
-- `video.encoding.started`, `video.published`, ...): a row per (file, mark) written in
-- the transaction that emits it.
CREATE TABLE webhook_format_marks (
    file_id    TEXT NOT NULL,
    mark       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (file_id, mark)
);
