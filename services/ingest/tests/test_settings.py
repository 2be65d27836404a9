from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from ragbus.common.settings import KafkaSettings
from ragbus.ingest.domain import ByteQuota
from ragbus.ingest.settings import IngestSettings


def test_defaults_fit_minilm_and_kafka(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGBUS_HOME", str(tmp_path / "home"))
    settings = IngestSettings()
    assert settings.chunk_tokens + 2 <= 256  # MiniLM's window, [CLS] and [SEP] included
    assert settings.allowed_roots == [tmp_path]
    assert settings.denied_roots == [tmp_path / "home"]  # the stack's own files, never documents
    assert settings.max_part_bytes < settings.kafka.max_request_size


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_CHUNK_TOKENS", "120")
    monkeypatch.setenv("INGEST_CHUNK_OVERLAP", "20")
    monkeypatch.setenv("INGEST_TOKENIZER", "regex")
    monkeypatch.setenv("INGEST_ALLOWED_ROOTS", os.pathsep.join(["/srv/docs", "/data"]))
    settings = IngestSettings()
    assert (settings.chunk_tokens, settings.chunk_overlap, settings.tokenizer) == (120, 20, "regex")
    assert settings.allowed_roots == [Path("/srv/docs"), Path("/data")]
    monkeypatch.setenv("INGEST_ALLOWED_ROOTS", '["/a", "/b"]')
    assert IngestSettings().allowed_roots == [Path("/a"), Path("/b")]
    monkeypatch.setenv("INGEST_DENIED_ROOTS", os.pathsep.join(["/a/private", "/b/.git"]))
    assert IngestSettings().denied_roots == [Path("/a/private"), Path("/b/.git")]


def test_quotas_come_from_a_json_object_and_a_typo_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGEST_QUOTAS", '{"*": {"mb_per_hour": 200, "burst_mb": 50}}')
    assert IngestSettings().quotas == {"*": ByteQuota(mb_per_hour=200, burst_mb=50)}
    monkeypatch.setenv("INGEST_QUOTAS", '{"acme": {"mb_per_hr": 200, "burst_mb": 50}}')
    with pytest.raises(ValidationError, match="mb_per_hr"):
        IngestSettings()


def test_inconsistent_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="overlap_tokens"):
        IngestSettings(chunk_tokens=100, chunk_overlap=60)
    with pytest.raises(ValidationError, match="KAFKA_MAX_REQUEST_SIZE"):
        IngestSettings(kafka=KafkaSettings(max_request_size=500_000))
    with pytest.raises(ValidationError, match="at least one directory"):
        IngestSettings(allowed_roots=[])
