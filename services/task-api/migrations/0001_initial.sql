-- The front end's memory: contexts (servers, platforms, sites), clients, tasks and their
-- logs, and the outbox of messages still to publish. These tables live in the `public`
-- schema; the scheduler keeps its own in the `scheduler` schema of the same database.

CREATE TABLE servers (
    name              text PRIMARY KEY CHECK (name ~ '^server_[a-z0-9_]{1,48}$'),
    remote_host       text NOT NULL,
    http_service_type text CHECK (http_service_type IN ('nginx', 'apache')),
    http_port         integer CHECK (http_port BETWEEN 1 AND 65535),
    http_version      text,
    db_service_type   text CHECK (db_service_type IN ('mariadb', 'mysql')),
    db_host           text,
    db_port           integer CHECK (db_port BETWEEN 1 AND 65535),
    db_admin_user     text,
    -- Sent to the db-worker in task messages; never returned by the API.
    db_admin_password text,
    db_version        text,
    status            text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'verified', 'failed')),
    verified_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- A service is either fully described or absent.
    CHECK ((http_service_type IS NULL) = (http_port IS NULL)),
    CHECK (
        (db_service_type IS NULL) = (db_host IS NULL)
        AND (db_service_type IS NULL) = (db_port IS NULL)
        AND (db_service_type IS NULL) = (db_admin_user IS NULL)
        AND (db_service_type IS NULL) = (db_admin_password IS NULL)
    )
);

CREATE TABLE platforms (
    name          text PRIMARY KEY CHECK (name ~ '^platform_[a-z0-9_]{1,56}$'),
    root          text NOT NULL,
    web_server    text NOT NULL REFERENCES servers (name),
    platform_type text CHECK (platform_type IN ('drupal7', 'drupal', 'wordpress', 'mediawiki', 'php')),
    app_version   text,
    status        text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'verified', 'failed')),
    verified_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Also serves lookups of the platforms of a web server.
    UNIQUE (web_server, root)
);

CREATE TABLE clients (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_]{0,62}$'),
    title      text CHECK (char_length(title) <= 200),
    email      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sites (
    uri        text PRIMARY KEY,
    platform   text NOT NULL REFERENCES platforms (name),
    db_server  text NOT NULL REFERENCES servers (name),
    client     text REFERENCES clients (name),
    status     text NOT NULL DEFAULT 'new',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sites_platform ON sites (platform);
CREATE INDEX sites_db_server ON sites (db_server);
CREATE INDEX sites_client ON sites (client);

CREATE TABLE tasks (
    id           uuid PRIMARY KEY,
    -- The context as users write it: `@server_master`.
    context      text NOT NULL,
    context_type text NOT NULL CHECK (context_type IN ('server', 'platform', 'site')),
    kind         text NOT NULL,
    status       text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'success', 'failed')),
    reason       text,
    -- The OpenTelemetry trace of the request, followed through every service.
    trace_id     text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX tasks_context_created ON tasks (context, created_at DESC);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_created ON tasks (created_at DESC);

CREATE TABLE task_log (
    seq     bigserial PRIMARY KEY,
    -- The line's own id: a redelivered line is stored once.
    line_id uuid NOT NULL UNIQUE,
    task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    at      timestamptz NOT NULL,
    level   text NOT NULL CHECK (level IN ('info', 'warning', 'error', 'success')),
    source  text NOT NULL,
    step    integer,
    message text NOT NULL
);
CREATE INDEX task_log_task_seq ON task_log (task_id, seq);

-- Messages written in the same transaction as the change they announce, published by
-- the relay (see aegir-postgres).
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    exchange      text NOT NULL,
    routing_key   text NOT NULL,
    body          bytea NOT NULL,
    traceparent   text,
    publish_after timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_ready ON outbox (publish_after, id);
