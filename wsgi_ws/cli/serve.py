"""``python -m wsgi_ws serve APP``: the app in gunicorn, in this process, with the WebSocket worker and the project's
defaults (:mod:`wsgi_ws.server_settings`), no ``gunicorn.conf.py`` needed and no shared control socket.

Flags win over the ``WSGI_WS_*`` variables, which win over the defaults; the ``WS_*`` variables set the WebSocket
options as under ``gunicorn -c gunicorn.conf.py``. Everything that can be checked before gunicorn starts is
(the flags, the variables, the app's module, a busy port), each failure one line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import AppImportError

from .. import server_settings
from ..exceptions import InvalidOption
from ..integrations import prometheus
from ..options import configure
from ..server_settings import InvalidServerSetting, ServerSettings

__all__ = ["APP", "USAGE_ERROR", "ServeApplication", "add_parser", "run", "with_flags"]

#: What APP must look like: a dotted module name, optionally ``:`` and the variable (gunicorn's default: application).
APP = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*(:.+)?$")
#: The exit status when the flags or the APP are wrong (argparse's own).
USAGE_ERROR = 2

_DEFAULTS = ServerSettings()


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` command and its flags to ``commands`` (the front's subparsers)."""
    parser = commands.add_parser(
        "serve",
        help="run a WSGI app under gunicorn with the WebSocket worker",
        description="Run APP under gunicorn with wsgi-ws's WebSocket worker and the project's defaults. Flags win over "
        "the WSGI_WS_* environment variables; WS_* variables set the WebSocket options (WS_MAX_MESSAGE_SIZE=16MiB).",
        epilog="SIGTERM stops it gracefully (every WebSocket closed with 1001, within the graceful timeout); Ctrl-C "
        "(SIGINT) stops it at once, as gunicorn does.",
    )
    parser.add_argument("app", metavar="APP", type=_app, help="the WSGI app as module:variable, like gunicorn's (app:app)")
    parser.add_argument(
        "-b",
        "--bind",
        action="append",
        metavar="ADDRESS",
        help=f"address to listen on: host:port, unix:PATH or fd://N; repeat for more (default {_DEFAULTS.bind[0]})",
    )
    parser.add_argument("-w", "--workers", type=_number(1), metavar="N", help=f"worker processes (default {_DEFAULTS.workers})")
    parser.add_argument(
        "--worker-connections",
        type=_number(1),
        metavar="N",
        help=f"connections one worker serves at once, WebSockets included; beyond it 503 (default {_DEFAULTS.worker_connections})",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=_number(0),
        metavar="SECONDS",
        help=f"seconds open connections get to finish on shutdown or reload (default {_DEFAULTS.graceful_timeout})",
    )
    parser.add_argument("--certfile", metavar="FILE", help="TLS certificate: serve https:// and wss:// (with --keyfile)")
    parser.add_argument("--keyfile", metavar="FILE", help="TLS private key (with --certfile)")
    parser.add_argument(
        "--log-level",
        type=_log_level,
        metavar="LEVEL",
        help=f"{', '.join(server_settings.LOG_LEVELS)} (default {_DEFAULTS.log_level})",
    )
    parser.add_argument(
        "--access-log",
        metavar="FILE",
        help=f"where the access log goes: - for stdout, a file, {os.devnull} for none (default {_DEFAULTS.access_log})",
    )
    parser.add_argument("--reload", action="store_true", help="restart the workers when a source file changes (development only)")
    parser.add_argument("--chdir", metavar="DIR", help="change to DIR before loading the app (and import it from there)")
    parser.set_defaults(run=run, usage_error=parser.error)


