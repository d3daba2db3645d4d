"""The HTTP endpoint (wasmtime_gp.endpoint), served for real on 127.0.0.1 and read by the real `go tool pprof`.

Guests loop on threads of their own while the captures run. Every wait is bounded (WAIT, GO_TIMEOUT), servers
are stopped by the tests, and nothing checks how long anything took.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wsgiref.simple_server
import wsgiref.util
from pathlib import Path
from typing import Any

import pytest
import tools
from conftest import instantiate
from guests import CHAIN

from wasmtime_gp import ProfilerTypeError, ProfilerValueError, endpoint, live
from wasmtime_gp._errors import GuestProfilerError

WAIT = 60.0  # seconds: a bound on every wait for a server, far above what an idle machine needs
GO_TIMEOUT = 300  # seconds for one `go tool pprof` (as tests/test_exports.py)
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def running_guests(spins_for):
    """Two tracked stores whose guests loop in `inner` on threads of their own until the test ends."""
    guests = [instantiate(CHAIN) for _ in range(2)]
    for index, guest in enumerate(guests):
        live.track(guest.store, [guest.module], name=f"worker-{index}", labels={"tenant": f"t{index}"})
    stop = threading.Event()
    started = threading.Barrier(len(guests) + 1, timeout=WAIT)
    spins = spins_for(0.02)

    def serve(guest) -> None:
        started.wait()
        while not stop.is_set():
            guest.call("run", spins)

    workers = [threading.Thread(target=serve, args=(guest,), daemon=True) for guest in guests]
    for worker in workers:
        worker.start()
    started.wait()
    yield guests
    stop.set()
    for worker in workers:
        worker.join(WAIT)
        assert not worker.is_alive(), "a guest thread did not stop"


@pytest.fixture
def server():
    with endpoint.serve(0) as running:
        yield running


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Any, bytes]:
    """(status, headers, body) of one request, errors included."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def go_pprof(tmp_path: Path, *arguments: str) -> str:
    """`go tool pprof ARGUMENTS` (a URL or a file last); its standard output. Fetched profiles are saved under
    tmp_path, not in ~/pprof; -timeout: pprof's own is 1.5 times `seconds`, short on a loaded machine."""
    go = tools.program("go")
    result = subprocess.run(
        [go, "tool", "pprof", "-timeout=120", *arguments],
        capture_output=True,
        text=True,
        timeout=GO_TIMEOUT,
        check=False,
        env={**os.environ, "PPROF_TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_one_line(status: int, headers: Any, body: bytes, expected: int, fragment: str) -> None:
    text = body.decode()
    assert status == expected, text
    assert headers["Content-Type"].startswith("text/plain") and headers["X-Go-Pprof"] == "1"
    assert text.endswith("\n") and text.count("\n") == 1 and fragment in text, text
    assert "Traceback" not in text


def in_background(url: str) -> tuple[list[tuple[int, Any, bytes]], threading.Thread]:
    """GET `url` on a thread of its own: (the list that gets its answer, the thread)."""
    answers: list[tuple[int, Any, bytes]] = []
    thread = threading.Thread(target=lambda: answers.append(get(url)), daemon=True)
    thread.start()
    return answers, thread


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {WAIT} s"
        time.sleep(0.005)


# -- the standalone server, read by go tool pprof ---------------------------------------------------------


def test_go_tool_pprof_reads_a_capture_from_the_standalone_server(running_guests, server, tmp_path):
    assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
    raw = go_pprof(tmp_path, "-raw", f"{server.url}/debug/pprof/profile?seconds=1")
    assert "PeriodType: cpu nanoseconds" in raw
    assert " inner " in raw  # a location: "1: 0x0 M=1 inner chain:0 s=0"
    assert "store:[worker-" in raw and "tenant:[t" in raw  # the stores' labels on their samples
    # The Firefox JSON: by its own path, and by ?format=firefox; a thread per store that ran.
    for path in ("/debug/pprof/firefox?seconds=1", "/debug/pprof/profile?seconds=1&format=firefox"):
        status, headers, body = get(server.url + path)
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert int(headers[endpoint.SAMPLE_COUNT_HEADER]) > 0
        names = {thread["name"] for thread in json.loads(body)["threads"]}
        assert names and names <= {"worker-0", "worker-1"}


def test_the_pprof_answer_has_go_headers(running_guests, server):
    status, headers, body = get(server.profile_url + "?seconds=0.5")
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == 'attachment; filename="profile"'
    assert int(headers["Content-Length"]) == len(body)
    assert gzip.decompress(body)
    status, headers, body = get(server.url + "/debug/pprof/")
    assert status == 200 and b"/debug/pprof/profile?seconds=N" in body and b"tracked stores: " in body


def test_an_empty_capture_is_a_valid_pprof_and_no_firefox_profile(server, tmp_path):
    # No guest runs: a pprof without samples, as Go answers for an idle program, that go tool pprof reads.
    status, headers, body = get(server.profile_url + "?seconds=0.2")
    assert status == 200 and headers[endpoint.SAMPLE_COUNT_HEADER] == "0"
    path = tmp_path / "empty.pb.gz"
    path.write_bytes(body)
    raw = go_pprof(tmp_path, "-raw", str(path))
    assert "samples/count cpu/nanoseconds" in raw and "PeriodType: cpu nanoseconds" in raw
    assert "Total samples = 0" in go_pprof(tmp_path, "-top", str(path))
    status, headers, body = get(server.url + "/debug/pprof/firefox?seconds=0.2")
    assert status == 204 and body == b"" and headers[endpoint.SAMPLE_COUNT_HEADER] == "0"


# -- bad requests, tokens, one capture at a time ----------------------------------------------------------


@pytest.mark.parametrize(
    "query, fragment",
    [
        ("seconds=abc", "seconds must be a number above 0 and at most 300, not 'abc'"),
        ("seconds=0", "not '0'"),
        ("seconds=-1", "not '-1'"),
        ("seconds=301", "at most 300"),
        ("seconds=1e9", "not '1e9'"),
        ("seconds=nan", "not 'nan'"),
        ("seconds=inf", "not 'inf'"),
        ("seconds=", "not ''"),
        ("seconds=%0A1", "not '\\n1'"),  # a newline in the value stays out of the one line
        ("seconds=" + "9" * 500, "..."),
        ("seconds=1&seconds=2", "seconds is given 2 times"),
        ("format=xml", "format must be one of pprof, firefox, not 'xml'"),
    ],
)
def test_bad_parameters_get_400_with_one_line(server, query, fragment):
    assert_one_line(*get(f"{server.profile_url}?{query}"), 400, fragment)
    assert not live.capturing()


def test_other_paths_and_methods(server):
    assert_one_line(*get(server.url + "/debug/pprof/heap"), 404, "not found: '/debug/pprof/heap'")
    assert_one_line(*get(server.url + "/"), 404, "the profiles are at /debug/pprof/profile")
    status, headers, body = get(server.profile_url, method="POST")
    assert_one_line(status, headers, body, 405, "only GET")
    assert headers["Allow"] == "GET"


def test_a_token_is_required_when_set():
    with endpoint.serve(0, token="s3cret.Token-1") as server:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer s3cret.Token-"},
            {"Authorization": "Basic czNjcmV0LlRva2VuLTE="},
            {"Authorization": "s3cret.Token-1"},
            {"Authorization": "Bearer s3cret.Token-1é"},  # not ASCII: compared as bytes, refused
        ):
            status, answer_headers, body = get(server.profile_url + "?seconds=0.1", headers)
            assert_one_line(status, answer_headers, body, 401, "Authorization: Bearer TOKEN")
            assert answer_headers["WWW-Authenticate"] == "Bearer"
        # Before anything else: an unknown path or a bad parameter tells nothing without the token.
        assert get(server.url + "/nowhere")[0] == 401 and get(server.profile_url + "?seconds=x")[0] == 401
        for scheme in ("Bearer", "bearer"):
            status, _, body = get(
                server.profile_url + "?seconds=0.1", {"Authorization": f"{scheme} s3cret.Token-1"}
            )
            assert status == 200 and gzip.decompress(body)


def test_a_second_request_during_a_capture_gets_429(server):
    # A loaded machine may finish the first capture before the second request is read: then retry longer.
    for seconds in (2, 10, 60):
        first, thread = in_background(f"{server.profile_url}?seconds={seconds}")
        wait_for(lambda thread=thread: live.capturing() or not thread.is_alive(), "the first capture")
        second = get(server.profile_url + "?seconds=0.1")
        thread.join(WAIT + seconds)
        assert first and first[0][0] == 200
        if second[0] == 429:
            assert_one_line(*second, 429, "a capture is already running in this process (one at a time)")
            return
        assert second[0] == 200, second  # it came after the first capture: its own capture
    pytest.fail("the second request never came during the first capture")


def test_a_client_that_disconnects_mid_capture_stops_nothing(server, capfd, caplog):
    caplog.set_level(logging.DEBUG, logger="wasmtime_gp.endpoint")
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as client:
        client.sendall(b"GET /debug/pprof/profile?seconds=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        wait_for(live.capturing, "the capture")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: a reset
    # The client is gone; the capture runs to its end, writing the answer fails quietly.
    wait_for(lambda: not live.capturing(), "the end of the abandoned capture")
    wait_for(lambda: "the client went away" in caplog.text, "the failed write")
    status, _, body = get(server.profile_url + "?seconds=0.1")  # the server answers the next request
    assert status == 200 and gzip.decompress(body)
    assert "Traceback" not in capfd.readouterr().err


def test_close_frees_the_port_and_lets_a_running_capture_answer():
    server = endpoint.serve(0)
    answers, thread = in_background(server.profile_url + "?seconds=1")
    wait_for(live.capturing, "the capture")
    assert server.close() is True and server.close() is True
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=WAIT).close()
    thread.join(WAIT)
    assert answers and answers[0][0] == 200


# -- the core, without a server ---------------------------------------------------------------------------


def test_seconds_default_to_30_as_in_go_and_are_bounded(monkeypatch):
    asked: list[float] = []

    def capture(seconds: float) -> live.Capture:
        asked.append(seconds)
        return live.Capture((), 1.0, 2.0)

    monkeypatch.setattr(live, "capture", capture)
    assert endpoint.Endpoint().respond("GET", "/debug/pprof/profile", "").status == 200
    assert endpoint.Endpoint(max_seconds=10).respond("GET", "/debug/pprof/profile", "").status == 200
    assert (
        endpoint.Endpoint(max_seconds=10).respond("GET", "/debug/pprof/profile", "seconds=11").status == 400
    )
    assert endpoint.Endpoint().respond("GET", "/debug/pprof/profile", "seconds=2.5&debug=1").status == 200
    assert asked == [30.0, 10.0, 2.5]


def test_an_unexpected_error_is_a_500_with_one_line_and_a_logged_traceback(monkeypatch, caplog):
    def broken(seconds: float) -> live.Capture:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(live, "capture", broken)
    with caplog.at_level(logging.ERROR, logger="wasmtime_gp.endpoint"):
        response = endpoint.Endpoint().respond("GET", "/debug/pprof/profile", "seconds=1")
    assert (
        response.status == 500 and response.body == b"internal error: RuntimeError: boom\n"
    )  # its first line
    assert "Traceback" in caplog.text and "boom" in caplog.text


def test_without_protobuf_pprof_is_refused_before_any_capture(monkeypatch):
    from wasmtime_gp.exports import pprof

    def missing() -> Any:
        raise GuestProfilerError(
            "the pprof export needs the protobuf library: pip install 'wasmtime-gp[pprof]'"
        )

    def never(seconds: float) -> live.Capture:
        raise AssertionError("captured")

    monkeypatch.setattr(pprof, "_profile_class", missing)
    monkeypatch.setattr(live, "capture", never)
    response = endpoint.Endpoint().respond("GET", "/debug/pprof/profile", "seconds=5")
    assert response.status == 500 and b"pip install 'wasmtime-gp[pprof]'" in response.body


def test_bad_settings_raise():
    with pytest.raises(ProfilerValueError, match="max_seconds"):
        endpoint.Endpoint(max_seconds=0)
    with pytest.raises(ProfilerValueError, match="max_seconds"):
        endpoint.Endpoint(max_seconds=live.MAX_CAPTURE_SECONDS + 1)
    with pytest.raises(ProfilerTypeError, match="max_seconds"):
        endpoint.Endpoint(max_seconds="30")  # type: ignore[arg-type]
    with pytest.raises(ProfilerValueError, match="bearer token"):
        endpoint.Endpoint(token="two words")
    with pytest.raises(ProfilerValueError, match="bearer token"):
        endpoint.Endpoint(token="")
    with pytest.raises(ProfilerTypeError, match="token"):
        endpoint.Endpoint(token=b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ProfilerValueError, match="port"):
        endpoint.serve(-1)


# -- WSGI: wsgiref in a thread (mounted under a prefix) and gunicorn in a subprocess, read by go tool pprof ---


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def mounted(prefix: str, app):
    """A WSGI dispatcher: `app` under `prefix` (SCRIPT_NAME gets the prefix, PATH_INFO the rest), 404 elsewhere."""
    name = prefix.strip("/")

    def dispatch(environ, start_response):
        if wsgiref.util.shift_path_info(environ) == name:
            return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]

    return dispatch


