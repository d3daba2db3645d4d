"""timeout=: the sampling callback ends the guest on time, with a clear trap, and keeps the profile."""

from __future__ import annotations

import time

import pytest
import wasmtime
from conftest import Progress, assert_sample_count_fits, running_time, ticks_seen

from wasmtime_gp import GuestProfiler, ProfilerStateError, ProfilerTypeError, ProfilerValueError


@pytest.mark.parametrize("interval", [0.001, 0.01])
def test_timeout_traps_the_guest_on_time_and_keeps_the_samples(chain, spins_for, interval):
    profiler = GuestProfiler(chain.store, [chain.module], interval=interval, timeout=0.3)
    started = time.perf_counter()
    cpu_before = time.thread_time()
    with pytest.raises(wasmtime.WasmtimeError, match="timed out"), profiler:
        chain.call("run", spins_for(5.0))
    guest_cpu = time.thread_time() - cpu_before
    elapsed = time.perf_counter() - started
    assert profiler.timed_out
    # Never early, and late by about one tick at most, plus what the machine measurably held up: the time
    # the guest's thread waited for a CPU, and the ticks the ticker missed (both next to nothing when free).
    waited = max(0.0, elapsed - guest_cpu)
    ticker_lag = max(0.0, running_time(profiler) - ticks_seen(profiler) * interval)
    assert 0.3 <= elapsed < 0.3 + interval + 0.15 + waited + ticker_lag, (elapsed, waited, ticker_lag)
    # It traps at a tick, so the ticker ticked: the timeout needs no sample to fire, but a tick.
    assert ticks_seen(profiler) >= 1
    # Sampled all along: the ticks the loaded machine let the ticker and the guest have became samples.
    assert_sample_count_fits(profiler, guest_cpu)
    profile = profiler.profile()
    assert profile.stack_counts().most_common(1)[0][0][-1].function == "inner"


def test_timeout_counts_running_time_across_stop_and_start(chain, spins_for):
    # A 1 s budget: 0.2 s of running (a short guest run, then a sleep: the budget is wall-clock time, and a
    # loaded machine may stretch a run of the guest past it), then 1.2 s stopped (more than the 0.8 s left:
    # were stopped time counted, the next run would trap at its first tick), then a run that uses up the rest.
    profiler = GuestProfiler(chain.store, [chain.module], interval=0.001, timeout=1.0)
    cpu_before = time.thread_time()
    with profiler:
        chain.call("run", spins_for(0.02))
        time.sleep(0.2)
    guest_cpu = time.thread_time() - cpu_before
    assert running_time(profiler) < 0.6, "the first run used up most of the budget: the test proves nothing"
    time.sleep(1.2)
    assert not profiler.timed_out
    before = Progress.of(profiler)
    started, cpu_before = time.perf_counter(), time.thread_time()
    with pytest.raises(wasmtime.WasmtimeError, match="timed out"), profiler:
        chain.call("run", spins_for(20.0))
    second_cpu = time.thread_time() - cpu_before
    guest_cpu += second_cpu
    waited = max(0.0, time.perf_counter() - started - second_cpu)
    ticker_lag = max(
        0.0, running_time(profiler) - before.running - (ticks_seen(profiler) - before.ticks) * 0.001
    )
    assert profiler.timed_out
    with pytest.raises(ProfilerStateError, match="timeout was reached"):
        profiler.start()
    chain.call("run", 1000)  # the store itself works on
    # The second run went on for the 0.8 s left, not (as if stopped time counted) next to none, and not
    # more than a tick and what the machine measurably held up (as in the test above).
    assert 1.0 <= running_time(profiler) < 1.0 + 0.001 + 0.15 + waited + ticker_lag
    assert_sample_count_fits(profiler, guest_cpu)


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
