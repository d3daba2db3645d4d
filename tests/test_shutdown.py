"""Shutdown: a running ContinuousProfiler delivers its last slice at interpreter exit, in bounded time."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import run_isolated

from wasmtime_gp import Profile
from wasmtime_gp._registry import EXIT_TIMEOUT

PRELUDE = """
import os, signal, sys, threading, time
from conftest import instantiate
from guests import CHAIN
from wasmtime_gp import ContinuousProfiler
guest = instantiate(CHAIN)
"""


def _delivered(directory: Path) -> int:
    """Samples in the profiles written to `directory`."""
    return sum(Profile.load(path).sample_count for path in directory.glob("*.json"))


def test_sys_exit_without_close_delivers_the_last_slice(tmp_path: Path) -> None:
    result = run_isolated(
        PRELUDE
        + f"""
continuous = ContinuousProfiler(guest.store, [guest.module], sink={str(tmp_path)!r}, interval=0.0005)
continuous.start()  # the default period is 60 s: nothing would be delivered before exit
threading.Thread(target=guest.call, args=("run", 10**12), daemon=True).start()
time.sleep(1)
print(continuous.profiler.sample_count, flush=True)
sys.exit(0)
""",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    sampled = int(result.stdout)
    assert sampled > 0
    # Sampling ran on until the exit handler stopped it: at least what was counted before exit is there.
    assert _delivered(tmp_path) >= sampled


def test_a_with_block_on_a_daemon_thread_delivers_when_the_main_thread_exits(tmp_path: Path) -> None:
    result = run_isolated(
        PRELUDE
        + f"""
started = threading.Event()

def serve():
    with ContinuousProfiler(guest.store, [guest.module], sink={str(tmp_path)!r}, interval=0.0005):
        started.set()
        guest.call("run", 10**12)

threading.Thread(target=serve, daemon=True).start()
# Making the profiler can take most of a second on a loaded machine (Wasmtime 39 with RUST_BACKTRACE set):
# the guest runs for a second from when it has one.
assert started.wait(30)
time.sleep(1)
""",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert _delivered(tmp_path) > 0


def test_a_sink_that_blocks_does_not_hang_the_exit() -> None:
    started = time.monotonic()
    result = run_isolated(
        PRELUDE
        + """
def stuck(rotated):
    threading.Event().wait()  # an HTTP push to a server that never answers

continuous = ContinuousProfiler(guest.store, [guest.module], sink=stuck, interval=0.0005)
continuous.start()
threading.Thread(target=guest.call, args=("run", 10**12), daemon=True).start()
time.sleep(0.5)
""",
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "did not return within" in line]
    assert len(warning) == 1 and f"within {EXIT_TIMEOUT:g} s" in warning[0], result.stderr
    lost = re.search(r"(\d+) samples may not be delivered", warning[0])
    assert lost and int(lost.group(1)) > 0, warning[0]  # the slice inside the sink, at least
    assert elapsed < 40  # EXIT_TIMEOUT (5 s) and the interpreter's start, far from the test's timeout


def test_sigterm_with_a_handler_that_exits_delivers(tmp_path: Path) -> None:
    code = textwrap.dedent(
        PRELUDE
        + f"""
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
continuous = ContinuousProfiler(guest.store, [guest.module], sink={str(tmp_path)!r}, interval=0.0005)
continuous.start()
print("ready", flush=True)
while True:
    guest.call("run", 1_000_000)  # the handler runs between calls
"""
    )
    tests = str(Path(__file__).resolve().parent)
    process = subprocess.Popen(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {tests!r})\n" + code],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143, stderr
    assert _delivered(tmp_path) > 0


def test_a_closed_profiler_is_not_delivered_again_at_exit(tmp_path: Path) -> None:
    result = run_isolated(
        PRELUDE
        + f"""
with ContinuousProfiler(guest.store, [guest.module], sink={str(tmp_path)!r}, interval=0.0005) as c:
    guest.call("run", 20_000_000)
print(c.rotations)
""",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(list(tmp_path.glob("*.json"))) == 1
    assert json.loads(next(tmp_path.glob("*.json")).read_bytes())["meta"]
