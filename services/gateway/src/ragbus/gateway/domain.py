"""The OpenAI-compatible surface, pure: chat messages in -> a ragbus question; an answer -> OpenAI's
response and stream-chunk shapes; errors in OpenAI's shape; Server-Sent Events framing. No I/O.

What maps to what (README.md of this service):
- the last message must be the user's: it is the question. The stack keeps a conversation's earlier
  turns itself (the orchestrator's memory, by `conversation_id`), and `queries.submitted` carries no
  history, so earlier messages are not sent: a client that wants follow-ups to see them names the
  conversation (`conversation_id` in the body, e.g. the SDK's `extra_body`). System messages are ignored
  (the stack's prompts are its own).
- the answer's citations go in `citations` on the choice's message (or on the last stream chunk's
  delta), and as numbered sources after the text (`[1] title (doc_id)`), so a client that shows only
  the text still shows where it comes from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ragbus.common.events import (
    GROUPS_DOC,
    AnswersCompleted,
    Citation,
    DocsSubmitted,
    Group,
    Id,
    MetadataValue,
    QueryOptions,
)
from ragbus.common.ids import uuid7
from ragbus.gateway.ports import DocumentState, TraceSpan

# --- requests --------------------------------------------------------------------------------------


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    """An image, audio or file part: the stack reads text only, so these are refused by name."""

    model_config = ConfigDict(extra="ignore")

    type: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart | OtherPart] | None = None
    name: str | None = None


class RagbusOptions(BaseModel):
    """`ragbus` in the body: the per-request knobs of `queries.submitted` a caller may set."""

    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(default=None, ge=1, le=100)
    min_tier: int | None = Field(default=None, ge=0)
    max_tier: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_latency_ms: float | None = Field(default=None, gt=0)
    doc_ids: list[str] | None = None
    cache: bool = True


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request. Sampling parameters (temperature, max_tokens, ...) are
    accepted and ignored: the stack's cascade chooses the model and its settings."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # ragbus extensions (ignored by OpenAI itself; send them with the SDK's `extra_body`):
    conversation_id: Id | None = Field(
        default=None, description="the conversation whose earlier turns the stack keeps (follow-ups)"
    )
    ragbus: RagbusOptions | None = None


class FeedbackRequest(BaseModel):
    """`POST /v1/feedback`: a rating of an answer, by the query id its completion carries
    (`ragbus.query_id`, or the completion id without `chatcmpl-`)."""

    model_config = ConfigDict(extra="ignore")

    query_id: Id
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=10_000)


class DocumentRequest(BaseModel):
    """`POST /v1/documents`: a document as text (JSON). `doc_id` names it (the same id again replaces
    its earlier version); without one the gateway makes one."""

    model_config = ConfigDict(extra="forbid")

    doc_id: Id = Field(default_factory=lambda: str(uuid7()))
    text: str = Field(min_length=1)
    title: str | None = Field(default=None, max_length=1000)
    content_type: str | None = Field(default=None, description="MIME type of the text; default text/plain")
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    groups: list[Group] = Field(default_factory=list, max_length=100, description=GROUPS_DOC)
    chunking: Literal["tokens", "headings", "sentences"] | None = None
    wait: bool = Field(default=False, description="answer once it is indexed (201), not at once (202)")

    def event(self) -> DocsSubmitted:
        return DocsSubmitted(
            doc_id=self.doc_id, text=self.text, title=self.title, content_type=self.content_type,
            metadata=self.metadata, groups=self.groups, chunking=self.chunking,
        )  # fmt: skip


class DocumentUpload(BaseModel):
    """`POST /v1/documents` as `multipart/form-data`: a file in any format the ingest service reads
    (PDF, DOCX, HTML, Markdown, text, CSV, JSON, ...), sent to it as it is (`content` of
    `docs.submitted`), with the same fields as the JSON request beside it."""

    model_config = ConfigDict(extra="forbid")

    doc_id: Id = Field(default_factory=lambda: str(uuid7()))
    content: bytes = Field(min_length=1, description="the file's bytes")
    filename: str | None = Field(default=None, max_length=255)
    title: str | None = Field(default=None, max_length=1000)
    content_type: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    groups: list[Group] = Field(default_factory=list, max_length=100)
    chunking: Literal["tokens", "headings", "sentences"] | None = None
    wait: bool = False

    def event(self) -> DocsSubmitted:
        return DocsSubmitted(
            doc_id=self.doc_id, content=self.content, filename=self.filename, title=self.title,
            content_type=self.content_type, metadata=self.metadata, groups=self.groups,
            chunking=self.chunking,
        )  # fmt: skip


# What a part's Content-Type says when the browser does not know the file's type: then the ingest
# service tells it by the file name's extension.
_UNKNOWN_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
# The form fields of an upload beside the file (the JSON request's fields, less `text`).
UPLOAD_FIELDS = ("doc_id", "title", "content_type", "metadata", "groups", "chunking", "wait")


def upload_fields(
    fields: Sequence[tuple[str, str]], filename: str | None, part_type: str | None
) -> dict[str, Any]:
    """An upload's form fields as `DocumentUpload`'s input (the file's bytes go in beside them):
    `groups` repeated or comma-separated, `metadata` a JSON object, the type from the `content_type`
    field, else the file part's own (unless it is only `application/octet-stream`). 400 for a field the
    upload does not have, or metadata that is not a JSON object."""
    out: dict[str, Any] = {"filename": PurePosixPath(filename).name if filename else None}
    groups: list[str] = []
    for name, value in fields:
        if name not in UPLOAD_FIELDS:
            raise GatewayError(
                400, f"unknown form field {name!r}: an upload has `file` and {', '.join(UPLOAD_FIELDS)}",
                param=name,
            )  # fmt: skip
        if name == "groups":
            groups += [g.strip() for g in value.split(",") if g.strip()]
        elif name == "metadata":
            try:
                metadata = json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise GatewayError(400, f"metadata is not JSON: {exc}", param="metadata") from None
            if not isinstance(metadata, dict):
                raise GatewayError(400, "metadata must be a JSON object", param="metadata")
            out["metadata"] = metadata
        elif value.strip():
            out[name] = value.strip()
    if groups:
        out["groups"] = groups
    media = (part_type or "").split(";")[0].strip().lower()
    if "content_type" not in out and media not in _UNKNOWN_TYPES:
        out["content_type"] = part_type
    return out


# Room a document's event needs on the bus beside its data: the CloudEvents attributes, the Kafka
# headers (trace context, the trust signature) and the record's framing, with a margin.
ENVELOPE_ROOM = 4096


def check_fits(event: DocsSubmitted, max_message_bytes: int) -> None:
    """413 when the document's event would not fit in one message on the bus (KAFKA_MAX_REQUEST_SIZE):
    said now, rather than as a failure once the broker refuses it."""
    size = len(event.model_dump_json(exclude_none=True)) + ENVELOPE_ROOM
    if size > max_message_bytes:
        raise GatewayError(
            413,
            f"the document is too large for one message on the bus: about {size} bytes as an event "
            f"(a file's bytes grow by a third in base64), over KAFKA_MAX_REQUEST_SIZE ({max_message_bytes}); "
            "index larger files by reference (`ragbus ingest --by-reference`)",
            code="request_too_large",
        )


def document_json(state: DocumentState) -> dict[str, Any]:
    """A document's state as `GET /v1/documents/{id}` shows it."""
    body = {
        "object": "document",
        "id": state.doc_id,
        "status": state.status,
        "title": state.title,
        "version": state.version,
        "chunks": state.chunks,
        "unchanged_chunks": state.unchanged,
        "removed_chunks": state.removed,
        "duplicate_of": state.duplicate_of,
        "reason": state.reason,
        "submitted_at": state.submitted_at.isoformat() if state.submitted_at else None,
        "updated_at": state.updated_at.isoformat() if state.updated_at else None,
    }
    return {k: v for k, v in body.items() if v is not None}


class GatewayError(Exception):
    """An HTTP error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # OpenAI's own field name
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param, **self.extra)


def error_body(
    message: str, type: str, code: str | None = None, param: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code, **extra}}


def _text(message: ChatMessage) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for part in message.content:
        if not isinstance(part, TextPart):
            raise GatewayError(400, f"content parts of type {part.type!r} are not supported: send text")
        texts.append(part.text)
    return "\n".join(texts)


def question_from(messages: Sequence[ChatMessage]) -> str:
    """The question: the last message, which must be the user's and hold some text."""
    last = messages[-1]
    if last.role != "user":
        raise GatewayError(400, "the last message must be the user's question", param="messages")
    question = _text(last).strip()
    if not question:
        raise GatewayError(400, "the user's question is empty", param="messages")
    return question


def query_options(request: ChatCompletionRequest) -> QueryOptions:
    knobs = request.ragbus.model_dump(exclude_none=True) if request.ragbus else {}
    return QueryOptions(**knobs, stream=request.stream)


# --- answers ---------------------------------------------------------------------------------------


def citation_json(c: Citation) -> dict[str, Any]:
    return c.model_dump(mode="json", exclude_none=True)


def sources_text(citations: Sequence[Citation]) -> str:
    """The numbered sources appended to the answer text, one line each: `[1] title (doc_id), p. 3`."""
    if not citations:
        return ""
    lines = []
    for c in citations:
        name = f"{c.title} ({c.doc_id})" if c.title and c.title != c.doc_id else c.doc_id
        place = ""
        if c.page is not None:
            last = c.last_page or c.page
            place = f", p. {c.page}" if last == c.page else f", pp. {c.page}-{last}"
        if c.section:
            place += f", § {' > '.join(c.section)}"
        lines.append(f"[{c.n}] {name}{place}")
    return "\n\nSources:\n" + "\n".join(lines)


def usage(answer: AnswersCompleted) -> dict[str, int]:
    prompt = answer.cascade.prompt_tokens if answer.cascade else 0
    completion = answer.cascade.completion_tokens if answer.cascade else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def ragbus_info(answer: AnswersCompleted, trace_id: str | None) -> dict[str, Any]:
    """What the stack adds about the answer (an extra top-level field; OpenAI clients ignore it)."""
    info: dict[str, Any] = {"query_id": answer.query_id, "status": answer.status}
    if answer.conversation_id:
        info["conversation_id"] = answer.conversation_id
    if answer.cascade is not None:
        info["tier"] = answer.cascade.tier
        info["tier_reason"] = answer.cascade.reason
        info["cost_usd"] = round(sum(a.cost_usd for a in answer.cascade.attempts), 8)
        info["cached"] = answer.cascade.cache is not None
    if trace_id:
        info["trace_id"] = trace_id
    return info


def completion_id(query_id: str) -> str:
    return f"chatcmpl-{query_id}"


def chat_completion(
    answer: AnswersCompleted, model: str, *, trace_id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """The `chat.completion` object of an answered question."""
    return {
        "id": completion_id(answer.query_id),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": answer.answer + sources_text(answer.citations),
                    "refusal": None,
                    "citations": [citation_json(c) for c in answer.citations],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(answer),
        "ragbus": ragbus_info(answer, trace_id),
    }


def chunk(
    query_id: str,
    model: str,
    created: int,
    delta: Mapping[str, Any],
    *,
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One `chat.completion.chunk` of a stream."""
    return {
        "id": completion_id(query_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "logprobs": None, "finish_reason": finish_reason}],
        **extra,
    }


def usage_chunk(query_id: str, model: str, created: int, answer: AnswersCompleted) -> dict[str, Any]:
    """The last chunk when `stream_options.include_usage`: no choices, the usage."""
    return {
        "id": completion_id(query_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(answer),
    }


def sse(data: Mapping[str, Any] | str) -> bytes:
    """One Server-Sent Event: `data: <json>` and a blank line (JSON holds no raw newline)."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"data: {text}\n\n".encode()


DONE = sse("[DONE]")


def answer_error(answer: AnswersCompleted) -> GatewayError:
    """The HTTP error for an answer that is not `answered`: the guard's reason, in OpenAI's shape.

    Blocked by the tenant's rate quota: 429 with Retry-After. Blocked by any other guard check: 400
    `content_policy_violation`, as OpenAI answers a request its moderation refuses. Failed: 502."""
    reason = answer.reason or answer.answer or "no reason given"
    extra = {"query_id": answer.query_id}
    failed = [v for v in answer.verdicts if not v.passed]
    if answer.status == "blocked":
        rate = next((v for v in failed if v.check == "input.rate"), None)
        if rate is not None:
            wait = float(rate.details.get("retry_after_s", 1) or 1)
            return GatewayError(
                429,
                reason,
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(max(1, round(wait + 0.499)))},
                extra=extra,
            )
        check = failed[0].check if failed else None
        return GatewayError(400, reason, code="content_policy_violation", extra={**extra, "check": check})
    message = f"the stack could not answer: {reason}"
    return GatewayError(502, message, type="server_error", code="answer_failed")


def model_list(models: Sequence[str], created: int = 0, owner: str = "ragbus") -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": created, "owned_by": owner} for m in models],
    }


# --- traces ----------------------------------------------------------------------------------------

# The attributes of a span that the trace endpoint shows: ragbus's own (query id, tier, cache, guard
# verdicts, points embedded, ...), the bus's (topic, partition, offset, batch size), the model call's and
# the error's. Others (message keys, SDK and host details) stay in the trace store.
_SHOWN_ATTRIBUTES = ("ragbus.", "messaging.", "gen_ai.", "error.", "http.")
_HIDDEN_ATTRIBUTES = frozenset({"messaging.kafka.message.key", "messaging.message.conversation_id"})
MAX_ATTRIBUTES = 40
MAX_VALUE_CHARS = 300
MAX_SPANS = 2000


def _shown(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[: MAX_VALUE_CHARS - 1] + "…"
    if isinstance(value, list):
        return [_shown(v) for v in value[:50]]
    return value


def span_json(span: TraceSpan, t0_ns: int) -> dict[str, Any]:
    """One span as `GET /v1/requests/{id}/trace` shows it: times in ms (from the trace's first span
    and absolute), its parent, and the subset of its attributes worth showing."""
    attributes = {
        k: _shown(v)
        for k, v in sorted(span.attributes.items())
        if k.startswith(_SHOWN_ATTRIBUTES) and k not in _HIDDEN_ATTRIBUTES
    }
    return {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "service": span.service,
        "kind": span.kind,
        "status": span.status,
        "start": _iso_ns(span.start_ns),
        "offset_ms": round((span.start_ns - t0_ns) / 1e6, 3),
        "duration_ms": round(max(span.end_ns - span.start_ns, 0) / 1e6, 3),
        "attributes": dict(list(attributes.items())[:MAX_ATTRIBUTES]),
    }


def _iso_ns(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{moment}.{rest // 1000:06d}Z"


def trace_json(
    request_id: str, trace_id: str | None, spans: Sequence[TraceSpan], jaeger_url: str | None
) -> dict[str, Any]:
    """A request's trace: its spans in start order (parents before their children when they start
    together), each with its offset from the first and its duration, and the link to Jaeger's page of
    the trace when the gateway knows one."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.parent_id is not None, s.end_ns))[:MAX_SPANS]
    t0 = ordered[0].start_ns if ordered else 0
    end = max((s.end_ns for s in ordered), default=t0)
    return {
        "object": "trace",
        "request_id": request_id,
        "trace_id": trace_id,
        "duration_ms": round((end - t0) / 1e6, 3),
        "spans": [span_json(s, t0) for s in ordered],
        "jaeger_url": jaeger_url,
    }
