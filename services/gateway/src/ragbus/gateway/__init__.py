"""ragbus gateway service: an OpenAI-compatible HTTP API that is one more Kafka client."""
