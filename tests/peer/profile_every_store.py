"""pytest plugin: run wasmtime-py's own test suite with a wasmtime-gp GuestProfiler on every store that
instantiates a core module (tests/test_wasmtime_py_suite.py loads it with `-p profile_every_store`).

wasmtime-py's tests hardly ever turn epoch interruption on (only tests/test_store.py does), and a GuestProfiler
needs it. So this plugin turns it on for every engine (`wasmtime.Engine.__init__`) and gives every store a far
epoch deadline (`wasmtime.Store.__init__`; the default, 0, would trap at the first epoch check of a store that
no profiler took over); a test that sets its own deadline replaces that one. Then every `wasmtime.Instance(store,
module, imports)` and `Linker.instantiate(store, module)` on a store without a profiler yet first attaches
`GuestProfiler(store, [module], interval=INTERVAL)` and starts it, *before* the module's start function runs (so
that it is profiled too). A test's profilers are finished when the test ends, and their profiles read back.

At the end of the session, the JSON report at $WASMTIME_GP_PEER_REPORT says how many stores were profiled, how
many samples were taken, which attachments the profiler refused as Wasmtime itself would (a closed store or
module, a module of another engine), and every other error the profiler raised (attaching, starting,
finishing, or reading a profile back), for the outer test to fail on.

With WASMTIME_GP_PEER_PROFILE=0 (the baseline run) it only turns epoch interruption on and sets the far
deadlines, and does not even import wasmtime_gp (whose import hooks into wasmtime-py): so that a difference
between the two runs is the profiler's doing, not epoch interruption's.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import weakref
from collections import Counter
from collections.abc import Generator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

import pytest
import wasmtime

if TYPE_CHECKING:
    from wasmtime_gp import GuestProfiler

# Seconds. wasmtime-py's guests run for microseconds: a sample comes mostly at a guest's first epoch check after
# a tick that came while Python ran between its calls, so a short interval makes samples plentiful (about 25 in
# a run at 100 us, about 5 at 500 us). At 100 us the ticker still sleeps between ticks (it spins below 50 us).
INTERVAL = float(os.environ.get("WASMTIME_GP_PEER_INTERVAL", "0.0001"))
FAR_DEADLINE = 1 << 40  # epoch ticks: never reached, not even at 10 kHz

# What Wasmtime would refuse too (the test expects that error from the instantiation): not a profiler failure.
REFUSALS = ("ClosedObjectError", "ModuleEngineError", "EngineConfigError")

_profile = os.environ.get("WASMTIME_GP_PEER_PROFILE", "1") != "0"
# Imported only to profile: importing wasmtime_gp hooks into wasmtime-py (Store.set_epoch_deadline), and the
# baseline run must not have that either.
wasmtime_gp: ModuleType | None = None
_refusals: tuple[type[BaseException], ...] = ()
_by_store: weakref.WeakKeyDictionary[wasmtime.Store, GuestProfiler] = weakref.WeakKeyDictionary()
_unfinished: list[GuestProfiler] = []  # attached since the current test (or the session) began
_current = "(outside any test)"
_stores = 0
_samples = 0
_samples_by_test: Counter[str] = Counter()
_ticks: Counter[str] = Counter()  # what the profilers' tickers did, to read a report with few samples
_refused: Counter[str] = Counter()
_errors: list[dict[str, str]] = []


def _error(action: str, exc: BaseException) -> None:
    _errors.append({"test": _current, "action": action, "error": f"{type(exc).__name__}: {exc}"})


def _attach(store: object, module: object) -> None:
    global _stores
    if (
        wasmtime_gp is None
        or not isinstance(store, wasmtime.Store)
        or not isinstance(module, wasmtime.Module)
    ):
        return  # not profiling; or a Caller, or arguments the test means to be refused: wasmtime-py raises
    if store in _by_store:
        return
    try:
        profiler = wasmtime_gp.GuestProfiler(store, [module], interval=INTERVAL)
    except _refusals as exc:
        _refused[type(exc).__name__] += 1
        return
    except Exception as exc:  # noqa: BLE001 -- any other failure is a finding: reported, and the outer test fails
        _error("GuestProfiler(store, [module])", exc)
        return
    _by_store[store] = profiler
    _unfinished.append(profiler)
    _stores += 1
    try:
        profiler.start()
    except Exception as exc:  # noqa: BLE001 -- as above
        _error("start()", exc)


def _finish_all() -> None:
    """Finish the profilers attached since the last call, and read their profiles back."""
    global _samples
    if wasmtime_gp is None:
        return  # not profiling: nothing was attached
    while _unfinished:
        profiler = _unfinished.pop()
        try:
            profile = wasmtime_gp.Profile.from_bytes(profiler.finish())
        except Exception as exc:  # noqa: BLE001 -- as above
            _error("finish() and Profile.from_bytes()", exc)
            continue
        count = profiler.sample_count
        if len(profile.samples) != count:
            _error(
                "finish()",
                AssertionError(f"the profile has {len(profile.samples)} samples, sample_count {count}"),
            )
        _samples += count
        _samples_by_test[_current] += count
        native = getattr(profiler, "_native", None)  # private, read only for the report
        _ticks["ticks_seen"] += int(getattr(native, "ticks_seen", 0))
        _ticks["running_ns"] += int(getattr(native, "running_ns", 0))
    for store in [store for store, profiler in _by_store.items() if profiler.finished]:
        del _by_store[store]  # a store that outlives its test gets a new profiler in the next one


def _wrap(cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = getattr(cls, name)
    wrapper = make(original)
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(cls, name, wrapper)


def _engine_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: wasmtime.Engine, config: object = None, *args: Any, **kwargs: Any) -> None:
        if config is None:
            config = wasmtime.Config()
        if isinstance(config, wasmtime.Config):
            try:
                config.epoch_interruption = True
            except ValueError:
                pass  # a config already used: wasmtime-py refuses it below, as the test expects
        original(self, config, *args, **kwargs)

    return __init__


def _store_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: wasmtime.Store, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.set_epoch_deadline(FAR_DEADLINE)

    return __init__


def _instance_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: wasmtime.Instance, store: object, module: object, *args: Any, **kwargs: Any) -> None:
        _attach(store, module)
        original(self, store, module, *args, **kwargs)

    return __init__


def _linker_instantiate(original: Callable[..., wasmtime.Instance]) -> Callable[..., wasmtime.Instance]:
    def instantiate(self: wasmtime.Linker, store: object, module: object, *args: Any, **kwargs: Any) -> Any:
        _attach(store, module)
        return original(self, store, module, *args, **kwargs)

    return instantiate


def pytest_configure(config: pytest.Config) -> None:
    global wasmtime_gp, _refusals
    if not os.environ.get("WASMTIME_GP_PEER_REPORT"):
        raise pytest.UsageError("profile_every_store: set WASMTIME_GP_PEER_REPORT to the report's path")
    if _profile:
        wasmtime_gp = importlib.import_module("wasmtime_gp")
        _refusals = tuple(getattr(wasmtime_gp, name) for name in REFUSALS)
    _wrap(wasmtime.Engine, "__init__", _engine_init)
    _wrap(wasmtime.Store, "__init__", _store_init)
    _wrap(wasmtime.Instance, "__init__", _instance_init)
    _wrap(wasmtime.Linker, "instantiate", _linker_instantiate)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    global _current
    _finish_all()  # attached outside any test (at import or collection)
    _current = item.nodeid
    try:
        return (yield)
    finally:
        _finish_all()
        _current = "(outside any test)"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _finish_all()
    report = {
        "profiling": _profile,
        "wasmtime_gp_imported": "wasmtime_gp" in sys.modules,
        "interval": INTERVAL,
        "stores_profiled": _stores,
        "samples": _samples,
        "ticks": dict(_ticks),
        "samples_by_test": dict(_samples_by_test.most_common()),
        "refused": dict(_refused),
        "errors": _errors,
    }
    with open(os.environ["WASMTIME_GP_PEER_REPORT"], "w", encoding="utf-8") as file:
        json.dump(report, file, indent=1)
