"""Train the document-injection detector (`ragbus.shields.indirect`) and report how it generalises.

    .venv/bin/python libs/shields/training/train_documents.py            # model + report (~10 min, 1 core)
    .venv/bin/python libs/shields/training/train_documents.py --no-folds # the model only

Data (see doc_injections.py): BIPIA's contexts, the installed packages' READMEs and docstrings,
hand-written scientific abstracts and generated how-to texts, clean and with instructions planted at the
start, the middle or the end (bare as in BIPIA, or framed, hidden or obfuscated). Carriers are split by
identity into train and validation (an email, a README's package, an abstract is never on both sides);
this repository's docs and SciFact's abstracts (evaluation only, CC BY-NC) are never trained or tuned
on: they are reported.

Model: each document is cut into segments (`indirect.segments`), and a segment is an instruction when
at least half of it was planted. Two stages, both logistic regressions:
1. the n-gram model over hashed character 3-5 and word 1-2 grams of the segment (`NgramModel`);
   A second label, `form`, is trained on the segments' skeletons alone (`indirect.skeleton`);
2. the combiner over the two n-gram logits, the pattern score and the cues of `indirect.FEATURES`. It
   is trained on *out-of-fold* n-gram logits (3 folds by carrier), so that it learns how far to trust
   the n-gram model on text it has not seen.
The threshold is set on the validation carriers' clean documents (BIPIA contexts, READMEs, docstrings,
scientific abstracts, how-tos) for a false-positive rate of at most `--target-fpr`.

Validation (the report): whole BIPIA categories held out (5 folds of 5 categories: the model of a fold
never saw an instruction of its categories), each planted bare into validation contexts at the start,
the middle and the end; one instruction in five of every category held out (same categories, new
instructions); false positives on clean validation contexts, READMEs, scientific abstracts, how-tos,
and on SciFact's abstracts and this repository's docs, which nothing was fitted on; recall per
framing; latency per chunk on one core.
"""

# Seeded pseudo-random choices make the data set: reproducible, and no secret.

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, hstack

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE))

from doc_injections import (  # type: ignore[import-not-found]  # noqa: E402
    Carrier,
    Document,
    Instruction,
    documents,
    load_all,
    plant,
)

from ragbus.shields import indirect  # noqa: E402
from ragbus.shields.indirect import (  # noqa: E402
    DEFAULT_MODEL,
    FEATURES,
    Combiner,
    DocumentInjectionDetector,
    text_features,
)
from ragbus.shields.ngram import NgramConfig, NgramModel  # noqa: E402

CONFIG = NgramConfig()
EVAL_ONLY = {"repo-docs", "scifact"}  # carriers kept for the report: never trained or tuned on
SEED = 13
# Planted documents per carrier, by kind: emails and code answers are few, so each carries several.
POSITIVES = {
    "bipia-email": 8.0,
    "bipia-code": 8.0,
    "bipia-table": 2.5,
    "readme": 0.8,
    "science": 1.2,
    "howto": 0.6,
    "docstring": 0.5,
    "project-docs": 1.0,
}
NEGATIVES = {
    "bipia-email": 3.0,
    "bipia-code": 3.0,
    "bipia-table": 1.0,
    "readme": 1.0,
    "science": 2.0,
    "howto": 1.0,
    "docstring": 1.0,
    "project-docs": 3.0,
}


@dataclass
class Rows:
    """The segments of a set of documents: features, labels and which document each belongs to."""

    docs: list[Document]
    owner: np.ndarray  # document index per segment
    labels: np.ndarray  # 1 planted, 0 not, -1 partly (left out of training)
    features: np.ndarray  # FEATURES, with column 0 (ngram) still empty
    hashed: csr_matrix  # the n-gram features of the segments
    hashed_form: csr_matrix  # the n-gram features of the segments' skeletons alone


