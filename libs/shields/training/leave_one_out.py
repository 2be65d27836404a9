"""Which hand-written kinds the harmful-request classifier learns from the others, and which it only
knows from their own lines: leave-one-kind-out and leave-one-round-out runs on MiniLM embeddings.

    python libs/shields/training/leave_one_out.py [--data DIR] [--out FILE]   # ~5 min on one quiet core

The figures of the last run are in leave-one-out-report.json beside this script.

A full LoRA fine-tune takes 15-35 min, too long to repeat per kind; this is its cheap proxy. The
sentences are embedded once by the frozen all-MiniLM-L6-v2 (the base the guard fine-tunes), and a
logistic head for `harmful` is fitted on every short-request source (the hand-written sets, the
generated contrasts, AdvBench, HarmBench, Do-Not-Answer, ordinary chat and SciFact claims), then:
- in: the hash split train_prompts uses (a fifth of each hand-written set held out); recall and
  false-positive rate on the held-out fifth of each family of kinds;
- out: that family's hand-written lines (harmful and their safe twins) left out of training altogether,
  and scored whole: what the other sources teach about it. A wide gap between in and out is a family
  that does not generalise from the rest, so new phrasings of it will be missed;
- the same with each round of hand-written files left out;
- the hash split again with the hand-written lines weighted 2, 4 and 8 times (as `--handwritten-repeat`).
Only aggregate XSTest figures are printed (unsafe recall, safe stopped): XSTest is never trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parents[2]

# Families of hand-written kinds (the `## kind` headings across files), harmful and safe sides together.
FAMILIES: dict[str, tuple[str, ...]] = {
    "historical": ("historical", "atrocities", "history"),
    "self-harm": ("self-harm", "self-care", "help-and-safety", "support"),
    "discrimination": ("discrimination", "hate", "nonsense-groups", "group-facts"),
    "privacy": ("privacy", "public-privacy", "fictional-privacy", "own-data"),
    "violence": ("violence", "euphemism", "targets", "homonyms", "everyday-violence", "safe-contexts"),
    "drugs-weapons": ("drugs", "weapons", "drugs-and-weapons", "drugs-safe"),
}
# Sources besides the hand-written sets: short requests and ordinary questions (no jailbreak templates:
# this is about the harmful head on plain requests).
OTHER_SOURCES = (
    "contrast-safe/",
    "contrast-unsafe/",
    "advbench",
    "harmbench",
    "neuralchemy/harmbench",
    "donotanswer",
    "past-tense",
    "future-tense",
    "chatterbot",
    "bipia-tasks",
)
BENIGN_CAP = 2000  # chitchat opening lines, a sample


def family(source: str) -> str | None:
    kind = source.split("/", 1)[1] if "/" in source else ""
    return next((name for name, kinds in FAMILIES.items() if kind in kinds), None)


def embedder(max_tokens: int = 64) -> Callable[[Sequence[str]], np.ndarray]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ragbus.shields.adapters.minilm_classifier import base_model_path, batch_inputs, mean_pool

    base = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModel.from_pretrained(str(base)).eval()

    def embed(texts: Sequence[str]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), 64):
                ids, mask = batch_inputs(tokenizer, texts[i : i + 64], max_tokens, int(max_tokens * 0.75))
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
                out.append(mean_pool(hidden, mask).numpy())
        return np.concatenate(out)

    return embed


def fit(x: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> Any:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced")
    return model.fit(x, y, sample_weight=weight)


def cached(texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray], path: Path) -> np.ndarray:
    """Embeddings of `texts`, from `path` where an earlier run embedded the same texts: under load the
    embedding is most of the run."""
    import hashlib

    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    if path.exists():
        stored = np.load(path)
        if str(stored["key"]) == key:
            return np.asarray(stored["x"])
    x = embed(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, key=np.array(key), x=x)
    return x


def rates(p: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    pos, neg = p[y == 1], p[y == 0]
    return {
        "recall": round(float(np.mean(pos >= threshold)), 3) if len(pos) else None,
        "fpr": round(float(np.mean(neg >= threshold)), 3) if len(neg) else None,
        "n": [len(pos), len(neg)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--out", type=Path, default=REPO / ".cache" / "shields-training" / "leave-one-out.json"
    )
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sources import HANDWRITTEN_SETS, build
    from train_prompts import dev_sets

    rng = np.random.default_rng(0)
    rounds = {name: round_ for name, _, _, round_ in HANDWRITTEN_SETS}
    rows = []
    chitchat = []
    for e in map(asdict, build(args.data)):
        if e["harmful"] is None:
            continue
        file = e["source"].split("/")[0]
        if file in rounds:
            rows.append({**e, "round": rounds[file], "family": family(e["source"]), "handwritten": True})
        elif e["source"] == "chitchat":
            chitchat.append(e)
        elif e["source"].startswith(OTHER_SOURCES):
            rows.append({**e, "round": None, "family": None, "handwritten": False})
    for i in rng.choice(len(chitchat), size=min(BENIGN_CAP, len(chitchat)), replace=False):
        rows.append({**chitchat[i], "round": None, "family": None, "handwritten": False})
    xs = dev_sets(args.data)
    dev = [*xs["xstest-safe"], *xs["xstest-unsafe"]]
    print(f"{len(rows)} rows, {sum(r['handwritten'] for r in rows)} hand-written; embedding", flush=True)
    started = time.monotonic()
    embed = embedder()
    x = cached([r["text"] for r in rows], embed, args.out.with_suffix(".rows.npz"))
    x_dev = cached([r["text"] for r in dev], embed, args.out.with_suffix(".dev.npz"))
    print(f"embedded in {time.monotonic() - started:.0f} s", flush=True)
    y = np.array([r["harmful"] for r in rows])
    y_dev = np.array([r["harmful"] for r in dev])
    held = np.array([r["handwritten"] and int(r["group"], 16) % 5 == 0 for r in rows])
    fam = np.array([r["family"] or "" for r in rows])
    rnd = np.array([r["round"] or 0 for r in rows])
    hand = np.array([r["handwritten"] for r in rows])

    def xstest(model: Any) -> dict[str, Any]:
        return rates(model.predict_proba(x_dev)[:, 1], y_dev)

    report: dict[str, Any] = {}
    base = fit(x[~held], y[~held])
    p = base.predict_proba(x)[:, 1]
    report["in"] = {name: rates(p[held & (fam == name)], y[held & (fam == name)]) for name in FAMILIES} | {
        "all hand-written": rates(p[held], y[held]),
        "xstest (dev)": xstest(base),
    }
    print("in (hash split)", json.dumps(report["in"]), flush=True)
    # Weighting the hand-written lines up (train_prompts --handwritten-repeat) on the same split.
    report["in_weighted"] = {}
    for times in (2, 4, 8):
        keep = ~held
        model = fit(x[keep], y[keep], np.where(hand[keep], float(times), 1.0))
        p = model.predict_proba(x)[:, 1]
        report["in_weighted"][str(times)] = {
            name: rates(p[held & (fam == name)], y[held & (fam == name)]) for name in FAMILIES
        } | {
            "all hand-written": rates(p[held], y[held]),
            "other sources (train)": rates(p[~hand], y[~hand]),
            "xstest (dev)": xstest(model),
        }
        print(f"in, hand-written x{times}", json.dumps(report["in_weighted"][str(times)]), flush=True)
    report["out_family"] = {}
    for name in FAMILIES:
        keep = ~held & (fam != name)
        model = fit(x[keep], y[keep])
        test = fam == name
        report["out_family"][name] = rates(model.predict_proba(x[test])[:, 1], y[test]) | {
            "xstest (dev)": xstest(model)
        }
        print("out", name, json.dumps(report["out_family"][name]), flush=True)
    report["out_round"] = {}
    for round_ in sorted(set(rounds.values())):
        keep = ~held & (rnd != round_)
        model = fit(x[keep], y[keep])
        test = hand & (rnd == round_)
        report["out_round"][str(round_)] = rates(model.predict_proba(x[test])[:, 1], y[test]) | {
            "xstest (dev)": xstest(model)
        }
        print("out round", round_, json.dumps(report["out_round"][str(round_)]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
