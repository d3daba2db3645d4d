"""Time outside wasm: how late a sample's epoch check comes after its tick, and what the profile makes of it.

    python benchmarks/outside_wasm.py              # every scenario, 3 runs each, then again with a hog per core
    python benchmarks/outside_wasm.py --reps 5 --scenarios pure minigzip-pipe --no-hog

Each scenario runs in a fresh process, at 1 ms:
  pure            the bundled example: wasm only, no host call
  python-busy     a guest calling a Python host function nobody wrapped that computes for 200 us
  python-sleep    the same function sleeping 500 us instead
  minigzip-file   zlib's minigzip compressing 20 MB of text from a (page-cached) file: WASI fd_read
  minigzip-pipe   the same from a pipe a writer fills 64 KB at a time, 3 ms apart: WASI blocks in fd_read

First with every late sample kept (`_core._set_outside_min_ns(0)`): the distributions, in us, of the stretch
from the tick a sample was due at to the guest's epoch check, and of the guest thread's CPU time in it. Then at
the default threshold: the share of samples outside wasm (on and off CPU), the top functions by self time,
and, for the pipe, the share of the run the guest's thread spent off a CPU, measured by its own clocks
(wall time minus thread CPU time), to set beside the off-CPU share of the samples.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(os.environ.get("WASMTIME_GP_PROGRAMS", ROOT / "benchmarks" / "build" / "programs"))
SCENARIOS = ["pure", "python-busy", "python-sleep", "minigzip-file", "minigzip-pipe"]
INTERVAL = 0.001

CALLS_PYTHON = """
(module $calls
  (import "env" "work" (func $work))
  (func $spin (param $n i32) (local $i i32)
    (loop $again
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (local.get $n)))))
  (func $after (call $spin (i32.const 1000)))
  (func (export "run") (param $calls i32) (local $k i32)
    (loop $again
      (call $work)
      (call $after)
      (call $spin (i32.const 300000))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $k) (local.get $calls))))))
