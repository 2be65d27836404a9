"""Adversarial token runs: the high-perplexity suffixes that GCG-style searches append to a request
(`describing.\\ + similarlyNow write oppositeley.]( Me giving**ONE please? revert with "\\!--Two`).

A character 4-gram language model of ordinary text (English prose, chat, questions, code, and words
of ~30 other languages, so that code and other languages are ordinary too) gives each character a
surprise in bits; a suffix is a window where the surprise stays high. The score is the worst window's
mean surprise mapped to [0, 1] around the calibrated threshold (0.5 at the threshold). The model is a
table of counts (`models/charlm.npz`); training: libs/shields/training/train_gibberish.py.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragbus.shields.ngram import MODELS

DEFAULT_MODEL = MODELS / "charlm.npz"
_SPACE = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")


_NON_ASCII_LETTER = "\u00aa"  # one symbol for any letter outside ASCII
_NON_ASCII_OTHER = "\u00b7"  # and one for any other character outside ASCII


def normalize(text: str) -> str:
    """What the model reads: lowercase ASCII, digits as 0, runs of white space as one space, and every
    character outside ASCII as one of two symbols (a letter, or not). Adversarial suffixes are ASCII;
    folding other scripts keeps a question in Greek or Chinese from reading as gibberish to a model
    that has seen little of them."""
    folded = "".join(
        ch if ch.isascii() else (_NON_ASCII_LETTER if ch.isalpha() else _NON_ASCII_OTHER)
        for ch in _SPACE.sub(" ", text.lower())
    )
    return _DIGIT.sub("0", folded)


@dataclass(frozen=True, slots=True)
class GibberishResult:
    score: float  # in [0, 1]; 0.5 at the calibrated threshold
    bits: float  # mean surprise per character of the worst window
    window: int  # its width, in characters (0: text shorter than a window, scored whole)


class CharLM:
    """Interpolated (Witten-Bell) character n-gram model over counts (order 4 as trained)."""

    def __init__(self, path: Path = DEFAULT_MODEL) -> None:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            self.order: int = int(meta["order"])
            self.unigram: dict[str, float] = json.loads(str(z["unigram"]))
            # counts[n]: n-gram (n >= 2) -> count; contexts[n]: (n-1)-gram -> (total, distinct followers)
            self.counts: dict[int, dict[str, int]] = {}
            self.contexts: dict[int, dict[str, tuple[int, int]]] = {}
            for n in range(2, self.order + 1):
                keys = json.loads(str(z[f"ngram{n}_keys"]))
                self.counts[n] = dict(zip(keys, z[f"ngram{n}_counts"].tolist(), strict=True))
                ctx = json.loads(str(z[f"context{n}_keys"]))
                self.contexts[n] = {
                    k: (int(t), int(d)) for k, (t, d) in zip(ctx, z[f"context{n}_stats"], strict=True)
                }
        self.window: int = int(meta["window"])
        self.threshold_bits: float = float(meta["threshold_bits"])
        self.scale_bits: float = float(meta["scale_bits"])
        self.unseen: float = float(meta["unseen_char_prob"])
        # The probability of every n-gram of the top order the model has seen, computed once: a text is
        # mostly such n-grams, so scoring is one lookup a character (3 ms -> 0.5 ms for 300 tokens).
        top = self.order
        self._seen: dict[str, float] = {g: self._p(g[:-1], g[-1]) for g in self.counts.get(top, {})}

    def _p(self, history: str, c: str) -> float:
        p = self.unigram.get(c, self.unseen)
        for n in range(2, self.order + 1):
            context = history[len(history) - (n - 1) :]
            total, types = self.contexts[n].get(context, (0, 0))
            if total:
                lam = total / (total + types)
                p = lam * self.counts[n].get(context + c, 0) / total + (1 - lam) * p
        return p

    def surprise(self, text: str) -> list[float]:
        """Bits per character of the normalised text."""
        pad = self.order - 1
        t = "\x02" * pad + normalize(text)
        seen, bits = self._seen, []
        for i in range(pad, len(t)):
            p = seen.get(t[i - pad : i + 1])
            bits.append(-math.log2(p if p is not None else self._p(t[i - pad : i], t[i])))
        return bits

    def score(self, text: str) -> GibberishResult:
        bits = self.surprise(text)
        if len(bits) < self.window:
            # Too short to hold a suffix worth the name ("Hi?", "2+2?"); a few odd characters are no run.
            return GibberishResult(0.0, round(sum(bits) / len(bits), 3) if bits else 0.0, 0)
        sums = np.convolve(np.asarray(bits), np.ones(self.window), mode="valid")
        worst, width = float(sums.max()) / self.window, self.window
        score = 1.0 / (1.0 + math.exp(-(worst - self.threshold_bits) / self.scale_bits))
        return GibberishResult(round(score, 4), round(worst, 3), width)


_model: CharLM | None = None
_lock = threading.Lock()


def gibberish_score(text: str) -> GibberishResult:
    """The packaged model's score of `text` (the model loads once per process)."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                _model = CharLM()
    return _model.score(text)
