"""What a profile holds: nested stacks, a sample count that fits the run, CPU deltas, names."""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
import wasmtime
from conftest import assert_sample_count_fits, instantiate, read_profile, run_isolated, sample_bounds
from guests import ANONYMOUS, CHAIN, NAMED

from wasmtime_gp import GuestProfiler, Profile, ProfilerValueError, _abi, _core
from wasmtime_gp.profile import OFF_CPU, ON_CPU, OUTSIDE_WASM


def test_nested_stacks_with_the_looping_function_as_dominant_leaf(chain, spins_for):
    cpu_before = time.thread_time()
    with GuestProfiler(chain.store, [chain.module], interval=0.001) as profiler:
        chain.call("run", spins_for(0.5))
    guest_cpu = time.thread_time() - cpu_before
    profile = read_profile(profiler.finish())

    # About 500 on a free machine; what the ticks the machine allowed give on a loaded one.
    assert len(profile.stacks) >= max(1, sample_bounds(profiler, guest_cpu)[0])
    assert all(stack[:1] == ("outer",) for stack in profile.stacks)
    most_common, count = Counter(profile.stacks).most_common(1)[0]
    assert most_common == ("outer", "middle", "inner")
    assert count >= 0.9 * len(profile.stacks)


@pytest.mark.parametrize("interval", [0.01, 0.001, 0.0001])
def test_sample_count_fits_run_time_and_interval(chain, spins_for, interval):
    profiler = GuestProfiler(chain.store, [chain.module], interval=interval)
    profiler.start()
    started, cpu_before = time.perf_counter(), time.thread_time()
    chain.call("run", spins_for(0.5))
    guest_cpu = time.thread_time() - cpu_before
    elapsed = time.perf_counter() - started
    profiler.stop()

    # Never more than the run had intervals; and one sample per tick that came while the guest ran (shared CI
    # machines starve the ticker and the guest: a broken ticker or callback is off by far more).
    assert profiler.sample_count <= 1.1 * elapsed / interval + 2
    assert_sample_count_fits(profiler, guest_cpu)
    assert len(read_profile(profiler.finish()).stacks) == profiler.sample_count


@pytest.mark.parametrize("reader", ["ticker", "own clock"])
def test_cpu_deltas_agree_with_the_guest_threads_cpu_clock(chain, spins_for, reader):
    """Each sample's CPU time is the guest thread's CLOCK_THREAD_CPUTIME_ID: as the ticker read it just before
    the sample's tick (an on-time sample), or as the guest's thread read it (a late one; a threshold of 0 makes
    nearly every sample late). Either way the deltas add up to that clock's reading over the run, within 1 %."""
    previous = _core._set_outside_min_ns(0) if reader == "own clock" else None
    try:
        profiler = GuestProfiler(chain.store, [chain.module], interval=0.001)
        cpu_before = time.thread_time_ns()
        profiler.start()
        chain.call("run", spins_for(0.5))
        ended_ms = time.time() * 1000
        cpu_used_us = (time.thread_time_ns() - cpu_before) / 1000
        profiler.stop()
    finally:
        if previous is not None:
            _core._set_outside_min_ns(previous)
    own, samples = profiler._native.own_clock_samples, profiler._native.wasmtime_sample_count
    profile = Profile.from_bytes(profiler.finish())
    deltas = [1e6 * sample.cpu_delta for sample in profile.samples]
    assert deltas and all(delta >= 0 for delta in deltas) and any(delta > 0 for delta in deltas)
    # Quiet, nearly every sample takes the ticker's reading; under load, preempted ones are late and read their
    # own: some must have taken the ticker's. With a threshold of 0, nearly every one reads its own.
    assert (own < samples) if reader == "ticker" else (own > samples / 2), (own, samples)
    # They cover start() to the last sample: the guest ran on after it for at most the time since (wall
    # clock, as Wasmtime's sample times), which a loaded machine stretches.
    last_sample_ms = 1000 * (profile.start_time + profile.samples[-1].time)
    after_last_us = max(0.0, ended_ms - last_sample_ms) * 1000
    assert 0.99 * (cpu_used_us - after_last_us) <= sum(deltas) <= 1.01 * cpu_used_us, (
        sum(deltas),
        cpu_used_us,
        after_last_us,
    )


def test_guest_called_repeatedly_between_python_code(chain, spins_for):
    with GuestProfiler(chain.store, [chain.module], interval=0.001) as profiler:
        for _ in range(5):
            chain.call("run", spins_for(0.05))
            sum(range(10_000))  # Python between guest calls: no samples, no crash
    stacks = read_profile(profiler.finish()).stacks
    assert Counter(stacks).most_common(1)[0][0] == ("outer", "middle", "inner")


def _profile(guest, modules, spins, **kwargs):
    """Profile a short run of CHAIN (whose module `guest.module` may appear under any name)."""
    with GuestProfiler(guest.store, modules, interval=0.0005, **kwargs) as profiler:
        guest.call("run", spins)
        # What is checked is names, which need a sample: a loaded machine may give a short run no tick.
        deadline = time.monotonic() + 30
        while profiler.sample_count == 0 and time.monotonic() < deadline:
            guest.call("run", spins)
    return read_profile(profiler.finish())