def segment_rows(docs: Sequence[Document], cache: Path | None = None) -> Rows:
    """The rows of the documents; with `cache`, kept in a file named by the documents' hash (the
    features take a minute to compute, and an experiment with the models reuses them)."""
    if cache is not None:
        joined = "\x00".join(d.text + repr(d.span) for d in docs)
        digest = hashlib.sha1(joined.encode(), usedforsecurity=False)
        digest.update(Path(__file__).with_name("doc_injections.py").read_bytes())
        digest.update(Path(indirect.__file__).read_bytes())
        path = cache / f"rows-{digest.hexdigest()[:16]}.pkl"
        if path.exists():
            with path.open("rb") as f:
                rows: Rows = pickle.load(f)
            return rows
        rows = segment_rows(docs)
        cache.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            pickle.dump(rows, f)
        return rows
    char, word = CONFIG.vectorizers()
    owner, labels, feats, texts = [], [], [], []
    for d, doc in enumerate(docs):
        segs, inputs, seg_features = text_features(doc.text)
        for seg, model_input, row in zip(segs, inputs, seg_features, strict=True):
            texts.append(model_input)
            feats.append(row)
            owner.append(d)
            labels.append(_label(seg.start, seg.end, doc.span))
    hashed = hstack([char.transform(texts), word.transform(texts)]).tocsr()
    forms = [t.rsplit("\n", 1)[-1] for t in texts]
    hashed_form = hstack([char.transform(forms), word.transform(forms)]).tocsr()
    return Rows(
        list(docs),
        np.asarray(owner),
        np.asarray(labels),
        np.asarray(feats, dtype=np.float64),
        hashed,
        hashed_form,
    )


def _label(start: int, end: int, span: tuple[int, int] | None) -> int:
    if span is None:
        return 0
    inside = max(0, min(end, span[1]) - max(start, span[0]))
    if inside == 0:
        return 0
    return 1 if inside >= 0.5 * (end - start) else -1