def test_the_wsgi_app_under_a_prefix_is_read_by_go_tool_pprof(running_guests, tmp_path):
    app = mounted("/admin", endpoint.wsgi_app())
    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        top = go_pprof(
            tmp_path, "-top", "-sample_index=samples", f"{base}/admin/debug/pprof/profile?seconds=1"
        )
        assert "inner" in top and "Type: samples" in top
        assert_one_line(*get(f"{base}/admin/debug/pprof/profile?seconds=0"), 400, "seconds must be")
        assert get(f"{base}/debug/pprof/profile?seconds=1")[0] == 404  # not mounted there
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


GUNICORN_APP = """
import os, threading

from conftest import instantiate
from guests import CHAIN
from wasmtime_gp import endpoint, live

spins = int(os.environ["SPINS"])
for index in range(2):
    guest = instantiate(CHAIN)  # in the worker: a pre-fork server's workers each track their own stores
    live.track(guest.store, [guest.module], name=f"gunicorn-{index}")

    def loop(guest=guest):
        while True:
            guest.call("run", spins)

    threading.Thread(target=loop, daemon=True).start()

app = endpoint.wsgi_app(token="gunicorn-token")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_gunicorn_serves_the_wsgi_app_under_script_name(tmp_path, spins_for):
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        tools.program("gunicorn")  # skips locally, fails under WASMTIME_GP_REQUIRE_TOOLS=1
    (tmp_path / "endpoint_app.py").write_text(GUNICORN_APP)
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(TESTS)]),
        "SPINS": str(spins_for(0.02)),
        "SCRIPT_NAME": "/profiling",  # gunicorn's mount point: PATH_INFO is what follows it
    }
    # gthread: the worker's main thread goes on telling the arbiter it lives while a request captures.
    server = subprocess.Popen(
        [str(gunicorn), "-w", "1", "-k", "gthread", "--threads", "4", "--timeout", "60",
         "--graceful-timeout", "5", "-b", f"127.0.0.1:{port}", "endpoint_app:app"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/profiling"
    try:
        deadline = time.monotonic() + WAIT
        while get_or_none(f"{base}/debug/pprof/") is None:
            assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)
        assert get(f"{base}/debug/pprof/")[0] == 401
        status, headers, body = get(
            f"{base}/debug/pprof/profile?seconds=1", {"Authorization": "Bearer gunicorn-token"}
        )
        assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="profile"'
        path = tmp_path / "gunicorn.pb.gz"
        path.write_bytes(body)
        raw = go_pprof(tmp_path, "-raw", str(path))
        assert " inner " in raw and "store:[gunicorn-" in raw
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            log, _ = server.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            server.kill()
            log, _ = server.communicate()
    assert "Traceback" not in log, log


def get_or_none(url: str) -> int | None:
    """The status of a GET, or None while nothing listens."""
    try:
        return get(url)[0]
    except OSError:
        return None


# -- ASGI: no ASGI server is installed, so the app is called as one calls it ------------------------------


def asgi_call(app, scope: dict[str, Any], messages: list[dict[str, Any]], fail_send: bool = False):
    """Run `app(scope, receive, send)` on an event loop; return what it sent."""
    incoming = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(WAIT)  # a server would wait for the client: nothing more comes
        raise AssertionError("the app waited for a message that never comes")

    async def send(message: dict[str, Any]) -> None:
        if fail_send and message["type"].startswith("http.response"):
            raise ConnectionResetError("the client went away")
        sent.append(message)

    async def main() -> None:
        await asyncio.wait_for(app(scope, receive, send), WAIT)

    asyncio.run(main())
    return sent


def http_scope(path: str, query: bytes, root_path: str = "", headers=()) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": root_path,
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def test_the_asgi_app_answers_without_blocking_its_event_loop(running_guests, tmp_path):
    app = endpoint.asgi_app(token="asgi-token")
    lifespan = asgi_call(
        app,
        {"type": "lifespan", "asgi": {"version": "3.0"}},
        [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
    )
    assert [m["type"] for m in lifespan] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    # Mounted at /admin: the path includes root_path, as the ASGI spec has it.
    scope = http_scope(
        "/admin/debug/pprof/profile", b"seconds=1", "/admin", [(b"authorization", b"Bearer asgi-token")]
    )
    saw_the_capture_running = []

    async def main() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        call = asyncio.ensure_future(app(scope, receive, send))
        while not call.done():  # the loop runs on while the capture runs in a worker thread
            if live.capturing():
                saw_the_capture_running.append(True)
            await asyncio.sleep(0.005)
        await call
        return sent

    sent = asyncio.run(asyncio.wait_for(main(), WAIT))
    assert saw_the_capture_running
    start, body = sent
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/octet-stream"
    assert int(headers[b"content-length"]) == len(body["body"])
    path = tmp_path / "asgi.pb.gz"
    path.write_bytes(body["body"])
    assert " inner " in go_pprof(tmp_path, "-raw", str(path))


def test_the_asgi_app_refuses_and_survives_a_client_that_went_away():
    app = endpoint.asgi_app(token="asgi-token")
    request = [{"type": "http.request", "body": b"", "more_body": False}]
    start, body = asgi_call(app, http_scope("/debug/pprof/profile", b"seconds=1"), request)
    assert start["status"] == 401 and body["body"].endswith(b"\n") and body["body"].count(b"\n") == 1
    auth = [(b"authorization", b"Bearer asgi-token")]
    start, body = asgi_call(
        app, http_scope("/debug/pprof/profile", b"seconds=1&format=svg", "", auth), request
    )
    assert start["status"] == 400 and b"format must be one of pprof, firefox" in body["body"]
    # Sending the answer fails: the app returns quietly.
    assert asgi_call(app, http_scope("/debug/pprof/profile", b"seconds=0.1", "", auth), request, True) == []
    assert not live.capturing()
    closed = asgi_call(app, {"type": "websocket", "path": "/"}, [{"type": "websocket.connect"}])
    assert closed == [{"type": "websocket.close", "code": 1008}]
