"""Scoring the guard's detectors on labelled reference data (the evaluation test and `bench/guard_eval.py`).

Not used by the service. Readers take the reference data directory (found by `ragbus.common.refdata`:
`RAGBUS_DATA_DIR`, or ../shared/data; see shared/data/README.md): Giskard's prompt injections (all
attacks), XSTest (safe prompts that look unsafe, and unsafe requests, which are harmful but not
injections), and presidio-research's synthetic PII sentences with character spans.

PII (`evaluate_pii`) is scored span by span, per kind, two ways:
- *overlap* (the primary figure): a predicted span is a true positive when it overlaps a gold span of
  the same kind, and a gold span is found when a predicted span of its kind overlaps it. A redaction
  that hides "Faina D. Yefremova's" where the gold span is "Faina D. Yefremova" did its job, and the
  set's gold addresses are often cut into pieces ("Puruntie 82", "28245", "Apt. 595") that one predicted
  span covers;
- *exact*: the same kind, start and end.
presidio-research's types map to ours (`PRESIDIO_TYPES`): STREET_ADDRESS and GPE are both LOCATION;
TITLE, AGE, NRP, ZIP_CODE, DOMAIN_NAME and US_DRIVER_LICENSE have no kind of ours and are not scored.
DATE_OF_BIRTH is compared with the set's DATE_TIME spans, which label every date and time ("founded in
1977", "Monday"): its precision is meaningful, its recall is not (`RECALL_NOT_COMPARABLE`).

Tuning and validation: `split_of` puts every sentence of one presidio template in the same half (a
hash of the template id), so rules tuned on the "tune" half are measured on sentences built from
templates they have never seen (the "validation" half).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from ragbus.guard.input_checks import check_injection
from ragbus.shields.pii import ALL_PII_KINDS, PiiKind

# presidio-research entity type -> the kind of ours it is scored as.
PRESIDIO_TYPES: dict[str, PiiKind] = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "DATE_TIME": "DATE_OF_BIRTH",
    "PERSON": "PERSON",
    "STREET_ADDRESS": "LOCATION",
    "GPE": "LOCATION",
    "ORGANIZATION": "ORGANIZATION",
}
# Kinds whose gold spans are a wider class than the kind (every date is not a date of birth).
RECALL_NOT_COMPARABLE: frozenset[str] = frozenset({"DATE_OF_BIRTH"})


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


def flag_rate(prompts: Iterable[str], threshold: float = 0.5) -> tuple[int, int]:
    """(flagged, total): how many prompts the injection patterns fail."""
    results = [not check_injection(p, threshold).passed for p in prompts]
    return sum(results), len(results)


# --- PII, span by span ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoldSpan:
    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class PiiExample:
    """A text and its labelled spans (kinds of ours); `group` is what the split hashes (a template id)."""

    text: str
    spans: tuple[GoldSpan, ...]
    group: str = ""


class Located(Protocol):
    """A predicted span: what `ragbus.shields` detectors return."""

    @property
    def kind(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


Split = Literal["tune", "validation"]


def presidio_examples(records: Iterable[dict[str, Any]]) -> list[PiiExample]:
    """presidio-research records as examples, their entity types mapped to ours (others dropped)."""
    out = []
    for record in records:
        spans = tuple(
            GoldSpan(PRESIDIO_TYPES[s["entity_type"]], s["start_position"], s["end_position"])
            for s in record["spans"]
            if s["entity_type"] in PRESIDIO_TYPES
        )
        group = record.get("template_id")
        out.append(PiiExample(record["full_text"], spans, "" if group is None else f"template:{group}"))
    return out


def split_of(example: PiiExample) -> Split:
    """The half an example belongs to: a hash of its group (else its text), stable across runs."""
    key = example.group or example.text
    return "tune" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "validation"


def split_examples(examples: Iterable[PiiExample]) -> dict[Split, list[PiiExample]]:
    halves: dict[Split, list[PiiExample]] = {"tune": [], "validation": []}
    for example in examples:
        halves[split_of(example)].append(example)
    return halves


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def _f1(precision: float, recall: float) -> float:
    if math.isnan(precision) or math.isnan(recall) or precision + recall == 0:
        return math.nan if math.isnan(precision) or math.isnan(recall) else 0.0
    return 2 * precision * recall / (precision + recall)


@dataclass
class SpanCounts:
    """One kind's counts. Overlap: `matched` predicted spans overlap a gold span, `found` gold spans are
    overlapped by a prediction. Exact: `exact` predicted spans have a gold span's very offsets."""

    kind: str
    predicted: int = 0
    gold: int = 0
    matched: int = 0
    found: int = 0
    exact: int = 0

    @property
    def precision(self) -> float:
        return _ratio(self.matched, self.predicted)

    @property
    def recall(self) -> float:
        return _ratio(self.found, self.gold)

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall) if self.predicted else (0.0 if self.gold else math.nan)

    @property
    def exact_precision(self) -> float:
        return _ratio(self.exact, self.predicted)

    @property
    def exact_recall(self) -> float:
        return _ratio(self.exact, self.gold)

    @property
    def exact_f1(self) -> float:
        if not self.predicted:
            return 0.0 if self.gold else math.nan
        return _f1(self.exact_precision, self.exact_recall)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class PiiReport:
    """Span-level scores per kind over a set of texts, and the detector's time per text."""

    kinds: dict[str, SpanCounts]
    texts: int
    latencies_ms: tuple[float, ...] = field(default=(), repr=False)

    @property
    def latency_p50_ms(self) -> float:
        return _percentile(self.latencies_ms, 0.5)

    @property
    def latency_p95_ms(self) -> float:
        return _percentile(self.latencies_ms, 0.95)

    def rows(self) -> list[dict[str, object]]:
        """One plain row per kind (for printing or JSON)."""

        def r(x: float) -> float:
            return round(x, 4)

        return [
            {"kind": c.kind, "gold": c.gold, "predicted": c.predicted, "precision": r(c.precision),
             "recall": None if c.kind in RECALL_NOT_COMPARABLE else r(c.recall),
             "f1": None if c.kind in RECALL_NOT_COMPARABLE else r(c.f1),
             "exact_precision": r(c.exact_precision),
             "exact_recall": None if c.kind in RECALL_NOT_COMPARABLE else r(c.exact_recall)}
            for c in self.kinds.values()
        ]  # fmt: skip