def _number(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return server_settings.whole_number(text, least)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _log_level(text: str) -> str:
    try:
        return server_settings.log_level(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _app(text: str) -> str:
    if text.partition(":")[0].endswith(".py"):
        module = text.partition(":")[0].removesuffix(".py").replace("/", ".")
        raise argparse.ArgumentTypeError(f"{text!r} is a file name: give module:variable (for example {module}:app)")
    if not APP.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not module:variable (for example app:app)")
    return text


def with_flags(settings: ServerSettings, args: argparse.Namespace) -> ServerSettings:
    """``settings`` (those of the ``WSGI_WS_*`` variables) with the flags given in ``args`` on top.

    Raises :class:`InvalidServerSetting` for TLS flags that do not name two readable files.
    """
    changes: dict[str, Any] = {}
    if args.bind:
        changes["bind"] = tuple(args.bind)
    for name in ("workers", "worker_connections", "graceful_timeout", "log_level"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.access_log is not None:
        changes["access_log"] = None if args.access_log == os.devnull else args.access_log
    if args.certfile is not None or args.keyfile is not None:
        tls = server_settings.tls_files(args.certfile, args.keyfile, ("--certfile", "--keyfile"))
        changes["certfile"], changes["keyfile"] = tls or (None, None)
    return dataclasses.replace(settings, **changes)


class ServeApplication(BaseApplication):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's application for ``serve``: the settings given, nothing read from files, ``GUNICORN_CMD_ARGS`` or
    ``sys.argv``; the app imported in each worker (so ``--reload`` imports the changed code)."""

    def __init__(self, app: str, settings: dict[str, Any], argv: list[str], start_dir: str) -> None:
        self.app_uri = app
        self.settings = settings
        self.argv = argv
        self.start_dir = start_dir
        super().__init__(prog="python -m wsgi_ws serve")

    def load_config(self) -> None:
        """Set every setting given (gunicorn's names) on gunicorn's config."""
        for name, value in self.settings.items():
            self.cfg.set(name, value)
        self.cfg.set("default_proc_name", self.app_uri)

    def load(self) -> Any:
        """Import the app in a worker; a module that does not exist is one line (AppImportError), not a traceback."""
        module = self.app_uri.partition(":")[0]
        try:
            return util.import_app(self.app_uri)
        except ModuleNotFoundError as error:
            if error.name and (module == error.name or module.startswith(f"{error.name}.")):
                raise AppImportError(f"Error: cannot import the app {self.app_uri!r}: {error}") from None
            raise

    def run(self) -> None:
        """Run gunicorn's arbiter until it stops; a re-exec (SIGUSR2) runs ``python -m wsgi_ws`` with the same flags."""
        arbiter = Arbiter(self)
        arbiter.START_CTX["args"] = [sys.executable, "-m", "wsgi_ws", *self.argv]
        arbiter.START_CTX["cwd"] = self.start_dir
        arbiter.run()


def run(args: argparse.Namespace) -> int:
    """Serve ``args.app`` until gunicorn stops; returns (or exits with) gunicorn's exit status, 1 for a bad variable
    or a busy port, 2 for a bad flag or an app whose module cannot be found."""
    start_dir = os.getcwd()
    if args.chdir is not None:
        if not os.path.isdir(args.chdir):
            args.usage_error(f"--chdir {args.chdir!r} is not a folder")
        os.chdir(args.chdir)
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)  # the app is imported from the folder served, as gunicorn does
    try:
        from_variables = server_settings.from_environment(os.environ)
    except InvalidServerSetting as error:
        return _fail(f"Error: {error}")
    try:
        settings = with_flags(from_variables, args)
    except InvalidServerSetting as error:
        args.usage_error(str(error))
    top = args.app.partition(":")[0].partition(".")[0]
    if importlib.util.find_spec(top) is None:  # found without being imported: the workers import the app
        return _fail(f"Error: cannot import the app {args.app!r}: no module named {top!r} in {here} (--chdir DIR)", USAGE_ERROR)
    try:
        configure()  # the WS_* variables, checked before any worker starts
    except InvalidOption as error:
        return _fail(f"Error: {error}")
    busy = server_settings.busy_address(settings.bind, os.environ)
    if busy is not None:
        return _fail(f"Error: {server_settings.busy_message(busy, '--bind ')}")
    try:  # Prometheus metrics summed over the workers, as under the project's gunicorn.conf.py
        prometheus.prepare_directory()
    except InvalidServerSetting as error:
        return _fail(f"Error: {error}")
    gunicorn_settings = settings.gunicorn()
    gunicorn_settings["reload"] = args.reload
    gunicorn_settings.update(on_starting=prometheus.on_starting, child_exit=prometheus.child_exit, on_exit=prometheus.on_exit)
    ServeApplication(args.app, gunicorn_settings, list(getattr(args, "argv", sys.argv[1:])), start_dir).run()
    return 0


def _fail(message: str, status: int = 1) -> int:
    print(message, file=sys.stderr)
    return status
