-- A key's lineage: the first key of its chain of rotations. Rate windows and spend are counted per
-- lineage, so rotating a key carries them over instead of starting afresh (issue 24, defect 5).

ALTER TABLE api_keys ADD COLUMN lineage uuid;

WITH RECURSIVE chain (id, root) AS (
    SELECT id, id FROM api_keys WHERE rotated_from IS NULL
    UNION ALL
    SELECT k.id, c.root FROM api_keys k JOIN chain c ON k.rotated_from = c.id
)
UPDATE api_keys SET lineage = chain.root FROM chain WHERE api_keys.id = chain.id;
UPDATE api_keys SET lineage = id WHERE lineage IS NULL;

ALTER TABLE api_keys ALTER COLUMN lineage SET NOT NULL;
CREATE INDEX api_keys_lineage ON api_keys (lineage);
