"""The request's story on both stores: what `request_summary` (migration 0007) says of a request and what
`find_requests` returns, in PostgreSQL and in `domain.summarize` (the in-memory store), the same."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from ragbus.common.events import AnswersCompleted, CacheHit, Cascade, QueriesRejected, Verdict
from ragbus.common.ids import uuid7
from ragbus.monitor.adapters.memory import InMemoryEventStore
from ragbus.monitor.adapters.postgres import PostgresEventStore
from ragbus.monitor.ports import EventStore, RequestQuery

from .stories import ANSWER, QUESTION, REDACTED, TRACE, at, chunk_of, make_story, traced


async def record_story(store: EventStore, **kwargs: object) -> None:
    story = make_story(**kwargs)  # type: ignore[arg-type]
    await store.record_batch([traced(e) for e in story.all], [])


class StoryContract:
    """Subclasses provide `store`."""

    async def test_the_whole_story_of_an_answered_request(self, store: EventStore) -> None:
        story = make_story()
        await store.record_batch([traced(e) for e in story.all], [])

        s = await store.request_summary("acme", "q-1")

        assert s is not None
        assert (s.question, s.question_redacted, s.answer, s.status) == (
            QUESTION,
            REDACTED,
            ANSWER,
            "answered",
        )
        assert [(v["check"], v["passed"]) for v in s.input_verdicts] == [("injection", True), ("pii", True)]
        assert [v["check"] for v in s.verdicts] == ["pii", "citations"]
        assert (s.tier, s.model, s.prompt_version, s.cached_from) == (1, "smollm2-135m", "answer@3", None)
        assert s.attempts == [
            a.model_dump(mode="json", exclude_none=True) for a in story.drafted.data.cascade.attempts
        ]
        assert [(x["stage"], x["service"]) for x in s.stages] == [
            ("input guard", "guard"),
            ("retrieval", "orchestrator"),
            ("generation", "orchestrator"),
            ("output guard", "guard"),
        ]
        assert s.trace_id == TRACE
        assert (s.rating, s.feedback_comment) == ("down", "cite the trial")
        assert (s.prompt_tokens, s.completion_tokens) == (412, 57)
        assert s.latency_ms == pytest.approx(1234.0)
        # What was read, ranked, the version of each document as it was when read (v2 came later).
        assert s.sources == [
            {
                "rank": 1,
                "doc_id": "doc-17",
                "chunk_id": str(chunk_of("acme", "doc-17", 0)),
                "title": "Vitamin D and fractures",
                "score": 0.82,
                "cited": 1,
                "version": "v1",
            },
            {
                "rank": 2,
                "doc_id": "doc-3",
                "chunk_id": str(chunk_of("acme", "doc-3", 2)),
                "title": "Calcium intake",
                "score": 0.41,
                "cited": None,
                "version": "v7",
            },
        ]

    async def test_a_version_is_of_the_tenant_and_absent_when_never_indexed(self, store: EventStore) -> None:
        story = make_story()
        # Another tenant indexed a document of the same name: not acme's version.
        theirs = make_story(tenant="globex").indexed
        mine = [e for e in story.all if e not in story.indexed[:2]]  # acme's v1 and v7 never recorded
        await store.record_batch([traced(e) for e in (*theirs, *mine)], [])

        s = await store.request_summary("acme", "q-1")

        assert s is not None
        assert [(x["doc_id"], x["version"]) for x in s.sources] == [("doc-17", None), ("doc-3", None)]

    async def test_a_question_the_input_guard_rejected(self, store: EventStore) -> None:
        story = make_story()
        verdict = Verdict(check="injection", passed=False, score=0.97, reason="instruction override")
        rejected = story.submitted.follow(
            QueriesRejected(query_id="q-1", reason="prompt injection", verdicts=[verdict]),
            source="ragbus/guard",
        )
        completed = rejected.follow(
            AnswersCompleted(
                query_id="q-1", status="blocked", answer="", reason="prompt injection", verdicts=[verdict]
            ),
            source="ragbus/guard",
        )
        await store.record_batch([traced(e) for e in (story.submitted, rejected, completed)], [])

        s = await store.request_summary("acme", "q-1")

        assert s is not None
        assert (s.status, s.question_redacted, s.model, s.attempts, s.sources, s.stages) == (
            "blocked",
            None,
            None,
            [],
            [],
            [],
        )
        assert [v["check"] for v in s.input_verdicts] == ["injection"]
        assert (s.rating, s.feedback_comment) == (None, None)

    async def test_an_answer_from_the_semantic_cache(self, store: EventStore) -> None:
        story = make_story()
        hit = CacheHit(
            query_id="q-0", question="vitamin D and fractures?", similarity=0.97, cached_at=at(-5000)
        )
        cached = Cascade(tier=1, reason="semantic cache", cache=hit)
        drafted = story.drafted.model_copy(
            update={"data": story.drafted.data.model_copy(update={"cascade": cached})}
        )
        completed = story.completed.model_copy(
            update={"data": story.completed.data.model_copy(update={"cascade": cached})}
        )
        await store.record_batch(
            [traced(e) for e in (story.submitted, story.accepted, drafted, completed)], []
        )

        s = await store.request_summary("acme", "q-1")

        assert s is not None
        assert (s.cached_from, s.tier, s.model, s.attempts, s.cost_usd) == ("q-0", 1, None, [], 0)

    async def test_the_trace_is_the_first_traced_event_s_when_the_question_has_none(
        self, store: EventStore
    ) -> None:
        story = make_story()
        other = "0af7651916cd43dd8448eb211c80319c"
        records = [traced(story.submitted, None), traced(story.accepted, other), traced(story.completed)]
        await store.record_batch(records, [])

        s = await store.request_summary("acme", "q-1")

        assert s is not None
        assert s.trace_id == other

    async def test_stages_come_from_the_last_event_that_has_any_and_feedback_is_the_latest(
        self, store: EventStore
    ) -> None:
        story = make_story()
        # A completion without stages (a guard of an older version): the draft's are the latest there are.
        bare = story.completed.model_copy(
            update={"data": story.completed.data.model_copy(update={"stages": []})}
        )
        up = story.feedback.model_copy(
            update={
                "id": uuid7(),
                "time": at(9000),
                "data": story.feedback.data.model_copy(update={"rating": "up", "comment": None}),
            }
        )
        events = (story.submitted, story.accepted, story.drafted, bare, story.feedback, up)
        await store.record_batch([traced(e) for e in events], [])

        s = await store.request_summary("acme", "q-1")

        assert s is not None
        assert [x["stage"] for x in s.stages] == ["input guard", "retrieval", "generation"]
        assert (s.rating, s.feedback_comment) == ("up", None)

    # --- find_requests --------------------------------------------------------------------------------

    async def test_requests_are_found_newest_first_by_every_filter(self, store: EventStore) -> None:
        await record_story(store, tenant="acme", query_id="q-1", user_id="u-1", start_ms=0)
        await record_story(
            store, tenant="acme", query_id="q-2", user_id="u-2", start_ms=60_000, status="blocked"
        )
        await record_story(store, tenant="globex", query_id="q-3", user_id="u-1", start_ms=120_000)
        story = make_story(tenant="acme", query_id="q-4", start_ms=180_000)
        await store.record_batch([traced(story.submitted)], [])  # still pending

        async def ids(**kwargs: object) -> list[str | None]:
            return [s.query_id for s in await store.find_requests(RequestQuery(**kwargs))]  # type: ignore[arg-type]

        assert await ids() == ["q-4", "q-3", "q-2", "q-1"]
        assert await ids(tenant="acme") == ["q-4", "q-2", "q-1"]
        assert await ids(user_id="u-1") == ["q-3", "q-1"]
        assert await ids(since=at(60_000), until=at(180_000)) == ["q-3", "q-2"]
        assert await ids(status="blocked") == ["q-2"]
        assert await ids(status="pending") == ["q-4"]
        assert await ids(model="smollm2-135m", tenant="acme") == ["q-2", "q-1"]
        assert await ids(model="gpt-4o") == []
        assert await ids(limit=2) == ["q-4", "q-3"]
        assert await ids(request_id="q-3") == ["q-3"]
        [found] = await store.find_requests(RequestQuery(request_id="q-1", sources=True))
        assert found == await store.request_summary("acme", "q-1")
        assert [x["version"] for x in found.sources] == ["v1", "v7"]
        [lean] = await store.find_requests(RequestQuery(request_id="q-1"))  # no version look-ups
        assert lean == dataclasses.replace(found, sources=[])

    async def test_a_request_is_found_by_query_id_or_correlation_id_in_every_tenant(
        self, store: EventStore
    ) -> None:
        for tenant in ("acme", "globex"):
            story = make_story(tenant=tenant, query_id="q-1")
            moved = story.submitted.model_copy(update={"correlationid": "corr-1"})  # a client's own id
            await store.record_batch([traced(moved)], [])

        by_query = await store.find_requests(RequestQuery(request_id="q-1"))
        by_correlation = await store.find_requests(RequestQuery(request_id="corr-1"))
        assert [(s.tenant, s.correlation_id) for s in by_query] == [("acme", "corr-1"), ("globex", "corr-1")]
        assert by_correlation == by_query
        assert [
            s.tenant for s in await store.find_requests(RequestQuery(request_id="q-1", tenant="globex"))
        ] == ["globex"]
        assert await store.find_requests(RequestQuery(request_id="q-404")) == []

    async def test_ties_in_time_are_ordered_by_tenant_then_correlation_id(self, store: EventStore) -> None:
        for tenant, query_id in (("b", "q-2"), ("B", "q-1"), ("a", "q-9"), ("b", "q-10")):
            story = make_story(tenant=tenant, query_id=query_id)
            await store.record_batch([traced(story.submitted)], [])
        found = await store.find_requests(RequestQuery())
        # Byte order, as Python compares strings: upper case first, "q-10" before "q-2".
        assert [(s.tenant, s.correlation_id) for s in found] == [
            ("B", "q-1"),
            ("a", "q-9"),
            ("b", "q-10"),
            ("b", "q-2"),
        ]

    async def test_a_redelivered_story_is_still_one_request(self, store: EventStore) -> None:
        story = make_story()
        records = [traced(e) for e in story.all]
        await store.record_batch(records, [])
        await store.record_batch(records, [])
        found = await store.find_requests(RequestQuery(since=at(0) - timedelta(seconds=1)))
        assert [s.query_id for s in found] == ["q-1"]


class TestInMemoryStory(StoryContract):
    @pytest.fixture
    def store(self, memory_store: InMemoryEventStore) -> EventStore:
        return memory_store


@pytest.mark.integration
class TestPostgresStory(StoryContract):
    @pytest.fixture
    def store(self, pg_store: PostgresEventStore) -> EventStore:
        return pg_store
