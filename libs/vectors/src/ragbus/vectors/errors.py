"""Errors of the vector memory, the same whichever adapter raised them.

Adapters translate their libraries' errors into these, so a service can tell "try again later"
(`*Unavailable`, retried by the shared middleware as `DependencyUnavailable`) from "this input can
never work" (`DimensionMismatch`, `InputRejected`: the service decides whether that is poison).
"""

from __future__ import annotations

from ragbus.common.errors import DependencyUnavailable, RagbusError


class VectorsError(RagbusError):
    """Base of the errors below that are not "unavailable"."""


class VectorStoreError(VectorsError):
    """The vector store refused an operation for a reason not covered below (a bug or a misuse)."""


class VectorStoreUnavailable(DependencyUnavailable):
    """The vector store cannot serve right now (server down, shard directory held by another process)."""


class EmbedderUnavailable(DependencyUnavailable):
    """The embedding model cannot serve right now (endpoint down, rate limited, credentials refused)."""


class DimensionMismatch(VectorsError, ValueError):
    """Vectors do not have the store's dimension: the store was built with another embedding model."""

    def __init__(self, expected: int | None, got: int | None, detail: str = "") -> None:
        self.expected = expected
        self.got = got
        text = f"vector dimension mismatch: the store holds {expected}-d vectors, got {got}-d"
        if detail:
            text += f" ({detail})"
        super().__init__(text + "; re-create the store or use the model it was built with")


class InputRejected(VectorsError, ValueError):
    """This input can never be accepted (the embedding endpoint refuses it, a vector is not finite):
    retrying will not help."""
