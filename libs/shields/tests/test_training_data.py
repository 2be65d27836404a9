"""The hand-written training sets (libs/shields/training/data): well formed, labelled as their file says,
and kept apart from the XSTest dev set they must not leak into."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from types import ModuleType

import pytest

TRAINING = Path(__file__).resolve().parents[1] / "training"
FILES = {  # file -> (attack, harmful)
    "subtle-unsafe": (0, 1),
    "subtle-safe": (0, 0),
    "roleplay-attacks": (1, 1),
    "roleplay-safe": (0, 0),
    "contrasts-unsafe": (0, 1),
    "contrasts-safe": (0, 0),
    "frames-attacks": (1, 1),
    "frames-safe": (0, 0),
    "privacy-unsafe": (0, 1),
    "privacy-safe": (0, 0),
    "plain-unsafe": (0, 1),
    "plain-safe": (0, 0),
    "targeted-unsafe": (0, 1),
    "targeted-safe": (0, 0),
    "twins-unsafe": (0, 1),
    "twins-safe": (0, 0),
    "sixth-unsafe": (1, 1),
    "sixth-safe": (0, 0),
    "sixth-pro-unsafe": (1, 1),
    "sixth-pro-safe": (0, 0),
    "science-safe": (0, 0),
}


def lines(name: str) -> list[tuple[str, str]]:
    """(kind, line) of a hand-written file; fails on a line before the first `## kind` heading."""
    kind, out = None, []
    for raw in (TRAINING / "data" / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        if raw.startswith("## "):
            kind = raw[3:].strip()
        elif raw.strip() and not raw.startswith("#"):
            assert kind is not None, f"{name}: {raw!r} comes before any '## kind' heading"
            out.append((kind, raw.strip()))
    return out


def test_every_line_is_a_prompt_under_a_kind_and_none_is_in_two_places() -> None:
    seen: dict[str, str] = {}
    for name in FILES:
        found = lines(name)
        assert len(found) >= 40, name
        for _, line in found:
            assert len(line.split()) >= 3, (name, line)
            key = " ".join(re.findall(r"\w+", line.lower()))
            assert key not in seen, f"{line!r} is in {name} and in {seen.get(key)}"
            seen[key] = name


def test_lines_are_labelled_as_their_file_says_and_kept_away_from_xstest(
    data_dir: Path, training_sources: ModuleType
) -> None:
    module = training_sources
    examples = list(module.handwritten(data_dir))
    by_source: dict[str, set[tuple[int, int]]] = {}
    for e in examples:
        by_source.setdefault(e.source.split("/")[0], set()).add((e.attack, e.harmful))
    assert by_source == {name: {labels} for name, labels in FILES.items()}
    written = sum(len(lines(name)) for name in FILES)
    # A line too close to an XSTest dev prompt is left out (a few are: both ask short, plain questions).
    assert written - 60 <= len(examples) < written
    with (data_dir / "guard" / "xstest-dev.csv").open(encoding="utf-8") as f:
        xstest = {e.text.lower() for e in examples} & {r["prompt"].lower() for r in csv.DictReader(f)}
    assert xstest == set()


@pytest.mark.parametrize("name", list(FILES))
def test_each_kind_has_several_lines(name: str) -> None:
    kinds: dict[str, int] = {}
    for kind, _ in lines(name):
        kinds[kind] = kinds.get(kind, 0) + 1
    assert min(kinds.values()) >= 5, kinds


@pytest.mark.model
def test_the_shipped_classifiers_on_the_held_out_fifth_of_the_hand_written_requests(
    data_dir: Path, training_sources: ModuleType
) -> None:
    """The lines the shipped models never saw (hash split, as train_prompts.split), at the guard's
    default thresholds (mean of both classifiers; jailbreak 0.45, harmful 0.5). Measured when set
    (round 4 at harmful 0.6): harmful requests 35 of 50 stopped (0.70), safe look-alikes 2 of 42 (4.8%)
    in the training validation split."""
    from ragbus.shields.adapters.minilm_classifier import MiniLMPromptClassifier
    from ragbus.shields.ngram import MODELS, NgramModel

    held = [e for e in training_sources.handwritten(data_dir) if int(e.group, 16) % 5 == 0]
    subtle = [e for e in held if e.source.startswith("subtle-")]
    texts = [e.text for e in subtle]
    ngram = NgramModel.load(MODELS / "prompt-ngram.npz").scores(texts)
    minilm = MiniLMPromptClassifier().scores(texts)
    stopped = [
        (a["attack"] + b["attack"]) / 2 >= 0.45 or (a["harmful"] + b["harmful"]) / 2 >= 0.5
        for a, b in zip(ngram, minilm, strict=True)
    ]
    harmful = [s for s, e in zip(stopped, subtle, strict=True) if e.harmful == 1]
    safe = [s for s, e in zip(stopped, subtle, strict=True) if e.harmful == 0]
    assert len(harmful) == 50
    assert len(safe) == 46  # 42 in the training validation split: 4 repeat prompts of other sources
    assert sum(harmful) / len(harmful) >= 0.6
    assert sum(safe) / len(safe) <= 0.1


def test_every_hand_written_file_is_weighted_as_hand_written(train_prompts: ModuleType) -> None:
    module = train_prompts
    on_disk = {p.stem for p in (TRAINING / "data").glob("*.txt")}
    assert {prefix.rstrip("/") for prefix in module.HANDWRITTEN_SOURCES} == on_disk == set(FILES)


@pytest.mark.parametrize("repeat", [1, 4, 8])
def test_the_epoch_repeats_each_hand_written_line_and_caps_the_big_benign_sources(
    repeat: int, train_prompts: ModuleType
) -> None:
    module = train_prompts
    rows = [
        *({"source": "chitchat", "text": f"chat {i}"} for i in range(2500)),
        *({"source": "advbench", "text": f"request {i}"} for i in range(30)),
        *({"source": "twins-unsafe/self-harm", "text": f"unsafe {i}"} for i in range(10)),
        *({"source": "twins-safe/self-harm", "text": f"safe {i}"} for i in range(10)),
    ]
    sample = module.epoch_sample(rows, repeat=repeat, seed=0)
    counts: dict[str, int] = {}
    for r in sample:
        counts[r["text"]] = counts.get(r["text"], 0) + 1
    assert sum(r["source"] == "chitchat" for r in sample) == module.CAPS["chitchat"]
    assert all(counts[f"request {i}"] == 1 for i in range(30))
    assert all(counts[f"unsafe {i}"] == counts[f"safe {i}"] == repeat for i in range(10))
    assert sample == module.epoch_sample(rows, repeat=repeat, seed=0)  # the same epoch for the same seed
