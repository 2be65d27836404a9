"""`ragbus audit`: the compliance record. Plugged into the `ragbus` CLI (`ragbus.cli` entry points).

ragbus audit verify [--tenant T]     check the hash chains, checkpoints and erasures; name what is wrong
ragbus audit erase --user U | --tenant T
ragbus audit purge                   apply the retention policy (MONITOR_RETENTION)
ragbus audit grant --writer ROLE     a database role that may insert, never update or delete
"""

from __future__ import annotations

import click


@click.group("audit")
def audit() -> None:
    """The monitor's compliance record: verify it, show it, erase from it."""
