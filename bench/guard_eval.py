"""The guard on the dev sets and on a held-out split of its training data, as the service runs it.

    python bench/guard_eval.py [--data DIR] [--heldout FILE] [--runs 5] [--limit N]

Prints, for each prompt set, the table `ragbus eval guard` prints (per check and overall: recall, precision,
false-positive rate, latency p50/p95), with the guard as configured by default (patterns, the learned
classifiers, the gibberish score, PII) beside the pattern layer alone (the baseline, side by side): Giskard's
injections, XSTest (safe prompts that only sound unsafe, and unsafe ones), SciFact's claims (ordinary
questions), the probes in libs/shields/training/probes (sets written to be scored, never trained on),
and the held-out validation split of the classifiers' training data
(.cache/shields-training/validation.jsonl, written by libs/shields/training/train_prompts.py --split-only),
overall, per source and per pair of hand-written twins held out whole. Then PII precision / recall / F1 per
kind on presidio-research's synthetic sentences (span overlap; exact-offset F1 beside it) on the half the
rules were tuned on and on the held-out half, patterns alone and with the named-entity model; the full input
scan's latency on a 300-token prompt on one core (median / p95, and each scanner's share); and throughput of
the output checks, median over runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragbus.common.events import AnswersDrafted, Cascade, Citation, RetrievedChunk
from ragbus.common.ids import record_id
from ragbus.common.refdata import require_data_dir
from ragbus.common.service import Clients
from ragbus.guard.app import open_scanners
from ragbus.guard.evaluation import (
    RECALL_NOT_COMPARABLE,
    LabelledPrompt,
    PiiReport,
    evaluate_pii,
    evaluate_prompts,
    format_table,
    giskard_prompts,
    presidio_examples,
    presidio_records,
    read_labelled,
    split_examples,
    xstest_prompts,
)
from ragbus.guard.input_checks import InputChecks, Scanners
from ragbus.guard.output_checks import check_output
from ragbus.guard.ports import InputResult
from ragbus.guard.settings import GuardSettings, OutputPolicy
from ragbus.shields.adapters.spacy_ner import SpacyRecognizer
from ragbus.shields.detection import PiiDetector
from ragbus.shields.pii import find_pii


def rate(flagged: int, total: int) -> str:
    return f"{flagged}/{total} = {flagged / total:.3f}" if total else "n/a"


def per_second(work: Callable[[], int], runs: int) -> tuple[float, float, float]:
    """(median, min, max) items per second over `runs` timed runs, after one warm-up."""
    work()
    speeds = []
    for _ in range(runs):
        start = time.perf_counter()
        n = work()
        speeds.append(n / (time.perf_counter() - start))
    return statistics.median(speeds), min(speeds), max(speeds)


def drafted_from(records: Sequence[dict[str, Any]]) -> list[AnswersDrafted]:
    """One grounded, cited answer per PII sentence: the output checks' typical input."""
    out = []
    for i, record in enumerate(records):
        chunk = record_id("bench", f"doc-{i}", "0", "h")
        out.append(
            AnswersDrafted(
                query_id=f"q{i}",
                question="What does the document say?",
                answer=f"{record['full_text']} [1]",
                citations=[Citation(n=1, doc_id=f"doc-{i}", chunk_id=chunk, quote=record["full_text"][:200])],
                retrieved=[RetrievedChunk(chunk_id=chunk, doc_id=f"doc-{i}", index=0, score=0.5)],
                cascade=Cascade(tier=0, reason="bench"),
            )
        )
    return out


def fmt(x: float | None) -> str:
    return "  n/a" if x is None or x != x else f"{x:5.2f}"


def print_pii(reports: dict[tuple[str, str], PiiReport]) -> None:
    """Per half and kind: precision / recall / F1 with span overlap, and exact-offset F1."""
    for half in ("tune", "validation"):
        print(f"-- {half} half: patterns only | patterns + entity model; P / R / F1 (exact-offset F1)")
        base, full = reports[(half, "patterns")], reports[(half, "+ model")]
        for kind in full.kinds:
            na = kind in RECALL_NOT_COMPARABLE
            cells = []
            for c in (base.kinds[kind], full.kinds[kind]):
                recall, f1, exact = (None, None, None) if na else (c.recall, c.f1, c.exact_f1)
                cells.append(f"{fmt(c.precision)} {fmt(recall)} {fmt(f1)} ({fmt(exact)})")
            print(f"{kind:14} gold {full.kinds[kind].gold:4d}   {cells[0]}  |  {cells[1]}")
        print(
            f"latency per sentence, ms p50 / p95: patterns {base.latency_p50_ms:.2f} / "
            f"{base.latency_p95_ms:.2f}, with the model {full.latency_p50_ms:.2f} / {full.latency_p95_ms:.2f}"
        )
    print("DATE_OF_BIRTH: precision against DATE_TIME spans; recall n/a (the set labels every date).")


