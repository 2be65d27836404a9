"""Output checks on a drafted answer: grounded citations, a source cited, no personal data. Pure.

Decisions, so that clients and operators know what to expect:
- Grounding: every citation's chunk must be among the chunks retrieved for this question (with the same
  document), citation numbers must be unique, and every `[n]` marker in the answer (also `[1, 2]`,
  `[1-3]`, `[Source 2]`) must name a citation. A bracket glued to a word (`a[0]`) is code, not a marker.
- Support (`output.support`): each sentence of the answer is checked against the text of the chunks it
  cites (ragbus.shields.grounding: its content words and every number it states must occur there).
  Under the `block` action an answer whose share of supported sentences is under
  `support_min_share` is withheld; `flag` records the verdict and lets it through. Extractive answers
  quote their sources and always pass; this is what stops a model answering from memory. Producers
  that send no chunk text (older ones) are not judged, and the verdict says so.
- A source is required: an answer with no citation is withheld, unless it says it does not know
  ("I don't know", "the documents do not mention ...") — an honest abstention needs no source. An empty
  answer is withheld.
- Personal data (`output.pii`: the patterns of ragbus.shields.pii, and names of persons, places and
  organisations from the named-entity model when the guard has one, see ragbus.shields.detection) and
  credentials (`output.secrets`: API keys, tokens, private keys, passwords, see ragbus.shields.secrets)
  in the answer and in the citations' quotes and titles are replaced by `[REDACTED:<KIND>]` (action
  `redact`; answers keep this form, clients know it), or the answer is withheld (action `block`), each
  check under its own action. Data the question itself contains is not a leak when the answer repeats
  it ("What does Kafka do?" may be answered with "Kafka"): it stays, and is counted as `echoed`. The
  verdicts record counts per kind and the highest confidence, never the data.
A withheld answer is published as `blocked` with a reason the user can read; its citations are dropped
(a citation that failed grounding must not be shown as a source), and the verdicts say what failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ragbus.common.events import AnswersDrafted, Citation, Verdict
from ragbus.guard.ports import OutputResult
from ragbus.guard.settings import OutputPolicy
from ragbus.shields.detection import PiiDetector
from ragbus.shields.grounding import markers, support
from ragbus.shields.pii import PiiSpan, count_kinds
from ragbus.shields.redaction import Located, redact
from ragbus.shields.secrets import SecretSpan, find_secrets

GROUNDING = "output.grounding"
SUPPORT = "output.support"
CITATIONS = "output.citations"
PII = "output.pii"
SECRETS = "output.secrets"

USER_REASONS = {
    GROUNDING: "The answer referred to sources that were not found for your question, so it was withheld.",
    SUPPORT: "The answer said things its sources do not support, so it was withheld.",
    CITATIONS: "The answer was not supported by any source, so it was withheld.",
    PII: "The answer contained personal data, so it was withheld.",
    SECRETS: "The answer contained a credential (a key, token or password), so it was withheld.",
}

_ABSTAIN = re.compile(
    r"\b(?:i\s+(?:do\s+not|don['’]?t)\s+know|i(?:\s+am|['’]m)\s+not\s+sure|i\s+(?:could|can)(?:\s+not|n['’]?t)"
    r"\s+(?:find|answer|tell|determine)|(?:cannot|can['’]?t|unable\s+to)\s+(?:answer|find|determine|tell)"
    r"|(?:no|not\s+enough|insufficient|no\s+relevant)\s+information|there\s+is\s+no\s+(?:mention|information"
    r"|evidence)|(?:documents?|sources?|context|passages?)\s+(?:provided\s+)?(?:do(?:es)?\s+not|don['’]?t"
    r"|doesn['’]?t)\s+(?:contain|mention|say|provide|cover|include|address)|not\s+(?:mentioned|covered|found)"
    r"\s+in\s+the\s+(?:documents?|sources?|context)|je\s+ne\s+sais\s+pas|no\s+lo\s+sé|ich\s+weiß\s+(?:es\s+)?nicht)",
    re.IGNORECASE,
)


def abstains(answer: str) -> bool:
    """Whether the answer says it does not know (an abstention needs no source)."""
    return _ABSTAIN.search(answer) is not None


def check_grounding(drafted: AnswersDrafted) -> Verdict:
    retrieved = {r.chunk_id: r.doc_id for r in drafted.retrieved}
    numbers = [c.n for c in drafted.citations]
    unknown = [str(c.chunk_id) for c in drafted.citations if c.chunk_id not in retrieved]
    wrong_doc = [c.n for c in drafted.citations if retrieved.get(c.chunk_id, c.doc_id) != c.doc_id]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    used = markers(drafted.answer)
    unresolved = sorted(used - set(numbers))
    details = {
        "citations": len(numbers),
        "retrieved": len(retrieved),
        "markers": sorted(used),
        "unknown_chunks": unknown,
        "wrong_doc": wrong_doc,
        "duplicate_numbers": duplicates,
        "unresolved_markers": unresolved,
    }
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} citation(s) to chunks that were not retrieved")
    if wrong_doc:
        problems.append(f"citation(s) {wrong_doc} name another document than the retrieved chunk")
    if duplicates:
        problems.append(f"citation number(s) {duplicates} used twice")
    if unresolved:
        problems.append(f"marker(s) {', '.join(f'[{n}]' for n in unresolved)} refer to no citation")
    return Verdict(check=GROUNDING, passed=not problems, reason="; ".join(problems) or None, details=details)


def check_support(drafted: AnswersDrafted, policy: OutputPolicy) -> Verdict:
    """Each answer sentence against the text of the chunks it cites (see the module's decisions)."""
    texts = {r.chunk_id: r.text for r in drafted.retrieved if r.text}
    sources = {c.n: texts[c.chunk_id] for c in drafted.citations if c.chunk_id in texts}
    details: dict[str, object] = {
        "action": policy.support_action,
        "min_share": policy.support_min_share,
        "min_coverage": policy.support_min_coverage,
    }
    if policy.support_action == "allow":
        return Verdict(check=SUPPORT, passed=True, details={**details, "note": "not checked (allow)"})
    if not sources:
        note = "no cited source text to check against" if drafted.citations else "no citations"
        return Verdict(check=SUPPORT, passed=True, details={**details, "note": note})
    found = support(drafted.answer, sources, min_coverage=policy.support_min_coverage, skip=(_ABSTAIN,))
    details |= {
        "sentences": len(found.sentences),
        "judged": len(found.judged),
        # Indexes and measures only: the verdict never repeats the answer's text.
        "unsupported": [
            {"sentence": i, "coverage": s.coverage, "missing_numbers": len(s.missing_numbers)}
            for i, s in enumerate(found.sentences)
            if s.judged and not s.supported
        ],
    }
    score = round(found.score, 3)
    if found.holds(policy.support_min_share):
        return Verdict(check=SUPPORT, passed=True, score=score, details=details)
    why = f"{len(found.unsupported)} of {len(found.judged)} sentence(s) not supported by their cited sources"
    if policy.support_action == "flag":
        return Verdict(check=SUPPORT, passed=True, reason=f"flagged: {why}", score=score, details=details)
    return Verdict(check=SUPPORT, passed=False, reason=why, score=score, details=details)


def check_citations(drafted: AnswersDrafted, policy: OutputPolicy) -> Verdict:
    abstained = abstains(drafted.answer)
    details = {
        "citations": len(drafted.citations),
        "abstained": abstained,
        "required": policy.require_citation,
    }
    if not drafted.answer.strip():
        return Verdict(check=CITATIONS, passed=False, reason="empty answer", details=details)
    if policy.require_citation and not drafted.citations and not abstained:
        return Verdict(check=CITATIONS, passed=False, reason="the answer cites no source", details=details)
    return Verdict(check=CITATIONS, passed=True, details=details)


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def _asked(value: str, question: str) -> bool:
    """Whether the question contains `value` as words of its own ("Ann" is not in "annual")."""
    return bool(value) and re.search(rf"(?<!\w){re.escape(value)}(?!\w)", question) is not None


@dataclass(frozen=True, slots=True)
class _Found:
    """What one text (the answer, a quote, a title) holds."""

    pii: list[PiiSpan]
    echoed: list[PiiSpan]  # personal data the question contains too: left as it is
    secrets: list[SecretSpan]

    def redacted(self, text: str) -> str:
        spans: list[Located] = [*self.secrets, *self.pii]
        return redact(text, spans) if spans else text


def _scan(texts: list[str], question: str, policy: OutputPolicy, detector: PiiDetector) -> list[_Found]:
    asked = _key(question)
    out = []
    for text, pii in zip(texts, detector.find_many(texts, policy.pii_kinds), strict=True):
        secrets = find_secrets(text)
        # A credential wins over personal data inside it (an e-mail in a connection string's password).
        pii = [p for p in pii if all(p.end <= s.start or p.start >= s.end for s in secrets)]
        echoed = [p for p in pii if _asked(_key(text[p.start : p.end]), asked)]
        out.append(_Found([p for p in pii if p not in echoed], echoed, secrets))
    return out


def _verdict(
    check: str, what: str, action: str, answer: _Found, cited: list[_Found], extra: dict[str, object]
) -> Verdict:
    spans: list[PiiSpan | SecretSpan] = []
    spans.extend(answer.secrets if check == SECRETS else answer.pii)
    in_citations = [s for f in cited for s in (f.secrets if check == SECRETS else f.pii)]
    counts = count_kinds([*spans, *in_citations])
    details: dict[str, object] = {
        "action": "none",
        "counts": counts,
        "in_answer": len(spans),
        "in_citations": len(in_citations),
        **extra,
    }
    if not counts:
        return Verdict(check=check, passed=True, details=details)
    score = max(s.score for s in [*spans, *in_citations])
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    if action == "block":
        details["action"] = "blocked"
        return Verdict(check=check, passed=False, reason=f"{what}: {summary}", score=score, details=details)
    details["action"] = "redacted"
    return Verdict(check=check, passed=True, reason=f"redacted {summary}", score=score, details=details)


def check_leaks(
    drafted: AnswersDrafted, policy: OutputPolicy, detector: PiiDetector | None = None
) -> tuple[Verdict, Verdict, str, list[Citation]]:
    """The personal-data and credentials verdicts, and the answer and citations with what they found
    redacted (unchanged when a verdict blocks the answer, or nothing was found)."""
    detector = detector or PiiDetector()
    citations = drafted.citations
    fields = [(i, name) for i, c in enumerate(citations) for name in ("quote", "title") if getattr(c, name)]
    texts = [drafted.answer, *(getattr(citations[i], name) for i, name in fields)]
    answer, *cited = _scan(texts, drafted.question, policy, detector)
    pii = _verdict(
        PII, "personal data", policy.pii_action, answer, cited,
        {"kinds_checked": sorted(policy.pii_kinds), "ner": detector.recognizer is not None,
         "echoed": len(answer.echoed) + sum(len(f.echoed) for f in cited)},
    )  # fmt: skip
    secrets = _verdict(SECRETS, "credentials", policy.secrets_action, answer, cited, {})
    if not (pii.passed and secrets.passed) or pii.details["action"] == secrets.details["action"] == "none":
        return pii, secrets, drafted.answer, citations
    updates: dict[int, dict[str, str]] = {}
    for (i, name), found, text in zip(fields, cited, texts[1:], strict=True):
        if found.pii or found.secrets:
            updates.setdefault(i, {})[name] = found.redacted(text)
    redacted = [c.model_copy(update=updates[i]) if i in updates else c for i, c in enumerate(citations)]
    return pii, secrets, answer.redacted(drafted.answer), redacted


def check_output(
    drafted: AnswersDrafted, policy: OutputPolicy, detector: PiiDetector | None = None
) -> OutputResult:
    grounding = check_grounding(drafted)
    supported = check_support(drafted, policy)
    cited = check_citations(drafted, policy)
    pii, secrets, answer, citations = check_leaks(drafted, policy, detector)
    verdicts = [grounding, supported, cited, pii, secrets]
    failed = [v for v in verdicts if not v.passed]
    if failed:
        reason = USER_REASONS[failed[0].check]
        return OutputResult(status="blocked", answer=reason, reason=reason, citations=[], verdicts=verdicts)
    return OutputResult(status="answered", answer=answer, reason=None, citations=citations, verdicts=verdicts)


@dataclass(frozen=True, slots=True)
class OutputChecks:
    """The default `ports.OutputGuard`: the checks above under one policy. `detector` finds personal
    data (patterns only by default; `PiiDetector(SpacyRecognizer())` adds names, see app.open_deps)."""

    policy: OutputPolicy
    detector: PiiDetector = field(default_factory=PiiDetector)

    def check(self, drafted: AnswersDrafted) -> OutputResult:
        return check_output(drafted, self.policy, self.detector)
