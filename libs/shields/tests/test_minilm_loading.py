"""Loading the prompt classifier waits for any other thread importing the ML libraries: transformers'
lazy module is not safe to import from two threads at once (ragbus.common.imports)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ragbus.common.testing import assert_waits_for_ml_import_lock
from ragbus.shields.adapters.minilm_classifier import DEFAULT_WEIGHTS, MiniLMPromptClassifier

pytestmark = pytest.mark.model


def test_a_load_waits_while_another_thread_holds_the_import_lock(tmp_path: Path) -> None:
    MiniLMPromptClassifier().scores(["warm up"])  # the libraries imported: a fresh load takes ~0.6 s
    weights = tmp_path / "prompt-minilm.npz"  # a path of its own: not the process's cached model
    shutil.copy(DEFAULT_WEIGHTS, weights)
    assert_waits_for_ml_import_lock(lambda: MiniLMPromptClassifier(weights).scores(["hello"]))
