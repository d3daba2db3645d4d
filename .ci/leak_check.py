"""LeakSanitizer's verdict on our native allocations (.ci/sanitize runs this with the ASan build preloaded).

At interpreter exit CPython leaves objects alive, and everything they own would be reported; so this
script releases what it made, collects, and asks LeakSanitizer for a check right then
(`__lsan_do_recoverable_leak_check`). Exit status 1 if it found a leak.
"""

import ctypes
import gc
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import wasmtime
from conftest import make_engine
from guests import CHAIN

from wasmtime_gp import ContinuousProfiler, GuestProfiler, host_calls


def exercise() -> None:
    engine = make_engine()
    module = wasmtime.Module(engine, CHAIN)
    for round_ in range(200):
        store = wasmtime.Store(engine)
        if round_ % 2:
            store.set_epoch_deadline(1 << 40)  # a guard first, which the profiler's callback replaces
        neighbour = wasmtime.Store(engine)
        neighbour.set_epoch_deadline(5)  # a guard only, freed with its store
        engine.increment_epoch()
        run = wasmtime.Instance(store, module, []).exports(store)["run"]
        profiler = GuestProfiler(store, [module], interval=0.0001, timeout=60)
        with profiler:
            run(store, 20_000)
        if round_ % 3 == 0:
            profiler.finish()
        elif round_ % 3 == 1:
            store.close()  # the store first
        del run, profiler, store, neighbour  # or the profiler dropped unfinished
    closed = make_engine()  # an engine with an embedder's epoch, closed before its stores go
    guarded = wasmtime.Store(closed)
    guarded.set_epoch_deadline(1)
    closed.close()
    del guarded
    store = wasmtime.Store(engine)
    linker = host_calls.instrument(wasmtime.Linker(engine))
    linker.define_func("env", "f", wasmtime.FuncType([], []), lambda: None)
    caller = wasmtime.Module(engine, '(module (import "env" "f" (func $f)) (func (export "go") (call $f)))')
    go = linker.instantiate(store, caller).exports(store)["go"]
    with ContinuousProfiler(store, [module, caller], sink=lambda r: None, period=0.01, interval=0.0001):
        threads = [threading.Thread(target=lambda: [go(store) for _ in range(2000)])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def main() -> None:
    exercise()
    gc.collect()
    check = ctypes.CDLL(None).__lsan_do_recoverable_leak_check
    leaked = check()
    print("LeakSanitizer:", "leaks found" if leaked else "no leak")
    sys.exit(1 if leaked else 0)


if __name__ == "__main__":
    main()
