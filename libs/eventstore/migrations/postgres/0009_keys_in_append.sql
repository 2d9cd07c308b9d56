-- A data subject's first encryption key is stored by the append whose events it sealed,
-- in the same transaction (docs/adr/0011-keys-in-the-append.md): a key exists exactly
-- when something sealed with it was committed, and a registration costs one round trip
-- instead of two.
--
-- crm_append gains three arguments: p_subjects, the subjects of the batch's new keys,
-- believed to have no key (checked under the batch's locks like every other belief; a
-- stale answer lists those that have one, as 'x' rows), and x_subjects / x_keys, the
-- keys of the accepted requests, inserted with the events. The 29-argument function
-- stays, forwarding with no keys, for the access and verification wrappers and for
-- binaries of the previous version during a rolling upgrade.

CREATE FUNCTION crm_append(
    p_locks bigint[],
    p_new_commands uuid[],
    p_streams text[], p_versions bigint[], p_heads bytea[],
    p_keys text[], p_owners text[],
    p_counters text[], p_values bigint[],
    p_subjects text[],
    e_stream_ids text[], e_versions bigint[], e_event_ids uuid[], e_types text[],
    e_schema_versions int[], e_payloads jsonb[], e_command_ids uuid[], e_correlation_ids uuid[],
    e_causation_ids uuid[], e_actors text[], e_occurred timestamptz[], e_hashes bytea[],
    c_ids uuid[], c_types text[], c_fingerprints text[],
    k_claim_keys text[], k_claim_owners text[], k_freed text[],
    n_keys text[], n_values bigint[],
    x_subjects text[], x_keys bytea[]
) RETURNS TABLE (r_kind text, r_key text, r_text text, r_doc jsonb, r_n bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
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
           SELECT 1 FROM unnest(p_streams, p_versions, p_heads) AS b(stream, version, head)
             LEFT JOIN LATERAL (
                 SELECT e.stream_version, e.chain_hash FROM events e
                  WHERE e.stream_id = b.stream ORDER BY e.stream_version DESC LIMIT 1) AS h ON true
            WHERE coalesce(h.stream_version, 0) <> b.version
               -- A head stored before the chains (no link) is not compared: the next
               -- event chains from zeros, and verify reports the unlinked ones.
               OR (b.version > 0 AND octet_length(h.chain_hash) = 32
                   AND h.chain_hash IS DISTINCT FROM b.head))
       OR EXISTS (
           SELECT 1 FROM unnest(p_keys, p_owners) AS b(k, owner)
            WHERE (SELECT u.owner FROM unique_keys u WHERE u.key = b.k) IS DISTINCT FROM b.owner)
       OR EXISTS (
           SELECT 1 FROM unnest(p_counters, p_values) AS b(k, value)
            WHERE coalesce((SELECT c.value FROM counters c WHERE c.key = b.k), 0) <> b.value)
       OR EXISTS (SELECT 1 FROM subject_keys s WHERE s.subject = ANY (p_subjects))
    THEN
        RETURN QUERY
            SELECT 'stale'::text, NULL::text, NULL::text, NULL::jsonb, NULL::bigint
            UNION ALL SELECT 'c', c.command_id::text, c.fingerprint, c.outcome, NULL
              FROM commands c WHERE c.command_id = ANY (p_new_commands)
            UNION ALL SELECT 's', h.stream_id, encode(h.chain_hash, 'hex'), NULL, h.stream_version
              FROM unnest(p_streams) AS b(stream)
              CROSS JOIN LATERAL (
                  SELECT e.stream_id, e.stream_version, e.chain_hash FROM events e
                   WHERE e.stream_id = b.stream ORDER BY e.stream_version DESC LIMIT 1) AS h
            UNION ALL SELECT 'k', u.key, u.owner, NULL, NULL
              FROM unique_keys u WHERE u.key = ANY (p_keys)
            UNION ALL SELECT 'n', c.key, NULL, NULL, c.value
              FROM counters c WHERE c.key = ANY (p_counters)
            UNION ALL SELECT 'x', s.subject, NULL, NULL, NULL
              FROM subject_keys s WHERE s.subject = ANY (p_subjects);
        RETURN;
    END IF;

    RETURN QUERY
    WITH ev AS (
        INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload,
                            command_id, correlation_id, causation_id, actor, occurred_at, chain_hash)
        SELECT t.stream_id, t.stream_version, t.event_id, t.event_type, t.schema_version, t.payload,
               t.command_id, t.correlation_id, t.causation_id, t.actor, t.occurred_at, t.chain_hash
          FROM unnest(e_stream_ids, e_versions, e_event_ids, e_types, e_schema_versions, e_payloads,
                      e_command_ids, e_correlation_ids, e_causation_ids, e_actors, e_occurred, e_hashes)
               WITH ORDINALITY
               AS t(stream_id, stream_version, event_id, event_type, schema_version, payload,
                    command_id, correlation_id, causation_id, actor, occurred_at, chain_hash, ord)
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
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value),
    -- No ON CONFLICT: a key stored meanwhile by a writer outside the batch's locks (an
    -- erasure's tombstone) fails the batch, which is tried again and finds it (stale).
    keyed AS (
        INSERT INTO subject_keys (subject, key)
        SELECT * FROM unnest(x_subjects, x_keys))
    SELECT 'p'::text, ev.event_id::text, NULL::text, NULL::jsonb, ev.position FROM ev;
