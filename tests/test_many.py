"""Many profilers at once: stores of one engine, several engines, several threads; one ticker thread."""

from __future__ import annotations

import threading
import time

from conftest import (
    Progress,
    assert_sample_count_fits,
    instantiate,
    make_engine,
    native_thread_count,
    sample_bounds,
    ticks_seen,
)
from guests import CHAIN

from wasmtime_gp import GuestProfiler, _test_utils


def _run_concurrently(jobs):
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_two_stores_of_one_engine_each_sample_at_their_own_interval(spins_for):
    engine = make_engine()
    fast_guest, slow_guest = instantiate(CHAIN, engine), instantiate(CHAIN, engine)
    fast = GuestProfiler(fast_guest.store, [fast_guest.module], interval=0.0002)
    slow = GuestProfiler(slow_guest.store, [slow_guest.module], interval=0.002)
    elapsed, cpu = {}, {}

    def run(guest, key):
        started, cpu_before = time.perf_counter(), time.thread_time()
        guest.call("run", spins_for(0.6))
        cpu[key] = time.thread_time() - cpu_before
        elapsed[key] = time.perf_counter() - started

    fast.start()
    slow.start()
    assert _test_utils.ticker_clock_count() == 1  # one clock for the engine, ticking at the finer interval
    _run_concurrently([lambda: run(fast_guest, "fast"), lambda: run(slow_guest, "slow")])
    fast.stop()
    slow.stop()
    fast_rate = fast.sample_count / elapsed["fast"]
    slow_rate = slow.sample_count / elapsed["slow"]
    print(f"fast {fast_rate:.0f}/s (asked 5000/s), slow {slow_rate:.0f}/s (asked 500/s)")
    assert fast_rate <= 1.1 * 5000 + 2 / elapsed["fast"] and slow_rate <= 1.1 * 500 + 2 / elapsed["slow"]
    # Whatever the ticks the machine allowed: the fast store samples at each tick of the shared clock, the
    # slow one at every tenth (sampling at each tick it would be 10 times over its bound).
    assert_sample_count_fits(fast, cpu["fast"])
    assert_sample_count_fits(slow, cpu["slow"], clock=fast.interval)
    assert fast.profile().stack_counts().most_common(1)[0][0][-1].function == "inner"


def test_several_engines_on_several_threads_share_one_ticker_thread(spins_for):
    guests = [instantiate(CHAIN) for _ in range(3)]
    profilers = [GuestProfiler(g.store, [g.module], interval=0.001) for g in guests]
    threads_before = native_thread_count()
    for profiler in profilers:
        profiler.start()
    assert _test_utils.ticker_thread_is_running() and _test_utils.ticker_clock_count() == 3
    assert native_thread_count(threads_before + 1) == threads_before + 1
    cpu = [0.0] * len(guests)

    def run(index):
        cpu_before = time.thread_time()
        guests[index].call("run", spins_for(0.3))
        cpu[index] = time.thread_time() - cpu_before

    try:
        _run_concurrently([lambda i=i: run(i) for i in range(len(guests))])
    finally:
        for profiler in profilers:
            profiler.stop()
    for profiler, guest_cpu in zip(profilers, cpu):
        assert profiler.sample_count >= max(1, sample_bounds(profiler, guest_cpu)[0])  # about 300 when free
    assert not _test_utils.ticker_thread_is_running() and _test_utils.ticker_clock_count() == 0
    assert native_thread_count(threads_before) == threads_before


def test_a_hundred_engines_get_one_thread_not_a_hundred():
    guests = [instantiate(CHAIN) for _ in range(100)]
    threads_before = native_thread_count()
    profilers = [GuestProfiler(g.store, [g.module], interval=0.001) for g in guests]
    for profiler in profilers:
        profiler.start()
    try:
        assert _test_utils.ticker_clock_count() == 100
        assert native_thread_count(threads_before + 1) == threads_before + 1
        cpu_before = time.thread_time()
        guests[42].call("run", 20_000_000)
        guest_cpu = time.thread_time() - cpu_before
    finally:
        for profiler in profilers:
            profiler.stop()
    assert profilers[42].sample_count >= sample_bounds(profilers[42], guest_cpu)[0]
    assert (
        native_thread_count(threads_before) == threads_before and not _test_utils.ticker_thread_is_running()
    )


def test_a_stopped_profiler_checks_in_at_ticks_of_its_engine_and_a_finished_one_never(spins_for):
    engine = make_engine()
    paused_guest, busy_guest = instantiate(CHAIN, engine), instantiate(CHAIN, engine)
    paused = GuestProfiler(paused_guest.store, [paused_guest.module], interval=0.0002)
    busy = GuestProfiler(busy_guest.store, [busy_guest.module], interval=0.0002)
    with paused:
        paused_guest.call("run", spins_for(0.05))
    samples, callbacks = paused.sample_count, _test_utils.callback_count(paused._native)
    assert not _test_utils.ticker_thread_is_running()  # nothing runs: no ticker thread, so no callback

    with busy:  # its ticker ticks the engine: the busy guest need not run
        paused_guest.call("run", spins_for(0.3))
    # Stopped, it takes no sample but checks in at the busy profiler's ticks (a start() from any thread
    # takes effect at the next one): at most one callback per tick of the engine.
    assert paused.sample_count == samples
    assert 0 < _test_utils.callback_count(paused._native) - callbacks <= ticks_seen(busy) + 1
    before = Progress.of(paused)
    callbacks, taken = _test_utils.callback_count(paused._native), paused._native.wasmtime_sample_count
    with paused:
        cpu_before = time.thread_time()
        paused_guest.call("run", spins_for(0.05))
        guest_cpu = time.thread_time() - cpu_before
    # And start() brings it back at once: a callback, and a sample, at each tick of this run (about 250). (The
    # profile may count more: a sample that came back from outside wasm stands for the intervals it missed.)
    assert (
        _test_utils.callback_count(paused._native) - callbacks >= paused._native.wasmtime_sample_count - taken
    )
    assert_sample_count_fits(paused, guest_cpu, since=before)
    # Finished, its store is left alone: at most the one callback that found it finished.
    paused.finish()
    callbacks = _test_utils.callback_count(paused._native)
    with busy:
        paused_guest.call("run", spins_for(0.1))
    assert _test_utils.callback_count(paused._native) - callbacks <= 1
