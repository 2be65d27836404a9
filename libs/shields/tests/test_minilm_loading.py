"""Loading the prompt classifier waits for any other thread importing the ML libraries: transformers'
lazy module is not safe to import from two threads at once (ragbus.common.imports)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from ragbus.common.imports import ML_IMPORT_LOCK
from ragbus.shields.adapters.minilm_classifier import DEFAULT_WEIGHTS, MiniLMPromptClassifier

pytestmark = pytest.mark.model


def test_a_load_waits_while_another_thread_holds_the_import_lock(tmp_path: Path) -> None:
    MiniLMPromptClassifier().scores(["warm up"])  # the libraries imported: a fresh load takes ~0.6 s
    weights = tmp_path / "prompt-minilm.npz"  # a path of its own: not the process's cached model
    shutil.copy(DEFAULT_WEIGHTS, weights)
    loaded = threading.Event()

    def load() -> None:
        MiniLMPromptClassifier(weights).scores(["hello"])
        loaded.set()

    with ML_IMPORT_LOCK:
        worker = threading.Thread(target=load)
        worker.start()
        assert not loaded.wait(3.0)  # held here: the load cannot start importing or building
    assert loaded.wait(60)
    worker.join()
