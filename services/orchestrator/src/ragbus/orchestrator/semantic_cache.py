"""The semantic cache's rules, pure: when a past answer may answer a new question.

A past answer is served only when it is *safe*, which is more than "close in embedding space": questions
that differ by one negation, one number or one name sit at a cosine of 0.9 and above ("Does aspirin
reduce the risk of stroke?" / "Does aspirin not reduce ...", "... in 2019?" / "... in 2020?",
"Who founded Apple?" / "Who founded Google?") and need different answers. So a hit must pass, besides
the similarity threshold:

- the same **scope**: tenant (the store's own scoping), the request options that shape an answer
  (top_k, tiers, documents, metadata filter), the asker's groups, and the configuration that produced
  it (tier models and prompt versions): a cached answer never crosses an ACL or a prompt release;
- the same **negations** (not, no, never, n't, without...), counted;
- the same **numbers** (digits and number words, normalised: "2", "two" and "2.0" are one number);
- the same **names** (capitalised words past the first, acronyms, identifiers such as `BRCA1`);
- the same **content words in the same order** (stems; at most `max_changed_words` changed, 0 by
  default), which catches a swapped lowercase name ("who founded apple" / "who founded google"), a
  swapped group ("women" / "men") or a reversed relation ("does smoking cause cancer" / "does cancer
  cause smoking") that the rules above cannot see. Case, punctuation, function words and framing
  ("Is it true that ...?") may differ. On SciFact's claims (bench/cache.py) one swapped content word
  passed a Jaccard of 0.8 for a third of the claims: a cache that may not be wrong has to be this strict,
  and trades synonyms ("completed" / "finished") for it;
- an age under `ttl_s`, and cited documents unchanged since: the orchestrator deletes the entries that
  used a document when `docs.indexed` says it changed or went away.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ragbus.common.events import QueryOptions
from ragbus.common.stopwords import STOPWORDS
from ragbus.vectors.sparse import stems


@dataclass(frozen=True, slots=True)
class CachePolicy:
    enabled: bool = True
    # Cosine of the two questions' embeddings (MiniLM): the candidates; the wording rules then decide.
    min_similarity: float = 0.9
    # Content words (stems) that may be replaced, added or dropped between the two questions. 0: none.
    max_changed_words: int = 0
    ttl_s: float = 86_400.0
    # False: the similarity alone decides (a plain semantic cache; bench/cache.py's baseline).
    check_wording: bool = True


_WORD = re.compile(r"\d+(?:[.,]\d+)*(?![^\W\d_])|[^\W_]+(?:['’][^\W_]+)*")
_NEGATIONS = frozenset(
    "not no never none nobody nothing neither nor without cannot nowhere hardly barely lacks lack "  # noqa: SIM905
    "unable fails fail".split()
)
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "  # noqa: SIM905
        "sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": "30", "forty": "40", "fifty": "50", "hundred": "100", "thousand": "1000", "million": "1e6",
     "billion": "1e9", "first": "1st", "second": "2nd", "third": "3rd", "half": "0.5", "double": "x2",
     "twice": "x2", "triple": "x3", "once": "x1"}  # fmt: skip
# Words that frame a question without changing it ("Is it true that ...", "... really ...").
_FRAMING = frozenset("true really actually correct indeed fact".split())  # noqa: SIM905
_NOT_CONTENT = STOPWORDS | _NEGATIONS | frozenset(_NUMBER_WORDS) | _FRAMING


def normalise(question: str) -> str:
    """NFKC, case folded, blanks collapsed, trailing punctuation off: the form a cache entry is keyed by."""
    text = unicodedata.normalize("NFKC", question).casefold()
    return " ".join(text.split()).rstrip(" ?!.")


def scope(options: QueryOptions, config: str, groups: Sequence[str] = ()) -> str:
    """What besides the question an answer depends on, as one key: a hit must share it exactly."""
    shaping = options.model_dump(mode="json", include={"top_k", "min_tier", "max_tier", "doc_ids", "where"})
    body = json.dumps([shaping, sorted(groups), config], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Signature:
    negations: int
    numbers: frozenset[str]
    names: frozenset[str]
    words: frozenset[str]  # every word, case folded
    stems: tuple[str, ...]  # the content words' stems, in order


def _number(token: str) -> str:
    if token in _NUMBER_WORDS:
        return _NUMBER_WORDS[token]
    plain = token.replace(",", "")
    try:
        value = float(plain)
    except ValueError:
        return plain
    return f"{value:g}"


@lru_cache(maxsize=4096)
def signature(question: str) -> Signature:
    text = unicodedata.normalize("NFKC", question)
    tokens = _WORD.findall(text)
    negations = sum(1 for t in tokens if t.casefold() in _NEGATIONS or t.casefold().endswith(("n't", "n’t")))
    numbers = frozenset(
        _number(t.casefold()) for t in tokens if t[0].isdigit() or t.casefold() in _NUMBER_WORDS
    )
    names = frozenset(
        t.casefold()
        for i, t in enumerate(tokens)
        # A capital past the first word, an acronym, or letters and digits mixed (BRCA1, COVID-19's "19"
        # is a number already).
        if (i > 0 and t[0].isupper() and t.casefold() not in STOPWORDS)
        or (len(t) > 1 and t.isupper())
        or (any(c.isdigit() for c in t) and any(c.isalpha() for c in t))
    )
    # Every token, a name led by a digit ("5mmol", "5p") included: a name is looked up among them.
    words = [t.casefold() for t in tokens]
    content = [w for w in words if not w[0].isdigit() and w not in _NOT_CONTENT]
    return Signature(negations, numbers, names, frozenset(words), tuple(stems(content)))


def mismatch(asked: str, cached: str, policy: CachePolicy) -> str | None:
    """Why the answer cached for `cached` must not answer `asked`; None when it may."""
    if not policy.check_wording:
        return None
    a, b = signature(asked), signature(cached)
    if a.negations != b.negations:
        return f"negation differs ({a.negations} vs {b.negations})"
    if a.numbers != b.numbers:
        return f"numbers differ ({sorted(a.numbers ^ b.numbers)})"
    # A name must be in the other question, capitalised or not ("eiffel tower" is the same tower).
    names = sorted((a.names - b.words) | (b.names - a.words))
    if names:
        return f"names differ ({names})"
    changed = _changed_words(a.stems, b.stems)
    if changed > policy.max_changed_words:
        return f"content words differ ({changed} changed, at most {policy.max_changed_words})"
    return None


def _changed_words(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Content words replaced, added or dropped to turn one sequence into the other (order counts)."""
    if a == b:
        return 0
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")
