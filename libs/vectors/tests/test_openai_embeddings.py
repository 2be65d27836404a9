"""The OpenAI-compatible adapter against a local stub server: batching, normalisation, error kinds."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from ragbus.common.errors import DependencyUnavailable
from ragbus.vectors.adapters.openai_embeddings import OpenAIEmbedder
from ragbus.vectors.errors import EmbedderUnavailable, InputRejected

from .stub_openai import Stub, stub_server


@pytest.fixture
def stub() -> Iterator[Stub]:
    with stub_server(dim=32) as s:
        yield s


def make(stub: Stub, **kwargs: object) -> OpenAIEmbedder:
    options: dict[str, object] = {"model": "stub-embed", "base_url": stub.base_url, "max_retries": 0}
    options.update(kwargs)
    return OpenAIEmbedder(**options)  # type: ignore[arg-type]


async def test_texts_go_in_batches_and_come_back_in_order_normalised(stub: Stub) -> None:
    e = make(stub, batch_size=2, api_key="sk-test")
    texts = [f"text number {i}" for i in range(5)]
    vectors = await e.embed_documents(texts)
    assert [r["input"] for r in stub.requests] == [texts[0:2], texts[2:4], texts[4:5]]
    assert {r["model"] for r in stub.requests} == {"stub-embed"}
    assert stub.headers[0]["authorization"] == "Bearer sk-test"
    expected = [stub.embedder.vector(t) for t in texts]  # the stub sent them x3 and reversed
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert e.dim == 32
    await e.aclose()


async def test_dimensions_are_requested_and_known_up_front(stub: Stub) -> None:
    e = make(stub, dimensions=16)
    assert e.dim == 16
    [v] = await e.embed_documents(["hello"])
    assert len(v) == 16
    assert stub.requests[-1]["dimensions"] == 16
    await e.aclose()


async def test_the_dimension_of_an_unknown_model_is_learnt_by_ping(stub: Stub) -> None:
    e = make(stub)
    with pytest.raises(RuntimeError, match="ping"):
        _ = e.dim
    await e.ping()
    assert e.dim == 32
    await e.aclose()


@pytest.mark.parametrize("status", [429, 500, 503, 401])
async def test_a_server_that_cannot_serve_now_is_retryable(stub: Stub, status: int) -> None:
    stub.fail_status = status
    e = make(stub)
    with pytest.raises(EmbedderUnavailable) as caught:
        await e.embed_documents(["x"])
    assert isinstance(caught.value, DependencyUnavailable)
    await e.aclose()


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_an_input_the_server_refuses_is_not_retryable(stub: Stub, status: int) -> None:
    stub.fail_status = status
    e = make(stub)
    with pytest.raises(InputRejected, match="stub says no"):
        await e.embed_documents(["x"])
    await e.aclose()


async def test_an_unreachable_endpoint_is_retryable() -> None:
    e = OpenAIEmbedder(model="m", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2)
    with pytest.raises(EmbedderUnavailable, match="unreachable"):
        await e.embed_query("x")
    await e.aclose()
