-- A locked platform takes no new sites (the `lock` and `unlock` tasks).
ALTER TABLE platforms ADD COLUMN locked boolean NOT NULL DEFAULT false;
