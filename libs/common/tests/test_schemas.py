"""Event schemas are committed; a change that is not additive fails here."""

from __future__ import annotations

import copy
import json

import pytest

from ragbus.common.schemas import SNAPSHOT_DIR, breaking_changes, event_schemas


@pytest.mark.parametrize("topic", sorted(event_schemas()))
def test_schema_matches_its_snapshot_and_is_compatible(topic: str) -> None:
    path = SNAPSHOT_DIR / f"{topic}.json"
    assert path.exists(), f"no snapshot for {topic}: run `python -m ragbus.common.schemas --write`"
    old = json.loads(path.read_text())
    new = event_schemas()[topic]
    problems = breaking_changes(old, new)
    assert not problems, f"{topic} changed incompatibly (make a .v2 topic instead): {problems}"
    assert new == old, (
        f"{topic} changed compatibly but its snapshot is stale: run `python -m ragbus.common.schemas --write`"
    )


def test_the_compatibility_check_catches_breaking_changes() -> None:
    base = event_schemas()["docs.submitted.v1"]
    data = base["$defs"]["DocsSubmitted"]

    removed = copy.deepcopy(base)
    del removed["$defs"]["DocsSubmitted"]["properties"]["title"]
    assert any("title: removed" in p for p in breaking_changes(base, removed))

    required = copy.deepcopy(base)
    required["$defs"]["DocsSubmitted"]["required"] = [*data.get("required", []), "title"]
    assert any("new required" in p for p in breaking_changes(base, required))

    retyped = copy.deepcopy(base)
    retyped["$defs"]["DocsSubmitted"]["properties"]["doc_id"] = {"type": "integer"}
    assert any("narrowed" in p for p in breaking_changes(base, retyped))

    added = copy.deepcopy(base)
    added["$defs"]["DocsSubmitted"]["properties"]["language"] = {"type": "string", "default": "en"}
    assert breaking_changes(base, added) == []
