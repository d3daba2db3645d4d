"""Pre-fork servers: a parent compiles (and may run) its modules, then forks workers that profile.

Wasmtime cannot compile in a child forked after its compile threads ran: such a compile never returns.
Every risky part runs in a subprocess with a timeout, and every forked child is killed if it overstays.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import run_isolated
from tools import program

PRELUDE = """
import os, signal, sys, time
import wasmtime
from conftest import instantiate, make_engine
from guests import CHAIN
from wasmtime_gp import ContinuousProfiler, GuestProfiler

def wait_child(pid, timeout=30.0):
    # The child's exit code, or "hung" (then it is killed): a hang fails the test, not the run.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"

def until_sampled(profiler, call, at_least=5, timeout=30.0):
    # A loaded machine may give one short call no tick at all: call again until there are samples.
    deadline = time.monotonic() + timeout
    call()
    while profiler.sample_count < at_least and time.monotonic() < deadline:
        call()

def profile_in_child(engine, module):
    # What a worker does per request: a store, an instance, a profiler, a guest call.
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(store, module, [])
    run = instance.exports(store)["run"]
    with GuestProfiler(store, [module], interval=0.0005) as profiler:
        until_sampled(profiler, lambda: run(store, 20_000_000))
    top = profiler.profile().top(1)[0].frame.function
    return profiler.sample_count > 0 and top == "inner"
"""

# What the parent does before forking; the child then profiles a fresh store of the same engine.
BEFORE_FORK = {
    "compiled": "engine = make_engine(); module = wasmtime.Module(engine, CHAIN)",
    "compiled-and-ran": """
        guest = instantiate(CHAIN); engine, module = guest.engine, guest.module
        guest.call("run", 1_000_000)
        """,
    "made-a-profiler": """
        guest = instantiate(CHAIN); engine, module = guest.engine, guest.module
        with GuestProfiler(guest.store, [module], interval=0.001):
            guest.call("run", 1_000_000)
        """,
    "sampling-at-fork": """
        import threading
        guest = instantiate(CHAIN); engine, module = guest.engine, guest.module
        profiler = GuestProfiler(guest.store, [module], interval=0.0005)
        profiler.start()
        spinning = threading.Thread(target=guest.call, args=("run", 200_000_000), daemon=True)
        spinning.start()
        time.sleep(0.05)
        """,
}


@pytest.mark.parametrize("before", list(BEFORE_FORK))
def test_a_forked_child_profiles_a_module_its_parent_compiled(before: str) -> None:
    result = run_isolated(
        PRELUDE
        + textwrap.dedent(BEFORE_FORK[before])
        + textwrap.dedent(
            """
            pid = os.fork()
            if pid == 0:
                os._exit(0 if profile_in_child(engine, module) else 3)
            print("child:", wait_child(pid))
            """
        ),
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "child: 0", result.stdout + result.stderr


def test_a_child_whose_parent_compiled_nothing_compiles_and_profiles() -> None:
    result = run_isolated(
        PRELUDE
        + """
engine = make_engine()
pid = os.fork()
if pid == 0:
    os._exit(0 if profile_in_child(engine, wasmtime.Module(engine, CHAIN)) else 3)
print("child:", wait_child(pid))
""",
        timeout=90,
    )
    assert result.stdout.strip() == "child: 0", result.stdout + result.stderr


def test_a_continuous_profiler_in_a_forked_child_delivers(tmp_path: Path) -> None:
    result = run_isolated(
        PRELUDE
        + f"""
guest = instantiate(CHAIN)
guest.call("run", 1_000_000)
pid = os.fork()
if pid == 0:
    store = wasmtime.Store(guest.engine)
    run = wasmtime.Instance(store, guest.module, []).exports(store)["run"]
    with ContinuousProfiler(store, [guest.module], sink={str(tmp_path)!r}, interval=0.0005, period=0.05) as c:
        until_sampled(c.profiler, lambda: run(store, 30_000_000))
    os._exit(0)
print("child:", wait_child(pid))
""",
        timeout=90,
    )
    assert result.stdout.strip() == "child: 0", result.stdout + result.stderr
    assert list(tmp_path.glob("*.json"))


def test_an_engine_without_epoch_interruption_is_refused_in_a_forked_child_too() -> None:
    result = run_isolated(
        PRELUDE
        + """
