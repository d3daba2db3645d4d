"""An HTTP endpoint with the contract of Go's `net/http/pprof`: captures of every tracked store, on demand.

    from wasmtime_gp import endpoint, live

    live.track(store, [module], labels={"tenant": "acme"})   # each store, once, where it is made
    server = endpoint.serve(6060)                             # standalone: 127.0.0.1:6060, a daemon thread
    ...
    server.close()

    app = endpoint.wsgi_app(token="...")    # or mount it in a WSGI server (gunicorn, ...)
    app = endpoint.asgi_app(token="...")    # or in an ASGI server (uvicorn, hypercorn, ...)

`GET /debug/pprof/profile?seconds=N` runs `live.capture(N)` (default 30 s, as in Go) and answers the gzipped
pprof (needs the `pprof` extra: protobuf), so that `go tool pprof http://HOST:PORT/debug/pprof/profile?seconds=5`,
Parca and Grafana Alloy's `pyroscope.scrape` read it as they read a Go program's. `?format=firefox`, or the path
`/debug/pprof/firefox`, answers the Firefox Profiler JSON instead. `/debug/pprof/` lists both.

One `Endpoint` maps (method, path, query, headers) to a `Response`; `serve`, `Endpoint.wsgi` and
`Endpoint.asgi` only adapt the I/O. The answers:

| status | when |
|---|---|
| 200 | the profile; a capture in which no tracked store ran wasm is an empty but valid pprof (no sample), as Go answers for an idle program, so that scrapers and `go tool pprof` go on |
| 204 | `format=firefox` and no sample: a Firefox profile needs a thread to show |
| 400 | `seconds` not a number, not above 0, or above `max_seconds` (300 by default); an unknown `format`; a parameter given twice |
| 401 | a token is set and the request has no `Authorization: Bearer TOKEN` with it |
| 404, 405 | another path; a method other than GET |
| 429 | a capture is already running in this process (`live` runs one at a time) |
| 500 | the pprof format without protobuf (said before any capture), or an unexpected error (logged with its traceback on the `wasmtime_gp.endpoint` logger) |

Every answer other than a profile is one line of text (`text/plain`, with Go's `X-Go-Pprof: 1` header, so that
`go tool pprof` prints it). A client that goes away during a capture stops nothing: the capture completes and
writing the answer fails quietly. Captures cover the tracked stores of this process only: in a pre-fork server
(gunicorn with several workers) each worker has its own stores and a request reaches one of them.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import http
import http.server
import ipaddress
import logging
import re
import socket
import threading
import urllib.parse
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Union

from wasmtime_gp import _checks, live
from wasmtime_gp._errors import GuestProfilerError, ProfilerStateError, ProfilerTypeError, ProfilerValueError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PROFILE_PATH = "/debug/pprof/profile"
FIREFOX_PATH = "/debug/pprof/firefox"
INDEX_PATH = "/debug/pprof/"
DEFAULT_SECONDS = 30.0  # as Go's /debug/pprof/profile
DEFAULT_MAX_SECONDS = 300.0
FORMATS = ("pprof", "firefox")
SAMPLE_COUNT_HEADER = "X-Wasmtime-Gp-Sample-Count"
READ_TIMEOUT = (
    30.0  # seconds the standalone server waits for a request's line and headers: no idle thread forever
)

_log = logging.getLogger(__name__)
_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750's b64token
_PLAIN = (
    ("Content-Type", "text/plain; charset=utf-8"),
    ("X-Go-Pprof", "1"),  # Go's error answers carry it: `go tool pprof` then prints the body
)
_COMMON = (("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"))

Headers = Union[Mapping[str, str], Iterable[tuple[str, str]]]
ASGIScope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[MutableMapping[str, Any]]]
ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Response:
    """What the endpoint answers: the status, the headers (Content-Length included) and the body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def status_line(self) -> str:
        """The status and its reason, as WSGI's start_response takes it: "200 OK"."""
        return f"{self.status} {http.HTTPStatus(self.status).phrase}"


def _answer(status: int, body: bytes, headers: Iterable[tuple[str, str]]) -> Response:
    return Response(status, (*headers, *_COMMON, ("Content-Length", str(len(body)))), body)


