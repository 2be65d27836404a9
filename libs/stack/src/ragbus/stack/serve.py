"""`python -m ragbus.stack.serve SERVICE...|all [--health-port N]`: the same command as `ragbus serve`.

Containers run it (one service each); `ragbus up` runs `all` in one process. The runner itself is
`ragbus.stack.runner`.
"""

from __future__ import annotations

from ragbus.stack.cli import alias, serve

if __name__ == "__main__":
    alias(serve, "ragbus.stack.serve")
