"""The uv workspace and its lock: every package listed once, the lock current, one uv version, and this
environment installed from the lock (scripts/setup.sh) with the CPU build of torch and no CUDA package.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from .conftest import DOCKERFILE, REPO, read_toml, workspace_pyprojects

ROOT = read_toml(REPO / "pyproject.toml")
CUDA_ONLY = re.compile(r"^(triton|nvidia-[\w-]+|cuda-[\w-]+)$")


def uv_binary() -> str:
    """The uv that scripts/setup.sh installs beside this interpreter, or one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.is_file() else shutil.which("uv")
    if found is None:
        pytest.skip("uv not installed (bash scripts/setup.sh installs it)")
    return found


def uv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([uv_binary(), *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_every_package_is_a_workspace_member_listed_once() -> None:
    names = {canonicalize_name(read_toml(p)["project"]["name"]): p.parent for p in workspace_pyprojects()}
    workspace = ROOT["tool"]["uv"]["workspace"]
    for directory in names.values():
        rel = directory.relative_to(REPO).as_posix()
        assert any(Path(rel).match(glob) for glob in workspace["members"]), f"{rel} is not a member"
    sources = ROOT["tool"]["uv"]["sources"]
    assert {canonicalize_name(n) for n in sources} == set(names), "[tool.uv.sources]: one entry a package"
    assert all(source == {"workspace": True} for source in sources.values())


def test_the_lock_is_up_to_date() -> None:
    """uv.lock matches every pyproject.toml (offline: a current lock needs no index to tell)."""
    result = uv("lock", "--check", "--offline")
    assert result.returncode == 0, f"uv.lock is out of date; run: .venv/bin/uv lock\n{result.stderr}"


def test_one_uv_version_everywhere() -> None:
    """The uv that writes the lock (pyproject), installs it (setup.sh) and exports it (the image)."""
    required = ROOT["tool"]["uv"]["required-version"]
    setup = re.search(r"^UV_VERSION=(\S+)", (REPO / "scripts/setup.sh").read_text(encoding="utf-8"), re.M)
    image = re.search(r"^ARG UV_VERSION=(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert setup is not None
    assert image is not None
    assert required == f"=={setup[1]}" == f"=={image[1]}"


def test_mypy_checks_every_package() -> None:
    """mypy's `mypy_path` does not expand globs, so it lists each src directory: one per package."""
    mypy_path = set(ROOT["tool"]["mypy"]["mypy_path"])
    src_dirs = {(p.parent / "src").relative_to(REPO).as_posix() for p in workspace_pyprojects()}
    assert mypy_path == src_dirs


def test_this_environment_is_the_lock() -> None:
    """Every locked distribution for this interpreter is installed at its locked version; torch is the
    CPU build and no CUDA-only distribution is installed (scripts/setup.sh)."""
    result = uv("export", "--frozen", "--all-packages", "--no-hashes", "--no-header", "--no-annotate")
    assert result.returncode == 0, result.stderr
    wrong = []
    for line in result.stdout.splitlines():
        if not line or line.startswith(("#", "-e", " ")) or "==" not in line:
            continue
        spec, _, marker = line.partition(";")
        name, version = (s.strip() for s in spec.split("=="))
        if (marker.strip() and not Marker(marker).evaluate()) or CUDA_ONLY.match(name) or name == "torch":
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            wrong.append(f"{name}: {installed}, locked {version}")
    assert not wrong, "not as locked (bash scripts/setup.sh): " + "; ".join(wrong)

    torch = read_toml(REPO / "uv.lock")["package"]
    locked_torch = next(p["version"] for p in torch if p["name"] == "torch")
    assert importlib.metadata.version("torch") == f"{locked_torch}+cpu"
    cuda = sorted(
        name
        for dist in importlib.metadata.distributions()
        if CUDA_ONLY.match(name := canonicalize_name(dist.metadata["Name"]))
    )
    assert not cuda, f"CUDA-only packages installed: {cuda}"


def test_setup_on_a_set_up_clone_installs_nothing() -> None:
    """`scripts/demo.sh` and `scripts/test.sh` run setup first: on a clone that is set up and current it
    must neither reinstall nor fetch anything. Offline (no index for pip or uv) it still succeeds."""
    env = {**os.environ, "UV_OFFLINE": "1", "PIP_NO_INDEX": "1", "RAGBUS_VENV": str(Path(sys.prefix))}
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(REPO / "scripts/setup.sh")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "environment ready" in done.stdout
    assert "Installed" not in done.stderr, done.stderr
    assert "Uninstalled" not in done.stderr, done.stderr
    print(f"setup.sh on a set-up clone: {took:.1f} s")  # a figure for the log, not an assertion