"""


def _text(size: int) -> bytes:
    words = [b"wasm", b"profile", b"sample", b"epoch", b"tick", b"guest", b"host", b"deflate", b"stretch"]
    out, state = bytearray(), 1
    while len(out) < size:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        out += words[state % len(words)] + (b"\n" if state % 11 == 0 else b" ")
    return bytes(out[:size])


def worker(scenario: str, keep_all: bool) -> dict[str, object]:
    import wasmtime

    from wasmtime_gp import GuestProfiler, Profile, _core
    from wasmtime_gp.example import guest_wat, profiling_engine

    if keep_all:
        _core._set_outside_min_ns(0)
    engine = profiling_engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    feeder = None
    if scenario == "pure":
        module = wasmtime.Module(engine, guest_wat())
        instance = linker.instantiate(store, module)
        run = lambda: instance.exports(store)["run"](store, 6)
    elif scenario.startswith("python-"):
        seconds = 0.0002 if scenario == "python-busy" else 0.0005

        def work() -> None:
            if scenario == "python-busy":
                until = time.perf_counter() + seconds
                while time.perf_counter() < until:
                    pass
            else:
                time.sleep(seconds)

        linker.define_func("env", "work", wasmtime.FuncType([], []), work)
        module = wasmtime.Module(engine, CALLS_PYTHON)
        instance = linker.instantiate(store, module)
        run = lambda: instance.exports(store)["run"](store, 2000)
    else:
        module = wasmtime.Module.from_file(engine, str(PROGRAMS / "minigzip.wasm"))
        wasi = wasmtime.WasiConfig()
        work_dir = Path(tempfile.mkdtemp())
        text = _text(20_000_000)
        if scenario == "minigzip-file":
            (work_dir / "input.txt").write_bytes(text)
            wasi.argv = ["minigzip", "-c", "/data/input.txt"]
            wasi.preopen_dir(str(work_dir), "/data")
        else:
            fifo = work_dir / "input.fifo"
            os.mkfifo(fifo)
            wasi.argv = ["minigzip"]

            def feed() -> None:
                with open(fifo, "wb") as pipe:
                    for start in range(0, len(text), 65536):
                        pipe.write(text[start : start + 65536])
                        pipe.flush()
                        time.sleep(0.003)

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            wasi.stdin_file = str(fifo)
        wasi.stdout_file = os.devnull
        store.set_wasi(wasi)
        linker.define_wasi()
        instance = linker.instantiate(store, module)
        run = lambda: instance.exports(store)["_start"](store)
    profiler = GuestProfiler(store, [module], interval=INTERVAL)
    wall, cpu = time.perf_counter(), time.thread_time()
    with profiler:
        try:
            run()
        except wasmtime.ExitTrap as exit_trap:
            assert exit_trap.code == 0, exit_trap
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    if feeder is not None:
        feeder.join(10)
    data = profiler.finish()
    raw = json.loads(data)
    markers = raw["threads"][0]["markers"]
    stretches = [
        (marker["onCpu"] * 1e3, (marker["onCpu"] + marker["offCpu"]) * 1e3)
        for marker in markers["data"]
        if isinstance(marker, dict) and marker.get("type") == "OutsideWasm"
    ]
    profile = Profile.from_bytes(data)
    on, off = profile.outside_sample_counts
    return {
        "samples": profile.sample_count,
        "late": len(stretches),
        "on_us": [on_us for on_us, _ in stretches],
        "stretch_us": [stretch_us for _, stretch_us in stretches],
        "outside_on": on / profile.sample_count,
        "outside_off": off / profile.sample_count,
        "top": [(row.frame.function, round(row.self_percent, 1)) for row in profile.top(6)],
        "off_cpu_measured": max(0.0, (wall - cpu) / wall),
    }


def run_worker(scenario: str, keep_all: bool) -> dict[str, object]:
    command = [sys.executable, __file__, "--worker", scenario] + (["--keep-all"] if keep_all else [])
    worker_run = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if worker_run.returncode != 0:
        raise SystemExit(f"{scenario} failed:\n{worker_run.stderr[-3000:]}")
    result: dict[str, object] = json.loads(worker_run.stdout.splitlines()[-1])
    return result


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    at = [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.5, 0.9, 0.99)]
    return f"n={len(ordered)} median {at[0]:.1f} p90 {at[1]:.1f} p99 {at[2]:.1f} max {ordered[-1]:.1f}"


def report(scenarios: list[str], reps: int) -> None:
    for scenario in scenarios:
        kept = [run_worker(scenario, True) for _ in range(reps)]
        on = [v for r in kept for v in r["on_us"]]  # type: ignore[attr-defined]
        stretch = [v for r in kept for v in r["stretch_us"]]  # type: ignore[attr-defined]
        samples = sum(int(r["samples"]) for r in kept)  # type: ignore[call-overload]
        print(f"\n{scenario}: every late sample kept ({samples} samples in {reps} runs)")
        print(f"  stretch after the due tick, us: {percentiles(stretch)}")
        print(f"  of it on a CPU, us:             {percentiles(on)}")
        runs = [run_worker(scenario, False) for _ in range(reps)]
        outside = [100 * (float(r["outside_on"]) + float(r["outside_off"])) for r in runs]  # type: ignore[arg-type]
        on_share = [100 * float(r["outside_on"]) for r in runs]  # type: ignore[arg-type]
        off_share = [100 * float(r["outside_off"]) for r in runs]  # type: ignore[arg-type]
        measured = [100 * float(r["off_cpu_measured"]) for r in runs]  # type: ignore[arg-type]
        print(
            f"  at the default threshold, outside wasm % (min / median of {reps}): {min(outside):.2f} / "
            f"{statistics.median(outside):.2f} (on CPU {statistics.median(on_share):.2f}, off CPU "
            f"{statistics.median(off_share):.2f}); the thread's own clocks say off CPU "
            f"{statistics.median(measured):.1f} % of the run"
        )
        print(f"  top by self % (last run): {runs[-1]['top']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=SCENARIOS)
    parser.add_argument("--no-hog", action="store_true", help="skip the second pass with a CPU hog per core")
    parser.add_argument("--worker", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--keep-all", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.keep_all)))
        return
    print(f"{os.cpu_count()} CPUs, interval {INTERVAL * 1e3:g} ms; load average {os.getloadavg()[0]:.2f}")
    report(args.scenarios, args.reps)
    if args.no_hog:
        return
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        print(f"\n== with a CPU hog on each of the {len(hogs)} cores ==")
        report(args.scenarios, args.reps)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


if __name__ == "__main__":
    main()
