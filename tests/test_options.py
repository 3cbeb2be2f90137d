"""Options: defaults, parsing from text, validation messages that name the setting, precedence."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, cast

import pytest

from tests.server import ROOT
from tests.waiting import wait_until
from wsgi_ws.exceptions import InvalidOption
from wsgi_ws.options import WebSocketOptions

pytestmark = pytest.mark.unit


def test_defaults_follow_aspnet_core_except_the_origin_policy() -> None:
    options = WebSocketOptions()
    assert options.keep_alive_interval == 120.0
    assert options.keep_alive_timeout is None
    assert options.receive_buffer_size == 4096
    assert options.allowed_origins == ("same-origin",)  # ASP.NET Core allows every origin; we do not (issue 16)
    assert options.max_message_size == 1024 * 1024
    assert options.close_timeout == 5.0
    assert options.max_connections_per_ip is None and options.max_connection_rate_per_ip is None
    assert options.send_timeout == 60.0


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("keep_alive_interval", "30", 30.0),
        ("keep_alive_interval", "0", None),
        ("keep_alive_interval", "off", None),
        ("keep_alive_timeout", "2.5", 2.5),
        ("max_message_size", "16MiB", 16 * 1024 * 1024),
        ("max_message_size", "64k", 64 * 1024),
        ("max_message_size", "none", None),
        ("receive_buffer_size", "8192", 8192),
        ("allowed_origins", "https://a.com, https://*.b.com", ("https://a.com", "https://*.b.com")),
        ("subprotocols", "chat.v2 chat.v1", ("chat.v2", "chat.v1")),
        ("require_origin", "true", True),
        ("require_origin", "no", False),
        ("hub_cluster", "auto", None),
        ("hub_cluster", "yes", True),
        ("hub_queue_bytes", "4MiB", 4 * 1024 * 1024),
        ("hub_overflow", "Drop-Oldest", "drop-oldest"),
        ("hub_overflow", "latest", "latest"),
    ],
)
def test_values_are_read_from_text(name: str, text: str, value: object) -> None:
    assert getattr(WebSocketOptions().replace(**{name: text}), name) == value


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("keep_alive_interval", "soon", "keep_alive_interval"),
        ("keep_alive_interval", -1, "seconds >= 0"),
        ("close_timeout", 0, "seconds > 0"),
        ("max_message_size", 0, "bytes > 0"),
        ("max_message_size", "lots", "cannot read"),
        ("receive_buffer_size", 0, "from 1 to 64 MiB"),
        ("allowed_origins", "example.com", "not an origin"),
        ("allowed_origins", "https://exa*mple.com", "not an origin"),
        ("require_origin", "maybe", "true/false"),
        ("keep_alive_intervall", 1, "unknown setting"),
        ("hub_overflow", "newest", "expected one of close, drop-oldest, latest"),
        ("hub_queue_bytes", 0, "from 1 to"),
        ("hub_cluster", "sometimes", "true/false"),
    ],
)
def test_bad_values_raise_naming_the_setting(name: str, value: object, words: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        WebSocketOptions().replace(**cast(dict[str, Any], {name: value}))
    assert name in str(caught.value) and words in str(caught.value)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(InvalidOption, match="close_timeout"):
        WebSocketOptions(close_timeout=-1)


def test_environment_overrides_and_is_named_with_its_prefix() -> None:
    options = WebSocketOptions(close_timeout=3).with_environment({"WS_CLOSE_TIMEOUT": "7", "WS_MAX_MESSAGE_SIZE": "2MiB", "OTHER": "x"})
    assert options.close_timeout == 7.0 and options.max_message_size == 2 * 1024 * 1024
    with pytest.raises(InvalidOption, match="WS_CLOSE_TIMEOUT"):
        WebSocketOptions().with_environment({"WS_CLOSE_TIMEOUT": "never"})


def test_flask_config_keys_are_read_with_their_prefix() -> None:
    options = WebSocketOptions.from_mapping({"WEBSOCKET_KEEP_ALIVE_INTERVAL": 15, "SECRET_KEY": "x"}, "WEBSOCKET_")
    assert options.keep_alive_interval == 15
    with pytest.raises(InvalidOption, match="WEBSOCKET_KEEP_ALIVE_INTERVAL"):
        WebSocketOptions.from_mapping({"WEBSOCKET_KEEP_ALIVE_INTERVAL": "x"}, "WEBSOCKET_")


def test_bad_environment_value_stops_gunicorn_at_start_with_the_setting_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--check-config", "app:app"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "WS_KEEP_ALIVE_INTERVAL": "soon", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "WS_KEEP_ALIVE_INTERVAL" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("WSGI_WS_WORKERS=two", "invalid server setting WSGI_WS_WORKERS: cannot read 'two': not a whole number"),
        ("WSGI_WS_WORKER_CONNECTIONS=0", "invalid server setting WSGI_WS_WORKER_CONNECTIONS: must be at least 1, got 0"),
        ("WSGI_WS_GRACEFUL_TIMEOUT=soon", "invalid server setting WSGI_WS_GRACEFUL_TIMEOUT: cannot read 'soon'"),
        ("WSGI_WS_WORKER=2", "invalid server setting WSGI_WS_WORKER: unknown setting; did you mean WSGI_WS_WORKERS?"),
        ("WS_KEEPALIVE_INTERVAL=30", "WS_KEEPALIVE_INTERVAL: unknown setting; did you mean 'WS_KEEP_ALIVE_INTERVAL'?"),
        ("PROMETHEUS_MULTIPROC_DIR=/dev/null/metrics", "invalid setting PROMETHEUS_MULTIPROC_DIR: cannot make the folder"),
    ],
)
def test_a_bad_or_misspelt_server_variable_stops_start_up_naming_it_without_a_traceback(setting: str, expected: str) -> None:
    name, _, value = setting.partition("=")
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--check-config", "app:app"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", name: value, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Error: invalid " in output and expected in output, output
    assert "Traceback" not in output


def test_a_misspelt_environment_variable_raises_as_a_misspelt_keyword_does() -> None:
    with pytest.raises(InvalidOption, match="did you mean 'WS_KEEP_ALIVE_INTERVAL'"):
        WebSocketOptions().with_environment({"WS_KEEPALIVE_INTERVAL": "30"})
    with pytest.raises(InvalidOption, match="did you mean 'keep_alive_interval'"):
        WebSocketOptions().replace(keepalive_interval=30)


def test_an_error_shows_a_list_of_words_as_words_not_as_a_python_tuple() -> None:
    with pytest.raises(InvalidOption) as caught:
        WebSocketOptions(allowed_origins=("example.com",))
    assert str(caught.value).endswith("got 'example.com'"), str(caught.value)
    with pytest.raises(InvalidOption) as caught:
        WebSocketOptions().with_environment({"WS_ALLOWED_ORIGINS": "https://ok.example, example.com"})
    assert str(caught.value).endswith("got 'https://ok.example', 'example.com'"), str(caught.value)


def test_a_busy_port_stops_start_up_at_once_naming_wsgi_ws_bind() -> None:
    """gunicorn alone retries for 5 s and ends with "Can't connect", without saying which setting moves the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket", "app:app"],
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "WSGI_WS_BIND": f"127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and f"Error: 127.0.0.1:{port} is already in use" in output and "WSGI_WS_BIND=" in output, output
    assert "Traceback" not in output


def test_the_busy_port_check_looks_at_the_address_gunicorn_will_bind(tmp_path: Path) -> None:
    """``--bind`` on the command line wins over the file's ``bind``: a busy default port must not stop such a server."""
    with socket.socket() as taken, socket.socket() as other:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        other.bind(("127.0.0.1", 0))
        free_port = other.getsockname()[1]
        other.close()
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "WSGI_WS_BIND": f"127.0.0.1:{taken.getsockname()[1]}"}
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket"]
        log = tmp_path / "gunicorn.log"
        with log.open("wb") as out:
            server = subprocess.Popen([*command, "--bind", f"127.0.0.1:{free_port}", "app:app"], cwd=ROOT, env=env, stderr=out)
        try:
            listening = f"Listening at: http://127.0.0.1:{free_port}"
            wait_until(lambda: listening in log.read_text() or server.poll() is not None, "gunicorn neither listened nor exited")
            assert listening in log.read_text() and "already in use" not in log.read_text(), log.read_text()
            with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/stats", timeout=30) as response:  # and it serves
                assert response.status == 200
        finally:
            server.terminate()
            server.wait(30)
