"""Pushing to Pyroscope's ingest API: the exact request, checked by a local HTTP server."""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import http.server
import threading
import urllib.parse
from pathlib import Path

import pytest

from wasmtime_gp import GuestProfilerError, Profile, ProfilerValueError
from wasmtime_gp.pyroscope import push

FIXTURE = Path(__file__).parent / "data" / "chain-wasmtime50.0.1.json"


@pytest.fixture
def ingest_server():
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers, body))  # case-insensitive, as HTTP headers are
            self.send_response(200 if self.path.startswith("/ingest?") else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


def test_push_folded(ingest_server):
    url, received = ingest_server
    profile = Profile.load(FIXTURE)
    assert push(profile, url, "checkout.wasm", labels={"env": "staging"}, format="folded") == 200
    ((path, headers, body),) = received
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    assert query["name"] == ["checkout.wasm{env=staging}"]
    assert (
        query["format"] == ["folded"]
        and query["sampleRate"] == ["1000"]
        and query["spyName"] == ["wasmtime-gp"]
    )
    assert (
        int(query["from"][0])
        <= profile.start_time
        < profile.start_time + profile.duration
        <= int(query["until"][0])
    )
    assert headers["Content-Type"] == "text/plain"
    assert body.decode().strip() == f"outer;middle;inner {profile.sample_count}"


def test_push_pprof_as_multipart_with_token_and_tenant(ingest_server):
    url, received = ingest_server
    profile = Profile.load(FIXTURE)
    assert push(profile, url + "/", "checkout", auth_token="s3cret", tenant="team-a") == 200
    ((path, headers, body),) = received
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["format"] == ["pprof"]
    assert headers["Authorization"] == "Bearer s3cret" and headers["X-Scope-OrgID"] == "team-a"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body
    )
    (part,) = list(message.iter_parts())
    assert part.get_param("name", header="content-disposition") == "profile"
    assert b"inner" in gzip.decompress(part.get_content())


def test_push_reports_failures_and_bad_names(ingest_server):
    url, _ = ingest_server
    profile = Profile.load(FIXTURE)
    with pytest.raises(GuestProfilerError, match="pushing to"):
        push(profile, url + "/not-pyroscope", "app")
    with pytest.raises(ProfilerValueError, match="app_name"):
        push(profile, url, "bad name{}")
    with pytest.raises(ProfilerValueError, match="label"):
        push(profile, url, "app", labels={"k": "a,b"})
