#!/usr/bin/env sh
# Start, stop or check the local Kafka-protocol broker (Tansu, 127.0.0.1:9092).
# Usage: infra/local/broker.sh start|stop|status [--port N] [--timeout S] [--foreground]
# Runs `${RAGBUS_PYTHON:-python} -m ragbus.stack.local`, the same command as `ragbus local broker`: point
# RAGBUS_PYTHON at the python of the venv that has ragbus-stack installed.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 start|stop|status [options]" >&2
    exit 2
fi
exec "${RAGBUS_PYTHON:-python}" -m ragbus.stack.local broker "$@"
