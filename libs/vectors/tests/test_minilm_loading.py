"""Loading the embedding model waits for any other thread importing the ML libraries: transformers'
lazy module is not safe to import from two threads at once (ragbus.common.imports)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ragbus.common.imports import ML_IMPORT_LOCK
from ragbus.vectors.adapters.minilm import _load, wheel_model_path

pytestmark = pytest.mark.model


def test_a_load_waits_while_another_thread_holds_the_import_lock(tmp_path: Path) -> None:
    _load(wheel_model_path())  # the libraries imported: a fresh load takes well under a second
    path = tmp_path / "model"  # a path of its own: not the process's cached model
    path.symlink_to(wheel_model_path(), target_is_directory=True)
    loaded = threading.Event()

    def load() -> None:
        _load(path)
        loaded.set()

    with ML_IMPORT_LOCK:
        worker = threading.Thread(target=load)
        worker.start()
        assert not loaded.wait(3.0)  # held here: the load cannot start importing or building
    assert loaded.wait(60)
    worker.join()
