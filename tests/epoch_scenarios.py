"""An embedder's own epoch timeouts with wasmtime-gp attached, each scenario run in its own interpreter.

    python epoch_scenarios.py SCENARIO '{"interval": 0.0005, ...}'

prints one JSON line. The embedder does what wasmtime-py users do for a timeout: `store.set_epoch_deadline(N)`
and a thread calling `engine.increment_epoch()` every TICK seconds. Each guest loops forever, so only a deadline
can end it: if one never fires, the scenario never ends, and the test's subprocess timeout fails it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Callable

import wasmtime

TICK = 0.01  # the embedder's tick
MAX_TICKS = 3000  # the embedder gives up after 30 s of ticks (a runaway guest then never ends)

SPIN = """
(module $spinner
  (func $forever (loop $again (br $again)))
  (func (export "spin") (call $forever))
  (func (export "count") (param $n i64) (local $i i64)
    (loop $again
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $again (i64.lt_u (local.get $i) (local.get $n))))))
"""


class Embedder:
    """An engine, the embedder's ticker thread, and stores running SPIN."""

    def __init__(self, start_ticker: bool = True) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self.module = wasmtime.Module(self.engine, SPIN)
        self.ticks = 0
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        if start_ticker:
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK) and self.ticks < MAX_TICKS:
            self.ticks += 1  # counted first: whoever sees the increment sees the count
            self.engine.increment_epoch()

    def store(self) -> tuple[wasmtime.Store, wasmtime.Instance]:
        store = wasmtime.Store(self.engine)
        store.set_epoch_deadline(1 << 40)  # instantiating checks the epoch too
        return store, wasmtime.Instance(store, self.module, [])

    def profiled_store(
        self, interval: float, **options: Any
    ) -> tuple[wasmtime.Store, wasmtime.Instance, Any]:
        """A store and its instance, with a started GuestProfiler (imported here, where a scenario wants it)."""
        from wasmtime_gp import GuestProfiler

        store, instance = self.store()
        profiler = GuestProfiler(store, [self.module], interval=interval, **options)
        profiler.start()
        return store, instance, profiler

    def set_deadline(self, store: wasmtime.Store, deadline: int) -> int:
        """Set `deadline` on `store`; return the embedder's tick count when it was set."""
        set_at = self.ticks
        store.set_epoch_deadline(deadline)
        return set_at

    def run(
        self, store: wasmtime.Store, instance: wasmtime.Instance, deadline: int, set_at: int | None = None
    ) -> dict[str, Any]:
        """Run `spin` with a deadline of `deadline` embedder ticks (set now, or already at tick `set_at`)
        until it traps.

        "ticks": the embedder's ticks from setting the deadline to the trap; "late": its ticks after both the
        deadline and the start of this run (a deadline set earlier may have passed before the call: then
        "passed_before_call", and the call traps at its first epoch check).
        """
        if set_at is None:
            set_at = self.set_deadline(store, deadline)
        run_at, started = self.ticks, time.monotonic()
        try:
            instance.exports(store)["spin"](store)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            ended, ticks = time.monotonic(), self.ticks
            return {
                "error": type(exc).__name__,
                "trap_code": str(getattr(exc, "trap_code", None)),
                "message": str(exc),  # with RUST_BACKTRACE=1, Wasmtime 39 appends a Rust backtrace
                "ticks": ticks - set_at,
                "late": ticks - max(run_at, set_at + deadline),
                "seconds": ended - started,
                "passed_before_call": run_at >= set_at + deadline,
            }
        raise AssertionError("spin returned")

    def run_on_thread(
        self, store: wasmtime.Store, instance: wasmtime.Instance, deadline: int
    ) -> Callable[[], dict[str, Any]]:
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(self.run(store, instance, deadline)))
        thread.start()

        def join() -> dict[str, Any]:
            thread.join()
            return result

        return join

    def close(self) -> None:
        self._stop.set()
        self._ticker.join()


def profiled(interval: float, deadline: int, when: str) -> dict[str, Any]:
    """A profiled store with a deadline set before the profiler exists, or after start()."""
    from wasmtime_gp import GuestProfiler

    embedder = Embedder()
    store, instance = embedder.store()
    set_at = embedder.set_deadline(store, deadline) if when == "before" else None
    profiler = GuestProfiler(store, [embedder.module], interval=interval)
    profiler.start()
    result = embedder.run(store, instance, deadline, set_at)
    result["samples"] = profiler.sample_count
    again = embedder.run(store, instance, 0, embedder.ticks)  # the deadline stays passed, as in Wasmtime
    result["again_late"], result["again_error"] = again["late"], again["error"]
    profiler.finish()
    embedder.close()
    return result


