"""PersonalData with ragbus.shields' recognisers: the same regexes and checksums the guard uses (emails,
phones, cards with Luhn, IBANs with their check digits, SSNs, IPs, dates of birth, addresses, cued
names and places). Pure Python, no model: cheap enough for every event of a tenant that asks for it."""

from __future__ import annotations

from ragbus.shields.pii import find_pii
from ragbus.shields.redaction import redact


class ShieldsPersonalData:
    def redact(self, text: str) -> str:
        spans = find_pii(text)
        return redact(text, spans) if spans else text
