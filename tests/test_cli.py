"""The command line, ``python -m wsgi_ws``: ``serve APP`` under gunicorn, ``client URI`` interactive (here piped).

The unit tests parse flags in this process; the end-to-end ones start ``python -m wsgi_ws`` and talk to it with the
``websockets`` client, or drive its client against a server of ``wsgi_ws.testing.serve``.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import termios
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidHandshake
from websockets.sync.client import connect

import wsgi_ws
from tests.constants import TIMEOUT
from tests.server import ROOT
from tests.waiting import wait_until
from wsgi_ws.cli import main, parser
from wsgi_ws.cli.client import describe
from wsgi_ws.cli.serve import ServeApplication, with_flags
from wsgi_ws.server_settings import ServerSettings, from_environment
from wsgi_ws.testing import TestServer, serve
from wsgi_ws.testing.live import ServerLog

BUSY = "is already in use (another server?): stop it, or serve elsewhere with --bind 127.0.0.1:"


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without WS_* / WSGI_WS_* settings, wsgi_ws importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WS_", "WSGI_WS_"))}
    return {**env, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **extra}


def command(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``python -m wsgi_ws ARGS`` to its end; stdout and stderr apart."""
    return subprocess.run(
        [sys.executable, "-m", "wsgi_ws", *args],
        cwd=cwd,
        env=env or environment(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=3 * TIMEOUT,
    )


def client_until_the_server_ends(uri: str, line: str = "") -> tuple[int, str, str]:
    """``python -m wsgi_ws client URI`` sent ``line`` (if any) with its input left open, so that only the connection
    can end it, not the end of input; (exit status, stdout, stderr)."""
    client = subprocess.Popen(
        [sys.executable, "-m", "wsgi_ws", "client", uri],
        cwd=ROOT,
        env=environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None
    if line:
        client.stdin.write(f"{line}\n")
        client.stdin.flush()
    try:
        status = client.wait(TIMEOUT)
    finally:
        client.kill()
        out, err = client.communicate()
    return status, out, err


class Serving:
    """``python -m wsgi_ws serve ARGS`` in the background on a loopback port: its own (``--bind 127.0.0.1:PORT``), or a
    socket this test listens on first (``--bind fd://N``, so nothing races for the port)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, own_port: bool = False) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        fds: tuple[int, ...] = ()
        if own_port:
            self.listener.close()  # gunicorn binds the port itself
            bind = f"127.0.0.1:{self.port}"
        else:
            self.listener.listen(128)
            bind, fds = f"fd://{self.listener.fileno()}", (self.listener.fileno(),)
        self._log = ServerLog("wsgi-ws-cli-", "serve.log")
        with self._log.open() as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wsgi_ws", "serve", *args, "--bind", bind],
                cwd=ROOT,
                env=env or environment(),
                pass_fds=fds,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self._log.text()

    def wait_for_log(self, text: str) -> str:
        wait_until(lambda: text in self.log() or self.process.poll() is not None, f"{text!r} not logged:\n{self.log()}")
        assert text in self.log(), f"serve exited ({self.process.returncode}) without logging {text!r}:\n{self.log()}"
        return self.log()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(3 * TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.listener.close()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def serving() -> Iterator[list[Serving]]:
    """Servers started by the test (append them); all stopped afterwards."""
    started: list[Serving] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def talk_server() -> Iterator[TestServer]:
    """tests/apps/talk.py under gunicorn, accepting the chat.v1 subprotocol, for the client to talk to."""
    with serve("tests.apps.talk:app", env={"PYTHONPATH": str(ROOT), "WS_SUBPROTOCOLS": "chat.v1"}, cwd=ROOT) as server:
        yield server


# ---------------------------------------------------------------------------------------------------- unit: parsing


@pytest.fixture(autouse=True)
def no_gunicorn_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() runs in the test's process here: a command line that parsed when it should not must fail, not serve."""

    def refuse(self: ServeApplication) -> None:
        pytest.fail(f"gunicorn would have started in the test process for {self.app_uri!r}")

    monkeypatch.setattr(ServeApplication, "run", refuse)


@pytest.mark.unit
@pytest.mark.timeout(30)
def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"wsgi-ws {wsgi_ws.__version__}\n"
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    shown = capsys.readouterr().out
    assert exited.value.code == 0 and "serve" in shown and "client" in shown
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2 and "required: COMMAND" in capsys.readouterr().err


@pytest.mark.unit
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "app:app", "--workers", "0"], "argument -w/--workers: must be at least 1, got 0"),
        (["serve", "app:app", "--certfile", "cert.pem"], "error: TLS needs both --certfile and --keyfile naming readable files"),
        (["serve", "app:app", "--worker-connections", "many"], "argument --worker-connections: cannot read 'many': not a whole number"),
        (["serve", "app:app", "--graceful-timeout", "-1"], "argument --graceful-timeout: must be at least 0, got -1"),
        (["serve", "app:app", "--log-level", "loud"], "argument --log-level: must be one of debug, info, warning, error, critical"),
        (["serve", "app:app", "--threads", "4"], "unrecognized arguments: --threads 4"),
        (["serve", "app.py"], "argument APP: 'app.py' is a file name: give module:variable (for example app:app)"),
        (["serve", "app:"], "argument APP: 'app:' is not module:variable (for example app:app)"),
        (["serve"], "the following arguments are required: APP"),
        (["client", "http://127.0.0.1:5000/ws"], "argument URI: http://127.0.0.1:5000/ws isn't a valid URI"),
        (["client", "ws://127.0.0.1:5000/ws", "--header", "no colon"], "argument -H/--header: 'no colon' is not 'Name: value'"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(args: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    error = capsys.readouterr().err
    assert exited.value.code == 2 and expected in error.splitlines()[-1], error


@pytest.mark.unit
@pytest.mark.timeout(30)
def test_serve_has_the_project_defaults_and_flags_win_over_the_variables() -> None:
    args = parser().parse_args(["serve", "app:app"])
    assert with_flags(ServerSettings(), args) == ServerSettings()
    args = parser().parse_args(["serve", "app:app", "-b", "127.0.0.1:7000", "--bind", "unix:/tmp/ws.sock", "-w", "3"])
    args.access_log = os.devnull
    variables = from_environment({"WSGI_WS_WORKERS": "2", "WSGI_WS_GRACEFUL_TIMEOUT": "5", "WSGI_WS_BIND": "0.0.0.0:80"})
    settings = with_flags(variables, args)
    assert settings.bind == ("127.0.0.1:7000", "unix:/tmp/ws.sock") and settings.workers == 3 and settings.graceful_timeout == 5
    assert settings.access_log is None


@pytest.mark.unit
@pytest.mark.timeout(30)
def test_serve_gives_gunicorn_the_websocket_worker_no_control_socket_and_reload() -> None:
    settings = {**ServerSettings().gunicorn(), "reload": True}
    cfg = ServeApplication("app:app", settings, ["serve", "app:app"], str(ROOT)).cfg
    assert cfg.worker_class_str == "wsgi_ws.worker.WebSocketWorker"
    assert cfg.control_socket_disable is True
    assert (cfg.bind, cfg.workers, cfg.worker_connections, cfg.graceful_timeout) == (["127.0.0.1:5000"], 1, 1000, 30)
    assert (cfg.accesslog, cfg.loglevel, cfg.reload, cfg.proc_name) == ("-", "info", True, "app:app")


@pytest.mark.unit
@pytest.mark.timeout(30)
def test_serve_an_app_that_cannot_be_found_is_named_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "no_such_module_here:app"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("Error: cannot import the app 'no_such_module_here:app': no module named 'no_such_module_here'")
    assert len(error.splitlines()) == 1


@pytest.mark.unit
@pytest.mark.timeout(30)
def test_how_messages_are_printed() -> None:
    assert describe("hello") == "< hello"
    assert describe("bell\x07 and\nnewline") == "< bell\\x07 and\\nnewline"  # nothing that moves the cursor
    assert describe(b"\x00\xffhi") == "< (binary, 4 bytes) 00 ff 68 69"


# ---------------------------------------------------------------------------------------------------- e2e: serve


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_serve_runs_the_sample_app_on_its_port_with_the_websocket_worker(serving: list[Serving]) -> None:
    server = Serving("app:app", own_port=True)
    serving.append(server)
    log = server.wait_for_log(f"Listening at: http://127.0.0.1:{server.port}")
    assert "Using worker: wsgi_ws.worker.WebSocketWorker" in log
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("hello")
        assert ws.recv(timeout=TIMEOUT) == "hello"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\x01"
    server.wait_for_log("ws.close path=/ws")
    server.wait_for_log('"GET /ws HTTP/1.1" 101')  # the access log, on stdout
    assert server.stop() == 0
    assert "Shutting down: Master" in server.log()


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_serve_sums_the_metrics_of_its_workers_in_a_folder_it_removes_at_exit(serving: list[Serving], tmp_path: Path) -> None:
    server = Serving("app:app", "--workers", "2", env=environment(TMPDIR=str(tmp_path)))  # where its folder is made
    serving.append(server)
    wait_until(lambda: server.log().count("Booting worker with pid") == 2, "two workers booted")
    with ExitStack() as stack:
        for _ in range(8):
            ws = stack.enter_context(connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=TIMEOUT))
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "hi"

        def all_eight() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/stats", timeout=TIMEOUT) as response:
                return bool(json.load(response)["open"] == 8)

        wait_until(all_eight, "/stats counting the connections of both workers")
        assert len(list(tmp_path.glob("wsgi-ws-metrics-*"))) == 1
    assert server.stop() == 0
    assert list(tmp_path.glob("wsgi-ws-metrics-*")) == [], "removed at exit"


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_serve_applies_the_ws_variables(serving: list[Serving]) -> None:
    server = Serving("app:app", env=environment(WS_MAX_MESSAGE_SIZE="16"))
    serving.append(server)
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("short")
        assert ws.recv(timeout=TIMEOUT) == "short"
        ws.send("x" * 17)
        with pytest.raises(ConnectionClosedError) as closed:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_serve_reload_serves_the_changed_source(tmp_path: Path, serving: list[Serving]) -> None:
    source = tmp_path / "reloadable_app.py"
    template = (
        "from flask import Flask\n"
        "from wsgi_ws.flask_ext import WebSockets\n"
        "app = Flask(__name__)\n"
        "sockets = WebSockets(app)\n"
        "@sockets.route('/version')\n"
        "def version(ws):\n"
        "    ws.send({reply!r})\n"
    )
    source.write_text(template.format(reply="first"))
    server = Serving("--reload", "--chdir", str(tmp_path), "reloadable_app:app")
    serving.append(server)

    def reply() -> object:
        with connect(f"ws://127.0.0.1:{server.port}/version", open_timeout=TIMEOUT) as ws:
            return ws.recv(timeout=TIMEOUT)

    assert reply() == "first"
    source.write_text(template.format(reply="second version"))
    stamp = source.stat().st_mtime

    def touched_until_seen() -> bool:
        # The reloader polls mtimes (once a second) from its first pass on: a change it took as its starting point
        # does not count, so keep the file newer than anything it has seen until it says so.
        nonlocal stamp
        stamp += 1
        os.utime(source, (stamp, stamp))
        return "Worker reloading:" in server.log()

    def new_code_served() -> bool:
        try:
            return reply() == "second version"
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosedError):
            return False  # the old worker stopping (503, 1001) or the new one not yet answering

    wait_until(touched_until_seen, f"the reloader saw no change:\n{server.log()}", timeout=3 * TIMEOUT)
    wait_until(new_code_served, f"the changed source was not served:\n{server.log()}")
    assert f"Worker reloading: {source} modified" in server.log()


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_serve_a_busy_port_is_one_line_at_once_before_gunicorn_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = command("serve", "app:app", "--bind", f"127.0.0.1:{port}")
        took = time.monotonic() - started
    assert result.returncode == 1 and result.stderr == f"Error: 127.0.0.1:{port} {BUSY}{port + 1}\n", result.stderr
    assert "Starting gunicorn" not in result.stdout + result.stderr
    assert took < 4.5, f"{took:.1f} s: gunicorn's own retries take 5 s"


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("WSGI_WS_WORKERS", "two", "Error: invalid server setting WSGI_WS_WORKERS: cannot read 'two': not a whole number"),
        ("WS_KEEP_ALIVE_INTERVAL", "soon", "Error: invalid WebSocket setting WS_KEEP_ALIVE_INTERVAL: cannot read 'soon'"),
    ],
)
def test_serve_a_bad_variable_is_one_line_naming_it(name: str, value: str, expected: str) -> None:
    result = command("serve", "app:app", "--bind", "127.0.0.1:0", env=environment(**{name: value}))
    assert result.returncode == 1 and result.stderr.startswith(expected) and len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_serve_an_app_without_that_variable_stops_with_gunicorn_s_line_not_a_traceback() -> None:
    result = command("serve", "app:no_such_app", "--bind", "127.0.0.1:0")
    output = result.stdout + result.stderr
    assert result.returncode == 4 and "Failed to find attribute 'no_such_app' in 'app'." in output, output
    assert "Traceback" not in output and "App failed to load." in output


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_serve_a_module_of_a_package_that_is_not_there_is_named_without_a_traceback() -> None:
    """The package is found before gunicorn starts; its module is imported in the worker, which says which is missing."""
    result = command("serve", "tests.apps.no_such_module:app", "--bind", "127.0.0.1:0")
    output = result.stdout + result.stderr
    expected = "Error: cannot import the app 'tests.apps.no_such_module:app': No module named 'tests.apps.no_such_module'"
    assert result.returncode == 4 and expected in output, output
    assert "Traceback" not in output


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_python_m_wsgi_ws_runs_the_command_line() -> None:
    result = command("--version")
    assert (result.returncode, result.stdout) == (0, f"wsgi-ws {wsgi_ws.__version__}\n")


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_serve_with_a_certificate_serves_wss_and_the_client_talks_to_it_with_insecure(
    certificate: tuple[str, str], serving: list[Serving]
) -> None:
    cert, key = certificate
    server = Serving("app:app", "--certfile", cert, "--keyfile", key)
    serving.append(server)
    result = command("client", f"wss://127.0.0.1:{server.port}/ws", "--insecure", stdin="over TLS\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == ["< over TLS", "Connection closed: 1000 (OK)."]
    verified = command("client", f"wss://127.0.0.1:{server.port}/ws", stdin="")  # self-signed: refused without it
    assert verified.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in verified.stderr, verified.stderr


# ---------------------------------------------------------------------------------------------------- e2e: client


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_client_sends_each_line_prints_each_echo_and_closes_with_1000_at_the_end_of_input(talk_server: TestServer) -> None:
    result = command("client", f"{talk_server.url}/ws", stdin="hello\nsecond line\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Connected to {talk_server.url}/ws.",
        "< hello",
        "< second line",
        "Connection closed: 1000 (OK).",
    ]
    assert "code=1000" in talk_server.wait_for_log("ws.close path=/ws")


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_client_sends_headers_origin_and_subprotocols_and_prints_binary(talk_server: TestServer) -> None:
    origin = talk_server.http_url
    flags = ["--header", "X-Token: abc 123", "--origin", origin, "--subprotocol", "chat.v2", "-s", "chat.v1"]
    result = command("client", f"{talk_server.url}/introduce", *flags, stdin="")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Connected to {talk_server.url}/introduce (subprotocol chat.v1)."
    assert json.loads(lines[1].removeprefix("< ")) == {"x-token": "abc 123", "origin": origin, "subprotocol": "chat.v1"}
    assert lines[2:] == ["< (binary, 4 bytes) 00 ff 68 69", "Connection closed: 1000 (OK)."]


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_client_prints_the_server_s_close_code_and_reason_and_exits_1(talk_server: TestServer) -> None:
    status, out, err = client_until_the_server_ends(f"{talk_server.url}/close-with", "4001 go away")
    assert status == 1, err
    assert out.splitlines()[-1] == "Connection closed by the server: 4001 (private use) go away.", out


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_client_closing_for_a_reason_of_its_own_says_so(talk_server: TestServer) -> None:
    status, out, err = client_until_the_server_ends(f"{talk_server.url}/big")
    assert status == 1, err
    assert out.splitlines()[-1].startswith("Connection closed by this client: 1009 (message too big)"), out


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_client_refused_prints_the_status_and_exits_1(talk_server: TestServer) -> None:
    result = command("client", f"{talk_server.url}/ws", "--origin", "https://evil.example", stdin="never sent\n")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(f"Failed to connect to {talk_server.url}/ws: the server refused the WebSocket: HTTP 403 Forbidden")
    assert "https://evil.example" in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_client_with_nothing_listening_is_one_line_and_exit_1() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
        result = command("client", f"ws://127.0.0.1:{unused.getsockname()[1]}/ws")
    assert result.returncode == 1 and result.stderr.startswith("Failed to connect to ws://127.0.0.1:"), result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_client_on_a_terminal_prompts_edits_lines_and_gives_the_terminal_back(talk_server: TestServer) -> None:
    """On a terminal (a pty here) it prompts with "> " and reads through readline; the server ending the connection
    while readline waits for the next line leaves the terminal as it was."""
    terminal, its_side = pty.openpty()
    client = subprocess.Popen(
        [sys.executable, "-m", "wsgi_ws", "client", f"{talk_server.url}/close-with"],
        cwd=ROOT,
        env=environment(),
        stdin=its_side,
        stdout=its_side,
        stderr=its_side,
    )
    shown = b""

    def wait_for(text: bytes) -> None:
        nonlocal shown
        deadline = time.monotonic() + TIMEOUT
        while text not in shown:
            assert time.monotonic() < deadline, f"{text!r} not shown; the terminal has {shown!r}"
            if select.select([terminal], [], [], 0.05)[0]:
                shown += os.read(terminal, 4096)

    try:
        wait_for(b"> ")
        os.write(terminal, b"4001 byx\x7fe\r")  # with a backspace: the line is edited before it is sent
        wait_for(b"Connection closed by the server: 4001 (private use) bye.")
        status = client.wait(TIMEOUT)
        settings = termios.tcgetattr(its_side)
    finally:
        client.kill()
        client.wait()
        os.close(terminal)
        os.close(its_side)
    assert status == 1
    assert settings[3] & termios.ICANON and settings[3] & termios.ECHO, "the terminal was left in readline's mode"
