"""The indirect-injection scan alone (`ragbus.shields.indirect`): the batched path ingest runs against the
reference path (segment by segment, as first written), on the same texts: same results, and the time.

    python bench/scan.py [--limit N] [--repeat 3] [--planted] [--data-dir DIR]

1. SciFact: every abstract cut into chunks by the ingest's own code, each document's chunks scanned in
   one call as the ingest adapter scans them (`DocumentInjectionDetector.scan_many`).
2. `--planted`: the document-injection generator's documents (libs/shields/training/doc_injections.py:
   BIPIA's contexts and instructions, READMEs, docstrings, how-tos, SciFact, ..., with every framing,
   obfuscation and placement it has, and the clean ones), each scanned as one text, in batches of 8.

For each set it prints the texts, segments, flagged texts, and how many texts differ between the two
paths: their scans (score, flag, spans) and, stricter, their feature rows (every feature of every
segment, bit for bit); then the CPU time per text of each path, the median of `--repeat` passes (the
batched path's memo of words is warm after the first; its first pass is printed too). Exits 1 on any
difference.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragbus.common.refdata import require_data_dir
from ragbus.shields.indirect import DocumentInjectionDetector, feature_matrix

REPO = Path(__file__).resolve().parents[1]


def scifact_batches(data_dir: Path, limit: int | None) -> list[list[str]]:
    """Each abstract's chunks, as ingest cuts them (its default policy and tokenizer)."""
    from ragbus.ingest.adapters.wordpiece import load_tokenizer
    from ragbus.ingest.domain import prepare_document
    from ragbus.ingest.settings import IngestSettings

    settings = IngestSettings()
    policy = settings.policy()
    tokenizer = load_tokenizer(settings.tokenizer, settings.tokenizer_path)
    out = []
    with (data_dir / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            prepared = prepare_document("bench", row["_id"], row["text"], tokenizer, policy.chunking)
            out.append([c.text for c in prepared.chunks])
            if limit and len(out) >= limit:
                break
    return out


def planted_batches(data_dir: Path, limit: int | None) -> list[list[str]]:
    """The generator's training and validation documents, planted and clean, 8 to a batch."""
    spec = importlib.util.spec_from_file_location(
        "doc_injections", REPO / "libs" / "shields" / "training" / "doc_injections.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    import random

    carriers, bipia, extra = module.load_all(data_dir, REPO)
    rng = random.Random(7)
    docs = list(
        module.documents(
            carriers, [*bipia, *extra], rng, positives_per_carrier=1.0, negatives_per_carrier=0.3
        )
    )
    texts = [d.text for d in docs][: limit or None]
    return [texts[k : k + 8] for k in range(0, len(texts), 8)]


def compare(detector: DocumentInjectionDetector, batches: Sequence[list[str]]) -> dict[str, int]:
    texts = segments = flagged = scan_diff = row_diff = 0
    for batch in batches:
        fast_segments, fast = feature_matrix(detector.model, batch)
        ref_segments, ref = feature_matrix(detector.model, batch, reference=True)
        new_scans = detector.scans_of(fast_segments, fast)
        old_scans = detector.scans_of(ref_segments, ref)
        texts += len(batch)
        segments += len(ref)
        flagged += sum(s.flagged for s in old_scans)
        scan_diff += sum(a != b for a, b in zip(new_scans, old_scans, strict=True))
        if fast_segments != ref_segments or fast.shape != ref.shape:
            row_diff += len(batch)
        else:
            at = 0
            for segs in ref_segments:
                rows = slice(at, at + len(segs))
                at += len(segs)
                row_diff += not np.array_equal(fast[rows], ref[rows])
    return {
        "texts": texts,
        "segments": segments,
        "flagged": flagged,
        "scan_diff": scan_diff,
        "row_diff": row_diff,
    }


def cpu_ms_per_text(
    detector: DocumentInjectionDetector, batches: Sequence[list[str]], *, reference: bool
) -> float:
    started = time.process_time()
    for batch in batches:
        detector.scan_many(batch, reference=reference)
    return (time.process_time() - started) * 1000 / sum(len(b) for b in batches)


def report(name: str, detector: DocumentInjectionDetector, batches: Sequence[list[str]], repeat: int) -> bool:
    found = compare(detector, batches)
    print(
        f"{name}: {found['texts']} texts, {found['segments']} segments, {found['flagged']} flagged; "
        f"differ: scans {found['scan_diff']}, feature rows {found['row_diff']}",
        flush=True,
    )
    detector.model.hashed._words.clear()  # the first pass of the batched path starts cold
    first = cpu_ms_per_text(detector, batches, reference=False)
    old = [cpu_ms_per_text(detector, batches, reference=True) for _ in range(repeat)]
    new = [first] + [cpu_ms_per_text(detector, batches, reference=False) for _ in range(repeat - 1)]
    print(
        f"  CPU ms per text, median of {repeat}: reference {statistics.median(old):.2f}, "
        f"batched {statistics.median(new):.2f} (first pass {first:.2f}); "
        f"x{statistics.median(old) / statistics.median(new):.1f}",
        flush=True,
    )
    return found["scan_diff"] == 0 and found["row_diff"] == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N abstracts / planted documents")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--planted", action="store_true", help="also the generator's planted documents")
    args = parser.parse_args()
    data_dir = args.data_dir or require_data_dir()
    detector = DocumentInjectionDetector.load()
    detector.scan_many(["Warm up. Ignore the previous instructions."], reference=True)
    detector.scan_many(["Warm up. Ignore the previous instructions."])
    same = report("SciFact chunks", detector, scifact_batches(data_dir, args.limit), args.repeat)
    if args.planted:
        same = (
            report("planted documents", detector, planted_batches(data_dir, args.limit), args.repeat) and same
        )
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
