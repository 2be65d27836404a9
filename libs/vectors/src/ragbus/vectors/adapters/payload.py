"""What both Qdrant adapters store per point, and the checks they share before writing or searching."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

import numpy as np

from ragbus.common.near_duplicates import bands
from ragbus.vectors.errors import DimensionMismatch, InputRejected
from ragbus.vectors.ports import DENSE, ChunkPoint, DocumentFields, Hit, Legs, StoredDigests
from ragbus.vectors.sparse import SparseVector

# Payload keys. `tenant`, `doc_id`, `groups` and `minhash_bands` are indexed (keyword; `tenant` as the
# tenant key).
TENANT = "tenant"
DOC_ID = "doc_id"
VERSION = "version"
FLAGS = "flags"
DIGEST = "digest"
CONTENT_DIGEST = "content_digest"
GROUPS = "groups"
MINHASH = "minhash"
MINHASH_BANDS = "minhash_bands"
# A document version's points are written `state: pending` (searches skip them) and published all at
# once (`state: live`, `published_at`) when the version is complete: see VectorStore.publish.
STATE = "state"
PENDING = "pending"
LIVE = "live"
PUBLISHED_AT = "published_at"


def to_payload(point: ChunkPoint) -> dict[str, Any]:
    payload: dict[str, Any] = {
        TENANT: point.tenant,
        DOC_ID: point.doc_id,
        VERSION: point.version,
        "index": point.index,
        "text": point.text,
        "metadata": dict(point.metadata),
    }
    if point.title is not None:
        payload["title"] = point.title
    # Written only when there is something to say, so unflagged points keep the payload they had.
    if point.flags:
        payload[FLAGS] = list(point.flags)
    if point.injection_score is not None:
        payload["injection_score"] = point.injection_score
    if point.injection_spans:
        payload["injection_spans"] = [[start, end] for start, end in point.injection_spans]
    if point.digest is not None:
        payload[DIGEST] = point.digest
    if point.content_digest is not None:
        payload[CONTENT_DIGEST] = point.content_digest
    # Absent, not empty, for a document open to the whole tenant: the access filter reads "no groups"
    # as open, so points written before groups existed stay visible.
    if point.groups:
        payload[GROUPS] = sorted(point.groups)
    if point.pending:
        payload[STATE] = PENDING
    if point.minhash:
        payload[MINHASH] = list(point.minhash)
        payload[MINHASH_BANDS] = bands(point.minhash)
    if point.char_span is not None:
        payload["char_span"] = list(point.char_span)
    if point.section:
        payload["section"] = list(point.section)
    if point.page is not None:
        payload["page"] = point.page
        payload["last_page"] = point.last_page if point.last_page is not None else point.page
    return payload


def point_uuid(point_id: Any) -> UUID:
    """A point id as the stores hand it back (a UUID, or its string) as a UUID."""
    return point_id if isinstance(point_id, UUID) else UUID(str(point_id))


# What `stored_digests` reads of a point.
DIGEST_KEYS = [TENANT, DIGEST, CONTENT_DIGEST, STATE]


def stored_digest(tenant: str, payload: Mapping[str, Any] | None) -> StoredDigests | None:
    """A retrieved point's digests, from its payload (None: the point is not the tenant's)."""
    p = payload or {}
    if p.get(TENANT) != tenant:
        return None
    digest, content = p.get(DIGEST), p.get(CONTENT_DIGEST)
    return StoredDigests(
        str(digest) if digest is not None else None,
        str(content) if content is not None else None,
        pending=p.get(STATE) == PENDING,
    )


# What `rewrite_payloads` reads of a stored point before it replaces the payload.
PUBLICATION_KEYS = [TENANT, VERSION, STATE, PUBLISHED_AT]


def rewritten(point: ChunkPoint, stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The payload that replaces a stored point's (read with PUBLICATION_KEYS) when only what the point
    says changes; None when the stored point is not the tenant's. A point that stays in its version keeps
    its publication: rewriting a live point pending would hide it until the version is published again."""
    p = stored or {}
    if p.get(TENANT) != point.tenant:
        return None
    payload = to_payload(point)
    if p.get(VERSION) == point.version:
        payload.pop(STATE, None)
        payload.update({k: p[k] for k in (STATE, PUBLISHED_AT) if p.get(k) is not None})
    return payload


def document_payload(fields: DocumentFields) -> dict[str, Any]:
    """The payload keys `set_document_fields` sets on every point of a document version. `groups` is set
    empty rather than removed (one operation): the access filter reads empty as open to all, as absent."""
    return {"title": fields.title, "metadata": dict(fields.metadata), GROUPS: sorted(fields.groups)}


def metadata_key(key: str) -> str:
    """The payload path of a document metadata key."""
    return f"metadata.{key}"


