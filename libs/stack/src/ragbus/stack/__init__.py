"""ragbus stack."""
