-- Feedback names a question by its query id; the monitor checks that such a question is on record for
-- the tenant (EventStore.known_queries: one query per batch of feedback). A partial index on the
-- questions alone: small, and only `queries.submitted` rows pay for it.

CREATE INDEX events_query_id_idx ON events (tenant, (data ->> 'query_id'))
    WHERE type = 'io.ragbus.queries.submitted.v1';
