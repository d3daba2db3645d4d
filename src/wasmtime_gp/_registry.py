"""The one owner of process-wide profiling state: which store has a profiler, which samplers run, and what
happens to them on fork() and at exit.

- Stores: a store has one epoch-deadline callback, so one unfinished GuestProfiler (by store address).
- Running samplers by the address of their store's context: a wrapped host call finds its store's sampler
  there (`running`, read without a lock: one dict lookup).
- ContinuousProfilers not yet closed: at exit each delivers its last slice; in a forked child each is detached.

Locks are re-entrant, since a signal handler may make or stop a profiler while its thread is inside this module.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import types
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from wasmtime_gp import _core
from wasmtime_gp._errors import ProfilerStateError

if TYPE_CHECKING:
    from wasmtime_gp.continuous import ContinuousProfiler
    from wasmtime_gp.profiler import GuestProfiler

# At exit, the sinks of every running ContinuousProfiler get this many seconds, in all, for their last slices.
EXIT_TIMEOUT = 5.0


class _ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_lock = threading.RLock()
_profilers_by_store: weakref.WeakValueDictionary[int, GuestProfiler] = weakref.WeakValueDictionary()
_running: dict[int, _core.Sampler] = {}
running: types.MappingProxyType[int, _core.Sampler] = types.MappingProxyType(_running)
_continuous: weakref.WeakSet[ContinuousProfiler] = weakref.WeakSet()


def claim_store(store_address: int, profiler: GuestProfiler, make: Callable[[], None]) -> None:
    """Record `profiler` as the store's, after running `make` (which builds its sampler), all under the lock.

    Raises what `make` raises, and ProfilerStateError if the store already has an unfinished profiler.
    """
    with _lock:
        current = _profilers_by_store.get(store_address)
        if current is not None and current.attached:
            raise ProfilerStateError(
                "this store already has an unfinished GuestProfiler; finish() it first "
                "(a store has a single epoch-deadline callback)"
            )
        make()
        _profilers_by_store[store_address] = profiler


def set_running(context: int, sampler: _core.Sampler) -> None:
    _running[context] = sampler


def clear_running(context: int, sampler: _core.Sampler) -> None:
    """Forget `sampler` as its context's running one (if it still is: a signal handler may have done it)."""
    if _running.get(context) is sampler:
        _running.pop(context, None)


def track_continuous(continuous: ContinuousProfiler) -> None:
    _continuous.add(continuous)


def untrack_continuous(continuous: ContinuousProfiler) -> None:
    _continuous.discard(continuous)


def _after_fork_in_child() -> None:
    """A forked child has no ticker thread, no rotation thread and only this thread; locks may have been held."""
    global _lock
    _lock = threading.RLock()
    _running.clear()
    forked: list[_ForkAware] = [*_profilers_by_store.values(), *_continuous]
    for owner in forked:
        owner._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _at_exit() -> None:
    """Deliver every running ContinuousProfiler's last slice (EXIT_TIMEOUT s in all), then join every ticker
    before the interpreter tears down what they use."""
    deadline = time.monotonic() + EXIT_TIMEOUT
    for continuous in list(_continuous):
        continuous._close_at_exit(max(0.0, deadline - time.monotonic()))
    for profiler in list(_profilers_by_store.values()):
        profiler._stop()
