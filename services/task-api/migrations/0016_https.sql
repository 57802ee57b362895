-- HTTPS per site: the mode chosen for the site, what its web server reported of its
-- certificate (never the key), and the renewal queue's state: the last order's error,
-- how many orders failed in a row, and when the queue tries again.
ALTER TABLE sites
    ADD COLUMN ssl text NOT NULL DEFAULT 'off' CHECK (ssl IN ('off', 'on', 'forced')),
    ADD COLUMN ssl_expires_at timestamptz,
    ADD COLUMN ssl_issuer text,
    ADD COLUMN ssl_serial text,
    ADD COLUMN ssl_error text,
    ADD COLUMN ssl_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN ssl_retry_at timestamptz,
    ADD COLUMN ssl_checked_at timestamptz;

CREATE INDEX sites_ssl_due ON sites (ssl_retry_at) WHERE ssl <> 'off';
