"""JSON Schemas of the events: generated from the models, committed as snapshots, checked for compatibility.

`python -m ragbus.common.schemas --write` refreshes the snapshots in `libs/common/schemas/`. The
snapshot test fails when a schema changed without its snapshot, and names every change that is not
additive (a field removed or retyped, a new required field, an enum value dropped): such a change
needs a new `.v2` topic, not an edit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ragbus.common.envelope import Envelope, schema_id
from ragbus.common.events import EVENT_TYPES

SNAPSHOT_DIR = Path(__file__).resolve().parents[3] / "schemas"


def event_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every event envelope, by topic."""
    out: dict[str, dict[str, Any]] = {}
    for cls in EVENT_TYPES:
        schema = Envelope[cls].model_json_schema()  # type: ignore[valid-type]
        schema["$id"] = schema_id(cls)
        schema["title"] = cls.__name__
        out[cls.topic] = schema
    return out


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return dict(root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {}))
    return schema


def _types(schema: dict[str, Any], root: dict[str, Any]) -> set[str]:
    """A coarse signature of what values a schema admits (types, refs, enum/const values)."""
    schema = _resolve(schema, root)
    if "anyOf" in schema or "oneOf" in schema:
        return set().union(*(_types(s, root) for s in schema.get("anyOf", schema.get("oneOf", []))))
    if "const" in schema:
        return {f"const:{schema['const']!r}"}
    if "enum" in schema:
        return {f"const:{v!r}" for v in schema["enum"]}
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    return {str(kind) if kind else "any"}


def breaking_changes(
    old: dict[str, Any],
    new: dict[str, Any],
    path: str = "",
    *,
    old_root: dict[str, Any] | None = None,
    new_root: dict[str, Any] | None = None,
) -> list[str]:
    """Every change from `old` to `new` that an old reader or an old producer would trip over."""
    old_root = old_root or old
    new_root = new_root or new
    old = _resolve(old, old_root)
    new = _resolve(new, new_root)
    problems: list[str] = []
    old_types, new_types = _types(old, old_root), _types(new, new_root)
    if "any" not in new_types and not old_types <= new_types:
        problems.append(
            f"{path or '<root>'}: admitted values narrowed from {sorted(old_types)} to {sorted(new_types)}"
        )
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, sub in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}: removed")
        else:
            problems += breaking_changes(
                sub, new_props[name], f"{path}.{name}", old_root=old_root, new_root=new_root
            )
    for name in set(new.get("required", [])) - set(old.get("required", [])):
        problems.append(f"{path}.{name}: new required field")
    for key in ("items", "additionalProperties"):
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            problems += breaking_changes(
                old[key], new[key], f"{path}[{key}]", old_root=old_root, new_root=new_root
            )
    for branch in ("anyOf", "oneOf"):
        for o in old.get(branch, []):
            o_res = _resolve(o, old_root)
            if o_res.get("type") == "object" or "properties" in o_res:
                match = [n for n in new.get(branch, []) if "properties" in _resolve(n, new_root)]
                if match:
                    problems += breaking_changes(o, match[0], path, old_root=old_root, new_root=new_root)
    return problems


def write_snapshots(directory: Path = SNAPSHOT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for topic, schema in event_schemas().items():
        path = directory / f"{topic}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="refresh the committed snapshots")
    parser.add_argument("--dir", type=Path, default=SNAPSHOT_DIR)
    args = parser.parse_args()
    if args.write:
        for path in write_snapshots(args.dir):
            print(path)
    else:
        print(json.dumps(event_schemas(), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
