"""What one sample costs the guest, part by part: Wasmtime's callback path, sample(), the CPU clock, our lock.

    python benchmarks/sample_cost.py                      # the example guest and speedtest1, 100, 20, 10 us
    python benchmarks/sample_cost.py --workloads example --intervals 20 --build before=/tmp/old/bin/python

Each fresh process (--processes per build, the builds alternating) runs --rounds rounds; each round runs every
configuration once on a fresh store, in a different order each round, and times the guest thread's CPU (so a loaded machine slows every configuration alike, and the ticker's own CPU on the other
core is left out). The cost of one epoch callback is (guest CPU - that of `ticking`) / callbacks, where:
  ticking      the checks alone: the engine ticks, the deadline is far (a bare callback set it once)
  deadline     a bare C callback that only sets the next deadline: Wasmtime's own callback path
  +sample      and calls wasmtime_guestprofiler_sample (CPU delta 0)
  +cpu-clock   and reads the thread's CPU clock for the delta (clock_gettime, a system call here)
  +lock        and holds a mutex around it: everything a minimal profiler needs
  wasmtime-gp  our callback as shipped
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

from builds import add_build_option, pythons

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(os.environ.get("WASMTIME_GP_PROGRAMS", ROOT / "benchmarks" / "build" / "programs"))
BARE_PARTS = {"ticking": 0, "deadline": 1, "+sample": 2, "+cpu-clock": 3, "+lock": 4}
CONFIGS = [*BARE_PARTS, "wasmtime-gp"]
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
    run = make(store)
    profiler = GuestProfiler(store, [module], interval=interval)
    profiler.start()
    bare = None
    if config in BARE_PARTS:
        bare = _test_utils.BareCallback(profiler._native, BARE_PARTS[config], _wasmtime_py.library_handle())
    started = time.thread_time()
    try:
        run()
    except wasmtime.ExitTrap as exit_trap:
        if exit_trap.code != 0:
            raise
    cpu = time.thread_time() - started
    profiler.stop()
    calls = bare.calls if bare is not None else _test_utils.callback_count(profiler._native)
    if config == "ticking":
        calls = 0  # its one call set the far deadline
    del run, store
    return cpu, calls


def worker(workload: str, interval: float, rounds: int, configs: list[str]) -> None:
    engine, module, make = runner(workload)
    measure("ticking", interval, engine, module, make)  # warm up
    order = ["ticking", *configs]
    for round_ in range(rounds):
        random.shuffle(order)
        for config in order:
            cpu, calls = measure(config, interval, engine, module, make)
            print(f"{os.getpid()}.{round_} {config} {cpu:.6f} {calls}", flush=True)


def report(workload: str, interval_us: int, lines_of: dict[str, list[str]]) -> None:
    print(f"\n{workload} at {interval_us} us")
    print("| build | config | callbacks (median) | us per callback, min / median | vs +sample (median) |")
    print("|---|---|---|---|---|")
    for build, lines in lines_of.items():
        # Each run against the `ticking` run of its own round: drifts between rounds cancel.
        fields = [line.split() for line in lines]
        ticking_of = {round_: float(cpu) for round_, config, cpu, _ in fields if config == "ticking"}
        runs: dict[str, list[tuple[float, int]]] = {}
        for round_, config, cpu, calls in fields:
            if config != "ticking":
                runs.setdefault(config, []).append((float(cpu) - ticking_of[round_], int(calls)))
        rounds_ticking = sorted(ticking_of.values())
        costs = {
            config: sorted(1e6 * extra / calls for extra, calls in config_runs if calls)
            for config, config_runs in runs.items()
        }
        floor = statistics.median(costs["+sample"]) if "+sample" in costs else None
        for config in CONFIGS[1:]:
            if config not in costs:
                continue
            calls = statistics.median(calls for _, calls in runs[config])
            low, mid = costs[config][0], statistics.median(costs[config])
            ratio = f"{mid / floor:.2f}x" if floor else ""
            print(f"| {build} | {config} | {calls:.0f} | {low:.2f} / {mid:.2f} | {ratio} |")
        print(f"| {build} | ticking (guest CPU s, median) | | {statistics.median(rounds_ticking):.3f} | |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per build")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every configuration in each")
    parser.add_argument("--workloads", nargs="+", default=["example", "speedtest1"], choices=SCALE)
    parser.add_argument("--intervals", nargs="+", type=int, default=[100, 20, 10], help="in us")
    parser.add_argument("--configs", nargs="+", default=CONFIGS[1:], choices=CONFIGS[1:])
    add_build_option(parser, "its runs beside (or, alone, instead of) this one's")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], float(args.worker[1]), int(args.worker[2]), args.configs)
        return 0
    builds = pythons(args) or {"this": sys.executable}
    for workload in args.workloads:
        for interval_us in args.intervals:
            lines_of: dict[str, list[str]] = {label: [] for label in builds}
            for _ in range(args.processes):
                for label in random.sample(list(builds), len(builds)):
                    done = subprocess.run(
                        [
                            builds[label],
                            __file__,
                            "--worker",
                            workload,
                            str(interval_us / 1e6),
                            str(args.rounds),
                            "--configs",
                            *args.configs,
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                        timeout=1200,
                    )
                    lines_of[label] += done.stdout.split("\n")[:-1]
            report(workload, interval_us, lines_of)
    return 0


if __name__ == "__main__":
    sys.exit(main())
