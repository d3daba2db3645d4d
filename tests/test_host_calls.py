"""Host-call profiling: time inside the Python functions a guest imports, as `[host]` frames."""

from __future__ import annotations

import gc
import gzip
import json
import time
from typing import Any, Callable

import pytest
import wasmtime
from conftest import make_engine, running_time, ticks_seen
from guests import HOST_CALLS

from wasmtime_gp import (
    ContinuousProfiler,
    GuestProfiler,
    Profile,
    ProfilerTypeError,
    ProfilerValueError,
    _registry,
    _test_utils,
    host_calls,
)
from wasmtime_gp.exports import to_collapsed, to_pprof, to_speedscope
from wasmtime_gp.profile import HOST_MODULE
from wasmtime_gp.report import render

I32, I64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()


def busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


class App:
    """HOST_CALLS instantiated through an instrumented Linker, with its host functions defined in Python."""

    def __init__(self, slow_seconds: float = 0.004, engine: wasmtime.Engine | None = None):
        self.engine = engine or make_engine()
        self.store = wasmtime.Store(self.engine)
        self.store.set_epoch_deadline(1 << 40)
        self.module = wasmtime.Module(self.engine, HOST_CALLS)
        self.slow_seconds = slow_seconds
        self.slow_error: BaseException | None = None
        self.during_slow: Callable[[], object] | None = None
        self.slow_time = 0.0  # seconds spent inside env.slow, measured there
        self.slow_cpu = 0.0  # and the CPU seconds it used
        self.callers: list[Any] = []
        linker = host_calls.instrument(wasmtime.Linker(self.engine))
        # A FuncType per engine: Wasmtime >= 41 ties types to the engine that first used them (and
        # aborts on a mismatch), so these are never module-level constants.
        linker.define_func("env", "slow", wasmtime.FuncType([I32], []), self.slow)
        linker.define_func("env", "tiny", wasmtime.FuncType([I32], [I32]), lambda k: k & 1)
        linker.define_func(
            "env", "call_back", wasmtime.FuncType([I64], []), self.call_back, access_caller=True
        )
        self.instance = linker.instantiate(self.store, self.module)

    def slow(self, k: int) -> None:
        if self.slow_error is not None:
            raise self.slow_error
        started, cpu_before = time.perf_counter(), time.thread_time()
        busy(self.slow_seconds)
        self.slow_time += time.perf_counter() - started
        self.slow_cpu += time.thread_time() - cpu_before
        if self.during_slow is not None:
            self.during_slow()
            busy(self.slow_seconds)

    def call_back(self, caller: wasmtime.Caller, n: int) -> None:
        self.callers.append(caller)
        busy(self.slow_seconds)
        self("inner", n)

    def __call__(self, name: str, *args: Any) -> Any:
        func = self.instance.exports(self.store)[name]
        assert isinstance(func, wasmtime.Func)
        return func(self.store, *args)

    def profiler(self, interval: float = 0.001) -> GuestProfiler:
        return GuestProfiler(self.store, [self.module], interval=interval)


def assert_host_samples_fit(
    profiler: GuestProfiler, host_samples: int, host_time: float, run_time: float
) -> None:
    """About one host sample per tick of the clock during the calls, and never more than the run had ticks.

    `host_time`: seconds spent inside the host functions, `run_time`: the whole profiled call, both measured by
    the test. A call's samples are the intervals since the last sample (ticks pending when it began came while
    wasmtime-py entered it), so the bounds count ticks, not the nominal length of the calls: under load busy()
    overruns, the ticker delivers fewer ticks, and the way into a call takes milliseconds.
    """
    ticks = ticks_seen(profiler)
    assert ticks <= running_time(profiler) / profiler.interval + 2  # the clock never ahead of the wall clock
    assert host_samples <= min(ticks, run_time / profiler.interval) + 1, (host_samples, ticks, run_time)
    # The ticks that fell inside the calls: a share host_time / running time of them (host time counts
    # whether or not the thread had a CPU, so no collapsed ticks here).
    low = 0.75 * ticks * min(1.0, host_time / running_time(profiler)) - 2
    assert host_samples >= low, (host_samples, low, ticks, host_time, running_time(profiler))


