"""The model cascade: cheap tiers first, a more capable (and costly) tier only when the cheaper answer
is not good enough, and every decision recorded in plain words.

Tier 0 is extractive (no model). Tiers 1, 2, ... are chat models, in the order configured. The rule:

- Tier 0 is accepted only for a *lookup* question (not why / how / explain... / compare... / summarise...)
  whose best hit scores at least `accept_min_score` and whose quoted sentences contain at least
  `accept_min_coverage` of the question's content words; a request's `options.min_tier >= 1` skips it.
- A chat tier is accepted if it answers (not empty, not only citation markers, not a refusal while
  sources exist, not a degenerate loop) and its sentences are supported by the sources they cite: at
  least `accept_min_support` of them must have most of their content words, and every number they state,
  in those sources (ragbus.shields.grounding, the check the guard applies too; an answer from the
  model's memory would be withheld by the guard, so the cascade escalates past it, or keeps a cheaper
  tier's answer). A request it can never serve (ChatRejectedError, e.g. context
  too long) is recorded and escalated.
- The cascade never goes above `options.max_tier`, nor above the last configured tier. When no tier is
  accepted, the answer of the highest tier that produced a usable one is kept, and the reason says so.

A failure is not an escalation. An unavailable chat tier (connection refused, timeout, 5xx, rate limit,
a misconfigured endpoint) is called again `FailurePolicy.retries` times with backoff; then the cascade
goes on without it (the next tier up, else the best answer a lower tier gave) and the attempt records
the error. A tier that failed `breaker_failures` requests in a row is skipped outright for
`breaker_cooldown_s` (a circuit breaker), so an outage costs each question nothing rather than a
timeout, and a question capped at tier 0 never waits behind one.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from opentelemetry import trace

from ragbus.common.events import Cascade, Citation, QueryOptions, TierAttempt
from ragbus.common.telemetry import tracer
from ragbus.orchestrator.citations import parse_citations
from ragbus.orchestrator.extractive import ExtractiveAnswer, extract_answer
from ragbus.orchestrator.ports import (
    ChatMessage,
    ChatModel,
    ChatRejectedError,
    ChatResult,
    ChatUnavailable,
    Turn,
)
from ragbus.orchestrator.prompts import PromptTemplate
from ragbus.orchestrator.routing import Router, features
from ragbus.orchestrator.text import non_lookup_trigger, word_count
from ragbus.orchestrator.untrusted import FlaggedSources
from ragbus.shields.grounding import support
from ragbus.vectors.ports import Hit

NOT_FOUND = "I could not find this in the indexed documents."
NO_ANSWER = "I could not produce an answer from the indexed documents."
UNAVAILABLE = (
    "The language model is unavailable right now and the indexed documents alone do not answer this. "
    "Please try again later."
)

_REFUSAL = re.compile(
    r"\b(i\s+(do\s+not|don'?t|cannot|can'?t|am\s+unable\s+to|could\s+not|couldn'?t)\s+"
    r"(know|answer|find|determine|tell|say)|(no|not\s+enough|insufficient)\s+(relevant\s+)?information|"
    r"(sources?|documents?|context|text)\s+(do(es)?\s+not|don'?t|doesn'?t)\s+"
    r"(contain|mention|provide|say|answer|include|specify))",
    re.IGNORECASE,
)
# A refusal is short; a long answer that says "no information on X" in passing still answers.
_REFUSAL_MAX_WORDS = 40


def is_refusal(text: str) -> bool:
    return word_count(text) <= _REFUSAL_MAX_WORDS and _REFUSAL.search(text) is not None


def is_degenerate(text: str) -> bool:
    """A small model sometimes loops ("la femme, la femme, la femme..."): few distinct 4-grams."""
    words = text.lower().split()
    if len(words) < 20:
        return False
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return len(set(grams)) / len(grams) < 0.5


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """What an unavailable chat tier may cost a request, and when to stop asking it."""

    retries: int = 1  # further calls after the first fails, `backoff_s` apart (doubling)
    backoff_s: float = 0.5
    breaker_failures: int = 3  # requests in a row that found the tier down before it is skipped...
    breaker_cooldown_s: float = 30.0  # ...for this long; then one request probes it again


@dataclass(frozen=True, slots=True)
class CascadePolicy:
    extractive: bool = True
    max_sentences: int = 3
    accept_min_score: float = 0.5
    accept_min_coverage: float = 0.6
    # What to do with chunks ingest flagged as carrying instructions (see `untrusted`): the hits given
    # to the cascade are already without them under `drop`.
    flagged_sources: FlaggedSources = "quote"
    # A chat answer's sentences supported by the sources they cite, at least this share (0: not checked).
    accept_min_support: float = 0.75
    failures: FailurePolicy = field(default_factory=FailurePolicy)


@dataclass(slots=True)
class TierHealth:
    """A chat tier's circuit breaker: consecutive requests that found it down, and until when it is
    skipped. Shared by the requests of one process (a per-replica view is enough to shed the load)."""

    failures: int = 0
    open_until: float = 0.0  # time.monotonic() before which the tier is not called
    last_error: str | None = None

    def closed(self, now: float) -> bool:
        return now >= self.open_until

    def failed(self, error: str, policy: FailurePolicy, now: float) -> None:
        self.failures += 1
        self.last_error = error
        if self.failures >= policy.breaker_failures:
            self.open_until = now + policy.breaker_cooldown_s

    def succeeded(self) -> None:
        self.failures, self.open_until, self.last_error = 0, 0.0, None


@dataclass(frozen=True, slots=True)
class ChatTier:
    """A chat model with the way this cascade uses it."""

    model: ChatModel
    prompt: PromptTemplate
    max_tokens: int = 256
    temperature: float = 0.0
    max_source_chars: int = 6000
    price_prompt_per_1k: float = 0.0
    price_completion_per_1k: float = 0.0
    label: str | None = None  # the name recorded in attempts; the model's own name by default
    health: TierHealth = field(default_factory=TierHealth, compare=False)
    # At most this many calls at once from this process (a rate-limited API, a server with few slots).
    limit: asyncio.Semaphore | None = field(default=None, compare=False)
    # Called only when its router predicts a benefit of at least `min_benefit` (None: the router's own
    # operating point) for a question the tiers below did not answer; no router: always called.
    router: Router | None = None
    min_benefit: float | None = None

    @property
    def name(self) -> str:
        return self.label or self.model.name

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.price_prompt_per_1k + completion_tokens * self.price_completion_per_1k
        ) / 1000


@dataclass(frozen=True, slots=True)
class Draft:
    """An answer a tier produced; `usable` is False for a refusal."""

    tier: int
    text: str
    citations: list[Citation]
    usable: bool = True


@dataclass(frozen=True, slots=True)
class CascadeResult:
    answer: str
    citations: list[Citation]
    cascade: Cascade
    deferred: bool = False  # `defer_models`: a model tier would be called next; nothing was answered


class AnswerStream(Protocol):
    """Where a streaming request's text goes as a chat tier generates it (the use case publishes it on
    `answers.delta`). `reset` withdraws what a tier streamed when the cascade does not accept it."""

    async def text(self, tier: int, piece: str) -> None: ...

    async def reset(self, tier: int) -> None: ...


@dataclass
class _Run:
    attempts: list[TierAttempt] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    outages: int = 0  # chat tiers that could not be reached
    history: Sequence[Turn] = ()  # earlier turns of the conversation, shown to the chat tiers
    stream: AnswerStream | None = None  # a streaming request's text goes here as it is generated
    options: QueryOptions = field(default_factory=QueryOptions)
    started: float = field(default_factory=time.perf_counter)
    extractive: ExtractiveAnswer | None = None  # tier 0's reading of the sources, for the routers

    def record(self, attempt: TierAttempt) -> None:
        """Keep the attempt for the event, and put it on the current span (the tier's) for traces."""
        self.attempts.append(attempt)
        span = trace.get_current_span()
        span.set_attributes(
            {
                "ragbus.tier": attempt.tier,
                "ragbus.tier.name": attempt.name,
                "ragbus.tier.accepted": attempt.accepted,
                "ragbus.tier.reason": attempt.reason[:500],
                "ragbus.tier.cost_usd": attempt.cost_usd,
                "ragbus.tier.prompt_tokens": attempt.prompt_tokens,
                "ragbus.tier.completion_tokens": attempt.completion_tokens,
            }
        )
        if attempt.prompt:
            span.set_attribute("ragbus.prompt", attempt.prompt)
        if attempt.benefit is not None:
            span.set_attribute("ragbus.tier.benefit", attempt.benefit)
        if attempt.error:
            span.set_attribute("error.type", attempt.error.split(":", 1)[0])

    def result(self, draft: Draft, reason: str) -> CascadeResult:
        return CascadeResult(
            draft.text, draft.citations, Cascade(tier=draft.tier, reason=reason, attempts=self.attempts)
        )


def _span(tier: int, name: str) -> AbstractContextManager[trace.Span]:
    """The span of one tier's attempt (its model call nests under it); `_Run.record` fills it in."""
    return tracer("orchestrator").start_as_current_span(f"cascade tier {tier} ({name})")


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def _pct(x: float) -> str:
    return f"{round(x * 100)}%"


def _under(value: float, bound: float, *, percent: bool = False) -> tuple[str, str]:
    """`value` and the `bound` it is under, printed with as many decimals as it takes for the text to
    agree with the comparison: 0.4996 under 0.5 reads "0.4996 is under 0.5000", never "0.50 under 0.50"."""
    scale, digits, suffix = (100.0, 0, "%") if percent else (1.0, 2, "")
    for d in range(digits, digits + 7):
        a, b = f"{value * scale:.{d}f}", f"{bound * scale:.{d}f}"
        if float(a) < float(b):
            return a + suffix, b + suffix
    return f"{value * scale!r}{suffix}", f"{bound * scale!r}{suffix}"


def judge_extractive(question: str, ex: ExtractiveAnswer, policy: CascadePolicy) -> tuple[bool, str]:
    """Tier 0's acceptance rule: (accepted, why), every unmet condition named."""
    covered, total, top_score = len(ex.covered_terms), len(ex.question_terms), ex.top_score
    problems = []
    if not ex.text:
        problems.append("no retrieved sentence shares a content word with the question")
    trigger = non_lookup_trigger(question)
    if trigger:
        problems.append(f"the question asks '{trigger}', which needs more than quoting sentences")
    if top_score < policy.accept_min_score:
        score, bound = _under(top_score, policy.accept_min_score)
        problems.append(
            f"the best retrieval score {score} is under {bound}, so the sources may not answer it"
        )
    if ex.text and ex.coverage < policy.accept_min_coverage:
        missing = ", ".join(ex.missing_words())
        share, least = _under(ex.coverage, policy.accept_min_coverage, percent=True)
        problems.append(
            f"the quoted sentences contain {covered} of the question's {total} content words "
            f"({share}, under {least}; missing: {missing})"
        )
    if problems:
        return False, "; ".join(problems)
    return True, (
        f"a lookup question; best retrieval score {top_score:.2f} >= {policy.accept_min_score:.2f} "
        f"and the quoted sentences contain {covered} of {total} question content words "
        f"({_pct(ex.coverage)} >= {_pct(policy.accept_min_coverage)})"
    )


# A citation marker, or the start of one cut off at max_tokens ("[12", "[").
_MARKER = re.compile(r"\[\s*\d*\s*\]?")


def judge_support(
    text: str, citations: Sequence[Citation], hits: Sequence[Hit], policy: CascadePolicy
) -> str | None:
    """Why a chat answer is not supported by the sources it cites, or None when it is."""
    if policy.accept_min_support <= 0:
        return None
    sources = {c.n: hits[c.n - 1].text for c in citations if 0 < c.n <= len(hits)}
    found = support(text, sources, skip=(_REFUSAL,))
    if found.holds(policy.accept_min_support):
        return None
    return (
        f"{len(found.unsupported)} of {len(found.judged)} sentence(s) are not supported by the sources "
        f"they cite ({found.score:.0%} < {policy.accept_min_support:.0%}): an answer from the model's memory"
    )


def judge_chat(text: str, n_sources: int, finish_reason: str | None) -> tuple[bool, str]:
    """A chat tier's acceptance rule: (accepted, why)."""
    if not text.strip():
        return False, "the model returned an empty answer"
    if word_count(_MARKER.sub(" ", text)) == 0:
        # SmolLM2 sometimes lists "[1] [2] [3] ..." until max_tokens: citations of nothing.
        return False, "the answer is citation markers and no words"
    if is_refusal(text) and n_sources:
        return False, f"the model said it cannot answer although {n_sources} sources were retrieved"
    if is_degenerate(text):
        return False, "the answer repeats itself (degenerate output)"
    cut = " (cut short at max_tokens)" if finish_reason == "length" else ""
    return True, f"the model answered from {n_sources} sources{cut}"


def _extractive(
    question: str, hits: Sequence[Hit], policy: CascadePolicy, skip: str | None, run: _Run
) -> tuple[bool, str]:
    start = time.perf_counter()
    ex = extract_answer(question, hits, max_sentences=policy.max_sentences, flagged=policy.flagged_sources)
    run.extractive = ex
    accepted, why = judge_extractive(question, ex, policy)
    if skip:
        accepted, why = False, skip
    run.record(TierAttempt(tier=0, name="extractive", accepted=accepted, reason=why, latency_ms=_ms(start)))
    if ex.text:
        run.drafts.append(Draft(0, ex.text, ex.citations))
    return accepted, why


def _tokens(messages: Sequence[ChatMessage]) -> int:
    """A prompt's tokens, estimated before the call: ~4 characters a token, a few per message."""
    return sum(len(m.content) for m in messages) // 4 + 4 * len(messages)


def _time_left(run: _Run) -> float | None:
    """Seconds the request's latency cap leaves the cascade (None: no cap)."""
    if run.options.max_latency_ms is None:
        return None
    return run.options.max_latency_ms / 1000 - (time.perf_counter() - run.started)


def _over_budget(tier: ChatTier, messages: Sequence[ChatMessage], run: _Run) -> str | None:
    """Why the request's caps forbid calling this tier (its worst case: the whole answer), or None."""
    cap = run.options.max_cost_usd
    if cap is not None:
        spent = sum(a.cost_usd for a in run.attempts)
        worst = tier.cost(_tokens(messages), tier.max_tokens)
        if spent + worst > cap:
            return (
                f"skipped: it may cost up to ${worst:.6f}, and the request's cap "
                f"(options.max_cost_usd={cap:g}) leaves ${max(cap - spent, 0.0):.6f}"
            )
    left = _time_left(run)
    if left is not None and left <= 0:
        spent_ms = run.options.max_latency_ms
        return f"skipped: the request's latency cap (options.max_latency_ms={spent_ms:g}) is spent"
    return None


def _failed_attempt(n: int, tier: ChatTier, why: str, start: float, error: str) -> TierAttempt:
    return TierAttempt(
        tier=n,
        name=tier.name,
        accepted=False,
        reason=why,
        prompt=tier.prompt.id,
        latency_ms=_ms(start),
        error=error[:1000],
    )


async def _chat(
    n: int,
    tier: ChatTier,
    question: str,
    hits: Sequence[Hit],
    policy: CascadePolicy,
    run: _Run,
    benefit: float | None = None,  # what the tier's router predicted, when it has one
) -> tuple[bool, str]:
    start = time.perf_counter()
    flagged = policy.flagged_sources
    messages = tier.prompt.render(
        question, hits, max_source_chars=tier.max_source_chars, flagged=flagged, history=run.history
    )
    failures, health = policy.failures, tier.health
    if over := _over_budget(tier, messages, run):
        run.record(_failed_attempt(n, tier, over, start, "over the request's budget"))
        return False, over
    if not health.closed(time.monotonic()):
        why = (
            f"skipped: the model server failed {health.failures} requests in a row "
            f"(last: {health.last_error}); it is tried again in "
            f"{max(health.open_until - time.monotonic(), 0):.0f} s"
        )
        run.record(_failed_attempt(n, tier, why, start, "unavailable (circuit open)"))
        run.outages += 1
        return False, why
    outage: ChatUnavailable | None = None
    first_piece: list[float] = []  # when the first streamed text arrived (ms since the attempt began)

    async def call() -> ChatResult:
        async with tier.limit or contextlib.nullcontext():
            if run.stream is None:
                return await tier.model.complete(
                    messages, max_tokens=tier.max_tokens, temperature=tier.temperature
                )

            async def on_text(piece: str, stream: AnswerStream = run.stream) -> None:
                if not first_piece:
                    first_piece.append(_ms(start))
                await stream.text(n, piece)

            return await tier.model.stream(
                messages, max_tokens=tier.max_tokens, temperature=tier.temperature, on_text=on_text
            )

    for attempt in range(failures.retries + 1):
        if attempt:
            await asyncio.sleep(failures.backoff_s * 2 ** (attempt - 1))
        try:
            async with asyncio.timeout(_time_left(run)):
                result = await call()
        except TimeoutError:
            why = f"cut off at the request's latency cap ({run.options.max_latency_ms:.0f} ms)"
            run.record(_failed_attempt(n, tier, why, start, "over the request's latency cap"))
            if run.stream is not None and first_piece:
                await run.stream.reset(n)
            return False, why
        except ChatRejectedError as exc:
            status = f"HTTP {exc.status}" if exc.status else "rejected"
            why = f"the model server refused this request for good ({status})"
            run.record(_failed_attempt(n, tier, why, start, f"{type(exc).__name__}: {exc}"))
            return False, why
        except ChatUnavailable as exc:
            outage = exc
            continue
        health.succeeded()
        break
    else:
        assert outage is not None
        health.failed(str(outage)[:300], failures, time.monotonic())
        calls = failures.retries + 1
        why = f"the model server is unavailable ({calls} call{'s' * (calls > 1)} failed: {str(outage)[:300]})"
        run.record(_failed_attempt(n, tier, why, start, f"{type(outage).__name__}: {outage}"))
        run.outages += 1
        return False, why
    parsed = parse_citations(result.text, hits, flagged)
    accepted, why = judge_chat(parsed.text, len(hits), result.finish_reason)
    if accepted and (unsupported := judge_support(parsed.text, parsed.citations, hits, policy)):
        accepted, why = False, unsupported
    if accepted and parsed.note():
        why += f"; {parsed.note()}"
    run.record(
        TierAttempt(
            tier=n,
            name=tier.name,
            accepted=accepted,
            reason=why,
            prompt=tier.prompt.id,
            latency_ms=_ms(start),
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            cost_usd=tier.cost(result.prompt_tokens, result.completion_tokens),
            ttft_ms=first_piece[0] if first_piece else None,
            benefit=benefit,
        )
    )
    if run.stream is not None and first_piece and not accepted:
        await run.stream.reset(n)  # the cascade goes on: what this tier streamed is withdrawn
    if accepted:
        run.drafts.append(Draft(n, parsed.text, parsed.citations))
    elif is_refusal(parsed.text):
        # An honest "I don't know" is a reply worth keeping if no tier does better; a loop is not.
        run.drafts.append(Draft(n, parsed.text, [], usable=False))
    return accepted, why


def _route(
    n: int, tier: ChatTier, question: str, hits: Sequence[Hit], policy: CascadePolicy, run: _Run
) -> tuple[float | None, str | None]:
    """Tier `n`'s router's prediction for this question (None without a router), and why the tier is
    not worth calling (None: call it)."""
    if tier.router is None:
        return None, None
    start = time.perf_counter()
    ex = run.extractive or extract_answer(
        question, hits, max_sentences=policy.max_sentences, flagged=policy.flagged_sources
    )
    benefit = tier.router.benefit(features(question, hits, ex))
    least = tier.router.min_benefit if tier.min_benefit is None else tier.min_benefit
    if benefit >= least:
        return benefit, None
    why = (
        f"not called: its router ({tier.router.name}) gives its answer a {benefit:.0%} chance of being "
        f"kept (passing the checks), under the {least:.0%} that pays for a call"
    )
    run.record(
        TierAttempt(
            tier=n, name=tier.name, accepted=False, reason=why, latency_ms=_ms(start), benefit=benefit
        )
    )
    return benefit, why


async def run_cascade(
    question: str,
    hits: Sequence[Hit],
    *,
    options: QueryOptions,
    policy: CascadePolicy,
    tiers: Sequence[ChatTier],
    dropped: int = 0,
    history: Sequence[Turn] = (),
    standalone: str | None = None,
    stream: AnswerStream | None = None,
    defer_models: bool = False,
) -> CascadeResult:
    """Answer `question` from `hits` (source `[n]` = `hits[n-1]`), cheapest tier first; `dropped` is
    how many retrieved chunks were left out because ingest flagged them (policy `drop`). In a
    conversation, the chat tiers see the earlier turns (`history`), and tier 0 quotes for the
    `standalone` question (a follow-up with the question it follows: ragbus.orchestrator.conversation).

    With `defer_models`, the cascade stops where it would call a model tier and returns a result with
    `deferred` set: the caller hands the question to its model lane, which runs the cascade again."""
    run = _Run(history=history, stream=stream, options=options)
    if not hits:
        what = (
            f"the {dropped} chunk(s) retrieved were flagged as carrying instructions and dropped "
            "(ORCHESTRATOR_FLAGGED_SOURCES=drop)"
            if dropped
            else "nothing relevant was retrieved"
        )
        return run.result(
            Draft(0, NOT_FOUND, []),
            f"{what}, so no tier ran; answered that the indexed documents do not contain it",
        )

    top, cap = len(tiers), "the last configured tier"
    if options.max_tier is not None and options.max_tier < top:
        top, cap = options.max_tier, f"options.max_tier={options.max_tier}"
    first = options.min_tier or 0
    if not policy.extractive and top > 0:
        first = max(first, 1)
    # max_tier wins over min_tier: a caller capping cost must never be charged for a model call.
    first = min(first, top)
    names = {0: "extractive", **{n: t.name for n, t in enumerate(tiers, start=1)}}

    escalated: list[str] = []
    if first == 0 or policy.extractive:
        # Under options.min_tier, tier 0 still runs (it is cheap): its answer is the fallback should no
        # model answer be usable, but it cannot be accepted.
        skip = (
            f"not eligible: the request starts the cascade at tier {first} (options.min_tier); "
            "its answer is only a fallback"
            if first
            else None
        )
        with _span(0, "extractive"):
            accepted, why = _extractive(standalone or question, hits, policy, skip, run)
        if accepted:
            return run.result(run.drafts[-1], f"tier 0 (extractive) accepted: {why}")
        if not skip:
            escalated.append(f"tier 0: {why}")

    for n in range(max(first, 1), top + 1):
        with _span(n, names[n]):
            # A tier the request asks for (options.min_tier) is called whatever its router says; so is
            # the first tier when there is no tier 0 to fall back on.
            benefit, skipped = (
                _route(n, tiers[n - 1], question, hits, policy, run) if n > first else (None, None)
            )
            if skipped:
                escalated.append(f"tier {n}: {skipped}")
                continue
            if defer_models:
                return CascadeResult(
                    "", [], Cascade(tier=n, reason="deferred to the model lane"), deferred=True
                )
            accepted, why = await _chat(n, tiers[n - 1], question, hits, policy, run, benefit)
        if accepted:
            past = f"; escalated past {'; '.join(escalated)}" if escalated else ""
            return run.result(run.drafts[-1], f"tier {n} ({names[n]}) accepted: {why}{past}")
        escalated.append(f"tier {n}: {why}")

    # No tier was accepted: keep the best answer there is (the highest tier with a usable one).
    tried = "; ".join(escalated)
    capped = f"; {cap} forbids escalating further" if top < len(tiers) else ""
    usable = [d for d in run.drafts if d.usable]
    if usable and usable[-1].tier < first:
        return run.result(
            usable[-1],
            f"no tier from tier {first} on was accepted ({tried}); kept the answer of tier 0 "
            f"(extractive) as a fallback, although the request starts the cascade at tier {first} "
            f"(options.min_tier){capped}",
        )
    if usable:
        best = usable[-1]
        return run.result(
            best,
            f"no tier was accepted ({tried}); kept the answer of tier {best.tier} "
            f"({names[best.tier]}), the highest tier with a usable one{capped}",
        )
    if run.drafts:
        return run.result(
            run.drafts[-1], f"no tier was accepted ({tried}); kept the model's own reply{capped}"
        )
    # Nothing to show because a model was down is not "the documents cannot answer this".
    text = UNAVAILABLE if run.outages else NO_ANSWER
    return run.result(Draft(top, text, []), f"no tier produced an answer ({tried}){capped}")
