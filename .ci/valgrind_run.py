"""A short profiled run for valgrind (.ci/sanitize): start, sample at 1 kHz on two threads, rotate, stop, finish."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import threading

from conftest import instantiate
from guests import CHAIN

from wasmtime_gp import ContinuousProfiler, GuestProfiler


def main() -> None:
    guests = [instantiate(CHAIN) for _ in range(2)]
    profiler = GuestProfiler(guests[0].store, [guests[0].module], interval=0.001)
    continuous = ContinuousProfiler(guests[1].store, [guests[1].module], sink=lambda r: None, period=0.05)
    with profiler, continuous:
        threads = [threading.Thread(target=g.call, args=("run", 3_000_000)) for g in guests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert profiler.profile().sample_count > 0
    print("valgrind run: ok")


if __name__ == "__main__":
    main()
