"""Reading the files that `docs.submitted` events name, and only those under the allowed roots.

Any producer on the bus can name a `uri`, so the service must not become a way to read arbitrary files
(keys, /etc, other tenants' data). A path is checked twice: as written, before touching the file system
(so a producer cannot even probe whether a file outside the roots exists), and after resolving symlinks
(so a link inside a root cannot lead outside it). Denied roots win over allowed ones: the stack's own
RAGBUS_HOME (logs, span file, pid files) is never read, even when it lies under an allowed root.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ragbus.common.errors import DependencyUnavailable, PoisonMessage

# Errors that say the request is wrong (it will never work); any other OSError may be a storage hiccup
# (EIO, ESTALE on NFS) and is retried.
_PERMANENT_ERRNOS = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENAMETOOLONG}
)


class FileRejected(PoisonMessage):
    """The `uri` names something the service will not or cannot read."""


@dataclass(frozen=True, slots=True)
class FileContent:
    path: Path  # as named (its extension tells the content type, even behind a symlink)
    resolved: Path
    data: bytes


def _is_under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _both_forms(roots: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Roots as written (abspath, for the check before any file system access) and resolved."""
    written = [Path(os.path.abspath(r)) for r in roots]  # noqa: PTH100 - lexical, see path_of
    resolved = [r.resolve() for r in written]
    return list(dict.fromkeys([*written, *resolved])), resolved


class FileReader:
    """Reads files named by a `file://` URI or a path, under `roots` and not under `denied`, up to
    `max_bytes`."""

    def __init__(self, roots: Sequence[Path], max_bytes: int, *, denied: Sequence[Path] = ()) -> None:
        if not roots:
            raise ValueError("at least one allowed root is needed")
        # Relative paths in events resolve against the first root.
        self.base = Path(os.path.abspath(roots[0]))  # noqa: PTH100 - lexical, see path_of
        self.roots, self.resolved_roots = _both_forms(roots)
        self.denied, self.resolved_denied = _both_forms(denied)
        self.max_bytes = max_bytes

    def path_of(self, uri: str) -> Path:
        """The absolute (not yet resolved) path a `uri` names. Raises FileRejected."""
        if "\x00" in uri:
            raise FileRejected("the uri contains a NUL byte")
        parts = urlsplit(uri)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise FileRejected(f"file URI on host {parts.netloc!r}: only local files are read")
            raw = unquote(parts.path)
        elif parts.scheme and not uri.startswith(("/", "./", "../")):
            raise FileRejected(
                f"unsupported URI scheme {parts.scheme!r}: ingest reads `file://` URIs and paths only"
            )
        else:
            raw = uri
        path = Path(raw)
        if not path.is_absolute():
            path = self.base / path
        # abspath collapses `..` lexically, before anything touches the file system.
        return Path(os.path.abspath(path))  # noqa: PTH100 - resolve() would follow links

    def read(self, uri: str) -> FileContent:
        """Blocking: call it off the event loop (see `aread`)."""
        path = self.path_of(uri)
        if not _is_under(path, self.roots):
            raise FileRejected(f"{uri!r} is outside the allowed roots (INGEST_ALLOWED_ROOTS)")
        if _is_under(path, self.denied):
            raise FileRejected(
                f"{uri!r} is inside a denied root (INGEST_DENIED_ROOTS: the stack's own files)"
            )
        try:
            try:
                real = path.resolve(strict=True)
            except RuntimeError:  # a symlink loop, on Python < 3.13 (later: OSError ELOOP)
                raise FileRejected(f"cannot read {uri!r}: symbolic link loop") from None
            if not _is_under(real, self.resolved_roots):
                raise FileRejected(f"{uri!r} leads outside the allowed roots through a symbolic link")
            if _is_under(real, self.resolved_denied):
                raise FileRejected(
                    f"{uri!r} leads into a denied root (INGEST_DENIED_ROOTS) through a symbolic link"
                )
            if not real.is_file():
                raise FileRejected(f"{uri!r} is not a regular file")
            size = real.stat().st_size
            if size > self.max_bytes:
                raise FileRejected(
                    f"{uri!r} is {size} bytes, over the limit of {self.max_bytes} (INGEST_MAX_DOCUMENT_BYTES)"
                )
            with real.open("rb") as f:
                data = f.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise FileRejected(f"file not found: {uri!r}") from None
        except OSError as exc:
            if exc.errno in _PERMANENT_ERRNOS:
                raise FileRejected(f"cannot read {uri!r}: {exc.strerror or exc}") from None
            raise DependencyUnavailable(f"reading {uri!r} failed: {exc}") from exc
        if len(data) > self.max_bytes:  # it grew since stat()
            raise FileRejected(
                f"{uri!r} is over the limit of {self.max_bytes} bytes (INGEST_MAX_DOCUMENT_BYTES)"
            )
        return FileContent(path, real, data)

    async def aread(self, uri: str) -> FileContent:
        return await asyncio.to_thread(self.read, uri)

    async def ping(self) -> bool:
        """Health: every allowed root is a directory the service can list."""

        def check() -> bool:
            return all(root.is_dir() and os.access(root, os.R_OK | os.X_OK) for root in self.resolved_roots)

        return await asyncio.to_thread(check)
