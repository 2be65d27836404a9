#!/usr/bin/env bash
# Set up (if needed), start the whole stack on its embedded defaults, index the sample corpus
# (this repository's own docs/), and ask a question. The stack keeps running: `ragbus down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${RAGBUS_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
QUESTION=${1:-"Where does a service send a message it can never process?"}

ragbus up --detach
ragbus ingest docs/
echo
echo "\$ ragbus ask \"$QUESTION\""
ragbus ask "$QUESTION"
cat <<MSG

Ask more:      $VENV/bin/ragbus ask "How does the cascade decide to call the model?"
Force a model: $VENV/bin/ragbus ask --min-tier 1 "Why are consumers idempotent?"
               (the local SmolLM2-135M often loops; the cascade then keeps the extractive answer and says why)
See a trace:   $VENV/bin/ragbus trace <trace id printed above>
Stop:          $VENV/bin/ragbus down
MSG
