"""Adapters of the monitor's port: PostgreSQL (asyncpg) and in memory."""
