-- The tenants' API keys. Only the SHA-256 of a key is kept (ragbus.gateway.keys); the key itself is
-- shown once, when it is created. A revoked key stays on record (who had access, and until when).
CREATE TABLE api_keys (
    key_id          text PRIMARY KEY,
    key_hash        text NOT NULL UNIQUE,
    tenant          text NOT NULL,
    name            text,
    groups          text[] NOT NULL DEFAULT '{}',
    rate_per_minute integer CHECK (rate_per_minute > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    last_used_at    timestamptz
);

CREATE INDEX api_keys_tenant_idx ON api_keys (tenant);
