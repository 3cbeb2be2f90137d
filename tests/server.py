"""The project's test servers: wsgi_ws.testing's TestServer, started from the project's own gunicorn.conf.py."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from wsgi_ws.testing import TestServer

ROOT = Path(__file__).resolve().parent.parent


class GunicornServer(TestServer):
    """A TestServer with the project's gunicorn.conf.py, run from the project's root."""

    def __init__(self, app: str = "app:app", env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        super().__init__(app, config=ROOT / "gunicorn.conf.py", env={"PYTHONPATH": str(ROOT), **(env or {})}, args=args, cwd=ROOT)
