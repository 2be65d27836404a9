-- What each event says (ragbus.common.envelope.Envelope.digest: type, tenant, correlation and data),
-- so that an event id reused for different content is told apart from a redelivery. Rows stored before
-- this migration have none, and are compared with nothing.
ALTER TABLE events ADD COLUMN digest bytea;
