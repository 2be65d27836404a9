"""`python -m ragbus.stack.local {broker,model,postgres} {start,stop,status} [...]`: the same command
as `ragbus local`, for scripts that have only the stack's Python (infra/local/*.sh, CI).

The pieces themselves are `ragbus.stack.broker`, `ragbus.stack.model` and `ragbus.stack.postgres`.
"""

from __future__ import annotations

from ragbus.stack.cli import alias, local

if __name__ == "__main__":
    alias(local, "ragbus.stack.local")
