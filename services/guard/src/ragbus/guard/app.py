"""The guard service: checks every question before the orchestrator sees it, every answer before the client.

    queries.submitted.v1 --input checks--> queries.accepted.v1
                                       \\-> queries.rejected.v1 + answers.completed.v1 (status "blocked")
    answers.drafted.v1   --output checks--> answers.completed.v1 ("answered", possibly redacted, or "blocked")

Output events are published with `bus.reply`, whose ids derive from the input event: a redelivered
event republishes the very same events, which consumers dedupe.
"""

from __future__ import annotations

from functools import partial

from ragbus.common import topics
from ragbus.common.app import RagbusApp
from ragbus.common.envelope import Envelope
from ragbus.common.events import (
    AnswersCompleted,
    AnswersDrafted,
    QueriesAccepted,
    QueriesRejected,
    QueriesSubmitted,
)
from ragbus.common.service import Clients, Service
from ragbus.guard import usecases
from ragbus.guard.input_checks import InputChecks, Scanners
from ragbus.guard.output_checks import OutputChecks
from ragbus.guard.ports import PromptScorer
from ragbus.guard.quotas import Quotas
from ragbus.guard.settings import GuardSettings
from ragbus.guard.usecases import GuardDeps
from ragbus.shields.detection import PiiDetector

SERVICE = usecases.SERVICE


async def open_scanners(settings: GuardSettings, clients: Clients) -> Scanners:
    """The models the checks score with, loaded once (the `ragbus eval guard` command uses these too)."""
    detector = PiiDetector()
    if settings.uses_ner():
        from ragbus.shields.adapters.spacy_ner import SpacyRecognizer  # heavy: only when configured

        recognizer = clients.add("ner", SpacyRecognizer())
        await recognizer.ping()  # load the model now, not on the first answer
        detector = PiiDetector(recognizer)
    classifiers: list[PromptScorer] = []
    if settings.classifiers:
        # Heavy (torch): only when configured. The n-gram model is a file; the MiniLM is a client.
        from ragbus.shields.adapters.minilm_classifier import MiniLMPromptClassifier
        from ragbus.shields.ngram import MODELS, NgramModel

        minilm = clients.add("prompt_classifier", MiniLMPromptClassifier())
        await minilm.ping()  # load it now, not on the first question
        classifiers = [NgramModel.load(MODELS / "prompt-ngram.npz"), minilm]
    from ragbus.shields.gibberish import gibberish_score

    gibberish_score("warm up")  # loads the character model now (0.3 s), not on the first question
    return Scanners(classifiers=classifiers, pii=detector)


async def open_deps(settings: GuardSettings, clients: Clients) -> GuardDeps:
    scanners = await open_scanners(settings, clients)
    policies = settings.policy_set()
    return GuardDeps(
        input=InputChecks(settings.input_policy(), policies, scanners),
        output=OutputChecks(settings.output_policy(), scanners.pii),
        quotas=Quotas(policies),
    )


def create_app(settings: GuardSettings | None = None, deps: GuardDeps | None = None) -> RagbusApp:
    settings = settings or GuardSettings()
    service = Service(
        SERVICE,
        settings,
        deps=deps,
        open_deps=partial(open_deps, settings),
        publishes=[QueriesAccepted, QueriesRejected, AnswersCompleted],
    )

    @service.subscriber(topics.QUERIES_SUBMITTED)
    async def on_submitted(event: Envelope[QueriesSubmitted]) -> None:
        for verdict in await usecases.screen_question(service.deps(), event):
            await service.bus.reply(event, verdict)

    @service.subscriber(topics.ANSWERS_DRAFTED)
    async def on_drafted(event: Envelope[AnswersDrafted]) -> None:
        await service.bus.reply(event, usecases.screen_answer(service.deps(), event))

    return service.app
