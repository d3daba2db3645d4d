"""The embedder's own epoch deadlines under profiling: when they trap, and what guarding them costs.

    python benchmarks/embedder_epochs.py                 # 10 runs per configuration, about 2 minutes
    python benchmarks/embedder_epochs.py --reps 3 --count 200000000

Configurations, interleaved and shuffled, each a fresh process:

  trap    The embedder's ticker thread calls `engine.increment_epoch()` every 10 ms (recording the time of each,
          counting before incrementing) and the embedder sets `store.set_epoch_deadline(--deadline)` (30 ticks,
          asked: 0.30 s) on a store spinning in an endless loop. `single`: that store is the profiled one;
          `neighbour`: it is an unprofiled store of the same engine, on another thread than the profiled store,
          whose guest spins too (its own deadline 10 ticks later). Interval `none`: no profiler, and wasmtime_gp
          is never imported (Wasmtime alone; `neighbour` then runs the two guests all the same).
          Reported: the embedder's ticks counted when the caller catches the trap (the deadline asked N: are
          they always exactly N?), the trap's delay after the N-th increment (as the caller sees it, in its
          `except`), the time from `set_epoch_deadline` to the trap, the embedder's mean tick (a 10 ms
          `Event.wait` loop runs a little slow) and the profiled store's sample rate over the requested one.
  guard   An unprofiled store runs `count(--count)` (CPU-bound) with no embedder ticker at all. `alone`: no
          profiler, wasmtime_gp never imported, a far deadline (Wasmtime alone). `far`: a GuestProfiler on
          another store of the engine ticks it (that store runs nothing) and the measured store's deadline is
          far, so our guard callback on it never runs. `R=1`: the same with `set_epoch_deadline(1)`: one tick of
          the embedder's would trap, so the guard runs at every one of our ticks (and never traps: there is no
          embedder tick). `paired`: far and R=1 alternately in one process, PAIRS times each, on half the count.
          Our ticks during a run: the profiler's `ticks_seen` (private), its ticker's ticks from start() to
          stop(), which bracket the timed call. Per-callback cost = (R=1 - far) / those ticks, from the medians
          and from the minima across processes, and from the minima within each `paired` process.
Prints min, median and max (trap) or min and median (guard), and how busy other processes kept the machine
(/proc/stat less this benchmark's own CPU time); --json PATH keeps every run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TICK = 0.01  # the embedder's tick
FAR = 1 << 40  # a deadline never reached (in the embedder's ticks)
NEIGHBOUR_LEAD = 10  # the profiled store's deadline is this many ticks later than its neighbour's

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' guest: `spin` loops forever, `count(n)` counts to n
from epoch_scenarios import SPIN

INTERVALS = {"none": None, "1ms": 0.001, "100us": 0.0001, "20us": 0.00002}
TRAP_CONFIGS = [("trap", layout, name) for layout in ("single", "neighbour") for name in INTERVALS]
GUARD_CONFIGS = [("guard", "alone", "none")] + [
    ("guard", deadline, name) for name in ("100us", "20us") for deadline in ("far", "R=1", "paired")
]
PAIRS = 6  # pairs of far and R=1 runs (each counting to half of --count) in one `paired` process


class Embedder:
    """An engine with epoch interruption, the SPIN module, and (if started) the embedder's 10 ms ticker."""

    def __init__(self) -> None:
        import wasmtime

        config = wasmtime.Config()
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self.module = wasmtime.Module(self.engine, SPIN)
        self.lock = threading.Lock()  # a tick (count, time, increment) or a deadline's setting, never both
        self.ticks = 0
        self.times: list[float] = []  # times[k]: when tick k + 1 was counted, just before its increment
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)

    def start_ticker(self) -> None:
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            with self.lock:
                self.times.append(time.monotonic())
                self.ticks += 1
                self.engine.increment_epoch()

    def store(self) -> tuple[Any, Any]:
        import wasmtime

        store = wasmtime.Store(self.engine)
        store.set_epoch_deadline(FAR)  # instantiating checks the epoch too
        return store, wasmtime.Instance(store, self.module, [])

    def spin_until_trap(self, store: Any, instance: Any, deadline: int) -> dict[str, Any]:
        """Set `deadline` and spin until the trap; when, and after how many of the embedder's ticks."""
        import wasmtime

        spin = instance.exports(store)["spin"]
        with self.lock:
            set_at = self.ticks
            store.set_epoch_deadline(deadline)
            set_time = time.monotonic()
        try:
            spin(store)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            trapped = time.monotonic()
            with self.lock:
                ticks = self.ticks - set_at
            nth = self.times[set_at + deadline - 1] if len(self.times) >= set_at + deadline else None
            last = self.times[set_at - 1] if set_at else None  # the tick before the deadline was set
            return {
                "error": type(exc).__name__,
                "trap_code": str(getattr(exc, "trap_code", None)),
                "ticks": ticks,
                "delay_ms": None if nth is None else (trapped - nth) * 1e3,
                "total_s": trapped - set_time,
                # the embedder's mean tick over the deadline, and how far into a tick the deadline was set:
                # set -> trap = deadline * period_ms - phase_ms + delay_ms
                "period_ms": None if nth is None or last is None else (nth - last) / deadline * 1e3,
                "phase_ms": None if last is None else (set_time - last) * 1e3,
            }
        raise AssertionError("spin returned")

    def close(self) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()


