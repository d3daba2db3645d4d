"""Everything that reads wasmtime-py's private attributes, in one place.

wasmtime-py exposes raw C pointers through `ptr()` on its Engine, Store and Module
objects, the store's context through `Store._context()`, and the ctypes library it
loaded as `wasmtime._ffi.dll`. A closed object raises ValueError from `ptr()`.
"""

from __future__ import annotations

import ctypes
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
    """Run `callback` (held weakly, a bound method) just before wasmtime-py deletes `engine`'s C object.

    wasmtime-py's Managed.close() calls `self._delete(ptr)`; an attribute on the instance runs first.
    """
    callbacks: list[weakref.WeakMethod[Callable[[], object]]] | None = engine.__dict__.get(
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
    callbacks.append(weakref.WeakMethod(callback))


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
