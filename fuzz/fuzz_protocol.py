"""Coverage-guided fuzz target (atheris) for the handshake and frame path.

Run:  pip install atheris==3.0.0 && python fuzz/fuzz_protocol.py -max_total_time=300 -print_final_stats=1
      (any libFuzzer flag works; -runs=N for a fixed number of executions; crashes are written as crash-* files)

Each input is split by atheris's FuzzedDataProvider into one of three experiments:
  0. an upgrade request's headers -> validate_request() may only refuse with HandshakeRefused (400/403/426);
  1. bytes after the handshake, in random chunks -> Session never raises, and ends with a valid close code;
  2. the same with partial reads on (the frame splitter in front of the parser).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports():
    from wsgi_ws.protocol import Session
    from wsgi_ws.protocol.errors import HandshakeRefused
    from wsgi_ws.protocol.handshake import validate_request
    from wsgi_ws.protocol.origins import OriginPolicy

POLICY = OriginPolicy(("https://a.example", "https://*.b.example"))
HEADERS = ("HTTP_CONNECTION", "HTTP_SEC_WEBSOCKET_VERSION", "HTTP_SEC_WEBSOCKET_KEY", "HTTP_ORIGIN", "HTTP_SEC_WEBSOCKET_EXTENSIONS")
VALID_CODES = {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014} | set(range(3000, 5000))


def handshake(data: atheris.FuzzedDataProvider) -> None:
    environ = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "h", "HTTP_UPGRADE": "websocket"}
    for name in HEADERS:
        if data.ConsumeBool():
            environ[name] = data.ConsumeUnicodeNoSurrogates(60)
    try:
        validate_request(environ, POLICY)
    except HandshakeRefused as error:
        if error.status not in (400, 403, 426):
            raise AssertionError(error.status) from error


def frames(data: atheris.FuzzedDataProvider, streaming: bool) -> None:
    session = Session(data.ConsumeIntInRange(1, 1 << 16))
    if streaming:
        session.start_streaming(data.ConsumeIntInRange(1, 512))
    while data.remaining_bytes():
        session.receive_data(data.ConsumeBytes(data.ConsumeIntInRange(1, 300)))
        session.data_to_send()
        if session.receive_done:
            break
    if session.receive_done and session.close_code not in VALID_CODES:
        raise AssertionError(session.close_code)


def test_one_input(raw: bytes) -> None:
    """The fuzz entry point."""
    data = atheris.FuzzedDataProvider(raw)
    experiment = data.ConsumeIntInRange(0, 2)
    if experiment == 0:
        handshake(data)
    else:
        frames(data, streaming=experiment == 2)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
