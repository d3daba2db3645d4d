"""The command line, run as users run it: python -m wasmtime_gp, in a subprocess."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from wasmtime_gp import Profile
from wasmtime_gp.cli.common import parse_interval
from wasmtime_gp.cli.view import firefox_profiler_address, serve

EXAMPLE = Path(__file__).resolve().parent.parent / "src" / "wasmtime_gp" / "example" / "guest.wat"

# A WASI command: spins in $work, then exits with its argument count (so: non-zero).
EXITER = """
(module $exiter
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func $work (local $i i32)
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 300000000)))))
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (call $work)
    (call $proc_exit (i32.load (i32.const 0)))))
"""
TRAPPER = EXITER.replace("(call $proc_exit (i32.load (i32.const 0)))", "unreachable")


def wasmtime_gp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wasmtime_gp", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def test_run_invoke_report_and_convert_the_example(tmp_path):
    out = tmp_path / "example.json"
    result = wasmtime_gp(
        "run", str(EXAMPLE), "--invoke", "run", "--interval", "500us", "-o", str(out), "--", "3"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().lstrip("-").isdigit()  # the function's result
    assert f"profile: {out}" in result.stderr and "checksum [example]" in result.stderr
    profile = Profile.load(out)
    assert profile.interval == pytest.approx(0.0005) and profile.sample_count > 100

    report = wasmtime_gp("report", str(out), "--top", "3", "--tree")
    assert report.returncode == 0, report.stderr
    assert "self %" in report.stdout and "└─" in report.stdout and "\x1b[" not in report.stdout
    assert len([line for line in report.stdout.splitlines() if "[example]" in line]) >= 3

    for kind in ("collapsed", "speedscope", "pprof", "html"):
        converted = tmp_path / f"out.{kind}"
        done = wasmtime_gp("convert", str(out), "--to", kind, "-o", str(converted))
        assert done.returncode == 0, done.stderr
        assert converted.stat().st_size > 100


def test_run_keeps_the_profile_when_the_guest_exits_non_zero_or_traps(tmp_path):
    exiter = tmp_path / "exiter.wat"
    exiter.write_text(EXITER)
    result = wasmtime_gp("run", str(exiter), "-o", str(tmp_path / "exit.json"), "--", "one", "two")
    assert result.returncode == 3, result.stderr  # argc: the program name and two arguments
    assert Profile.load(tmp_path / "exit.json").top(1)[0].frame.function == "work"

    trapper = tmp_path / "trapper.wat"
    trapper.write_text(TRAPPER)
    result = wasmtime_gp("run", str(trapper), "-o", str(tmp_path / "trap.json"))
    assert result.returncode == 1
    assert "the guest failed" in result.stderr
    assert Profile.load(tmp_path / "trap.json").sample_count > 10


def test_run_keeps_the_profile_on_ctrl_c(tmp_path):
    out = tmp_path / "interrupted.json"
    command = [
        sys.executable,
        "-m",
        "wasmtime_gp",
        "run",
        str(EXAMPLE),
        "--invoke",
        "run",
        "-o",
        str(out),
        "--",
        "500",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # well inside the guest by now (500 units take about 50 s)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    # The samples taken until Ctrl-C are kept (how many depends on how long the loaded machine took to get
    # the guest going: once 0.3 s of the 1.5 s).
    assert Profile.load(out).sample_count > 0


def test_run_refuses_a_missing_dir_and_a_malformed_env(tmp_path):
    result = wasmtime_gp(
        "run", str(EXAMPLE), "--invoke", "run", "--dir", f"{tmp_path / 'missing'}::/data", "--", "1"
    )
    assert result.returncode == 2 and "is not a directory" in result.stderr
    result = wasmtime_gp("run", str(EXAMPLE), "--invoke", "run", "--env", "NOEQUALS", "--", "1")
    assert result.returncode == 2 and "expected K=V" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "/nonexistent.json"], "no such file"),
        (["convert", "/nonexistent.json", "--to", "html", "-o", "x.html"], "no such file"),
        (["view", "/nonexistent.json", "--no-browser"], "no such file"),
        (["run", "/nonexistent.wasm"], "no such file"),
        (["run", str(EXAMPLE), "--invoke", "nothere"], "no exported function 'nothere'"),
        (["run", str(EXAMPLE), "--invoke", "run", "--", "1", "2"], "takes 1 arguments"),
        (["run", str(EXAMPLE), "--invoke", "run", "--", "one"], "arguments of run"),
        (["run", str(EXAMPLE)], "no exported function '_start'; use --invoke"),
        (["run", str(EXAMPLE), "--interval", "5"], "needs a unit"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    result = wasmtime_gp(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is not JSON"),
        (b'{"hello": "world"}', "is not a Wasmtime guest profile"),
        (b"", "is not JSON"),
    ],
)
def test_a_file_that_is_not_a_profile(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    for args in (
        ["report", str(path)],
        ["convert", str(path), "--to", "collapsed", "-o", str(tmp_path / "x")],
    ):
        result = wasmtime_gp(*args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_intervals_need_units():
    assert parse_interval("10ms") == pytest.approx(0.01)
    assert parse_interval("100us") == pytest.approx(1e-4)
    assert parse_interval("1s") == 1.0
    assert parse_interval("2.5ms") == pytest.approx(0.0025)
    for bad in ("5", "0.001", "ms", "10 parsecs", ""):
        with pytest.raises(Exception, match="needs a unit"):
            parse_interval(bad)


def test_view_serves_the_profile_with_cors_for_the_firefox_profiler(tmp_path):
    body = (Path(__file__).parent / "data" / "chain-wasmtime50.0.1.json").read_bytes()
    server, url = serve(body, "chain profile.json", "application/json")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert json.loads(response.read())["meta"]["product"] == "chain"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url.rsplit("/", 1)[0] + "/other.json", timeout=10)
    finally:
        server.shutdown()
    address = firefox_profiler_address(url)
    assert address.startswith("https://profiler.firefox.com/from-url/http%3A%2F%2F127.0.0.1%3A")
    assert address.endswith("chain%2520profile.json")


def start_view(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `wasmtime-gp view ARGS` with a block-buffered stdout, as under a service manager; return it and
    the first line it printed (within 60 s)."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    command = [sys.executable, "-m", "wasmtime_gp", "view", *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )
    assert process.stdout is not None
    if not select.select([process.stdout], [], [], 60)[0]:
        process.kill()
        process.communicate(timeout=30)
        pytest.fail("view printed nothing within 60 s")
    return process, process.stdout.readline()


def test_view_command_prints_the_address_without_a_browser(tmp_path):
    profile = Path(__file__).parent / "data" / "chain-wasmtime50.0.1.json"
    process, first = start_view(str(profile), "--no-browser")
    try:
        assert first.startswith("open this address in a browser: https://profiler.firefox.com/from-url/")
        served = urllib.parse.unquote(first.split("/from-url/", 1)[1].strip())
        with urllib.request.urlopen(served, timeout=10) as response:
            assert response.read() == profile.read_bytes()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_view_offline_serves_the_html_flame_graph():
    profile = Path(__file__).parent / "data" / "chain-wasmtime50.0.1.json"
    process, first = start_view(str(profile), "--offline", "--no-browser")
    try:
        assert first.startswith("open this address in a browser: http://127.0.0.1:")
        with urllib.request.urlopen(first.split(": ", 1)[1].strip(), timeout=10) as response:
            page = response.read().decode()
        assert response.headers["Content-Type"] == "text/html" and '"inner"' in page
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 0
