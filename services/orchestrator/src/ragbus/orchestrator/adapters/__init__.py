"""Adapters of the orchestrator's ports: the OpenAI-compatible chat model, and a scripted fake."""
