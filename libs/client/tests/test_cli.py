"""The `ragbus` CLI as a user meets it: what it reads, and errors as one line."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from ragbus.client.cli import _documents, main


def test_a_directory_gives_one_document_per_text_file_with_a_stable_id(tmp_path: Path) -> None:
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide" / "getting started.md").write_text("# Getting started\n\nInstall it.")
    (tmp_path / "notes.txt").write_text("plain notes")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    docs = list(_documents(str(tmp_path), None, by_reference=False))
    assert [(d.doc_id, d.title, d.content_type) for d in docs] == [
        ("guide/getting_started.md", "Getting started", "text/markdown"),
        ("notes.txt", "notes", None),
    ]
    assert docs[0].text == "# Getting started\n\nInstall it."
    by_ref = list(_documents(str(tmp_path / "notes.txt"), "my-notes", by_reference=True))
    assert [(d.doc_id, d.text, d.uri) for d in by_ref] == [("my-notes", None, str(tmp_path / "notes.txt"))]


def test_a_directory_sends_each_format_the_ingest_reads_text_inline_and_binary_by_reference(
    tmp_path: Path,
) -> None:
    for name, body in {
        "page.html": "<title>Page</title><p>Hi</p>",
        "rows.csv": "a,b\n1,2\n",
        "items.json": '{"a": 1}',
        "lines.jsonl": '{"a": 1}\n',
    }.items():
        (tmp_path / name).write_text(body)
    (tmp_path / "paper.pdf").write_bytes(b"%PDF-1.7")
    (tmp_path / "guide.docx").write_bytes(b"PK\x03\x04")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8")

    docs = {d.doc_id: d for d in _documents(str(tmp_path), None, by_reference=False)}

    assert sorted(docs) == ["guide.docx", "items.json", "lines.jsonl", "page.html", "paper.pdf", "rows.csv"]
    assert {k: d.content_type for k, d in docs.items() if d.text is not None} == {
        "page.html": "text/html",
        "rows.csv": "text/csv",
        "items.json": "application/json",
        "lines.jsonl": "application/x-ndjson",
    }
    assert docs["page.html"].title is None  # the ingest service reads its <title>
    for binary in ("paper.pdf", "guide.docx"):
        assert (docs[binary].text, docs[binary].uri, docs[binary].title) == (
            None,
            str((tmp_path / binary).resolve()),
            None,
        )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["ask", "hello", "--bootstrap", "127.0.0.1:{port}"],
            "cannot reach the Kafka broker at 127.0.0.1:{port} (is `ragbus up` running? set KAFKA_BOOTSTRAP)",
        ),
        (["ingest", "/does/not/exist"], "/does/not/exist: no such file or directory"),
        (["trace", "abc"], "give at least 8 hex digits of the trace id, or a query id"),
        (["ask", "q", "--where", "groups"], "--where takes KEY=VALUE, not 'groups'"),
        (["ingest", "-", "--meta", "=x"], "--meta takes KEY=VALUE, not '=x'"),
        (
            ["ask", "q", "--top-k", "500"],
            "invalid request: top_k is at most 100 for an answer, 1000 with retrieve_only",
        ),
        (
            ["eval", "retrieval", "{tmp}"],
            "{tmp}: no qrels for split 'train' (qrels/train.tsv or train-qrels.tsv)",
        ),
    ],
)
def test_errors_are_one_line_and_a_non_zero_exit(args: list[str], message: str, tmp_path: Path) -> None:
    port = closed_port()
    given = [a.format(port=port, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(main, given, env={"RAGBUS_HOME": str(tmp_path)}, input="text")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"ragbus: error: {message.format(port=port, tmp=tmp_path)}"]
    assert "Traceback" not in result.output


def test_a_file_that_is_not_utf8_is_refused_rather_than_mangled(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    result = CliRunner().invoke(main, ["ingest", str(tmp_path)], env={"RAGBUS_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert "latin1.txt is not UTF-8 text; use --by-reference" in result.output


def test_key_value_options_collect_repeated_keys() -> None:
    from ragbus.client.cli import _pairs

    assert _pairs(("groups=hr", "source=wiki", "groups= legal "), "--where") == {
        "groups": ["hr", "legal"],
        "source": ["wiki"],
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{file}"], "a questions file is asked against the documents of a tenant: pass --tenant"),
        (
            ["{file}", "--tenant", "t", "--tiers", "0,gpt"],
            "--tiers: 'gpt' is neither a tier number nor 'cascade'",
        ),
        (["{file}", "--tenant", "t", "--claim-template", "Claim:"], "--claim-template must contain {{text}}"),
        (["{tmp}"], "{tmp}: no qrels for split 'train' (qrels/train.tsv or train-qrels.tsv)"),
        (["{bad}", "--tenant", "t"], "{bad}: {bad}, row 1: no 'question' (or 'text') field"),
    ],
)
def test_eval_answers_refuses_bad_input_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    file, bad = tmp_path / "q.jsonl", tmp_path / "bad.jsonl"
    file.write_text('{"question": "Where do poison messages go?"}\n', encoding="utf-8")
    bad.write_text('{"answer": "x"}\n', encoding="utf-8")
    names = {"file": file, "bad": bad, "tmp": tmp_path}
    given = ["eval", "answers", *(a.format(**names) for a in args)]
    result = CliRunner().invoke(main, given, env={"RAGBUS_HOME": str(tmp_path)})
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [f"ragbus: error: {message.format(**names)}"]
