"""Train the guard's prompt classifiers and write them into ragbus.shields' models/.

    RAGBUS_GROUPS=train bash scripts/setup.sh   # pandas, pyarrow, pyyaml; keeps the CPU torch
    .venv/bin/python libs/shields/training/train_prompts.py   # ~50-80 min on 2 cores (two epochs)

1. Examples: libs/shields/training/sources.py (the reference data in ../shared/data/guard/train, public
   prompt sets inside PyPI packages, template and suffix variants, XSTest-like contrasts).
2. Split by group (a template, a conversation) 80/20 into train and validation; whole sources are
   also held out one at a time for the n-gram model (`--loso`), to see how it does on attacks of a
   kind it never saw.
3. `prompt-ngram.npz`: logistic regression over hashed character and word n-grams (labels `attack`,
   `harmful`); sub-millisecond, strongest on long jailbreak templates.
4. `prompt-minilm.npz`: all-MiniLM-L6-v2 from its wheel, fine-tuned with LoRA (rank 8, every linear
   layer) and one logistic head per label; judges meaning ("kill a Python process" vs "kill my
   neighbour"). With `--pair-weight W` the hand-written twins (a harmful request and its safe
   look-alike, line for line) are also trained as pairs: a pair stays on one side of the split, shares
   a batch, and W times a margin loss asks the harmful line's logit to be `--pair-margin` above its
   twin's, so that what separates them is intent rather than the topic they share.
5. `prompt-report.json`: what was trained on, and the validation figures of the shipped models (trained
   on the train split only, so the figures are those of the files shipped). XSTest and Giskard are
   never trained on; they are reported as dev sets.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from sources import HANDWRITTEN_SETS, _group  # noqa: E402  (beside this script)

REPO = HERE.parents[2]
MODELS = REPO / "libs/shields/src/ragbus/shields/models"
LABELS = ("attack", "harmful")
# Big benign sources are capped for the transformer (the n-gram model takes them all).
CAPS = {"s-labs": 4000, "chitchat": 2000, "chatterbot-intl": 2000}
# The hand-written short requests (sources.handwritten) are few beside the rest; the transformer sees
# each of them this many times an epoch (`--handwritten-repeat`).
HANDWRITTEN_SOURCES = tuple(f"{name}/" for name, *_ in HANDWRITTEN_SETS)
REPEAT = 4


def held_out(group: str) -> bool:
    """Whether a group is in the validation fifth: its hex hash (`sources._group`) is 0 modulo 5; a
    group a source names itself (neuralchemy's `grp_...`) is hashed first, as `_group` hashes."""
    try:
        value = int(group, 16)
    except ValueError:
        value = int(_group(group), 16)
    return value % 5 == 0


def split(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """80/20 by group: a group is held out when its hash (`sources._group`, hex) is 0 modulo 5. By a
    hash, not a shuffle of all groups, so that adding or removing a source moves no other example:
    removing SciFact's claims (evaluation only) would have reshuffled every group under the old split."""
    held = {r["group"] for r in rows if held_out(r["group"])}
    return [r for r in rows if r["group"] not in held], [r for r in rows if r["group"] in held]


def join_twins(rows: Sequence[dict[str, Any]], pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The rows, each hand-written twin marked with `twin` (the harmful line's group) and the safe line
    moved into its harmful twin's group, so that split() keeps a pair on one side. The harmful lines keep
    their group, hence their side of the split; a pair one of whose lines was dropped (near XSTest, a
    duplicate of another source's prompt) stays two unpaired rows."""
    # Only hand-written rows: a twin that repeats another source's prompt (de-duplicated to that one)
    # stays unpaired, so that no other source's group, hence its split, changes.
    index = {r["text"]: i for i, r in enumerate(rows) if r["source"].startswith(HANDWRITTEN_SOURCES)}
    out = [dict(r) for r in rows]
    for harmful, safe in pairs:
        h, s = index.get(harmful), index.get(safe)
        if h is None or s is None or either_label(out[h]) != 1 or either_label(out[s]) != 0:
            continue
        out[s]["group"] = out[h]["group"]
        out[h]["twin"] = out[s]["twin"] = out[h]["group"]
    return out


def twins_in(chunk: Sequence[dict[str, Any]]) -> list[tuple[int, int, list[int]]]:
    """(harmful row, safe row, labels on which they differ) for each twin pair in a batch; a pair
    repeated in the batch counts once per copy that has a partner."""
    waiting: dict[str, dict[int, list[int]]] = defaultdict(lambda: {0: [], 1: []})
    for i, r in enumerate(chunk):
        if r.get("twin"):
            label = either_label(r)
            if label is not None:
                waiting[r["twin"]][label].append(i)
    found = []
    for sides in waiting.values():
        for h, s in zip(sides[1], sides[0], strict=False):
            differ = [j for j, k in enumerate(LABELS) if chunk[h][k] == 1 and chunk[s][k] == 0]
            if differ:
                found.append((h, s, differ))
    return found


def pair_margin_loss(logits: Any, pairs: Sequence[tuple[int, int, list[int]]], margin: float) -> Any:
    """Mean over the pairs (and the labels on which twins differ) of max(0, margin - (z_harmful -
    z_safe)): zero once every harmful line's logit is `margin` above its safe twin's. The classification
    loss scores each line alone, so a topic word that pushes both up costs little; this term pays only
    for what tells the twins apart."""
    import torch

    if not pairs:
        return logits.sum() * 0.0
    h = torch.tensor([p[0] for p in pairs for _ in p[2]])
    s = torch.tensor([p[1] for p in pairs for _ in p[2]])
    j = torch.tensor([label for p in pairs for label in p[2]])
    gap = logits[h, j] - logits[s, j]
    return torch.relu(margin - gap).mean()


def label_matrix(rows: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([[r[k] if r[k] is not None else 0 for k in LABELS] for r in rows], dtype=np.float32)
    known = np.array([[r[k] is not None for k in LABELS] for r in rows], dtype=np.float32)
    return y, known


# --- the n-gram model -----------------------------------------------------------------------------------


def train_ngram(rows: Sequence[dict[str, Any]], c: float = 4.0) -> Any:
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    from ragbus.shields.ngram import NgramConfig, NgramModel

    config = NgramConfig()
    char, word = config.vectorizers()
    weights = np.zeros((2 * config.n_features, len(LABELS)), dtype=np.float32)
    bias = np.zeros(len(LABELS), dtype=np.float32)
    for j, label in enumerate(LABELS):
        known = [r for r in rows if r[label] is not None]
        texts = [r["text"][: config.window_chars] for r in known]
        x = hstack([char.transform(texts), word.transform(texts)]).tocsr()
        model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", solver="liblinear")
        model.fit(x, [r[label] for r in known])
        weights[:, j] = model.coef_[0]
        bias[j] = model.intercept_[0]
    return NgramModel(config, LABELS, weights, bias)


# --- the fine-tuned MiniLM --------------------------------------------------------------------------------


def epoch_sample(
    rows: Sequence[dict[str, Any]], *, repeat: int, seed: int, keep_twins: bool = False
) -> list[dict[str, Any]]:
    """One epoch of the transformer's training: the big benign sources capped (CAPS), each hand-written
    line `repeat` times, shuffled; with `keep_twins`, each copy of a harmful twin right before a copy of
    its safe twin (join_twins), so that a batch holds both and the pair loss can compare them."""
    rng = random.Random(seed)
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_source[r["source"]].append(r)
    sample: list[dict[str, Any]] = []
    for source, members in sorted(by_source.items()):
        members = list(members)
        rng.shuffle(members)
        times = repeat if source.startswith(HANDWRITTEN_SOURCES) else 1
        sample += members[: CAPS.get(source, len(members))] * times
    if not keep_twins:
        rng.shuffle(sample)
        return sample
    units: list[list[dict[str, Any]]] = []
    sides: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: {0: [], 1: []})
    for r in sample:
        if r.get("twin") and either_label(r) is not None:
            sides[r["twin"]][either_label(r) or 0].append(r)
        else:
            units.append([r])
    for pair in sides.values():
        units += [[h, s] for h, s in zip(pair[1], pair[0], strict=False)]
        n = min(len(pair[0]), len(pair[1]))
        units += [[r] for r in pair[1][n:] + pair[0][n:]]
    rng.shuffle(units)
    return [r for unit in units for r in unit]


def train_minilm(
    rows: Sequence[dict[str, Any]],
    *,
    max_tokens: int,
    epochs: float,
    lr: float,
    seed: int,
    repeat: int = REPEAT,
    pair_weight: float = 0.0,
    pair_margin: float = 3.0,
    init: Path | None = None,
) -> dict[str, np.ndarray]:
    import torch
    from torch import nn
    from transformers import AutoModel, AutoTokenizer

    from ragbus.shields.adapters.minilm_classifier import base_model_path, batch_inputs, mean_pool

    torch.manual_seed(seed)
    base = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModel.from_pretrained(str(base))
    for p in model.parameters():
        p.requires_grad = False

    class LoRA(nn.Module):
        def __init__(self, linear: nn.Linear, rank: int = 8, alpha: int = 16) -> None:
            super().__init__()
            self.linear, self.scale = linear, alpha / rank
            self.A = nn.Parameter(torch.randn(rank, linear.in_features) * 0.01)
            self.B = nn.Parameter(torch.zeros(linear.out_features, rank))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.linear(x) + (x @ self.A.t() @ self.B.t()) * self.scale
            return out

    wrapped: dict[str, LoRA] = {}
    for i, layer in enumerate(model.encoder.layer):
        attention = layer.attention
        for attr, parent in (("query", attention.self), ("key", attention.self), ("value", attention.self)):
            setattr(parent, attr, lora := LoRA(getattr(parent, attr)))
            wrapped[f"encoder.layer.{i}.attention.self.{attr}"] = lora
        attention.output.dense = lora = LoRA(attention.output.dense)
        wrapped[f"encoder.layer.{i}.attention.output.dense"] = lora
        layer.intermediate.dense = lora = LoRA(layer.intermediate.dense)
        wrapped[f"encoder.layer.{i}.intermediate.dense"] = lora
        layer.output.dense = lora = LoRA(layer.output.dense)
        wrapped[f"encoder.layer.{i}.output.dense"] = lora
    head = nn.Linear(model.config.hidden_size, len(LABELS))
    head_tokens = int(max_tokens * 0.75)
    if init is not None:
        # Continue from a trained model's adapters and head (a short schedule on top of it).
        with np.load(init) as saved:
            meta = json.loads(str(saved["meta"]))
            if meta["max_tokens"] != max_tokens or meta["labels"] != list(LABELS):
                raise SystemExit(f"{init}: trained with {meta}, not max_tokens={max_tokens}")
            with torch.no_grad():
                for name, lora in wrapped.items():
                    lora.A.copy_(torch.from_numpy(saved[f"lora/{name}.A"].astype(np.float32)))
                    lora.B.copy_(torch.from_numpy(saved[f"lora/{name}.B"].astype(np.float32)))
                head.weight.copy_(torch.from_numpy(saved["head_weight"]))
                head.bias.copy_(torch.from_numpy(saved["head_bias"]))

    def forward(texts: Sequence[str]) -> torch.Tensor:
        ids, mask = batch_inputs(tokenizer, texts, max_tokens, head_tokens)
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits: torch.Tensor = head(mean_pool(hidden, mask))
        return logits

    sample = epoch_sample(rows, repeat=repeat, seed=seed, keep_twins=pair_weight > 0)
    batch = 32
    steps = max(1, int(len(sample) * epochs / batch))
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    model.train()
    started = time.monotonic()
    pair_terms, pair_sum = 0, 0.0  # twin pairs seen since the last print, and their summed loss
    for step in range(steps):
        chunk = [sample[(step * batch + k) % len(sample)] for k in range(batch)]
        y, known = (torch.from_numpy(a) for a in label_matrix(chunk))
        logits = forward([r["text"] for r in chunk])
        loss = (loss_fn(logits, y) * known).sum() / known.sum().clamp(min=1)
        if pair_weight > 0:
            pairs = twins_in(chunk)
            pair_loss = pair_margin_loss(logits, pairs, pair_margin)
            loss = loss + pair_weight * pair_loss
            pair_terms += len(pairs)
            pair_sum += float(pair_loss.item()) * len(pairs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            pairs_note = (
                f" pairs {pair_terms} margin loss {pair_sum / max(pair_terms, 1):.4f}" if pair_weight else ""
            )
            print(
                f"  minilm step {step}/{steps} loss {loss.item():.4f}{pairs_note}"
                f" ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
            pair_terms, pair_sum = 0, 0.0
    arrays: dict[str, np.ndarray] = {}
    for name, lora in wrapped.items():
        arrays[f"lora/{name}.A"] = lora.A.detach().numpy().astype(np.float16)
        arrays[f"lora/{name}.B"] = lora.B.detach().numpy().astype(np.float16)
    arrays["head_weight"] = head.weight.detach().numpy().astype(np.float32)
    arrays["head_bias"] = head.bias.detach().numpy().astype(np.float32)
    meta = {
        "labels": list(LABELS),
        "max_tokens": max_tokens,
        "head_tokens": head_tokens,
        "lora_rank": 8,
        "lora_alpha": 16,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays


# --- evaluation ---------------------------------------------------------------------------------------


def rates(scores: np.ndarray, rows: Sequence[dict[str, Any]], label: str, threshold: float) -> dict[str, Any]:
    y = [r[label] for r in rows]
    pos = [s for s, v in zip(scores, y, strict=True) if v == 1]
    neg = [s for s, v in zip(scores, y, strict=True) if v == 0]
    out: dict[str, Any] = {}
    if pos:
        out["recall"] = round(float(np.mean(np.asarray(pos) >= threshold)), 4)
        out["positives"] = len(pos)
    if neg:
        out["fpr"] = round(float(np.mean(np.asarray(neg) >= threshold)), 4)
        out["negatives"] = len(neg)
    return out


def either_label(row: dict[str, Any]) -> int | None:
    """1: an attack or a harmful request; 0: neither; None: not known (an attack label only)."""
    if row["attack"] == 1 or row["harmful"] == 1:
        return 1
    return 0 if row["attack"] == 0 and row["harmful"] == 0 else None


def dev_sets(data: Path) -> dict[str, list[dict[str, Any]]]:
    with (data / "guard/xstest-dev.csv").open(encoding="utf-8") as f:
        xs = list(csv.DictReader(f))
    with (data / "guard/giskard-prompt-injections.csv").open(encoding="utf-8") as f:
        gis = [r["prompt"] for r in csv.DictReader(f)]
    return {
        "xstest-safe": [{"text": r["prompt"], "attack": 0, "harmful": 0} for r in xs if r["label"] == "safe"],
        "xstest-unsafe": [
            {"text": r["prompt"], "attack": None, "harmful": 1} for r in xs if r["label"] == "unsafe"
        ],
        "giskard": [{"text": t, "attack": 1, "harmful": None} for t in gis],
    }


# The held-out split as `ragbus eval guard` and bench/guard_eval.py read it: text, label (1: an attack or a
# harmful request, 0: neither), source. Rebuilt from the same sources and seed on every run.
VALIDATION_FILE = REPO / ".cache" / "shields-training" / "validation.jsonl"


def write_validation(rows: Sequence[dict[str, Any]]) -> None:
    VALIDATION_FILE.parent.mkdir(parents=True, exist_ok=True)
    with VALIDATION_FILE.open("w", encoding="utf-8") as f:
        for r in rows:
            label = either_label(r)
            if label is not None:
                f.write(json.dumps({"text": r["text"], "label": label, "source": r["source"]}) + "\n")
    print("wrote", VALIDATION_FILE, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--max-tokens", type=int, default=96)
    # Two: the eighth round's; one epoch (every round before) was worse on every held-out set.
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument(
        "--handwritten-repeat",
        type=int,
        default=REPEAT,
        help="times the transformer sees each hand-written line",
    )
    parser.add_argument(
        "--pair-weight",
        type=float,
        default=0.0,
        help="weight of the twin-pair margin loss (0: off; the twins then split line by line, as before)",
    )
    parser.add_argument(
        "--pair-margin",
        type=float,
        default=3.0,
        help="logit margin the pair loss asks of a harmful line over its safe twin",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start the fine-tune from this prompt-minilm.npz (a short schedule on top of it)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the fine-tune's initialisation and example order (the split is by hash and never moves)",
    )
    parser.add_argument("--loso", action="store_true", help="also hold out whole sources (n-gram model)")
    parser.add_argument("--out", type=Path, default=MODELS, help="where the model files and report go")
    parser.add_argument(
        "--split-only", action="store_true", help=f"only write the validation split to {VALIDATION_FILE}"
    )
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"

    from sources import build, twin_pairs

    from ragbus.shields.adapters.minilm_classifier import MiniLMPromptClassifier
    from ragbus.shields.ngram import NgramModel

    examples = [asdict(e) for e in build(args.data)]
    if args.pair_weight > 0:
        examples = join_twins(examples, twin_pairs())
        print(f"{sum(1 for e in examples if e.get('twin')) // 2} twin pairs", flush=True)
    train, valid = split(examples)
    print(f"{len(examples)} examples: {len(train)} train, {len(valid)} validation", flush=True)
    write_validation(valid)
    if args.split_only:
        return
    report: dict[str, Any] = {
        "command": "python libs/shields/training/train_prompts.py " + " ".join(sys.argv[1:]),
        "examples": dict(Counter(e["source"] for e in examples)),
        "train": len(train),
        "validation": len(valid),
        "threshold": args.threshold,
        "seed": args.seed,
        "pair_weight": args.pair_weight,
        "pair_margin": args.pair_margin,
        "twin_pairs": sum(1 for e in examples if e.get("twin")) // 2,
    }
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ngram = train_ngram(train)
    ngram.save(out / "prompt-ngram.npz")
    ngram = NgramModel.load(out / "prompt-ngram.npz")
    report["ngram_fit_s"] = round(time.monotonic() - started)
    scorers: dict[str, Any] = {"ngram": ngram.scores}
    if not args.skip_minilm:
        started = time.monotonic()
        arrays = train_minilm(
            train,
            max_tokens=args.max_tokens,
            epochs=args.epochs,
            lr=args.lr,
            seed=args.seed,
            repeat=args.handwritten_repeat,
            pair_weight=args.pair_weight,
            pair_margin=args.pair_margin,
            init=args.init,
        )
        np.savez_compressed(out / "prompt-minilm.npz", **arrays)  # type: ignore[arg-type]
        report["minilm_fit_s"] = round(time.monotonic() - started)
        classifier = MiniLMPromptClassifier(out / "prompt-minilm.npz")
        scorers["minilm"] = classifier.scores

    def score_all(fn: Any, rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        texts = [r["text"] for r in rows]
        found = [s for i in range(0, len(texts), 64) for s in fn(texts[i : i + 64])]
        return {k: np.array([s[k] for s in found]) for k in LABELS}

    evaluation: dict[str, Any] = {}
    sets = {"validation": valid, **dev_sets(args.data)}
    by_source = defaultdict(list)
    for r in valid:
        by_source[r["source"]].append(r)
    for name, fn in scorers.items():
        results: dict[str, Any] = {}
        for set_name, rows in sets.items():
            s = score_all(fn, rows)
            results[set_name] = {k: rates(s[k], rows, k, args.threshold) for k in LABELS}
            either = np.maximum(s["attack"], s["harmful"])
            results[set_name]["either"] = rates(
                either, [{"either": either_label(r)} for r in rows], "either", args.threshold
            )
        per_source = {}
        for source, rows in sorted(by_source.items()):
            s = score_all(fn, rows)
            per_source[source] = {k: rates(s[k], rows, k, args.threshold) for k in LABELS}
        results["validation_by_source"] = per_source
        evaluation[name] = results
        print(
            json.dumps({name: {k: v for k, v in results.items() if k != "validation_by_source"}}, indent=1),
            flush=True,
        )
    report["evaluation"] = evaluation
    if args.loso:
        loso = {}
        for held in (
            "inthewild",
            "pyrit-templates",
            "suffix",
            "yanismiraoui",
            "neuralchemy/hackaprompt",
            "garak-dan",
        ):
            related = {"inthewild": {"pyrit-inthewild"}}.get(held, set())
            tr = [r for r in examples if r["source"] != held and r["source"] not in related]
            te = [r for r in examples if r["source"] == held]
            model = train_ngram(tr)
            s = model.scores([r["text"] for r in te])
            loso[held] = {k: rates(np.array([x[k] for x in s]), te, k, args.threshold) for k in LABELS}
            print("loso", held, loso[held], flush=True)
        report["ngram_leave_one_source_out"] = loso
    (out / "prompt-report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print("wrote", out / "prompt-ngram.npz", out / "prompt-minilm.npz", out / "prompt-report.json")


if __name__ == "__main__":
    main()
