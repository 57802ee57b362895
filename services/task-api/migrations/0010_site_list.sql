-- Listing and searching many sites (100,000 and more) without reading them all:
-- `search` served by a trigram index, and `total` read from counts per group of sites
-- instead of counted site by site.

-- `search` matches any part of the uri (`uri LIKE '%text%'`): a trigram index serves that
-- (texts of 3 characters or more; shorter ones still scan the table, which stays fast
-- enough). GIN's pending list is kept (the default): without it, the scheduled queues'
-- updates of every site take four times as long, while a full pending list only adds
-- about 2 ms to a search until autovacuum merges it. pg_trgm ships with PostgreSQL and is
-- a trusted extension (13 and later), so the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX sites_uri_trgm ON sites USING gin (uri gin_trgm_ops);

-- How many sites each (platform, client, status) holds, kept by the triggers below, so an
-- exact `total` of a list filtered by any of these is a sum over a few rows. A group may
-- have several rows: their sum is its count. A statement that changes sites adds its own
-- rows, and also folds its groups' rows into one when no other transaction is folding.
-- Adding rather than updating one row per group means transactions that change sites of
-- one group never wait for each other, and never deadlock when each changes two groups
-- (a site saved as `new` then enabled, beside another site's install ending).
CREATE TABLE site_counts (
    platform text NOT NULL,
    client   text,
    status   text NOT NULL,
    sites    bigint NOT NULL
);

-- Once per statement, from the rows it changed.
CREATE FUNCTION site_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    platforms text[];
    clients   text[];
    statuses  text[];
    changes   bigint[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM site_counts;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(platform), array_agg(client), array_agg(status), array_agg(n)
        INTO platforms, clients, statuses, changes
        FROM (SELECT platform, client, status, count(*) AS n FROM new_rows GROUP BY platform, client, status) AS g;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT array_agg(platform), array_agg(client), array_agg(status), array_agg(n)
        INTO platforms, clients, statuses, changes
        FROM (
            SELECT platform, client, status, sum(delta) AS n FROM (
                SELECT platform, client, status, -1 AS delta FROM old_rows
                UNION ALL
                SELECT platform, client, status, 1 AS delta FROM new_rows
            ) AS d
            GROUP BY platform, client, status
            HAVING sum(delta) <> 0
        ) AS g;
    ELSE
        SELECT array_agg(platform), array_agg(client), array_agg(status), array_agg(-n)
        INTO platforms, clients, statuses, changes
        FROM (SELECT platform, client, status, count(*) AS n FROM old_rows GROUP BY platform, client, status) AS g;
    END IF;
    -- Updates of other columns (such as the scheduled queues' next moments) change no count.
    IF platforms IS NULL THEN
        RETURN NULL;
    END IF;
    -- One transaction folds at a time; the others only add their rows, folded by a later
    -- statement. Read committed only: there, rows a finished fold deleted are skipped.
    IF current_setting('transaction_isolation') = 'read committed'
       AND pg_try_advisory_xact_lock(hashtext('aegir.site_counts')) THEN
        WITH delta AS (
            SELECT * FROM unnest(platforms, clients, statuses, changes) AS d (platform, client, status, sites)
        ), folded AS (
            DELETE FROM site_counts c USING delta d
            WHERE c.platform = d.platform AND c.status = d.status AND c.client IS NOT DISTINCT FROM d.client
            RETURNING c.platform, c.client, c.status, c.sites
        )
        INSERT INTO site_counts (platform, client, status, sites)
        SELECT platform, client, status, sum(sites) FROM (
            SELECT * FROM folded UNION ALL SELECT * FROM delta
        ) AS g
        GROUP BY platform, client, status
        HAVING sum(sites) <> 0;
    ELSE
        INSERT INTO site_counts (platform, client, status, sites)
        SELECT * FROM unnest(platforms, clients, statuses, changes);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sites_count_insert AFTER INSERT ON sites
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION site_counts_apply();
CREATE TRIGGER sites_count_update AFTER UPDATE ON sites
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION site_counts_apply();
CREATE TRIGGER sites_count_delete AFTER DELETE ON sites
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION site_counts_apply();
CREATE TRIGGER sites_count_truncate AFTER TRUNCATE ON sites
    FOR EACH STATEMENT EXECUTE FUNCTION site_counts_apply();

-- The sites that exist already.
INSERT INTO site_counts (platform, client, status, sites)
SELECT platform, client, status, count(*) FROM sites GROUP BY platform, client, status;