def print_prompt_latency(data: Path, records: Sequence[dict[str, Any]], model: PiiDetector) -> None:
    """The detector on ~300-token prompts (what the input scan sees at most), one core, median of runs."""
    pii_text = " ".join(r["full_text"] for r in records[:40]).split()[:230]
    corpus = data / "scifact" / "corpus.jsonl"
    prose = (
        json.loads(corpus.open(encoding="utf-8").readline())["text"].split()[:230] if corpus.exists() else []
    )
    prompts = {
        "PII-dense, ~300 tokens": " ".join(pii_text),
        "SciFact abstract, ~300 tokens": " ".join(prose),
        "a plain question": "How does the cascade decide to call the model?",
    }
    print("\n== PII detector latency per prompt, ms (median / p95 of 30 runs, after a warm-up)")
    for name, prompt in prompts.items():
        if not prompt:
            continue
        for label, detect in (("patterns", find_pii), ("+ model", model.find)):
            detect(prompt)
            times = []
            for _ in range(30):
                started = time.perf_counter()
                detect(prompt)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            print(f"{name:32} {label:9} {statistics.median(times):6.2f} / {times[28]:6.2f}")


HELDOUT = Path(__file__).resolve().parents[1] / ".cache" / "shields-training" / "validation.jsonl"
TRAINING = Path(__file__).resolve().parents[1] / "libs" / "shields" / "training"


def prompt_sets(data: Path, heldout: Path, limit: int | None) -> dict[str, list[LabelledPrompt]]:
    sets = {
        "giskard injections (dev)": [LabelledPrompt(t, True) for t in giskard_prompts(data)],
        "xstest safe + unsafe (dev)": [LabelledPrompt(t, False) for t in xstest_prompts(data, "safe")]
        + [LabelledPrompt(t, True) for t in xstest_prompts(data, "unsafe")],
    }
    claims = data / "scifact" / "train-queries.jsonl"
    if claims.exists():
        sets["scifact claims (ordinary questions)"] = [
            LabelledPrompt(json.loads(line)["text"], False) for line in claims.read_text("utf-8").splitlines()
        ]
    sys.path.insert(0, str(TRAINING))
    from sources import PROBES  # sets the classifiers never train on (probes/README.md)

    for probe in sorted(PROBES.glob("*.jsonl")):
        sets[f"probe {probe.stem} (never trained on)"] = read_labelled(probe)
    if heldout.exists():
        sets["held-out split of the training data"] = read_labelled(heldout)[:limit]
    return sets


def print_heldout_by_source(heldout: Path, stopped_by: dict[str, bool], limit: int | None) -> None:
    """Per source of the held-out split: how many the guard stops (positives) or stops wrongly, from
    the decisions the run over the whole split recorded (`stopped_by`: question -> stopped)."""
    rows = [json.loads(line) for line in heldout.read_text(encoding="utf-8").splitlines()][:limit]
    by_source: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        by_source.setdefault((r["source"], int(r["label"])), []).append(r)
    table: list[dict[str, object]] = []
    for (source, label), members in sorted(by_source.items()):
        stopped = sum(stopped_by[r["text"]] for r in members)
        table.append(
            {
                "source": source,
                "label": "attack/harmful" if label == 1 else "safe",
                "n": len(members),
                "stopped": stopped,
                "rate": round(stopped / len(members), 3),
            }
        )
    print(format_table(table))


def print_heldout_twins(heldout: Path, stopped_by: dict[str, bool], limit: int | None) -> None:
    """The hand-written twins (a harmful request and its safe look-alike, line for line) whose two lines
    are both in the held-out split, per file and kind: harmful stopped, safe stopped, and pairs told
    apart (the harmful line stopped and its twin let through)."""
    sys.path.insert(0, str(TRAINING))
    from sources import PAIRED_SETS, kind_lines, twin_pairs

    rows = [json.loads(line) for line in heldout.read_text(encoding="utf-8").splitlines()][:limit]
    held = {r["text"] for r in rows}
    kind_of = {
        line: f"{unsafe.split('-')[0]}/{kind}"
        for unsafe, _ in PAIRED_SETS
        for kind, line in kind_lines(unsafe)
    }
    by_kind: dict[str, list[tuple[bool, bool]]] = {}
    for harmful, safe in twin_pairs():
        if harmful in held and safe in held:
            by_kind.setdefault(kind_of[harmful], []).append((stopped_by[harmful], stopped_by[safe]))
    by_kind["all"] = [p for pairs in list(by_kind.values()) for p in pairs]
    table: list[dict[str, object]] = [
        {
            "twins": kind,
            "pairs": len(pairs),
            "harmful stopped": round(sum(h for h, _ in pairs) / len(pairs), 3),
            "safe stopped": round(sum(s for _, s in pairs) / len(pairs), 3),
            "told apart": round(sum(h and not s for h, s in pairs) / len(pairs), 3),
        }
        for kind, pairs in sorted(by_kind.items())
        if pairs
    ]
    print(format_table(table))


