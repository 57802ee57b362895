-- The stats queue: figures about each enabled site, measured once per interval at a
-- moment spread over the period by its uri, kept as the latest measurement.
ALTER TABLE sites ADD COLUMN stats_next_at timestamptz;
CREATE INDEX sites_stats_due ON sites (stats_next_at) WHERE status = 'enabled';

CREATE TABLE site_stats (
    site            text PRIMARY KEY REFERENCES sites (uri) ON DELETE CASCADE ON UPDATE CASCADE,
    database_bytes  bigint,
    database_tables integer,
    files_bytes     bigint,
    files           bigint,
    -- 0: nothing answered.
    http_status     integer,
    response_ms     integer,
    -- The application's own counts: {"users": 3, "posts": 120}.
    figures         jsonb NOT NULL DEFAULT '{}',
    measured_at     timestamptz NOT NULL
);
