-- A log line's foreign key had every line look up its task's row and lock it, a write
-- to the task's page and to the WAL for each of the half dozen lines of every task.
-- Lines are stored only for tasks that exist (the inserts look their task up), and
-- pruning deletes a task's lines with it.
ALTER TABLE task_log DROP CONSTRAINT task_log_task_id_fkey;
