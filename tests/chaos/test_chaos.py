"""The chaos suite (bench/chaos.py) as tests: a stack of its own, processes killed under load, and the
monitor's record against what the client submitted. Each run fails on any loss or duplicate.

The broker scenarios run by default (a few minutes): they guard the local durability path, which has
no other end-to-end test. Every scenario runs with RAGBUS_CHAOS=full (about 15 minutes, with the
local model server).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def run_chaos(data_dir: Path, *args: str) -> str:
    env = {**os.environ, "RAGBUS_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        [sys.executable, str(CHAOS), *args],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def table(out: str) -> dict[str, list[str]]:
    """scenario -> [submitted, completed, lost, dup, ...] from the printed table."""
    rows = {}
    for line in out.split("\nscenario", 1)[1].splitlines()[1:]:
        name, _, rest = line.partition("  ")
        if rest.strip():
            rows[name.strip()] = rest.split()
    return rows


@pytest.mark.timeout(900)
def test_a_broker_killed_mid_ingest_and_mid_query_loses_and_duplicates_nothing(data_dir: Path) -> None:
    out = run_chaos(
        data_dir, "--docs", "40", "--questions", "12", "--scenarios", "ingest-broker", "query-broker"
    )
    rows = table(out)
    assert set(rows) == {"ingest, broker SIGKILLed", "query, broker SIGKILLed"}
    for name, (submitted, completed, lost, dup, *_rest) in rows.items():
        assert (completed, lost, dup) == (submitted, "0", "0"), name
    assert "journal      ok       re-drove" in out


@pytest.mark.timeout(2400)
@pytest.mark.skipif(
    os.environ.get("RAGBUS_CHAOS") != "full", reason="set RAGBUS_CHAOS=full (about 15 minutes)"
)
def test_every_chaos_scenario_loses_and_duplicates_nothing(data_dir: Path) -> None:
    rows = table(run_chaos(data_dir, "--docs", "150", "--questions", "40"))
    assert len(rows) == 8
    for name, (submitted, completed, lost, dup, *_rest) in rows.items():
        assert (completed, lost, dup) == (submitted, "0", "0"), name
