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
from ragbus.gateway.ports import DocumentState

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
