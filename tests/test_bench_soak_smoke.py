"""The soak's smoke run (``bench/soak.py --quick``): 300 well-behaved clients with pings for 40 s on two workers, and
nine misbehaving ones cycling through the hostile inputs of issue 16. Every well-behaved message must come back intact,
every misbehaviour must get its documented answer, and once every client has left each worker must be back at its idle
descriptors and greenlets, with no traceback in its log. RSS is not judged here: 40 s says nothing about growth (the
full run's goal, bench/README.md)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.bench_kit import run_quick

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    run, results = run_quick("soak.py", tmp_path_factory.mktemp("soak") / "quick.json", timeout=240)
    return run, results


@pytest.mark.timeout(300)
def test_quick_soak_exits_0_and_prints_the_tables(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    run, results = smoke
    assert run.returncode == 0, f"bench/soak.py --quick failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "| misbehaviour | expected answer |" in run.stdout and "| goal | result | detail |" in run.stdout, run.stdout
    assert results["well_behaved"]["connected"] == results["well_behaved"]["clients"] == 300


@pytest.mark.timeout(300)
@pytest.mark.parametrize("goal", ["messages_intact", "misbehaviour_answered", "no_fd_leak", "no_greenlet_leak", "no_traceback"])
def test_the_goal_a_short_run_can_judge_was_met(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any]], goal: str) -> None:
    verdict = smoke[1]["goals"][goal]
    assert verdict["pass"], f"{verdict['goal']}: {verdict['detail']}"


@pytest.mark.timeout(300)
def test_every_misbehaviour_was_tried(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    kinds = smoke[1]["misbehaving"]["kinds"]
    assert len(kinds) == 9
    for name, kind in kinds.items():
        assert kind["episodes"] >= 1 and kind["other"] == 0, (name, kind)
