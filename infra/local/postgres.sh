#!/usr/bin/env sh
# Start, stop or check PostgreSQL at DATABASE_URL (started with pg_ctlcluster when local and down).
# Usage: infra/local/postgres.sh start|stop|status [--port N] [--foreground] ...
# Runs ${RAGBUS_PYTHON:-python}: point RAGBUS_PYTHON at the venv that has ragbus-stack installed.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 start|stop|status [options]" >&2
    exit 2
fi
exec "${RAGBUS_PYTHON:-python}" -m ragbus.stack.local postgres "$@"
