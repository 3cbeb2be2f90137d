"""`pip install .` gives a typed package whose version comes from one place."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

import wsgi_ws

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_is_typed_versioned_and_declares_ranges() -> None:
    folder = Path(tempfile.mkdtemp(prefix="wsgi-ws-wheel-"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(folder), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = folder.glob("wsgi_ws-*.whl")
    assert wheel.name.startswith(f"wsgi_ws-{wsgi_ws.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(name for name in names if name.endswith("METADATA"))).decode()
    assert "wsgi_ws/py.typed" in names
    every_module = {str(path.relative_to(ROOT)) for path in (ROOT / "wsgi_ws").rglob("*.py")}
    assert {"wsgi_ws/protocol/session.py", "wsgi_ws/connection/websocket.py", "wsgi_ws/worker.py"} <= every_module
    assert every_module <= names, f"missing from the wheel: {sorted(every_module - names)}"
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    assert f"Version: {wsgi_ws.__version__}" in metadata
    assert "License-Expression: MIT" in metadata and any(name.endswith("licenses/LICENSE") for name in names), "the license travels"
    requirements = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requirements and all("==" not in line.split(";")[0] for line in requirements), "library dependencies are ranges"


def test_sample_requirements_are_pinned_exactly() -> None:
    for name in ("requirements.txt", "requirements-test.txt", "requirements-bench.txt", "requirements-docs.txt"):
        lines = [line for line in (ROOT / name).read_text().splitlines() if line and not line.startswith("#")]
        assert lines and all("==" in line for line in lines), name