@pytest.mark.skipif(_abi.WASMTIME_MAJOR < _abi.MULTI_MODULE_MAJOR, reason="needs several modules")
def test_module_names_from_pairs_mapping_name_section_and_position(spins_for):
    guest = instantiate(CHAIN)
    named = wasmtime.Module(guest.engine, NAMED)
    anonymous = wasmtime.Module(guest.engine, ANONYMOUS)
    spins = spins_for(0.05)

    # The profile lists the libraries that appear in samples, under the names we gave.
    assert _profile(guest, [("app", guest.module)], spins).lib_names == ["app"]
    assert _profile(guest, {"lib": named, "app": guest.module}, spins).lib_names == ["app"]
    # Unnamed: the name section's module name, else "module<position>".
    assert _profile(guest, [anonymous, guest.module], spins).lib_names == ["chain"]
    assert _profile(guest, [anonymous, guest.module], spins).process_name == "module0"
    assert _profile(guest, [named, guest.module], spins).process_name == "calculator"


@pytest.mark.skipif(_abi.WASMTIME_MAJOR >= _abi.MULTI_MODULE_MAJOR, reason="Wasmtime >= 32 resolves them")
def test_several_modules_are_refused_where_wasmtime_cannot_resolve_their_frames(chain):
    other = wasmtime.Module(chain.engine, NAMED)
    with pytest.raises(ProfilerValueError, match="cannot resolve stack frames when a profiler lists 2"):
        GuestProfiler(chain.store, [chain.module, other])


def test_module_name_from_the_name_section(spins_for):
    guest = instantiate(CHAIN)
    assert _profile(guest, [guest.module], spins_for(0.05)).lib_names == ["chain"]
    assert _profile(guest, {"app": guest.module}, spins_for(0.05)).lib_names == ["app"]
    anonymous = instantiate(ANONYMOUS)
    assert GuestProfiler(anonymous.store, [anonymous.module]).finish().count(b'"processName":"module0"') == 1


def test_process_name_defaults_to_the_first_module(chain, spins_for):
    spins = spins_for(0.05)
    assert _profile(chain, [chain.module], spins).process_name == "chain"
    assert _profile(chain, [chain.module], spins, name="checkout-service").process_name == "checkout-service"
    unicode_names = _profile(chain, [("ünïcode-名", chain.module)], spins)
    assert unicode_names.lib_names == ["ünïcode-名"]
    assert unicode_names.process_name == "ünïcode-名"


def test_only_listed_modules_contribute_frames(chain, spins_for):
    other = wasmtime.Module(chain.engine, NAMED)
    with GuestProfiler(chain.store, [other], interval=0.001) as profiler:
        chain.call("run", spins_for(0.2))
    profile = read_profile(profiler.finish())
    assert profiler.sample_count > 0
    # No wasm frame (a loaded machine may add a rare `[outside wasm]` sample: test_outside_wasm bounds them).
    assert all(set(stack) <= {OUTSIDE_WASM, ON_CPU, OFF_CPU} for stack in profile.stacks)


def test_sampling_time_is_the_cost_inside_the_sample_call(chain, spins_for):
    with GuestProfiler(chain.store, [chain.module], interval=0.0005) as profiler:
        started, cpu_before = time.perf_counter(), time.thread_time()
        chain.call("run", spins_for(0.2))
        elapsed = time.perf_counter() - started
        guest_cpu = time.thread_time() - cpu_before
    assert profiler.sample_count >= max(1, sample_bounds(profiler, guest_cpu)[0])  # about 400 when free
    assert 0 < profiler.sampling_time < 0.5 * elapsed


def test_one_cpu_holds_the_ticker_at_its_floor_and_says_so():
    result = run_isolated(
        """
        import os, time, warnings
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        from conftest import instantiate
        from guests import CHAIN
        from wasmtime_gp import GuestProfiler
        guest = instantiate(CHAIN)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            profiler = GuestProfiler(guest.store, [guest.module], interval=0.00002)
        cpu_before = time.thread_time()
        with profiler:
            guest.call("run", 300_000_000)
        guest_cpu = time.thread_time() - cpu_before
        native = profiler._native
        print([str(w.message) for w in caught], "RUN", profiler.sample_count, native.ticks_seen,
              native.running_ns / 1e9, guest_cpu)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "may use one CPU only" in result.stdout and "every 50 us rather than every 20 us" in result.stdout
    samples, ticks, running, guest_cpu = (float(word) for word in result.stdout.split("RUN ")[1].split())
    # The clock ticks at the 50 us floor, never faster; each tick preempts the guest on the one CPU they share,
    # and the guest samples at every one of its own (spinning, the ticker would hold the CPU and the guest get
    # next to no samples). How many ticks there are depends on what else runs on that CPU.
    assert ticks <= running * 20_000 + 2
    assert 0.5 * ticks * min(1.0, guest_cpu / running) - 2 <= samples <= ticks + 2


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the busy process at nice -20")
def test_a_starved_ticker_is_reported_not_hidden():
    # One CPU shared with a busy process of much higher priority: the ticker wakes milliseconds late.
    result = run_isolated(
        """
        import os, subprocess, sys, warnings
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        hog = subprocess.Popen(["taskset", "-c", str(cpu), "nice", "-n", "-20", sys.executable, "-c",
                                "while True: pass"])
        try:
            from conftest import instantiate
            from guests import CHAIN
            from wasmtime_gp import GuestProfiler
            guest = instantiate(CHAIN)
            profiler = GuestProfiler(guest.store, [guest.module], interval=0.0001)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with profiler:
                    guest.call("run", 20_000_000)
        finally:
            hog.kill()
        print([str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])
        """
    )
    assert result.returncode == 0, result.stderr
    assert "the ticker managed" in result.stdout
    assert "could not get a CPU in time" in result.stdout
