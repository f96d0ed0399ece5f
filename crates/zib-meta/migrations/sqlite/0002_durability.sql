-- Durability: verification, audits and repair state per shard.

-- When the server last confirmed the holder has exactly these bytes (NULL: never).
ALTER TABLE shards ADD COLUMN verified_at BIGINT;
-- 1 once the shard is known lost or corrupt; the repairer rebuilds it elsewhere.
ALTER TABLE shards ADD COLUMN needs_repair BIGINT NOT NULL DEFAULT 0;
-- Precomputed audit challenges, JSON: [{"nonce","offset","len","answer"}].
ALTER TABLE shards ADD COLUMN challenges TEXT;
ALTER TABLE shards ADD COLUMN last_audit_at BIGINT;

CREATE INDEX shards_unverified ON shards (verified_at) WHERE verified_at IS NULL;
CREATE INDEX shards_needing_repair ON shards (needs_repair) WHERE needs_repair = 1;
