"""Fusion of the two legs: each method's order, the cosine kept in `score`, and the lexical scale."""

from __future__ import annotations

import uuid

import pytest

from ragbus.vectors.fusion import fuse
from ragbus.vectors.ports import Hit, Legs


def hit(name: str, cosine: float, lexical: float | None = None) -> Hit:
    return Hit(
        chunk_id=uuid.uuid5(uuid.NAMESPACE_URL, name),
        doc_id=name,
        version="v1",
        index=0,
        score=cosine,
        text=name,
        lexical=lexical,
    )


# Dense prefers a, b, c; lexical prefers d (an exact rare term), then a, then e.
LEGS = Legs(
    dense=[hit("a", 0.80), hit("b", 0.78), hit("c", 0.60)],
    sparse=[hit("d", 0.55, 12.0), hit("a", 0.80, 6.0), hit("e", 0.20, 3.0)],
)


def names(hits: list[Hit]) -> list[str]:
    return [h.doc_id for h in hits]


def test_one_leg_alone() -> None:
    assert names(fuse(LEGS, 5, method="dense")) == ["a", "b", "c"]
    assert names(fuse(LEGS, 5, method="sparse")) == ["d", "a", "e"]


def test_rank_fusion_rewards_the_chunk_both_legs_found() -> None:
    fused = fuse(LEGS, 5, method="rrf", rrf_k=60)
    assert names(fused) == ["a", "d", "b", "c", "e"]  # c and e tie (rank 3 each): dense first
    assert fused[0].fused == pytest.approx(1 / 61 + 1 / 62)


def test_weighted_fusion_scales_bm25_by_the_best_and_mixes_it_with_the_cosine() -> None:
    fused = fuse(LEGS, 5, method="weighted", weight=0.75)
    by_name = {h.doc_id: h.fused for h in fused}
    assert by_name["a"] == pytest.approx(0.75 * 0.80 + 0.25 * 6.0 / 12.0)
    assert by_name["d"] == pytest.approx(0.75 * 0.55 + 0.25 * 1.0)
    assert by_name["b"] == pytest.approx(0.75 * 0.78)  # the lexical leg did not find it: 0 there
    assert names(fused) == ["a", "d", "b", "c", "e"]
    # A heavier lexical side lets the exact-term chunk win.
    assert names(fuse(LEGS, 1, method="weighted", weight=0.3)) == ["d"]


def test_fused_hits_keep_their_cosine_and_bm25_and_the_chunk_appears_once() -> None:
    fused = fuse(LEGS, 10, method="weighted")
    assert len(fused) == len({h.chunk_id for h in fused}) == 5
    a = next(h for h in fused if h.doc_id == "a")
    assert (a.score, a.lexical) == (0.80, 6.0)


def test_top_k_cuts_and_empty_legs_are_fine() -> None:
    assert len(fuse(LEGS, 2, method="rrf")) == 2
    dense_only = Legs(dense=LEGS.dense, sparse=[])
    assert names(fuse(dense_only, 5, method="weighted")) == ["a", "b", "c"]
    assert fuse(Legs([], []), 5) == []


def test_an_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fusion method"):
        fuse(LEGS, 5, method="borda")  # type: ignore[arg-type]
