"""The server's settings, written once (wsgi_ws/server_settings.py): defaults, WSGI_WS_* variables and their checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgi_ws import server_settings
from wsgi_ws.server_settings import InvalidServerSetting, ServerSettings, from_environment

pytestmark = pytest.mark.unit


def test_no_variable_gives_the_project_defaults_as_gunicorn_settings() -> None:
    settings = from_environment({"PATH": "/usr/bin", "WS_CLOSE_TIMEOUT": "1"})  # other variables are not ours
    assert settings == ServerSettings()
    assert settings.gunicorn() == {
        "worker_class": "wsgi_ws.worker.WebSocketWorker",
        "bind": ["127.0.0.1:5000"],
        "workers": 1,
        "worker_connections": 1000,
        "graceful_timeout": 30,
        "control_socket_disable": True,
        "accesslog": "-",
        "loglevel": "info",
    }


def test_every_variable_is_read(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("y")
    settings = from_environment(
        {
            "WSGI_WS_BIND": "0.0.0.0:8000",
            "WSGI_WS_WORKERS": " 4 ",
            "WSGI_WS_WORKER_CONNECTIONS": "50",
            "WSGI_WS_GRACEFUL_TIMEOUT": "0",
            "WSGI_WS_CONTROL_SOCKET": "/run/ws.ctl",
            "WSGI_WS_CERTFILE": str(cert),
            "WSGI_WS_KEYFILE": str(key),
            "WSGI_WS_ACCESS_LOG": "/dev/null",
            "WSGI_WS_LOG_LEVEL": "DEBUG",
        }
    )
    assert settings == ServerSettings(("0.0.0.0:8000",), 4, 50, 0, "/run/ws.ctl", str(cert), str(key), None, "debug")
    made = settings.gunicorn()
    assert made["control_socket_disable"] is False and made["control_socket"] == "/run/ws.ctl"
    assert (made["certfile"], made["keyfile"]) == (str(cert), str(key))


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("WSGI_WS_WORKERS", "two", "invalid server setting WSGI_WS_WORKERS: cannot read 'two': not a whole number"),
        ("WSGI_WS_WORKER_CONNECTIONS", "0", "invalid server setting WSGI_WS_WORKER_CONNECTIONS: must be at least 1, got 0"),
        ("WSGI_WS_GRACEFUL_TIMEOUT", "-1", "invalid server setting WSGI_WS_GRACEFUL_TIMEOUT: must be at least 0, got -1"),
        ("WSGI_WS_LOG_LEVEL", "loud", "invalid server setting WSGI_WS_LOG_LEVEL: must be one of debug, info, warning, error, critical"),
        ("WSGI_WS_WORKER", "2", "invalid server setting WSGI_WS_WORKER: unknown setting; did you mean WSGI_WS_WORKERS?"),
        ("WSGI_WS_CERTFILE", "/nonexistent.pem", "TLS needs both WSGI_WS_CERTFILE and WSGI_WS_KEYFILE naming readable files"),
    ],
)
def test_a_bad_variable_raises_naming_it(name: str, value: str, expected: str) -> None:
    with pytest.raises(InvalidServerSetting) as caught:
        from_environment({name: value})
    assert expected in str(caught.value)


def test_the_checks_the_command_line_shares() -> None:
    assert server_settings.whole_number("7", least=1) == 7
    with pytest.raises(ValueError, match="must be at least 1, got 0"):
        server_settings.whole_number("0", least=1)
    assert server_settings.log_level("Warning") == "warning"
    assert server_settings.tls_files(None, "", ("--certfile", "--keyfile")) is None
    with pytest.raises(InvalidServerSetting, match="TLS needs both --certfile and --keyfile"):
        server_settings.tls_files("cert.pem", None, ("--certfile", "--keyfile"))


def test_inherited_listeners_and_non_tcp_addresses_are_not_probed() -> None:
    """No socket is opened for these: a re-exec or systemd hands gunicorn its listeners; unix: and fd:// are not ports."""
    assert server_settings.busy_address(["127.0.0.1:1"], {"GUNICORN_PID": "1"}) is None
    assert server_settings.busy_address(["127.0.0.1:1"], {"LISTEN_FDS": "1"}) is None
    assert server_settings.busy_address(["unix:/tmp/ws.sock", "fd://3", "localhost"], {}) is None
    message = server_settings.busy_message("127.0.0.1:5000", "WSGI_WS_BIND=")
    assert message == "127.0.0.1:5000 is already in use (another server?): stop it, or serve elsewhere with WSGI_WS_BIND=127.0.0.1:5001"
    assert server_settings.busy_message("[::1]:8000", "--bind ").endswith("serve elsewhere with --bind [::1]:8001")
