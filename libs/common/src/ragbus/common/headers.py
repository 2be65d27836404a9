"""Kafka header values as text: pure, so domain code that reads headers needs no Kafka library."""

from __future__ import annotations


def header_text(value: bytes | None) -> str:
    """A Kafka header value as text: UTF-8, any other byte shown as \\xNN, a null value as ""."""
    return (value or b"").decode("utf-8", "backslashreplace")
