"""Live services: what a profiler costs before it runs, how soon start() from another thread takes effect, and
what the overhead budget saves a deep guest.

    python benchmarks/live.py                # 5 runs per configuration
    python benchmarks/live.py --reps 3

Each configuration runs in a fresh process; configurations are interleaved and shuffled. Printed: min and median.
  idle        a guest spinning about 0.5 s: no profiler / a GuestProfiler made, never started / its store
              tracked by live.track(), no capture. Wall time vs no profiler, callbacks, and whether a ticker
              thread ever ran.
  start       a guest in one long call on a thread; start() from the main thread; the time until the first
              sample, at 1 ms and 100 us.
  budget      a 10,000-deep guest spinning at the bottom for about 0.5 s: no profiler / 100 us / 100 us with
              overhead_budget=0.02. Wall time vs no profiler, samples, and the mean interval allowed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' guests: one definition for both
from guests import CHAIN, DEEP

CONFIGS = [
    "idle:none",
    "idle:made",
    "idle:tracked",
    "start:0.001",
    "start:0.0001",
    "budget:none",
    "budget:exact",
    "budget:0.02",
]
DEPTH = 10_000


def _engine() -> Any:
    import wasmtime

    config = wasmtime.Config()
    config.epoch_interruption = True
    return wasmtime.Engine(config)


def _instance(wat: str) -> tuple[Any, Any, Any]:
    import wasmtime

    engine = _engine()
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    module = wasmtime.Module(engine, wat)
    return store, module, wasmtime.Instance(store, module, []).exports(store)["run"]


def _spins_per_second(store: Any, run: Any, *args: int) -> float:
    started = time.thread_time()
    run(store, *args, 20_000_000)
    return 20_000_000 / max(time.thread_time() - started, 1e-3)


def idle(kind: str) -> dict[str, float]:
    from wasmtime_gp import GuestProfiler, _test_utils, live

    store, module, run = _instance(CHAIN)
    spins = int(_spins_per_second(store, run) * 0.5)
    profiler = None
    if kind == "made":
        profiler = GuestProfiler(store, [module], interval=0.0001)
    elif kind == "tracked":
        live.track(store, [module], interval=0.0001)
    ticker_seen = False
    started = time.perf_counter()
    done = threading.Event()

    def watch() -> None:
        nonlocal ticker_seen
        while not done.is_set():
            ticker_seen = ticker_seen or _test_utils.ticker_thread_is_running()
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    run(store, spins)
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    callbacks = _test_utils.callback_count(profiler._native) if profiler is not None else 0
    return {"wall": elapsed, "callbacks": callbacks, "ticker": float(ticker_seen)}


def start(interval: float) -> dict[str, float]:
    from wasmtime_gp import GuestProfiler

    store, module, run = _instance(CHAIN)
    spins = int(_spins_per_second(store, run) * 2.0)
    profiler = GuestProfiler(store, [module], interval=interval)
    worker = threading.Thread(target=run, args=(store, spins))
    worker.start()
    time.sleep(0.2)
    started = time.perf_counter()
    profiler.start()
    while profiler.sample_count == 0 and worker.is_alive():
        time.sleep(0.00005)
    latency = time.perf_counter() - started
    profiler.stop()
    worker.join()
    return {"latency_ms": latency * 1e3 if profiler.sample_count else float("nan")}


def budget(kind: str) -> dict[str, float]:
    from wasmtime_gp import GuestProfiler

    store, module, run = _instance(DEEP)
    spins = int(_spins_per_second(store, run, 1) * 0.5)
    profiler = None
    if kind != "none":
        profiler = GuestProfiler(
            store, [module], interval=0.0001, overhead_budget=None if kind == "exact" else float(kind)
        )
        profiler.start()
    started = time.perf_counter()
    run(store, DEPTH, spins)
    elapsed = time.perf_counter() - started
    result = {"wall": elapsed}
    if profiler is not None:
        profile = profiler.profile()
        result["samples"] = profile.sample_count
        result["sampling_share"] = profiler.sampling_time / elapsed
        result["effective_ms"] = (profile.effective_interval or profile.interval) * 1e3
    return result


def measure(config: str) -> dict[str, float]:
    what, kind = config.split(":")
    if what == "idle":
        return idle(kind)
    if what == "start":
        return start(float(kind))
    return budget(kind)


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker)))
        return
    runs: dict[str, list[dict[str, float]]] = {config: [] for config in CONFIGS}
    for _ in range(args.reps):
        for config in random.sample(CONFIGS, len(CONFIGS)):
            command = [sys.executable, __file__, "--worker", config]
            out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout
            runs[config].append(json.loads(out))
    print(f"{args.reps} runs per configuration; min / median")
    plain = _median(runs["idle:none"], "wall")
    print("\nidle: a guest spinning about 0.5 s")
    print(
        f"{'profiler':<10} {'wall s (min / median)':>22} {'vs none':>8} {'callbacks':>10} {'ticker ran':>11}"
    )
    for kind in ("none", "made", "tracked"):
        walls = [run["wall"] for run in runs[f"idle:{kind}"]]
        callbacks = max(run["callbacks"] for run in runs[f"idle:{kind}"])
        ticker = any(run["ticker"] for run in runs[f"idle:{kind}"])
        print(f"{kind:<10} {min(walls):10.3f} / {statistics.median(walls):.3f} {statistics.median(walls) / plain:8.3f}"
              f" {callbacks:10.0f} {'yes' if ticker else 'no':>11}")  # fmt: skip
    print("\nstart() from another thread while the guest runs: time to the first sample")
    for interval in ("0.001", "0.0001"):
        latencies = [run["latency_ms"] for run in runs[f"start:{interval}"]]
        print(f"interval {float(interval) * 1e3:g} ms: {min(latencies):.3f} / {statistics.median(latencies):.3f} ms"
              f" (max {max(latencies):.3f})")  # fmt: skip
    deep = _median(runs["budget:none"], "wall")
    print(f"\na {DEPTH:,}-deep guest spinning about 0.5 s")
    print(
        f"{'profiler':<22} {'wall s (min / median)':>22} {'vs none':>8} {'samples':>8} {'sampling':>9} {'interval':>9}"
    )
    for kind, label in (("none", "none"), ("exact", "100 us"), ("0.02", "100 us, budget 2 %")):
        kind_runs = runs[f"budget:{kind}"]
        walls = [run["wall"] for run in kind_runs]
        line = f"{label:<22} {min(walls):10.3f} / {statistics.median(walls):.3f} {statistics.median(walls) / deep:8.2f}"
        if kind != "none":
            line += (f" {_median(kind_runs, 'samples'):8.0f} {_median(kind_runs, 'sampling_share'):8.1%}"
                     f" {_median(kind_runs, 'effective_ms'):7.2f}ms")  # fmt: skip
        print(line)


if __name__ == "__main__":
    main()
