"""`ragbus eval guard`: the guard's input checks, exactly as the service builds them from its settings
(GUARD_*), on a labelled file; plugged into the `ragbus` CLI (`ragbus.cli.eval` entry points).

    ragbus eval guard prompts.csv --text-column prompt --label-column label
    ragbus eval guard ../shared/data/guard/giskard-prompt-injections.csv --text-column prompt
    ragbus eval guard --pii ../shared/data/pii/presidio-synth-dev.json
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from ragbus.common.service import Clients
from ragbus.guard.app import open_scanners
from ragbus.guard.evaluation import (
    evaluate_pii,
    evaluate_prompts,
    format_table,
    presidio_examples,
    read_labelled,
)
from ragbus.guard.input_checks import InputChecks
from ragbus.guard.settings import GuardSettings
from ragbus.shields.detection import PiiDetector


@click.command("guard")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True, help="Missing: every row is an attack.")
@click.option(
    "--tenant", default="default", show_default=True, help="Whose policy (GUARD_POLICIES) to apply."
)
@click.option("--flags", is_flag=True, help="Count flagged and redacted as caught, not only blocked.")
@click.option("--pii", is_flag=True, help="PATH is presidio-research JSON: span-level P/R/F1 per kind.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def eval_guard(
    path: Path, text_column: str, label_column: str, tenant: str, flags: bool, pii: bool, as_json: bool
) -> None:
    """Precision, recall, false positives and latency of the guard's checks on a labelled file."""
    settings = GuardSettings()
    if pii:
        rows, summary = _eval_pii(path, settings)
    else:
        clients = Clients()
        scanners = asyncio.run(open_scanners(settings, clients))
        checks = InputChecks(settings.input_policy(), settings.policy_set(), scanners)
        try:
            prompts = read_labelled(path, text_column, label_column)
            result = evaluate_prompts(prompts, lambda text: checks.check(text, tenant), count_flags=flags)
        finally:
            asyncio.run(clients.aclose())
        rows = result.rows()
        summary = f"{len(prompts)} prompts ({sum(p.positive for p in prompts)} positive), tenant {tenant}"
    if as_json:
        click.echo(json.dumps({"summary": summary, "rows": rows}, indent=1))
    else:
        click.echo(summary)
        click.echo(format_table(rows))


def _eval_pii(path: Path, settings: GuardSettings) -> tuple[list[dict[str, object]], str]:
    """The personal-data detector on presidio-research JSON: the patterns, and the named-entity model
    unless GUARD_NER=false (whatever kinds GUARD_PII_KINDS redacts, every kind is measured)."""
    detector = PiiDetector()
    if settings.ner:
        from ragbus.shields.adapters.spacy_ner import SpacyRecognizer  # heavy: only when measured

        detector = PiiDetector(SpacyRecognizer())
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not presidio-research JSON ({exc})") from exc
    report = evaluate_pii(presidio_examples(records), detector.find)
    p50, p95 = report.latency_p50_ms, report.latency_p95_ms
    model = "patterns + named-entity model" if settings.ner else "patterns only (GUARD_NER=false)"
    return report.rows(), f"{report.texts} texts, {model}, detector p50 {p50:.2f} ms, p95 {p95:.2f} ms"
