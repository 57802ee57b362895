-- Commands from partners (billing and other systems, over the commands exchange).
-- A command acted on is remembered under its partner's idempotency key: the same key
-- again is answered with the first answer and changes nothing. A refused command changed
-- nothing and is not remembered, so sending it again tries again.
CREATE TABLE commands (
    partner         text NOT NULL,
    idempotency_key text NOT NULL,
    -- The command as it was parsed: the same key with another command is refused.
    command         jsonb NOT NULL,
    -- The `command_accepted` answer sent, sent again (marked `repeated`) for a repeat.
    reply           jsonb NOT NULL,
    -- The task the command made; its task.started and task.finished go to the partner.
    task_id         uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, idempotency_key)
);
CREATE UNIQUE INDEX commands_task ON commands (task_id) WHERE task_id IS NOT NULL;

-- The clients each partner created: a partner acts only on these and on their sites.
CREATE TABLE partner_clients (
    client     text PRIMARY KEY REFERENCES clients (name) ON DELETE CASCADE,
    partner    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_clients_partner ON partner_clients (partner);
