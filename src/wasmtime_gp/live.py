"""Live stores: register each store once, when the service makes it; capture all of them on demand.

    from wasmtime_gp import live

    live.track(store, [module], labels={"tenant": "acme"})   # once, where the store is made (idle)
    ...
    capture = live.capture(5)      # from any thread: every tracked store, for 5 s, guests running or not
    capture.firefox()              # one Firefox profile, a thread per store that ran
    capture.pprof()                # one pprof, every store's samples with its labels as pprof labels

A tracked store holds a profiler that was made but not started: it costs nothing until a capture (no ticker
thread, no callback while nothing ticks its engine). The registry holds stores weakly: a store that is
collected or closed leaves it. One capture runs at a time.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import wasmtime

from wasmtime_gp import _checks
from wasmtime_gp._errors import ClosedObjectError, ProfilerStateError, ProfilerTypeError
from wasmtime_gp._fxprof import with_labels
from wasmtime_gp._symbols import WasmSource
from wasmtime_gp.merge import merge_profiles
from wasmtime_gp.profile import Profile
from wasmtime_gp.profiler import DEFAULT_OVERHEAD_BUDGET, GuestProfiler, ModulesArg

MAX_CAPTURE_SECONDS = 3600.0
DEFAULT_INTERVAL = 0.001

_lock = threading.RLock()  # re-entrant: a signal handler may track a store while its thread holds it
_tracked: dict[int, _Tracked] = {}
_serials = itertools.count(1)
_capturing = False


@dataclass
class _Tracked:
    name: str
    labels: dict[str, str]
    profiler: GuestProfiler


@dataclass(frozen=True)
class StoreProfile:
    """One tracked store's part of a capture."""

    name: str
    labels: dict[str, str]
    data: bytes  # its Firefox profile JSON, with its labels
    sample_count: int

    def profile(self) -> Profile:
        return Profile.from_bytes(self.data)


@dataclass(frozen=True)
class Capture:
    """What a capture took: the stores that took samples, from `started` to `ended` (time.time())."""

    stores: tuple[StoreProfile, ...]
    started: float
    ended: float

    @property
    def sample_count(self) -> int:
        return sum(store.sample_count for store in self.stores)

    def firefox(self) -> bytes:
        """One Firefox profile, a thread per store (named after it); an empty capture has no thread to show,
        so it raises ProfilerStateError."""
        if not self.stores:
            raise ProfilerStateError("the capture took no sample: no tracked store ran wasm meanwhile")
        return merge_profiles([store.data for store in self.stores], [store.name for store in self.stores])

    def pprof(self) -> bytes:
        """One gzipped pprof profile: every store's samples, each with its store's labels (and its name, as
        the `store` label). Needs the `pprof` extra."""
        from wasmtime_gp.exports.pprof import to_pprof

        if not self.stores:
            raise ProfilerStateError("the capture took no sample: no tracked store ran wasm meanwhile")
        return to_pprof(*(store.profile() for store in self.stores))


def track(
    store: wasmtime.Store,
    modules: ModulesArg,
    *,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    interval: float = DEFAULT_INTERVAL,
    debug_info: Mapping[str | wasmtime.Module, WasmSource] | None = None,
    overhead_budget: float | None = DEFAULT_OVERHEAD_BUDGET,
) -> None:
    """Register `store` (running `modules`) for captures, until it is collected or closed.

    Call it where the store is idle (its thread, before a guest call): it sets our epoch callback on the store,
    as making a GuestProfiler does. `name` names its thread in a capture (default: `store-N`); `labels` become
    pprof labels. The overhead budget (a share of the guest's time; None: none) lengthens the interval
    where samples cost more, as GuestProfiler's does. A store tracked while a capture runs joins it at once.
    """
    labels = dict(labels or {})
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ProfilerTypeError(
                f"labels must map str to str, not {type(key).__name__}: {type(value).__name__}"
            )
    serial = next(_serials)
    name = f"store-{serial}" if name is None else name
    _checks.encode_name(name, "name")
    profiler = GuestProfiler(
        store, modules, interval=interval, name=name, debug_info=debug_info, overhead_budget=overhead_budget
    )
    with _lock:
        _tracked[serial] = _Tracked(name, {**labels, "store": name}, profiler)
        if _capturing:
            profiler.start()
    weakref.finalize(store, _untrack, serial)


def _after_fork_in_child() -> None:
    """A forked child has only this thread: a capture of the parent's is not the child's to finish (its
    tracked profilers were stopped by the registry), and the lock may have been held by another thread."""
    global _lock, _capturing
    _lock = threading.RLock()
    _capturing = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def _untrack(serial: int) -> None:
    with _lock:
        _tracked.pop(serial, None)


def tracked_count() -> int:
    """How many stores are tracked now."""
    with _lock:
        return len(_tracked)


def capturing() -> bool:
    """Whether a capture is running now."""
    return _capturing


def capture(seconds: float) -> Capture:
    """Sample every tracked store for `seconds` (stores tracked meanwhile included) and return what they took.

    From any thread, guests running or not. ProfilerStateError if another capture is running.
    """
    global _capturing
    seconds = _checks.seconds(seconds, "seconds", 0.0, MAX_CAPTURE_SECONDS)
    with _lock:
        if _capturing:
            raise ProfilerStateError("a capture is already running: one at a time")
        _capturing = True
        for entry in _tracked.values():
            entry.profiler.start()
    started = time.time()
    try:
        threading.Event().wait(seconds)  # the capture's length: bounded by MAX_CAPTURE_SECONDS
    finally:
        with _lock:
            _capturing = False
            entries = list(_tracked.items())
            for _, entry in entries:
                entry.profiler.stop()
    ended = time.time()
    stores = []
    for serial, entry in entries:
        try:
            data, count = entry.profiler.rotate()  # what this capture took; the profiler waits for the next
        except ClosedObjectError:  # its modules were closed: the store cannot run them either
            count = 0
        if count:
            stores.append(StoreProfile(entry.name, entry.labels, with_labels(data, entry.labels), count))
        if not entry.profiler.attached:
            _untrack(serial)  # the store was closed: nothing more to take
    return Capture(tuple(stores), started, ended)
