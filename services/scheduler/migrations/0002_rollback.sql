-- A task whose step failed runs the undo steps of what it did before it ends.
ALTER TABLE tasks
    ADD COLUMN phase text NOT NULL DEFAULT 'forward' CHECK (phase IN ('forward', 'rollback')),
    -- The step whose failure started the rollback, and why it failed.
    ADD COLUMN failed_step integer,
    ADD COLUMN failure text,
    -- What went wrong while undoing, for the final reason.
    ADD COLUMN rollback_errors text[] NOT NULL DEFAULT '{}';
