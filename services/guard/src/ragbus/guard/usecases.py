"""The guard's use cases: a question in, its verdict events out; a drafted answer in, the answer the
user may see out. No Kafka here: `app.py` hands each event in and publishes what comes back.

A rejected question also gets its `answers.completed`, so a client waiting for the answer to its query
id is told why instead of timing out. A check that raises is a bug, not a verdict: it propagates to the
shared middleware (retried a few times, then dead-lettered), and no verdict is made up for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ragbus.common.envelope import Envelope
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDrafted,
    EventData,
    QueriesAccepted,
    QueriesRejected,
    QueriesSubmitted,
    StageTiming,
    Verdict,
)
from ragbus.common.logging import get_logger
from ragbus.common.timing import stage
from ragbus.guard.ports import InputGuard, InputResult, OutputGuard, OutputResult
from ragbus.guard.quotas import Quotas

SERVICE = "guard"
INPUT_STAGE = "guard.input"
OUTPUT_STAGE = "guard.output"

log = get_logger("ragbus.guard")


@dataclass(frozen=True, slots=True)
class GuardDeps:
    input: InputGuard
    output: OutputGuard
    quotas: Quotas | None = None  # per-tenant request rates (the tenants' policies)


async def screen_question(deps: GuardDeps, event: Envelope[QueriesSubmitted]) -> list[EventData]:
    """`queries.accepted` (the question redacted where the tenant's policy says so), or
    `queries.rejected` and the `answers.completed` that tells the user why."""
    q = event.data
    stages: list[StageTiming] = []
    ids = {"query_id": q.query_id, "conversation_id": q.conversation_id}
    if deps.quotas is not None and (over := deps.quotas.over(str(event.id), event.tenantid)):
        limit, wait = over
        reason = (
            f"Too many questions: this tenant may ask {limit.per_minute:g} a minute "
            f"({limit.burst} at once). Try again in {max(wait, 0.1):.1f} s."
        )
        verdict = Verdict(
            check="input.rate", passed=False, reason=reason, details={"retry_after_s": round(wait, 2)}
        )
        log.info("question over its tenant's rate", query_id=q.query_id, retry_after_s=round(wait, 2))
        return [
            QueriesRejected(**ids, reason=reason, verdicts=[verdict], stages=stages),
            AnswersCompleted(**ids, status="blocked", answer=reason, reason=reason, verdicts=[verdict]),
        ]
    with stage(INPUT_STAGE, SERVICE, stages, **{"ragbus.query_id": q.query_id}) as span:
        # The classifiers are CPU work (milliseconds): off the event loop, so heartbeats keep flowing.
        result = await asyncio.to_thread(deps.input.check, q.question, event.tenantid)
        span.set_attributes({"ragbus.guard.passed": result.passed, "ragbus.guard.failed": _failed(result)})
    if result.passed:
        return [
            QueriesAccepted(
                **ids,
                question=result.question if result.question is not None else q.question,
                user_id=q.user_id,
                groups=q.groups,
                options=q.options,
                verdicts=result.verdicts,
                stages=stages,
            )
        ]
    reason = result.user_reason or "Your question was not accepted."
    log.info(
        "question rejected",
        query_id=q.query_id,
        failed=[v.check for v in result.failed],
        reasons=[v.reason for v in result.failed],
    )
    return [
        QueriesRejected(**ids, reason=reason, verdicts=result.verdicts, stages=stages),
        AnswersCompleted(
            **ids, status="blocked", answer=reason, reason=reason, verdicts=result.verdicts, stages=stages
        ),
    ]


def screen_answer(deps: GuardDeps, event: Envelope[AnswersDrafted]) -> AnswersCompleted:
    """The answer as the user may see it ("answered", possibly redacted), or "blocked" with the reason."""
    d = event.data
    if d.retrieve_only:
        # Nothing was generated; the ranked chunks come without their text. Their ids, titles and scores
        # are the tenant's own, as any citation would show them.
        return AnswersCompleted(
            query_id=d.query_id, conversation_id=d.conversation_id, status="answered", answer="",
            cascade=d.cascade, stages=d.stages, retrieved=d.retrieved,
        )  # fmt: skip
    stages = list(d.stages)
    with stage(OUTPUT_STAGE, SERVICE, stages, **{"ragbus.query_id": d.query_id}) as span:
        result = deps.output.check(d)
        span.set_attributes({"ragbus.guard.status": result.status, "ragbus.guard.failed": _failed(result)})
    if result.status == "blocked":
        failed = [v for v in result.verdicts if not v.passed]
        log.info(
            "answer blocked",
            query_id=d.query_id,
            failed=[v.check for v in failed],
            reasons=[v.reason for v in failed],
        )
    return AnswersCompleted(
        query_id=d.query_id, conversation_id=d.conversation_id, status=result.status, answer=result.answer,
        reason=result.reason, question=d.question, citations=result.citations, verdicts=result.verdicts,
        cascade=d.cascade, stages=stages,
    )  # fmt: skip


def _failed(result: InputResult | OutputResult) -> list[str]:
    return [v.check for v in result.verdicts if not v.passed]
