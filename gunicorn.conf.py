"""gunicorn settings for the wsgi-ws sample: `gunicorn -c gunicorn.conf.py app:app`.

Every setting can be overridden by an environment variable: WSGI_WS_BIND / WSGI_WS_WORKERS / ... for the server,
WS_<OPTION> (for example WS_MAX_MESSAGE_SIZE=16MiB) for the WebSocket options below.
A bad value stops start-up with a message that names the setting.
"""

import os
import sys
from typing import Any

import wsgi_ws
import wsgi_ws.prometheus
from wsgi_ws import server_settings

# The server's settings and their defaults live in wsgi_ws/server_settings.py (python -m wsgi_ws serve uses them too);
# each is read from WSGI_WS_<NAME>, and any other WSGI_WS_* variable is a typo that stops start-up.
try:
    _server = server_settings.from_environment(os.environ)
except server_settings.InvalidServerSetting as error:
    sys.exit(f"Error: {error}")

# The gevent-based WebSocket worker: one greenlet per connection.
worker_class = server_settings.WORKER_CLASS
bind = list(_server.bind)  # WSGI_WS_BIND
workers = _server.workers  # WSGI_WS_WORKERS
# Connections one worker serves at once (WebSocket connections count too). WSGI_WS_WORKER_CONNECTIONS
worker_connections = _server.worker_connections
# Seconds open connections get to finish on shutdown or reload. WSGI_WS_GRACEFUL_TIMEOUT
graceful_timeout = _server.graceful_timeout
# gunicorn 27 opens a control socket at one shared path; give each server its own (WSGI_WS_CONTROL_SOCKET) or none.
control_socket_disable = _server.control_socket is None
if _server.control_socket is not None:
    control_socket = _server.control_socket
# TLS (wss:// and https://) in gunicorn itself: off unless both files are given (WSGI_WS_CERTFILE, WSGI_WS_KEYFILE).
# Behind nginx, leave it off and let nginx terminate TLS (deploy/nginx.conf).
if _server.certfile is not None:
    certfile = _server.certfile
    keyfile = _server.keyfile
accesslog = _server.access_log  # WSGI_WS_ACCESS_LOG: "-" is stdout, /dev/null turns it off
loglevel = _server.log_level  # WSGI_WS_LOG_LEVEL


# Prometheus metrics summed over the workers (/metrics, /stats): prometheus_client's multiprocess mode in a folder of
# this server's own (PROMETHEUS_MULTIPROC_DIR, else a temporary one); dead workers are marked in child_exit.
try:
    metrics_dir = wsgi_ws.prometheus.prepare_directory()
except server_settings.InvalidServerSetting as error:
    sys.exit(f"Error: {error}")
child_exit = wsgi_ws.prometheus.child_exit
on_exit = wsgi_ws.prometheus.on_exit


def on_starting(server: Any) -> None:
    """Before gunicorn spends 5 s retrying a busy port: stop at once, saying which setting moves it (first start only;
    a re-exec or systemd's sockets bring their own listeners). The addresses checked are the ones gunicorn will bind
    (``--bind`` on the command line wins over ``bind`` here). Empties the metrics folder of a previous run's files."""
    wsgi_ws.prometheus.on_starting(server)
    busy = server_settings.busy_address(server.cfg.bind, os.environ)
    if busy is not None:
        sys.exit(f"Error: {server_settings.busy_message(busy, 'WSGI_WS_BIND=')}")


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
