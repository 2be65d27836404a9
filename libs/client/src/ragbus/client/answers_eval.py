"""`ragbus eval answers DATASET`: answer quality, cost and latency of the running stack, per tier.

Every labelled question is asked once per configuration (`cascade`: the stack's own choice of tier;
`0`, `1`, …: that tier alone, `min_tier = max_tier = k`), so the tiers are compared on the same set.
Each request is scored on what `answers.completed` says:

- correctness against the gold label: a verdict (SUPPORT / CONTRADICT / NOINFO, as SciFact labels
  claims) read from the answer's opening words (`parse_verdict`), or, for a gold answer text, the share
  of its content words the answer contains (correct from `ANSWER_RECALL_CORRECT`);
- citation precision (cited documents that are gold) and recall (gold documents cited);
- groundedness: the guard's `output.support` score, the share of the answer's sentences its cited
  sources support;
- the tier that answered, tokens, cost, and the round trip and per-stage latency.

Questions come from a BEIR folder (gold documents from its qrels; labels from `<split>-claims.jsonl`
or `claims.jsonl` beside it, SciFact's format), indexed through the stack as `ragbus eval retrieval`
does, or from a JSONL/CSV file asked against a tenant that already holds the documents.
"""

from __future__ import annotations

import asyncio
import csv
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragbus.client.client import RagbusClient
from ragbus.client.evaluation import BeirDataset, read_jsonl
from ragbus.client.retrieval_eval import percentile
from ragbus.common.events import AnswersCompleted, QueryOptions

Label = Literal["SUPPORT", "CONTRADICT", "NOINFO"]
LABELS: tuple[Label, ...] = ("SUPPORT", "CONTRADICT", "NOINFO")
# A claim is asked as a question whose answer opens with a verdict.
CLAIM_TEMPLATE = "Do the sources support or contradict this claim? {text}"
ANSWER_RECALL_CORRECT = 0.8
SUPPORT_CHECK = "output.support"


@dataclass(frozen=True, slots=True)
class LabelledQuestion:
    qid: str
    text: str
    gold_docs: frozenset[str] = frozenset()
    answer: str | None = None  # a gold answer text
    label: Label | None = None  # a gold verdict on a claim

    def question(self, claim_template: str = CLAIM_TEMPLATE) -> str:
        return claim_template.format(text=self.text) if self.label is not None else self.text


# --- loading -------------------------------------------------------------------------------------------


def claim_label(evidence: Iterable[dict[str, Any]]) -> Label | None:
    """SciFact's verdict of a claim: every evidence label agrees, or no evidence (NOINFO); mixed: None."""
    labels = {str(e.get("label", "")).upper() for e in evidence}
    if not labels:
        return "NOINFO"
    if len(labels) == 1 and (label := labels.pop()) in ("SUPPORT", "CONTRADICT"):
        return label  # type: ignore[return-value]
    return None


def questions_from_beir(folder: Path, data: BeirDataset, split: str) -> list[LabelledQuestion]:
    """The split's judged queries, gold documents from the qrels, labels from a claims file if any."""
    labels: dict[str, Label] = {}
    for name in (f"{split}-claims.jsonl", "claims.jsonl"):
        path = folder / name
        if path.is_file():
            for row in read_jsonl(path):
                label = claim_label(row.get("evidence") or [])
                if label is not None:
                    labels[str(row.get("_id", row.get("id")))] = label
            break
    gold = {q: frozenset(d for d, rel in judged.items() if rel > 0) for q, judged in data.qrels.items()}
    return [
        LabelledQuestion(qid, text, gold.get(qid, frozenset()), None, labels.get(qid))
        for qid, text in data.queries.items()
    ]


def _doc_ids(value: Any) -> frozenset[str]:
    if value is None or value == "":
        return frozenset()
    if isinstance(value, str):
        return frozenset(v.strip() for v in re.split(r"[,;| ]+", value) if v.strip())
    return frozenset(str(v) for v in value)


def load_questions(path: Path) -> list[LabelledQuestion]:
    """Questions from JSONL or CSV: `question` (or `text`), optional `id`, `answer`, `label`
    (SUPPORT/CONTRADICT/NOINFO) and `doc_ids` (a list, or ids separated by commas or spaces)."""
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            rows: list[dict[str, Any]] = list(csv.DictReader(f))
    else:
        rows = list(read_jsonl(path))
    out = []
    for number, row in enumerate(rows, start=1):
        text = row.get("question") or row.get("text")
        if not text:
            raise ValueError(f"{path}, row {number}: no 'question' (or 'text') field")
        label = (row.get("label") or "").strip().upper() or None
        if label is not None and label not in LABELS:
            raise ValueError(f"{path}, row {number}: label {label!r} is not one of {', '.join(LABELS)}")
        out.append(
            LabelledQuestion(
                qid=str(row.get("id") or row.get("_id") or number),
                text=str(text),
                gold_docs=_doc_ids(row.get("doc_ids") or row.get("cited")),
                answer=row.get("answer") or None,
                label=label,
            )
        )
    return out


