"""The OpenAI surface, pure: messages -> question, answers -> OpenAI's shapes, SSE framing, errors."""

from __future__ import annotations

import json

import pytest

from ragbus.gateway import domain
from ragbus.gateway.domain import ChatCompletionRequest, ChatMessage, GatewayError

from .conftest import CITATION, answered, blocked


def messages(*pairs: tuple[str, object]) -> list[ChatMessage]:
    return [ChatMessage.model_validate({"role": r, "content": c}) for r, c in pairs]


def test_the_question_is_the_last_user_message_and_earlier_turns_are_not_part_of_it() -> None:
    history = messages(
        ("system", "You are helpful."),
        ("user", "When was the Eiffel Tower completed?"),
        ("assistant", "In 1889 [1]."),
        ("user", "  How tall is it?  "),
    )
    assert domain.question_from(history) == "How tall is it?"


def test_text_parts_are_joined_and_other_parts_are_refused_by_their_type() -> None:
    parts = [{"type": "text", "text": "What does"}, {"type": "text", "text": "the report say?"}]
    assert domain.question_from(messages(("user", parts))) == "What does\nthe report say?"
    image = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "x"}}]
    with pytest.raises(GatewayError, match="'image_url' are not supported") as caught:
        domain.question_from(messages(("user", image)))
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "history",
    [
        [("user", "Hi"), ("assistant", "Hello")],  # the last message is not the user's
        [("user", "   ")],  # empty
        [("user", None)],
    ],
)
def test_a_request_without_a_question_is_a_400_naming_messages(history: list[tuple[str, object]]) -> None:
    with pytest.raises(GatewayError) as caught:
        domain.question_from(messages(*history))
    assert caught.value.status == 400
    assert caught.value.body()["error"]["param"] == "messages"


def test_query_options_take_the_ragbus_extension_and_the_stream_flag_only() -> None:
    request = ChatCompletionRequest.model_validate(
        {
            "model": "ragbus",
            "messages": [{"role": "user", "content": "q"}],
            "stream": True,
            "temperature": 0.2,  # accepted, ignored
            "ragbus": {"top_k": 3, "max_tier": 1, "doc_ids": ["a"]},
        }
    )
    options = domain.query_options(request)
    assert (options.top_k, options.max_tier, options.doc_ids, options.stream) == (3, 1, ["a"], True)
    with pytest.raises(ValueError, match="retrieve_only"):
        ChatCompletionRequest.model_validate(
            {
                "model": "ragbus",
                "messages": [{"role": "user", "content": "q"}],
                "ragbus": {"retrieve_only": True},
            }
        )


def test_a_completion_has_openais_shape_with_the_citations_and_numbered_sources() -> None:
    answer = answered("q-1")
    completion = domain.chat_completion(answer, "ragbus", trace_id="t" * 32, created=1_700_000_000)
    assert completion["id"] == "chatcmpl-q-1"
    assert completion["object"] == "chat.completion"
    assert completion["created"] == 1_700_000_000
    message = completion["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert (
        message["content"] == "It was completed in 1889 [1].\n\nSources:\n[1] The Eiffel Tower (eiffel), p. 2"
    )
    assert message["citations"] == [json.loads(CITATION.model_dump_json(exclude_none=True))]
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"] == {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132}
    assert completion["ragbus"] == {
        "query_id": "q-1",
        "status": "answered",
        "tier": 1,
        "tier_reason": "tier 1 accepted",
        "cost_usd": 0.0001,
        "cached": False,
        "trace_id": "t" * 32,
    }


def test_sources_name_the_document_once_when_it_has_no_other_title_and_give_pages_and_sections() -> None:
    plain = CITATION.model_copy(update={"n": 2, "title": "faq", "doc_id": "faq", "page": 3, "last_page": 4})
    sectioned = CITATION.model_copy(
        update={"n": 3, "title": None, "page": None, "section": ["Intro", "Goals"]}
    )
    assert domain.sources_text([plain, sectioned]) == (
        "\n\nSources:\n[2] faq, pp. 3-4\n[3] eiffel, § Intro > Goals"
    )
    assert domain.sources_text([]) == ""


def test_an_sse_frame_is_one_data_line_and_a_blank_line_even_for_text_with_newlines() -> None:
    frame = domain.sse(domain.chunk("q", "ragbus", 1, {"content": "two\nlines"}))
    assert frame.endswith(b"\n\n")
    assert frame.count(b"\n") == 2
    assert frame.startswith(b"data: ")
    body = json.loads(frame[len(b"data: ") :])
    assert body["object"] == "chat.completion.chunk"
    assert body["choices"] == [
        {"index": 0, "delta": {"content": "two\nlines"}, "logprobs": None, "finish_reason": None}
    ]
    assert domain.DONE == b"data: [DONE]\n\n"


def test_a_blocked_question_is_a_400_with_the_guards_reason_in_openais_error_shape() -> None:
    error = domain.answer_error(blocked("q-2"))
    assert error.status == 400
    assert error.body() == {
        "error": {
            "message": "the question reads as a prompt injection",
            "type": "invalid_request_error",
            "param": None,
            "code": "content_policy_violation",
            "query_id": "q-2",
            "check": "input.injection",
        }
    }


def test_a_tenants_rate_quota_is_a_429_with_retry_after() -> None:
    error = domain.answer_error(blocked("q-3", check="input.rate", retry_after_s=2.2))
    assert (error.status, error.type, error.code) == (429, "rate_limit_error", "rate_limit_exceeded")
    assert error.headers == {"Retry-After": "3"}


def test_a_failed_answer_is_a_502_server_error() -> None:
    failed = answered("q-4").model_copy(update={"status": "failed", "reason": "no model answered"})
    error = domain.answer_error(failed)
    assert (error.status, error.type, error.code) == (502, "server_error", "answer_failed")
    assert "no model answered" in error.message
