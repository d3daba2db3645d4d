"""Switching profiling on and off in a running service: start() and stop() from any thread, mid-call."""

from __future__ import annotations

import threading
import time

from conftest import instantiate
from guests import CHAIN

from wasmtime_gp import GuestProfiler, _test_utils

WAIT = 30.0  # seconds: a bound on every wait here, far above what an idle machine needs (a few ms)


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {WAIT} s"
        time.sleep(0.001)


def test_start_and_stop_from_another_thread_while_the_guest_runs(spins_for):
    guest = instantiate(CHAIN)
    profiler = GuestProfiler(guest.store, [guest.module], interval=0.0005)
    assert not _test_utils.ticker_thread_is_running()  # made, not started: no ticker thread
    entered = threading.Event()

    def run() -> None:
        entered.set()
        guest.call("run", spins_for(3.0))  # one call, one loop: no function entry to pick up a new deadline

    worker = threading.Thread(target=run)
    worker.start()
    try:
        entered.wait(WAIT)
        time.sleep(0.05)
        profiler.start()
        _wait_for(lambda: profiler.sample_count > 0 or not worker.is_alive(), "a sample after start()")
        assert worker.is_alive(), "the guest call ended before a sample: start() did not reach it"
        _wait_for(lambda: profiler.sample_count >= 20 or not worker.is_alive(), "20 samples")
        profiler.stop()
        stopped_at = profiler.sample_count
        assert worker.is_alive(), "the guest call ended while sampling: stop() was not mid-call"
    finally:
        worker.join()
    # A sample being taken as stop() ran may land; none after.
    assert profiler.sample_count - stopped_at <= 1
    profile = profiler.profile()
    assert profile.sample_count == profiler.sample_count and profile.top(1)[0].frame.function == "inner"


def test_a_profiler_made_but_never_started_costs_nothing(spins_for):
    guest = instantiate(CHAIN)
    profiler = GuestProfiler(guest.store, [guest.module], interval=0.0001)
    guest.call("run", spins_for(0.2))
    # No ticker thread for its engine, so no tick and no callback: the guest ran as without a profiler.
    assert not _test_utils.ticker_thread_is_running()
    assert _test_utils.callback_count(profiler._native) == 0 and profiler.sample_count == 0
    profiler.finish()
