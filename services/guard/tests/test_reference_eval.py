"""The detectors on the labelled reference data, with floors the current ones meet with margin.

Measured when these floors were set (shared/data, dev halves): Giskard injections flagged 35/35; XSTest
safe prompts flagged 0/127 (unsafe: 0/98, they are harmful requests, not injections); PII overlap
precision / recall 1.00 / 1.00 for EMAIL, CREDIT_CARD, IBAN, US_SSN, IP_ADDRESS and 0.98 / 1.00 for
PHONE; DATE_OF_BIRTH precision 1.00. With the named-entity model (template-disjoint validation half):
PERSON F1 0.758, LOCATION 0.89 (street addresses alone, no model: precision 1.00, recall 0.77).
A change that loses more than the margin fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragbus.guard.evaluation import (
    evaluate_pii,
    flag_rate,
    giskard_prompts,
    presidio_examples,
    presidio_records,
    split_examples,
    xstest_prompts,
)
from ragbus.guard.input_checks import check_garbage
from ragbus.guard.settings import InputPolicy
from ragbus.shields.pii import PiiKind, find_pii


def test_injection_recall_on_giskard(data_dir: Path) -> None:
    flagged, total = flag_rate(giskard_prompts(data_dir))
    assert total == 35
    assert flagged / total >= 0.9


def test_injection_false_positives_on_xstest_safe(data_dir: Path) -> None:
    flagged, total = flag_rate(xstest_prompts(data_dir, "safe"))
    assert total == 127
    assert flagged / total <= 0.03


def test_real_prompts_are_never_garbage(data_dir: Path) -> None:
    prompts = (
        giskard_prompts(data_dir) + xstest_prompts(data_dir, "safe") + xstest_prompts(data_dir, "unsafe")
    )
    rejected = [p for p in prompts if not check_garbage(p, InputPolicy()).passed]
    assert rejected == []


# (precision floor, recall floor) per kind; recall None where the gold labels are not comparable.
PII_FLOORS: dict[PiiKind, tuple[float, float | None]] = {
    "EMAIL": (0.95, 0.95),
    "PHONE": (0.90, 0.85),
    "CREDIT_CARD": (0.95, 0.95),
    "IBAN": (0.90, 0.90),
    "US_SSN": (0.90, 0.85),
    "IP_ADDRESS": (0.80, 0.80),
    "DATE_OF_BIRTH": (0.90, None),  # the set labels every date as DATE_TIME
    "LOCATION": (0.95, 0.70),  # street addresses and cued places only, without a model
}


def test_pii_precision_and_recall_on_presidio(data_dir: Path) -> None:
    report = evaluate_pii(presidio_examples(presidio_records(data_dir)), find_pii)
    below = []
    for kind, (min_precision, min_recall) in PII_FLOORS.items():
        s = report.kinds[kind]
        assert s.predicted > 0, f"{kind}: nothing detected"
        if s.precision < min_precision:
            below.append(f"{kind} precision {s.precision:.3f} < {min_precision}")
        if min_recall is not None and s.recall < min_recall:
            below.append(f"{kind} recall {s.recall:.3f} < {min_recall}")
    assert below == []


# F1 floors (overlap) on the validation half, whose templates the rules were not tuned on.
NAME_FLOORS: dict[PiiKind, float] = {"PERSON": 0.72, "LOCATION": 0.85, "ORGANIZATION": 0.35}


@pytest.mark.model
def test_names_with_the_entity_model_on_the_validation_half(data_dir: Path) -> None:
    from ragbus.shields.adapters.spacy_ner import SpacyRecognizer
    from ragbus.shields.detection import PiiDetector

    halves = split_examples(presidio_examples(presidio_records(data_dir)))
    assert (len(halves["tune"]), len(halves["validation"])) == (402, 348)
    report = evaluate_pii(halves["validation"], PiiDetector(SpacyRecognizer()).find)
    scores = {kind: round(report.kinds[kind].f1, 3) for kind in NAME_FLOORS}
    assert all(scores[k] >= floor for k, floor in NAME_FLOORS.items()), scores
    for kind in ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN"):
        assert report.kinds[kind].f1 >= 0.95, (kind, report.kinds[kind])


@pytest.mark.scifact
def test_scientific_claims_are_neither_injections_nor_garbage(data_dir: Path) -> None:
    """809 SciFact claims: real, terse, full of numbers and symbols; none may be rejected."""
    path = data_dir / "scifact" / "train-queries.jsonl"
    claims = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    flagged, total = flag_rate(claims)
    assert total == 809
    assert flagged <= 4
    assert [c for c in claims if not check_garbage(c, InputPolicy()).passed] == []
