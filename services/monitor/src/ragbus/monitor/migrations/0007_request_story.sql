-- The request's story (`ragbus audit show`, `ragbus audit list`, `ragbus report`): request_summary keeps
-- its columns and adds, at its end, the question as the input guard passed it on, the input guard's
-- verdicts, the model and prompt version of the tier that answered, every tier tried, the stage
-- timings, the trace id, the latest feedback, and the documents read with their versions.
-- ragbus.monitor.domain.summarize is the same rule in Python; the contract tests hold the two together.

-- A document version as it was when a request read it: the `docs.indexed` part that lists the chunk.
-- A chunk id is a hash of (tenant, document, index, content), so it names one tenant's chunk; versions
-- that share the chunk all list it, and the request saw the latest indexed before it was drafted.
CREATE INDEX events_chunk_ids_idx ON events USING gin ((data -> 'chunk_ids'))
    WHERE type = 'io.ragbus.docs.indexed.v1';
-- `ragbus audit show ID` without a tenant: the questions with that query id, whichever the tenant.
CREATE INDEX events_submitted_query_idx ON events ((data ->> 'query_id'))
    WHERE type = 'io.ragbus.queries.submitted.v1';

-- A function rather than a subquery in the view: the planner counts its declared cost, not a hundred
-- look-ups per request (its guess for a jsonb array's length), which made every read of the view look
-- costly enough to JIT-compile (~1 s). Its search_path is the schema it was made in, like the view's.
CREATE FUNCTION document_version(p_tenant text, p_doc_id text, p_chunk_id text, p_at timestamptz)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE COST 20 SET search_path FROM CURRENT AS $$
    SELECT v.data ->> 'version'
    FROM events AS v
    WHERE v.type = 'io.ragbus.docs.indexed.v1' AND v.tenant = p_tenant
      AND v.data -> 'chunk_ids' ? p_chunk_id
      AND v.data ->> 'doc_id' = p_doc_id
      AND v.event_time <= p_at
    ORDER BY v.event_time DESC, v.event_id DESC
    LIMIT 1
$$;

CREATE OR REPLACE VIEW request_summary AS
SELECT
    s.tenant,
    s.correlation_id,
    s.data ->> 'query_id'                                        AS query_id,
    s.data ->> 'conversation_id'                                 AS conversation_id,
    s.data ->> 'user_id'                                         AS user_id,
    s.data ->> 'question'                                        AS question,
    COALESCE(c.data ->> 'status', 'pending')                     AS status,
    c.data ->> 'answer'                                          AS answer,
    c.data ->> 'reason'                                          AS status_reason,
    (k.cascade ->> 'tier')::numeric::integer                     AS tier,
    k.cascade ->> 'reason'                                       AS escalation_reason,
    COALESCE(c.data -> 'verdicts', '[]'::jsonb)                  AS verdicts,
    COALESCE(jsonb_array_length(c.data -> 'citations'), 0)       AS citations,
    COALESCE(t.prompt_tokens, 0)                                 AS prompt_tokens,
    COALESCE(t.completion_tokens, 0)                             AS completion_tokens,
    COALESCE(t.cost_usd, 0)                                      AS cost_usd,
    s.event_time                                                 AS submitted_at,
    c.event_time                                                 AS completed_at,
    (EXTRACT(EPOCH FROM c.event_time - s.event_time) * 1000)::double precision AS latency_ms,
    -- 0007 from here on.
    COALESCE(g.data ->> 'question', c.data ->> 'question')       AS question_redacted,
    COALESCE(g.data -> 'verdicts', '[]'::jsonb)                  AS input_verdicts,
    m.attempt ->> 'name'                                         AS model,
    m.attempt ->> 'prompt'                                       AS prompt_version,
    COALESCE(k.cascade -> 'attempts', '[]'::jsonb)               AS attempts,
    k.cascade -> 'cache' ->> 'query_id'                          AS cached_from,
    -- Each service appends its stage to the list it was handed: the last event that has any has all.
    COALESCE(NULLIF(c.data -> 'stages', '[]'::jsonb), NULLIF(d.data -> 'stages', '[]'::jsonb),
             NULLIF(g.data -> 'stages', '[]'::jsonb), '[]'::jsonb) AS stages,
    COALESCE(s.trace_id, (
        SELECT e.trace_id
        FROM events AS e
        WHERE e.correlation_id = s.correlation_id AND e.tenant = s.tenant AND e.trace_id IS NOT NULL
        ORDER BY e.event_time, e.event_id
        LIMIT 1
    ))                                                           AS trace_id,
    f.data ->> 'rating'                                          AS rating,
    f.data ->> 'comment'                                         AS feedback_comment,
    -- A scalar subquery, so a query that does not read the column does not pay for the version look-ups.
    (
        SELECT COALESCE(jsonb_agg(jsonb_build_object(
            'rank', r.i,
            'doc_id', r.x ->> 'doc_id',
            'chunk_id', r.x ->> 'chunk_id',
            'title', r.x ->> 'title',
            'score', r.x -> 'score',
            'cited', (
                SELECT min((ci ->> 'n')::numeric::integer)
                FROM jsonb_array_elements(q.cited) AS ci
                WHERE ci ->> 'chunk_id' = r.x ->> 'chunk_id'
            ),
            'version', document_version(s.tenant, r.x ->> 'doc_id', r.x ->> 'chunk_id', q.read_at)
        ) ORDER BY r.i), '[]'::jsonb)
        FROM jsonb_array_elements(COALESCE(q.retrieved, q.cited)) WITH ORDINALITY AS r(x, i)
    )                                                            AS sources
FROM events AS s
-- The input guard's word: the latest acceptance or rejection.
LEFT JOIN LATERAL (
    SELECT e.data
    FROM events AS e
    WHERE e.correlation_id = s.correlation_id AND e.tenant = s.tenant
      AND e.type IN ('io.ragbus.queries.accepted.v1', 'io.ragbus.queries.rejected.v1')
    ORDER BY e.event_time DESC, e.event_id DESC
    LIMIT 1
) AS g ON true
LEFT JOIN LATERAL (
    SELECT e.event_time, e.data
    FROM events AS e
    WHERE e.correlation_id = s.correlation_id AND e.tenant = s.tenant
      AND e.type = 'io.ragbus.answers.drafted.v1'
    ORDER BY e.event_time DESC, e.event_id DESC
    LIMIT 1
) AS d ON true
LEFT JOIN LATERAL (
    SELECT e.event_time, e.data
    FROM events AS e
    WHERE e.correlation_id = s.correlation_id AND e.tenant = s.tenant
      AND e.type = 'io.ragbus.answers.completed.v1'
    ORDER BY e.event_time DESC, e.event_id DESC
    LIMIT 1
) AS c ON true
LEFT JOIN LATERAL (
    SELECT e.data
    FROM events AS e
    WHERE e.correlation_id = s.correlation_id AND e.tenant = s.tenant
      AND e.type = 'io.ragbus.feedback.submitted.v1'
    ORDER BY e.event_time DESC, e.event_id DESC
    LIMIT 1
) AS f ON true
-- The cascade as completed (it may be absent when a guard blocked the answer), else as drafted: the
-- tokens were spent either way.
CROSS JOIN LATERAL (
    SELECT COALESCE(NULLIF(c.data -> 'cascade', 'null'::jsonb), d.data -> 'cascade') AS cascade
) AS k
LEFT JOIN LATERAL (
    SELECT sum((a ->> 'prompt_tokens')::numeric)::bigint         AS prompt_tokens,
           sum((a ->> 'completion_tokens')::numeric)::bigint     AS completion_tokens,
           sum((a ->> 'cost_usd')::double precision)             AS cost_usd
    FROM jsonb_array_elements(k.cascade -> 'attempts') AS a
) AS t ON true
-- The attempt at the tier that answered (the accepted one, else the last): its model and prompt.
LEFT JOIN LATERAL (
    SELECT x.a AS attempt
    FROM jsonb_array_elements(k.cascade -> 'attempts') WITH ORDINALITY AS x(a, i)
    WHERE (x.a ->> 'tier')::numeric = (k.cascade ->> 'tier')::numeric
    ORDER BY COALESCE((x.a ->> 'accepted')::boolean, false) DESC, x.i DESC
    LIMIT 1
) AS m ON true
-- What was read (the retrieved chunks, ranked; else the citations, for events without them) and what
-- the answer cites (as completed, else as drafted: a blocked answer's draft still says what it used).
CROSS JOIN LATERAL (
    SELECT
        COALESCE(NULLIF(d.data -> 'retrieved', '[]'::jsonb), NULLIF(c.data -> 'retrieved', '[]'::jsonb))
            AS retrieved,
        COALESCE(NULLIF(c.data -> 'citations', '[]'::jsonb), d.data -> 'citations', '[]'::jsonb) AS cited,
        COALESCE(d.event_time, c.event_time) AS read_at
) AS q
WHERE s.type = 'io.ragbus.queries.submitted.v1'
  -- The first submission only. An anti-join rather than DISTINCT ON, so that a filter on the view's
  -- tenant or submitted_at reaches the scan of `events` (an index range, not the whole history).
  AND NOT EXISTS (
      SELECT 1
      FROM events AS p
      WHERE p.correlation_id = s.correlation_id AND p.tenant = s.tenant
        AND p.type = 'io.ragbus.queries.submitted.v1'
        AND (p.event_time, p.event_id) < (s.event_time, s.event_id)
  );
