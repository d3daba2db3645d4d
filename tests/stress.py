"""Stress: guests sampled at 10 kHz on many threads while others stop, start, rotate, finish and drop.

    python tests/stress.py                       # the long run: 8 guest threads for 60 s
    python tests/stress.py --seconds 10 --threads 4

Each guest thread runs its own store (two threads per engine) under a ContinuousProfiler. A chaos
thread, at random, stops, rotates or closes a thread's profiler directly (those are safe from any
thread) or asks the thread to restart it, drop it unfinished, or drop its store and start over
(starting and dropping happen between guest calls, where the store is idle). At the end every
profiler is closed, and for each the samples delivered (rotations, plus the count at which an
unfinished one was dropped) must equal the samples it took. tests/test_stress.py runs a short version.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guests import CHAIN

from wasmtime_gp import ContinuousProfiler, RotatedProfile

INTERVAL = 0.0001  # 10 kHz
SPINS = 200_000  # per guest call: well under a millisecond


@dataclass
class Ledger:
    """One profiler's samples: those taken (its final count) and those delivered."""

    delivered: int = 0
    taken: int | None = None

    def sink(self, rotated: RotatedProfile) -> None:
        samples = json.loads(rotated.data)["threads"][0]["samples"]["length"]
        assert samples == rotated.sample_count, (samples, rotated.sample_count)
        self.delivered += samples


@dataclass
class Worker:
    engine: wasmtime.Engine
    module: wasmtime.Module
    rng: random.Random
    ledgers: list[Ledger] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    profiler: ContinuousProfiler | None = None
    calls: int = 0

    def new_store(self) -> None:
        self.store = wasmtime.Store(self.engine)
        self.store.set_epoch_deadline(1 << 40)
        run = wasmtime.Instance(self.store, self.module, []).exports(self.store)["run"]
        assert isinstance(run, wasmtime.Func)
        self.run = run

    def new_profiler(self) -> None:
        ledger = Ledger()
        self.ledgers.append(ledger)
        self.profiler = ContinuousProfiler(
            self.store, [self.module], sink=ledger.sink, interval=INTERVAL, period=None, max_samples=10**9
        )
        self.profiler.start()

    def drop_profiler(self) -> None:
        """Drop it unfinished: what it took but never delivered is accounted as taken-and-dropped."""
        assert self.profiler is not None
        self.profiler.stop()  # delivers what it has, so nothing is lost but what the user drops
        self.ledgers[-1].taken = self.profiler.profiler.sample_count
        self.profiler = None

    def loop(self, stop: threading.Event) -> None:
        self.new_store()
        self.new_profiler()
        while not stop.is_set():
            with self.lock:
                requests, self.requests = self.requests, []
                for request in requests:
                    self.apply(request)
                if self.profiler is None or self.profiler.profiler.finished:
                    self.close_current()
                    self.new_profiler()
            self.run(self.store, SPINS)
            self.calls += 1
        with self.lock:
            self.close_current()

    def apply(self, request: str) -> None:
        if request == "start" and self.profiler is not None and not self.profiler.profiler.finished:
            if not self.profiler.profiler.running:
                self.profiler.profiler.start()  # its rotation thread still runs: only sampling stopped
        elif request == "drop" and self.profiler is not None:
            self.drop_profiler()
        elif request == "new store":
            self.close_current()
            self.new_store()

    def close_current(self) -> None:
        if self.profiler is not None:
            self.profiler.close()
            self.ledgers[-1].taken = self.profiler.profiler.sample_count
            self.profiler = None

    def chaos(self) -> None:
        """One random action on this worker, from another thread."""
        action = self.rng.choice(["stop", "rotate", "close", "start", "drop", "new store", "nothing"])
        with self.lock:
            profiler = self.profiler
            if action in ("start", "drop", "new store"):
                self.requests.append(action)
                return
        if profiler is None or profiler.profiler.finished:
            return
        if action == "stop":
            profiler.profiler.stop()
        elif action == "rotate":
            profiler.rotate()
        elif action == "close":
            with self.lock:
                if self.profiler is profiler:
                    self.close_current()


def run(seconds: float, threads: int, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    engines = [_engine() for _ in range((threads + 1) // 2)]
    modules = [wasmtime.Module(engine, CHAIN) for engine in engines]
    workers = [Worker(engines[i // 2], modules[i // 2], random.Random(rng.random())) for i in range(threads)]
    stop = threading.Event()
    guest_threads = [
        threading.Thread(target=w.loop, args=(stop,), name=f"guest {i}") for i, w in enumerate(workers)
    ]
    for thread in guest_threads:
        thread.start()
    actions = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rng.choice(workers).chaos()
        actions += 1
        time.sleep(rng.uniform(0, 0.01))
    stop.set()
    for thread in guest_threads:
        thread.join(timeout=60)
        if thread.is_alive():
            faulthandler.dump_traceback(all_threads=True)
            raise AssertionError(f"{thread.name} did not finish: a deadlock")
    ledgers = [ledger for worker in workers for ledger in worker.ledgers]
    for ledger in ledgers:
        assert ledger.taken is not None
        assert ledger.delivered == ledger.taken, (ledger.delivered, ledger.taken)
    return {
        "threads": threads,
        "seconds": round(seconds),
        "guest calls": sum(worker.calls for worker in workers),
        "chaos actions": actions,
        "profilers": len(ledgers),
        "samples": sum(ledger.taken or 0 for ledger in ledgers),
    }


def _engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(run(args.seconds, args.threads, args.seed)))


if __name__ == "__main__":
    main()
