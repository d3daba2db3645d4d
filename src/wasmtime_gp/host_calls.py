"""Host-call profiling: see the time a guest spends inside the Python functions it imports.

Wasmtime samples wasm only, so time inside a host function would otherwise show up as one sample
on the calling wasm function when the guest resumes. Functions wrapped here tell a running
`GuestProfiler` of their store when they start and end; the profiler gives each call the samples
of the intervals it spanned, as a `[host] module.name` frame on top of the calling guest stack
(see `_host_frames.py`). Opt-in: only wrapped functions are seen.

    linker = wasmtime.Linker(engine)
    wasmtime_gp.host_calls.instrument(linker)      # before define_func: wraps every one after it
    linker.define_func("env", "fetch", ty, fetch)

    func = wasmtime_gp.host_calls.func(store, ty, fetch, name="env.fetch")   # a single wasmtime.Func
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import wasmtime

from wasmtime_gp import _checks, _registry, _wasmtime_py
from wasmtime_gp._errors import ProfilerTypeError

# The running samplers by the address of their store's context (one lookup per call; _registry fills it).
_running = _registry.running

_INSTRUMENTED = "_wasmtime_gp_host_calls"


def _linker_host_call(function: Callable[..., Any], name: str, pass_caller: bool) -> Callable[..., Any]:
    """Defined with access_caller=True: the caller tells which store (and so which profiler) runs."""

    def host_call(caller: wasmtime.Caller, *params: Any) -> Any:
        args = (caller, *params) if pass_caller else params
        if not _running:  # no profiler anywhere: just the call
            return function(*args)
        context = _wasmtime_py.caller_context_address(caller)
        sampler = _running.get(context)
        if sampler is None:
            return function(*args)
        return sampler.host_call(function, args, name, context)

    return functools.wraps(function)(host_call)


def instrument(linker: wasmtime.Linker) -> wasmtime.Linker:
    """Wrap every function defined on `linker` with `define_func` from now on; return the linker.

    Functions defined before this call, and WASI's (which are native), are not wrapped.
    Each wrapped function appears as `[host] <module>.<name>`, the names the guest imports it by.
    """
    if not isinstance(linker, wasmtime.Linker):
        raise ProfilerTypeError(f"linker must be a wasmtime.Linker, not {type(linker).__name__}")
    if linker.__dict__.get(_INSTRUMENTED):
        return linker
    define_func = linker.define_func

    def define_profiled_func(
        module: str, name: str, ty: wasmtime.FuncType, func: Callable[..., Any], access_caller: bool = False
    ) -> None:
        if not isinstance(module, str) or not isinstance(name, str):
            return define_func(module, name, ty, func, access_caller)  # wasmtime-py's own error
        wrapped = _linker_host_call(func, f"{module}.{name}", access_caller)
        return define_func(module, name, ty, wrapped, True)

    linker.__dict__["define_func"] = functools.wraps(define_func)(define_profiled_func)
    linker.__dict__[_INSTRUMENTED] = True
    return linker


def func(
    store: wasmtime.Store,
    ty: wasmtime.FuncType,
    function: Callable[..., Any],
    *,
    name: str | None = None,
    access_caller: bool = False,
) -> wasmtime.Func:
    """`wasmtime.Func(store, ty, function, access_caller)`, wrapped: calls appear as `[host] <name>`.

    `name` defaults to the function's qualified Python name.
    """
    if not isinstance(store, wasmtime.Store):
        raise ProfilerTypeError(f"store must be a wasmtime.Store, not {type(store).__name__}")
    if not callable(function):
        raise ProfilerTypeError(f"function must be callable, not {type(function).__name__}")
    label = getattr(function, "__qualname__", repr(function)) if name is None else name
    _checks.encode_name(label, "name")  # it goes into the profile's JSON
    context = _wasmtime_py.context_address(store)

    def host_call(*args: Any) -> Any:
        sampler = _running.get(context) if _running else None
        if sampler is None:
            return function(*args)
        return sampler.host_call(function, args, label, context)

    return wasmtime.Func(store, ty, functools.wraps(function)(host_call), access_caller)
