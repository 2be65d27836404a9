"""Scoring the guard's detectors on labelled reference data (the evaluation test and `bench/guard_eval.py`).

Not used by the service. Readers take the reference data directory (found by `ragbus.common.refdata`:
`RAGBUS_DATA_DIR`, or ../shared/data; see shared/data/README.md): Giskard's prompt injections (all
attacks), XSTest (safe prompts that look unsafe, and unsafe requests, which are harmful but not
injections), and presidio-research's synthetic PII sentences with character spans.

PII is scored span by span with *overlap* matching: a predicted span is a true positive when it
overlaps a gold span of the same kind; a gold span is found when a predicted span of its kind overlaps
it. Exact matches (same start and end) are counted too. DATE_OF_BIRTH is compared with the set's
DATE_TIME spans, which label every date and time: its precision is meaningful, its recall is not.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragbus.guard.input_checks import check_injection
from ragbus.guard.settings import InputPolicy
from ragbus.shields.pii import ALL_PII_KINDS, PiiKind, find_pii

# Our kind -> the presidio-research entity type it is scored against.
GOLD_KIND: dict[PiiKind, str] = {
    "EMAIL": "EMAIL_ADDRESS",
    "PHONE": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "DATE_OF_BIRTH": "DATE_TIME",
}


def giskard_prompts(data_dir: Path) -> list[str]:
    with (data_dir / "guard" / "giskard-prompt-injections.csv").open(encoding="utf-8", newline="") as f:
        return [row["prompt"] for row in csv.DictReader(f)]


def xstest_prompts(data_dir: Path, label: str) -> list[str]:
    """XSTest prompts labelled `safe` or `unsafe`."""
    with (data_dir / "guard" / "xstest-dev.csv").open(encoding="utf-8", newline="") as f:
        return [row["prompt"] for row in csv.DictReader(f) if row["label"] == label]


def presidio_records(data_dir: Path) -> list[dict[str, Any]]:
    with (data_dir / "pii" / "presidio-synth-dev.json").open(encoding="utf-8") as f:
        records: list[dict[str, Any]] = json.load(f)
    return records


def flag_rate(prompts: Iterable[str], policy: InputPolicy | None = None) -> tuple[int, int]:
    """(flagged, total): how many prompts the injection check fails."""
    policy = policy or InputPolicy()
    results = [not check_injection(p, policy).passed for p in prompts]
    return sum(results), len(results)


@dataclass
class KindScore:
    kind: PiiKind
    predicted: int = 0
    true_positives: int = 0  # predicted spans overlapping a gold span of the kind
    exact: int = 0  # predicted spans with the gold span's exact offsets
    gold: int = 0
    found: int = 0  # gold spans overlapped by a predicted span of the kind

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else float("nan")

    @property
    def recall(self) -> float:
        return self.found / self.gold if self.gold else float("nan")


def score_pii(
    records: Iterable[dict[str, Any]], kinds: Iterable[PiiKind] = ALL_PII_KINDS
) -> dict[PiiKind, KindScore]:
    kinds = tuple(kinds)
    scores: dict[PiiKind, KindScore] = {k: KindScore(k) for k in kinds}
    for record in records:
        text: str = record["full_text"]
        predicted = find_pii(text, kinds)
        for kind in kinds:
            gold = [
                (s["start_position"], s["end_position"])
                for s in record["spans"]
                if s["entity_type"] == GOLD_KIND[kind]
            ]
            mine = [(s.start, s.end) for s in predicted if s.kind == kind]
            score = scores[kind]
            score.gold += len(gold)
            score.predicted += len(mine)
            score.true_positives += sum(any(a < d and c < b for c, d in gold) for a, b in mine)
            score.exact += sum((a, b) in gold for a, b in mine)
            score.found += sum(any(a < d and c < b for a, b in mine) for c, d in gold)
    return scores
