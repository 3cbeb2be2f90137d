"""`pip install .` gives a typed package whose version comes from one place."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

import wsgi_ws

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel() -> tuple[set[str], str]:
    """`pip wheel` of the project: the wheel's file names and its METADATA."""
    with tempfile.TemporaryDirectory(prefix="wsgi-ws-wheel-") as temporary:
        folder = Path(temporary)
        # Built from a copy: setuptools builds in the source tree (build/, *.egg-info), and `make test` runs this test on
        # several Python versions at once.
        source = folder / "source"
        shutil.copytree(ROOT / "wsgi_ws", source / "wsgi_ws", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copy(ROOT / name, source / name)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(folder), str(source)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (built,) = folder.glob("wsgi_ws-*.whl")
        assert built.name.startswith(f"wsgi_ws-{wsgi_ws.__version__}-")
        with zipfile.ZipFile(built) as archive:
            names = set(archive.namelist())
            return names, archive.read(next(name for name in names if name.endswith("METADATA"))).decode()


def test_wheel_is_typed_versioned_and_declares_ranges(wheel: tuple[set[str], str]) -> None:
    names, metadata = wheel
    assert "wsgi_ws/py.typed" in names
    every_module = {str(path.relative_to(ROOT)) for path in (ROOT / "wsgi_ws").rglob("*.py")}
    assert {"wsgi_ws/protocol/session.py", "wsgi_ws/connection/websocket.py", "wsgi_ws/worker.py"} <= every_module
    assert every_module <= names, f"missing from the wheel: {sorted(every_module - names)}"
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
    assert f"Version: {wsgi_ws.__version__}" in metadata
    assert "License-Expression: MIT" in metadata and any(name.endswith("licenses/LICENSE") for name in names), "the license travels"
    requirements = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requirements and all("==" not in line.split(";")[0] for line in requirements), "library dependencies are ranges"


def makefile_versions() -> list[str]:
    """The Makefile's PYTHON_VERSIONS: the versions `make test` runs on."""
    found = re.search(r"^PYTHON_VERSIONS :?= *(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found is not None, "the Makefile sets PYTHON_VERSIONS"
    return found[1].split()


def test_the_declared_python_versions_are_the_tested_ones(wheel: tuple[set[str], str]) -> None:
    """Requires-Python's floor and the version classifiers are the Makefile's PYTHON_VERSIONS, and this is one of them."""
    _, metadata = wheel
    versions = makefile_versions()
    assert versions == sorted(versions, key=lambda version: tuple(map(int, version.split(".")))), versions
    classified = re.findall(r"^Classifier: Programming Language :: Python :: (3\.\d+)$", metadata, re.MULTILINE)
    assert classified == versions, f"pyproject.toml's classifiers {classified}, the Makefile's PYTHON_VERSIONS {versions}"
    assert f"Requires-Python: >={versions[0]}" in metadata.splitlines()
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in versions
    assert f"Python {versions[0]}" in (ROOT / "README.md").read_text(), "the README names the supported versions"


def test_sample_requirements_are_pinned_exactly() -> None:
    for name in ("requirements.txt", "requirements-test.txt", "requirements-bench.txt", "requirements-docs.txt"):
        lines = [line for line in (ROOT / name).read_text().splitlines() if line and not line.startswith("#")]
        assert lines and all("==" in line for line in lines), name
