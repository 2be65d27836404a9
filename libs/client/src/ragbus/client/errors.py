"""How the `ragbus` CLI reports a failure: one line on stderr, `ragbus: error: ...`, and exit 1."""

from __future__ import annotations

from typing import IO, Any

import click


class CliError(click.ClickException):
    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"ragbus: error: {self.message}", err=True)
