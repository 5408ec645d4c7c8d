"""The local web server behind the live view and the runs browser: the standard library's
``http.server`` (one thread per connection) with server-sent events.

Security (issue 22): it binds 127.0.0.1 unless another address is given; every request whose
``Host`` is not ``127.0.0.1:PORT``/``localhost:PORT`` (or the address given) gets 403, so a web
page that rebinds its own name to 127.0.0.1 cannot read or drive it (DNS rebinding); every
request that changes something (a control, an upload) must carry the token made at start in an
``X-Cnnlab-Token`` header, compared in constant time, also on loopback (any page open in the
browser could otherwise post to it); a cross-origin ``Origin`` is refused; static files cannot
leave their folder (symlinks resolved); bodies are size-limited before they are read. A failing
request is a 4xx/5xx answer with a message, never an exception in the training process, and a
page that reads slowly or goes away never blocks the trainer (bounded queues,
:mod:`cnnlab.live.channel`).

Example:
    >>> server = LiveServer(channel=LiveChannel()).start()  # doctest: +SKIP
    >>> server.url  # open it in a browser  # doctest: +SKIP
    'http://127.0.0.1:40125/#token=...'
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.live.channel import Control, LiveChannel, Subscriber, sse_frame

if TYPE_CHECKING:
    from cnnlab.live.browse import RunBrowser

PAGE = Path(__file__).with_name("page")
TOKEN_HEADER = "X-Cnnlab-Token"
MAX_UPLOAD_BYTES = 8 << 20  # an image upload (the pixel limits are cnnlab.data.images')
MAX_CONTROL_BYTES = 4096
DRAIN_LIMIT = 64 << 20  # an oversized body up to this is read and discarded, so the 413 arrives
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies and the browser from giving up
POLL_S = 0.1  # how soon the serving thread notices close()
SOCKET_TIMEOUT_S = 30.0  # a client that neither sends nor reads for this long is dropped
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
                 ".ico": "image/x-icon"}
# The page may load only its own files and data: images, and talk only to this server.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: "
               "blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
# A run's report.html is shown sandboxed: no scripts, nothing fetched, its own inline styles.
REPORT_POLICY = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                  "Cache-Control": "no-store", "Cross-Origin-Resource-Policy": "same-origin"}


class HttpError(Exception):
    """A request refused with ``status`` and a one-line ``message`` for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def static_file(folder: Path, name: str) -> Path:
    """The file ``name`` (URL-decoded, relative) inside ``folder``; 404 when it does not exist,
    is not a regular file, or resolves (through ``..`` or a symlink) outside ``folder``."""
    root = folder.resolve()
    if not name or "\x00" in name or "\\" in name:
        raise HttpError(404, "no such file")
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HttpError(404, "no such file")
    return path


