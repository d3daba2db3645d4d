"""What one sample costs the guest, part by part: Wasmtime's callback path, sample(), the CPU clock, our lock.

    python benchmarks/sample_cost.py                      # the example guest and speedtest1, 100 and 20 us
    python benchmarks/sample_cost.py --reps 9 --workloads example --intervals 100

Each round runs every configuration once on a fresh store, in a different order each round, and times the
guest thread's CPU (so a loaded machine slows every configuration alike, and the ticker's own CPU on the other
core is left out). The cost of one epoch callback is (guest CPU - that of `epoch`) / callbacks, where:
  epoch        epoch interruption, a far deadline: the checks alone (no callback)
  deadline     a bare C callback that only sets the next deadline: Wasmtime's own callback path
  +sample      and calls wasmtime_guestprofiler_sample (CPU delta 0)
  +cpu-clock   and reads the thread's CPU clock for the delta (clock_gettime, a system call here)
  +lock        and holds a mutex around it: everything a minimal profiler needs
  wasmtime-gp  our callback as shipped
  no-cpu-time  our callback with cpu_time=False (no CPU deltas in the profile)
The bare callbacks (wasmtime_gp._test_utils.BareCallback) replace ours on a started profiler's store; its
ticker keeps ticking. The goal is wasmtime-gp at most 1.3x `+sample`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(os.environ.get("WASMTIME_GP_PROGRAMS", ROOT / "benchmarks" / "build" / "programs"))
BARE_PARTS = {"deadline": 0, "+sample": 1, "+cpu-clock": 2, "+lock": 3}
CONFIGS = ["epoch", *BARE_PARTS, "wasmtime-gp", "no-cpu-time"]
# A run of about 0.3 s each: the example's scale, speedtest1's --size.
SCALE = {"example": 3, "speedtest1": 8}


def runner(workload: str) -> Any:
    """A function of a fresh store that runs the workload once on it: (store, module, run)."""
    import wasmtime

    from wasmtime_gp.example import guest_wat, profiling_engine

    engine = profiling_engine()
    if workload == "example":
        module = wasmtime.Module(engine, guest_wat())

        def make(store: wasmtime.Store) -> Any:
            run = wasmtime.Instance(store, module, []).exports(store)["run"]
            return lambda: run(store, SCALE["example"])

    else:
        module = wasmtime.Module.from_file(engine, str(PROGRAMS / "speedtest1.wasm"))
        linker = wasmtime.Linker(engine)
        linker.define_wasi()

        def make(store: wasmtime.Store) -> Any:
            wasi = wasmtime.WasiConfig()
            wasi.argv = ["speedtest1", "--memdb", "--size", str(SCALE["speedtest1"])]
            wasi.stdout_file = os.devnull
            store.set_wasi(wasi)
            start = linker.instantiate(store, module).exports(store)["_start"]
            return lambda: start(store)

    return engine, module, make


def measure(config: str, interval: float, engine: Any, module: Any, make: Any) -> tuple[float, int]:
    """Guest thread CPU seconds of one run, and the epoch callbacks it took."""
    import wasmtime

    from wasmtime_gp import GuestProfiler, _test_utils, _wasmtime_py

    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    run = make(store)
    profiler = bare = None
    if config != "epoch":
        options = {"cpu_time": False} if config == "no-cpu-time" else {}
        profiler = GuestProfiler(store, [module], interval=interval, **options)
        profiler.start()
        if config in BARE_PARTS:
            bare = _test_utils.BareCallback(
                profiler._native, BARE_PARTS[config], _wasmtime_py.library_handle()
            )
    started = time.thread_time()
    try:
        run()
    except wasmtime.ExitTrap as exit_trap:
        if exit_trap.code != 0:
            raise
    cpu = time.thread_time() - started
    calls = 0
    if profiler is not None:
        profiler.stop()
        calls = bare.calls if bare is not None else _test_utils.callback_count(profiler._native)
    del run, store
    return cpu, calls


def worker(workload: str, interval: float, reps: int, configs: list[str]) -> None:
    engine, module, make = runner(workload)
    measure("epoch", interval, engine, module, make)  # warm up
    order = ["epoch", *configs]
    for _ in range(reps):
        random.shuffle(order)
        for config in order:
            cpu, calls = measure(config, interval, engine, module, make)
            print(f"{config} {cpu:.6f} {calls}", flush=True)


def report(workload: str, interval_us: int, lines: list[str]) -> None:
    runs: dict[str, list[tuple[float, int]]] = {}
    for line in lines:
        config, cpu, calls = line.split()
        runs.setdefault(config, []).append((float(cpu), int(calls)))
    epoch = statistics.median(cpu for cpu, _ in runs["epoch"])
    costs = {
        config: sorted(1e6 * (cpu - epoch) / calls for cpu, calls in runs[config] if calls)
        for config in runs
        if config != "epoch"
    }
    floor = statistics.median(costs["+sample"])
    print(f"\n{workload} at {interval_us} us: guest CPU {epoch:.3f} s without callbacks (median)")
    print("| config | callbacks (median) | us per callback, min / median | vs +sample (median) |")
    print("|---|---|---|---|")
    for config, cost in costs.items():
        calls = statistics.median(calls for _, calls in runs[config])
        low, mid = cost[0], statistics.median(cost)
        print(f"| {config} | {calls:.0f} | {low:.2f} / {mid:.2f} | {mid / floor:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--workloads", nargs="+", default=["example", "speedtest1"], choices=SCALE)
    parser.add_argument("--intervals", nargs="+", type=int, default=[100, 20], help="in us")
    parser.add_argument("--configs", nargs="+", default=CONFIGS[1:], choices=CONFIGS[1:])
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], float(args.worker[1]), int(args.worker[2]), args.configs)
        return 0
    for workload in args.workloads:
        for interval_us in args.intervals:
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    workload,
                    str(interval_us / 1e6),
                    str(args.reps),
                    "--configs",
                    *args.configs,
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=1200,
            )
            report(workload, interval_us, done.stdout.split("\n")[:-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
