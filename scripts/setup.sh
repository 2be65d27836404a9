#!/usr/bin/env bash
# Set up a machine for ragbus: a virtualenv in .venv with every package of the workspace (editable),
# the dev tools and the local model files, at the versions pinned in uv.lock. Idempotent, and quick on a
# set-up clone: re-run it after a pull. After changing a dependency: `.venv/bin/uv lock`, then this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${RAGBUS_VENV:-.venv}
UV_VERSION=0.13.9   # the same as `required-version` in pyproject.toml

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# (Some machines' pip configuration names package indexes that do not exist; their warnings are noise.)
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
installed() { "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' "$@" 2>/dev/null; }

installed uv "$UV_VERSION" || pip install "uv==$UV_VERSION"
UV="$VENV/bin/uv"
export UV_PROJECT_ENVIRONMENT="$VENV" UV_PYTHON_DOWNLOADS=never
# Optional dependency groups as well, e.g. RAGBUS_GROUPS=train to retrain the shields' classifiers.
groups=()
for group in ${RAGBUS_GROUPS:-}; do groups+=(--group "$group"); done
locked=$("$UV" export --frozen --all-packages "${groups[@]}" --no-hashes --no-header --no-annotate --no-emit-workspace)
TORCH_VERSION=$(sed -n 's/^torch==\([^ ;]*\).*/\1/p' <<<"$locked")

# torch first, alone and with pip: `pip install torch==X` takes the CPU build this machine kind keeps in
# pip's find-links, which uv does not read. uv.lock has PyPI's torch, whose Linux wheel needs several GB
# of CUDA libraries (nvidia-*, triton, cuda-*): those are never installed. torch's other dependencies
# (sympy, networkx, ...) come from the lock with everything else.
# Elsewhere, RAGBUS_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes it from PyTorch's CPU index.
if ! installed torch "$TORCH_VERSION+cpu"; then
  pip install --no-deps ${RAGBUS_TORCH_INDEX_URL:+--index-url "$RAGBUS_TORCH_INDEX_URL"} "torch==$TORCH_VERSION"
  if ! installed torch "$TORCH_VERSION+cpu"; then
    echo "setup: pip found no CPU build of torch==$TORCH_VERSION; set" \
      "RAGBUS_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (on this machine kind it is in pip's find-links)" >&2
    exit 1
  fi
fi

# Everything else exactly as locked (hashes checked); --locked fails if a pyproject.toml changed a
# dependency without `uv lock`. --inexact keeps what uv.lock does not list: pip, uv, the CPU torch.
skip=()
for name in $(grep -oE '^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==' <<<"$locked"); do
  skip+=(--no-install-package "${name%==}")
done
"$UV" sync --locked --all-packages "${groups[@]}" --inexact --quiet "${skip[@]}"

echo "ragbus: environment ready in $VENV ($("$VENV/bin/python" --version), uv.lock)"
