"""ragbus embed service."""
