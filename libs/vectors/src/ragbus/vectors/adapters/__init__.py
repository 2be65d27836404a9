"""Adapters of the vector memory ports: Qdrant (embedded Edge, server), MiniLM, OpenAI-compatible."""
