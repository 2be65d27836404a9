"""`ragbus sync`'s planning, without a broker: which files a directory yields (globs, hidden files),
what changed since the manifest (added, updated, unchanged, deleted, touched), and the manifest itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ragbus.client.errors import CliError
from ragbus.client.sources import (
    AS_THEY_ARE,
    DocumentOptions,
    content_digest,
    find_files,
    modified_at,
    read_document,
)
from ragbus.client.sync import Entry, Manifest, manifest_path, options_key, plan


def tree(root: Path, files: dict[str, str]) -> None:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body)


def test_globs_choose_files_below_the_directory_and_exclude_wins(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            "a.md": "a",
            "docs/b.md": "b",
            "docs/drafts/c.md": "c",
            "notes.txt": "n",
            "build.log": "l",
            ".git/config.md": "hidden",
            "docs/.cache/d.md": "hidden",
        },
    )

    def ids(inc: tuple[str, ...] = (), exc: tuple[str, ...] = ()) -> list[str]:
        return [f.doc_id for f in find_files(tmp_path, inc, exc)]

    # Default: every format ragbus reads, hidden folders left out.
    assert ids() == ["a.md", "docs/b.md", "docs/drafts/c.md", "notes.txt"]
    # `*` crosses folders; a bare name pattern matches at any depth.
    assert ids(("*.md",), ("docs/drafts/*",)) == ["a.md", "docs/b.md"]
    # An include takes any suffix (read as text).
    assert ids(("*.log",)) == ["build.log"]
    assert ids((), ("*.txt", "drafts")) == ["a.md", "docs/b.md", "docs/drafts/c.md"]


def test_the_digest_follows_content_and_metadata_not_the_file_time(tmp_path: Path) -> None:
    tree(tmp_path, {"a.md": "# A\n\ntext"})
    [file] = find_files(tmp_path)
    first = content_digest(read_document(file))
    os.utime(tmp_path / "a.md", ns=(1, 1))
    [touched] = find_files(tmp_path)
    assert touched.mtime_ns != file.mtime_ns
    # The file's time goes with its document as metadata, but a new time alone is no change.
    assert read_document(touched).metadata == {
        "path": str(tmp_path / "a.md"),
        "modified": "1970-01-01T00:00:00Z",
    }
    assert read_document(file).metadata["modified"] == modified_at(file.mtime_ns)
    assert content_digest(read_document(touched)) == first
    (tmp_path / "a.md").write_text("# A\n\ntext, edited")
    [edited] = find_files(tmp_path)
    assert content_digest(read_document(edited)) != first
    # The same bytes sent by reference are another request: another digest.
    assert content_digest(read_document(file, by_reference=True)) != first
    assert "modified" in read_document(file, by_reference=True).metadata


def entry_of(root: Path, doc_id: str) -> Entry:
    [file] = [f for f in find_files(root) if f.doc_id == doc_id]
    return Entry(content_digest(read_document(file)), file.size, file.mtime_ns)


def test_a_plan_sorts_files_into_added_updated_unchanged_and_deleted(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    tree(root, {"same.md": "same", "touched.md": "touched", "edited.md": "old", "gone.md": "gone"})
    manifest = Manifest(tmp_path / "m.json", str(root), "t")
    manifest.entries = {d: entry_of(root, d) for d in ("same.md", "touched.md", "edited.md", "gone.md")}
    manifest.options = options_key(AS_THEY_ARE, by_reference=False)  # the last pass set nothing either
    (root / "gone.md").unlink()
    (root / "edited.md").write_text("new text")
    os.utime(root / "touched.md", ns=(10**18, 10**18))
    tree(root, {"new.md": "new"})

    read: list[str] = []

    def reading(file, **kw):  # type: ignore[no-untyped-def]
        read.append(file.doc_id)
        return read_document(file, **kw)

    work = plan(find_files(root), manifest, read=reading)
    assert [c.document.doc_id for c in work.added] == ["new.md"]
    assert [c.document.doc_id for c in work.updated] == ["edited.md"]
    assert sorted(f.doc_id for f in work.unchanged) == ["same.md", "touched.md"]
    assert work.deleted == ["gone.md"]
    # Same size and mtime: not even read. Touched: read, found unchanged, its new mtime to be recorded.
    assert sorted(read) == ["edited.md", "new.md", "touched.md"]
    assert work.touched["touched.md"].mtime_ns == 10**18


def test_metadata_given_to_the_pass_is_part_of_what_changed(tmp_path: Path) -> None:
    tree(tmp_path, {"a.md": "a"})
    manifest = Manifest(tmp_path / "m.json", str(tmp_path), "t", options=options_key(AS_THEY_ARE, False))
    manifest.entries["a.md"] = entry_of(tmp_path, "a.md")
    assert plan(find_files(tmp_path), manifest).unchanged  # size and mtime on record: not even read
    # Other options for every document: the same size and mtime no longer say the document is the same.
    work = plan(find_files(tmp_path), manifest, options=DocumentOptions(groups=("hr",)))
    assert [c.document.groups for c in work.updated] == [("hr",)]
    work = plan(find_files(tmp_path), manifest, options=DocumentOptions(metadata={"team": "ops"}))
    assert [c.document.metadata["team"] for c in work.updated] == ["ops"]
    # A manifest from before options were kept: every file is read once (and sent only if it moved).
    manifest.options = None
    assert [f.doc_id for f in plan(find_files(tmp_path), manifest).unchanged] == ["a.md"]


def test_a_file_time_is_iso_utc_to_the_second() -> None:
    assert modified_at(1_765_000_000_123_456_789) == "2025-12-06T05:46:40Z"


def test_the_manifest_survives_a_round_trip_and_refuses_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "sync" / "m.json"
    manifest = Manifest(path, "/docs", "acme", {"a.md": Entry("d1", 3, 7)}, options="k1")
    manifest.save()
    again = Manifest.load(path, root="/docs", tenant="acme")
    assert (again.entries, again.options) == ({"a.md": Entry("d1", 3, 7)}, "k1")
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]  # no temporary file left behind
    path.write_text("{not json")
    with pytest.raises(CliError, match=r"cannot read the sync manifest .*\(remove it"):
        Manifest.load(path, root="/docs", tenant="acme")
    path.write_text(json.dumps({"version": 99, "documents": {}}))
    with pytest.raises(CliError, match="version 99"):
        Manifest.load(path, root="/docs", tenant="acme")
    assert Manifest.load(tmp_path / "none.json", root="/docs", tenant="acme").entries == {}


def test_each_directory_tenant_and_deployment_has_its_own_manifest(tmp_path: Path) -> None:
    a = manifest_path(tmp_path, Path("/docs"), "acme", "")
    assert a == manifest_path(tmp_path, Path("/docs/../docs"), "acme", "")
    assert (
        len(
            {
                a,
                manifest_path(tmp_path, Path("/docs"), "other", ""),
                manifest_path(tmp_path, Path("/docs"), "acme", "staging."),
                manifest_path(tmp_path, Path("/wiki"), "acme", ""),
            }
        )
        == 4
    )


def test_a_dataset_gives_one_document_per_record(tmp_path: Path) -> None:
    from ragbus.client.sources import RecordFields, read_records

    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text(
        '{"_id": "4983", "title": "Microstructural development", "text": "Alterations of the architecture.",'
        ' "year": 2001, "metadata": {}}\n\n'
        '{"_id": "5836", "title": "", "text": "Induction of myelodysplasia."}\n'
    )
    docs = read_records(jsonl, RecordFields(id="_id"))
    assert [(d.doc_id, d.title, d.text) for d in docs] == [
        ("4983", "Microstructural development", "Alterations of the architecture."),
        ("5836", None, "Induction of myelodysplasia."),
    ]
    assert docs[0].metadata == {"year": 2001, "source": str(jsonl)}  # plain fields only
    rows = tmp_path / "faq.csv"
    rows.write_text("key,question,answer\nq1,How do I reset it?,Hold the button.\nq 2,Why?,Because.\n")
    faq = read_records(rows, RecordFields(id="key", text=("question", "answer"), title="question"))
    assert [(d.doc_id, d.text, d.title) for d in faq] == [
        ("q1", "How do I reset it?\n\nHold the button.", "How do I reset it?"),
        ("q_2", "Why?\n\nBecause.", "Why?"),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"text": "no id"}\n', r"corpus.jsonl:1: the record has no 'id' \(set --id-field\)"),
        ('{"id": "a", "text": ""}\n', r"corpus.jsonl:1: the record has no text in text"),
        (
            '{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n',
            r"corpus.jsonl:2: the id 'a' is there twice",
        ),
        ("[1, 2]\n", r"corpus.jsonl:1: a record must be a JSON object"),
        ('{"id": \n', r"corpus.jsonl: Expecting value"),
    ],
)
def test_a_bad_record_is_named_not_skipped(tmp_path: Path, body: str, message: str) -> None:
    from ragbus.client.sources import RecordFields, read_records

    (tmp_path / "corpus.jsonl").write_text(body)
    with pytest.raises(CliError, match=message):
        read_records(tmp_path / "corpus.jsonl", RecordFields())
