"""Profile the bundled example guest: python -m wasmtime_gp.example [-o PATH] [--interval SECONDS]."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import wasmtime

from wasmtime_gp import GuestProfiler, GuestProfilerError
from wasmtime_gp.example import guest_wat, profiling_engine


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wasmtime_gp.example", description=__doc__)
    parser.add_argument("-o", "--output", default="example.profile.json", help="where to write the profile")
    parser.add_argument("--interval", type=float, default=0.001, help="sampling interval in seconds")
    parser.add_argument("--scale", type=int, default=15, help="work units for the guest (about 0.1 s each)")
    args = parser.parse_args(argv)

    engine = profiling_engine()
    store = wasmtime.Store(engine)
    module = wasmtime.Module(engine, guest_wat())
    run = wasmtime.Instance(store, module, []).exports(store)["run"]
    assert isinstance(run, wasmtime.Func)

    try:
        with GuestProfiler(store, [module], interval=args.interval) as profiler:
            started = time.perf_counter()
            run(store, args.scale)
            elapsed = time.perf_counter() - started
        path = profiler.save(args.output)
    except (GuestProfilerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"profiled the example guest for {elapsed:.2f} s: {profiler.sample_count} samples "
        f"at {args.interval * 1e3:g} ms"
    )
    print(f"wrote {path.resolve()}")
    print("view it: open https://profiler.firefox.com/, choose 'Load a profile from file', pick that file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
