-- Sites become real: what `PUT /api/v1/sites/{uri}` saves, their aliases, and what
-- verifies report as installed (packages, and the install profiles of platforms).
-- No site row can exist before this migration (the API could not create them), so
-- the new NOT NULL columns need no defaults for old rows.

ALTER TABLE sites
    ADD COLUMN profile      text,
    ADD COLUMN language     text NOT NULL,
    ADD COLUMN redirection  boolean NOT NULL DEFAULT false,
    ADD COLUMN title        text NOT NULL,
    ADD COLUMN admin_email  text NOT NULL,
    -- The site's own database and account, generated once when the site is created.
    -- The password goes to the workers in task messages; the API never returns it.
    ADD COLUMN db_name      text NOT NULL UNIQUE,
    ADD COLUMN db_user      text NOT NULL,
    ADD COLUMN db_password  text NOT NULL,
    ADD COLUMN installed_at timestamptz,
    ADD CONSTRAINT sites_status_known CHECK (status IN ('new', 'enabled', 'disabled', 'failed'));

-- Lists filter by one of these and page in uri order: one index per filter, ending in uri.
DROP INDEX sites_platform;
DROP INDEX sites_client;
CREATE INDEX sites_platform_uri ON sites (platform, uri);
CREATE INDEX sites_client_uri ON sites (client, uri);
CREATE INDEX sites_status_uri ON sites (status, uri);
-- `search` matches any part of the uri (`uri LIKE '%text%'`), which no btree index serves:
-- it scans the table, about 15 ms at 100,000 sites. A trigram index (pg_trgm, GIN on uri)
-- would serve it, at the cost of an extension; a `text_pattern_ops` index would only
-- serve searches by prefix.

-- Other names of a site. The primary key keeps an alias to one site; the API also
-- keeps aliases and site uris apart.
CREATE TABLE site_aliases (
    alias    text PRIMARY KEY,
    site     text NOT NULL REFERENCES sites (uri) ON DELETE CASCADE,
    position integer NOT NULL
);
CREATE INDEX site_aliases_site ON site_aliases (site, position);

-- Install profiles the last platform verify found (NULL: none reported).
ALTER TABLE platforms ADD COLUMN profiles text[];

-- What the last verify (or install) of a context found installed. Replaced as a whole
-- on each report. `context` as users write it: `@platform_wp`, `@www.example.com`.
CREATE TABLE packages (
    context text NOT NULL,
    kind    text NOT NULL CHECK (kind IN ('core', 'module', 'theme', 'profile', 'plugin', 'extension', 'skin')),
    name    text NOT NULL,
    version text,
    PRIMARY KEY (context, kind, name)
);
