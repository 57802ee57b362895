-- A batch may run up to 5000 tasks at once: a web server carries a fleet operation's
-- changes in windows while the next ones come in, which a large fleet needs thousands
-- in flight for.
ALTER TABLE batches DROP CONSTRAINT batches_parallel_check;
ALTER TABLE batches ADD CONSTRAINT batches_parallel_check CHECK (parallel BETWEEN 1 AND 5000);
