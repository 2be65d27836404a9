"""Routing: is a chat tier worth calling for a question tier 0 did not answer?

The rule alone calls the next tier for every question tier 0 rejects, and on a small local model many
of those calls buy an answer the checks then throw away (the cascade keeps tier 0's quotes), at
seconds each. A `Router` predicts, from what is known before the call (retrieval scores, how much of
the question tier 0's quotes, the best hit and the sources cover, the question's shape), the chance
that the tier's answer is kept: its benefit. The cascade calls the tier only when that is at least the
tier's `min_benefit`; otherwise it keeps tier 0's answer and the attempt says why.

A router is a logistic regression over `FEATURES`, fitted (`fit`) on the per-question records of
`bench/cascade.py`, where the tier answers every question and each answer is checked and scored, and
kept as a JSON file (`load`). It belongs to one model, prompt and kind of question: another model needs
its own (run the benchmark with it). None is used unless configured, and none ships with ragbus: the
one the benchmark fits is fitted on SciFact's claims, which are for evaluation only (CC BY-NC), so it
measures the method and is not for a deployment (docs/cascade.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragbus.orchestrator.extractive import ExtractiveAnswer
from ragbus.orchestrator.text import content_terms, non_lookup_trigger, word_count
from ragbus.vectors.ports import Hit

# What the router sees, all known before a model is called. Scores are cosine similarities (MiniLM).
FEATURES: tuple[str, ...] = (
    "top_score",  # the best hit's score
    "score_gap",  # best minus second best: one clear source, or several alike
    "mean_score",  # of the hits kept
    "hits",  # how many were kept (top_k at most)
    "coverage",  # share of the question's content words tier 0's quotes contain
    "source_coverage",  # ... that the sources contain anywhere (an answer restating them is supported)
    "top_coverage",  # ... that the best hit contains
    "quoted",  # 1 when tier 0 found a sentence to quote at all
    "non_lookup",  # 1 for why / how / explain questions, which quoting cannot answer
    "question_words",  # log(1 + words)
    "source_words",  # log(1 + words of the sources), what the model will read
    "question_mark",  # 1 for a question, 0 for a statement (a claim to check, an instruction)
)


def features(question: str, hits: Sequence[Hit], extractive: ExtractiveAnswer) -> dict[str, float]:
    scores = [h.score for h in hits]
    asked = set(extractive.question_terms)
    in_hits = [set(content_terms(h.text)) & asked for h in hits]

    def share(found: set[str]) -> float:
        return len(found) / len(asked) if asked else 0.0

    return {
        "top_score": scores[0] if scores else 0.0,
        "score_gap": scores[0] - scores[1] if len(scores) > 1 else (scores[0] if scores else 0.0),
        "mean_score": sum(scores) / len(scores) if scores else 0.0,
        "hits": float(len(hits)),
        "coverage": extractive.coverage,
        "source_coverage": share(set().union(*in_hits)),
        "top_coverage": share(in_hits[0]) if in_hits else 0.0,
        "quoted": 1.0 if extractive.text else 0.0,
        "non_lookup": 1.0 if non_lookup_trigger(question) else 0.0,
        "question_words": math.log1p(word_count(question)),
        "source_words": math.log1p(sum(word_count(h.text) for h in hits)),
        "question_mark": 1.0 if question.rstrip().endswith("?") else 0.0,
    }


@dataclass(frozen=True, slots=True)
class Router:
    """A fitted logistic regression: benefit = sigmoid(bias + Σ weight · (x - mean) / scale)."""

    name: str  # what it was trained for: model, prompt, data
    weights: Mapping[str, float]
    bias: float
    mean: Mapping[str, float]
    scale: Mapping[str, float]
    min_benefit: float = 0.5  # the operating point the benchmark chose (a tier may override it)
    measured: Mapping[str, Any] = field(default_factory=dict)  # the benchmark's figures at training

    def benefit(self, x: Mapping[str, float]) -> float:
        z = self.bias + sum(
            w * (x.get(f, 0.0) - self.mean.get(f, 0.0)) / (self.scale.get(f) or 1.0)
            for f, w in self.weights.items()
        )
        return 1 / (1 + math.exp(-max(min(z, 40.0), -40.0)))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Router:
        raw = json.loads(text)
        return cls(
            name=str(raw["name"]),
            weights={str(k): float(v) for k, v in raw["weights"].items()},
            bias=float(raw["bias"]),
            mean={str(k): float(v) for k, v in raw["mean"].items()},
            scale={str(k): float(v) for k, v in raw["scale"].items()},
            min_benefit=float(raw.get("min_benefit", 0.5)),
            measured=dict(raw.get("measured", {})),
        )


def load(ref: str) -> Router:
    """A router from its JSON file (`bench/cascade.py --router-out`)."""
    path = Path(ref)
    if not path.is_file():
        raise ValueError(f"no router file {ref!r} (write one with bench/cascade.py --router-out)")
    return Router.from_json(path.read_text(encoding="utf-8"))


def fit(
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[bool],
    *,
    name: str,
    l2: float = 1.0,
    names: Sequence[str] = FEATURES,
) -> Router:
    """Logistic regression by Newton's method on standardised features, with an L2 penalty `l2` on the
    weights (not the bias): a few hundred labelled questions, ten features, converged in a few steps."""
    import numpy as np

    x = np.array([[r.get(f, 0.0) for f in names] for r in rows], dtype=np.float64)
    y = np.array(labels, dtype=np.float64)
    if len(set(labels)) < 2:
        raise ValueError("fitting a router needs answers that were kept and answers that were not")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    penalty = np.diag([0.0] + [l2] * len(names))
    w = np.zeros(z.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-(z @ w)))
        grad = z.T @ (p - y) + penalty @ w
        hess = (z * (p * (1 - p))[:, None]).T @ z + penalty + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Router(
        name=name,
        weights={f: round(float(v), 6) for f, v in zip(names, w[1:], strict=True)},
        bias=round(float(w[0]), 6),
        mean={f: round(float(v), 6) for f, v in zip(names, mean, strict=True)},
        scale={f: round(float(v), 6) for f, v in zip(names, scale, strict=True)},
    )
