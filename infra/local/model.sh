#!/usr/bin/env sh
# Start, stop or check the local chat model server (llama.cpp + SmolLM2, http://127.0.0.1:8080/v1).
# Usage: infra/local/model.sh start|stop|status [--port N] [--threads N] [--timeout S] [--foreground]
# Runs `${RAGBUS_PYTHON:-python} -m ragbus.stack.local`, the same command as `ragbus local model`: point
# RAGBUS_PYTHON at the python of the venv that has ragbus-stack installed.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 start|stop|status [options]" >&2
    exit 2
fi
exec "${RAGBUS_PYTHON:-python}" -m ragbus.stack.local model "$@"
