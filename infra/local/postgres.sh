#!/usr/bin/env sh
# Start, stop or check PostgreSQL at MONITOR_DATABASE_URL or DATABASE_URL (default
# postgresql://postgres@127.0.0.1:5432/postgres; started with pg_ctlcluster when local and down).
# Usage: infra/local/postgres.sh start|stop|status [--url URL] [--timeout S]
# Runs `${RAGBUS_PYTHON:-python} -m ragbus.stack.local`, the same command as `ragbus local postgres`: point
# RAGBUS_PYTHON at the python of the venv that has ragbus-stack installed.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 start|stop|status [options]" >&2
    exit 2
fi
exec "${RAGBUS_PYTHON:-python}" -m ragbus.stack.local postgres "$@"
