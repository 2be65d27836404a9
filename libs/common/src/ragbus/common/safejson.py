"""JSON from the bus, parsed only when it is not nested deeper than any ragbus event.

Python's `json` parser recurses once per nesting level: a message nested 5,000 deep raises
RecursionError, which is not a ValueError, so it slipped past every "not valid JSON" handler and sank
whole batches (the monitor's, the client's reply reader). A ragbus event nests about ten levels; the
depth is checked first, in linear time without recursion, and a deeper body is refused as invalid.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

# Deeper than any ragbus event (about 10: envelope, data, cascade, attempts...) with room for metadata
# that users nest themselves.
MAX_DEPTH = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class TooDeep(ValueError):
    """A JSON body nested deeper than `MAX_DEPTH`."""


def depth(body: bytes) -> int:
    """How deep the body's arrays and objects nest (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b'""', body))
    return max(accumulate(_STEP[b] for b in brackets), default=0)


def _nesting(value: Any, limit: int) -> int:
    """How deep a parsed value's lists and dicts nest, counting no further than `limit` + 1 (no
    recursion: this is what guards the recursive code after it)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return deepest


def loads(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads`, refusing (TooDeep, a ValueError) a body nested deeper than `max_depth`.

    The C parser goes first (a 1 MB event in ~1 ms); the depth is then measured on what it built, in
    time linear in its lists and dicts. A body deeper than the parser itself goes makes it raise
    RecursionError, which is turned into TooDeep, its depth counted on the bytes (slow, but only for
    such a body).
    """
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    try:
        # Bytes must be UTF-8 (RFC 8259 for JSON between systems): `json.loads` would also take UTF-16
        # and UTF-32, which other consumers of the bus would not. UnicodeDecodeError is poison.
        value = json.loads(body if isinstance(body, str) else body.decode("utf-8"))
    except RecursionError:
        raise TooDeep(
            f"the JSON is nested {depth(raw)} levels deep, more than the {max_depth} allowed"
        ) from None
    # Cheap first: a body with fewer brackets than the limit cannot nest deeper than it.
    if raw.count(b"[") + raw.count(b"{") > max_depth and _nesting(value, max_depth) > max_depth:
        # `_nesting` stops counting past the limit; the reason gives the whole depth.
        raise TooDeep(f"the JSON is nested {depth(raw)} levels deep, more than the {max_depth} allowed")
    return value