def host(name: str) -> str:
    return f"[host] {name}"


def names(stack: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(frame.function for frame in stack)


def test_a_slow_host_function_is_the_top_entry_by_name(spins_for):
    app = App(slow_seconds=0.004)
    with app.profiler() as profiler:
        started = time.perf_counter()
        app("work", 100, spins_for(0.0015))  # about 400 ms in env.slow, 150 ms in wasm
        run_time = time.perf_counter() - started
    profile = profiler.profile()
    top = profile.top(3)
    assert top[0].frame.function == host("env.slow") and top[0].frame.is_host
    assert top[0].self_percent > 55, top
    assert top[1].frame.function == "spin"
    # On top of the calling guest stack, at about one sample per tick spent in the calls (as measured
    # inside them; a loaded machine stretches both), and never more samples than the run had ticks.
    slow_stacks = {names(s.stack) for s in profile.samples if s.stack[-1].is_host}
    assert slow_stacks == {("work", host("env.slow"))}
    assert_host_samples_fit(profiler, top[0].self_samples, app.slow_time, run_time)
    assert profiler.sample_count == profile.sample_count
    assert profile.host_sample_count == top[0].self_samples
    assert "% in host calls" in render(profile)


def test_host_samples_have_times_within_the_calls_and_cpu_time():
    app = App(slow_seconds=0.02)
    with app.profiler() as profiler:
        started = time.perf_counter()
        app("work", 5, 1)
        run_time = time.perf_counter() - started
    profile = profiler.profile()
    times = [s.time for s in profile.samples]
    assert times == sorted(times) and times[0] >= 0 and times[-1] <= profile.duration
    host_samples = [s for s in profile.samples if s.stack[-1].is_host]
    # 100 ms of calls: about 100 samples on a free machine, what the ticks allowed on a loaded one.
    assert_host_samples_fit(profiler, len(host_samples), app.slow_time, run_time)
    # busy() burns CPU: the host samples carry the CPU the calls used (as measured inside them). A call that
    # saw no tick has no sample, and the next sample (maybe the guest's) carries its CPU: with ticks about as
    # frequent as asked, that is rare, and a tenth of the CPU (no CPU deltas on host samples) far too little.
    if ticks_seen(profiler) >= 0.5 * running_time(profiler) / profiler.interval:
        assert sum(s.cpu_delta for s in host_samples) > 0.4 * app.slow_cpu, app.slow_cpu


def test_calls_appear_as_interval_markers_in_the_firefox_profile():
    app = App(slow_seconds=0.01)
    calls = 0
    with app.profiler() as profiler:
        started = time.perf_counter()
        # 3 calls of 10 ms; again while a starved ticker has given them no tick (and so no marker) at all.
        while calls == 0 or (profiler.sample_count == 0 and time.perf_counter() - started < 30):
            app("work", 3, 1)
            calls += 3
        run_ms = (time.perf_counter() - started) * 1000
    data = profiler.finish()
    raw = json.loads(data)
    thread = raw["threads"][0]
    strings = thread["stringArray"] if "stringArray" in thread else raw["shared"]["stringArray"]
    # The way back from a call (wasmtime-py's, after the wrapper) may add an OutsideWasm marker: not counted.
    columns = ("name", "startTime", "endTime", "phase", "data")
    markers = [
        dict(zip(columns, row))
        for row in zip(*(thread["markers"][column] for column in columns))
        if row[-1]["type"] == "HostCall"
    ]
    # One marker per call that got a sample: every call, when the ticker ticks about as often as asked.
    assert 1 <= len(markers) <= calls
    if ticks_seen(profiler) >= 0.5 * running_time(profiler) / profiler.interval:
        assert len(markers) == calls
    assert {strings[marker["name"]] for marker in markers} == {host("env.slow")}
    for marker in markers:
        start, end, data = marker["startTime"], marker["endTime"], marker["data"]
        assert marker["phase"] == 1 and 9.5 <= end - start <= run_ms, (start, end)
        assert data["function"] == "env.slow" and data["samples"] >= 1
    assert sum(marker["data"]["samples"] for marker in markers) == profiler.profile().host_sample_count
    (schema,) = [s for s in raw["meta"]["markerSchema"] if s["name"] == "HostCall"]
    assert ("fields" if raw["meta"]["preprocessedProfileVersion"] >= 55 else "data") in schema
    assert any(category["name"] == "Host" for category in raw["meta"]["categories"])


def test_reentrant_calls_nest_under_the_outer_host_frame(spins_for):
    app = App(slow_seconds=0.01)
    with app.profiler() as profiler:
        for _ in range(5):
            app("reenter", spins_for(0.01))
    profile = profiler.profile()
    stacks = {names(s.stack) for s in profile.samples}
    outer = ("reenter", host("env.call_back"))
    assert outer in stacks  # time in call_back itself
    assert (*outer, "inner", "spin") in stacks  # the wasm it called back into
    assert (*outer, "inner", host("env.slow")) in stacks  # and the host call nested in that
    assert all(stack[:2] == outer for stack in stacks if len(stack) > 1), stacks
    assert profiler.sample_count == profile.sample_count
    assert all(isinstance(caller, wasmtime.Caller) for caller in app.callers)


def test_exceptions_from_host_functions_propagate_unchanged():
    app = App()
    error = ValueError("the host failed")
    app.slow_error = error
    with app.profiler(), pytest.raises(ValueError) as raised:
        app("work", 1, 1)
    assert raised.value is error
    with pytest.raises(ValueError) as raised:  # and without a profiler
        app("work", 1, 1)
    assert raised.value is error


def test_without_a_running_profiler_calls_pass_straight_through():
    app = App(slow_seconds=0.0)
    assert app("many", 1000) == 500
    profiler = app.profiler()
    assert not _registry.running
    profiler.start()
    assert _registry.running
    profiler.stop()
    assert not _registry.running
    app("work", 3, 1)  # stopped: nothing recorded
    assert profiler.profile().host_sample_count == 0


def test_a_running_profiler_dropped_without_stop_still_stops():
    app = App(slow_seconds=0.0)
    profiler = app.profiler()
    profiler.start()
    assert _registry.running and _test_utils.ticker_thread_is_running()
    del profiler
    gc.collect()
    assert not _registry.running
    assert not _test_utils.ticker_thread_is_running()
    assert app("many", 100) == 50  # the wrapped functions go on working


def test_many_tiny_calls_add_up_to_their_share():
    app = App()
    with app.profiler(interval=0.0005) as profiler:
        assert app("many", 200_000) == 100_000
    profile = profiler.profile()
    # Nearly all the time is wasmtime-py's and Python's. The way in (and the function) is the call's;
    # the way back out, after the wrapper returns, is outside wasm (as `[outside wasm]` where it is longer
    # than the threshold, else on the calling wasm function: documented).
    assert profile.host_sample_count > 0.2 * profile.sample_count, profile.top(3)
    top = [row.frame.function for row in profile.top(5) if not row.frame.is_outside]
    assert set(top[:2]) == {host("env.tiny"), "many"}, profile.top(5)
    assert profiler.sample_count == profile.sample_count


def test_a_single_func_with_a_name():
    engine = make_engine()
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    module = wasmtime.Module(
        engine,
        '(module $m (import "" "f" (func $f)) (func $run (export "run") (call $f) (call $f)))',
    )
    host_time = 0.0

    def lookup() -> None:
        nonlocal host_time
        started = time.perf_counter()
        busy(0.01)
        host_time += time.perf_counter() - started

    f = host_calls.func(store, wasmtime.FuncType([], []), lookup, name="lookup.user")
    instance = wasmtime.Instance(store, module, [f])
    with GuestProfiler(store, [module], interval=0.001) as profiler:
        started = time.perf_counter()
        instance.exports(store)["run"](store)
        run_time = time.perf_counter() - started
    top = profiler.profile().top(1)[0]
    assert top.frame.function == host("lookup.user")
    assert_host_samples_fit(profiler, top.self_samples, host_time, run_time)  # about 20 on a free machine


def test_func_refuses_names_that_are_not_text():
    store = wasmtime.Store(make_engine())
    with pytest.raises(ProfilerValueError, match="not valid Unicode"):
        host_calls.func(store, wasmtime.FuncType([], []), lambda: None, name="bad\udc80")
    with pytest.raises(ProfilerTypeError):
        host_calls.func(store, wasmtime.FuncType([], []), lambda: None, name=b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ProfilerTypeError):
        host_calls.instrument(object())  # type: ignore[arg-type]


def test_host_frames_flow_into_every_export_and_can_be_filtered(spins_for):
    app = App(slow_seconds=0.004)
    with app.profiler() as profiler:
        app("work", 30, spins_for(0.002))
    profile = profiler.profile()
    assert "work;[host] env.slow " in to_collapsed(profile)
    speedscope = json.loads(to_speedscope(profile))
    assert {"name": host("env.slow"), "file": HOST_MODULE} in speedscope["shared"]["frames"]
    assert host("env.slow").encode() in gzip.decompress(to_pprof(profile))

    # The host's time is the wrapped calls' and the time outside wasm (wasmtime-py's way back from each call).
    host_time = profile.host_sample_count + sum(profile.outside_sample_counts)
    guest_only = profile.filter_host("exclude")
    assert guest_only.host_sample_count == 0
    assert guest_only.sample_count == profile.sample_count - host_time
    assert all(frame.is_wasm for s in guest_only.samples for frame in s.stack)
    host_only = profile.filter_host("only")
    assert host_only.sample_count == host_time
    assert profile.filter_host("include") is profile


def test_rotation_keeps_every_host_sample():
    app = App(slow_seconds=0.003)
    slices: list[Profile] = []
    continuous = ContinuousProfiler(
        app.store,
        [app.module],
        sink=lambda rotated: slices.append(Profile.from_bytes(rotated.data)),
        period=3600,
        interval=0.001,
    )
    with continuous:
        # A guest looping through Python host calls keeps the GIL from other threads (wasmtime-py
        # re-enters Python at once), so rotate from here: between runs, and in the middle of a call.
        for _ in range(4):
            app("work", 10, 1)
            continuous.rotate()
        app.during_slow = continuous.rotate
        app("work", 3, 1)
    total = sum(p.sample_count for p in slices)
    assert len(slices) == 4 + 3 + 1
    assert total == continuous.profiler.sample_count
    assert sum(p.host_sample_count for p in slices) > 0.8 * total


def test_report_and_convert_filter_host_frames_on_the_command_line(tmp_path, capsys):
    from wasmtime_gp.cli import main

    app = App(slow_seconds=0.004)
    with app.profiler() as profiler:
        app("work", 20, 1)
    path = profiler.save(tmp_path / "app.json")
    assert main(["report", str(path)]) == 0
    assert "[host] env.slow" in capsys.readouterr().out
    assert main(["report", str(path), "--host", "exclude"]) == 0
    assert "[host]" not in capsys.readouterr().out
    assert (
        main(["convert", str(path), "--to", "collapsed", "--host", "only", "-o", str(tmp_path / "c.txt")])
        == 0
    )
    lines = (tmp_path / "c.txt").read_text().splitlines()
    # With wasmtime-py's way back from the call, as time outside wasm (on the wasm function it returns to).
    assert lines and all(
        line.startswith("work;[host] env.slow ") or "[outside wasm]" in line for line in lines
    )
    assert any(line.startswith("work;[host] env.slow ") for line in lines)