def _text(status: int, message: str, *headers: tuple[str, str]) -> Response:
    """A one-line text answer (newlines in `message` become spaces)."""
    line = " ".join(message.split())
    return _answer(status, (line + "\n").encode("utf-8"), (*_PLAIN, *headers))


def _shown(value: str) -> str:
    """A client's value, quoted and cut short, to echo in a one-line message."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


class _BadRequest(Exception):
    pass


class Endpoint:
    """The pprof endpoint of this process's tracked stores (`wasmtime_gp.live`), independent of any server.

    `token`: if set, every request needs the header `Authorization: Bearer TOKEN` (RFC 6750 characters; compared
    in constant time). `max_seconds`: the longest capture a request may ask for (at most
    `live.MAX_CAPTURE_SECONDS`); the default length, 30 s as in Go, is cut to it.
    `respond()` answers one request; `wsgi` is a WSGI application and `asgi` an ASGI one.
    """

    def __init__(self, *, token: str | None = None, max_seconds: float = DEFAULT_MAX_SECONDS) -> None:
        if token is not None:
            if not isinstance(token, str):
                raise ProfilerTypeError(f"token must be a str or None, not {type(token).__name__}")
            if not _TOKEN.fullmatch(token):
                raise ProfilerValueError(
                    "token must be a bearer token: letters, digits and -._~+/ (then any '='), at least one"
                )
        self.token = token
        self.max_seconds = _checks.seconds(max_seconds, "max_seconds", 0.0, live.MAX_CAPTURE_SECONDS)
        self.default_seconds = min(DEFAULT_SECONDS, self.max_seconds)
        self._expected = None if token is None else f"Bearer {token}".encode("ascii")

    # The core: (method, path, query, headers) -> Response.

    def respond(self, method: str, path: str, query: str, headers: Headers = ()) -> Response:
        """Answer one request. `path` is relative to where the endpoint is mounted (WSGI's PATH_INFO),
        percent-decoded; `query` is the raw query string; `headers` a mapping or (name, value) pairs, names in
        any case. Blocks for the capture's length; never raises."""
        try:
            return self._respond(method, path, query, headers)
        except Exception as exc:  # noqa: BLE001 - an answer, never a traceback to the client: logged instead
            _log.exception("wasmtime-gp endpoint: %s %s failed", method, path)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return _text(500, f"internal error: {type(exc).__name__}{': ' + first if first else ''}")

    def _respond(self, method: str, path: str, query: str, headers: Headers) -> Response:
        if self._expected is not None and not self._authorized(headers):
            return _text(
                401,
                "unauthorized: send the header Authorization: Bearer TOKEN",
                ("WWW-Authenticate", "Bearer"),
            )
        if path in (INDEX_PATH, INDEX_PATH.rstrip("/")):
            kind = "index"
        elif path == PROFILE_PATH:
            kind = "pprof"
        elif path == FIREFOX_PATH:
            kind = "firefox"
        else:
            return _text(
                404, f"not found: {_shown(path)}; the profiles are at {PROFILE_PATH} and {FIREFOX_PATH}"
            )
        if method != "GET":
            return _text(405, f"method not allowed: {_shown(method)}; only GET", ("Allow", "GET"))
        if kind == "index":
            return self._index()
        try:
            seconds, kind = self._parameters(query, kind)
        except _BadRequest as exc:
            return _text(400, f"bad request: {exc}")
        if kind == "pprof":
            try:
                from wasmtime_gp.exports.pprof import _profile_class

                _profile_class()  # before the capture: a client should not wait `seconds` to learn this
            except GuestProfilerError:
                return _text(
                    500, "the pprof format needs the protobuf library: pip install 'wasmtime-gp[pprof]'"
                )
        try:
            capture = live.capture(seconds)
        except ProfilerStateError:
            return _text(
                429, "a capture is already running in this process (one at a time): try again when it ends"
            )
        count = (SAMPLE_COUNT_HEADER, str(capture.sample_count))
        if kind == "firefox":
            if not capture.stores:
                return Response(204, (*_COMMON, count), b"")
            return _answer(
                200,
                capture.firefox(),
                (
                    ("Content-Type", "application/json"),
                    ("Content-Disposition", 'attachment; filename="profile.json"'),
                    count,
                ),
            )
        body = capture.pprof() if capture.stores else empty_pprof(capture.started, capture.ended)
        return _answer(
            200,
            body,
            (
                ("Content-Type", "application/octet-stream"),
                ("Content-Disposition", 'attachment; filename="profile"'),
                count,
            ),
        )

    def _authorized(self, headers: Headers) -> bool:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        given = [value for name, value in pairs if name.lower() == "authorization"]
        if len(given) != 1 or self._expected is None:
            return False
        scheme, _, credentials = given[0].strip().partition(" ")
        # The scheme is case-insensitive (RFC 7235); the token is compared whole, in constant time.
        presented = (
            f"Bearer {credentials.strip()}".encode("latin-1", "replace")
            if scheme.lower() == "bearer"
            else b""
        )
        return hmac.compare_digest(presented, self._expected)

    def _parameters(self, query: str, kind: str) -> tuple[float, str]:
        try:
            values = urllib.parse.parse_qs(
                query, keep_blank_values=True, strict_parsing=False, max_num_fields=100
            )
        except ValueError as exc:  # more than max_num_fields
            raise _BadRequest(str(exc)) from None
        for name in ("seconds", "format"):
            if len(values.get(name, ())) > 1:
                raise _BadRequest(f"{name} is given {len(values[name])} times")
        seconds = self.default_seconds
        if "seconds" in values:
            text = values["seconds"][0]
            if not _NUMBER.fullmatch(text) or not 0 < float(text) <= self.max_seconds:
                raise _BadRequest(
                    f"seconds must be a number above 0 and at most {self.max_seconds:g}, not {_shown(text)}"
                )
            seconds = float(text)
        if "format" in values:
            kind = values["format"][0]
            if kind not in FORMATS:
                raise _BadRequest(f"format must be one of {', '.join(FORMATS)}, not {_shown(kind)}")
        return seconds, kind

    def _index(self) -> Response:
        lines = [
            "wasmtime-gp: captures of this process's tracked wasm stores (wasmtime_gp.live)",
            f"{PROFILE_PATH}?seconds=N  gzipped pprof (go tool pprof, Parca, Grafana Alloy)",
            f"  N: above 0, at most {self.max_seconds:g}; default {self.default_seconds:g}",
            f"{FIREFOX_PATH}?seconds=N  Firefox Profiler JSON (also {PROFILE_PATH}?format=firefox)",
            f"tracked stores: {live.tracked_count()}; a capture is running: {'yes' if live.capturing() else 'no'}",
        ]
        return _answer(200, ("\n".join(lines) + "\n").encode("utf-8"), _PLAIN[:1])

    # WSGI and ASGI: only the I/O.

    def wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """A WSGI application: serves PATH_INFO below wherever it is mounted (SCRIPT_NAME)."""
        headers = (
            [("Authorization", environ["HTTP_AUTHORIZATION"])] if "HTTP_AUTHORIZATION" in environ else []
        )
        response = self.respond(
            environ.get("REQUEST_METHOD", "GET"),
            environ.get("PATH_INFO", "") or "/",
            environ.get("QUERY_STRING", ""),
            headers,
        )
        start_response(response.status_line, list(response.headers))
        return [response.body]

    async def asgi(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        """An ASGI 3 application: `http` (the capture runs in a worker thread, not on the event loop), and
        `lifespan`; a `websocket` connection is refused."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            raise ProfilerValueError(f"the endpoint serves http, not {scope['type']!r}")
        path = scope["path"]
        root = scope.get("root_path", "")
        # ASGI's path includes root_path (the spec's WSGI mapping); some servers leave it out.
        if root and (path == root or path.startswith(root.rstrip("/") + "/")):
            path = path[len(root.rstrip("/")) :] or "/"
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in scope.get("headers", ())
        ]
        response = await asyncio.get_running_loop().run_in_executor(
            None,
            self.respond,
            scope.get("method", "GET"),
            path,
            scope.get("query_string", b"").decode("latin-1"),
            headers,
        )
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        (name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in response.headers
                    ],
                }
            )
            await send({"type": "http.response.body", "body": response.body})
        except OSError:  # the client went away meanwhile (uvicorn's ClientDisconnected is an OSError)
            pass


def empty_pprof(started: float, ended: float) -> bytes:
    """A valid gzipped pprof without samples, of the same sample types as a capture's (what a capture in which
    no store ran answers: scrapers record an idle period rather than a failed scrape)."""
    from wasmtime_gp.exports.pprof import _profile_class

    message = _profile_class()()
    message.string_table.extend(["", "samples", "count", "cpu", "nanoseconds"])
    message.sample_type.add(type=1, unit=2)
    message.sample_type.add(type=3, unit=4)
    message.period_type.type = 3
    message.period_type.unit = 4
    message.period = round(live.DEFAULT_INTERVAL * 1e9)
    message.time_nanos = round(started * 1e9)
    message.duration_nanos = max(0, round((ended - started) * 1e9))
    return gzip.compress(message.SerializeToString(), mtime=0)


def wsgi_app(
    *, token: str | None = None, max_seconds: float = DEFAULT_MAX_SECONDS
) -> Callable[..., Iterable[bytes]]:
    """A WSGI application serving the endpoint (`Endpoint(...).wsgi`)."""
    return Endpoint(token=token, max_seconds=max_seconds).wsgi


def asgi_app(
    *, token: str | None = None, max_seconds: float = DEFAULT_MAX_SECONDS
) -> Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]:
    """An ASGI application serving the endpoint (`Endpoint(...).asgi`)."""
    return Endpoint(token=token, max_seconds=max_seconds).asgi


class _Handler(http.server.BaseHTTPRequestHandler):
    endpoint: Endpoint
    timeout = READ_TIMEOUT  # each read and write of the connection: a silent client frees its thread
    server_version = "wasmtime-gp"

    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        response = self.endpoint.respond(
            self.command, urllib.parse.unquote(url.path, "latin-1"), url.query, self.headers.items()
        )
        try:
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError as exc:  # the client went away during the capture: nobody to tell
            _log.debug("wasmtime-gp endpoint: the client went away before its answer: %r", exc)
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("wasmtime-gp endpoint: a connection from %s failed", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class EndpointServer:
    """A running standalone endpoint (see `serve`): `host`, `port`, `url` (http://HOST:PORT), `close()`."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host: str = server.server_address[0]  # type: ignore[assignment]
        self.port: int = server.server_address[1]
        self.url = f"http://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}"
        self._closed = False

    @property
    def profile_url(self) -> str:
        """The pprof address (add ?seconds=N)."""
        return self.url + PROFILE_PATH

    def close(self, timeout: float = 5.0) -> bool:
        """Stop accepting requests and free the port; wait at most `timeout` seconds for the accepting thread.
        Captures already running finish on their own threads and still answer. Returns whether it stopped in
        time; idempotent."""
        if self._closed:
            return not self._thread.is_alive()
        self._closed = True
        stopper = threading.Thread(
            target=self._server.shutdown, name="wasmtime-gp endpoint shutdown", daemon=True
        )
        stopper.start()
        stopper.join(timeout)
        self._thread.join(max(0.0, timeout) if stopper.is_alive() else None)
        if self._thread.is_alive():
            return (
                False  # the listening socket stays open: closing it under a running select would fail there
            )
        self._server.server_close()
        return True

    def __enter__(self) -> EndpointServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EndpointServer {self.url}{' closed' if self._closed else ''}>"


def serve(
    port: int,
    host: str = "127.0.0.1",
    *,
    token: str | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> EndpointServer:
    """Serve the endpoint on `host`:`port` (0: any free port) from a daemon thread, a thread per request.

    Loopback by default: another host exposes the profiles (function names, labels) and lets anyone start
    captures, so it warns unless a `token` is set. OSError if the address cannot be bound.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ProfilerValueError(f"port must be an int from 0 to 65535, not {port!r}")
    endpoint = Endpoint(token=token, max_seconds=max_seconds)
    if token is None and not _is_loopback(host):
        warnings.warn(
            f"wasmtime-gp: serving profiles on {host!r} without a token: anyone who reaches it can take captures",
            RuntimeWarning,
            stacklevel=2,
        )
    handler = type("Handler", (_Handler,), {"endpoint": endpoint})
    server = (_Server6 if ":" in host else _Server)((host, port), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="wasmtime-gp endpoint", daemon=True
    )
    thread.start()
    return EndpointServer(server, thread)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
