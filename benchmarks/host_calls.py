"""The cost per host call of wasmtime_gp.host_calls: a guest making many tiny Python host calls.

    python benchmarks/host_calls.py                 # 1,000,000 calls, 5 runs per configuration
    python benchmarks/host_calls.py --calls 100000 --reps 3

Configurations, interleaved and shuffled, each a fresh process:
  plain              the function defined on a Linker as wasmtime-py has it, no profiler
  wrapped            the same through host_calls.instrument(), no profiler running
  plain+profiler     unwrapped, a GuestProfiler sampling at --interval
  wrapped+profiler   wrapped, the profiler sampling (every call goes through host_enter/host_exit)
Prints min and median of the time per call, and each configuration's extra cost over `plain`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time

CONFIGS = ["plain", "wrapped", "plain+profiler", "wrapped+profiler"]

GUEST = """
(module $calls
  (import "env" "tiny" (func $tiny (param i32) (result i32)))
  (func $many (export "many") (param $calls i32) (result i32) (local $k i32) (local $sum i32)
    (loop $again
      (local.set $sum (i32.add (local.get $sum) (call $tiny (local.get $k))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $k) (local.get $calls))))
    (local.get $sum)))
"""


def worker(config: str, calls: int, interval: float) -> dict[str, float]:
    import wasmtime

    from wasmtime_gp import GuestProfiler, host_calls

    engine_config = wasmtime.Config()
    engine_config.epoch_interruption = True
    engine = wasmtime.Engine(engine_config)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    module = wasmtime.Module(engine, GUEST)
    linker = wasmtime.Linker(engine)
    if config.startswith("wrapped"):
        host_calls.instrument(linker)
    i32 = wasmtime.ValType.i32()
    linker.define_func("env", "tiny", wasmtime.FuncType([i32], [i32]), lambda k: k & 1)
    many = linker.instantiate(store, module).exports(store)["many"]
    assert isinstance(many, wasmtime.Func)
    profiler = GuestProfiler(store, [module], interval=interval) if config.endswith("+profiler") else None
    if profiler is not None:
        profiler.start()
    started = time.perf_counter()
    many(store, calls)
    elapsed = time.perf_counter() - started
    result = {"per_call_us": elapsed / calls * 1e6}
    if profiler is not None:
        profile = profiler.profile()
        result["samples"] = profile.sample_count
        result["host_share"] = profile.host_sample_count / max(profile.sample_count, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--interval", type=float, default=0.001, help="seconds (default 1 ms)")
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.calls, args.interval)))
        return

    runs: dict[str, list[dict[str, float]]] = {config: [] for config in CONFIGS}
    for _ in range(args.reps):
        order = random.sample(CONFIGS, len(CONFIGS))
        for config in order:
            command = [sys.executable, __file__, "--worker", config, "--calls", str(args.calls),
                       "--interval", str(args.interval)]  # fmt: skip
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            runs[config].append(json.loads(out))
    plain = statistics.median(run["per_call_us"] for run in runs["plain"])
    print(f"{args.calls:,} host calls, {args.reps} runs each, profiler interval {args.interval * 1e3:g} ms")
    print(f"{'configuration':<18} {'min us/call':>12} {'median':>8} {'vs plain':>9} {'host share':>11}")
    for config in CONFIGS:
        per_call = [run["per_call_us"] for run in runs[config]]
        median = statistics.median(per_call)
        share = [run["host_share"] for run in runs[config] if "host_share" in run]
        share_text = f"{statistics.median(share):10.1%}" if share else f"{'-':>10}"
        print(f"{config:<18} {min(per_call):12.3f} {median:8.3f} {median - plain:+8.3f}  {share_text}")


if __name__ == "__main__":
    main()
