"""ragbus vectors."""
