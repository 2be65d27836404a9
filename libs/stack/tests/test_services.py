"""The services come from the `ragbus.services` entry points, in pipeline order, with no list of ours."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from ragbus.stack import services
from ragbus.stack.services import PIPELINE, pipeline_order, resolve, service_names


def test_the_pipeline_comes_first_then_the_others_by_name() -> None:
    assert pipeline_order(["zeta", "monitor", "alpha", "ingest", "guard", "ingest"]) == [
        "ingest",
        "guard",
        "monitor",
        "alpha",
        "zeta",
    ]


def test_the_installed_services_are_found_through_their_entry_points() -> None:
    # The five services of this repository are installed in its environment.
    assert service_names()[: len(PIPELINE)] == list(PIPELINE)


def test_a_service_a_package_adds_is_hosted_after_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        EntryPoint("monitor", "ragbus.monitor.app:create_app", services.GROUP),
        EntryPoint("audit", "acme.audit.app:create_app", services.GROUP),
        EntryPoint("ingest", "ragbus.ingest.app:create_app", services.GROUP),
        EntryPoint("ingest", "other.ingest:create_app", services.GROUP),  # a duplicate: the first wins
    ]
    monkeypatch.setattr(services, "entry_points", lambda group: [ep for ep in eps if ep.group == group])
    found = services.installed()
    assert list(found) == ["ingest", "monitor", "audit"]
    assert found["ingest"].value == "ragbus.ingest.app:create_app"


def test_all_means_every_installed_service_and_names_keep_the_pipeline_order() -> None:
    available = ["ingest", "embed", "orchestrator", "guard", "monitor", "audit"]
    assert resolve(["all"], available) == available
    assert resolve(["monitor", "embed", "embed"], available) == ["embed", "monitor"]


def test_an_unknown_service_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"^unknown service 'emebd'; choose from ingest, embed or all$"):
        resolve(["embed", "emebd"], ["ingest", "embed"])
