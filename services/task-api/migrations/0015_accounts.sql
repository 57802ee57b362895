-- Accounts: people and scripts calling the API, what a client's users may use, and
-- what everyone did.

CREATE TABLE users (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    -- argon2id PHC string; NULL: no password login, tokens only.
    password_hash text,
    role          text NOT NULL CHECK (role IN ('admin', 'client')),
    -- A client user acts for this client only; an admin has none.
    client        text REFERENCES clients (name) ON DELETE CASCADE,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'client') = (client IS NOT NULL))
);
CREATE INDEX users_client ON users (client);

CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    user_name    text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    -- sha256 of the token; the token itself is shown once and never stored.
    token_hash   text NOT NULL UNIQUE,
    -- The first characters of the token, to tell tokens apart.
    prefix       text NOT NULL,
    -- `token` for scripts, `session` for a password login (which expires).
    kind         text NOT NULL DEFAULT 'token' CHECK (kind IN ('token', 'session')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_name);

-- The platforms a client's users may see and put sites on.
CREATE TABLE client_platforms (
    client     text NOT NULL REFERENCES clients (name) ON DELETE CASCADE,
    platform   text NOT NULL REFERENCES platforms (name) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client, platform)
);
CREATE INDEX client_platforms_platform ON client_platforms (platform);

-- Who did what, when and from where; kept when users and tokens go.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    user_name   text,
    token_id    uuid,
    -- `PUT /api/v1/sites/{uri}`.
    action      text NOT NULL,
    -- The context or entity acted on: `@www.example.com`, `user alice`.
    target      text,
    -- The HTTP status of the answer.
    status      integer NOT NULL,
    remote_addr text
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_user ON audit_log (user_name, id);

-- A client user's batch takes its client's sites only.
ALTER TABLE batches ADD COLUMN client text;
