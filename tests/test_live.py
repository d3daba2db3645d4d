"""Switching profiling on and off in a running service: start() and stop() from any thread, mid-call."""

from __future__ import annotations

import gc
import gzip
import json
import threading
import time
from collections import Counter

import pytest
from conftest import instantiate
from guests import CHAIN

from wasmtime_gp import GuestProfiler, ProfilerStateError, _test_utils, live

WAIT = 30.0  # seconds: a bound on every wait here, far above what an idle machine needs (a few ms)


def pprof_samples(data: bytes) -> list[dict[str, str]]:
    """The string labels of each sample of a gzipped pprof profile."""
    from wasmtime_gp.exports.pprof import _profile_class

    message = _profile_class()()
    message.ParseFromString(gzip.decompress(data))
    strings = message.string_table
    return [{strings[label.key]: strings[label.str] for label in sample.label} for sample in message.sample]


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


def test_a_capture_samples_every_tracked_store_while_their_guests_run(spins_for):
    engine_guests = [instantiate(CHAIN) for _ in range(2)]
    for index, guest in enumerate(engine_guests):
        live.track(guest.store, [guest.module], name=f"worker-{index}", labels={"tenant": f"t{index}"})
    assert not _test_utils.ticker_thread_is_running()  # tracked: nothing runs until a capture
    running = threading.Event()
    stop = threading.Event()

    def serve(guest) -> None:
        running.set()
        while not stop.is_set():
            guest.call("run", spins_for(0.02))

    workers = [threading.Thread(target=serve, args=(guest,)) for guest in engine_guests]
    for worker in workers:
        worker.start()
    try:
        running.wait(WAIT)
        capture = live.capture(0.3)
        late = instantiate(CHAIN)
        live.track(late.store, [late.module], name="late")  # no capture runs: it waits for the next
        other = threading.Thread(target=lambda: live.capture(0.3))
        other.start()
        _wait_for(live.capturing, "the other capture")
        with pytest.raises(ProfilerStateError, match="one at a time"):
            live.capture(0.1)
        other.join()
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert sorted(store.name for store in capture.stores) == ["worker-0", "worker-1"]
    assert all(store.sample_count > 0 for store in capture.stores)
    merged = json.loads(capture.firefox())
    assert sorted(thread["name"] for thread in merged["threads"]) == ["worker-0", "worker-1"]
    by_tenant = Counter()
    for sample in pprof_samples(capture.pprof()):
        by_tenant[(sample["store"], sample["tenant"])] += 1
    assert set(by_tenant) == {("worker-0", "t0"), ("worker-1", "t1")}


def test_a_store_that_goes_leaves_the_registry():
    guest = instantiate(CHAIN)
    before = live.tracked_count()
    live.track(guest.store, [guest.module])
    assert live.tracked_count() == before + 1
    del guest
    gc.collect()
    assert live.tracked_count() == before


def test_a_capture_with_nothing_running_has_no_store():
    guest = instantiate(CHAIN)
    live.track(guest.store, [guest.module])
    capture = live.capture(0.05)
    assert capture.stores == () and capture.sample_count == 0
    with pytest.raises(ProfilerStateError, match="no sample"):
        capture.firefox()


def test_a_store_tracked_during_a_capture_joins_it(spins_for):
    guest = instantiate(CHAIN)
    result: list[live.Capture] = []
    capturing = threading.Thread(target=lambda: result.append(live.capture(1.0)))
    capturing.start()
    try:
        _wait_for(live.capturing, "the capture")
        live.track(guest.store, [guest.module], name="joined")
        guest.call("run", spins_for(0.2))
    finally:
        capturing.join()
    assert [store.name for store in result[0].stores] == ["joined"]
    assert result[0].stores[0].sample_count > 0
