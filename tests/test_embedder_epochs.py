"""The embedder's own epoch deadlines keep their meaning while wasmtime-gp profiles.

Each scenario of epoch_scenarios.py runs in its own interpreter: a deadline that never fires would spin forever.
A deadline of N of the embedder's ticks must trap after N of them, never sooner, however many of ours the engine
counted meanwhile; and soon after (the bound allows for a loaded machine: the trap times measured on an idle one
are in the README and in benchmarks/embedder_epochs.py).
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from conftest import make_engine
from epoch_scenarios import SPIN

from wasmtime_gp import GuestProfiler, _core, _epochs

SCENARIOS = Path(__file__).with_name("epoch_scenarios.py")
DEADLINE = 30  # embedder ticks of 10 ms
GENUINE_TRAPS = _core.raises_genuine_traps()  # Wasmtime >= 34


def scenario(name: str, **arguments: Any) -> dict[str, Any]:
    process = subprocess.run(
        [sys.executable, str(SCENARIOS), name, json.dumps(arguments)],
        capture_output=True,
        text=True,
        timeout=90,  # the embedder's ticker gives up after 30 s: a deadline that never fired spins until here
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result: dict[str, Any] = json.loads(process.stdout.splitlines()[-1])
    return result


def assert_embedder_trap(result: dict[str, Any], deadline: int = DEADLINE) -> None:
    """Wasmtime's own trap, after `deadline` of the embedder's ticks: never sooner, and not much later."""
    if GENUINE_TRAPS:
        assert (result["error"], result["trap_code"]) == ("Trap", "TrapCode.INTERRUPT"), result
    else:  # before 34 our callback cannot make a Trap: the same message, as a WasmtimeError
        assert result["error"] == "WasmtimeError", result
    assert "wasm trap: interrupt" in result["message"], result
    assert result["ticks"] >= deadline, result
    # Late by the embedder's ticks after the deadline (or after the call, if it had passed by then, as when
    # making the profiler took longer than the deadline): generous, for a loaded machine.
    assert result["late"] <= max(deadline, 5), result


@pytest.mark.parametrize("interval", [0.001, 0.0001])
@pytest.mark.parametrize("when", ["before", "after_start"])
def test_the_profiled_stores_deadline_fires_on_the_embedders_tick(interval, when):
    result = scenario("profiled", interval=interval, deadline=DEADLINE, when=when)
    assert_embedder_trap(result)
    # It was sampled meanwhile (how many depends on the CPUs the ticker got: test_sampling bounds that),
    # unless it trapped at once: on a loaded machine, making the profiler can outlast a deadline set before.
    assert result["samples"] > 0 or result["seconds"] < interval or result["passed_before_call"], result
    # As in Wasmtime, a passed deadline stays passed: the next call traps at once.
    assert result["again_error"] == result["error"] and result["again_late"] <= 5, result


@pytest.mark.parametrize("interval", [0.001, 0.0001])
def test_a_neighbour_stores_deadline_is_not_shortened_by_our_ticks(interval):
    result = scenario("neighbour", interval=interval, deadline=DEADLINE, when="after_start")
    assert_embedder_trap(result)
    assert result["samples"] > 0, result


@pytest.mark.skipif(
    not GENUINE_TRAPS, reason="before Wasmtime 34 a store is guarded once its engine is profiled"
)
def test_a_neighbour_deadline_set_before_the_engine_was_profiled_keeps_its_meaning():
    assert_embedder_trap(scenario("neighbour", interval=0.0002, deadline=DEADLINE, when="before"))


def test_stopping_the_profiler_while_the_guest_runs_keeps_the_deadline():
    result = scenario("stopped", interval=0.0005, deadline=DEADLINE, stop_after=0.05)
    assert_embedder_trap(result)
    assert result["samples"] > 0 and result["samples_after_stop"] == 0, result


def test_a_finished_profilers_store_keeps_the_deadline_while_another_profiler_ticks():
    result = scenario("finished", interval=0.0002, deadline=DEADLINE)
    assert_embedder_trap(result)
    assert result["samples"] > 0, result


def test_the_profilers_timeout_wins_when_it_is_earlier():
    result = scenario("with_timeout", interval=0.0005, deadline=10 * DEADLINE, timeout=0.05)
    assert result["timed_out"] and "wasm guest timed out (wasmtime-gp timeout)" in result["message"], result
    assert result["ticks"] < 10 * DEADLINE, result


def test_the_embedders_deadline_wins_when_it_is_earlier():
    result = scenario("with_timeout", interval=0.0005, deadline=DEADLINE, timeout=60.0)
    assert_embedder_trap(result)
    assert not result["timed_out"], result


def test_increments_through_a_method_bound_before_import_are_the_embedders():
    assert_embedder_trap(scenario("bound_before_import", interval=0.0005, deadline=DEADLINE))


def test_our_ticks_are_not_counted_as_the_embedders():
    engine = make_engine()
    module = wasmtime.Module(engine, SPIN)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    instance = wasmtime.Instance(store, module, [])
    epoch = _epochs.engine_epoch(engine)
    before = epoch.ticks
    with GuestProfiler(store, [module], interval=0.0001) as profiler:
        instance.exports(store)["count"](store, 50_000_000)
        engine.increment_epoch()
        engine.increment_epoch()
    assert profiler.sample_count > 10  # thousands of our ticks went by
    assert epoch.ticks - before == 2
    profiler.finish()


def test_a_deadline_of_zero_traps_at_the_first_check():
    result = scenario("zero", interval=0.001)
    assert_embedder_trap(result, deadline=0)
    assert result["ran_again"], result


@pytest.mark.parametrize("ticks", [-1, 1 << 64, 2.5, "3"])
def test_set_epoch_deadline_takes_what_wasmtime_py_takes(ticks):
    """Out-of-range integers wrap (ctypes' c_uint64); anything else raises wasmtime-py's own error."""
    plain = wasmtime.Store(make_engine())
    observed = wasmtime.Store(make_engine())
    GuestProfiler(observed, [wasmtime.Module(observed.engine, SPIN)])
    try:
        wasmtime._ffi.wasmtime_context_set_epoch_deadline(plain._context(), ticks)
    except Exception as exc:  # noqa: BLE001 (whatever wasmtime-py raises, the observed store must raise too)
        with pytest.raises(type(exc)):
            observed.set_epoch_deadline(ticks)
    else:
        observed.set_epoch_deadline(ticks)


def test_a_closed_store_raises_wasmtime_pys_error():
    store = wasmtime.Store(make_engine())
    store.close()
    with pytest.raises(ValueError, match="closed"):
        store.set_epoch_deadline(1)


def test_an_epoch_callback_of_the_embedders_own_is_left_in_place():
    """A callback the embedder set through wasmtime's private bindings (as benchmarks/python_peer.py does)
    replaces our guard: from then on that store's deadlines are left to Wasmtime and to that callback."""
    from wasmtime import _bindings

    engine = make_engine()
    module = wasmtime.Module(engine, SPIN)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)  # guarded (from Wasmtime 34; recorded only before)
    calls = []

    def on_deadline(context, data, delta, kind):  # type: ignore[no-untyped-def]
        calls.append(context)
        delta[0], kind[0] = 1, 0  # continue, one tick later
        return 0

    setter = _bindings._wasmtime_store_epoch_deadline_callback
    callback = setter.argtypes[1](on_deadline)
    setter(store.ptr(), callback, None, ctypes.cast(0, setter.argtypes[3]))
    store.set_epoch_deadline(1)
    instance = wasmtime.Instance(store, module, [])
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.001):
            engine.increment_epoch()

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        for _ in range(200):  # until the callback ran a few times: a trap here is the bug
            instance.exports(store)["count"](store, 5_000_000)
            if len(calls) >= 3:
                break
    finally:
        stop.set()
        ticker.join()
    assert len(calls) >= 3
