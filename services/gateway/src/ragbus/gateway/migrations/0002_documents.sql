-- The documents submitted through the gateway and where each one is (GET /v1/documents/{id}): one row
-- per tenant and document, replaced by each new submission (`submission` names the latest, so the
-- outcome of an earlier one that finishes late does not overwrite it).
CREATE TABLE documents (
    tenant        text NOT NULL,
    doc_id        text NOT NULL,
    submission    text NOT NULL,
    status        text NOT NULL CHECK (status IN ('submitted', 'indexed', 'skipped', 'failed', 'deleted')),
    title         text,
    version       text,
    chunks        integer,
    unchanged     integer,
    removed       integer,
    duplicate_of  text,
    reason        text,
    submitted_at  timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, doc_id)
);
