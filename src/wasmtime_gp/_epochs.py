"""The embedder's own epoch: what its `Engine.increment_epoch()` and `Store.set_epoch_deadline()` calls ask,
kept apart from our ticks, so that its deadlines keep their meaning on every store of an engine we profile.

An engine's epoch counts our ticks and the embedder's alike. From import on, we observe the embedder's calls:
- each engine it sets a deadline on, or that we profile, gets an `EmbedderEpoch` counting its increments only;
- each store it sets a deadline on gets a `DeadlineKeeper` that keeps the deadline in the embedder's ticks,
  in the state of our epoch-deadline callback on the store (a guard's, or its profiler's): the guest traps
  when they reach it, with Wasmtime's own trap, and our ticks only make the callback look and continue.

Wasmtime >= 34 can make that very trap (`_core.raises_genuine_traps()`). Before, our callback can only raise a
WasmtimeError, so until its engine is profiled a store's keeper only records the deadline (for a profiler made
on the store later) and leaves it to Wasmtime; the store's next deadline after that is guarded.
What cannot be seen (deadlines set before import, calls through wasmtime's private `_ffi`, increments from
native code) is listed in the README.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

import wasmtime

from wasmtime_gp import _core, _wasmtime_py
from wasmtime_gp._abi import WASMTIME_MAJOR  # noqa: F401 (importing it binds the C API that our hooks call)
from wasmtime_gp._errors import ClosedObjectError

_U64 = (1 << 64) - 1  # wasmtime-py passes the deadline as a ctypes c_uint64, which wraps

_lock = threading.RLock()  # re-entrant: a signal handler may set a deadline while its thread holds it
_epochs: weakref.WeakKeyDictionary[wasmtime.Engine, _core.EmbedderEpoch] = weakref.WeakKeyDictionary()
_by_engine_address: dict[int, _core.EmbedderEpoch] = {}  # what an increment of wasmtime-py's reports
_keepers: weakref.WeakKeyDictionary[wasmtime.Store, _core.DeadlineKeeper] = weakref.WeakKeyDictionary()
_profiled: weakref.WeakSet[wasmtime.Engine] = weakref.WeakSet()  # engines that have had a profiler
# Stores whose epoch-deadline callback of ours was replaced by the embedder's own (set through wasmtime's
# private bindings): their deadlines are left to Wasmtime and that callback, never guarded again.
_displaced: weakref.WeakSet[wasmtime.Store] = weakref.WeakSet()


def engine_epoch(engine: wasmtime.Engine) -> _core.EmbedderEpoch:
    """The embedder's epoch of `engine`, counted from now on (only differences matter: deadlines are kept
    as the count when they were set plus the ticks asked)."""
    with _lock:
        epoch = _epochs.get(engine)
        if epoch is None:
            address = _wasmtime_py.engine_address(engine)
            epoch = _epochs[engine] = _by_engine_address[address] = _core.EmbedderEpoch()

            def forget() -> None:  # the address may be reused by another engine once this one is deleted
                if _by_engine_address.get(address) is epoch:
                    del _by_engine_address[address]

            _wasmtime_py.before_engine_close(engine, forget)
        return epoch


def for_profiler(store: wasmtime.Store) -> tuple[_core.EmbedderEpoch, _core.DeadlineKeeper | None]:
    """For a profiler about to be made on `store`: its engine's epoch, and what keeps the deadline the
    embedder set on the store so far (the profiler's callback takes it over), if anything does."""
    engine = _wasmtime_py.store_engine(store)
    with _lock:
        _profiled.add(engine)
        return engine_epoch(engine), _keepers.get(store)


def adopt(store: wasmtime.Store, keeper: _core.DeadlineKeeper) -> None:
    """A new profiler's callback replaced ours on `store` (and took over its deadline): its state keeps it now."""
    _keepers[store] = keeper


def _before_increment(engine_address: int) -> None:
    epoch = _by_engine_address.get(engine_address)
    if epoch is not None:
        epoch.tick()


def _set_deadline(
    store: wasmtime.Store, ticks: object, original: Callable[[wasmtime.Store, object], None]
) -> None:
    """Store.set_epoch_deadline(ticks), kept in the embedder's ticks where our callback reads it."""
    try:
        context = _wasmtime_py.context_address(store)
    except ClosedObjectError:
        original(store, ticks)  # wasmtime-py's own error
        return
    if not isinstance(ticks, int):
        original(store, ticks)  # ctypes' own error, or its conversion
        return
    keeper = _keepers.get(store)
    if keeper is None or not keeper.guards:
        engine = _wasmtime_py.store_engine(store)
        with _lock:
            if keeper is not None and keeper.guarded:
                _displaced.add(store)  # our callback was set, and someone else's replaced it since
            if store in _displaced:
                keeper = _core.keep_deadline(engine_epoch(engine))
            elif _core.raises_genuine_traps() or engine in _profiled:
                keeper = _core.keep_deadline(engine_epoch(engine), _wasmtime_py.store_address(store), keeper)
            elif keeper is None:  # Wasmtime < 34, an engine never profiled: recorded, left to Wasmtime
                keeper = _core.keep_deadline(engine_epoch(engine))
            _keepers[store] = keeper
    keeper.set_deadline(context, ticks & _U64)


def _after_fork_in_child() -> None:
    """A forked child has only this thread: a lock held by another one at the fork would never be released."""
    global _lock
    _lock = threading.RLock()
    for keeper in list(_keepers.values()):
        keeper.after_fork_in_child()


_wasmtime_py.observe_epoch_calls(_before_increment, _set_deadline)
os.register_at_fork(after_in_child=_after_fork_in_child)
