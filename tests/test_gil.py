"""The point of the package: sampling never waits for the GIL.

While the guest runs on one thread, this thread spins in pure Python with a switch
interval of 1000 s, so it never hands the GIL over. A witness thread that needs the GIL
to count proves the GIL really was held; samples must keep arriving at the requested rate.
A profiler whose tick or sample needed Python would record nothing in that window.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest
from conftest import Guest

from wasmtime_gp import GuestProfiler


def _wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.001)


@pytest.mark.parametrize("interval", [0.001, 0.0001])
def test_samples_keep_arriving_while_another_thread_holds_the_gil(chain: Guest, spins_for, interval):
    profiler = GuestProfiler(chain.store, [chain.module], interval=interval)
    guest = threading.Thread(target=chain.call, args=("run", spins_for(2.5)))
    witness_count = 0
    witness_stop = threading.Event()

    def witness() -> None:
        nonlocal witness_count
        while not witness_stop.is_set():
            witness_count += 1
            time.sleep(0)

    witness_thread = threading.Thread(target=witness)
    profiler.start()
    guest.start()
    witness_thread.start()
    _wait_until(lambda: profiler.sample_count > 10 and witness_count > 10)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1000)
    try:
        # A hand-over requested under the old interval may still be pending: let it play out first.
        settle = time.perf_counter()
        while time.perf_counter() - settle < 0.05:
            pass
        # From here to the end of the loop this thread keeps the GIL.
        witness_before = witness_count
        samples_before = profiler.sample_count
        started = time.perf_counter()
        while time.perf_counter() - started < 1.0:
            pass
        held_for = time.perf_counter() - started
        samples_during = profiler.sample_count - samples_before
        witness_during = witness_count - witness_before
    finally:
        sys.setswitchinterval(previous)
    witness_stop.set()
    guest.join()
    witness_thread.join()
    profiler.stop()

    assert witness_during == 0, "the GIL was released during the window; the test proves nothing"
    requested = held_for / interval
    print(
        f"interval {interval * 1e6:g} us: {samples_during} samples in {held_for:.3f} s with the GIL held "
        f"({samples_during / held_for:.0f}/s, requested {1 / interval:.0f}/s)"
    )
    # A tick or sample that needed the GIL would give about zero here; a quarter leaves room for a busy machine.
    assert samples_during >= 0.25 * requested
