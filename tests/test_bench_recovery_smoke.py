"""The recovery benchmark's smoke run (``bench/recovery.py --quick``): resuming clients over two gunicorn masters
and one Redis, dropped at random, through a Redis blip and an empty restart, and a rolling restart, every message
counted by its position; users disconnected on two machines, and a SIGKILLed worker's presence. No speed is asserted:
the quick runs are far too short for their numbers to mean anything."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from tests.bench_kit import run_quick
from tests.redis_server import REDIS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not shutil.which(REDIS), reason="redis-server missing (apt-get install redis-server); CI installs it"),
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    run, results = run_quick("recovery.py", tmp_path_factory.mktemp("recovery") / "quick.json", timeout=240)
    return run, results


@pytest.mark.timeout(300)
def test_quick_recovery_run_exits_0_and_prints_the_table(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    run, results = smoke
    assert run.returncode == 0, f"bench/recovery.py --quick failed:\n{run.stderr[-3000:]}"
    assert set(results) == {"jitter", "blip", "restart", "people"}
    assert "| scenario | clients |" in run.stdout, run.stdout
    assert "disconnect_user, 10 users" in run.stdout and "entries of a SIGKILLed worker gone" in run.stdout, run.stdout


@pytest.mark.timeout(300)
def test_users_were_disconnected_everywhere_and_presence_converged(smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any]]) -> None:
    people = smoke[1]["people"]
    assert "error" not in people, people
    assert people["users"] == 10 and people["disconnect_max_ms"] > 0, "every user's two connections were closed with 4001"
    assert people["presence_entries_killed"] == 10 and people["presence_converged_s"] > 0, "every leave was heard"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("scenario", ["jitter", "blip", "restart"])
def test_no_message_was_lost_duplicated_or_left_unrecovered(
    smoke: tuple[subprocess.CompletedProcess[str], dict[str, Any]], scenario: str
) -> None:
    result = smoke[1][scenario]
    assert "error" not in result, result
    assert result["published"] > 0 and result["expected_deliveries"] > 0
    assert (result["lost"], result["duplicates"], result["unrecovered_joins"]) == (0, 0, 0), result
    if scenario == "jitter":
        assert result["replays"] > 0, "clients were dropped and came back"
    if scenario == "blip":
        assert result["connections_killed"] > 0 and result["told_recovered_false"] == result["clients"], result
    if scenario == "restart":
        assert result["reconnects"] >= result["clients"], "every client reconnected at least once"
