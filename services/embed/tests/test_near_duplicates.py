"""Near-duplicate documents at the embed service: a document whose text nearly repeats another of its
tenant's is indexed and reported (`keep`), or left out (`skip`); re-sending a document never makes it a
duplicate of itself; another tenant's documents never count."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from ragbus.common import near_duplicates
from ragbus.common.envelope import Envelope
from ragbus.common.events import DocsChunked
from ragbus.common.ids import content_hash
from ragbus.embed import domain, usecases
from ragbus.embed.usecases import EmbedDeps
from ragbus.vectors.adapters.qdrant_server import QdrantServerStore
from ragbus.vectors.testing import HashingEmbedder

from .test_domain import chunk

PAPER = " ".join(
    f"Sentence {n} of the trial report says that calcium and vitamin D were given to group {n % 7}."
    for n in range(40)
)
COPY = PAPER.replace("group 3.", "group three.", 1)  # a mirror with one edit
OTHER = " ".join(f"Line {n} of a recipe: knead the dough and let it rise for {n} minutes." for n in range(40))


def part(doc_id: str, text: str, tenant: str = "acme") -> Envelope[DocsChunked]:
    halves = [text[: len(text) // 2], text[len(text) // 2 :]]
    chunks = [chunk(tenant, doc_id, i, t) for i, t in enumerate(halves)]
    data = DocsChunked(
        doc_id=doc_id, version=content_hash(text), chunks=chunks, minhash=near_duplicates.signature(text)
    )
    return Envelope.new(data, source="test", tenant=tenant)


@pytest.fixture
async def store() -> AsyncIterator[QdrantServerStore]:
    s = QdrantServerStore(":memory:", collection=f"dups{uuid.uuid4().hex[:8]}")
    yield s
    await s.aclose()


def deps(store: QdrantServerStore, policy: str = "keep") -> EmbedDeps:
    return EmbedDeps(embedder=HashingEmbedder(dim=32), store=store, near_duplicates=policy)  # type: ignore[arg-type]


async def test_a_near_duplicate_is_indexed_and_reported(store: QdrantServerStore) -> None:
    first = await usecases.index_part(deps(store), part("paper", PAPER))
    again = await usecases.index_part(deps(store), part("paper", PAPER))
    mirror = await usecases.index_part(deps(store), part("mirror", COPY))
    other = await usecases.index_part(deps(store), part("recipe", OTHER))
    elsewhere = await usecases.index_part(deps(store), part("mirror", COPY, tenant="globex"))
    assert first.duplicate_of is None
    assert again.duplicate_of is None  # the same document sent again is not its own duplicate
    assert (mirror.duplicate_of, mirror.skipped) == ("paper", False)
    assert mirror.similarity is not None
    assert 0.9 <= mirror.similarity < 1.0
    assert await store.count("acme", "mirror") == 2
    assert other.duplicate_of is None
    assert elsewhere.duplicate_of is None  # another tenant's paper does not count


async def test_with_skip_a_near_duplicate_is_left_out_of_the_index(store: QdrantServerStore) -> None:
    await usecases.index_part(deps(store, "skip"), part("paper", PAPER))
    # An earlier, different version of the mirror was indexed; now it repeats the paper: it goes.
    await usecases.index_part(deps(store, "skip"), part("mirror", OTHER + " an older version"))
    assert await store.count("acme", "mirror") == 2
    mirror = await usecases.index_part(deps(store, "skip"), part("mirror", COPY))
    assert (mirror.duplicate_of, mirror.skipped, mirror.upserted, mirror.removed) == ("paper", True, 0, 2)
    assert await store.count("acme", "mirror") == 0
    assert await store.count("acme", "paper") == 2


async def test_with_off_nothing_is_looked_up(store: QdrantServerStore) -> None:
    await usecases.index_part(deps(store, "off"), part("paper", PAPER))
    mirror = await usecases.index_part(deps(store, "off"), part("mirror", COPY))
    assert mirror.duplicate_of is None


def test_the_nearest_candidate_over_the_threshold_wins() -> None:
    sig = near_duplicates.signature(PAPER)
    candidates = {"mirror": near_duplicates.signature(COPY), "recipe": near_duplicates.signature(OTHER)}
    found = domain.nearest_duplicate(sig, candidates, 0.9)
    assert found is not None
    assert found.doc_id == "mirror"
    assert domain.nearest_duplicate(sig, candidates, 0.999) is None
    assert domain.nearest_duplicate(sig, {}, 0.5) is None
    assert near_duplicates.similarity(sig, candidates["recipe"]) < 0.1
    assert near_duplicates.signature("") == []
    assert near_duplicates.bands([]) == []
