-- A task cancelled while it waited ends `cancelled`, never having started.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('waiting', 'running', 'success', 'failed', 'cancelled'));