def to_hit(
    point_id: Any, score: float, payload: Mapping[str, Any] | None, *, lexical: float | None = None
) -> Hit:
    p = payload or {}
    injection_score = p.get("injection_score")
    return Hit(
        chunk_id=point_uuid(point_id),
        doc_id=str(p.get(DOC_ID, "")),
        version=str(p.get(VERSION, "")),
        index=int(p.get("index", 0)),
        score=float(score),
        text=str(p.get("text", "")),
        title=p.get("title"),
        metadata=dict(p.get("metadata") or {}),
        flags=tuple(str(f) for f in p.get(FLAGS) or ()),
        injection_score=float(injection_score) if injection_score is not None else None,
        injection_spans=tuple((int(a), int(b)) for a, b in p.get("injection_spans") or ()),
        lexical=lexical,
        char_span=(int(span[0]), int(span[1])) if (span := p.get("char_span")) else None,
        section=tuple(str(h) for h in p.get("section") or ()),
        page=int(p["page"]) if p.get("page") is not None else None,
        last_page=int(p["last_page"]) if p.get("last_page") is not None else None,
    )


def cosines(query: Sequence[float], vectors: Sequence[Sequence[float] | None]) -> list[float]:
    """The cosine of `query` with each stored vector (stores keep cosine vectors normalised; a
    missing vector scores 0)."""
    q = np.asarray(query, dtype=np.float64)
    norm = float(np.linalg.norm(q))
    if norm > 0:
        q = q / norm
    return [float(np.dot(q, np.asarray(v, dtype=np.float64))) if v is not None else 0.0 for v in vectors]


def checked_vectors(vectors: Sequence[Sequence[float]], dim: int | None) -> list[list[float]]:
    """The vectors as lists of floats, after checking their size (when the store's is known) and values."""
    rows: list[list[float]] = []
    expected = dim
    for vector in vectors:
        # numpy arrays (and their float32 items) become plain floats; lists pass as they are.
        row: list[float] = vector.tolist() if hasattr(vector, "tolist") else list(vector)
        if expected is None:
            expected = len(row)
        if len(row) != expected:
            raise DimensionMismatch(expected, len(row))
        # A NaN would not fail the write; it would make every later search that meets it score NaN.
        # (NaN and infinities propagate through the sum; a C-speed check, unlike a per-element one.)
        if not math.isfinite(sum(row)):
            raise InputRejected("vector has NaN or infinite values")
        rows.append(row)
    return rows


def _dense_of(vector: Any) -> list[float] | None:
    """The named dense vector of a point as a store returned it (None when it did not)."""
    if isinstance(vector, Mapping):
        dense = vector.get(DENSE)
        return dense if isinstance(dense, list) else None
    return None


def lexical_terms(hybrid: bool, sparse: SparseVector | None) -> SparseVector | None:
    """The terms to run the lexical leg with: none on a store without sparse vectors, or for a question
    without an index term (only stopwords)."""
    return sparse if hybrid and sparse is not None and sparse.indices else None


def to_legs(query: Sequence[float], dense: Sequence[Any], lexical: Sequence[Any]) -> Legs:
    """Both legs' scored points (each with `id`, `score`, `payload`; lexical ones with their dense
    `vector` too) as hits: every hit with its cosine, lexical ones with their BM25 score as well.

    One version per document: between a new version's publication and the removal of the old one,
    both are live, and a search returns the hits of the one published last."""
    dense, lexical = _latest_versions(dense, lexical)
    scores = cosines(query, [_dense_of(p.vector) for p in lexical])
    return Legs(
        [to_hit(p.id, p.score, p.payload) for p in dense],
        [to_hit(p.id, c, p.payload, lexical=p.score) for p, c in zip(lexical, scores, strict=True)],
    )


def _latest_versions(dense: Sequence[Any], lexical: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """Both legs without the hits of a document's older live version (by `published_at`; points
    written before publication existed count as published at 0)."""
    newest: dict[str, tuple[float, str]] = {}
    for p in (*dense, *lexical):
        payload = p.payload or {}
        doc, version = str(payload.get(DOC_ID, "")), str(payload.get(VERSION, ""))
        stamp = (float(payload.get(PUBLISHED_AT) or 0), version)
        if doc not in newest or stamp > newest[doc]:
            newest[doc] = stamp

    def keep(p: Any) -> bool:
        payload = p.payload or {}
        return str(payload.get(VERSION, "")) == newest[str(payload.get(DOC_ID, ""))][1]

    return [p for p in dense if keep(p)], [p for p in lexical if keep(p)]


def match_values(values: Sequence[str | int]) -> list[str] | list[int]:
    """A filter's values as Qdrant's any-of match takes them (SearchFilter checked they are one kind)."""
    if all(isinstance(v, str) for v in values):
        return [str(v) for v in values]
    return [int(v) for v in values]


def similar_from(tenant: str, payloads: Iterable[Mapping[str, Any] | None]) -> dict[str, list[int]]:
    """doc id -> signature from scrolled records' payloads (the tenant's only)."""
    found: dict[str, list[int]] = {}
    for payload in payloads:
        p = payload or {}
        if p.get(TENANT) == tenant and p.get(MINHASH):
            found[str(p.get(DOC_ID, ""))] = [int(v) for v in p[MINHASH]]
    return found
