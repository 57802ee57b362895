-- A step that gets no answer by its deadline fails, so one stuck step or lost worker
-- never holds its entity's other tasks.
ALTER TABLE tasks ADD COLUMN step_deadline timestamptz;
CREATE INDEX tasks_overdue ON tasks (step_deadline) WHERE status = 'running';
