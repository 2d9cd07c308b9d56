-- Append a planned batch in one round trip (see libs/eventstore/src/postgres.rs).
--
-- The writer plans the batch in Rust against the state it believes current (streams'
-- versions, keys' owners, counters' values, and that the batch's command ids are new)
-- and sends those beliefs with the writes. Here, in one statement and so one implicit
-- transaction:
--   1. take the batch's advisory locks in sorted order (no transaction id yet);
--   2. compare every belief with the committed state (each statement of a VOLATILE
--      function sees a fresh snapshot under READ COMMITTED, so this read sees every
--      commit made before the locks were granted);
--   3. if all hold, insert the events (the transaction id is assigned now, after the
--      locks: commit-safe order, docs/adr/0002), the command records, keys and counters,
--      and return each event's position ('p' rows);
--   4. if any belief is stale, write nothing and return a 'stale' row followed by the
--      actual state of everything the batch touches, for the writer to plan again.
CREATE FUNCTION crm_append(
    p_locks bigint[],
    p_new_commands uuid[],
    p_streams text[], p_versions bigint[],
    p_keys text[], p_owners text[],
    p_counters text[], p_values bigint[],
    e_stream_ids text[], e_versions bigint[], e_event_ids uuid[], e_types text[],
    e_schema_versions int[], e_payloads jsonb[], e_command_ids uuid[], e_correlation_ids uuid[],
    e_causation_ids uuid[], e_actors text[], e_occurred timestamptz[],
    c_ids uuid[], c_types text[], c_fingerprints text[],
    k_claim_keys text[], k_claim_owners text[], k_freed text[],
    n_keys text[], n_values bigint[]
) RETURNS TABLE (r_kind text, r_key text, r_text text, r_doc jsonb, r_n bigint)
LANGUAGE plpgsql VOLATILE
-- Every statement here is a key lookup or an insert: plan once per connection, and
-- never as a sequential scan (a plan made while the tables were small would stay one).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
BEGIN
    PERFORM count(pg_advisory_xact_lock(k))
       FROM (SELECT k FROM unnest(p_locks) AS t(k) ORDER BY k) AS s;

    IF EXISTS (SELECT 1 FROM commands WHERE command_id = ANY (p_new_commands))
       OR EXISTS (
           SELECT 1 FROM unnest(p_streams, p_versions) AS b(stream, version)
            WHERE coalesce((SELECT max(e.stream_version) FROM events e WHERE e.stream_id = b.stream), 0)
                  <> b.version)
       OR EXISTS (
           SELECT 1 FROM unnest(p_keys, p_owners) AS b(k, owner)
            WHERE (SELECT u.owner FROM unique_keys u WHERE u.key = b.k) IS DISTINCT FROM b.owner)
       OR EXISTS (
           SELECT 1 FROM unnest(p_counters, p_values) AS b(k, value)
            WHERE coalesce((SELECT c.value FROM counters c WHERE c.key = b.k), 0) <> b.value)
    THEN
        RETURN QUERY
            SELECT 'stale'::text, NULL::text, NULL::text, NULL::jsonb, NULL::bigint
            UNION ALL SELECT 'c', c.command_id::text, c.fingerprint, c.outcome, NULL
              FROM commands c WHERE c.command_id = ANY (p_new_commands)
            UNION ALL SELECT 's', e.stream_id, NULL, NULL, max(e.stream_version)
              FROM events e WHERE e.stream_id = ANY (p_streams) GROUP BY e.stream_id
            UNION ALL SELECT 'k', u.key, u.owner, NULL, NULL
              FROM unique_keys u WHERE u.key = ANY (p_keys)
            UNION ALL SELECT 'n', c.key, NULL, NULL, c.value
              FROM counters c WHERE c.key = ANY (p_counters);
        RETURN;
    END IF;

    RETURN QUERY
    WITH ev AS (
        INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload,
                            command_id, correlation_id, causation_id, actor, occurred_at)
        SELECT t.stream_id, t.stream_version, t.event_id, t.event_type, t.schema_version, t.payload,
               t.command_id, t.correlation_id, t.causation_id, t.actor, t.occurred_at
          FROM unnest(e_stream_ids, e_versions, e_event_ids, e_types, e_schema_versions, e_payloads,
                      e_command_ids, e_correlation_ids, e_causation_ids, e_actors, e_occurred)
               WITH ORDINALITY
               AS t(stream_id, stream_version, event_id, event_type, schema_version, payload,
                    command_id, correlation_id, causation_id, actor, occurred_at, ord)
         ORDER BY t.ord
        RETURNING events.event_id, events.event_type, events.stream_id, events.stream_version,
                  events.position, events.command_id),
    cmd AS (
        INSERT INTO commands (command_id, command_type, fingerprint, outcome)
        SELECT c.id, c.t, c.f,
               jsonb_build_object('command_id', c.id, 'duplicate', false,
                                  'events', coalesce(a.events, '[]'::jsonb))
          FROM unnest(c_ids, c_types, c_fingerprints) AS c(id, t, f)
          LEFT JOIN (
              SELECT e.command_id,
                     jsonb_agg(jsonb_build_object('event_id', e.event_id, 'event_type', e.event_type,
                         'stream_id', e.stream_id, 'stream_version', e.stream_version,
                         'position', e.position) ORDER BY e.position) AS events
                FROM ev e GROUP BY e.command_id) AS a ON a.command_id = c.id),
    claimed AS (
        INSERT INTO unique_keys (key, owner)
        SELECT * FROM unnest(k_claim_keys, k_claim_owners)
        ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner),
    freed AS (
        DELETE FROM unique_keys WHERE key = ANY (k_freed)),
    counted AS (
        INSERT INTO counters (key, value)
        SELECT * FROM unnest(n_keys, n_values)
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value)
    SELECT 'p'::text, ev.event_id::text, NULL::text, NULL::jsonb, ev.position FROM ev;
END;
$$;
