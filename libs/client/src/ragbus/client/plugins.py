"""Commands other packages add to the `ragbus` CLI, through the `ragbus.cli` entry points.

A package declares `[project.entry-points."ragbus.cli"] up = "ragbus.stack.cli:up"` (a click command
or group) and `ragbus up` runs it; nothing here imports that package until the command is used, so
the client never depends on it (ragbus-stack depends on ragbus-client, not the other way round).
A command of the client itself wins over a plugged-in one of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import click

from ragbus.client.errors import CliError

GROUP = "ragbus.cli"
# Where the commands the README documents come from, to say what to install when they are missing.
PROVIDERS: Mapping[str, str] = dict.fromkeys(("up", "down", "status", "serve", "local"), "ragbus-stack")


def plugged_in(group: str = GROUP) -> dict[str, EntryPoint]:
    """The installed entry points of `group` by command name (the first of a duplicate name wins)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found


def _failing(name: str, message: str) -> click.Command:
    """A stand-in command that says `message` as the CLI's one-line error, whatever it is given."""

    def fail() -> None:
        raise CliError(message)

    return click.Command(
        name,
        callback=fail,
        help=message,
        add_help_option=False,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


def load(name: str, ep: EntryPoint) -> click.Command:
    """The command an entry point names, or a stand-in that says why it cannot be loaded."""
    try:
        command: Any = ep.load()
    except (ImportError, AttributeError) as exc:  # the package or its command is gone or broken
        return _failing(name, f"`ragbus {name}` cannot be loaded from {ep.value}: {exc}")
    if not isinstance(command, click.Command):
        return _failing(name, f"`ragbus {name}`: {ep.value} is not a click command")
    return command


def missing(name: str) -> click.Command | None:
    """For a documented command whose package is not installed: a stand-in that says which to install."""
    package = PROVIDERS.get(name)
    if package is None:
        return None
    return _failing(name, f"`ragbus {name}` needs the {package} package: pip install {package}")


class PluginGroup(click.Group):
    """A click group that also offers the commands of an entry-point group (`ragbus.cli` for the top
    level, `ragbus.cli.eval` for `ragbus eval ...`), loaded when used."""

    entry_point_group = GROUP

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *plugged_in(self.entry_point_group)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        own = super().get_command(ctx, cmd_name)
        if own is not None:
            return own
        ep = plugged_in(self.entry_point_group).get(cmd_name)
        if ep is not None:
            return load(cmd_name, ep)
        return missing(cmd_name) if self.entry_point_group == GROUP else None


class EvalGroup(PluginGroup):
    """`ragbus eval ...`: evaluations the services' packages plug in (`ragbus.cli.eval` entry points).
    What an evaluation fails on (a file without the column asked for, a malformed file, a bad setting)
    is the CLI's one-line error, as for every other command, not a traceback."""

    entry_point_group = f"{GROUP}.eval"

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, BrokenPipeError):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI turns every failure into one clear line
            raise CliError(str(exc) or type(exc).__name__) from None
