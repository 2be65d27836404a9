from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ragbus.common.errors import DependencyUnavailable
from ragbus.ingest.adapters.files import FileReader, FileRejected


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.md").write_text("# A\n\nHello.", encoding="utf-8")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret", encoding="utf-8")
    return secret


@pytest.fixture
def reader(root: Path) -> FileReader:
    return FileReader([root], max_bytes=1000)


@pytest.mark.parametrize("uri", ["{root}/sub/a.md", "file://{root}/sub/a.md", "file://localhost{root}/sub/a.md",
                                 "sub/a.md", "./sub/../sub/a.md"])  # fmt: skip
def test_reads_paths_and_file_uris_under_a_root(uri: str, root: Path, reader: FileReader) -> None:
    content = reader.read(uri.format(root=root))
    assert content.data == b"# A\n\nHello."
    assert content.resolved == (root / "sub" / "a.md").resolve()


def test_percent_escapes_in_file_uris_are_decoded(root: Path, reader: FileReader) -> None:
    (root / "with space.txt").write_text("x", encoding="utf-8")
    assert reader.read(f"file://{root}/with%20space.txt").data == b"x"


@pytest.mark.parametrize(
    "uri", ["{outside}", "file://{outside}", "../secret.txt", "sub/../../secret.txt", "/etc/passwd"]
)
def test_files_outside_the_roots_are_refused(uri: str, outside: Path, reader: FileReader) -> None:
    with pytest.raises(FileRejected, match="outside the allowed roots"):
        reader.read(uri.format(outside=outside))


def test_a_refusal_outside_the_roots_does_not_tell_whether_the_file_exists(
    reader: FileReader, tmp_path: Path
) -> None:
    with pytest.raises(FileRejected, match="outside the allowed roots"):
        reader.read(str(tmp_path / "does-not-exist.txt"))


def test_a_symlink_out_of_a_root_is_refused(root: Path, outside: Path, reader: FileReader) -> None:
    (root / "innocent.txt").symlink_to(outside)
    with pytest.raises(FileRejected, match="through a symbolic link"):
        reader.read("innocent.txt")


def test_a_symlink_within_the_roots_is_followed(root: Path, reader: FileReader) -> None:
    (root / "alias.md").symlink_to(root / "sub" / "a.md")
    content = reader.read("alias.md")
    assert content.path.name == "alias.md"  # the extension the producer named decides the type
    assert content.data == b"# A\n\nHello."


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("missing.txt", "file not found"),
        ("sub", "not a regular file"),
        ("http://example.com/a.txt", "unsupported URI scheme 'http'"),
        ("s3://bucket/a.txt", "unsupported URI scheme 's3'"),
        ("file://fileserver/share/a.txt", "only local files"),
        ("a\x00b", "NUL byte"),
    ],
)
def test_unreadable_uris_are_poison_with_a_reason(uri: str, reason: str, reader: FileReader) -> None:
    with pytest.raises(FileRejected, match=reason):
        reader.read(uri)


def test_files_over_the_size_limit_are_refused(root: Path, reader: FileReader) -> None:
    (root / "big.txt").write_bytes(b"x" * 1001)
    with pytest.raises(FileRejected, match="1001 bytes, over the limit of 1000"):
        reader.read("big.txt")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), FileRejected),  # fix the file, then resubmit
        (OSError(errno.EIO, "Input/output error"), DependencyUnavailable),  # storage trouble: retried
        (OSError(errno.ESTALE, "Stale file handle"), DependencyUnavailable),
    ],
)
def test_read_errors_are_poison_or_retryable_by_kind(
    error: OSError, expected: type[Exception], reader: FileReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(Path, "open", fail)
    with pytest.raises(expected, match=error.strerror or ""):
        reader.read("sub/a.md")


def test_several_roots_and_a_root_reached_through_a_symlink(tmp_path: Path, root: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.txt").write_text("b", encoding="utf-8")
    link = tmp_path / "docs-link"
    link.symlink_to(root)
    reader = FileReader([link, other], max_bytes=100)
    assert reader.read(str(other / "b.txt")).data == b"b"
    assert reader.read(str(root / "sub" / "a.md")).data.startswith(b"# A")  # the root's real path
    assert reader.read("sub/a.md").data.startswith(b"# A")  # relative to the first root


async def test_aread_reads_off_the_event_loop(reader: FileReader) -> None:
    content = await reader.aread("sub/a.md")
    assert content.data == b"# A\n\nHello."


async def test_ping_says_whether_the_roots_are_there(reader: FileReader, tmp_path: Path) -> None:
    assert await reader.ping()
    assert not await FileReader([tmp_path / "gone"], max_bytes=10).ping()


@pytest.fixture
def home(root: Path) -> Path:
    """The stack's own RAGBUS_HOME, under an allowed root (as when `ragbus up` allows its directory)."""
    home = root / ".ragbus"
    (home / "logs").mkdir(parents=True)
    (home / "logs" / "services.log").write_text("2026-11-29 secrets of the stack", encoding="utf-8")
    (home / "spans.jsonl").write_text("{}", encoding="utf-8")
    return home


@pytest.mark.parametrize(
    "uri", ["{home}/logs/services.log", ".ragbus/spans.jsonl", "sub/../.ragbus/spans.jsonl"]
)
def test_the_stacks_own_home_is_never_read_even_under_an_allowed_root(
    uri: str, root: Path, home: Path
) -> None:
    reader = FileReader([root], max_bytes=1000, denied=[home])
    with pytest.raises(FileRejected, match="inside a denied root"):
        reader.read(uri.format(home=home))
    assert reader.read("sub/a.md").data == b"# A\n\nHello."  # the rest of the root is still read


def test_a_symlink_into_the_denied_home_is_refused(root: Path, home: Path) -> None:
    (root / "notes.md").symlink_to(home / "logs" / "services.log")
    reader = FileReader([root], max_bytes=1000, denied=[home])
    with pytest.raises(FileRejected, match="leads into a denied root"):
        reader.read("notes.md")
