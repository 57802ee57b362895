-- Site archives in the backup store, and what a task was asked beyond its context.

-- One row per complete archive, written when the backup-worker reports it stored.
-- `site` is the site it belongs to now (it follows a renamed site); there is no foreign
-- key: the final backup of a deleted site stays listed until it is deleted itself.
CREATE TABLE backups (
    id             uuid PRIMARY KEY,
    site           text NOT NULL,
    -- The uri the archive was made under: part of its key in the store.
    archive_site   text NOT NULL,
    compression    text NOT NULL CHECK (compression IN ('zstd', 'gzip')),
    size           bigint NOT NULL CHECK (size >= 0),
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    database_bytes bigint NOT NULL,
    files_bytes    bigint NOT NULL,
    entries        bigint NOT NULL,
    -- The task that made it (`backup`, or the safety copy of `restore`, `migrate`,
    -- `clone`, `delete`) and the platform the site was on.
    origin         text NOT NULL,
    task_id        uuid REFERENCES tasks (id) ON DELETE SET NULL,
    platform       text,
    created_at     timestamptz NOT NULL
);
CREATE INDEX backups_site_created ON backups (site, created_at DESC);

-- A task cancelled while it waited ends `cancelled`.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('queued', 'running', 'success', 'failed', 'cancelled'));

-- What the task was asked beyond its context (`new_uri`, `platform`, `backup`, …), as
-- the API shows it; never secrets.
ALTER TABLE tasks ADD COLUMN options jsonb;

-- A clone's new site exists as a record while its task runs.
ALTER TABLE sites DROP CONSTRAINT sites_status_known;
ALTER TABLE sites ADD CONSTRAINT sites_status_known
    CHECK (status IN ('new', 'enabled', 'disabled', 'failed', 'cloning'));

-- A migrate to another db server gets a new database account (the old one is dropped
-- when the move succeeds, and the two servers may be one MariaDB under two names); it is
-- held here while the migrate runs and becomes the site's when it succeeds.
ALTER TABLE sites
    ADD COLUMN moving_db_name     text UNIQUE,
    ADD COLUMN moving_db_user     text,
    ADD COLUMN moving_db_password text;

-- A migrate to a new uri renames the site; its aliases follow.
ALTER TABLE site_aliases DROP CONSTRAINT site_aliases_site_fkey;
ALTER TABLE site_aliases ADD CONSTRAINT site_aliases_site_fkey
    FOREIGN KEY (site) REFERENCES sites (uri) ON DELETE CASCADE ON UPDATE CASCADE;
