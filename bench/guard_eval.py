"""Guard detectors on the reference data, and how many checks a second one core runs.

    python bench/guard_eval.py [--data DIR] [--runs 5]

Prints: prompt-injection recall on Giskard's attacks; false-positive rate on XSTest's safe prompts
(benign questions that look unsafe); flag rate on XSTest's unsafe prompts (harmful requests, which are
not injections: the check is not meant to catch them); the same on SciFact's claims when present; PII
precision / recall per kind on presidio-research's synthetic sentences (span overlap, exact matches in
brackets); and throughput of the whole input and output checks, median over runs.
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
    GOLD_KIND,
    flag_rate,
    giskard_prompts,
    presidio_records,
    score_pii,
    xstest_prompts,
)
from ragbus.guard.input_checks import check_garbage, check_input
from ragbus.guard.output_checks import check_output
from ragbus.guard.settings import InputPolicy, OutputPolicy


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
    print(f"\n== PII, presidio synthetic ({len(records)} sentences), span overlap (exact)")
    print(f"{'kind':14} {'gold type':14} {'pred':>5} {'gold':>5} {'precision':>10} {'recall':>8}")
    for kind, s in score_pii(records).items():
        recall = "n/a" if kind == "DATE_OF_BIRTH" else f"{s.recall:.3f}"
        precision = f"{s.precision:.3f}"
        exact = f"({s.exact / s.predicted:.3f})" if s.predicted else ""
        counts = f"{kind:14} {GOLD_KIND[kind]:14} {s.predicted:5d} {s.gold:5d}"
        print(f"{counts} {precision:>10} {exact:>8} {recall:>6}")
    print("DATE_OF_BIRTH: precision against DATE_TIME spans; recall n/a (the set labels every date).")

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

    def mean_chars(texts: list[str]) -> float:
        return sum(map(len, texts)) / len(texts)

    questions = safe + unsafe
    for name, work, note in (
        ("input checks", inputs(questions), f"XSTest questions, mean {mean_chars(questions):.0f} chars"),
        ("input checks", inputs(attacks), f"Giskard attacks, mean {mean_chars(attacks):.0f} chars"),
        ("output checks", outputs, f"{len(answers)} cited answers (PII sentences)"),
    ):
        median, low, high = per_second(work, args.runs)
        print(f"{name:14} {median:8.0f}/s ({low:.0f}-{high:.0f})  {note}")


if __name__ == "__main__":
    main()
