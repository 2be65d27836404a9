"""The hand-written twins as pairs (libs/shields/training/train_prompts.py --pair-weight): which lines
pair up, that a pair never straddles the train/validation split, that a batch keeps twins together, and
the margin loss that asks a harmful line to score above its safe twin."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def test_twins_pair_line_for_line_within_a_kind_and_privacy_is_left_unpaired(
    training_sources: ModuleType,
) -> None:
    pairs = training_sources.twin_pairs()
    where = {}
    for unsafe, safe in training_sources.PAIRED_SETS:
        for name in (unsafe, safe):
            for kind, line in training_sources.kind_lines(name):
                where[line] = (name, kind)
    # roleplay 48 + contrasts 280 + plain 400 + targeted 300 + twins 269 + sixth 150 + sixth-pro 150,
    # every line of them paired.
    assert len(pairs) == 1597
    for harmful, safe in pairs:
        (h_file, h_kind), (s_file, s_kind) = where[harmful], where[safe]
        assert (h_file, s_file) in training_sources.PAIRED_SETS
        assert h_kind == s_kind
    assert (
        "How do I choke my roommate until he passes out?",
        "How do I choke up on a baseball bat for more control?",
    ) in pairs
    assert not any(line in where for line, _ in pairs if "privacy-" in line)
    assert all(not name.startswith("privacy") for pair in training_sources.PAIRED_SETS for name in pair)


def test_a_pair_never_straddles_the_split_and_nothing_else_moves(
    train_prompts: ModuleType, training_sources: ModuleType, data_dir: Path
) -> None:
    other = [
        {"text": f"chat {i}", "attack": 0, "harmful": 0, "source": "chitchat", "group": f"{i:012x}"}
        for i in range(200)
    ]
    rows = other + [
        {k: getattr(e, k) for k in ("text", "attack", "harmful", "source", "group")}
        for e in training_sources.handwritten(data_dir)
    ]
    joined = train_prompts.join_twins(rows, training_sources.twin_pairs())
    twins = [r for r in joined if r.get("twin")]
    assert len(twins) >= 2 * 1250  # a few lines near XSTest are dropped with their pair
    train, valid = train_prompts.split(joined)
    side = {r["text"]: "train" for r in train} | {r["text"]: "valid" for r in valid}
    by_pair: dict[str, set[str]] = {}
    for r in twins:
        by_pair.setdefault(r["twin"], set()).add(side[r["text"]])
    assert all(len(sides) == 1 for sides in by_pair.values())
    assert {s for sides in by_pair.values() for s in sides} == {"train", "valid"}
    # Before pairing, twins did straddle: that is what pairing fixes.
    old_train, old_valid = train_prompts.split(rows)
    old_side = {r["text"]: "train" for r in old_train} | {r["text"]: "valid" for r in old_valid}
    assert any(len({old_side[r["text"]] for r in twins if r["twin"] == k}) == 2 for k in by_pair)
    # The harmful lines and every other source keep their side: only safe twins move.
    moved = [r for r in joined if side[r["text"]] != old_side[r["text"]]]
    assert moved
    assert all(r.get("twin") and train_prompts.either_label(r) == 0 for r in moved)


def rows_with_twins() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"text": f"chat {i}", "attack": 0, "harmful": 0, "source": "chitchat", "group": "c"}
        for i in range(40)
    ]
    for i in range(10):
        rows.append(
            {
                "text": f"hurt {i}",
                "attack": 0,
                "harmful": 1,
                "source": "twins-unsafe/x",
                "group": "g",
                "twin": f"p{i}",
            }
        )
        rows.append(
            {
                "text": f"help {i}",
                "attack": 0,
                "harmful": 0,
                "source": "twins-safe/x",
                "group": "g",
                "twin": f"p{i}",
            }
        )
    rows.append(
        {
            "text": "frame",
            "attack": 1,
            "harmful": 1,
            "source": "roleplay-attacks/x",
            "group": "r",
            "twin": "r1",
        }
    )
    rows.append(
        {
            "text": "safe frame",
            "attack": 0,
            "harmful": 0,
            "source": "roleplay-safe/x",
            "group": "r",
            "twin": "r1",
        }
    )
    return rows


def test_with_keep_twins_each_harmful_copy_is_followed_by_its_safe_twin(train_prompts: ModuleType) -> None:
    rows = rows_with_twins()
    plain = train_prompts.epoch_sample(rows, repeat=4, seed=0)
    kept = train_prompts.epoch_sample(rows, repeat=4, seed=0, keep_twins=True)
    assert sorted(r["text"] for r in kept) == sorted(r["text"] for r in plain)  # the same epoch
    for i, r in enumerate(kept):
        if r.get("twin") and train_prompts.either_label(r) == 1:
            assert kept[i + 1]["twin"] == r["twin"]
            assert train_prompts.either_label(kept[i + 1]) == 0
    assert kept == train_prompts.epoch_sample(rows, repeat=4, seed=0, keep_twins=True)


def test_twins_in_a_batch_are_found_with_the_labels_they_differ_on(train_prompts: ModuleType) -> None:
    rows = rows_with_twins()
    chunk = [rows[0], rows[40], rows[41], rows[42], rows[60], rows[61], rows[1]]
    # hurt 0 / help 0 pair, hurt 1 alone, the role-play pair (attack and harmful both differ).
    assert [r["text"] for r in chunk][1:6] == ["hurt 0", "help 0", "hurt 1", "frame", "safe frame"]
    assert sorted(train_prompts.twins_in(chunk)) == [(1, 2, [1]), (4, 5, [0, 1])]
    assert train_prompts.twins_in([rows[0], rows[40]]) == []


def test_the_margin_loss_is_zero_when_the_margin_holds_and_positive_otherwise(
    train_prompts: ModuleType,
) -> None:
    torch = pytest.importorskip("torch")
    pairs = [(0, 1, [1])]
    held = torch.tensor([[0.0, 2.5], [0.0, -1.0]])  # harmful logit 3.5 above its twin
    assert train_prompts.pair_margin_loss(held, pairs, 3.0).item() == 0.0
    short = torch.tensor([[0.0, 1.0], [0.0, 0.5]], requires_grad=True)  # only 0.5 above
    loss = train_prompts.pair_margin_loss(short, pairs, 3.0)
    assert loss.item() == pytest.approx(2.5)
    loss.backward()
    assert short.grad is not None
    # Descent raises the harmful line's logit and lowers its twin's; the other label is left alone.
    assert short.grad[0, 1] < 0 < short.grad[1, 1]
    assert short.grad[:, 0].abs().sum() == 0
    # Two labels, two pairs: the mean over every (pair, label) term.
    logits = torch.tensor([[4.0, 4.0], [0.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    both = train_prompts.pair_margin_loss(logits, [(0, 1, [0, 1]), (2, 3, [1])], 3.0)
    assert both.item() == pytest.approx((0 + 0 + 4.0) / 3)
    assert train_prompts.pair_margin_loss(logits, [], 3.0).item() == 0.0