def evaluate_pii(
    examples: Iterable[PiiExample],
    detect: Callable[[str], Sequence[Located]],
    kinds: Collection[str] = ALL_PII_KINDS,
) -> PiiReport:
    """Score `detect` (a text in, its spans out) against the examples' gold spans, per kind."""
    counts = {k: SpanCounts(k) for k in kinds}
    latencies: list[float] = []
    n = 0
    for example in examples:
        n += 1
        started = time.perf_counter()
        predicted = detect(example.text)
        latencies.append((time.perf_counter() - started) * 1000)
        for kind, c in counts.items():
            gold = [(s.start, s.end) for s in example.spans if s.kind == kind]
            mine = [(s.start, s.end) for s in predicted if s.kind == kind]
            c.gold += len(gold)
            c.predicted += len(mine)
            c.matched += sum(any(a < d and c_ < b for c_, d in gold) for a, b in mine)
            c.found += sum(any(a < d and c_ < b for a, b in mine) for c_, d in gold)
            c.exact += len(set(mine) & set(gold))
    return PiiReport(kinds=counts, texts=n, latencies_ms=tuple(latencies))


# --- prompts: the input checks as the service runs them ----------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelledPrompt:
    text: str
    positive: bool  # an attack or a harmful request: the guard should stop (or flag) it


