"""Running a benchmark's smoke mode from a test: ``bench/<script> --quick --json FILE``, its output and its numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["run_quick"]

ROOT = Path(__file__).resolve().parent.parent


def run_quick(script: str, out: Path, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run ``bench/<script> --quick --json out`` (with ``args``) from the project root; the finished process and the
    JSON it wrote. Fails the test, with the end of its stderr, when it wrote none."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.exists(), f"bench/{script} --quick wrote no results (exit {run.returncode}):\n{run.stderr[-3000:]}"
    return run, json.loads(out.read_text())
