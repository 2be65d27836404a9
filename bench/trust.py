"""What signed records cost: signing a record, checking one, and refusing an unsigned one.

    python bench/trust.py [--runs 5000] [--question-words 60]

On one `queries.submitted` event (a question of `--question-words` words) and one `docs.chunked` event of
about 1 MB (the producer's request limit): the median and p95 in µs of `Signer.headers` (what a
producer adds per record), `Verifier.check` (what each consumer pays per record with
RAGBUS_TRUST_MODE=enforce, given the attributes the middleware has already read), the refusal of an
unsigned record, and `EnvelopeAttributes.peek` (read once per record by the middleware, trust or not),
beside the JSON parse every consumer already does (`parse_event`) as the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from ragbus.common import trust
from ragbus.common.envelope import Envelope, EnvelopeAttributes, parse_event
from ragbus.common.events import ChunkData, DocsChunked, QueriesSubmitted
from ragbus.common.ids import content_hash, record_id


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95)]


def refuse(verifier: trust.Verifier, topic: str, key: bytes, value: bytes) -> None:
    try:
        verifier.check(topic, key, value, {}, None)
    except trust.Unauthenticated:
        return
    raise AssertionError("an unsigned record was admitted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--question-words", type=int, default=60)
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp()) / "trust"
    trust.init(directory)
    signer = trust.Signer.load(trust.OPERATOR, directory / f"{trust.OPERATOR}.key")
    verifier = trust.Verifier(directory / trust.TRUST_FILE)

    question = " ".join(["retrieval"] * args.question_words) + "?"
    ask = Envelope.new(QueriesSubmitted(query_id="q-1", question=question), source="bench", tenant="acme")
    text = "Vitamin D and fracture risk in older adults. " * 40
    chunks = [
        ChunkData(
            chunk_id=record_id("acme", "d", str(i), content_hash(text)),
            index=i,
            text=text,
            content_hash=content_hash(text),
            token_count=400,
            char_start=0,
            char_end=len(text),
        )
        for i in range(500)
    ]
    chunked = Envelope.new(DocsChunked(doc_id="d", version="v", chunks=chunks), source="bench", tenant="acme")

    print(f"{'record':28} {'bytes':>9}  {'step':26} {'p50 µs':>9} {'p95 µs':>9}")
    for name, event, topic in (
        ("queries.submitted", ask, "queries.submitted.v1"),
        ("docs.chunked (500 chunks)", chunked, "docs.chunked.v1"),
    ):
        value, key = event.to_bytes(), event.key
        headers = signer.headers(topic, key, value)
        attrs = EnvelopeAttributes.peek(value)
        steps: list[tuple[str, Callable[[], object]]] = [
            ("parse_event (baseline)", partial(parse_event, value)),
            ("sign (producer)", partial(signer.headers, topic, key, value)),
            ("check signed (consumer)", partial(verifier.check, topic, key, value, headers, attrs)),
            ("refuse unsigned", partial(refuse, verifier, topic, key, value)),
            ("peek attributes (always)", partial(EnvelopeAttributes.peek, value)),
        ]
        runs = args.runs if len(value) < 100_000 else max(args.runs // 50, 50)
        for step, fn in steps:
            p50, p95 = timed(fn, runs)
            print(f"{name:28} {len(value):>9,}  {step:26} {p50:>9.1f} {p95:>9.1f}")


if __name__ == "__main__":
    main()
