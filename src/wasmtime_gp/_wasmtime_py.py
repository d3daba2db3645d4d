"""Everything that reads wasmtime-py's private attributes, in one place.

wasmtime-py exposes raw C pointers through `ptr()` on its Engine, Store and Module
objects, the store's context through `Store._context()`, and the ctypes library it
loaded as `wasmtime._ffi.dll`. A closed object raises ValueError from `ptr()`.
"""

from __future__ import annotations

import ctypes
import functools
import inspect
import itertools
import weakref
from collections.abc import Callable
from importlib import metadata
from typing import Any

import wasmtime
from wasmtime import _ffi

from wasmtime_gp._errors import ClosedObjectError


def installed_version() -> str:
    """The installed wasmtime-py release, such as "50.0.1"."""
    return metadata.version("wasmtime")


def library_handle() -> int:
    """The dlopen handle of the libwasmtime instance wasmtime-py loaded (never a second copy)."""
    handle: int = _ffi.dll._handle
    return handle


def _address(pointer: Any) -> int:
    address = ctypes.cast(pointer, ctypes.c_void_p).value
    assert address is not None
    return address


def _pointer_of(obj: Any, what: str) -> int:
    try:
        return _address(obj.ptr())
    except ValueError as exc:  # wasmtime-py: "already closed" / "never initialized"
        raise ClosedObjectError(f"the {what} is closed ({exc})") from None


def engine_address(engine: wasmtime.Engine) -> int:
    return _pointer_of(engine, "engine")


def store_address(store: wasmtime.Store) -> int:
    return _pointer_of(store, "store")


def module_address(module: wasmtime.Module) -> int:
    return _pointer_of(module, "module")


def context_address(store: wasmtime.Store) -> int:
    try:
        return _address(store._context())
    except ValueError as exc:
        raise ClosedObjectError(f"the store is closed ({exc})") from None


def caller_context_address(caller: wasmtime.Caller) -> int:
    """The context a host function's Caller runs in: the same address as its store's `_context()`.

    On every profiled host call: `addressof(pointer.contents)` takes a tenth of `ctypes.cast`'s time.
    """
    address: int = ctypes.addressof(caller._context().contents)
    return address


def before_engine_close(engine: wasmtime.Engine, callback: Callable[[], object]) -> None:
    """Run `callback` just before wasmtime-py deletes `engine`'s C object. A bound method is held weakly
    (the engine must not keep a profiler alive), any other callable strongly.

    wasmtime-py's Managed.close() calls `self._delete(ptr)`; an attribute on the instance runs first.
    """
    callbacks: list[Callable[[], Callable[[], object] | None]] | None = engine.__dict__.get(
        "_wasmtime_gp_on_close"
    )
    if callbacks is None:
        callbacks = []
        original = engine._delete

        def delete_after_callbacks(ptr: Any) -> None:
            for ref in callbacks:
                method = ref()
                if method is not None:
                    method()
            original(ptr)

        engine.__dict__["_wasmtime_gp_on_close"] = callbacks
        engine.__dict__["_delete"] = delete_after_callbacks
    callbacks.append(weakref.WeakMethod(callback) if inspect.ismethod(callback) else lambda: callback)


_engine_serials: weakref.WeakKeyDictionary[wasmtime.Engine, int] = weakref.WeakKeyDictionary()
_next_serial = itertools.count(1)


def engine_serial(engine: wasmtime.Engine) -> int:
    """A number that tells engines apart for as long as they live (addresses can be reused once closed)."""
    serial = _engine_serials.get(engine)
    if serial is None:
        serial = _engine_serials[engine] = next(_next_serial)
    return serial


def is_component(obj: object) -> bool:
    """Whether `obj` is a `wasmtime.component.Component` (older wasmtime-py has no `wasmtime.component`)."""
    try:
        from wasmtime.component import Component
    except ImportError:
        return False
    return isinstance(obj, Component)


def store_engine(store: wasmtime.Store) -> wasmtime.Engine:
    """The Engine a Store was created with (wasmtime-py keeps it as `store.engine`)."""
    engine: wasmtime.Engine = store.engine
    return engine


def observe_epoch_calls(
    before_increment: Callable[[int], None],
    set_deadline: Callable[[wasmtime.Store, Any, Callable[[wasmtime.Store, Any], None]], None],
) -> None:
    """Have the embedder's epoch calls report to us, once per process.

    - `Engine.increment_epoch()` calls `_ffi.wasmtime_engine_increment_epoch`, looked up at each call: replacing
      it sees every call, bound methods taken before included. `before_increment(engine address)` runs just
      before the increment. Our own increments go through the C API directly and are not seen.
    - `Store.set_epoch_deadline(ticks)` is replaced on the class (the store is needed, not just its context):
      `set_deadline(store, ticks, original)` runs instead.
    """
    increment = _ffi.wasmtime_engine_increment_epoch
    if getattr(increment, "_wasmtime_gp", False):
        return

    def increment_epoch(engine: Any) -> None:
        try:
            address = ctypes.addressof(engine.contents)
        except (
            AttributeError,
            TypeError,
            ValueError,
        ):  # not an engine pointer: wasmtime-py's own error follows
            pass
        else:
            before_increment(address)
        increment(engine)

    original = wasmtime.Store.set_epoch_deadline

    @functools.wraps(original)
    def set_epoch_deadline(self: wasmtime.Store, ticks_after_current: Any) -> None:
        set_deadline(self, ticks_after_current, original)

    increment_epoch._wasmtime_gp = True  # type: ignore[attr-defined]
    _ffi.wasmtime_engine_increment_epoch = increment_epoch
    wasmtime.Store.set_epoch_deadline = set_epoch_deadline  # type: ignore[method-assign]


# The C functions through which wasmtime-py enters wasm: a call, the instantiations that run a start function,
# and defining a module on a linker (a reactor's _initialize).
WASM_ENTRIES = (
    "wasmtime_func_call",
    "wasmtime_instance_new",
    "wasmtime_linker_instantiate",
    "wasmtime_instance_pre_instantiate",
    "wasmtime_linker_module",
)


def observe_wasm_calls(enter: Callable[[], None], leave: Callable[[], None]) -> None:
    """Have every entry into wasm through wasmtime-py call `enter()` before and `leave()` after, on its thread,
    once per process. wasmtime-py looks each of WASM_ENTRIES up in `_ffi` at each call, as it does the epoch's."""
    for name in WASM_ENTRIES:
        original = getattr(_ffi, name, None)
        if original is None or getattr(original, "_wasmtime_gp", False):
            continue
        setattr(_ffi, name, _entering_wasm(original, enter, leave))


def _entering_wasm(original: Callable[..., Any], enter: Callable[[], None], leave: Callable[[], None]) -> Any:
    def call(*args: Any) -> Any:
        enter()
        try:
            return original(*args)
        finally:
            leave()

    call._wasmtime_gp = True  # type: ignore[attr-defined]
    return call
