"""The command line, ``python -m wsgi_ws``: ``serve APP`` (the app under gunicorn with the WebSocket worker) and
``client URI`` (an interactive client). This module is the argparse front; each command is a module of its own
(:mod:`wsgi_ws.cli.serve`, :mod:`wsgi_ws.cli.client`) with ``add_parser()`` and ``run()``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import client, serve

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The whole command line: ``--help``, ``--version`` and the two commands."""
    made = argparse.ArgumentParser(
        prog="python -m wsgi_ws",
        description="WebSockets for plain synchronous WSGI apps: serve an app, or talk to a WebSocket server.",
        epilog="python -m wsgi_ws COMMAND --help shows a command's flags.",
    )
    made.add_argument("--version", action="version", version=f"wsgi-ws {__version__}")
    commands = made.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    serve.add_parser(commands)
    client.add_parser(commands)
    return made


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` (default ``sys.argv[1:]``) names; its exit status. Bad flags exit with 2 (argparse)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(arguments)
    args.argv = arguments
    status: int = args.run(args)
    return status
