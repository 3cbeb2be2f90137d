/*
 * wsgi-ws.js: a browser client for wsgi-ws recoverable feeds (/feed/<group>), no dependencies, no build step.
 *
 *   <script src="/static/wsgi-ws.js"></script>
 *   <script>
 *     const feed = new WsgiWs.Feed("/feed/lobby", {
 *       onMessage(data, position) { ... },                    // every group message, once, in order
 *       onJoined({ recovered, missed, position, resumed, live }) { ... },
 *       onState(state, info) { ... },                         // "connecting" | "open" | "reconnecting" | "closed"
 *       minDelay: 250, maxDelay: 10000,                       // reconnect back-off bounds, milliseconds
 *     });
 *     feed.send("hello");                                     // published to the group, the sender included
 *     feed.close();
 *   </script>
 *
 * new WsgiWs.Feed(url, options)
 *   url: "ws://…", "wss://…", or a path or http(s) URL resolved against the page ("/feed/lobby" becomes
 *   ws(s)://<this host>/feed/lobby). Connects at once.
 *   options (all optional):
 *     onMessage(data, position)  a message of the group: data is the text, position the server's opaque string.
 *                                Replayed messages come first after a reconnect, then live ones.
 *     onJoined(info)             the server's "joined" frame: at every (re)connect, and mid-stream when the server
 *                                noticed that this connection lost messages. info = {recovered, missed, position,
 *                                resumed, live}: recovered is false when messages since the last position could not
 *                                all be replayed (the app may reload its state); missed is how many were replayed;
 *                                position the server's position at the join ("" when nothing was published yet);
 *                                resumed is true when this connection asked to resume (?since=…), false on a fresh
 *                                start (whose recovered flag means nothing); live is true for a mid-stream frame.
 *     onState(state, info)       "connecting" (first attempt), "open" (joined: the feed is live), "reconnecting"
 *                                (lost; info = {code, reason, delay} of the close and the wait before the next try),
 *                                "closed" (after close(); nothing more happens).
 *     minDelay, maxDelay         reconnect back-off in milliseconds (250, 10000): attempt n waits a random time in
 *                                [0, min(maxDelay, minDelay * 2^n)] ("full jitter"); reset once joined.
 *     openTimeout                milliseconds a connection may take to send its "joined" frame before it is given up
 *                                and retried (15000).
 *     dedupSize                  how many recent positions are remembered to drop a message seen twice (1000).
 *
 * feed.send(text)   publish text to the group. Sent at once when the feed is open, otherwise queued and sent, in
 *                   order, right after the next "joined". Returns true if sent now, false if queued. A message
 *                   written just before the connection breaks can be lost (there is no acknowledgement).
 *                   Throws after close().
 * feed.close()      stop for good: closes the connection (1000), cancels any reconnect, drops the queue.
 * feed.position     the last position seen (a message's, or the server's at a join with nothing to replay); null
 *                   until the first. Reconnects ask for ?since=<position>.
 * feed.state        the current state, as given to onState.
 *
 * Any close other than close() reconnects: the server's 1001 (restart, deploy), 1012, 1013, a network error, a
 * refused handshake. A message whose position was already seen is ignored (a safety net; the server sends none).
 * Binary frames and frames of unknown types are ignored. Loaded as a plain script it defines window.WsgiWs; under
 * CommonJS it is module.exports.
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module && module.exports) module.exports = api;
  else root.WsgiWs = api;
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const noop = function () {};

  function resolveUrl(url) {
    const base = typeof location !== "undefined" ? location.href : undefined;
    const resolved = new URL(url, base);
    if (resolved.protocol === "http:") resolved.protocol = "ws:";
    else if (resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved;
  }

  class Feed {
    constructor(url, options) {
      const opts = options || {};
      this._url = resolveUrl(url);
      this._onMessage = opts.onMessage || noop;
      this._onJoined = opts.onJoined || noop;
      this._onState = opts.onState || noop;
      this._minDelay = opts.minDelay != null ? Number(opts.minDelay) : 250;
      this._maxDelay = opts.maxDelay != null ? Number(opts.maxDelay) : 10000;
      this._openTimeout = opts.openTimeout != null ? Number(opts.openTimeout) : 15000;
      this._dedupSize = Math.max(1, opts.dedupSize != null ? Number(opts.dedupSize) : 1000);
      this.position = null;
      this.state = null;
      this._seen = new Set(); // insertion-ordered: the oldest is evicted first
      this._queue = [];
      this._socket = null;
      this._joined = false;
      this._resumed = false;
      this._attempt = 0;
      this._retryTimer = null;
      this._openTimer = null;
      this._closed = false;
      this._onOnline = () => {
        if (this._retryTimer !== null) this._retryNow();
      };
      if (typeof addEventListener === "function") addEventListener("online", this._onOnline);
      this._connect();
    }

    send(text) {
      if (this._closed) throw new Error("WsgiWs.Feed: send() after close()");
      const message = String(text);
      if (this._joined && this._socket && this._socket.readyState === WebSocket.OPEN) {
        this._socket.send(message);
        return true;
      }
      this._queue.push(message);
      return false;
    }

    close() {
      if (this._closed) return;
      this._closed = true;
      this._queue = [];
      this._clearTimers();
      if (typeof removeEventListener === "function") removeEventListener("online", this._onOnline);
      const socket = this._socket;
      this._socket = null;
      this._joined = false;
      if (socket) {
        socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
        try {
          socket.close(1000, "bye");
        } catch (error) {
          // already closing
        }
      }
      this._setState("closed", {});
    }

    _connect() {
      this._retryTimer = null;
      const url = new URL(this._url.href);
      const resumed = this.position !== null && this.position !== "";
      if (resumed) url.searchParams.set("since", this.position);
      if (this.state === null) this._setState("connecting", {});
      let socket;
      try {
        socket = new WebSocket(url.href);
      } catch (error) {
        this._lost({ code: 1006, reason: String(error && error.message) });
        return;
      }
      this._socket = socket;
      this._joined = false;
      this._resumed = resumed;
      this._openTimer = setTimeout(() => {
        this._openTimer = null;
        if (this._socket === socket && !this._joined) {
          try {
            socket.close(4000, "no joined frame in time");
          } catch (error) {
            // nothing to do
          }
          this._detach(socket);
          this._lost({ code: 4000, reason: "no joined frame in time" });
        }
      }, this._openTimeout);
      socket.onmessage = (event) => {
        if (this._socket === socket) this._receive(event.data);
      };
      socket.onclose = (event) => {
        if (this._socket !== socket) return;
        this._detach(socket);
        this._lost({ code: event.code, reason: event.reason });
      };
    }

    _detach(socket) {
      socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
      if (this._socket === socket) this._socket = null;
      this._joined = false;
      if (this._openTimer !== null) {
        clearTimeout(this._openTimer);
        this._openTimer = null;
      }
    }

    _receive(data) {
      if (typeof data !== "string") return;
      let frame;
      try {
        frame = JSON.parse(data);
      } catch (error) {
        return;
      }
      if (!frame || typeof frame !== "object") return;
      if (frame.type === "joined") this._handleJoined(frame);
      else if (frame.type === "message") this._handleMessage(frame);
    }

    _handleJoined(frame) {
      const live = this._joined;
      const info = {
        recovered: frame.recovered !== false,
        missed: Number(frame.missed) || 0,
        position: typeof frame.position === "string" ? frame.position : "",
        resumed: live || this._resumed,
        live: live,
      };
      // The join's position is where the stream stands now; with messages to replay, those move our position there.
      if (info.missed === 0 && info.position !== "") this.position = info.position;
      if (!live) {
        this._joined = true;
        this._attempt = 0;
        if (this._openTimer !== null) {
          clearTimeout(this._openTimer);
          this._openTimer = null;
        }
        this._setState("open", {});
      }
      this._call(this._onJoined, info);
      if (!live) this._flush();
    }

    _handleMessage(frame) {
      const position = typeof frame.position === "string" ? frame.position : "";
      if (position !== "") {
        if (this._seen.has(position)) return;
        this._seen.add(position);
        while (this._seen.size > this._dedupSize) this._seen.delete(this._seen.values().next().value);
        this.position = position;
      }
      this._call(this._onMessage, typeof frame.data === "string" ? frame.data : String(frame.data), position);
    }

    _flush() {
      while (this._queue.length && this._joined && this._socket && this._socket.readyState === WebSocket.OPEN) {
        this._socket.send(this._queue.shift());
      }
    }

    _lost(close) {
      if (this._closed) return;
      const ceiling = Math.min(this._maxDelay, this._minDelay * Math.pow(2, this._attempt));
      const delay = Math.floor(Math.random() * ceiling);
      this._attempt = Math.min(this._attempt + 1, 30);
      this._setState("reconnecting", { code: close.code, reason: close.reason || "", delay: delay });
      this._retryTimer = setTimeout(() => this._connect(), delay);
    }

    _retryNow() {
      clearTimeout(this._retryTimer);
      this._connect();
    }

    _clearTimers() {
      if (this._retryTimer !== null) clearTimeout(this._retryTimer);
      if (this._openTimer !== null) clearTimeout(this._openTimer);
      this._retryTimer = this._openTimer = null;
    }

    _setState(state, info) {
      const changed = state !== this.state;
      this.state = state;
      if (changed || state === "reconnecting") this._call(this._onState, state, info);
    }

    _call(callback) {
      try {
        callback.apply(this, Array.prototype.slice.call(arguments, 1));
      } catch (error) {
        setTimeout(() => {
          throw error;
        }, 0); // reported like any uncaught error, without breaking the feed
      }
    }
  }

  return { Feed: Feed };
});
