"""ragbus orchestrator service."""
