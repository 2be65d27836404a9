#!/usr/bin/env bash
# Set up (if needed) and run every check: lint, types, and the test suite (unit, component,
# integration and end to end). Endpoints come from the environment (KAFKA_BOOTSTRAP, DATABASE_URL,
# RAGBUS_CHAT_BASE_URL, QDRANT_URL); whatever is unset, the test session starts locally itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${RAGBUS_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== pytest"; pytest "$@"
