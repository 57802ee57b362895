-- Lines are only ever read by their task, in order, and deleted with it: the index on
-- (task_id, seq) serves all of that, so it becomes the primary key, and the index on
-- seq alone, which nothing reads, goes. Every line stored writes one index fewer.
ALTER TABLE task_log DROP CONSTRAINT task_log_pkey;
DROP INDEX task_log_task_seq;
ALTER TABLE task_log ADD CONSTRAINT task_log_pkey PRIMARY KEY (task_id, seq);
