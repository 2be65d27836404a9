"""ragbus monitor service."""
