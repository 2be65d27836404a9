"""The services this installation can host, found through the `ragbus.services` entry points.

Each service package declares `<name> = "ragbus.<name>.app:create_app"` in that group, so the runner
hosts whatever is installed and holds no list of its own. The order is the one of the pipeline (ingest,
embed, orchestrator, guard, monitor), then any other service by name: services start in it and stop in
reverse, and `ragbus up` and `ragbus status` print them in it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

GROUP = "ragbus.services"
PIPELINE = ("ingest", "embed", "orchestrator", "guard", "monitor")


def pipeline_order(names: Sequence[str]) -> list[str]:
    """The names in pipeline order, then the others alphabetically, each once."""
    rank = {name: i for i, name in enumerate(PIPELINE)}
    return sorted(dict.fromkeys(names), key=lambda name: (rank.get(name, len(rank)), name))


def installed() -> dict[str, EntryPoint]:
    """Every installed service's entry point, in pipeline order (the first of a duplicate name wins)."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return {name: found[name] for name in pipeline_order(list(found))}


def service_names() -> list[str]:
    """The names of the installed services, in pipeline order."""
    return list(installed())


def resolve(names: Sequence[str], available: Sequence[str]) -> list[str]:
    """The services that `names` asks for (`all` is every available one), in pipeline order.

    Raises ValueError naming the choices when a name is not an installed service.
    """
    unknown = [n for n in names if n != "all" and n not in available]
    if unknown:
        choices = ", ".join(available) or "none installed"
        raise ValueError(f"unknown service {unknown[0]!r}; choose from {choices} or all")
    return pipeline_order(list(available) if "all" in names else list(names))


def factory(name: str) -> Callable[..., Any]:
    """The installed service's `create_app`."""
    try:
        ep = installed()[name]
    except KeyError:
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(service_names())}") from None
    loaded: Callable[..., Any] = ep.load()
    return loaded
