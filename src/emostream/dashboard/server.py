"""The dashboard's HTTP side: static page, JSON API, server-sent events, /metrics, /healthz.

Standard library only (``ThreadingHTTPServer``): one thread per connection is plenty for a
handful of browsers on a local dashboard, and it keeps the dashboard in the default install.
Each event-stream connection sends one ``snapshot`` and then, at most every ``throttle_s``,
one ``delta`` with what changed (see :meth:`DashboardState.delta`), so the bytes per second
sent to a browser do not grow with the event rate.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from emostream.dashboard import metrics
from emostream.dashboard.aggregation import DashboardState

log = logging.getLogger(__name__)

_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
# Nothing but our own files may run or load: a text that slipped into the DOM as HTML still could not execute.
_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'"


class DashboardServer:
    """Serves one :class:`DashboardState` over HTTP in a background thread."""

    def __init__(
        self,
        state: DashboardState,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        throttle_s: float = 0.2,
        heartbeat_s: float = 15.0,
        health: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.state = state
        self.throttle_s = throttle_s
        self.heartbeat_s = heartbeat_s
        self.stopping = threading.Event()
        self._health = health or (lambda: {})
        self._clients = 0
        self._clients_lock = threading.Lock()
        self.registry = metrics.registry_for(state, lambda: self.stream_clients)
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the page is, e.g. ``http://127.0.0.1:8765/``."""
        host, port = self._httpd.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{port}/"

    @property
    def stream_clients(self) -> int:
        """Browsers connected to the event stream right now."""
        with self._clients_lock:
            return self._clients

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="dashboard-http", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, end every event stream, close the socket."""
        self.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self.stream_clients and time.monotonic() < deadline:
            time.sleep(0.05)
        self._httpd.server_close()

    def health(self) -> dict[str, Any]:
        """``/healthz`` body: ok unless a component says otherwise."""
        body = {"ok": True, "stream_clients": self.stream_clients, "seq": self.state.seq}
        body.update(self._health())
        return body

    def track_stream(self, delta: int) -> None:
        """Count an event stream opening (+1) or closing (-1)."""
        with self._clients_lock:
            self._clients += delta


def _handler_for(server: DashboardServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        dashboard = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    dashboard: DashboardServer
    server_version = "emostream-dashboard"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        state = self.dashboard.state
        try:
            if url.path in _STATIC:
                self._static(*_STATIC[url.path])
            elif url.path == "/api/stream":
                self._stream()
            elif url.path == "/api/devices":
                self._json(state.devices(timeline=query.get("timeline") in ("1", "true")))
            elif url.path == "/api/events":
                limit = _int(query.get("limit"))
                if limit is None and "limit" in query:
                    self._json({"error": "limit must be a positive integer"}, 400)
                else:
                    self._json(state.events(query.get("device"), limit))
            elif url.path == "/api/summary":
                self._json(state.summary())
            elif url.path == "/metrics":
                self._send(200, metrics.CONTENT_TYPE, metrics.render(self.dashboard.registry))
            elif url.path == "/healthz":
                body = self.dashboard.health()
                self._json(body, 200 if body.get("ok") else 503)
            else:
                self._json({"error": f"no such page: {url.path}"}, 404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away

    def _static(self, name: str, ctype: str) -> None:
        try:
            body = resources.files("emostream.dashboard").joinpath("static", name).read_bytes()
        except FileNotFoundError:
            msg = (f"the dashboard's page file static/{name} is missing from this install; "
                   "the package data 'emostream/dashboard/static/*' must be installed with it")
            log.error(msg)
            self._send(500, "text/plain; charset=utf-8", msg.encode())
            return
        self._send(200, ctype, body)

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj: Any, code: int = 200) -> None:
        self._send(code, "application/json; charset=utf-8", _dumps(obj))

    def _stream(self) -> None:
        d = self.dashboard
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        d.track_stream(1)
        try:
            snap = d.state.snapshot()
            seq = snap["seq"]
            self._event("snapshot", snap, retry_ms=2000)
            last_write = time.monotonic()
            while not d.stopping.is_set():
                current = d.state.wait_for_change(seq, timeout=0.5)
                if d.stopping.is_set():
                    break
                if current > seq:
                    delta = d.state.delta(seq)
                    seq = delta["seq"]
                    self._event("delta", delta)
                    last_write = time.monotonic()
                    d.stopping.wait(d.throttle_s)  # batch whatever arrives meanwhile into the next delta
                elif time.monotonic() - last_write > d.heartbeat_s:
                    self.wfile.write(b": ping\n\n")  # finds a closed connection; keeps proxies from timing out
                    self.wfile.flush()
                    last_write = time.monotonic()
        finally:
            d.track_stream(-1)

    def _event(self, name: str, obj: Any, retry_ms: int | None = None) -> None:
        head = f"retry: {retry_ms}\n" if retry_ms else ""
        # JSON without indent has no raw line breaks, so the payload is exactly one data: line.
        self.wfile.write(f"{head}event: {name}\ndata: ".encode() + _dumps(obj) + b"\n\n")
        self.wfile.flush()


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _int(value: str | None) -> int | None:
    try:
        n = int(value) if value is not None else None
    except ValueError:
        return None
    return n if n is not None and n > 0 else None