def fit_ngram(x: csr_matrix, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    weights = np.where(y == 1, 0.5 / max(1, (y == 1).sum()), 0.5 / max(1, (y == 0).sum())) * len(y)
    clf = LogisticRegression(C=c, solver="liblinear", max_iter=200)
    clf.fit(x, y, sample_weight=weights)
    return clf.coef_[0].astype(np.float32), float(clf.intercept_[0])


def prune(w: np.ndarray, keep: int) -> np.ndarray:
    """Only the `keep` largest weights: a small model file, and rare n-grams cannot decide alone."""
    if np.count_nonzero(w) <= keep:
        return w
    cut = np.partition(np.abs(w), -keep)[-keep]
    return np.where(np.abs(w) >= cut, w, 0.0).astype(np.float32)


def fit_combiner(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    weights = np.where(y == 1, 0.5 / max(1, (y == 1).sum()), 0.5 / max(1, (y == 0).sum())) * len(y)
    clf = LogisticRegression(C=1.0, max_iter=2000)
    clf.fit((x - mean) / scale, y, sample_weight=weights)
    return clf.coef_[0], float(clf.intercept_[0]), mean, scale


@dataclass
class Trained:
    ngram_w: np.ndarray  # (2 * n_features, 2): the lexical label, then the form label
    ngram_b: np.ndarray
    combiner: Combiner

    def logits(self, hashed: csr_matrix) -> np.ndarray:
        return np.asarray(np.clip(np.asarray(hashed @ self.ngram_w) + self.ngram_b, -30, 30))


def train(rows: Rows, mask: np.ndarray, *, c: float, keep: int, folds: int = 3) -> Trained:
    """Both stages on the segments `mask` selects (labels -1 left out)."""
    use = mask & (rows.labels >= 0)
    y = rows.labels

    # Out-of-fold n-gram logits: a planted document is scored by a model that never saw an instruction
    # of its category (so the combiner learns how far the n-grams carry to a new kind of instruction,
    # and how much the cues must add), a clean one by a model that never saw its carrier.
    def fold_of(d: Document) -> int:
        key = f"category:{d.category}" if d.category else d.key
        return int(hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest(), 16) % folds

    fold_of_doc = np.asarray([fold_of(d) for d in rows.docs])

    fold = fold_of_doc[rows.owner]
    oof = np.zeros((len(y), 2))

    def fit_both(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, b = fit_ngram(rows.hashed[sel], y[sel], c)
        wf, bf = fit_ngram(rows.hashed_form[sel], y[sel], c)
        return np.stack([prune(w, keep), prune(wf, keep // 4)], axis=1), np.asarray([b, bf])

    for k in range(folds):
        tr, te = use & (fold != k), use & (fold == k)
        w, b = fit_both(tr)
        oof[te] = np.asarray(rows.hashed[te] @ w) + b
    w, b = fit_both(use)
    x = rows.features[use].copy()
    x[:, :2] = np.clip(oof[use], -30, 30)
    cw, cb, mean, scale = fit_combiner(x, y[use])
    combiner = Combiner(tuple(map(float, cw)), cb, 0.5, tuple(map(float, mean)), tuple(map(float, scale)))
    return Trained(w.astype(np.float32), b.astype(np.float32), combiner)


def doc_scores(trained: Trained, rows: Rows) -> np.ndarray:
    x = rows.features.copy()
    x[:, :2] = trained.logits(rows.hashed)
    p = trained.combiner.probabilities(x)
    out = np.zeros(len(rows.docs))
    np.maximum.at(out, rows.owner, p)
    return out


def threshold_for(scores: np.ndarray, kinds: Sequence[str], target_fpr: float) -> float:
    """The lowest threshold at which the false-positive rate on these clean documents, averaged over
    their kinds (BIPIA contexts, READMEs, abstracts, ... count alike), is at most `target_fpr`."""
    kinds_arr = np.asarray(kinds)
    groups = [scores[kinds_arr == k] for k in sorted(set(kinds))]
    for t in np.unique(scores):
        if np.mean([(g > t).mean() for g in groups]) <= target_fpr:
            return float(t + 1e-9)
    return 0.5


def subset(rows: Rows, keep_docs: np.ndarray) -> Rows:
    """The rows of the documents `keep_docs` (a boolean mask over rows.docs)."""
    index = np.flatnonzero(keep_docs)
    remap = -np.ones(len(rows.docs), dtype=int)
    remap[index] = np.arange(len(index))
    seg = keep_docs[rows.owner]
    return Rows(
        [rows.docs[i] for i in index],
        remap[rows.owner[seg]],
        rows.labels[seg],
        rows.features[seg],
        rows.hashed[seg],
        rows.hashed_form[seg],
    )


# --- the document sets -------------------------------------------------------------------------------


def train_documents(carriers: Sequence[Carrier], instructions: Sequence[Instruction]) -> list[Document]:
    rng = random.Random(SEED)
    out: list[Document] = []
    by_kind: dict[str, list[Carrier]] = defaultdict(list)
    for c in carriers:
        if c.split == "train":
            by_kind[c.kind].append(c)
    for kind, group in sorted(by_kind.items()):
        out += documents(
            group,
            instructions,
            rng,
            positives_per_carrier=POSITIVES[kind],
            negatives_per_carrier=NEGATIVES[kind],
        )
    return out


def bipia_eval_documents(carriers: Sequence[Carrier], instructions: Sequence[Instruction]) -> list[Document]:
    """Every instruction planted bare, BIPIA's way, into validation contexts of its kind: text into
    emails and tables, code into code answers; at the start, the middle and the end."""
    rng = random.Random(SEED + 1)
    val = [c for c in carriers if c.split == "val"]
    emails = [c for c in val if c.kind == "bipia-email"]
    tables = [c for c in val if c.kind == "bipia-table"]
    code = [c for c in val if c.kind == "bipia-code"]
    out = []
    for inst in instructions:
        hosts = code if inst.code else emails + rng.sample(tables, 8)
        for carrier in hosts:
            for position in ("start", "middle", "end"):
                text, span = plant(carrier.text, inst.text, position, rng)
                out.append(
                    Document(
                        text, span, carrier.kind, inst.category, "bare", position, inst.group, carrier.key
                    )
                )
    return out


def clean_documents(carriers: Sequence[Carrier], split: str) -> list[Document]:
    return [
        Document(c.text, None, c.kind, None, None, None, None, c.key) for c in carriers if c.split == split
    ]


def framed_documents(carriers: Sequence[Carrier], instructions: Sequence[Instruction]) -> list[Document]:
    """Validation documents with every kind of framing and placement."""
    rng = random.Random(SEED + 2)
    val = [c for c in carriers if c.split == "val"]
    return list(documents(val, instructions, rng, positives_per_carrier=2.0, negatives_per_carrier=0.0))


# --- the report ----------------------------------------------------------------------------------------


def recall(scores: np.ndarray, docs: Sequence[Document], threshold: float, key: str) -> dict[str, float]:
    hit: dict[str, list[bool]] = defaultdict(list)
    for s, d in zip(scores, docs, strict=True):
        hit[str(getattr(d, key))].append(bool(s >= threshold))
    return {k: round(sum(v) / len(v), 3) for k, v in sorted(hit.items())}


def fpr_by_kind(
    scores: np.ndarray, docs: Sequence[Document], threshold: float
) -> dict[str, dict[str, float]]:
    out: dict[str, list[bool]] = defaultdict(list)
    for s, d in zip(scores, docs, strict=True):
        out[d.carrier].append(bool(s >= threshold))
    return {k: {"fpr": round(sum(v) / len(v), 4), "n": len(v)} for k, v in sorted(out.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--report", type=Path, default=HERE / "document-injection-report.json")
    parser.add_argument("--target-fpr", type=float, default=0.01)
    parser.add_argument("--c", type=float, default=2.0, help="inverse regularisation of the n-gram model")
    parser.add_argument("--keep", type=int, default=120_000, help="n-gram weights kept")
    parser.add_argument("--cache", type=Path, default=None, help="keep segment features here")
    parser.add_argument("--no-folds", action="store_true", help="skip the held-out-category folds")
    args = parser.parse_args()
    started = time.perf_counter()

    carriers, bipia, extra = load_all(args.data, REPO)
    print(f"carriers {Counter((c.kind, c.split) for c in carriers)}", flush=True)
    train_docs = train_documents(carriers, [*bipia, *extra])
    clean_val = clean_documents(carriers, "val") + clean_documents(carriers, "eval")
    bipia_val = bipia_eval_documents(carriers, bipia)
    framed_val = framed_documents(carriers, bipia)
    print(
        f"documents: train {len(train_docs)}, clean val {len(clean_val)}, bipia val {len(bipia_val)}, "
        f"framed val {len(framed_val)}",
        flush=True,
    )
    rows = segment_rows(train_docs, args.cache)
    clean_rows = segment_rows(clean_val, args.cache)
    bipia_rows = segment_rows(bipia_val, args.cache)
    framed_rows = segment_rows(framed_val, args.cache)
    print(
        f"segments: train {len(rows.labels)} ({int((rows.labels == 1).sum())} planted), "
        f"featurised in {time.perf_counter() - started:.0f}s",
        flush=True,
    )
    # This repository's docs and SciFact's abstracts (evaluation only, CC BY-NC): reported, not tuned on.
    tuning = np.asarray([d.carrier not in EVAL_ONLY for d in clean_val])
    kinds = [d.carrier for d in clean_val if d.carrier not in EVAL_ONLY]

    report: dict[str, object] = {
        "command": "python libs/shields/training/train_documents.py",
        "data": {
            "train_documents": len(train_docs),
            "train_planted": sum(d.span is not None for d in train_docs),
            "train_segments": len(rows.labels),
            "carriers": {
                f"{k}/{s}": n for (k, s), n in sorted(Counter((c.kind, c.split) for c in carriers).items())
            },
            "instructions": {"bipia": len(bipia), **Counter(i.category for i in extra)},
        },
        "target_fpr": args.target_fpr,
    }

    categories = sorted({i.category for i in bipia})
    if not args.no_folds:
        # Whole categories held out: 5 folds, 3 text and 2 code categories each.
        text_cats = sorted({i.category for i in bipia if not i.code})
        code_cats = sorted({i.category for i in bipia if i.code})
        rng = random.Random(SEED)
        rng.shuffle(text_cats)
        rng.shuffle(code_cats)
        held_recall: dict[str, float] = {}
        fold_thresholds = []
        held_flagged = np.zeros(len(bipia_val), dtype=bool)  # each document by the fold that held it out
        for k in range(5):
            held = set(text_cats[3 * k : 3 * k + 3] + code_cats[2 * k : 2 * k + 2])
            mask = np.asarray([d.category not in held for d in train_docs])[rows.owner]
            trained = train(rows, mask, c=args.c, keep=args.keep)
            threshold = threshold_for(doc_scores(trained, clean_rows)[tuning], kinds, args.target_fpr)
            fold_thresholds.append(threshold)
            scores = doc_scores(trained, bipia_rows)
            for cat, r in recall(scores, bipia_val, threshold, "category").items():
                if cat in held:
                    held_recall[cat] = r
            in_fold = np.asarray([d.category in held for d in bipia_val])
            held_flagged[in_fold] = scores[in_fold] >= threshold
            print(f"fold {k}: held out {sorted(held)} threshold {threshold:.3f}", flush=True)
        text_mean = float(np.mean([held_recall[c] for c in text_cats]))
        code_mean = float(np.mean([held_recall[c] for c in code_cats]))
        report["held_out_categories"] = {
            "recall": held_recall,
            "mean_text": round(text_mean, 3),
            "mean_code": round(code_mean, 3),
            "mean": round(float(np.mean(list(held_recall.values()))), 3),
            "thresholds": [round(t, 3) for t in fold_thresholds],
            "by_carrier": recall(held_flagged.astype(float), bipia_val, 0.5, "carrier"),
            "by_position": recall(held_flagged.astype(float), bipia_val, 0.5, "position"),
        }
        # New instructions of known categories: one in five of each category held out.
        held_inst = set()
        by_cat: dict[str, list[Instruction]] = defaultdict(list)
        for inst in bipia:
            by_cat[inst.category].append(inst)
        for cat in categories:
            held_inst.add(random.Random(cat).choice(by_cat[cat]).group)
        mask = np.asarray([d.group not in held_inst for d in train_docs])[rows.owner]
        trained = train(rows, mask, c=args.c, keep=args.keep)
        threshold = threshold_for(doc_scores(trained, clean_rows)[tuning], kinds, args.target_fpr)
        scores = doc_scores(trained, bipia_rows)
        held_docs = np.asarray([d.group in held_inst for d in bipia_val])
        report["held_out_instructions"] = {
            "recall": round(float((scores[held_docs] >= threshold).mean()), 3),
            "threshold": round(threshold, 3),
        }
        print(json.dumps(report, indent=1), flush=True)

    # The shipped model: every training document.
    trained = train(rows, np.ones(len(rows.labels), dtype=bool), c=args.c, keep=args.keep)
    threshold = threshold_for(doc_scores(trained, clean_rows)[tuning], kinds, args.target_fpr)
    # The bias moves so that the chosen threshold is probability 0.5: a score over 0.5 is flagged.
    shift = float(np.log(threshold / (1 - threshold)))
    combiner = Combiner(
        trained.combiner.weights,
        trained.combiner.bias - shift,
        0.5,
        trained.combiner.mean,
        trained.combiner.scale,
    )
    raw_threshold = threshold
    threshold = 0.5
    model = NgramModel(
        CONFIG,
        ("injection", "form"),
        trained.ngram_w,
        trained.ngram_b,
        {"combiner": combiner.to_meta(), "trained": "libs/shields/training/train_documents.py"},
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)

    # Figures of the shipped model (in-sample for the categories, out-of-sample for the carriers).
    trained.combiner = combiner
    clean_scores = doc_scores(trained, clean_rows)
    bipia_scores = doc_scores(trained, bipia_rows)
    framed_scores = doc_scores(trained, framed_rows)
    report["model"] = {
        "file": str(args.out.relative_to(REPO)),
        "bytes": args.out.stat().st_size,
        "threshold": threshold,
        "threshold_before_recentring": round(raw_threshold, 4),
        "combiner": dict(zip(FEATURES, (round(w, 3) for w in combiner.weights), strict=True)),
        "ngram_weights_kept": int(np.count_nonzero(trained.ngram_w[:, 0])),
        "form_weights_kept": int(np.count_nonzero(trained.ngram_w[:, 1])),
    }
    report["false_positive_rate"] = fpr_by_kind(clean_scores, clean_val, threshold)
    report["recall_bipia_val_contexts_seen_categories"] = {
        "by_position": recall(bipia_scores, bipia_val, threshold, "position"),
        "by_carrier": recall(bipia_scores, bipia_val, threshold, "carrier"),
    }
    report["recall_framed_val"] = recall(framed_scores, framed_val, threshold, "framing")
    report["latency_ms_per_chunk"] = latency(args.out, clean_val)
    report["seconds"] = round(time.perf_counter() - started)
    args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


def latency(path: Path, docs: Sequence[Document]) -> dict[str, float]:
    """Per chunk of about 1,000 characters, one at a time (as ingest scans), after a warm-up."""
    detector = DocumentInjectionDetector.load(path)
    texts = [
        d.text[:1100] for d in docs if d.carrier in {"bipia-email", "readme", "repo-docs", "bipia-table"}
    ]
    texts = texts[:300]
    detector.scan_many(texts[:10])
    times = []
    for t in texts:
        start = time.perf_counter()
        detector.scan(t)
        times.append((time.perf_counter() - start) * 1000)
    batch_start = time.perf_counter()
    detector.scan_many(texts)
    batch = (time.perf_counter() - batch_start) * 1000 / len(texts)
    return {
        "p50": round(float(np.percentile(times, 50)), 2),
        "p95": round(float(np.percentile(times, 95)), 2),
        "batched_mean": round(batch, 2),
        "chunks": len(texts),
    }


if __name__ == "__main__":
    main()
