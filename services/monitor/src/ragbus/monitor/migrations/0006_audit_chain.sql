-- Tamper evidence (docs/audit.md). Every stored event and dead letter gets one row in `audit_log`: the
-- digest of its content, linked to the row before it in its chain by a hash. A chain is one (tenant,
-- topic, partition): one consumer writes it at a time (Kafka's assignment), so batches and parallel
-- monitors never wait on each other, and a row's place in its chain follows the partition's order.
-- Signed checkpoints pin the chains' heads; `erasures` records every redaction or purge, so a row that
-- was lawfully changed is told apart from a tampered one. `ragbus audit verify` checks all of it.

-- What a row says, hashed: the columns an event has when it arrives (not received_at, which the
-- database sets, and not erased_at). Binary forms (each field length-prefixed or flagged when it may
-- be NULL), so neither the session's time zone nor a text format matters; jsonb's binary form is its
-- canonical text (sorted keys, one spelling per number), so a dump and restore keeps every digest.
-- STABLE, not IMMUTABLE (textsend is stable): only so can the planner inline the body into a query,
-- three times faster than calling the function with a whole row (100k rows in about 0.6 s).
CREATE FUNCTION event_content_digest(e events) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(
        uuid_send(e.event_id)
        || int4send(octet_length(e.topic)) || textsend(e.topic)
        || int4send(octet_length(e.type)) || textsend(e.type)
        || int4send(octet_length(e.source)) || textsend(e.source)
        || coalesce('\x01'::bytea || int4send(octet_length(e.subject)) || textsend(e.subject), '\x00'::bytea)
        || int4send(octet_length(e.tenant)) || textsend(e.tenant)
        || int4send(octet_length(e.correlation_id)) || textsend(e.correlation_id)
        || coalesce('\x01'::bytea || uuid_send(e.causation_id), '\x00'::bytea)
        || timestamptz_send(e.event_time)
        || int4send(e.kafka_partition) || int8send(e.kafka_offset)
        || coalesce('\x01'::bytea || int4send(octet_length(e.kafka_key)) || textsend(e.kafka_key), '\x00'::bytea)
        || coalesce('\x01'::bytea || timestamptz_send(e.kafka_timestamp), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(e.trace_id)) || textsend(e.trace_id), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(length(e.digest)) || e.digest, '\x00'::bytea)
        || jsonb_send(e.data))
$$;

CREATE FUNCTION dead_letter_content_digest(d dead_letters) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(
        uuid_send(d.id)
        || int4send(octet_length(d.dlq_topic)) || textsend(d.dlq_topic)
        || int4send(octet_length(d.original_topic)) || textsend(d.original_topic)
        || coalesce('\x01'::bytea || int4send(d.original_partition), '\x00'::bytea)
        || coalesce('\x01'::bytea || int8send(d.original_offset), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(d.service)) || textsend(d.service), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(d.error_type)) || textsend(d.error_type), '\x00'::bytea)
        || int4send(octet_length(d.reason)) || textsend(d.reason)
        || coalesce('\x01'::bytea || int4send(d.attempts), '\x00'::bytea)
        || coalesce('\x01'::bytea || timestamptz_send(d.failed_at), '\x00'::bytea)
        || coalesce('\x01'::bytea || uuid_send(d.event_id), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(d.tenant)) || textsend(d.tenant), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(d.correlation_id)) || textsend(d.correlation_id), '\x00'::bytea)
        || int4send(d.kafka_partition) || int8send(d.kafka_offset)
        || coalesce('\x01'::bytea || int4send(octet_length(d.kafka_key)) || textsend(d.kafka_key), '\x00'::bytea)
        || coalesce('\x01'::bytea || timestamptz_send(d.kafka_timestamp), '\x00'::bytea)
        || coalesce('\x01'::bytea || int4send(octet_length(d.trace_id)) || textsend(d.trace_id), '\x00'::bytea)
        || jsonb_send(d.headers)
        || sha256(d.body))
$$;

CREATE TABLE audit_log (
    chain          text        NOT NULL,  -- tenant|topic|partition, or erasures|tenant
    seq            bigint      NOT NULL CHECK (seq >= 1),
    kind           text        NOT NULL CHECK (kind IN ('event', 'dead_letter', 'erasure')),
    ref            uuid        NOT NULL,  -- events.event_id, dead_letters.id or erasures.id
    tenant         text        NOT NULL,
    content_digest bytea       NOT NULL,  -- the row's digest when it was stored
    prev_hash      bytea       NOT NULL,  -- the previous row's hash; 32 zero bytes for seq 1
    hash           bytea       NOT NULL,  -- ragbus.monitor.audit.link_hash of the fields above
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, seq)              -- two writers of one chain: the second fails and retries
);
CREATE UNIQUE INDEX audit_log_ref_idx ON audit_log (ref, kind);  -- a row is chained once

