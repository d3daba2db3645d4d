"""Checks made before calling into Wasmtime, so that bad input raises instead of aborting."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import wasmtime

from wasmtime_gp import _core, _wasmtime_py
from wasmtime_gp._abi import ENGINE_FIRST_MAJOR, MULTI_MODULE_MAJOR, WASMTIME_MAJOR
from wasmtime_gp._errors import (
    EngineConfigError,
    GuestProfilerError,
    ModuleEngineError,
    ProfilerTypeError,
    ProfilerValueError,
)

# One exported function: with epoch interruption on, a deadline of 0 traps at its entry.
_EPOCH_PROBE_WAT = '(module (func (export "probe")))'

_epoch_checked: weakref.WeakSet[wasmtime.Engine] = weakref.WeakSet()
_modules_checked: weakref.WeakKeyDictionary[wasmtime.Module, weakref.WeakSet[wasmtime.Engine]] = (
    weakref.WeakKeyDictionary()
)


def require_epoch_interruption(engine: wasmtime.Engine) -> None:
    """Raise EngineConfigError unless `engine` was configured with epoch_interruption = True.

    The C API cannot read an engine's configuration, so run a tiny probe on a throwaway
    store of the same engine; cached per engine.
    """
    if engine in _epoch_checked:
        return
    store = wasmtime.Store(engine)
    try:
        store.set_epoch_deadline(0)
        module = wasmtime.Module(engine, _EPOCH_PROBE_WAT)
        probe = wasmtime.Instance(store, module, []).exports(store)["probe"]
        assert isinstance(probe, wasmtime.Func)
        try:
            probe(store)
        except wasmtime.Trap as trap:
            # Its traceback would keep the caller's frames (and the new profiler) in a cycle.
            trap.__traceback__ = None
            _epoch_checked.add(engine)
            return
    except wasmtime.WasmtimeError as exc:
        raise EngineConfigError(f"cannot run code on this engine to check its configuration: {exc}") from None
    finally:
        store.close()
    raise EngineConfigError(
        "the engine was created without epoch interruption, so the profiler could never take a sample; "
        "create it from a wasmtime.Config with `config.epoch_interruption = True`"
    )


def require_supported_module_count(count: int) -> None:
    """Raise where the installed Wasmtime would silently drop every frame of a multi-module profile."""
    if count > 1 and WASMTIME_MAJOR < MULTI_MODULE_MAJOR:
        raise ProfilerValueError(
            f"Wasmtime {WASMTIME_MAJOR} cannot resolve stack frames when a profiler lists {count} modules "
            f"(its frame lookup is fixed in {MULTI_MODULE_MAJOR}.0.0): list only the module the guest runs, "
            f"or upgrade wasmtime to >= {MULTI_MODULE_MAJOR}"
        )


def require_modules_of_engine(
    engine: wasmtime.Engine, modules: Sequence[tuple[bytes, wasmtime.Module]], process_name: bytes
) -> None:
    """Raise ModuleEngineError where Wasmtime would abort the process on these modules.

    From Wasmtime 40, wasmtime_guestprofiler_new panics (which aborts) on a module compiled
    by another engine, or on an engine with guest debugging. Nothing in the C API tells a
    module's engine, so the call is tried first in a forked child; cached per module and engine.
    """
    if WASMTIME_MAJOR < ENGINE_FIRST_MAJOR:
        return  # before 40 the call takes no engine and has nothing to panic about
    unchecked = [(name, m) for name, m in modules if engine not in _modules_checked.get(m, ())]
    if not unchecked:
        return
    engine_address = _wasmtime_py.engine_address(engine)
    for name, module in unchecked:
        # One module per probe, so that the error names the module Wasmtime refused.
        entry = [(name, _wasmtime_py.module_address(module))]
        accepted, said = _core.probe_new(engine_address, process_name, 1_000_000, entry)
        if accepted is None:
            raise GuestProfilerError(
                f"could not check module {name.decode()!r} against the engine: the probe did not finish"
            )
        if not accepted:
            reason = _panic_message(said)
            raise ModuleEngineError(
                f"Wasmtime refuses module {name.decode()!r} for this store's engine ({reason}); "
                "a module must be compiled by the same wasmtime.Engine as the store "
                "(and the engine must not have guest debugging enabled)"
            )
        _modules_checked.setdefault(module, weakref.WeakSet()).add(engine)


def _panic_message(child_stderr: str) -> str:
    """The first line of Wasmtime's panic text, such as "assertion failed: Engine::same(...)"."""
    for line in child_stderr.splitlines():
        line = line.strip()
        if line and not line.startswith(("thread ", "note:", "stack backtrace")):
            return line
    return "it aborted"


def utf8(text: object, what: str) -> bytes:
    """A name as UTF-8, as Wasmtime and the profile's JSON need it; anything else is refused here."""
    if not isinstance(text, str):
        raise ProfilerTypeError(f"{what} must be a str, not {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: Wasmtime would abort on them
        raise ProfilerValueError(f"{what} {text!r} is not valid Unicode text: {exc.reason}") from None