# --- scoring one answer --------------------------------------------------------------------------------

_NOINFO = re.compile(
    r"\b(?:not\s+enough|insufficient|no\s+(?:information|evidence|relevant)|do(?:es)?\s+not\s+(?:say|mention"
    r"|address|contain|provide)|don['’]t\s+know|cannot\s+(?:be\s+)?(?:determine|tell|say|answer|find)|can['’]t"
    r"\s+(?:determine|tell|say|answer|find)|unclear|neither\s+support"
    # "do not support or contradict", "does not support nor refute": neither way
    r"|do(?:es)?\s+not\s+(?:support|confirm)\w*\s+(?:or|nor)\s+(?:contradict|refute|disprove))",
    re.IGNORECASE,
)
_CONTRADICT = re.compile(
    # Not after a negation: "do not contradict the claim; they support it" supports.
    r"\b(?:(?<!not\s)(?<!n't\s)(?:contradict\w*|refute\w*|disprove\w*)|not\s+(?:supported|true|correct)"
    r"|do(?:es)?\s+not\s+support\w*|(?:is|are)\s+(?:false|incorrect|wrong)|false|incorrect)\b",
    re.IGNORECASE,
)
_SUPPORT = re.compile(r"\b(?:support\w*|confirm\w*|true|correct|consistent\s+with)\b", re.IGNORECASE)


_PRIORITY: dict[Label, int] = {"NOINFO": 0, "CONTRADICT": 1, "SUPPORT": 2}


def parse_verdict(answer: str, window: int = 200) -> Label | None:
    """The verdict an answer opens with: the earliest NOINFO, CONTRADICT or SUPPORT wording within its
    first `window` characters. At the same position an abstention wins over a negation, and a negation
    over a support ("no evidence supports", "not supported")."""
    head = answer[:window]
    found: list[tuple[int, int, Label]] = []
    patterns: tuple[tuple[Label, re.Pattern[str]], ...] = (
        ("NOINFO", _NOINFO),
        ("CONTRADICT", _CONTRADICT),
        ("SUPPORT", _SUPPORT),
    )
    for label, rx in patterns:
        if m := rx.search(head):
            found.append((m.start(), _PRIORITY[label], label))
    return min(found)[2] if found else None


_WORD = re.compile(r"[\w'’-]+")
_STOP = frozenset(
    {"a", "an", "the", "of", "to", "in", "on", "and", "or", "is", "are", "was", "were", "be", "by", "for",
     "with", "as", "at", "it", "its", "that", "this"}
)  # fmt: skip


def answer_recall(gold: str, answer: str) -> float:
    """The share of the gold answer's content words (lowercased) that the answer contains."""
    want = {w for w in _WORD.findall(gold.lower()) if w not in _STOP}
    if not want:
        return 0.0
    have = set(_WORD.findall(answer.lower()))
    return len(want & have) / len(want)


@dataclass(frozen=True, slots=True)
class Scored:
    """One request of one configuration, as scored."""

    qid: str
    config: str
    status: str
    tier: int | None
    round_trip_ms: float
    cost_usd: float
    prompt_tokens: int
    completion_tokens: int
    cited: tuple[str, ...]
    citation_precision: float | None  # None: nothing cited, or no gold documents
    citation_recall: float | None  # None: no gold documents
    groundedness: float | None  # the guard's support score; None when it judged no sentence
    verdict: Label | None
    correct: bool | None  # None: no gold label or answer
    stages_ms: dict[str, float] = field(default_factory=dict)
    reason: str | None = None


def score(question: LabelledQuestion, config: str, answer: AnswersCompleted, elapsed_ms: float) -> Scored:
    cascade = answer.cascade
    answered = answer.status == "answered"
    cited = tuple(dict.fromkeys(c.doc_id for c in answer.citations)) if answered else ()
    gold = question.gold_docs
    precision = (sum(d in gold for d in cited) / len(cited)) if gold and cited else None
    recall = (sum(d in cited for d in gold) / len(gold)) if gold else None
    support = next((v for v in answer.verdicts if v.check == SUPPORT_CHECK), None)
    verdict = parse_verdict(answer.answer) if answered else None
    correct: bool | None = None
    if question.label is not None:
        correct = verdict == question.label
    elif question.answer:
        correct = answered and answer_recall(question.answer, answer.answer) >= ANSWER_RECALL_CORRECT
    stages: dict[str, float] = {}
    for s in answer.stages:
        stages[s.stage] = stages.get(s.stage, 0.0) + s.ms
    return Scored(
        qid=question.qid,
        config=config,
        status=answer.status,
        tier=cascade.tier if cascade is not None and answered else None,
        round_trip_ms=elapsed_ms,
        cost_usd=sum(a.cost_usd for a in cascade.attempts) if cascade else 0.0,
        prompt_tokens=cascade.prompt_tokens if cascade else 0,
        completion_tokens=cascade.completion_tokens if cascade else 0,
        cited=cited,
        citation_precision=precision,
        citation_recall=recall,
        groundedness=support.score if support is not None and support.score is not None else None,
        verdict=verdict,
        correct=correct,
        stages_ms=stages,
        reason=answer.reason,
    )


