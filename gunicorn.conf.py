"""gunicorn settings for the wsgi-ws sample: `gunicorn -c gunicorn.conf.py app:app`.

Every setting can be overridden by an environment variable: WSGI_WS_BIND / WSGI_WS_WORKERS / ... for the server,
WS_<OPTION> (for example WS_MAX_MESSAGE_SIZE=16MiB) for the WebSocket options below.
A bad value stops start-up with a message that names the setting.
"""

import difflib
import errno
import os
import socket
import sys
from typing import Any

import wsgi_ws
import wsgi_ws.prometheus

# The server's settings, each read from WSGI_WS_<NAME> below; any other WSGI_WS_* variable is a typo and stops start-up.
_SERVER_SETTINGS = (
    "BIND",
    "WORKERS",
    "WORKER_CONNECTIONS",
    "GRACEFUL_TIMEOUT",
    "CONTROL_SOCKET",
    "CERTFILE",
    "KEYFILE",
    "ACCESS_LOG",
    "LOG_LEVEL",
)
for _name in sorted(os.environ):
    if _name.startswith("WSGI_WS_") and _name[len("WSGI_WS_") :] not in _SERVER_SETTINGS:
        _nearest = difflib.get_close_matches(_name[len("WSGI_WS_") :], _SERVER_SETTINGS, n=1)
        _hint = f"did you mean WSGI_WS_{_nearest[0]}? " if _nearest else ""
        sys.exit(f"Error: invalid server setting {_name}: unknown setting; {_hint}known: WSGI_WS_{', WSGI_WS_'.join(_SERVER_SETTINGS)}")


def _whole_number(name: str, default: int, least: int) -> int:
    """The environment variable ``name`` as a whole number of at least ``least``; start-up stops naming it if not."""
    text = os.environ.get(name, str(default)).strip()
    try:
        value = int(text)
    except ValueError:
        sys.exit(f"Error: invalid server setting {name}: cannot read {text!r}: not a whole number")
    if value < least:
        sys.exit(f"Error: invalid server setting {name}: must be at least {least}, got {value}")
    return value


# The gevent-based WebSocket worker: one greenlet per connection.
worker_class = "wsgi_ws.worker.WebSocketWorker"
bind = os.environ.get("WSGI_WS_BIND", "127.0.0.1:5000")
workers = _whole_number("WSGI_WS_WORKERS", 1, least=1)
# Connections one worker serves at once (WebSocket connections count too).
worker_connections = _whole_number("WSGI_WS_WORKER_CONNECTIONS", 1000, least=1)
# Seconds open connections get to finish on shutdown or reload.
graceful_timeout = _whole_number("WSGI_WS_GRACEFUL_TIMEOUT", 30, least=0)
# gunicorn 27 opens a control socket at one shared path; give each server its own or none.
control_socket_disable = os.environ.get("WSGI_WS_CONTROL_SOCKET", "") == ""
if not control_socket_disable:
    control_socket = os.environ["WSGI_WS_CONTROL_SOCKET"]
# TLS (wss:// and https://) in gunicorn itself: off unless both files are given. Behind nginx, leave it off and let
# nginx terminate TLS (deploy/nginx.conf).
if os.environ.get("WSGI_WS_CERTFILE") or os.environ.get("WSGI_WS_KEYFILE"):
    certfile = os.environ.get("WSGI_WS_CERTFILE")
    keyfile = os.environ.get("WSGI_WS_KEYFILE")
    if not (certfile and keyfile and os.path.isfile(certfile) and os.path.isfile(keyfile)):
        sys.exit("Error: TLS needs both WSGI_WS_CERTFILE and WSGI_WS_KEYFILE naming readable files")
accesslog = os.environ.get("WSGI_WS_ACCESS_LOG", "-")
if accesslog == os.devnull:  # off: gunicorn then formats no access line per request (none would be kept anyway)
    accesslog = None
loglevel = os.environ.get("WSGI_WS_LOG_LEVEL", "info")


# Prometheus metrics summed over the workers (/metrics, /stats): prometheus_client's multiprocess mode in a folder of
# this server's own (PROMETHEUS_MULTIPROC_DIR, else a temporary one); dead workers are marked in child_exit.
try:
    metrics_dir = wsgi_ws.prometheus.prepare_directory()
