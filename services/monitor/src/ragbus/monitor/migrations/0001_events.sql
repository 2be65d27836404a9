-- One row per ragbus event, whichever topic it came from. Names are unqualified: the migrator runs
-- each file with search_path set to the monitor's schema.

CREATE TABLE events (
    event_id        uuid PRIMARY KEY,            -- the CloudEvents id: a redelivery is a no-op
    topic           text        NOT NULL,        -- as consumed, deployment prefix included
    type            text        NOT NULL,        -- io.ragbus.<domain>.<event>.v<major>
    source          text        NOT NULL,
    subject         text,
    tenant          text        NOT NULL,
    correlation_id  text        NOT NULL,
    causation_id    uuid,
    event_time      timestamptz NOT NULL,        -- the producer's clock (CloudEvents `time`)
    received_at     timestamptz NOT NULL DEFAULT now(),
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    kafka_key       text,
    kafka_timestamp timestamptz,
    trace_id        text,                        -- from the W3C traceparent header
    data            jsonb       NOT NULL         -- the payload as published, unknown fields included
);

-- A request's or a document's whole history, and the per-request lookups of request_summary.
CREATE INDEX events_correlation_idx ON events (correlation_id, type, event_time);
-- A tenant's activity over a period (audit, cost reports, retention).
CREATE INDEX events_tenant_time_idx ON events (tenant, event_time);
-- All events of one kind over a period.
CREATE INDEX events_type_time_idx ON events (type, event_time);