engine = make_engine(epoch_interruption=False)
module = wasmtime.Module(engine, CHAIN)
pid = os.fork()
if pid == 0:
    from wasmtime_gp import EngineConfigError
    try:
        GuestProfiler(wasmtime.Store(engine), [module])
    except EngineConfigError:
        os._exit(0)
    os._exit(3)
print("child:", wait_child(pid))
""",
        timeout=60,
    )
    assert result.stdout.strip() == "child: 0", result.stdout + result.stderr


# -- real gunicorn: --preload, 2 sync workers, a profiler per request ---------------------------------

APP = """
import time

import wasmtime
from guests import CHAIN
from wasmtime_gp import GuestProfiler

config = wasmtime.Config()
config.epoch_interruption = True
engine = wasmtime.Engine(config)
module = wasmtime.Module(engine, CHAIN)  # compiled in the master, before the workers are forked
warm = wasmtime.Store(engine)
warm.set_epoch_deadline(1 << 40)
wasmtime.Instance(warm, module, []).exports(warm)["run"](warm, 1_000_000)


def app(environ, start_response):
    store = wasmtime.Store(engine)
    run = wasmtime.Instance(store, module, []).exports(store)["run"]
    with GuestProfiler(store, [module], interval=0.0005) as profiler:
        deadline = time.monotonic() + 20  # a loaded machine may give one short call no tick at all
        run(store, 10_000_000)
        while profiler.sample_count < 5 and time.monotonic() < deadline:
            run(store, 10_000_000)
    body = f"{profiler.sample_count} {profiler.profile().top(1)[0].frame.function}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_gunicorn_preload_workers_profile_every_request(tmp_path: Path) -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        program("gunicorn")  # skips locally, fails under WASMTIME_GP_REQUIRE_TOOLS=1
    (tmp_path / "profiled_app.py").write_text(APP)
    port = _free_port()
    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), tests])}
    server = subprocess.Popen(
        [str(gunicorn), "--preload", "-w", "2", "-k", "sync", "--timeout", "30", "-b", f"127.0.0.1:{port}",
         "profiled_app:app"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    answers: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        for _ in range(6):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
                answers.append(response.read().decode())
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            log, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            log, _ = server.communicate()
    assert len(answers) == 6, log
    for answer in answers:
        samples, top = answer.split()
        assert int(samples) > 0 and top == "inner", (answer, log)
    assert server.returncode == 0, log


def test_fork_while_the_rotation_thread_is_inside_a_slow_sink() -> None:
    # The child inherits the rotation lock held: close() must still return, delivering nothing of the
    # parent's; a new ContinuousProfiler in the child delivers its own; the parent goes on delivering.
    result = run_isolated(
        PRELUDE
        + """
import threading
guest = instantiate(CHAIN)
in_sink = threading.Event()
delivered = []

def slow_sink(rotated):
    delivered.append((os.getpid(), rotated.sample_count))
    in_sink.set()
    time.sleep(0.5)  # an HTTP push, say

continuous = ContinuousProfiler(guest.store, [guest.module], sink=slow_sink, interval=0.0005, period=0.05)
continuous.start()
threading.Thread(target=guest.call, args=("run", 10**12), daemon=True).start()
assert in_sink.wait(30)
pid = os.fork()
if pid == 0:
    parent_deliveries = len(delivered)
    ok = continuous.close(timeout=5) and len(delivered) == parent_deliveries
    store = wasmtime.Store(guest.engine)
    run = wasmtime.Instance(store, guest.module, []).exports(store)["run"]
    with ContinuousProfiler(store, [guest.module], sink=slow_sink, interval=0.0005, period=10) as mine:
        until_sampled(mine.profiler, lambda: run(store, 10_000_000))
    ok = ok and [count > 0 for who, count in delivered[parent_deliveries:]] == [True]
    os._exit(0 if ok else 3)
child = wait_child(pid)
before = len(delivered)
time.sleep(1.2)
continuous.close()
print("child:", child, "parent delivered:", len(delivered) > before)
""",
        timeout=90,
    )
    assert result.stdout.strip() == "child: 0 parent delivered: True", result.stdout + result.stderr
