"""ragbus ingest service."""
