"""Settings: the cascade is configuration, from the environment an operator sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from ragbus.orchestrator.app import chat_tier
from ragbus.orchestrator.settings import OrchestratorSettings


def test_defaults_point_at_the_local_model_with_reproducible_sampling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ORCHESTRATOR_CHAT_BASE_URL", "ORCHESTRATOR_CHAT_MODEL", "ORCHESTRATOR_EXTRA_CHAT_TIERS"):
        monkeypatch.delenv(name, raising=False)
    [tier1] = OrchestratorSettings().chat_tiers()
    assert tier1.base_url == "http://127.0.0.1:8080/v1"
    assert tier1.model == "smollm2-135m-instruct"
    assert tier1.temperature == 0
    assert tier1.api_key is None


def test_a_bigger_model_at_another_endpoint_is_one_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CHAT_API_KEY", "sk-local")
    monkeypatch.setenv("ORCHESTRATOR_TOP_K", "8")
    big = {
        "base_url": "https://api.example.com/v1",
        "model": "big-model",
        "api_key": "sk-secret",
        "price_prompt_per_1k": 0.5,
        "price_completion_per_1k": 1.5,
        "prompt": "rag-answer@v2",
    }
    monkeypatch.setenv("ORCHESTRATOR_EXTRA_CHAT_TIERS", json.dumps([big]))
    settings = OrchestratorSettings()

    tier1, tier2 = settings.chat_tiers()
    assert settings.top_k == 8
    assert tier1.api_key is not None
    assert tier1.api_key.get_secret_value() == "sk-local"
    assert (tier2.model, tier2.base_url, tier2.prompt) == (
        "big-model",
        "https://api.example.com/v1",
        "rag-answer@v2",
    )
    assert "sk-secret" not in repr(settings)  # secrets never reach a log line
    built = chat_tier(tier2)
    assert built.name == "big-model"
    assert built.prompt.id == "rag-answer@v2"
    assert built.cost(1000, 1000) == pytest.approx(2.0)


def test_a_cascade_without_any_tier_is_refused() -> None:
    with pytest.raises(ValidationError, match="no cascade tier is enabled"):
        OrchestratorSettings(extractive=False, chat=False)
    assert OrchestratorSettings(chat=False).chat_tiers() == []


def test_a_tier_takes_a_router_file_and_a_missing_one_stops_the_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ragbus.orchestrator.routing import FEATURES, Router

    path = tmp_path / "router.json"
    zeros = dict.fromkeys(FEATURES, 0.0)
    path.write_text(
        Router("test", zeros, 0.0, zeros, dict.fromkeys(FEATURES, 1.0)).to_json(), encoding="utf-8"
    )
    monkeypatch.setenv("ORCHESTRATOR_CHAT_ROUTER", str(path))
    monkeypatch.setenv("ORCHESTRATOR_CHAT_MIN_BENEFIT", "0.3")
    tier = chat_tier(OrchestratorSettings().chat_tiers()[0])
    assert tier.router is not None
    assert tier.router.name
    assert tier.min_benefit == 0.3

    monkeypatch.setenv("ORCHESTRATOR_CHAT_ROUTER", str(tmp_path / "missing.json"))
    with pytest.raises(ValidationError, match="no router"):
        OrchestratorSettings()
    monkeypatch.setenv("ORCHESTRATOR_CHAT_ROUTER", "no-such-router")
    with pytest.raises(ValidationError, match="no router file 'no-such-router'"):
        OrchestratorSettings()
