"""The point of the package: sampling never waits for the GIL.

While the guest runs on one thread, this thread spins in pure Python with a switch
interval of 1000 s, so it never hands the GIL over. A witness thread that needs the GIL
to count proves the GIL really was held; samples must keep arriving at the requested rate.
A profiler whose tick or sample needed Python would record nothing in that window.

How many ticks a loaded machine lets the ticker thread have, and how much CPU the guest's thread gets, is
the scheduler's business: the window is judged against what was measured in it (the ticks of the engine's
clock, read by a second profiler on an idle store of the same engine, and the guest thread's CPU time) and
against the tick rate of the same run outside the window.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest
from conftest import Guest, instantiate, running_time, thread_cpu_time, ticks_seen
from guests import CHAIN

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
    idle = instantiate(CHAIN, chain.engine)
    window = GuestProfiler(idle.store, [idle.module], interval=interval)  # counts the window's ticks
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
        window.start()
        samples_before = profiler.sample_count
        guest_cpu_before = thread_cpu_time(guest)
        started = time.perf_counter()
        while time.perf_counter() - started < 1.0:
            pass
        held_for = time.perf_counter() - started
        samples_during = profiler.sample_count - samples_before
        guest_cpu = thread_cpu_time(guest) - guest_cpu_before
        witness_during = witness_count - witness_before
    finally:
        window.stop()  # (stop() itself lets the GIL go)
        sys.setswitchinterval(previous)
    witness_stop.set()
    guest.join()
    witness_thread.join()
    profiler.stop()

    assert witness_during == 0, "the GIL was released during the window; the test proves nothing"
    ticks_during = ticks_seen(window)
    ticks_outside = ticks_seen(profiler) - ticks_during
    outside = running_time(profiler) - running_time(window)
    print(
        f"interval {interval * 1e6:g} us: {samples_during} samples and {ticks_during} ticks in {held_for:.3f} s "
        f"with the GIL held, the guest on a CPU for {guest_cpu:.3f} s (requested {1 / interval:.0f}/s); "
        f"{ticks_outside} ticks in {outside:.3f} s outside"
    )
    # A tick that needed the GIL would not come in the window: the ticker ticks there at least at a quarter
    # of its rate outside it (where this thread sleeps and waits; a free machine gives about the same rate).
    assert ticks_during / held_for >= 0.25 * ticks_outside / outside > 0
    # A sample that needed the GIL would not be taken: the ticks that came while the guest ran are samples.
    assert samples_during >= 0.5 * ticks_during * min(1.0, guest_cpu / held_for) - 2
    assert samples_during >= 1
