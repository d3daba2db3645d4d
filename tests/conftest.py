"""Shared fixtures: real engines, stores and guests, and a reader for the profiles Wasmtime writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import wasmtime
from guests import CHAIN


def make_engine(epoch_interruption: bool = True) -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = epoch_interruption
    return wasmtime.Engine(config)


@dataclass
class Guest:
    engine: wasmtime.Engine
    store: wasmtime.Store
    module: wasmtime.Module
    instance: wasmtime.Instance

    def func(self, name: str) -> wasmtime.Func:
        export = self.instance.exports(self.store)[name]
        assert isinstance(export, wasmtime.Func)
        return export

    def call(self, name: str, *args: Any) -> Any:
        return self.func(name)(self.store, *args)


def instantiate(wat: str, engine: wasmtime.Engine | None = None) -> Guest:
    engine = engine or make_engine()
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)  # a far deadline until a profiler takes the store over
    module = wasmtime.Module(engine, wat)
    return Guest(engine, store, module, wasmtime.Instance(store, module, []))


@pytest.fixture
def chain() -> Guest:
    return instantiate(CHAIN)


_spins_per_second: list[float] = []


@pytest.fixture
def spins_for() -> Callable[[float], int]:
    """Inner-loop iterations of CHAIN that take about `seconds` of CPU here (calibrated once per session).

    Calibrated by the thread's CPU time, not the wall clock: on a loaded machine a calibration by wall-clock
    time comes out low (the guest waited for a CPU), and every run sized by it too short to mean much.
    """
    if not _spins_per_second:
        guest = instantiate(CHAIN)
        spins = 20_000_000
        started = time.thread_time()
        guest.call("run", spins)
        _spins_per_second.append(spins / max(time.thread_time() - started, 1e-3))

    def spins(seconds: float) -> int:
        return max(1, int(_spins_per_second[0] * seconds))

    return spins


@dataclass
class ReadProfile:
    """The parts of a Firefox processed profile that the tests check."""

    raw: dict[str, Any]
    stacks: list[tuple[str, ...]]  # per sample, function names from root to leaf
    cpu_delta_us: list[int]
    lib_names: list[str]
    process_name: str


def read_profile(data: bytes) -> ReadProfile:
    raw = json.loads(data)
    (thread,) = raw["threads"]
    if "stringArray" in thread:
        strings = thread["stringArray"]
    elif "stringTable" in thread:
        strings = thread["stringTable"]
    else:
        strings = raw["shared"]["stringArray"]
    func_names = [strings[i] for i in thread["funcTable"]["name"]]
    frame_func = thread["frameTable"]["func"]
    prefix, frame = thread["stackTable"]["prefix"], thread["stackTable"]["frame"]

    def walk(stack: int | None) -> tuple[str, ...]:
        names = []
        while stack is not None:
            names.append(func_names[frame_func[frame[stack]]])
            stack = prefix[stack]
        return tuple(reversed(names))

    samples = thread["samples"]
    return ReadProfile(
        raw=raw,
        stacks=[walk(s) for s in samples["stack"]],
        cpu_delta_us=list(samples.get("threadCPUDelta") or []),
        lib_names=[lib["name"] for lib in raw["libs"]],
        process_name=thread["processName"],
    )


def run_isolated(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter, so that a crash fails one test instead of the run."""
    prelude = f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def native_thread_count(expected: int | None = None, timeout: float = 2.0) -> int:
    """Threads of this process; with `expected`, wait a little for exiting threads to be reaped first."""
    deadline = time.monotonic() + timeout
    count = len(os.listdir("/proc/self/task"))
    while expected is not None and count != expected and time.monotonic() < deadline:
        time.sleep(0.01)
        count = len(os.listdir("/proc/self/task"))
    return count


# ---- bounds for timing-sensitive tests, derived from what a run measured rather than from nominal rates
#
# A loaded machine (a shared CI runner) starves the ticker thread, which then delivers fewer ticks than
# intervals, and the guest's thread, which then takes one sample for all the ticks that came while it waited
# for a CPU. Neither says anything about the profiler. What must hold whatever the scheduler does: the clock
# never ticks ahead of the wall clock, a sample needs a tick (`step` of them for a profiler whose interval is a
# multiple of its engine's), and ticks that come while the guest runs become samples.


def ticks_seen(profiler: Any) -> int:
    """Ticks of the engine's clock while `profiler` ran, counted at each stop(): what the ticker managed."""
    return int(profiler._native.ticks_seen)


def running_time(profiler: Any) -> float:
    """Seconds `profiler` ran (start() to stop(), summed), by its own clock."""
    return int(profiler._native.running_ns) / 1e9


def thread_cpu_time(thread: threading.Thread) -> float:
    """CPU seconds `thread` (alive) has used so far, read from any thread."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


@dataclass
class Progress:
    """A stopped profiler's counters at some point, to bound what a later run adds."""

    samples: int = 0
    ticks: int = 0
    running: float = 0.0

    @classmethod
    def of(cls, profiler: Any) -> Progress:
        return cls(profiler.sample_count, ticks_seen(profiler), running_time(profiler))


def sample_bounds(
    profiler: Any, guest_cpu: float, clock: float | None = None, since: Progress | None = None
) -> tuple[float, int]:
    """(fewest, most) samples a stopped profiler may have taken, from the ticks it saw and the CPU the guest got.

    `guest_cpu`: CPU seconds the guest's thread used while the profiler ran (since `since`), measured by the
    test; `clock`: the interval the engine's clock ticks at, when a finer profiler on the engine sets it. At
    most one sample per `step` ticks (its interval in ticks of the clock), plus the first; at least half of
    the ticks that came while the guest's thread was on a CPU (a share `guest_cpu / running time` of them,
    ticks arriving independently of the guest).
    """
    since = since or Progress()
    ticks, running = ticks_seen(profiler) - since.ticks, running_time(profiler) - since.running
    clock = clock or profiler._native.ticker_interval_ns / 1e9
    step = max(1, round(profiler.interval / clock))
    assert ticks <= running / clock + 2, f"{ticks} ticks in {running:.3f} s: the clock ran ahead of {clock}"
    on_cpu = min(1.0, guest_cpu / running) if running > 0 else 0.0
    return 0.5 * ticks / step * on_cpu - 2, ticks // step + 2


def assert_sample_count_fits(
    profiler: Any, guest_cpu: float, clock: float | None = None, since: Progress | None = None
) -> None:
    """The samples the profiler took (since `since`) lie within sample_bounds()."""
    since = since or Progress()
    count = profiler.sample_count - since.samples
    low, high = sample_bounds(profiler, guest_cpu, clock, since)
    assert low <= count <= high, (
        f"{count} samples, expected {low:.0f} to {high}: {ticks_seen(profiler) - since.ticks} ticks in "
        f"{running_time(profiler) - since.running:.3f} s, the guest on a CPU for {guest_cpu:.3f} s"
    )
