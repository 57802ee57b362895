-- The backup queue: each enabled site is backed up once per interval, at a moment
-- spread over the period by its uri; retention then removes the archives the policy
-- no longer keeps.
ALTER TABLE sites ADD COLUMN backup_next_at timestamptz;
CREATE INDEX sites_backup_due ON sites (backup_next_at) WHERE status = 'enabled';

-- Which archives a site keeps changes only when an archive is added (or the policy
-- changes, which resets these): retention looks again only at sites with an archive
-- recorded since it last found nothing to remove.
ALTER TABLE backups ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE sites ADD COLUMN retention_checked_at timestamptz;
