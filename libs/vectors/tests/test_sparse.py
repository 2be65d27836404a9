"""BM25 sparse vectors and reciprocal rank fusion: rankings as BM25 defines them, fusion by rank only."""

from __future__ import annotations

import math
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import snowballstemmer
from snowballstemmer.english_stemmer import EnglishStemmer

from ragbus.vectors.sparse import Bm25Encoder, Bm25Stats, _stem, reciprocal_rank_fusion, term_id, terms

DOCS = {
    "tp53": "TP53 mutations are found in half of all human cancers; p53 is a tumour suppressor.",
    "brca": "BRCA1 and BRCA2 mutations raise the risk of breast and ovarian cancer.",
    "diet": "A diet rich in fibre lowers the risk of colon cancer in adults.",
    "sleep": "Adults who sleep less than six hours a night have a higher risk of obesity.",
}


@pytest.fixture
def encoder() -> Bm25Encoder:
    return Bm25Encoder(Bm25Stats.of(DOCS.values()).average_length)


def rank(encoder: Bm25Encoder, query: str) -> list[str]:
    q, idf = encoder.query(query), Bm25Stats.of(DOCS.values()).idf
    scored = {d: encoder.document(t, idf).dot(q) for d, t in DOCS.items()}
    return [d for d, s in sorted(scored.items(), key=lambda x: -x[1]) if s > 0]


def test_terms_are_stemmed_lower_case_words_without_stopwords() -> None:
    assert terms("The Mutations of TP53 were found in cancers") == ["mutat", "tp53", "found", "cancer"]
    assert term_id("cancer") == term_id("cancer") < 2**31


# Words whose stems take the English algorithm's rarer steps (exceptions, -li, -ogi, y/Y, apostrophes,
# prefixes such as gener-/commun-), besides ordinary scientific vocabulary.
_STEM_TEXT = (
    "generously communities arsenal skies dying lying news howe atlas cosmos bias andes innings outing "
    "canning herring earring proceed exceed succeed gently singly early only biology apology "
    "youth's boys' crying flies happily relational conditional rational valency hesitancy digitizer "
    "conformabli radicalli differentli vileli analogousli vietnamization predication operator feudalism "
    "decisiveness hopefulness callousness formaliti sensitiviti sensibiliti triplicate formative formalize "
    "electriciti electrical hopeful goodness revival allowance inference airliner gyroscopic adjustable "
    "defensible irritant replacement adjustment dependent adoption homologou communism activate angulariti "
    "homologous effective bowdlerize mitochondrial phosphorylation apoptosis tumours cancers methylated "
    "p53-dependent 5-fluorouracil caffeine's naïve café résumé"
)
STEM_WORDS = tuple(_STEM_TEXT.split())


def test_stems_are_the_snowball_algorithms_own() -> None:
    """The C stemmer (PyStemmer, which snowballstemmer runs when it is installed) gives the stems the
    pure-Python one does: a stored document's terms and a new question's must be the same strings."""
    assert type(snowballstemmer.stemmer("english")).__module__.startswith("Stemmer")  # the C one
    reference = EnglishStemmer()
    _stem.cache_clear()
    assert [_stem(w) for w in STEM_WORDS] == [reference.stemWord(w) for w in STEM_WORDS]


def test_stemming_from_many_threads_gives_each_word_its_own_stem(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Snowball stemmer keeps the word it works on in the object: shared between threads, the
    pure-Python one (where PyStemmer is missing) mixes words up or raises. Each thread has its own."""
    monkeypatch.setattr(snowballstemmer, "stemmer", lambda _: EnglishStemmer())  # new threads build it
    words = [f"{w}{k}ing" for k in range(40) for w in STEM_WORDS]  # every one new to the cache
    reference = EnglishStemmer()
    expected = [reference.stemWord(w) for w in words]
    _stem.cache_clear()
    barrier = threading.Barrier(4)

    def stem_all(offset: int) -> list[str]:
        barrier.wait()
        order = [*range(offset, len(words)), *range(offset)]  # the threads start at different words
        stems = {k: _stem(words[k]) for k in order}
        return [stems[k] for k in range(len(words))]

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch mid-word, as they may under load
    try:
        with ThreadPoolExecutor(4) as pool:
            stems = list(pool.map(stem_all, (0, 101, 257, 499)))
    finally:
        sys.setswitchinterval(interval)
    assert all(got == expected for got in stems)


def test_a_rare_exact_term_ranks_its_document_first(encoder: Bm25Encoder) -> None:
    assert rank(encoder, "What does BRCA1 do?") == ["brca"]
    assert rank(encoder, "risk of cancer")[0] in {"brca", "diet"}  # both name risk and cancer
    assert rank(encoder, "sleeping adults")[0] == "sleep"  # stems match: sleeping = sleep


def test_the_dot_product_is_the_bm25_score() -> None:
    stats = Bm25Stats.of(["alpha beta gamma", "beta gamma delta", "gamma delta epsilon"])
    encoder = Bm25Encoder(stats.average_length, k1=1.2, b=0.75)
    # One query term, "beta", in doc 0 (tf 1, length 3 = the average): idf * 1 * 2.2 / (1 + 1.2).
    idf = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    assert encoder.document("alpha beta gamma", stats.idf).dot(encoder.query("beta")) == pytest.approx(idf)
    # Without the IDF (the store applies it), the weight is the term-frequency part alone: 1 here.
    assert encoder.document("alpha beta gamma").dot(encoder.query("beta")) == pytest.approx(1.0)
    # A longer document with the term once scores lower (length normalisation).
    longer = encoder.document("alpha beta gamma delta epsilon zeta eta").dot(encoder.query("beta"))
    assert longer < 1.0


def test_a_term_in_every_document_still_weighs_something_positive() -> None:
    stats = Bm25Stats.of(["cancer one", "cancer two", "cancer three"])
    assert stats.idf(term_id("cancer")) > 0


def test_rank_fusion_rewards_agreement_and_ignores_score_scales() -> None:
    dense = ["a", "b", "c"]
    sparse = ["c", "a", "d"]
    fused = reciprocal_rank_fusion([dense, sparse], k=60)
    assert [key for key, _ in fused] == ["a", "c", "b", "d"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