def zero(interval: float) -> dict[str, Any]:
    """A deadline of 0 on a profiled store: Wasmtime traps at the first epoch check; a new deadline runs again."""
    embedder = Embedder(start_ticker=False)
    store, instance, profiler = embedder.profiled_store(interval)
    result = embedder.run(store, instance, 0)
    store.set_epoch_deadline(1 << 40)
    instance.exports(store)["count"](store, 1000)
    result["ran_again"] = True
    profiler.finish()
    return result


def neighbour(interval: float, deadline: int, when: str) -> dict[str, Any]:
    """An unprofiled store of a profiled engine, on its own thread, while the profiled one runs."""
    from wasmtime_gp import GuestProfiler

    embedder = Embedder()
    store, instance = embedder.store()
    other, other_instance = embedder.store()
    set_at = embedder.set_deadline(other, deadline) if when == "before" else None
    profiler = GuestProfiler(store, [embedder.module], interval=interval)
    profiler.start()
    profiled_run = embedder.run_on_thread(store, instance, 3 * deadline)
    result = embedder.run(other, other_instance, deadline, set_at)
    profiled_run()
    result["samples"] = profiler.sample_count
    profiler.finish()
    embedder.close()
    return result


def stopped(interval: float, deadline: int, stop_after: float) -> dict[str, Any]:
    """Profiling stopped from another thread while the guest runs, before its deadline."""
    embedder = Embedder()
    store, instance, profiler = embedder.profiled_store(interval)
    join = embedder.run_on_thread(store, instance, deadline)
    time.sleep(stop_after)
    profiler.stop()
    at_stop = profiler.sample_count
    result = join()
    result["samples_after_stop"] = profiler.sample_count - at_stop
    result["samples"] = at_stop
    profiler.finish()
    embedder.close()
    return result


def finished(interval: float, deadline: int) -> dict[str, Any]:
    """A store whose profiler finished, while another profiler still ticks the engine."""
    from wasmtime_gp import GuestProfiler

    embedder = Embedder()
    store, instance = embedder.store()
    profiler = GuestProfiler(store, [embedder.module], interval=interval)
    with profiler:  # counts until sampled: on a loaded machine the ticker may wait for a CPU (bounded: 10 s)
        given_up_at = time.monotonic() + 10
        while profiler.sample_count == 0 and time.monotonic() < given_up_at:
            instance.exports(store)["count"](store, 1_000_000)
    samples = profiler.sample_count
    profiler.finish()
    _, _, ticking = embedder.profiled_store(interval)
    result = embedder.run(store, instance, deadline)
    result["samples"] = samples
    ticking.finish()
    embedder.close()
    return result


def with_timeout(interval: float, deadline: int, timeout: float) -> dict[str, Any]:
    """The profiler's own `timeout=` and the embedder's deadline on one store: the earlier wins."""
    embedder = Embedder()
    store, instance, profiler = embedder.profiled_store(interval, timeout=timeout)
    result = embedder.run(store, instance, deadline)
    result["timed_out"] = profiler.timed_out
    profiler.finish()
    embedder.close()
    return result


def bound_before_import(interval: float, deadline: int) -> dict[str, Any]:
    """The embedder's ticker took `engine.increment_epoch` before wasmtime_gp was imported."""
    embedder = Embedder(start_ticker=False)
    assert "wasmtime_gp" not in sys.modules
    increment = embedder.engine.increment_epoch

    def tick() -> None:
        while not embedder._stop.wait(TICK) and embedder.ticks < MAX_TICKS:
            embedder.ticks += 1
            increment()

    embedder._ticker = threading.Thread(target=tick, daemon=True)
    embedder._ticker.start()
    from wasmtime_gp import GuestProfiler

    store, instance = embedder.store()
    profiler = GuestProfiler(store, [embedder.module], interval=interval)
    profiler.start()
    result = embedder.run(store, instance, deadline)
    profiler.finish()
    embedder.close()
    return result


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    function.__name__: function
    for function in (profiled, zero, neighbour, stopped, finished, with_timeout, bound_before_import)
}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](**json.loads(sys.argv[2]))))
