"""The local chat model server as a managed process, and how to tell that it serves.

The server itself is `ragbus.stack.model_server` (llama.cpp through xllamacpp), a program of its own:
it runs in a child process here and alone in the compose `llm` container, and it is the only module
that imports xllamacpp. This module turns the stack's settings into its command line and checks it:
ready when `/health` answers and a one-token chat completion works, on http://127.0.0.1:8080/v1.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from ragbus.stack.model_server import (
    DEFAULT_ALIAS,
    ServerOptions,
    check_server_installed,
    default_threads,
    find_gguf,
)
from ragbus.stack.process import HOST, ManagedProcess, NotReady, Probe, ProcessSpec, run_argv
from ragbus.stack.settings import ModelServerSettings, StackSettings

NAME = "model"
STOP_HINT = "ragbus local model stop"


async def ping_chat(base_url: str, *, model: str = DEFAULT_ALIAS, timeout_s: float = 10.0) -> None:
    """`/health` answers OK and a one-token chat completion works; raises NotReady otherwise."""
    root = base_url.rstrip("/").removesuffix("/v1")
    async with httpx.AsyncClient(timeout=timeout_s) as http:
        try:
            health = await http.get(f"{root}/health")
            if health.status_code != 200:  # 503 while the model loads
                raise NotReady(f"/health answered {health.status_code}: {health.text[:200]}")
            reply = await http.post(
                f"{base_url.rstrip('/')}/chat/completions",
                json={"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]},
            )
        except httpx.HTTPError as exc:
            raise NotReady(f"{root}: {exc or type(exc).__name__}") from None
    if reply.status_code != 200 or not reply.json().get("choices"):
        raise NotReady(f"a test completion failed ({reply.status_code}): {reply.text[:200]}")


def _chat_probe(model: str) -> Probe:
    async def probe(base_url: str) -> None:
        await ping_chat(base_url, model=model)

    return probe


def server_options(settings: ModelServerSettings, *, port: int, threads: int | None = None) -> ServerOptions:
    """The server's command line for these settings; NotInstalledError if the GGUF is missing. A named
    model is passed by name (the server applies its chat template), once found (or assembled) here."""
    if settings.gguf is None:
        find_gguf(settings.name)
    return ServerOptions(
        host=HOST,
        port=port,
        model=settings.gguf or settings.name,
        alias=settings.served_alias,
        threads=threads or settings.threads or default_threads(),
        poll=settings.poll,
        cache_ram_mib=settings.cache_ram_mib,
        ctx_size=settings.ctx_size,
        parallel=settings.parallel,
    )


def model_process(
    settings: ModelServerSettings | None = None,
    *,
    port: int | None = None,
    threads: int | None = None,
    home: Path | None = None,
) -> ManagedProcess:
    """The llama.cpp server in its own process; NotInstalledError if xllamacpp or the GGUF is missing."""
    settings = settings or StackSettings().model
    port = port or settings.port
    options = server_options(settings, port=port, threads=threads)
    check_server_installed()
    spec = ProcessSpec(
        NAME,
        run_argv("ragbus.stack.model_server", options.args()),
        f"http://{HOST}:{port}/v1",
        _chat_probe(settings.served_alias),
        port=port,
        env={"PYTHONUNBUFFERED": "1"},
        ready_timeout_s=settings.ready_timeout_s,
        stop_hint=STOP_HINT,
        port_hint="--port or RAGBUS_MODEL_PORT",
    )
    return ManagedProcess(spec, home=home)


def model_handle(settings: ModelServerSettings, *, port: int, home: Path | None = None) -> ManagedProcess:
    """The server as its pid file knows it, for `status` and `stop`: needs neither xllamacpp nor a model."""
    spec = ProcessSpec(NAME, (), f"http://{HOST}:{port}/v1", _chat_probe(settings.served_alias))
    return ManagedProcess(spec, home=home)
