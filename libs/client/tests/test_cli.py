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
        (["trace", "abc"], "give at least 8 hex digits of the trace id"),
    ],
)
def test_errors_are_one_line_and_a_non_zero_exit(args: list[str], message: str, tmp_path: Path) -> None:
    port = closed_port()
    result = CliRunner().invoke(main, [a.format(port=port) for a in args], env={"RAGBUS_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"ragbus: error: {message.format(port=port)}"]
    assert "Traceback" not in result.output


def test_a_file_that_is_not_utf8_is_refused_rather_than_mangled(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    result = CliRunner().invoke(main, ["ingest", str(tmp_path)], env={"RAGBUS_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert "latin1.txt is not UTF-8 text; use --by-reference" in result.output
