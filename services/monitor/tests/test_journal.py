"""The journal: submissions on record with no outcome are published again as they were."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pytest

from ragbus.common.envelope import Envelope
from ragbus.common.events import DocsSubmitted
from ragbus.common.settings import monitor_schema_for
from ragbus.monitor.cli import summary
from ragbus.monitor.commands import cli_settings, parse_window
from ragbus.monitor.domain import resubmission
from ragbus.monitor.ports import EventRecord, EventStore
from ragbus.monitor.usecases import redrive

RecordOf = Callable[[Envelope[Any]], EventRecord]


def test_a_resubmission_is_the_recorded_event_itself(
    request_of: Callable[..., Any], record_of: RecordOf
) -> None:
    asked = request_of(question="Ist «RAG» 検索? 🚀").submitted
    again = resubmission(record_of(asked))
    # Same id, tenant, time and content: every consumer takes it for a redelivery.
    assert again.id == asked.id
    assert again.digest == asked.digest
    assert again.key == asked.key
    assert (again.tenantid, again.correlationid, again.time) == (
        asked.tenantid,
        asked.correlationid,
        asked.time,
    )
    assert again.data == asked.data


def test_an_uploaded_files_bytes_come_back_as_they_were_sent(record_of: RecordOf) -> None:
    """A document carried in its event (`content`, the gateway's uploads) is on record whole, so a
    redrive sends the very bytes again, not their base64 text."""
    pdf = b"%PDF-1.7\n\x00\xff\xfe binary \x89PNG"
    sent = Envelope.new(
        DocsSubmitted(doc_id="report", content=pdf, filename="report.pdf"),
        source="ragbus/gateway", tenant="acme", correlation_id="report@1",
    )  # fmt: skip
    record = record_of(sent)
    assert isinstance(record.data["content"], str)  # JSON on record: base64
    again = resubmission(record)
    assert again.data.content == pdf
    assert again.digest == sent.digest


def test_a_record_that_no_longer_parses_is_refused(
    request_of: Callable[..., Any], record_of: RecordOf
) -> None:
    record = record_of(request_of().submitted)
    with pytest.raises(ValueError, match="question"):
        resubmission(dataclasses.replace(record, data={"query_id": "q-1"}))


async def test_redrive_publishes_each_unfinished_submission_once_oldest_first(
    store: EventStore, request_of: Callable[..., Any], record_of: RecordOf
) -> None:
    answered, pending = request_of(query_id="q-1"), request_of(query_id="q-2")
    doc = Envelope.new(
        DocsSubmitted(doc_id="d-1", text="x"), source="cli", tenant="acme", correlation_id="d@1"
    )
    await store.record_batch([*(record_of(e) for e in answered.all), record_of(pending.submitted)], [])
    await store.record_event(record_of(doc))
    broken = dataclasses.replace(record_of(request_of(query_id="q-3").submitted), data={"query_id": "q-3"})
    await store.record_event(broken)
    published: list[Envelope[Any]] = []

    async def publish(event: Envelope[Any]) -> None:
        published.append(event)

    since = answered.submitted.time - timedelta(hours=1)
    dry = await redrive(store, publish, since=since, limit=100, dry_run=True)
    assert published == []
    assert len(dry.published) == 2

    done = await redrive(store, publish, since=since, limit=100)
    assert [e.id for e in published] == [pending.submitted.id, doc.id]  # by event time
    assert done.counts() == {"queries.submitted.v1": 1, "docs.submitted.v1": 1}
    assert [r.event_id for r, _ in done.unreadable] == [broken.event_id]
    assert summary(done, "re-drove") == (
        "re-drove 2 submissions with no outcome (queries.submitted.v1 1, docs.submitted.v1 1); "
        "1 on record no longer parse and were left alone"
    )


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("24h", timedelta(hours=24)),
        ("1.5d", timedelta(hours=36)),
    ],
)
def test_a_window_reads_as_a_time_span(text: str, span: timedelta) -> None:
    assert parse_window(text) == span


@pytest.mark.parametrize("text", ["", "24", "h", "-1h", "1w", "one day"])
def test_a_window_that_is_no_span_is_a_clear_error(text: str) -> None:
    with pytest.raises(click.BadParameter, match="time span"):
        parse_window(text)


def test_the_cli_reads_the_record_of_this_ragbus_home_unless_told_another_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGBUS_HOME", str(tmp_path / "second-stack"))
    monkeypatch.delenv("MONITOR_DB_SCHEMA", raising=False)
    assert cli_settings().db_schema == monitor_schema_for(
        tmp_path / "second-stack"
    )  # as `ragbus up` names it
    assert cli_settings().db_schema.startswith("ragbus_second_stack_")
    monkeypatch.setenv("MONITOR_DB_SCHEMA", "audit")
    assert cli_settings().db_schema == "audit"
