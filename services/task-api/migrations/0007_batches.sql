-- Fleet operations: one request runs a task on every site of a platform (verify them,
-- or migrate them all to another platform), a few at a time, and stops starting new
-- ones once more than `max_failures` have failed.
CREATE TABLE batches (
    id           uuid PRIMARY KEY,
    task         text NOT NULL CHECK (task IN ('verify', 'migrate')),
    platform     text NOT NULL,
    to_platform  text,
    max_failures integer NOT NULL CHECK (max_failures >= 0),
    parallel     integer NOT NULL CHECK (parallel BETWEEN 1 AND 1000),
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'stopped')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CHECK ((task = 'migrate') = (to_platform IS NOT NULL))
);
CREATE INDEX batches_running ON batches (created_at) WHERE status = 'running';

-- One row per site the batch was asked for, in the order they are taken.
CREATE TABLE batch_items (
    batch_id uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    site     text NOT NULL,
    position integer NOT NULL,
    task_id  uuid,
    status   text NOT NULL DEFAULT 'waiting'
        CHECK (status IN ('waiting', 'queued', 'success', 'failed', 'skipped')),
    reason   text,
    PRIMARY KEY (batch_id, site)
);
CREATE INDEX batch_items_task ON batch_items (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX batch_items_next ON batch_items (batch_id, status, position);