def print_scan_latency(data: Path, checks: InputChecks) -> None:
    """The full input scan of a ~300-token prompt, one core: median / p95 of 30 runs, per scanner."""
    corpus = data / "scifact" / "corpus.jsonl"
    words = json.loads(corpus.open(encoding="utf-8").readline())["text"].split() if corpus.exists() else []
    prompt = " ".join((words * 2)[:230])  # ~300 word pieces
    checks.check(prompt)
    totals: list[float] = []
    per_scanner: dict[str, list[float]] = {}
    for _ in range(30):
        started = time.perf_counter()
        result = checks.check(prompt)
        totals.append((time.perf_counter() - started) * 1000)
        for v in result.verdicts:
            for name, s in (v.details.get("scanners") or {}).items():
                per_scanner.setdefault(f"{v.check}/{name}", []).append(s["ms"])
    totals.sort()
    print(f"\n== full input scan, ~300-token prompt ({len(prompt)} chars), one torch thread, 30 runs")
    print(f"total       p50 {statistics.median(totals):6.2f} ms   p95 {totals[28]:6.2f} ms")
    for name, ms in per_scanner.items():
        ms.sort()
        print(f"{name:28} p50 {statistics.median(ms):6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="reference data (default: RAGBUS_DATA_DIR or ../shared/data)"
    )
    parser.add_argument("--heldout", type=Path, default=HELDOUT, help="held-out split (JSONL text,label)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many held-out prompts")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data: Path = args.data or require_data_dir()
    import torch

    torch.set_num_threads(1)  # the figures are per core

    settings = GuardSettings()
    clients = Clients()
    scanners = asyncio.run(open_scanners(settings, clients))
    guard = InputChecks(settings.input_policy(), settings.policy_set(), scanners)
    baseline = InputChecks(settings.input_policy(), settings.policy_set(), Scanners(pii=scanners.pii))
    if not args.heldout.exists():
        make = "python libs/shields/training/train_prompts.py --split-only"
        print(f"(no held-out split at {args.heldout}: {make})")
    stopped_by: dict[str, bool] = {}  # every question's decision, for the per-source table

    def check(text: str) -> InputResult:
        result = guard.check(text)
        stopped_by[text] = not result.passed
        return result

    for name, prompts in prompt_sets(data, args.heldout, args.limit).items():
        positives = sum(p.positive for p in prompts)
        print(f"\n== {name}: {len(prompts)} prompts, {positives} attacks or harmful requests")
        print("-- the guard as configured (patterns, classifiers, gibberish, PII)")
        print(format_table(evaluate_prompts(prompts, check).rows()))
        base = evaluate_prompts(prompts, baseline.check).checks["overall"]
        print(
            f"-- baseline, patterns alone: overall recall {base.recall:.3f}, "
            f"false-positive rate {base.false_positive_rate:.3f}"
        )
    if args.heldout.exists():
        print("\n== held-out split per source (the guard as configured)")
        print_heldout_by_source(args.heldout, stopped_by, args.limit)
        print("\n== held-out twin pairs (both lines in the split; the guard as configured)")
        print_heldout_twins(args.heldout, stopped_by, args.limit)
    print_scan_latency(data, guard)

    records = presidio_records(data)
    halves = split_examples(presidio_examples(records))
    model = PiiDetector(SpacyRecognizer())
    model.find("Warm up: Ada Lovelace lived in London.")
    reports = {
        (half, name): evaluate_pii(halves[half], detect)
        for half in ("tune", "validation")
        for name, detect in (("patterns", find_pii), ("+ model", model.find))
    }
    print(
        f"\n== PII, presidio synthetic: {len(halves['tune'])} sentences to tune on, "
        f"{len(halves['validation'])} held out (other templates)"
    )
    print_pii(reports)
    print_prompt_latency(data, records, model)

    print(f"\n== output checks throughput, one process, median of {args.runs} runs (min-max)")
    answers = drafted_from(records)
    out_policy = OutputPolicy()

    def outputs() -> int:
        for d in answers:
            check_output(d, out_policy)
        return len(answers)

    def outputs_with_model() -> int:
        for d in answers:
            check_output(d, out_policy, model)
        return len(answers)

    for name, work, note in (
        ("output checks", outputs, f"{len(answers)} cited answers (PII sentences), patterns only"),
        ("output checks", outputs_with_model, f"{len(answers)} cited answers, with the entity model"),
    ):
        median, low, high = per_second(work, args.runs)
        print(f"{name:14} {median:8.0f}/s ({low:.0f}-{high:.0f})  {note}")
    asyncio.run(clients.aclose())


if __name__ == "__main__":
    main()
