"""``python -m wsgi_ws client URI``: an interactive WebSocket client on the ``websockets`` package's threaded client.

Each line read from stdin is sent as a text message; every message received is printed (``< text``, binary as
``< (binary, N bytes) 68 65 ...``); when the connection ends, its close code and reason are printed. End of input
(Ctrl-D, or the end of a pipe) closes with 1000. stdin may be a pipe: nothing is prompted then, so a script or a
test can drive it.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import threading
from typing import IO, Any

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus, InvalidURI
from websockets.frames import Close
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol
from websockets.uri import parse_uri

__all__ = ["OPEN_TIMEOUT", "Console", "add_parser", "describe", "escape", "run"]

#: Seconds to open the connection (TCP, TLS and the handshake) before giving up.
OPEN_TIMEOUT = 10.0
#: Control characters (C0, DEL, C1) written as escapes, so a message cannot move the cursor or clear the terminal.
_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(32), *range(127, 160))}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``client`` command and its flags to ``commands`` (the front's subparsers)."""
    parser = commands.add_parser(
        "client",
        help="an interactive WebSocket client: stdin lines out, messages in",
        description="Connect to URI; send each line of stdin as a text message and print every message received. "
        "End of input (Ctrl-D) closes with 1000. Exits 0 after a normal close (1000, 1001), 1 otherwise.",
    )
    parser.add_argument("uri", metavar="URI", type=_uri, help="ws:// or wss:// URI, for example ws://127.0.0.1:5000/ws")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        type=_header,
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra request header, for example 'Authorization: Bearer abc'; repeatable",
    )
    parser.add_argument(
        "-s", "--subprotocol", action="append", default=[], metavar="NAME", help="a subprotocol to offer; repeatable, in order"
    )
    parser.add_argument("--origin", metavar="ORIGIN", help="the Origin header to send, for example http://127.0.0.1:5000")
    parser.add_argument("--insecure", action="store_true", help="wss://: do not verify the server's certificate")
    parser.set_defaults(run=run)