END;
$$;

REVOKE EXECUTE ON FUNCTION crm_append(bigint[], uuid[], text[], bigint[], bytea[], text[],
    text[], text[], bigint[], text[], text[], bigint[], uuid[], text[], int[], jsonb[], uuid[],
    uuid[], uuid[], text[], timestamptz[], bytea[], uuid[], text[], text[], text[], text[],
    text[], text[], bigint[], text[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm_append(bigint[], uuid[], text[], bigint[], bytea[], text[],
    text[], text[], bigint[], text[], text[], bigint[], uuid[], text[], int[], jsonb[], uuid[],
    uuid[], uuid[], text[], timestamptz[], bytea[], uuid[], text[], text[], text[], text[],
    text[], text[], bigint[], text[], bytea[]) TO crm_writer;

-- The previous signature: the same append without keys. CREATE OR REPLACE keeps its
-- owner and grants (crm_writer; the wrappers call it with the owner's rights).
CREATE OR REPLACE FUNCTION crm_append(
    p_locks bigint[],
    p_new_commands uuid[],
    p_streams text[], p_versions bigint[], p_heads bytea[],
    p_keys text[], p_owners text[],
    p_counters text[], p_values bigint[],
    e_stream_ids text[], e_versions bigint[], e_event_ids uuid[], e_types text[],
    e_schema_versions int[], e_payloads jsonb[], e_command_ids uuid[], e_correlation_ids uuid[],
    e_causation_ids uuid[], e_actors text[], e_occurred timestamptz[], e_hashes bytea[],
    c_ids uuid[], c_types text[], c_fingerprints text[],
    k_claim_keys text[], k_claim_owners text[], k_freed text[],
    n_keys text[], n_values bigint[]
) RETURNS TABLE (r_kind text, r_key text, r_text text, r_doc jsonb, r_n bigint)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT * FROM crm_append(
        p_locks, p_new_commands, p_streams, p_versions, p_heads, p_keys, p_owners,
        p_counters, p_values, '{}'::text[], e_stream_ids, e_versions, e_event_ids, e_types,
        e_schema_versions, e_payloads, e_command_ids, e_correlation_ids, e_causation_ids,
        e_actors, e_occurred, e_hashes, c_ids, c_types, c_fingerprints, k_claim_keys,
        k_claim_owners, k_freed, n_keys, n_values, '{}'::text[], '{}'::bytea[]);
$$;
