"""Loading the embedding model waits for any other thread importing the ML libraries: transformers'
lazy module is not safe to import from two threads at once (ragbus.common.imports)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragbus.common.testing import assert_waits_for_ml_import_lock
from ragbus.vectors.adapters.minilm import _load, wheel_model_path

pytestmark = pytest.mark.model


def test_a_load_waits_while_another_thread_holds_the_import_lock(tmp_path: Path) -> None:
    _load(wheel_model_path())  # the libraries imported: a fresh load takes well under a second
    path = tmp_path / "model"  # a path of its own: not the process's cached model
    path.symlink_to(wheel_model_path(), target_is_directory=True)
    assert_waits_for_ml_import_lock(lambda: _load(path))
