-- Where a platform's code comes from when a verify builds it on its web server: a git
-- repository (`{"kind": "git", "url": …, "ref": …}`) or a .tar.gz in the backup store
-- (`{"kind": "archive", "key": …}`). NULL: the root is put there by other means. The
-- API checks the values; the constraint keeps the shape.
ALTER TABLE platforms ADD COLUMN source jsonb
    CHECK (source IS NULL OR (jsonb_typeof(source) = 'object' AND source ->> 'kind' IN ('git', 'archive')));
