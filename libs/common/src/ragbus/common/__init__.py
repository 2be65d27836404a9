"""Shared contracts of ragbus: events, envelope, topics, settings, bus wiring, telemetry, logging."""
