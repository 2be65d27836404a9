"""The training scripts (libs/shields/training, not a package) as modules for the tests that check them:
loaded once a session (fixtures, since test modules cannot import conftest)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

TRAINING = Path(__file__).resolve().parents[1] / "training"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"training_{name}", TRAINING / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def train_prompts() -> ModuleType:
    return _load("train_prompts")


@pytest.fixture(scope="session")
def training_sources() -> ModuleType:
    return _load("sources")
