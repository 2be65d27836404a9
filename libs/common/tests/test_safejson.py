"""Deeply nested JSON is refused as invalid (a ValueError), never a RecursionError."""

from __future__ import annotations

import json

import pytest

from ragbus.common.envelope import EnvelopeAttributes, parse_event
from ragbus.common.safejson import MAX_DEPTH, TooDeep, depth, loads


def nested(levels: int, inner: str = "1") -> bytes:
    return ("[" * levels + inner + "]" * levels).encode()


def test_depth_counts_arrays_and_objects_but_not_brackets_in_strings() -> None:
    assert depth(b'{"a": [1, {"b": []}]}') == 4
    assert depth(b'{"a": "[[[[[{{{{", "b": "\\"[[["}') == 1
    assert depth(b"42") == 0


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5_000, 100_000])
def test_a_body_nested_too_deep_is_a_value_error_not_a_recursion_error(levels: int) -> None:
    with pytest.raises(TooDeep, match=f"nested {levels} levels deep"):
        loads(nested(levels))
    with pytest.raises(ValueError, match="nested"):
        parse_event(nested(levels))
    assert EnvelopeAttributes.peek(nested(levels)) is None  # "never raises"
    deep_data = b'{"type": "io.ragbus.queries.submitted.v1", "data": ' + nested(levels) + b"}"
    assert EnvelopeAttributes.peek(deep_data) is None


def test_anything_within_the_limit_parses_as_json_does() -> None:
    body = nested(MAX_DEPTH)
    assert loads(body) == json.loads(body)
    text = '{"q": "what do [brackets] in {text} do?", "n": [[1], [2, [3]]]}'
    assert loads(text) == json.loads(text)
    # Many brackets side by side are not depth.
    wide = "[" + ",".join(["[]"] * 10_000) + "]"
    assert loads(wide) == json.loads(wide)
