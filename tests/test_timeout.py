"""timeout=: the sampling callback ends the guest on time, with a clear trap, and keeps the profile."""

from __future__ import annotations

import time

import pytest
import wasmtime

from wasmtime_gp import GuestProfiler, ProfilerStateError, ProfilerTypeError, ProfilerValueError


@pytest.mark.parametrize("interval", [0.001, 0.01])
def test_timeout_traps_the_guest_on_time_and_keeps_the_samples(chain, spins_for, interval):
    profiler = GuestProfiler(chain.store, [chain.module], interval=interval, timeout=0.3)
    started = time.perf_counter()
    with pytest.raises(wasmtime.WasmtimeError, match="timed out"), profiler:
        chain.call("run", spins_for(5.0))
    elapsed = time.perf_counter() - started
    assert profiler.timed_out
    # Never early, and late by about one tick at most (generous for a busy machine).
    assert 0.3 <= elapsed < 0.3 + interval + 0.15, elapsed
    profile = profiler.profile()
    assert profile.sample_count > 0.3 / interval * 0.5
    assert profile.stack_counts().most_common(1)[0][0][-1].function == "inner"


def test_timeout_counts_running_time_across_stop_and_start(chain, spins_for):
    # A 1 s budget: 0.2 s of running, then 1.2 s stopped (more than the 0.8 s left: were stopped time
    # counted, the next run would trap at its first tick), then a run that uses up the rest.
    profiler = GuestProfiler(chain.store, [chain.module], interval=0.001, timeout=1.0)
    with profiler:
        chain.call("run", spins_for(0.2))
    time.sleep(1.2)
    assert not profiler.timed_out
    with pytest.raises(wasmtime.WasmtimeError, match="timed out"), profiler:
        chain.call("run", spins_for(20.0))
    assert profiler.timed_out
    with pytest.raises(ProfilerStateError, match="timeout was reached"):
        profiler.start()
    chain.call("run", 1000)  # the store itself works on
    # The second run went on for most of the 0.8 s left (at 1 kHz; a loaded machine may lose some ticks).
    assert profiler.profile().sample_count > 200 + 400


def test_no_timeout_by_default(chain, spins_for):
    with GuestProfiler(chain.store, [chain.module], interval=0.001) as profiler:
        chain.call("run", spins_for(0.3))
    assert not profiler.timed_out


@pytest.mark.parametrize(("timeout", "error"), [(0, ProfilerValueError), (-1, ProfilerValueError),
                                                (float("nan"), ProfilerValueError), ("1s", ProfilerTypeError),
                                                (True, ProfilerTypeError)])  # fmt: skip
def test_bad_timeouts(chain, timeout, error):
    with pytest.raises(error, match="timeout"):
        GuestProfiler(chain.store, [chain.module], timeout=timeout)