except OSError as error:
    sys.exit(f"Error: invalid setting PROMETHEUS_MULTIPROC_DIR: cannot make the folder ({error})")
child_exit = wsgi_ws.prometheus.child_exit
on_exit = wsgi_ws.prometheus.on_exit


def on_starting(server: Any) -> None:
    """Before gunicorn spends 5 s retrying a busy port: stop at once, saying which setting moves it (first start only;
    a re-exec or systemd's sockets bring their own listeners). The addresses checked are the ones gunicorn will bind
    (``--bind`` on the command line wins over ``bind`` here). Empties the metrics folder of a previous run's files."""
    wsgi_ws.prometheus.on_starting(server)
    if "GUNICORN_PID" in os.environ or "LISTEN_FDS" in os.environ:
        return
    for address in server.cfg.bind:
        host, colon, port = address.strip().rpartition(":")
        if not colon or not port.isdigit() or address.startswith(("unix:", "fd://")):
            continue
        host = host.strip("[]")
        probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                hint = "stop it, or serve elsewhere with WSGI_WS_BIND=127.0.0.1:5001"
                sys.exit(f"Error: {address} is already in use (another server?): {hint}")
        finally:
            probe.close()


# WebSocket options. The sample changes none: configure() only checks the WS_* environment variables, so a bad value
# stops start-up with a message naming it. Pass any of these to change it, for example
# wsgi_ws.configure(max_message_size="16MiB"); WS_<NAME> environment variables win over what is passed here.
# The defaults (tests/test_gunicorn_conf.py keeps this list equal to wsgi_ws.WebSocketOptions):
#   allowed_origins = ('same-origin',)          origins allowed to connect: the page's own, listed ones ("https://*.example.com"), '*' = all
#   require_origin = False                      True: refuse clients that send no Origin header
#   keep_alive_interval = 120.0                 seconds of silence before the server pings; None = off
#   keep_alive_timeout = None                   seconds to wait for the pong; None = wait forever
#   receive_buffer_size = 4096                  bytes per partial read
#   max_message_size = 1048576                  bytes (1 MiB); larger messages close the connection with 1009
#   max_frame_size = None                       bytes; None = same as max_message_size
#   close_timeout = 5.0                         seconds close() waits for the peer's close frame
#   max_messages_per_second = None              messages/s a connection may send (a bucket of one second's worth); over it 1008
#   max_bytes_per_second = None                 bytes/s of messages a connection may send; over it 1008
#   send_timeout = 60.0                         seconds a send may wait for a client that reads nothing; then TCP is cut (1006)
#   max_connections_per_ip = None               open WebSockets per client IP (across workers with hub_url); over it 429
#   max_connection_rate_per_ip = None           new WebSockets per second per client IP (a bucket of one second's worth); over it 429
#   handshake_timeout = 10.0                    seconds a client has to send its upgrade request (per server)
#   subprotocols = ()                           subprotocols accepted, in order of preference
#   compression = False                         permessage-deflate when the client offers it (costs memory per connection)
#   compression_level = 6                       zlib level 0-9
#   compression_window_bits = 12                LZ77 window 9-15 bits, both directions
#   compression_memory_level = 5                zlib memLevel 1-9
#   compression_no_context_takeover = False     True: reset the context after each message
#   hub_url = None                              broadcast hub: "redis://127.0.0.1:6379/0" spans workers and machines (per server)
#   hub_cluster = None                          True: hub_url is a Redis Cluster node (sharded pub/sub); None = ask the server (per server)
#   hub_queue_limit = 1000                      messages a hub member may fall behind (its socket full) before hub_overflow applies
#   hub_queue_bytes = 1048576                   bytes (1 MiB) of messages a hub member may fall behind before hub_overflow applies
#   hub_overflow = 'close'                      over either bound: 'close' with 1013, 'drop-oldest', or keep only the 'latest'
#   hub_history_size = 0                        messages each group keeps for clients that resume; 0 = off (per server)
#   hub_history_ttl = 300.0                     seconds a group's history is kept after its last publish (per server)
#   hub_presence_heartbeat = 10.0               seconds between presence heartbeats; dead workers vanish within 2x (per server)
# A route can set its own (@sockets.route("/upload", max_message_size="64MiB")), except the per-server ones.
try:
    websocket_options = wsgi_ws.configure()
except wsgi_ws.InvalidOption as error:
    sys.exit(f"Error: {error}")
