"""ragbus guard service."""
