-- One row per query (tenant, correlation id): what was asked, what came back, which tier answered, what
-- it cost and how long it took. ragbus.monitor.domain.summarize is the same rule in Python (the
-- in-memory store uses it); the contract tests hold the two together, so change both or neither.
--
-- Several submissions of one query (a client retry with a new event id) count once: the first
-- submission starts the clock, the latest draft and completion are the outcome.

CREATE VIEW request_summary AS
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
    (EXTRACT(EPOCH FROM c.event_time - s.event_time) * 1000)::double precision AS latency_ms
FROM events AS s
LEFT JOIN LATERAL (
    SELECT e.data
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
