"""ragbus client."""
