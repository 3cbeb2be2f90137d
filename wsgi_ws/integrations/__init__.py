"""The server integrations: where a WSGI server meets the connection layer.

- :mod:`.wsgi`: per request, ordinary HTTP, a refused upgrade, or a WebSocket (server independent)
- :mod:`.handler`: the one place that runs a WebSocket application and owns the connection's end
- :mod:`.worker`: the gunicorn worker (gevent pywsgi), also at ``wsgi_ws.worker``
- :mod:`.middleware`: ``WebSocketMiddleware`` for gunicorn gthread and ``flask run``, also at ``wsgi_ws.middleware``
- :mod:`.flask_ext`: ``WebSockets(app)`` and ``@sockets.route``, also at ``wsgi_ws.flask_ext``

Nothing is imported here, so that importing one integration does not import the others (Flask, gunicorn).
"""