def check_bind_host(host: str) -> None:
    """A wildcard address would accept any Host name; ask for one address instead."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a host name (localhost, a machine name): bound as given
    if address.is_unspecified:
        raise ConfigError(f"--host {host} listens on every interface; give the one address to "
                          "serve on (e.g. --host 192.168.1.5), or leave --host out for 127.0.0.1")


class LiveServer:
    """The HTTP server: the live view (``channel``), the draw-a-digit ``probe``
    (``probe(image_bytes) -> payload``), and the runs browser (``runs``), each optional."""

    def __init__(self, *, channel: LiveChannel | None = None,
                 probe: Callable[[bytes], dict] | None = None, runs: RunBrowser | None = None,
                 host: str = "127.0.0.1", port: int = 0, page: Path = PAGE,
                 max_upload: int = MAX_UPLOAD_BYTES,
                 log: Callable[[str], None] = lambda line: None) -> None:
        check_bind_host(host)
        self.channel, self.probe, self.runs = channel, probe, runs
        self.page, self.max_upload, self.log = Path(page), max_upload, log
        self.token = secrets.token_urlsafe(32)
        self._streams: set[Subscriber] = set()
        self._streams_lock = threading.Lock()
        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror or error}); "
                              "choose another --port") from None
        self.httpd.daemon_threads = True
        self.httpd.app = self  # the handler's way back here
        self.host, self.port = host, self.httpd.server_address[1]
        names = {host, "127.0.0.1", "localhost"}
        self.allowed_hosts = {f"{n}:{self.port}".lower() for n in names if ":" not in n}
        self.allowed_hosts |= {f"[{n}]:{self.port}" for n in names if ":" in n}
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's address with the token (in the fragment: never sent to a server)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/#token={self.token}"

    def start(self) -> LiveServer:
        """Serve in a background thread (daemon: it never keeps a finished run alive)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="cnnlab-live",
                                        kwargs={"poll_interval": POLL_S}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``close`` (or Ctrl-C in the caller)."""
        self.httpd.serve_forever(poll_interval=POLL_S)

    def close(self) -> None:
        """Stop serving and end every open event stream."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()
        with self._streams_lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_host(self, host: str | None) -> None:
        if (host or "").strip().lower() not in self.allowed_hosts:
            raise HttpError(403, f"Host {host!r} is not this server; open {self.url.split('#')[0]}")

    def check_origin(self, origin: str | None) -> None:
        if origin is not None and origin.lower() not in {f"http://{h}" for h in self.allowed_hosts}:
            raise HttpError(403, f"requests from {origin} are not accepted")

    def check_token(self, given: str | None) -> None:
        """Constant-time comparison, so the time taken leaks nothing about the token."""
        supplied = (given or "").encode("latin-1", "replace")
        if not hmac.compare_digest(supplied, self.token.encode("ascii")):
            raise HttpError(403, "missing or wrong token: open the address printed in the "
                                 "terminal (it ends in #token=...)")

    def open_stream(self) -> Subscriber:
        if self.channel is None:
            raise HttpError(404, "no run is training in this server (cnnlab train --live)")
        stream = self.channel.subscribe()
        with self._streams_lock:
            self._streams.add(stream)
        return stream

    def close_stream(self, stream: Subscriber) -> None:
        with self._streams_lock:
            self._streams.discard(stream)
        if self.channel is not None:
            self.channel.unsubscribe(stream)


