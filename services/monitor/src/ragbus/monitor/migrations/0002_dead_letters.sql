-- One row per message read from a `<topic>.dlq` topic: the original bytes, unchanged, and why it failed.

CREATE TABLE dead_letters (
    id                 uuid PRIMARY KEY,         -- uuid5 of where it failed, who failed it, and its bytes
    dlq_topic          text        NOT NULL,
    original_topic     text        NOT NULL,
    original_partition integer,
    original_offset    bigint,
    service            text,                     -- the consumer that gave up on it
    error_type         text,
    reason             text        NOT NULL,
    attempts           integer,
    failed_at          timestamptz,
    event_id           uuid,                     -- when the body is a CloudEvent at all
    tenant             text,
    correlation_id     text,
    kafka_partition    integer     NOT NULL,     -- position in the .dlq topic
    kafka_offset       bigint      NOT NULL,
    kafka_key          text,
    kafka_timestamp    timestamptz,
    trace_id           text,
    headers            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    body               bytea       NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX dead_letters_topic_time_idx ON dead_letters (original_topic, failed_at);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX dead_letters_event_idx ON dead_letters (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX dead_letters_correlation_idx ON dead_letters (correlation_id) WHERE correlation_id IS NOT NULL;
