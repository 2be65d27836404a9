"""`ragbus sync` against a real broker and a stand-in stack: what each pass publishes (only what changed),
what it reports, and `--watch` picking up a file written while it runs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from ragbus.common import topics
from ragbus.common.events import DocsIndexed, DocsSubmitted

from .conftest import FakeStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def indexed(doc_id: str, *, chunks: int = 1, removed: int = 0, unchanged: int = 0) -> DocsIndexed:
    return DocsIndexed(
        doc_id=doc_id,
        version="v1",
        chunk_ids=[uuid.uuid4() for _ in range(chunks)],
        upserted=chunks - unchanged,
        unchanged=unchanged,
        removed=removed,
    )


async def answer(stack: FakeStack, submitted: int, deleted: int = 0) -> list[str]:
    """Answer `submitted` documents and `deleted` deletions; what was asked, in order of topic."""
    asked = []
    for _ in range(submitted):
        request = await stack.request(topics.DOCS_SUBMITTED)
        asked.append(f"submitted {request.data.doc_id}")
        await stack.reply(
            request, indexed(request.data.doc_id, removed=1 if "edited" in request.data.doc_id else 0)
        )
    for _ in range(deleted):
        request = await stack.request(topics.DOCS_DELETED)
        asked.append(f"deleted {request.data.doc_id}")
        await stack.reply(
            request, DocsIndexed(doc_id=request.data.doc_id, version="", deleted=True, removed=2)
        )
    return sorted(asked)


async def test_a_second_pass_sends_only_what_changed(
    fake_stack: FakeStack, tmp_path: Path, ragbus_home: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("same", "edited", "gone"):
        (docs / f"{name}.md").write_text(f"# {name}\n\ntext of {name}")

    task = asyncio.create_task(answer(fake_stack, 3))
    first = await fake_stack.cli("sync", str(docs))
    assert first.exit_code == 0, first.output
    assert await task == ["submitted edited.md", "submitted gone.md", "submitted same.md"]
    assert f"{docs}: 3 added, 0 updated, 0 unchanged, 0 deleted (3 chunks indexed in " in first.stdout

    (docs / "edited.md").write_text("# edited\n\nnew text")
    (docs / "gone.md").unlink()
    (docs / "new.md").write_text("# new\n\nnew document")
    task = asyncio.create_task(answer(fake_stack, 2, deleted=1))
    second = await fake_stack.cli("sync", str(docs))
    assert second.exit_code == 0, second.output
    assert await task == ["deleted gone.md", "submitted edited.md", "submitted new.md"]
    assert "1 added, 1 updated, 1 unchanged, 1 deleted (2 chunks indexed" in second.stdout

    # Nothing changed: nothing published at all, and it says so.
    third = await fake_stack.cli("sync", str(docs))
    assert third.exit_code == 0, third.output
    assert "0 added, 0 updated, 3 unchanged, 0 deleted (0 chunks indexed" in third.stdout
    with pytest.raises(TimeoutError):
        await fake_stack.request(topics.DOCS_SUBMITTED, timeout=1)


async def test_a_touched_file_is_not_sent_and_new_readers_are_a_metadata_update(
    fake_stack: FakeStack, tmp_path: Path, ragbus_home: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    memo = docs / "memo.md"
    memo.write_text("# memo\n\ntext of the memo")
    os.utime(memo, ns=(1_765_000_000 * 10**9,) * 2)

    async def stack(**counts: int) -> DocsSubmitted:
        request = await fake_stack.request(topics.DOCS_SUBMITTED)
        await fake_stack.reply(request, indexed("memo.md").model_copy(update=counts))
        data: DocsSubmitted = request.data
        return data

    task = asyncio.create_task(stack())
    assert (await fake_stack.cli("sync", str(docs))).exit_code == 0
    sent = await task
    assert sent.metadata == {"path": str(memo), "modified": "2025-12-06T05:46:40Z"}

    # Touched, not edited: the time alone is no change, nothing is sent.
    os.utime(memo, ns=(1_766_000_000 * 10**9,) * 2)
    touched = await fake_stack.cli("sync", str(docs))
    assert "0 added, 0 updated, 1 unchanged, 0 deleted (0 chunks indexed" in touched.stdout
    with pytest.raises(TimeoutError):
        await fake_stack.request(topics.DOCS_SUBMITTED, timeout=1)

    # New readers: sent, and the stack finds the text stored as it is (payloads only).
    task = asyncio.create_task(stack(upserted=0, updated=1))
    regrouped = await fake_stack.cli("sync", str(docs), "--groups", "hr")
    assert regrouped.exit_code == 0, regrouped.output
    sent = await task
    assert (sent.groups, sent.metadata["modified"]) == (["hr"], "2025-12-17T19:33:20Z")
    assert "  updated (metadata) memo.md  1 chunk" in regrouped.stdout
    assert (
        "0 added, 1 updated (1 metadata only), 0 unchanged, 0 deleted (1 chunks indexed" in regrouped.stdout
    )


async def test_a_missing_directory_deletes_nothing(
    fake_stack: FakeStack, tmp_path: Path, ragbus_home: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("a")
    task = asyncio.create_task(answer(fake_stack, 1))
    assert (await fake_stack.cli("sync", str(docs))).exit_code == 0
    await task
    docs.rename(tmp_path / "elsewhere")  # an unmounted share looks like this
    result = await fake_stack.cli("sync", str(docs))
    assert result.exit_code != 0
    assert "not a directory (nothing synced, nothing deleted)" in result.output
    with pytest.raises(TimeoutError):
        await fake_stack.request(topics.DOCS_DELETED, timeout=1)


async def test_watch_sends_a_file_written_while_it_runs_and_stops_on_interrupt(
    fake_stack: FakeStack, tmp_path: Path, ragbus_home: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "first.md").write_text("# first\n\nthere before the watch")
    env = {**os.environ, **fake_stack.env, "RAGBUS_HOME": str(ragbus_home)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from ragbus.client.cli import main; main()",
        "sync",
        str(docs),
        "--watch",
        "--interval",
        "2",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        assert await answer(fake_stack, 1) == ["submitted first.md"]
        lines: list[str] = []
        while not lines or not lines[-1].startswith("watching"):
            lines.append((await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip())
        (docs / "later.md").write_text("# later\n\nwritten while it watched")
        assert await answer(fake_stack, 1) == ["submitted later.md"]
        (docs / "first.md").unlink()
        assert await answer(fake_stack, 0, deleted=1) == ["deleted first.md"]
        while "1 deleted" not in lines[-1]:
            lines.append((await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip())
        assert "0 added, 0 updated, 1 unchanged, 1 deleted" in lines[-1]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            raise
    # Ctrl-C ends the watch where it stands, as a finished command.
    assert "stopped watching" in rest.decode()
    assert proc.returncode == 0
