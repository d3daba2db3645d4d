"""Each export, checked by the real program that consumes it."""

from __future__ import annotations

import gzip
import http.server
import json
import re
import subprocess
import threading
from functools import partial
from pathlib import Path

import pytest
import tools
from conftest import instantiate

from wasmtime_gp import GuestProfiler, Profile
from wasmtime_gp.example import guest_wat, profiling_engine
from wasmtime_gp.exports import FORMATS, to_collapsed, to_html, to_pprof, to_speedscope

FUNCTIONS = ("run", "step", "checksum", "mix", "rotate", "xorshift")


@pytest.fixture(scope="module")
def profile() -> Profile:
    guest = instantiate(guest_wat(), profiling_engine())
    with GuestProfiler(guest.store, [guest.module], interval=0.0005) as profiler:
        guest.call("run", 2)
    return profiler.profile()


def test_collapsed_stacks_count_every_sample(profile):
    lines = to_collapsed(profile).splitlines()
    counts = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in lines}
    assert sum(counts.values()) == sum(1 for s in profile.samples if s.stack)
    assert "run;step;checksum;mix;rotate" in counts
    # Every stack is under run -> step, except a sample taken at run's own entry (an epoch check there).
    assert all(stack == "run" or stack.startswith("run;step") for stack in counts)


def test_speedscope_file_is_valid_against_its_schema(profile):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(
        (tools.node_package("speedscope") / "dist/release/file-format-schema.json").read_text()
    )
    document = json.loads(to_speedscope(profile))
    jsonschema.validate(document, schema)
    names = {frame["name"] for frame in document["shared"]["frames"]}
    assert set(FUNCTIONS) <= names
    (evented,) = document["profiles"]
    assert evented["type"] == "evented"
    samples = sum(1 for s in profile.samples if s.stack)
    assert evented["endValue"] == pytest.approx(samples * profile.interval)  # an interval per sample
    open_frames = []  # every frame opened is closed, innermost first
    for event in evented["events"]:
        if event["type"] == "O":
            open_frames.append(event["frame"])
        else:
            assert open_frames.pop() == event["frame"]
    assert not open_frames


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # a request line per file on stderr tells nothing a failure would need


def _serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _chromium_dom(url: str, budget_ms: int = 15000, showing: tuple[str, ...] = ()) -> str:
    """The page's DOM once it shows every text of `showing`, or after three tries (the budget doubled each
    time: on a loaded runner chromium once dumped speedscope's page before its table was drawn)."""
    chromium = tools.program("chromium", "chromium-browser", "google-chrome")
    for attempt in range(3):
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   f"--virtual-time-budget={budget_ms << attempt}", "--dump-dom", url]  # fmt: skip
        dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
        if all(text in dom for text in showing):
            break
    return dom


def _texts(dom: str) -> list[str]:
    """The texts a page shows, for an assertion's message."""
    return [text.strip() for text in re.findall(r">([^<>]+)<", dom) if text.strip()]


@pytest.mark.parametrize("kind", ["speedscope", "collapsed"])
def test_speedscope_app_opens_our_file(profile, tmp_path, kind):
    # The real speedscope app from its npm package, served from localhost, loading our file by #profileURL.
    # speedscope also reads collapsed stacks (Brendan Gregg's format): it checks that export too.
    site = tmp_path / "site"
    subprocess.run(
        ["cp", "-r", str(tools.node_package("speedscope") / "dist/release"), str(site)], check=True
    )
    (site / f"profile.{kind}.txt").write_text(
        to_speedscope(profile) if kind == "speedscope" else to_collapsed(profile)
    )
    server, base = _serve(site)
    try:
        names = tuple(f">{name}<" for name in ("checksum", "rotate", "xorshift", "mix"))
        dom = _chromium_dom(
            f"{base}/index.html#profileURL={base}/profile.{kind}.txt&view=sandwich", showing=names
        )
    finally:
        server.shutdown()
    for name in names:
        assert name in dom, f"{name} not on the speedscope page, which shows {_texts(dom)}"


def test_pprof_reads_with_go_tool_pprof(profile, tmp_path):
    go = tools.program("go")
    path = tmp_path / "profile.pb.gz"
    path.write_bytes(to_pprof(profile))
    assert gzip.decompress(path.read_bytes())
    top = subprocess.run([go, "tool", "pprof", "-top", "-sample_index=samples", str(path)],
                         capture_output=True, text=True, timeout=300, check=True).stdout  # fmt: skip
    for name in ("checksum", "rotate", "xorshift", "mix"):
        assert name in top
    assert "Type: samples" in top
    raw = subprocess.run([go, "tool", "pprof", "-raw", str(path)], capture_output=True, text=True, timeout=300,
                         check=True).stdout  # fmt: skip
    assert "samples/count cpu/nanoseconds" in raw
    assert f"Period: {round(profile.interval * 1e9)}" in raw


def test_html_flame_graph_works_offline(profile, tmp_path):
    page = to_html(profile)
    # Self-contained: no address the browser would fetch.
    for needle in ("src=", "href=", "@import", "url(", "http://", "https://"):
        assert needle not in page, needle
    path = tmp_path / "flame.html"
    path.write_text(page)
    dom = _chromium_dom(path.as_uri(), budget_ms=3000)
    assert 'class="frame' in dom
    for name in FUNCTIONS:
        assert f">{name}<" in dom, name
    searched = _chromium_dom(path.as_uri() + "#search=^rot", budget_ms=3000)
    assert 'class="frame match"' in searched and "matched " in searched


def test_every_format_is_listed_for_convert():
    assert set(FORMATS) == {"collapsed", "speedscope", "pprof", "html"}