@dataclass
class Rates:
    """How often a check fired on positives and on negatives (fired: flagged, redacted or blocked)."""

    name: str
    true_positives: int = 0
    false_positives: int = 0
    positives: int = 0
    negatives: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def recall(self) -> float:
        return _ratio(self.true_positives, self.positives)

    @property
    def false_positive_rate(self) -> float:
        return _ratio(self.false_positives, self.negatives)

    @property
    def precision(self) -> float:
        return _ratio(self.true_positives, self.true_positives + self.false_positives)

    def row(self) -> dict[str, object]:
        return {
            "check": self.name,
            "recall": round(self.recall, 4),
            "precision": round(self.precision, 4),
            "false_positive_rate": round(self.false_positive_rate, 4),
            "positives": self.positives,
            "negatives": self.negatives,
            "p50_ms": round(_percentile(self.latencies_ms, 0.5), 3),
            "p95_ms": round(_percentile(self.latencies_ms, 0.95), 3),
        }


@dataclass(frozen=True)
class PromptReport:
    """Per check (and `overall`: blocked by any) how the input checks did on labelled prompts."""

    checks: dict[str, Rates]

    def rows(self) -> list[dict[str, object]]:
        return [r.row() for r in self.checks.values()]


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """Rows of dicts as aligned plain-text columns (the first row's keys are the header)."""
    if not rows:
        return "(nothing)"
    columns = list(rows[0])
    cells = [[c, *("" if r[c] is None else str(r[c]) for r in rows)] for c in columns]
    widths = [max(len(x) for x in col) for col in cells]
    return "\n".join(
        "  ".join(col[i].ljust(w) for col, w in zip(cells, widths, strict=True)) for i in range(len(rows) + 1)
    )


def evaluate_prompts(
    prompts: Iterable[LabelledPrompt], check: Callable[[str], Any], *, count_flags: bool = False
) -> PromptReport:
    """Run `check` (a question in, an `InputResult` out: the guard's own input checks) over labelled
    prompts. A category "fires" when its decision is `block` (and, with `count_flags`, `flag` or
    `redact` too); `overall` fires when the question is rejected. Latency: the whole check per prompt
    (`overall`), and each category's scanners."""
    rates: dict[str, Rates] = {"overall": Rates("overall")}
    fires = {"block", "flag", "redact"} if count_flags else {"block"}
    for prompt in prompts:
        started = time.perf_counter()
        result = check(prompt.text)
        took = (time.perf_counter() - started) * 1000
        outcomes: list[tuple[str, bool, float | None]] = [("overall", not result.passed, took)]
        for v in result.verdicts:
            scanners = v.details.get("scanners")
            ms = sum(s["ms"] for s in scanners.values()) if scanners else None
            outcomes.append(
                (v.check, v.details.get("decision", "pass" if v.passed else "block") in fires, ms)
            )
        for name, fired, ms in outcomes:
            r = rates.setdefault(name, Rates(name))
            if ms is not None:
                r.latencies_ms.append(ms)
            if prompt.positive:
                r.positives += 1
                r.true_positives += fired
            else:
                r.negatives += 1
                r.false_positives += fired
    return PromptReport(rates)


POSITIVE_LABELS = frozenset(
    {"1", "true", "attack", "injection", "jailbreak", "harmful", "unsafe", "malicious"}
)


def read_labelled(path: Path, text_column: str = "text", label_column: str = "label") -> list[LabelledPrompt]:
    """A CSV or JSONL file with a text and a label column; labels in POSITIVE_LABELS are positives, a
    file with no label column is all positives (an attack set)."""
    rows: list[dict[str, Any]]
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    if rows and text_column not in rows[0]:
        raise ValueError(f"{path}: no column {text_column!r} (columns: {', '.join(rows[0])})")
    return [
        LabelledPrompt(
            str(row[text_column]),
            str(row.get(label_column, "attack")).strip().lower() in POSITIVE_LABELS,
        )
        for row in rows
    ]
