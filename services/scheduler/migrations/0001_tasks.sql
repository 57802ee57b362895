-- The scheduler's own state, in its own schema (`scheduler`, first on search_path).

-- Every task the scheduler accepted, in arrival order. `request` holds the task as
-- requested (with the secrets the workers need) only while the task is unfinished.
CREATE TABLE tasks (
    task_id      uuid PRIMARY KEY,
    seq          bigserial NOT NULL UNIQUE,
    context      text NOT NULL,
    kind         text NOT NULL,
    request      jsonb,
    steps        integer NOT NULL,
    status       text NOT NULL CHECK (status IN ('waiting', 'running', 'success', 'failed')),
    current_step integer NOT NULL DEFAULT 0,
    attempt      integer NOT NULL DEFAULT 0,
    reason       text,
    requested_at timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);

-- The next task of an entity: the oldest unfinished one.
CREATE INDEX tasks_unfinished_by_context ON tasks (context, requested_at, seq)
    WHERE status IN ('waiting', 'running');

CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    exchange      text NOT NULL,
    routing_key   text NOT NULL,
    body          bytea NOT NULL,
    traceparent   text,
    publish_after timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_ready ON outbox (publish_after, id);
