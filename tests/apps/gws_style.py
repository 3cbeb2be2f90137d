"""A plain WSGI app written for gevent-websocket's API, unchanged: it must run on wsgi-ws's worker."""

from geventwebsocket.exceptions import WebSocketError


def app(environ, start_response):  # type: ignore[no-untyped-def]  # gevent-websocket era code, untyped
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"Expected a WebSocket request"]
    while not ws.closed:
        message = ws.receive()
        if message is None:
            break
        if message == "close-please":
            ws.close(4321, b"as asked")
            break
        try:
            ws.send(message, binary=isinstance(message, bytes))
        except WebSocketError:
            break
    return []
