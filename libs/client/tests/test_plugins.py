"""Commands other packages plug into `ragbus` (the stack's `up`, `down`, ...), and what `ragbus` says
when the package that brings one is not installed."""

from __future__ import annotations

import ast
from importlib.metadata import EntryPoint
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ragbus.client import plugins
from ragbus.client.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
STACK_COMMANDS = ("up", "down", "status", "serve", "local")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_client_never_imports_the_stack() -> None:
    """ragbus-stack depends on ragbus-client; an import the other way would make a cycle."""
    files = sorted(SRC.rglob("*.py"))
    assert files
    offenders = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in files
        for name in imported_modules(path)
        if name == "ragbus.stack" or name.startswith("ragbus.stack.")
    ]
    assert offenders == []


def test_the_help_lists_the_plugged_in_stack_commands() -> None:
    pytest.importorskip("ragbus.stack.cli", reason="ragbus-stack is not installed")
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert set(STACK_COMMANDS) <= listed
    assert {"ask", "ingest", "topics", "trace"} <= listed
    local = CliRunner().invoke(main, ["local", "--help"])
    assert local.exit_code == 0
    assert {"broker", "model", "postgres"} <= set(local.output.split())


def without_plugins(monkeypatch: pytest.MonkeyPatch, *eps: EntryPoint) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda group: [ep for ep in eps if ep.group == group])


@pytest.mark.parametrize(
    "args", [["up", "--detach"], ["local", "broker", "start"], ["status"], ["up", "--help"]]
)
def test_without_the_stack_its_commands_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    without_plugins(monkeypatch)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert (
        result.output
        == f"ragbus: error: `ragbus {args[0]}` needs the ragbus-stack package: pip install ragbus-stack\n"
    )
    assert "up" not in CliRunner().invoke(main, ["--help"]).output.split()


def test_an_unknown_command_is_still_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    without_plugins(monkeypatch)
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output


def test_a_plugin_that_cannot_be_loaded_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    without_plugins(monkeypatch, EntryPoint("up", "ragbus_gone.cli:up", plugins.GROUP))
    result = CliRunner().invoke(main, ["up"])
    assert result.exit_code == 1
    assert result.output == (
        "ragbus: error: `ragbus up` cannot be loaded from ragbus_gone.cli:up: No module named 'ragbus_gone'\n"
    )


def test_a_plugged_in_command_runs_and_the_clients_own_commands_win(monkeypatch: pytest.MonkeyPatch) -> None:
    @click.command()
    def hello() -> None:
        click.echo("hello from a plugin")

    monkeypatch.setattr(EntryPoint, "load", lambda self: hello)
    without_plugins(
        monkeypatch,
        EntryPoint("hello", "acme.cli:hello", plugins.GROUP),
        EntryPoint("ask", "acme.cli:ask", plugins.GROUP),
    )
    assert CliRunner().invoke(main, ["hello"]).output == "hello from a plugin\n"
    assert main.get_command(click.Context(main), "ask") is main.commands["ask"]
