"""Output checks on a drafted answer: grounded citations, a source cited, no personal data. Pure.

Decisions, so that clients and operators know what to expect:
- Grounding: every citation's chunk must be among the chunks retrieved for this question (with the same
  document), citation numbers must be unique, and every `[n]` marker in the answer (also `[1, 2]`,
  `[1-3]`, `[Source 2]`) must name a citation. A bracket glued to a word (`a[0]`) is code, not a marker.
- A source is required: an answer with no citation is withheld, unless it says it does not know
  ("I don't know", "the documents do not mention ...") — an honest abstention needs no source. An empty
  answer is withheld.
- Personal data (see ragbus.shields.pii) in the answer and in the citations' quotes and titles is
  replaced by `[REDACTED:<KIND>]` (action `redact`), or the answer is withheld (action `block`). The
  verdict records counts per kind, never the data.
A withheld answer is published as `blocked` with a reason the user can read; its citations are dropped
(a citation that failed grounding must not be shown as a source), and the verdicts say what failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragbus.common.events import AnswersDrafted, Citation, Verdict
from ragbus.guard.ports import OutputResult
from ragbus.guard.settings import OutputPolicy
from ragbus.shields.pii import PiiSpan, count_kinds, find_pii, redact

GROUNDING = "output.grounding"
CITATIONS = "output.citations"
PII = "output.pii"

USER_REASONS = {
    GROUNDING: "The answer referred to sources that were not found for your question, so it was withheld.",
    CITATIONS: "The answer was not supported by any source, so it was withheld.",
    PII: "The answer contained personal data, so it was withheld.",
}

# `[1]`, `[1, 2]`, `[1-3]`, `[Source 2]`; not `a[0]` (an index in code).
_LABEL = r"(?:(?:sources?|docs?|documents?|refs?)\s*)?"
_MARKER = re.compile(
    rf"(?<![\w\[])\[\s*{_LABEL}(\d{{1,3}}(?:\s*[,;–-]\s*{_LABEL}\d{{1,3}})*)\s*\]", re.IGNORECASE
)
_ABSTAIN = re.compile(
    r"\b(?:i\s+(?:do\s+not|don['’]?t)\s+know|i(?:\s+am|['’]m)\s+not\s+sure|i\s+(?:could|can)(?:\s+not|n['’]?t)"
    r"\s+(?:find|answer|tell|determine)|(?:cannot|can['’]?t|unable\s+to)\s+(?:answer|find|determine|tell)"
    r"|(?:no|not\s+enough|insufficient|no\s+relevant)\s+information|there\s+is\s+no\s+(?:mention|information"
    r"|evidence)|(?:documents?|sources?|context|passages?)\s+(?:provided\s+)?(?:do(?:es)?\s+not|don['’]?t"
    r"|doesn['’]?t)\s+(?:contain|mention|say|provide|cover|include|address)|not\s+(?:mentioned|covered|found)"
    r"\s+in\s+the\s+(?:documents?|sources?|context)|je\s+ne\s+sais\s+pas|no\s+lo\s+sé|ich\s+weiß\s+(?:es\s+)?nicht)",
    re.IGNORECASE,
)


def markers(answer: str) -> set[int]:
    """The citation numbers an answer refers to with `[n]`, `[n, m]` or `[n-m]` markers."""
    found: set[int] = set()
    for m in _MARKER.finditer(answer):
        for part in re.split(r"\s*[,;]\s*", m.group(1)):
            bounds = [int(x) for x in re.findall(r"\d+", part)]
            if len(bounds) == 2 and 0 < bounds[1] - bounds[0] <= 50:
                found.update(range(bounds[0], bounds[1] + 1))
            else:
                found.update(bounds)
    return found


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


def _redact_citation(citation: Citation, policy: OutputPolicy) -> tuple[Citation, list[PiiSpan]]:
    found: list[PiiSpan] = []
    update: dict[str, str] = {}
    for field in ("quote", "title"):
        value = getattr(citation, field)
        if value:
            spans = find_pii(value, policy.pii_kinds)
            if spans:
                found.extend(spans)
                update[field] = redact(value, spans)
    return (citation.model_copy(update=update) if update else citation), found


def check_pii(
    answer: str, citations: list[Citation], policy: OutputPolicy
) -> tuple[Verdict, str, list[Citation]]:
    """The verdict, and the answer and citations with personal data redacted (unchanged if none)."""
    spans = find_pii(answer, policy.pii_kinds)
    redacted_citations: list[Citation] = []
    in_citations: list[PiiSpan] = []
    for citation in citations:
        redacted, found = _redact_citation(citation, policy)
        redacted_citations.append(redacted)
        in_citations.extend(found)
    counts = count_kinds(spans + in_citations)
    details: dict[str, object] = {
        "action": "none",
        "counts": counts,
        "in_answer": len(spans),
        "in_citations": len(in_citations),
        "kinds_checked": sorted(policy.pii_kinds),
    }
    if not counts:
        return Verdict(check=PII, passed=True, details=details), answer, citations
    summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    if policy.pii_action == "block":
        details["action"] = "blocked"
        verdict = Verdict(check=PII, passed=False, reason=f"personal data: {summary}", details=details)
        return verdict, answer, citations
    details["action"] = "redacted"
    verdict = Verdict(check=PII, passed=True, reason=f"redacted {summary}", details=details)
    return verdict, redact(answer, spans), redacted_citations


def check_output(drafted: AnswersDrafted, policy: OutputPolicy) -> OutputResult:
    grounding = check_grounding(drafted)
    cited = check_citations(drafted, policy)
    pii, answer, citations = check_pii(drafted.answer, drafted.citations, policy)
    verdicts = [grounding, cited, pii]
    failed = [v for v in verdicts if not v.passed]
    if failed:
        reason = USER_REASONS[failed[0].check]
        return OutputResult(status="blocked", answer=reason, reason=reason, citations=[], verdicts=verdicts)
    return OutputResult(status="answered", answer=answer, reason=None, citations=citations, verdicts=verdicts)


@dataclass(frozen=True, slots=True)
class OutputChecks:
    """The default `ports.OutputGuard`: the checks above under one policy."""

    policy: OutputPolicy

    def check(self, drafted: AnswersDrafted) -> OutputResult:
        return check_output(drafted, self.policy)
