"""The guard service: checks every question before the orchestrator sees it, every answer before the client.

    queries.submitted.v1 --input checks--> queries.accepted.v1
                                       \\-> queries.rejected.v1 + answers.completed.v1 (status "blocked")
    answers.drafted.v1   --output checks--> answers.completed.v1 ("answered", possibly redacted, or "blocked")

A rejected question also gets its `answers.completed`, so a client waiting for the answer to its query
id is told why instead of timing out. Output events are published with `bus.reply`, whose ids derive
from the input event: a redelivered event republishes the very same events, which consumers dedupe.
A check that raises is a bug, not a verdict: it propagates to the shared middleware (retried a few
times, then dead-lettered), and no verdict is made up for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragbus.common import topics
from ragbus.common.app import RagbusApp
from ragbus.common.bus import Bus, Stopwatch, consumer_options, make_broker
from ragbus.common.envelope import Envelope
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDrafted,
    QueriesAccepted,
    QueriesRejected,
    QueriesSubmitted,
)
from ragbus.common.logging import get_logger, setup_logging
from ragbus.common.topics import Topics
from ragbus.guard.input_checks import InputChecks
from ragbus.guard.output_checks import OutputChecks
from ragbus.guard.ports import InputGuard, OutputGuard
from ragbus.guard.settings import GuardSettings

SERVICE = "guard"
SOURCE = "ragbus/guard"
INPUT_STAGE = "guard.input"
OUTPUT_STAGE = "guard.output"

log = get_logger("ragbus.guard")


@dataclass(frozen=True, slots=True)
class GuardDeps:
    input: InputGuard
    output: OutputGuard

    @classmethod
    def from_settings(cls, settings: GuardSettings) -> GuardDeps:
        return cls(input=InputChecks(settings.input_policy()), output=OutputChecks(settings.output_policy()))


async def screen_question(event: Envelope[QueriesSubmitted], guard: InputGuard, bus: Bus) -> None:
    q = event.data
    watch = Stopwatch(INPUT_STAGE, SERVICE)
    result = guard.check(q.question)
    stages = [watch.stop()]
    ids = {"query_id": q.query_id, "conversation_id": q.conversation_id}
    if result.passed:
        accepted = QueriesAccepted(
            **ids,
            question=q.question,
            user_id=q.user_id,
            options=q.options,
            verdicts=result.verdicts,
            stages=stages,
        )
        await bus.reply(event, accepted)
        return
    reason = result.user_reason or "Your question was not accepted."
    log.info(
        "question rejected",
        query_id=q.query_id,
        failed=[v.check for v in result.failed],
        reasons=[v.reason for v in result.failed],
    )
    await bus.reply(event, QueriesRejected(**ids, reason=reason, verdicts=result.verdicts, stages=stages))
    await bus.reply(
        event,
        AnswersCompleted(
            **ids, status="blocked", answer=reason, reason=reason, verdicts=result.verdicts, stages=stages
        ),
    )


async def screen_answer(event: Envelope[AnswersDrafted], guard: OutputGuard, bus: Bus) -> None:
    d = event.data
    watch = Stopwatch(OUTPUT_STAGE, SERVICE)
    result = guard.check(d)
    stages = [*d.stages, watch.stop()]
    if result.status == "blocked":
        failed = [v for v in result.verdicts if not v.passed]
        log.info(
            "answer blocked",
            query_id=d.query_id,
            failed=[v.check for v in failed],
            reasons=[v.reason for v in failed],
        )
    await bus.reply(event, AnswersCompleted(
        query_id=d.query_id, conversation_id=d.conversation_id, status=result.status, answer=result.answer,
        reason=result.reason, citations=result.citations, verdicts=result.verdicts, cascade=d.cascade,
        stages=stages,
    ))  # fmt: skip


def create_app(settings: GuardSettings | None = None, deps: GuardDeps | None = None) -> RagbusApp:
    settings = settings or GuardSettings()
    setup_logging(settings.log)
    # The checks are pure and hold no clients, so there is nothing to open on startup.
    guard = deps or GuardDeps.from_settings(settings)
    t = Topics(settings.kafka.topic_prefix)
    broker = make_broker(SERVICE, settings)
    bus = Bus(broker, t, source=SOURCE).declare(QueriesAccepted, QueriesRejected, AnswersCompleted)
    consumer = consumer_options(SERVICE, settings.kafka)

    @broker.subscriber(t(topics.QUERIES_SUBMITTED), **consumer)
    async def on_submitted(event: Envelope[QueriesSubmitted]) -> None:
        await screen_question(event, guard.input, bus)

    @broker.subscriber(t(topics.ANSWERS_DRAFTED), **consumer)
    async def on_drafted(event: Envelope[AnswersDrafted]) -> None:
        await screen_answer(event, guard.output, bus)

    return RagbusApp(broker, service=SERVICE)
