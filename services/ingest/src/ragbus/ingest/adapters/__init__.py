"""Real I/O behind the ingest ports: files under the allowed roots, the word-piece tokenizer."""
