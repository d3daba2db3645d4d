"""Shared fixtures: real engines, stores and guests, and a reader for the profiles Wasmtime writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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
    """Inner-loop iterations of CHAIN that take about `seconds` here (calibrated once per session)."""
    if not _spins_per_second:
        guest = instantiate(CHAIN)
        spins = 20_000_000
        started = time.perf_counter()
        guest.call("run", spins)
        _spins_per_second.append(spins / (time.perf_counter() - started))

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
