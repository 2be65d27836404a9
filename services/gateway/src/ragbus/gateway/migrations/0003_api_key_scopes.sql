-- What each key may do: `ask` (chat completions, feedback), `ingest` (documents), `audit` (requests'
-- stories and traces); an endpoint outside a key's scopes answers 403. Keys made before scopes existed
-- get every scope, so they go on working as they did. A new scope needs a migration that widens the
-- check (and says whether existing keys get it).
ALTER TABLE api_keys
    ADD COLUMN scopes text[] NOT NULL DEFAULT '{ask,ingest,audit}'
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['ask', 'ingest', 'audit']::text[]);
