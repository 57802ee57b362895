-- A task that nothing stands before on its entity, taken in with one round trip: the
-- entity locked as every change of its tasks locks it, the task in running its first
-- step, and the messages of its start in the outbox (as Outbox::write writes them).
-- Each statement of the function reads what committed before the lock was granted.
-- NULL when the task was taken in before or another task of its entity is unfinished:
-- then nothing changed, and the caller takes the general way.
CREATE FUNCTION accept_running(
    p_task_id uuid, p_context text, p_kind text, p_request jsonb, p_steps integer,
    p_requested_at timestamptz, p_deadline_secs double precision,
    p_exchanges text[], p_keys text[], p_bodies bytea[], p_traceparents text[],
    p_delays_ms double precision[]
) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_context, 0));
    IF EXISTS (SELECT 1 FROM tasks WHERE task_id = p_task_id)
       OR EXISTS (SELECT 1 FROM tasks WHERE context = p_context AND status IN ('waiting', 'running')) THEN
        RETURN NULL;
    END IF;
    INSERT INTO tasks (task_id, context, kind, request, steps, status, requested_at, started_at, step_deadline)
    VALUES (p_task_id, p_context, p_kind, p_request, p_steps, 'running', p_requested_at, now(),
            now() + make_interval(secs => p_deadline_secs));
    WITH sent AS (
        INSERT INTO outbox (exchange, routing_key, body, traceparent, publish_after)
        SELECT m.exchange, m.routing_key, m.body, m.traceparent, now() + make_interval(secs => m.delay_ms / 1000)
        FROM UNNEST(p_exchanges, p_keys, p_bodies, p_traceparents, p_delays_ms)
             WITH ORDINALITY AS m(exchange, routing_key, body, traceparent, delay_ms, n)
        ORDER BY m.n
        RETURNING id
    )
    SELECT array_agg(id ORDER BY id) INTO ids FROM sent;
    RETURN ids;
END
$$;
