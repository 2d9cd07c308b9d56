-- An auditor records the result of a chain verification (`crm audit verify`) in the store,
-- where the workbench shows the last one: `crm_auditor`, otherwise read-only, may call
-- this wrapper, which refuses anything but `ChainVerified` events in the
-- `verification-chain` stream (no keys, no counters). An auditor's role cannot forge
-- customer history, nor the query service's records of reads.

CREATE FUNCTION crm_append_verification(
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
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_streams) AS s(id) WHERE s.id <> 'verification-chain')
       OR EXISTS (SELECT 1 FROM unnest(e_stream_ids) AS s(id) WHERE s.id <> 'verification-chain')
       OR EXISTS (SELECT 1 FROM unnest(e_types) AS t(name) WHERE t.name <> 'ChainVerified')
       OR coalesce(cardinality(p_keys), 0) + coalesce(cardinality(p_counters), 0)
          + coalesce(cardinality(k_claim_keys), 0) + coalesce(cardinality(k_freed), 0)
          + coalesce(cardinality(n_keys), 0) > 0
    THEN
        RAISE EXCEPTION 'crm_append_verification appends ChainVerified events to verification-chain only'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN QUERY SELECT * FROM crm_append(
        p_locks, p_new_commands, p_streams, p_versions, p_heads, p_keys, p_owners,
        p_counters, p_values, e_stream_ids, e_versions, e_event_ids, e_types,
        e_schema_versions, e_payloads, e_command_ids, e_correlation_ids, e_causation_ids,
        e_actors, e_occurred, e_hashes, c_ids, c_types, c_fingerprints, k_claim_keys,
        k_claim_owners, k_freed, n_keys, n_values);
END;
$$;

REVOKE EXECUTE ON FUNCTION crm_append_verification(bigint[], uuid[], text[], bigint[], bytea[],
    text[], text[], text[], bigint[], text[], bigint[], uuid[], text[], int[], jsonb[], uuid[],
    uuid[], uuid[], text[], timestamptz[], bytea[], uuid[], text[], text[], text[], text[],
    text[], text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm_append_verification(bigint[], uuid[], text[], bigint[], bytea[],
    text[], text[], text[], bigint[], text[], bigint[], uuid[], text[], int[], jsonb[], uuid[],
    uuid[], uuid[], text[], timestamptz[], bytea[], uuid[], text[], text[], text[], text[],
    text[], text[], bigint[]) TO crm_auditor;
