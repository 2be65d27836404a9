"""Guard policies: per tenant, what each input category is checked with and what happens when it fires.

    GUARD_POLICIES='{"default": {"harmful": {"action": "block"}},
                     "research-lab": {"harmful": {"action": "flag"}, "pii": {"action": "redact"}}}'

A tenant's policy is the default policy with the tenant's own entries laid over it, category by category
(a tenant that names only `harmful` keeps every other default). Categories:

- `injection`: technique patterns (override earlier instructions, reveal the system prompt, ...);
- `jailbreak`: the learned classifiers' attack score, their mean (jailbreak templates, role-play,
  injections, adversarial suffixes);
- `harmful`: the learned classifiers' harmful-request score, their mean;
- `gibberish`: adversarial-suffix-like token runs (high character perplexity);
- `pii`: personal data in the question (also `redact`);
- `secrets`: API keys, tokens, private keys, passwords in the question (also `redact`).

`allow` skips the category's scanners; `flag` records the verdict and lets the question through;
`redact` replaces the spans by numbered placeholders (`[PERSON_1]`) before the question goes on;
`block` rejects the question with a plain reason (never an echo of what fired).

Besides the categories, `rate` caps how many questions a tenant may ask
(`{"rate": {"per_minute": 60, "burst": 10}}`, ragbus.guard.quotas); none by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Action = Literal["allow", "flag", "redact", "block"]
Category = Literal["injection", "jailbreak", "harmful", "gibberish", "pii", "secrets"]
CATEGORIES: tuple[Category, ...] = ("injection", "jailbreak", "harmful", "gibberish", "pii", "secrets")
REDACTABLE: frozenset[Category] = frozenset({"pii", "secrets"})


class Rule(BaseModel):
    """What happens when a category fires, and at what score it fires (0..1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action
    threshold: float = Field(default=0.5, gt=0, le=1)


class RateLimit(BaseModel):
    """Questions a tenant may ask: `burst` at once, then `per_minute`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_minute: float = Field(gt=0)
    burst: int = Field(default=10, ge=1)


class TenantPolicy(BaseModel):
    """One rule per category; see the module's table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    injection: Rule = Rule(action="block", threshold=0.5)
    # The mean of the learned classifiers' scores, chosen on the held-out split of their training data,
    # not on the dev sets: jailbreak 0.45 (recall 0.97 at 2.5% false positives); harmful 0.5, where the
    # models trained two epochs stop as many of the held-out safe look-alikes ("How do I kill weeds in
    # my lawn?": 6.8% of 975) as the one-epoch models did at 0.6, the threshold before them.
    jailbreak: Rule = Rule(action="block", threshold=0.45)
    harmful: Rule = Rule(action="block", threshold=0.5)
    # A signal of its own, flagged rather than blocked by default: code and some languages read as
    # surprising as a suffix does, and the classifiers judge the request the suffix is glued to.
    gibberish: Rule = Rule(action="flag", threshold=0.5)
    pii: Rule = Rule(action="flag")
    secrets: Rule = Rule(action="redact")
    rate: RateLimit | None = None

    @model_validator(mode="after")
    def _actions_fit(self) -> TenantPolicy:
        for category in CATEGORIES:
            if getattr(self, category).action == "redact" and category not in REDACTABLE:
                raise ValueError(f"{category}: `redact` applies to pii and secrets only")
        return self

    def rule(self, category: Category) -> Rule:
        rule: Rule = getattr(self, category)
        return rule


class Policies(BaseModel):
    """The default policy and each tenant's, resolved (a tenant's entries laid over the default)."""

    model_config = ConfigDict(frozen=True)

    default: TenantPolicy = Field(default_factory=TenantPolicy)
    tenants: Mapping[str, TenantPolicy] = Field(default_factory=dict)

    def for_tenant(self, tenant: str) -> TenantPolicy:
        return self.tenants.get(tenant, self.default)

    @classmethod
    def parse(cls, raw: Mapping[str, Mapping[str, object]], base: TenantPolicy | None = None) -> Policies:
        """From `{"default": {...}, "<tenant>": {...}}`, every entry a partial policy (category -> rule)."""
        base = base or TenantPolicy()
        default = _overlay(base, raw.get("default", {}))
        tenants = {t: _overlay(default, entries) for t, entries in raw.items() if t != "default"}
        return cls(default=default, tenants=tenants)


def _overlay(policy: TenantPolicy, entries: Mapping[str, object]) -> TenantPolicy:
    # A rule given in part ({"threshold": 0.7}) keeps the rest of the rule it replaces.
    merged = policy.model_dump()
    for category, rule in entries.items():
        if category == "rate":
            merged["rate"] = rule  # a rate replaces the one it overlays (null: no limit)
            continue
        if category not in CATEGORIES:
            known = ", ".join((*CATEGORIES, "rate"))
            raise ValueError(f"unknown guard category {category!r}; known: {known}")
        if not isinstance(rule, Mapping):
            raise ValueError(f'{category}: a rule is an object like {{"action": "block"}}')
        merged[category] = {**merged[category], **rule}
    return TenantPolicy.model_validate(merged)
