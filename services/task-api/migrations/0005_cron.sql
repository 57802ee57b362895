-- The cron queue: each enabled site's cron runs every `cron_interval` seconds (NULL:
-- the installation's default; 0: never), at a moment spread over the period by its uri,
-- so thousands of sites do not all run at once.
ALTER TABLE sites
    ADD COLUMN cron_interval integer CHECK (cron_interval = 0 OR cron_interval BETWEEN 60 AND 604800),
    ADD COLUMN cron_next_at  timestamptz;
CREATE INDEX sites_cron_due ON sites (cron_next_at) WHERE status = 'enabled';