# --- a configuration's figures, and the side-by-side table ---------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def summarise(config: str, scored: Sequence[Scored]) -> dict[str, Any]:
    """One configuration's figures over its requests."""
    status = Counter(s.status for s in scored)
    judged = [s for s in scored if s.correct is not None]
    latencies = [s.round_trip_ms for s in scored]
    return {
        "config": config,
        "requests": len(scored),
        "answered": status["answered"],
        "blocked": status["blocked"],
        "failed": status["failed"],
        "correct": _mean([float(bool(s.correct)) for s in judged]),
        "judged": len(judged),
        "verdicts": dict(Counter(s.verdict or "none" for s in judged)),
        "citation_precision": _mean(
            [s.citation_precision for s in scored if s.citation_precision is not None]
        ),
        "citation_recall": _mean([s.citation_recall for s in scored if s.citation_recall is not None]),
        "groundedness": _mean([s.groundedness for s in scored if s.groundedness is not None]),
        "tiers": {
            str(k): v for k, v in sorted(Counter(s.tier for s in scored if s.tier is not None).items())
        },
        "cost_usd": round(sum(s.cost_usd for s in scored), 6),
        "tokens": sum(s.prompt_tokens + s.completion_tokens for s in scored),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 1) if latencies else 0.0,
            "p95": round(percentile(latencies, 0.95), 1),
        },
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(summaries: Sequence[dict[str, Any]]) -> str:
    """The configurations side by side, one row each."""
    head = ("config", "answered", "blocked", "correct", "cit. P", "cit. R", "grounded", "tiers", "cost $",
            "p50 ms", "p95 ms")  # fmt: skip
    rows = [head]
    for s in summaries:
        tiers = " ".join(f"{k}:{v}" for k, v in s["tiers"].items()) or "-"
        rows.append((
            s["config"], f"{s['answered']}/{s['requests']}", str(s["blocked"]),
            f"{_fmt(s['correct'])} ({s['judged']})" if s["judged"] else "-",
            _fmt(s["citation_precision"]), _fmt(s["citation_recall"]), _fmt(s["groundedness"]), tiers,
            f"{s['cost_usd']:.4f}", f"{s['latency_ms']['p50']:.0f}", f"{s['latency_ms']['p95']:.0f}",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def options_for(config: str) -> QueryOptions:
    """`cascade`: the stack's defaults; a tier number k: that tier alone. Never the semantic cache: the
    configurations are measured, not an earlier run's answers."""
    if config == "cascade":
        return QueryOptions(cache=False)
    tier = int(config)
    return QueryOptions(min_tier=tier, max_tier=tier, cache=False)


def parse_configs(value: str) -> list[str]:
    configs = [c.strip() for c in value.split(",") if c.strip()]
    for c in configs:
        if c != "cascade" and not c.isdigit():
            raise ValueError(f"--tiers: {c!r} is neither a tier number nor 'cascade'")
    if not configs:
        raise ValueError("--tiers: name at least one tier or 'cascade'")
    return list(dict.fromkeys(configs))


async def run_config(
    client: RagbusClient,
    questions: Sequence[LabelledQuestion],
    config: str,
    *,
    concurrency: int,
    timeout: float,
    claim_template: str,
) -> list[Scored]:
    """Every question under one configuration, `concurrency` in flight."""
    options = options_for(config)
    gate = asyncio.Semaphore(concurrency)

    async def one(q: LabelledQuestion) -> Scored:
        async with gate:
            result = await client.ask(q.question(claim_template), options=options, timeout=timeout)
        return score(q, config, result.answer, result.elapsed_ms)

    return list(await asyncio.gather(*(one(q) for q in questions)))


async def evaluate_answers(
    client: RagbusClient,
    questions: Sequence[LabelledQuestion],
    configs: Sequence[str],
    *,
    concurrency: int = 1,
    timeout: float = 300.0,
    claim_template: str = CLAIM_TEMPLATE,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[list[dict[str, Any]], list[Scored]]:
    """Ask every question under every configuration, one configuration after the other (so that their
    latencies are not measured against each other); their summaries and every scored request."""
    every: list[Scored] = []
    summaries = []
    for config in configs:
        say(f"{config}: asking {len(questions)} questions ({concurrency} at a time) …")
        scored = await run_config(
            client, questions, config, concurrency=concurrency, timeout=timeout, claim_template=claim_template
        )
        every.extend(scored)
        summaries.append(summarise(config, scored))
    return summaries, every