class Handler(BaseHTTPRequestHandler):
    """One request; routes below. Errors become JSON ``{"error": message}`` answers."""

    server_version = "cnnlab"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S

    @property
    def app(self) -> LiveServer:
        return self.server.app

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        pass  # quiet: the training log stays readable; errors go to app.log

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.dispatch(GET_ROUTES)

    def do_POST(self) -> None:  # noqa: N802
        self.dispatch(POST_ROUTES)

    def dispatch(self, routes: dict[str, Callable[[Handler, dict], None]]) -> None:
        self.responded = False
        try:
            self.app.check_host(self.headers.get("Host"))
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if self.command == "GET" and url.path.startswith("/static/"):
                return self.send_file(static_file(self.app.page, unquote(url.path[8:])))
            route = routes.get(url.path)
            if route is None:
                raise HttpError(404 if url.path not in ALL_PATHS else 405, "no such page")
            route(self, query)
        except HttpError as error:
            self.send_error_json(error.status, error.message)
        except CnnlabError as error:
            self.send_error_json(400, str(error))
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away or stalled mid-request
        except Exception as error:  # a bug must not reach the training process
            self.app.log(f"live server: {self.command} {self.path}: {type(error).__name__}: "
                         f"{error}")
            self.send_error_json(500, f"internal error ({type(error).__name__}); see the "
                                      "terminal")

    # -- answers -------------------------------------------------------------------------------
    def send_body(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        self.responded = True
        self.send_response(status)
        for name, value in {**COMMON_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, value: object) -> None:
        self.send_body(status, json.dumps(value, allow_nan=False).encode(), "application/json")

    def send_error_json(self, status: int, message: str) -> None:
        if not self.responded:  # else the stream is already open: just end it
            self.send_json(status, {"error": message})

    def send_file(self, path: Path) -> None:
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if content_type is None:
            raise HttpError(404, "no such file")
        headers = {"Content-Security-Policy": PAGE_POLICY} if path.suffix == ".html" else {}
        self.send_body(200, path.read_bytes(), content_type, headers)

    # -- requests ------------------------------------------------------------------------------
    def read_body(self, limit: int) -> bytes:
        """The request body, refused (411/413) before it is read when its size is unknown or
        over ``limit``; a moderately oversized one is drained so the browser sees the 413."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, "send the body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise HttpError(411, "a Content-Length header is required") from None
        if length < 0:
            raise HttpError(400, "negative Content-Length")
        if length > limit:
            self.close_connection = True
            left = length if length <= DRAIN_LIMIT else 0
            while left > 0 and (chunk := self.rfile.read(min(1 << 16, left))):
                left -= len(chunk)
            raise HttpError(413, f"the upload has {length:,} bytes, over the limit of "
                                 f"{limit:,} bytes; send a smaller image")
        body = self.rfile.read(length)
        if len(body) < length:
            raise HttpError(400, "the request body ended early")
        return body

    def changing(self) -> None:
        """Checks every state-changing request passes: same origin, right token."""
        self.app.check_origin(self.headers.get("Origin"))
        self.app.check_token(self.headers.get(TOKEN_HEADER))

    def index(self, query: dict) -> None:
        self.send_file(static_file(self.app.page, "index.html"))

    def info(self, query: dict) -> None:
        app = self.app
        self.send_json(200, {"live": app.channel is not None, "probe": app.probe is not None,
                             "runs": app.runs is not None, "upload_limit": app.max_upload})

    def events(self, query: dict) -> None:
        stream = self.app.open_stream()
        try:
            self.responded = True
            self.send_response(200)
            for name, value in COMMON_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n")
            self.pump(stream)
        finally:
            self.app.close_stream(stream)

    def pump(self, stream: Subscriber) -> None:
        """Write queued frames until the stream closes; tells the page how many were dropped."""
        reported = 0
        while (frames := stream.take(KEEPALIVE_S)) is not None:
            if stream.dropped != reported:
                reported = stream.dropped
                frames.append(sse_frame("dropped", json.dumps({"dropped": reported})))
            self.wfile.write(b"".join(frames) or b": keep-alive\n\n")
        self.close_connection = True

    def control(self, query: dict) -> None:
        self.changing()
        if self.app.channel is None:
            raise HttpError(404, "no run is training in this server")
        try:
            body = json.loads(self.read_body(MAX_CONTROL_BYTES) or b"null")
        except (ValueError, RecursionError):
            raise HttpError(400, "a control must be JSON, like {\"action\": \"pause\"}") from None
        control = Control.from_request(body)
        self.app.channel.request(control)
        self.send_json(202, {"queued": control.to_dict()})

    def probe(self, query: dict) -> None:
        self.changing()
        run = query.get("run")
        if run is None and self.app.probe is None:
            raise HttpError(404, "this server has no network to probe")
        if run is not None and self.app.runs is None:
            raise HttpError(404, "this server browses no runs folder")
        data = self.read_body(self.app.max_upload)
        if not data:
            raise HttpError(400, "empty upload: send an image file")
        payload = self.app.probe(data) if run is None else self.app.runs.probe(run, data)
        self.send_json(200, payload)

    def runs_route(self, query: dict) -> None:
        self.send_json(200, self.browser().table())

    def curves(self, query: dict) -> None:
        self.send_json(200, self.browser().curves(self.run_id(query)))

    def play(self, query: dict) -> None:
        self.send_json(200, self.browser().play(self.run_id(query)))

    def report(self, query: dict) -> None:
        body = self.browser().report(self.run_id(query))
        self.send_body(200, body, CONTENT_TYPES[".html"],
                       {"Content-Security-Policy": REPORT_POLICY})

    def browser(self) -> RunBrowser:
        if self.app.runs is None:
            raise HttpError(404, "this server browses no runs folder (cnnlab serve RUNS_DIR)")
        return self.app.runs

    @staticmethod
    def run_id(query: dict) -> str:
        if not query.get("run"):
            raise HttpError(400, "name a run: ?run=NAME")
        return query["run"]


GET_ROUTES = {"/": Handler.index, "/index.html": Handler.index, "/api/info": Handler.info,
              "/events": Handler.events, "/api/runs": Handler.runs_route,
              "/api/curves": Handler.curves, "/api/play": Handler.play, "/report": Handler.report}
POST_ROUTES = {"/api/control": Handler.control, "/api/probe": Handler.probe}
ALL_PATHS = set(GET_ROUTES) | set(POST_ROUTES)
