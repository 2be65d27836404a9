"""Where the reference data lies: SciFact, the guard's and the PII evaluation sets, read by the benchmarks
(`bench/`) and the tests that need them (the `data_dir` fixture), never by a service.

The directory is `RAGBUS_DATA_DIR` when set, else `shared/data` beside the checkout (`../shared/data`
from the repository root), the layout of a development machine. `find_data_dir()` answers None where it
is absent (a benchmark falls back to synthetic data); `require_data_dir()` raises an error that says
which directory was looked for and how to point at another one (the `data_dir` test fixture skips with
it).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "RAGBUS_DATA_DIR"


class ReferenceDataNotFound(FileNotFoundError):
    """The reference data directory does not exist."""


def _checkout() -> Path | None:
    """The repository this module lives in (an editable install), or None (installed from a wheel)."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "libs" / "common" / "pyproject.toml").is_file():
            return parent
    return None


def data_dir_location() -> Path | None:
    """Where the reference data is looked for, whether or not it is there: `RAGBUS_DATA_DIR`, else
    `shared/data` beside the checkout (None outside a checkout, with the variable unset)."""
    if value := os.environ.get(ENV_VAR):
        return Path(value).expanduser()
    checkout = _checkout()
    return checkout.parent / "shared" / "data" if checkout is not None else None


def find_data_dir(*parts: str) -> Path | None:
    """The reference data directory, or its subdirectory `parts` (`find_data_dir("scifact")`); None where
    it does not exist."""
    root = data_dir_location()
    path = root.joinpath(*parts) if root is not None else None
    return path if path is not None and path.is_dir() else None


def require_data_dir(*parts: str) -> Path:
    """Like `find_data_dir`, but `ReferenceDataNotFound`, naming `RAGBUS_DATA_DIR`, where it is absent."""
    path = find_data_dir(*parts)
    if path is None:
        root = data_dir_location()
        where = f"at {root.joinpath(*parts)}" if root is not None else f"({ENV_VAR} is not set)"
        raise ReferenceDataNotFound(
            f"reference data not found {where}: set {ENV_VAR} to the directory holding scifact/, "
            "guard/ and pii/"
        )
    return path