def trap_worker(layout: str, interval: float | None, deadline: int) -> dict[str, Any]:
    embedder = Embedder()
    store, instance = embedder.store()
    profiler = None
    if interval is not None:
        from wasmtime_gp import GuestProfiler

        profiler = GuestProfiler(store, [embedder.module], interval=interval)
        profiler.start()
    embedder.start_ticker()
    time.sleep(0.025)  # a few ticks in: the deadline is set at some phase of the embedder's tick
    if layout == "single":
        started = time.monotonic()
        result = embedder.spin_until_trap(store, instance, deadline)
        profiled_seconds = time.monotonic() - started
    else:
        profiled: dict[str, Any] = {}
        other, other_instance = embedder.store()

        def run_profiled() -> None:
            started = time.monotonic()
            profiled.update(embedder.spin_until_trap(store, instance, deadline + NEIGHBOUR_LEAD))
            profiled["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=run_profiled)
        thread.start()
        time.sleep(0.015)  # the profiled guest spins
        result = embedder.spin_until_trap(other, other_instance, deadline)
        thread.join()
        result["profiled_ticks"] = profiled["ticks"]
        profiled_seconds = profiled["seconds"]
    if profiler is not None and interval is not None:
        profiler.stop()
        result["rate"] = profiler.sample_count * interval / profiled_seconds  # of the requested rate
        profiler.finish()
    embedder.close()
    return result


def guard_worker(deadline: str, interval: float | None, count: int) -> dict[str, Any]:
    embedder = Embedder()  # its ticker is never started: no tick of the embedder's
    store, instance = embedder.store()
    function = instance.exports(store)["count"]
    profiler = None
    if interval is not None:
        from wasmtime_gp import GuestProfiler

        other = embedder.store()[0]
        profiler = GuestProfiler(other, [embedder.module], interval=interval)
        store.set_epoch_deadline(FAR)  # guarded from here on (wasmtime_gp is imported)
    function(store, 1_000_000)  # warm up

    def timed(deadline: str, count: int) -> dict[str, Any]:
        """count(count) with `deadline` (far, or R=1) while the profiler ticks the engine."""
        if profiler is not None:
            profiler.start()
        store.set_epoch_deadline(1 if deadline == "R=1" else FAR)
        cpu_started, started = time.thread_time(), time.perf_counter()
        function(store, count)
        wall, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
        result: dict[str, Any] = {"wall": wall, "cpu": cpu}
        if profiler is not None:
            native: Any = vars(profiler)["_native"]  # private: ticks_seen, the engine's ticks while it ran
            ticks = native.ticks_seen
            profiler.stop()  # ticks_seen adds the ticks from start() to here
            result["ticks"] = native.ticks_seen - ticks
        return result

    if deadline != "paired":
        return timed(deadline, count)
    # far and R=1 alternately on the same store, engine and ticker (far, R=1, R=1, far, ...), each counting
    # to half of `count`. This VM's slowdowns are one-sided (a run is at its usual speed or a good deal
    # slower), so the cost is estimated from the fastest run of each: (min R=1 - min far) / ticks.
    order = ["far", "R=1", "R=1", "far"] * (PAIRS // 2)
    runs = [(d, timed(d, count // 2)) for d in order]
    far = [r for d, r in runs if d == "far"]
    r1 = [r for d, r in runs if d == "R=1"]
    ticks = statistics.median(r["ticks"] for r in r1)
    return {
        "per_callback_ns": (min(r["wall"] for r in r1) - min(r["wall"] for r in far)) / ticks * 1e9,
        "per_callback_cpu_ns": (min(r["cpu"] for r in r1) - min(r["cpu"] for r in far)) / ticks * 1e9,
        "ticks": ticks,
        "wall": min(r["wall"] for r in r1),
        "cpu": min(r["cpu"] for r in r1),
    }


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    kind, variant, name = args.worker.split(":")
    interval = INTERVALS[name]
    if kind == "trap":
        return trap_worker(variant, interval, args.deadline)
    return guard_worker(variant, interval, args.count)


def busy_cpu_seconds() -> float:
    """CPU time spent by the whole machine so far (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def spread(values: list[float], digits: int) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument(
        "--deadline", type=int, default=30, help="the embedder's deadline, in its 10 ms ticks"
    )
    parser.add_argument("--count", type=int, default=600_000_000, help="count(n) of the guard runs")
    parser.add_argument("--only", choices=["trap", "guard"], help="one part only")
    parser.add_argument("--json", metavar="PATH", help="also write every run's figures there")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)))
        return

    configs = [c for c in TRAP_CONFIGS + GUARD_CONFIGS if args.only in (None, c[0])]
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {config: [] for config in configs}
    loads = [os.getloadavg()[0]]  # the 1-minute load average, before and after each run
    began, busy_before = time.monotonic(), busy_cpu_seconds()
    ours_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(args.reps):
        for config in random.sample(configs, len(configs)):
            command = [sys.executable, __file__, "--worker", ":".join(config), "--deadline", str(args.deadline),
                       "--count", str(args.count)]  # fmt: skip
            out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
            runs[config].append(json.loads(out))
            loads.append(os.getloadavg()[0])
    wall = time.monotonic() - began
    ours_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = sum(getattr(ours_after, f) - getattr(ours_before, f) for f in ("ru_utime", "ru_stime"))
    others = (busy_cpu_seconds() - busy_before - ours) / wall  # CPUs kept busy by other processes, on average
    print(
        f"{args.reps} runs per configuration, {wall:.0f} s, {os.cpu_count()} CPUs; 1-minute load average "
        f"{loads[0]:.2f} before, {min(loads):.2f} to {max(loads):.2f} while measuring (ours included); "
        f"other processes kept {others:.2f} CPUs busy on average"
    )

    if args.json:
        with open(args.json, "w") as dump:
            json.dump({":".join(config): rs for config, rs in runs.items()}, dump, indent=1)

    trap = [c for c in configs if c[0] == "trap"]
    if trap:
        n = args.deadline
        print(f"\nTrap after the embedder's tick {n} (10 ms ticks; asked {n * TICK:.2f} s)")
        print(
            f"{'store':<10} {'profiler':>8} {'trap':>16} {'ticks at trap':>14} {'delay after tick N, ms':>24} "
            f"{'set -> trap, s':>22} {'tick ms':>7} {'profiler rate':>13}"
        )
        for config in trap:
            rs = runs[config]
            kinds = sorted({f"{r['error']} {r['trap_code'].split('.')[-1]}" for r in rs})
            ticks = sorted({r["ticks"] for r in rs})
            ticks_text = ",".join(str(t) for t in ticks) + (" (all N)" if ticks == [n] else "")
            delays = [r["delay_ms"] for r in rs if r["delay_ms"] is not None]
            rates = [r["rate"] for r in rs if "rate" in r]
            rate_text = f"{statistics.median(rates):12.1%}" if rates else f"{'-':>12}"
            print(
                f"{config[1]:<10} {config[2]:>8} {'/'.join(kinds):>16} {ticks_text:>14} "
                f"{spread(delays, 3):>24} {spread([r['total_s'] for r in rs], 4):>22} "
                f"{statistics.median(r['period_ms'] for r in rs if r['period_ms']):7.3f}  {rate_text}"
            )
            lead = sorted({r["profiled_ticks"] for r in rs if "profiled_ticks" in r})
            if lead:
                print(f"{'':<10} {'':>8} the profiled store beside it trapped after {lead} ticks "
                      f"(asked {n + NEIGHBOUR_LEAD})")  # fmt: skip

    guard = [c for c in configs if c[0] == "guard"]
    if guard:
        print(f"\nGuard cost: count({args.count:,}) on an unprofiled store, no embedder ticks")
        alone = statistics.median(r["wall"] for r in runs[("guard", "alone", "none")])
        print(
            f"{'configuration':<22} {'wall min / median s':>20} {'vs alone':>9} {'CPU/wall':>9} {'our ticks':>10}"
        )
        for config in guard:
            if config[1] == "paired":
                continue
            rs = runs[config]
            walls = [r["wall"] for r in rs]
            cpu_share = statistics.median(r["cpu"] / r["wall"] for r in rs)
            ticks = [r["ticks"] for r in rs if "ticks" in r]
            ticks_text = f"{statistics.median(ticks):10,.0f}" if ticks else f"{'-':>10}"
            label = "alone (no profiler)" if config[1] == "alone" else f"{config[2]} {config[1]}"
            print(
                f"{label:<22} {min(walls):9.3f} / {statistics.median(walls):.3f} "
                f"{statistics.median(walls) / alone:8.3f}x {cpu_share:8.1%} {ticks_text}"
            )
        print(
            "Per guard callback, ns: (R=1 - far) / our ticks in the R=1 run (wall, and the guest's CPU time)"
        )
        for name in ("100us", "20us"):
            far, r1 = runs.get(("guard", "far", name)), runs.get(("guard", "R=1", name))
            paired = runs.get(("guard", "paired", name))
            if far and r1:
                ticks = statistics.median(r["ticks"] for r in r1)
                for how, pick in (("medians", statistics.median), ("minima", min)):
                    extra = pick(r["wall"] for r in r1) - pick(r["wall"] for r in far)
                    extra_cpu = pick(r["cpu"] for r in r1) - pick(r["cpu"] for r in far)
                    print(
                        f"  {name:>5}, across processes, {how:<7}: wall {extra / ticks * 1e9:6.0f}, "
                        f"CPU {extra_cpu / ticks * 1e9:6.0f} ({ticks:,.0f} callbacks per run)"
                    )
            if paired:
                walls = [r["per_callback_ns"] for r in paired]
                cpus = [r["per_callback_cpu_ns"] for r in paired]
                print(
                    f"  {name:>5}, paired in one process ({PAIRS} pairs each, from the minima; min / median / max "
                    f"over {len(paired)} processes): wall {spread(walls, 0)}, CPU {spread(cpus, 0)} "
                    f"({statistics.median(r['ticks'] for r in paired):,.0f} callbacks per run)"
                )


if __name__ == "__main__":
    main()
