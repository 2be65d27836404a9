"""Query expansion through the cheapest chat tier (off by default): more ways to find the same sources.

- `multi-query`: the model rewrites the question `variants` times (other words, the terms a paper would
  use); each rewrite is searched like the question, and the rankings are fused by reciprocal rank.
- `hyde` (hypothetical document embeddings, Gao et al. 2022): the model writes a short passage that
  would answer the question; the passage is searched beside the question, as documents resemble
  documents more than questions do.

Expansion is an optimisation, never a dependency: a model that is down, slow (`timeout_s`) or refuses
leaves the question to be searched alone, and the answer does not wait for the model server to return.
What the model wrote is only ever searched with; it is never shown, cited or quoted.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Literal

from ragbus.common.errors import RagbusError
from ragbus.common.events import TierAttempt
from ragbus.common.logging import get_logger
from ragbus.orchestrator.cascade import ChatTier
from ragbus.orchestrator.ports import ChatMessage

log = get_logger("ragbus.orchestrator.expansion")

ExpansionMode = Literal["off", "multi-query", "hyde"]
MAX_VARIANT_CHARS = 300
MAX_PASSAGE_CHARS = 1200


@dataclass(frozen=True, slots=True)
class ExpansionPolicy:
    mode: ExpansionMode = "off"
    variants: int = 3  # multi-query: rewrites asked for
    max_tokens: int = 160
    timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class Expansion:
    """What expansion added to the question (nothing when off or failed), and what it cost."""

    texts: tuple[str, ...] = ()
    # Recorded first among the cascade's attempts (its `prompt` is `expansion-<mode>@v1`), so that its
    # tokens and cost count wherever a request's are summed.
    attempt: TierAttempt | None = None
    error: str | None = None


def messages(question: str, policy: ExpansionPolicy) -> list[ChatMessage]:
    if policy.mode == "hyde":
        return [
            ChatMessage("system", "You write short, factual passages in the style of a reference text."),
            ChatMessage(
                "user",
                "Write one paragraph (three sentences at most) that would answer the question below, "
                f"as an encyclopedia or a paper would. Do not mention the question.\n\nQuestion: {question}",
            ),
        ]
    return [
        ChatMessage("system", "You rewrite search queries. You answer with the rewrites only."),
        ChatMessage(
            "user",
            f"Rewrite the search query below in {policy.variants} different ways, one per line: use "
            "synonyms and the technical terms a document on it would use. Do not answer it.\n\n"
            f"Query: {question}",
        ),
    ]


_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.):]|\(?[a-z][.)]|query\s*\d*\s*:|rewrite\s*\d*\s*:)\s*", re.I)


def _key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def parse(text: str, question: str, policy: ExpansionPolicy) -> tuple[str, ...]:
    """The usable expansions in a model's output: for multi-query, up to `variants` distinct lines
    (numbering and quotes stripped; the question itself, preambles and echoes left out); for hyde, one
    passage. Anything over the length limits is cut."""
    if policy.mode == "hyde":
        passage = " ".join(text.split())[:MAX_PASSAGE_CHARS]
        return (passage,) if len(passage.split()) >= 5 else ()
    seen = {_key(question)}
    out: list[str] = []
    for line in text.splitlines():
        line = _NUMBERING.sub("", line).strip().strip("\"'“”").strip()
        if len(line.split()) < 2 or line.endswith(":") or not (key := _key(line)) or key in seen:
            continue  # a preamble ("Here are three rewrites:"), a stray word, the question again
        seen.add(key)
        out.append(line[:MAX_VARIANT_CHARS])
        if len(out) == policy.variants:
            break
    return tuple(out)


async def expand(tier: ChatTier, question: str, policy: ExpansionPolicy) -> Expansion:
    """Ask the tier's model for expansions of `question` under the policy; an empty Expansion when off,
    and one with `error` set (and no texts) when the model could not give any in time."""
    if policy.mode == "off":
        return Expansion()
    started = time.perf_counter()
    reason = f"query expansion ({policy.mode})"
    try:
        async with asyncio.timeout(policy.timeout_s):
            result = await tier.model.complete(
                messages(question, policy), max_tokens=policy.max_tokens, temperature=0.0
            )
    except (TimeoutError, RagbusError) as exc:
        error = f"timed out after {policy.timeout_s:g} s" if isinstance(exc, TimeoutError) else str(exc)
        log.warning("query expansion skipped", mode=policy.mode, error=error)
        attempt = TierAttempt(
            tier=1,
            name=tier.name,
            accepted=False,
            reason=f"{reason}: skipped",
            latency_ms=(time.perf_counter() - started) * 1000,
            error=error,
        )
        return Expansion(attempt=attempt, error=error)
    texts = parse(result.text, question, policy)
    attempt = TierAttempt(
        tier=1,
        name=tier.name,
        accepted=False,  # it answers nothing: the cascade's attempts say who answered
        reason=f"{reason}: {len(texts)} used",
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        cost_usd=tier.cost(result.prompt_tokens, result.completion_tokens),
        prompt=f"expansion-{policy.mode}@v1",
    )
    return Expansion(texts=texts, attempt=attempt)