def _uri(text: str) -> str:
    try:
        parse_uri(text)
    except InvalidURI as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or any(c.isspace() for c in name.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def escape(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``), safe to print on a terminal."""
    return text.translate(_ESCAPES)


def describe(message: str | bytes) -> str:
    """How a received message is printed: ``< text``, or ``< (binary, N bytes) 68 69`` in hex."""
    if isinstance(message, str):
        return f"< {escape(message)}"
    return f"< (binary, {len(message)} bytes) {message.hex(' ')}"


class Console:
    """Where the client writes: plain lines on a pipe; on a terminal, lines printed above the prompt and what has been
    typed so far (readline's line editing and history), and the terminal's settings put back by :meth:`restore`."""

    def __init__(self, stdin: IO[str], out: IO[str]) -> None:
        self.stdin = stdin
        self.out = out
        self.interactive = stdin is sys.stdin and stdin.isatty() and out.isatty()
        self.lock = threading.Lock()
        self.prompting = False
        self.readline: Any = None
        self.terminal: Any = None
        if self.interactive:
            try:
                import readline  # input() then edits the line and keeps a history
                import termios

                self.readline = readline
                self.terminal = termios.tcgetattr(stdin.fileno())
                readline.set_pre_input_hook(self._prompt_shown)  # called once the prompt is on the screen
            except (ImportError, OSError):  # pragma: no cover  # not on every platform
                pass

    def show(self, line: str, last: bool = False) -> None:
        """Print ``line``; on a terminal, above the prompt and the typed text, shown again after it (unless ``last``)."""
        with self.lock:
            if self.interactive:
                again = "" if last or not self.prompting else "> " + (self.readline.get_line_buffer() if self.readline else "")
                self.out.write(f"\r\x1b[K{line}\n{again}")
            else:
                self.out.write(f"{line}\n")
            self.out.flush()

    def read(self) -> str | None:
        """The next line of input without its line ending, or None at the end of input."""
        if not self.interactive:
            line = self.stdin.readline()
            return line.rstrip("\r\n") if line else None
        if self.readline is None:
            self._prompt_shown()  # nearly: input() writes it next
        try:
            return input("> ")
        except EOFError:
            return None
        finally:
            with self.lock:
                self.prompting = False

    def _prompt_shown(self) -> None:
        with self.lock:
            self.prompting = True

    def restore(self) -> None:
        """Put the terminal's settings back as they were (the reading thread may still be inside readline)."""
        if self.terminal is not None:
            import termios

            termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self.terminal)


def _send_lines(ws: ClientConnection, console: Console) -> None:
    """Send each line of input until it ends (then close with 1000) or the connection does."""
    try:
        while (line := console.read()) is not None:
            ws.send(line)
        ws.close(1000)
    except ConnectionClosed:
        pass  # the server closed first: the receiving side prints how


def run(args: argparse.Namespace, stdin: IO[str] | None = None, out: IO[str] | None = None) -> int:
    """Connect to ``args.uri`` and relay until the connection ends; 0 after a normal close (1000 or 1001), 1 after
    any other close or when the connection could not be opened (a refused handshake prints its HTTP status), 130
    after Ctrl-C (which closes with 1000 first)."""
    stdin = sys.stdin if stdin is None else stdin
    out = sys.stdout if out is None else out
    console = Console(stdin, out)
    options: dict[str, Any] = {"open_timeout": OPEN_TIMEOUT, "additional_headers": args.header or None}
    if args.subprotocol:
        options["subprotocols"] = [Subprotocol(name) for name in args.subprotocol]
    if args.origin:
        options["origin"] = Origin(args.origin)
    if args.insecure and args.uri.startswith("wss://"):
        options["ssl"] = ssl.create_default_context()
        options["ssl"].check_hostname = False
        options["ssl"].verify_mode = ssl.CERT_NONE
    try:
        ws = connect(args.uri, **options)
    except InvalidStatus as error:
        response = error.response
        status = f"HTTP {response.status_code} {response.reason_phrase}"
        body = response.body.decode(errors="replace").strip().splitlines() if response.body else []
        reason = body[0].removeprefix(f"{response.status_code} {response.reason_phrase}").lstrip(": ") if body else ""
        detail = f": {escape(reason)[:200]}" if reason else ""
        print(f"Failed to connect to {args.uri}: the server refused the WebSocket: {status}{detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # refused, unreachable, TLS, a timeout, not a WebSocket server: one line each
        print(f"Failed to connect to {args.uri}: {escape(str(error)) or type(error).__name__}", file=sys.stderr)
        return 1
    with ws:
        chosen = f" (subprotocol {ws.subprotocol})" if ws.subprotocol else ""
        console.show(f"Connected to {args.uri}{chosen}.")
        threading.Thread(target=_send_lines, args=(ws, console), daemon=True, name="stdin").start()
        try:
            return _receive(ws, console)
        finally:
            console.restore()


def _receive(ws: ClientConnection, console: Console) -> int:
    """Print every message until the connection ends, then how it ended; the exit status."""
    interrupted = False
    while True:
        try:
            message = ws.recv()
        except ConnectionClosed as closed:
            ending = closed
            break
        except KeyboardInterrupt:
            interrupted = True
            ws.close(1000)
            continue  # print what arrived before the server's close frame, then the close
        console.show(describe(message))
    console.show(f"Connection closed{_how(ending)}.", last=True)
    if interrupted:
        return 130
    return 0 if isinstance(ending, ConnectionClosedOK) else 1


def _how(ending: ConnectionClosed) -> str:
    """Who closed, with what code and reason: the server's frame when it closed first; this client's when it closed
    first for a reason of its own (a message over its size limit: 1009); the plain code when it ended normally."""
    received, sent = ending.rcvd, ending.sent
    if received is not None and (ending.rcvd_then_sent or sent is None):
        return f" by the server: {escape(str(Close(received.code, received.reason)))}"
    if sent is not None and sent.code != 1000:  # the server's answer, if any, only repeats it
        return f" by this client: {escape(str(Close(sent.code, sent.reason)))}"
    if received is not None:
        return f": {escape(str(Close(received.code, received.reason)))}"
    return ": 1006 (connection closed abnormally): no close frame received"
