"""The hand-written claim-verification examples (services/orchestrator/training/data/verdicts): well
formed, balanced enough to learn all three labels from, split by claim, and written apart from SciFact,
which is for evaluation only."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ragbus.common.refdata import data_dir_location

TRAINING = Path(__file__).resolve().parents[1] / "training"


@pytest.fixture(scope="module")
def trainer() -> ModuleType:
    """The training script (not a package), loaded once for the module's tests."""
    spec = importlib.util.spec_from_file_location("train_verdict", TRAINING / "train_verdict.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows(trainer: ModuleType) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = trainer.load_rows()
    return loaded


def test_every_line_is_a_well_formed_example(rows: list[dict[str, Any]]) -> None:
    assert len(rows) >= 1000
    for row in rows:
        assert set(row) == {"claim", "evidence", "title", "label", "rationale", "kind"}, row
        assert row["label"] in ("SUPPORT", "CONTRADICT", "NEI")
        assert 4 <= len(row["evidence"]) <= 9
        assert all(s.strip() for s in row["evidence"])
        assert all(0 <= i < len(row["evidence"]) for i in row["rationale"])
        assert (1 <= len(row["rationale"]) <= 2) if row["label"] != "NEI" else row["rationale"] == []


def test_the_labels_are_balanced_and_most_claims_come_with_another_label(rows: list[dict[str, Any]]) -> None:
    labels = Counter(r["label"] for r in rows)
    assert all(0.25 <= labels[k] / len(rows) <= 0.45 for k in ("SUPPORT", "CONTRADICT", "NEI")), labels
    per_claim: dict[str, set[str]] = {}
    for row in rows:
        per_claim.setdefault(row["claim"], set()).add(row["label"])
    # The evidence decides: most claims appear with two labels, so the claim alone gives nothing away.
    assert sum(len(v) > 1 for v in per_claim.values()) / len(per_claim) > 0.5


def test_the_validation_split_is_by_claim_and_about_fifteen_percent(
    trainer: ModuleType, rows: list[dict[str, Any]]
) -> None:
    held_out = trainer.held_out
    sides: dict[str, set[bool]] = {}
    for row in rows:
        sides.setdefault(row["claim"], set()).add(held_out(row["claim"]))
    assert all(len(s) == 1 for s in sides.values())
    share = sum(held_out(r["claim"]) for r in rows) / len(rows)
    assert 0.10 <= share <= 0.20


def test_the_pairs_label_rationale_sentences_and_at_most_two_others_per_passage(
    trainer: ModuleType, rows: list[dict[str, Any]]
) -> None:
    import random

    row = next(r for r in rows if r["label"] == "CONTRADICT" and len(r["evidence"]) >= 5)
    pairs = trainer.pairs_of([row], random.Random(0))
    decided = [s for _, s, y in pairs if y == 1]
    assert decided == [row["evidence"][i] for i in sorted(row["rationale"])]
    assert sum(y == 2 for _, _, y in pairs) == 2


def _grams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_no_claim_repeats_a_scifact_claim(rows: list[dict[str, Any]]) -> None:
    found = data_dir_location()
    claims_file = found / "scifact" / "train-claims.jsonl" if found else None
    if claims_file is None or not claims_file.is_file():
        pytest.skip("the reference data (../shared/data) is not here")
    theirs: set[tuple[str, ...]] = set()
    for path in claims_file.parent.glob("*claims*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            theirs |= _grams(json.loads(line)["text"], 8)
    # Eight words in a row: six catch stock phrases ("is associated with an increased risk of").
    shared = [r["claim"] for r in rows if _grams(r["claim"], 8) & theirs]
    assert shared == []
