-- A node being drained: placement skips it and the repairers move what it holds
-- to other nodes (docs/operations.md, "Draining a node"). NULL: not draining.
ALTER TABLE nodes ADD COLUMN draining_since INTEGER;