-- The heads of the chains one monitor wrote, at one moment, signed (HMAC-SHA256 with MONITOR_AUDIT_KEY).
-- Rewriting a chain from some row on needs no key, but cannot match a checkpoint signed before it.
CREATE TABLE audit_checkpoints (
    id        uuid        PRIMARY KEY,
    signed_at timestamptz NOT NULL,
    key_id    text        NOT NULL,   -- which key signed (a digest of it), for rotation
    heads     jsonb       NOT NULL,   -- {chain: [seq, hash hex]}
    mac       bytea       NOT NULL
);
CREATE INDEX audit_checkpoints_time_idx ON audit_checkpoints (signed_at);

-- A lawful change to the record: a row redacted (personal data erased on request) or purged (retention).
-- The digests before and after are kept, never the content; a requester is kept as a digest too.
CREATE TABLE erasures (
    id              uuid        PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('event', 'dead_letter')),
    ref             uuid        NOT NULL,
    tenant          text        NOT NULL,
    action          text        NOT NULL CHECK (action IN ('redact', 'purge')),
    reason          text        NOT NULL,
    subject_digest  bytea,                 -- sha256 of the user id erased for, when it was one user
    original_digest bytea       NOT NULL,  -- the content digest before
    erased_digest   bytea,                 -- after a redaction; NULL once purged
    erased_at       timestamptz NOT NULL,
    key_id          text,
    mac             bytea                  -- HMAC of the above, when a key is configured
);
CREATE INDEX erasures_ref_idx ON erasures (ref, kind);

ALTER TABLE events ADD COLUMN erased_at timestamptz;
ALTER TABLE dead_letters ADD COLUMN erased_at timestamptz;
-- Erasure by user finds the user's requests through this.
CREATE INDEX events_user_idx ON events (tenant, (data ->> 'user_id')) WHERE data ? 'user_id';

-- Append-only, whoever asks. The monitor's writer role has no UPDATE or DELETE grant either
-- (`ragbus audit grant`); this also stops the owner by accident. Disabling it takes a superuser
-- (session_replication_role), and `verify` still sees what was done.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit record is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER erasures_append_only BEFORE UPDATE OR DELETE ON erasures
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

-- ragbus.monitor.audit.link_hash in SQL (a test holds the two together), for the backfill below.
CREATE FUNCTION audit_link_hash(prev bytea, content bytea, seq bigint, chain text, kind text, ref uuid,
                                tenant text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(
        convert_to('ragbus.audit.v1', 'UTF8') || prev || content || int8send(seq)
        || int4send(octet_length(convert_to(chain, 'UTF8'))) || convert_to(chain, 'UTF8')
        || int4send(octet_length(convert_to(kind, 'UTF8'))) || convert_to(kind, 'UTF8')
        || uuid_send(ref)
        || int4send(octet_length(convert_to(tenant, 'UTF8'))) || convert_to(tenant, 'UTF8'))
$$;

-- What was recorded before this migration is chained now, in partition order, so `verify` covers the
-- whole record and a row on no chain can only be one added behind the monitor's back.
DO $$
DECLARE
    r record;
    chain_now text := NULL;
    n bigint := 0;
    prev bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    h bytea;
BEGIN
    FOR r IN
        SELECT 'event'::text AS kind, e.event_id AS ref, e.tenant AS tenant,
               e.tenant || '|' || e.topic || '|' || e.kafka_partition AS chain, e.kafka_offset AS pos,
               event_content_digest(e) AS content
        FROM events AS e
        UNION ALL
        SELECT 'dead_letter', d.id, coalesce(d.tenant, ''),
               coalesce(d.tenant, '') || '|' || d.dlq_topic || '|' || d.kafka_partition, d.kafka_offset,
               dead_letter_content_digest(d)
        FROM dead_letters AS d
        ORDER BY chain, pos, ref
    LOOP
        IF chain_now IS DISTINCT FROM r.chain THEN
            chain_now := r.chain;
            n := 0;
            prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        END IF;
        n := n + 1;
        h := audit_link_hash(prev, r.content, n, r.chain, r.kind, r.ref, r.tenant);
        INSERT INTO audit_log (chain, seq, kind, ref, tenant, content_digest, prev_hash, hash)
            VALUES (r.chain, n, r.kind, r.ref, r.tenant, r.content, prev, h);
        prev := h;
    END LOOP;
END
$$;
