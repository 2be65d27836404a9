"""Guard detectors on the reference data, and how many checks a second one core runs.

    python bench/guard_eval.py [--data DIR] [--runs 5]

Prints: prompt-injection recall on Giskard's attacks; false-positive rate on XSTest's safe prompts
(benign questions that look unsafe); flag rate on XSTest's unsafe prompts (harmful requests, which are
not injections: the check is not meant to catch them); the same on SciFact's claims when present; PII
precision / recall / F1 per kind on presidio-research's synthetic sentences (span overlap; exact-offset
F1 beside it), on the half the rules were tuned on and on the held-out validation half (split by
template, see ragbus.guard.evaluation), for the patterns alone and with the named-entity model, with the
detector's latency per sentence and per 300-token prompt; and throughput of the whole input and output
checks, median over runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragbus.common.events import AnswersDrafted, Cascade, Citation, RetrievedChunk
from ragbus.common.ids import record_id
from ragbus.common.refdata import require_data_dir
from ragbus.guard.evaluation import (
    RECALL_NOT_COMPARABLE,
    PiiReport,
    evaluate_pii,
    flag_rate,
    giskard_prompts,
    presidio_examples,
    presidio_records,
    split_examples,
    xstest_prompts,
)
from ragbus.guard.input_checks import check_garbage, check_input
from ragbus.guard.output_checks import check_output
from ragbus.guard.settings import InputPolicy, OutputPolicy
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="reference data (default: RAGBUS_DATA_DIR or ../shared/data)"
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data: Path = args.data or require_data_dir()
    policy = InputPolicy()

    attacks = giskard_prompts(data)
    safe, unsafe = xstest_prompts(data, "safe"), xstest_prompts(data, "unsafe")
    print(f"== prompt injection (threshold {policy.injection_threshold})")
    print(f"recall, Giskard attacks:            {rate(*flag_rate(attacks, policy))}")
    print(f"false positives, XSTest safe:       {rate(*flag_rate(safe, policy))}")
    print(f"flagged, XSTest unsafe (not inj.):  {rate(*flag_rate(unsafe, policy))}")
    claims_path = data / "scifact" / "train-queries.jsonl"
    claims: list[str] = []
    if claims_path.exists():
        claims = [json.loads(line)["text"] for line in claims_path.read_text(encoding="utf-8").splitlines()]
        print(f"false positives, SciFact claims:    {rate(*flag_rate(claims, policy))}")
    real = safe + unsafe + attacks + claims
    garbage = sum(not check_garbage(p, policy).passed for p in real)
    print(f"garbage check on real prompts:      {rate(garbage, len(real))} rejected")

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

    print(f"\n== throughput, one process, median of {args.runs} runs (min-max)")

    def inputs(prompts: list[str]) -> Callable[[], int]:
        def work() -> int:
            for p in prompts:
                check_input(p, policy)
            return len(prompts)

        return work

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

    def mean_chars(texts: list[str]) -> float:
        return sum(map(len, texts)) / len(texts)

    questions = safe + unsafe
    for name, work, note in (
        ("input checks", inputs(questions), f"XSTest questions, mean {mean_chars(questions):.0f} chars"),
        ("input checks", inputs(attacks), f"Giskard attacks, mean {mean_chars(attacks):.0f} chars"),
        ("output checks", outputs, f"{len(answers)} cited answers (PII sentences), patterns only"),
        ("output checks", outputs_with_model, f"{len(answers)} cited answers, with the entity model"),
    ):
        median, low, high = per_second(work, args.runs)
        print(f"{name:14} {median:8.0f}/s ({low:.0f}-{high:.0f})  {note}")


if __name__ == "__main__":
    main()
