"""What the gateway does per request, over its ports: authenticate a key, ask and answer, stream.

No HTTP here: errors are GatewayError (OpenAI's shape, with the status), a stream is an async iterator
of Server-Sent Event frames (`app.py`'s web layer sends them as they come).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ragbus.common.events import AnswersDelta
from ragbus.common.ids import uuid7
from ragbus.gateway import domain
from ragbus.gateway.domain import ChatCompletionRequest, GatewayError
from ragbus.gateway.keys import bearer_token, hash_key, looks_like_key
from ragbus.gateway.ports import (
    Answered,
    Answerer,
    AnswerTimeout,
    AnswerUnavailable,
    ApiKey,
    DocumentLog,
    DocumentState,
    KeyStore,
    RequestFilter,
    RequestRecord,
    RequestStory,
    Scope,
    TraceSource,
    TraceUnavailable,
)
from ragbus.gateway.ratelimit import RateLimiter


@dataclass
class GatewayDeps:
    answerer: Answerer
    keys: KeyStore
    documents: DocumentLog
    requests: RequestRecord | None = None  # the monitor's record; None: `/v1/requests` is not served
    # Where the requests' spans are (the span file, Jaeger); None: `/v1/requests/{id}/trace` is not served.
    traces: TraceSource | None = None


# A document as submitted: text (JSON), or a file (multipart).
Submission = domain.DocumentRequest | domain.DocumentUpload


@dataclass
class KeyCache:
    """Verified keys by hash, for `ttl_s` seconds: a request then costs no database round trip. A key
    revoked meanwhile keeps working until its entry expires (at most `ttl_s`)."""

    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, tuple[ApiKey, float]] = field(default_factory=dict)

    def get(self, key_hash: str) -> ApiKey | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] <= self.clock():
            self._entries.pop(key_hash, None)
            return None
        return entry[0]

    def put(self, key_hash: str, key: ApiKey) -> None:
        if self.ttl_s > 0:
            if len(self._entries) > 10_000:  # bounded: drop the expired ones first, else everything
                now = self.clock()
                self._entries = {h: e for h, e in self._entries.items() if e[1] > now}
                if len(self._entries) > 10_000:
                    self._entries.clear()
            self._entries[key_hash] = (key, self.clock() + self.ttl_s)


def _unauthorized(message: str) -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


async def authenticate(
    keys: KeyStore, cache: KeyCache, authorization: str | None, api_key: str | None = None
) -> ApiKey:
    """The key a request presents (`Authorization: Bearer <key>`, or `X-API-Key`), verified: it decides
    the tenant. 401 when there is none or it is not an active key."""
    token = bearer_token(authorization) or (api_key or "").strip() or None
    if token is None:
        raise _unauthorized("no API key: send it as `Authorization: Bearer <key>` (`ragbus keys create`)")
    if not looks_like_key(token):
        raise _unauthorized("the API key is not valid")
    key_hash = hash_key(token)
    found = cache.get(key_hash)
    if found is None:
        found = await keys.find(key_hash)
        if found is None:
            raise _unauthorized("the API key is not valid (unknown or revoked)")
        cache.put(key_hash, found)
    return found


def authorize(key: ApiKey, scope: Scope) -> None:
    """403 when the key lacks the scope the endpoint needs (RFC 6750's `insufficient_scope`). Checked
    before anything is looked up, so it tells nothing about what exists."""
    if not key.allows(scope):
        raise GatewayError(
            403,
            f"this API key may not do this: it needs the scope `{scope}`, and has "
            f"{', '.join(key.scopes)} (`ragbus keys create --scope {scope}`)",
            type="permission_error",
            code="insufficient_scope",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )


def check_rate(limiter: RateLimiter, key: ApiKey, per_minute: int, burst: int) -> None:
    """429 with Retry-After when the key has used up its requests (a token bucket per key)."""
    rate = (key.rate_per_minute or per_minute) / 60
    wait = limiter.take(key.key_id, rate, burst)
    if wait > 0:
        seconds = max(1, int(wait + 0.999))
        raise GatewayError(
            429,
            f"rate limit of this API key reached ({round(rate * 60)} requests per minute); "
            f"retry in {seconds} s",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(seconds)},
        )


async def feedback(answerer: Answerer, key: ApiKey, request: domain.FeedbackRequest) -> dict[str, Any]:
    """Rate an answer for the key's tenant; `known` says whether the tenant asked that question (a
    rating of another tenant's query id is kept, flagged, and tells nothing about it)."""
    query_id = request.query_id.removeprefix("chatcmpl-")
    try:
        known = await answerer.feedback(key.tenant, query_id, request.rating, request.comment)
    except (AnswerTimeout, AnswerUnavailable) as exc:
        raise _unavailable(exc) from exc
    return {"object": "feedback", "query_id": query_id, "rating": request.rating, "known": known}


async def submit_document(
    deps: GatewayDeps, key: ApiKey, request: Submission, *, max_message_bytes: int
) -> DocumentState:
    """Record the document as submitted for the key's tenant (`index_document` then publishes it and
    waits for the stack). 413 when its event would not fit in a message on the bus."""
    domain.check_fits(request.event(), max_message_bytes)
    title = request.title or (request.filename if isinstance(request, domain.DocumentUpload) else None)
    return await deps.documents.submitted(key.tenant, request.doc_id, str(uuid7()), title)


async def index_document(deps: GatewayDeps, state: DocumentState, request: Submission) -> DocumentState:
    """Publish a submitted document, wait for the stack to index it, and record how it went (never
    raises: the outcome, a failure included, is what GET /v1/documents/{id} shows)."""
    try:
        indexed = await deps.answerer.ingest(state.tenant, request.event())
    except (AnswerTimeout, AnswerUnavailable) as exc:
        done = dataclasses.replace(state, status="failed", reason=str(exc))
    else:
        done = dataclasses.replace(
            state,
            status="skipped" if indexed.skipped else "indexed",
            version=indexed.version,
            chunks=indexed.chunks,
            unchanged=indexed.unchanged,
            removed=indexed.removed,
            duplicate_of=indexed.duplicate_of,
        )
    await deps.documents.finished(done)
    return done


async def document(deps: GatewayDeps, key: ApiKey, doc_id: str) -> DocumentState:
    """A document of the key's tenant as the gateway saw it go; 404 for any other (another tenant's
    document is as absent as one that does not exist)."""
    state = await deps.documents.get(key.tenant, doc_id)
    if state is None:
        raise GatewayError(404, f"no document {doc_id!r} was submitted through the gateway", code="not_found")
    return state


async def delete_document(deps: GatewayDeps, key: ApiKey, doc_id: str) -> dict[str, Any]:
    """Remove a document of the key's tenant from the index (every version); wait until it is gone."""
    try:
        deleted = await deps.answerer.delete(key.tenant, doc_id)
    except (AnswerTimeout, AnswerUnavailable) as exc:
        raise _unavailable(exc) from exc
    state = await deps.documents.get(key.tenant, doc_id)
    if state is not None:
        await deps.documents.finished(dataclasses.replace(state, status="deleted", removed=deleted.removed))
    return {"object": "document.deleted", "id": doc_id, "deleted": True, "removed_chunks": deleted.removed}


def _unavailable(exc: Exception) -> GatewayError:
    if isinstance(exc, AnswerTimeout):
        message = f"the stack did not answer in time: {exc}"
        return GatewayError(504, message, type="server_error", code="timeout")
    return GatewayError(503, f"the stack is unavailable: {exc}", type="server_error", code="unavailable")


async def _ask(
    answerer: Answerer,
    key: ApiKey,
    request: ChatCompletionRequest,
    question: str,
    on_delta: Callable[[AnswersDelta], None] | None = None,
) -> Answered:
    return await answerer.ask(
        key.tenant,  # from the key, never from the body
        question,
        conversation_id=request.conversation_id,
        groups=key.groups,
        options=domain.query_options(request),
        on_delta=on_delta,
    )


async def complete(answerer: Answerer, key: ApiKey, request: ChatCompletionRequest) -> dict[str, Any]:
    """A non-streaming chat completion: the answer as checked, or its reason as an error."""
    question = domain.question_from(request.messages)
    try:
        answered = await _ask(answerer, key, request, question)
    except (AnswerTimeout, AnswerUnavailable) as exc:
        raise _unavailable(exc) from exc
    if answered.answer.status != "answered":
        raise domain.answer_error(answered.answer)
    return domain.chat_completion(answered.answer, request.model, trace_id=answered.trace_id)


async def stream(answerer: Answerer, key: ApiKey, request: ChatCompletionRequest) -> AsyncIterator[bytes]:
    """A streaming chat completion: returns once the answer has begun, so that a question refused
    before any text (the input guard, a quota) is an HTTP error, not a stream; then the iterator yields
    the SSE frames: the draft text as `answers.delta` brings it, the sources and citations, `[DONE]`.

    The pieces are drafts (docs/cascade.md, "Streaming"): a `reset` piece (a tier's text withdrawn) is
    a chunk with `ragbus.reset`; the final chunk carries the answer as the guard checked it in
    `ragbus.answer`; an answer the output guard blocks after text was sent ends the stream with an
    error event (the SDK raises it) instead of `[DONE]`'s normal finish."""
    question = domain.question_from(request.messages)
    queue: asyncio.Queue[AnswersDelta] = asyncio.Queue()
    last_seq = -1

    def on_delta(piece: AnswersDelta) -> None:
        # A piece seen again (the bus delivers at least once; the client re-reads a log it thinks the
        # broker lost) is dropped: the pieces of one request come in `seq` order on one partition.
        nonlocal last_seq
        if piece.seq > last_seq:
            last_seq = piece.seq
            queue.put_nowait(piece)

    task = asyncio.create_task(_ask(answerer, key, request, question, on_delta=on_delta))
    getter = asyncio.create_task(queue.get())
    try:
        await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        first = getter.result() if getter.done() else None
        getter.cancel()
        if first is None and task.done():
            try:
                answered = task.result()
            except (AnswerTimeout, AnswerUnavailable) as exc:
                raise _unavailable(exc) from exc
            if answered.answer.status != "answered" and queue.empty():
                raise domain.answer_error(answered.answer)
    except BaseException:
        task.cancel()
        getter.cancel()
        raise
    return _frames(first, queue, task, request)


async def _frames(
    first: AnswersDelta | None,
    queue: asyncio.Queue[AnswersDelta],
    task: asyncio.Task[Answered],
    request: ChatCompletionRequest,
) -> AsyncIterator[bytes]:
    model, created = request.model, int(time.time())
    include_usage = bool(request.stream_options and request.stream_options.include_usage)
    query_id = first.query_id if first is not None else (task.result().answer.query_id)
    try:
        yield domain.sse(domain.chunk(query_id, model, created, {"role": "assistant", "content": ""}))
        if first is not None:
            for frame in _delta_frames(first, query_id, model, created):
                yield frame
        while not task.done() or not queue.empty():
            if queue.empty():
                getter = asyncio.create_task(queue.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    continue
                piece = getter.result()
            else:
                piece = queue.get_nowait()
            for frame in _delta_frames(piece, query_id, model, created):
                yield frame
        try:
            answered = task.result()
        except (AnswerTimeout, AnswerUnavailable) as exc:
            yield domain.sse(_unavailable(exc).body())
            return
        answer = answered.answer
        if answer.status != "answered":
            yield domain.sse(domain.answer_error(answer).body())  # the draft is withdrawn
            return
        tail = domain.sources_text(answer.citations)
        if tail:
            yield domain.sse(domain.chunk(query_id, model, created, {"content": tail}))
        info = domain.ragbus_info(answer, answered.trace_id) | {"answer": answer.answer}
        last = {"citations": [domain.citation_json(c) for c in answer.citations]}
        yield domain.sse(domain.chunk(query_id, model, created, last, finish_reason="stop", ragbus=info))
        if include_usage:
            yield domain.sse(domain.usage_chunk(query_id, model, created, answer))
        yield domain.DONE
    finally:
        if not task.done():  # the client went away: stop waiting for its answer
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _delta_frames(piece: AnswersDelta, query_id: str, model: str, created: int) -> list[bytes]:
    frames = []
    if piece.reset:
        withdrawn = {"reset": True, "tier": piece.tier}
        frames.append(domain.sse(domain.chunk(query_id, model, created, {"content": ""}, ragbus=withdrawn)))
    if piece.text:
        frames.append(domain.sse(domain.chunk(query_id, model, created, {"content": piece.text})))
    return frames


def _record(deps: GatewayDeps) -> RequestRecord:
    if deps.requests is None:
        raise GatewayError(501, "this gateway does not read the monitor's record", code="not_implemented")
    return deps.requests


async def request_story(deps: GatewayDeps, key: ApiKey, request_id: str) -> RequestStory:
    """The story of a request of the key's tenant, by its query id (a completion's `id` too) or
    correlation id. 404 when the tenant has none by that id: another tenant's request is not found,
    not forbidden, so a key cannot learn which ids exist elsewhere."""
    request_id = request_id.removeprefix("chatcmpl-")
    story = await _record(deps).story(key.tenant, request_id)
    if story is None:
        raise GatewayError(404, f"no request {request_id} on record for this key's tenant", code="not_found")
    return story


async def requests(deps: GatewayDeps, key: ApiKey, query: RequestFilter) -> list[RequestStory]:
    """The key's tenant's requests, newest first (the others' never)."""
    return await _record(deps).find(key.tenant, query)


async def documents(deps: GatewayDeps, key: ApiKey, limit: int) -> list[DocumentState]:
    """The key's tenant's documents submitted through the gateway (not deleted), the latest first."""
    return await deps.documents.list(key.tenant, limit=limit)


_TRACE_ID = re.compile(r"[0-9a-f]{32}")


async def request_trace(deps: GatewayDeps, key: ApiKey, request_id: str) -> dict[str, Any]:
    """The trace of a request of the key's tenant, from its spans (404 as for its story: another
    tenant's request is not found). No spans yet (they are exported in batches) or no trace id on
    record: an empty list. 503 when the trace source cannot be read now."""
    if deps.traces is None:
        raise GatewayError(
            501,
            "this gateway reads no traces: its spans go over OTLP to a collector it cannot query; "
            "set GATEWAY_JAEGER_URL to Jaeger's query service",
            code="not_implemented",
        )
    story = await request_story(deps, key, request_id)
    trace_id = story.get("trace_id")
    if not (isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id)):
        return domain.trace_json(story["query_id"], None, [], None)
    try:
        spans = await deps.traces.spans(trace_id)
    except TraceUnavailable as exc:
        raise GatewayError(
            503, f"the trace cannot be read now: {exc}", type="server_error", code="unavailable",
            headers={"Retry-After": "5"},
        ) from exc  # fmt: skip
    return domain.trace_json(story["query_id"], trace_id, spans, deps.traces.link(trace_id))
