"""Checks made before calling into Wasmtime, so that bad input raises instead of aborting."""

from __future__ import annotations

import math
import threading
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
from wasmtime_gp._symbols import artifact as _artifact

# Wasmtime's words when a compiled module's settings and the engine's disagree about epoch interruption
# (the same from 19 to 50): the first says the engine has it, the second that it does not.
_EPOCH_ON_FOR_HOST = "compiled without epoch interruption but it is enabled for the host"
_EPOCH_OFF_FOR_HOST = "compiled with epoch interruption but it is not enabled for the host"
_ENGINE_SECTION = b".wasmtime.engine"
# The fallback probe: one exported function; with epoch interruption on, a deadline of 0 traps at its entry.
_EPOCH_PROBE_WAT = '(module (func (export "probe")))'
# A compile in a process forked after Wasmtime's compile threads ran never returns: wait this long at most.
_PROBE_COMPILE_TIMEOUT = 10.0

_epoch_checked: weakref.WeakSet[wasmtime.Engine] = weakref.WeakSet()
_modules_checked: weakref.WeakKeyDictionary[wasmtime.Module, weakref.WeakSet[wasmtime.Engine]] = (
    weakref.WeakKeyDictionary()
)
# Where the epoch flag sat last time, counted from the end of the engine section: tried first next time.
_last_flag_from_end: list[int] = []


def require_epoch_interruption(engine: wasmtime.Engine, module: wasmtime.Module) -> None:
    """Raise EngineConfigError unless `engine` was configured with epoch_interruption = True.

    The C API cannot read an engine's configuration, and compiling anything may never return in a
    process forked after Wasmtime compiled (a pre-fork server's worker). So read it from `module`, one
    of the engine's compiled modules (any module will do), with a bounded probe where that cannot tell:
    cached per engine.
    """
    if engine in _epoch_checked:
        return
    enabled = epoch_interruption_of(engine, module)
    if enabled is None:
        enabled = _epoch_interruption_by_running_a_probe(engine)
    if not enabled:
        raise EngineConfigError(
            "the engine was created without epoch interruption, so the profiler could never take a sample; "
            "create it from a wasmtime.Config with `config.epoch_interruption = True`"
        )
    _epoch_checked.add(engine)


def epoch_interruption_of(engine: wasmtime.Engine, module: wasmtime.Module) -> bool | None:
    """Whether `engine` has epoch interruption, told by Wasmtime without compiling; None if it does not say.

    `Module.serialize()` records the engine's settings in its `.wasmtime.engine` section, and
    `Module.deserialize()` names the first setting that differs from its engine's before it loads anything.
    Flipping one 0/1 byte of that section at a time (from the end, where the tunables are) until Wasmtime
    names epoch interruption tells which way the engine is set. Wasmtime's words are about the engine, so
    they hold even for a module of another engine (which, configured otherwise, makes it name another
    setting first: then this returns None).
    """
    artifact = bytearray(module.serialize())
    try:
        offset, size = _artifact.elf_section_bounds(artifact, _ENGINE_SECTION)
    except _artifact.MalformedArtifact:
        return None
    end = offset + size
    flags = [pos for pos in range(end - 1, offset - 1, -1) if artifact[pos] in (0, 1)]
    flags.sort(key=lambda pos: end - pos not in _last_flag_from_end)  # stable: the remembered place first
    for pos in flags:
        artifact[pos] ^= 1
        try:
            wasmtime.Module.deserialize(engine, artifact)
            message = ""
        except wasmtime.WasmtimeError as exc:
            message = str(exc)
        finally:
            artifact[pos] ^= 1
        if _EPOCH_ON_FOR_HOST in message or _EPOCH_OFF_FOR_HOST in message:
            _last_flag_from_end[:] = [end - pos]
            return _EPOCH_ON_FOR_HOST in message
    return None


def _epoch_interruption_by_running_a_probe(engine: wasmtime.Engine) -> bool:
    """The fallback where Wasmtime's artifact does not say: run a tiny probe on a throwaway store.

    The compile runs on a daemon thread, waited for in bounded time: in a process forked after Wasmtime's
    compile threads ran, it never returns (the thread is then left behind, blocked).
    """
    outcome: list[bool | BaseException] = []

    def probe() -> None:
        store = wasmtime.Store(engine)
        try:
            store.set_epoch_deadline(0)
            module = wasmtime.Module(engine, _EPOCH_PROBE_WAT)
            export = wasmtime.Instance(store, module, []).exports(store)["probe"]
            assert isinstance(export, wasmtime.Func)
            try:
                export(store)
            except wasmtime.Trap as trap:
                trap.__traceback__ = None  # it would keep this frame (and the store) in a cycle
                outcome.append(True)
                return
            outcome.append(False)
        except wasmtime.WasmtimeError as exc:
            outcome.append(exc)
        finally:
            store.close()

    thread = threading.Thread(target=probe, name="wasmtime-gp epoch probe", daemon=True)
    thread.start()
    thread.join(_PROBE_COMPILE_TIMEOUT)
    if not outcome:
        raise EngineConfigError(
            "cannot tell whether the engine has epoch interruption: this Wasmtime's compiled modules do not "
            f"say, and compiling a probe did not finish in {_PROBE_COMPILE_TIMEOUT:g} s (in a process forked "
            "after Wasmtime compiled, compiling never returns); create the first GuestProfiler of this engine "
            "before forking"
        )
    result = outcome[0]
    if isinstance(result, BaseException):
        raise EngineConfigError(f"cannot run code on this engine to check its configuration: {result}")
    return result


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


def seconds(value: object, what: str, low: float = 0.0, high: float = 1e9) -> float:
    """A duration argument: a real number of seconds in (low or 0, high]. Wrong type: ProfilerTypeError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProfilerTypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:
        raise ProfilerValueError(f"{what} must be at most {high:g} s, not {value!r}") from None
    if not math.isfinite(result) or result <= 0:
        raise ProfilerValueError(f"{what} must be a positive, finite number of seconds, not {value!r}")
    if result < low:
        raise ProfilerValueError(f"{what} must be at least {low:g} s, not {value!r}")
    if result > high:
        raise ProfilerValueError(f"{what} must be at most {high:g} s, not {value!r}")
    return result


def share(value: object, what: str, low: float, high: float) -> float:
    """A share of time, as a fraction in [low, high] (0.02 is 2 %). Wrong type: ProfilerTypeError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProfilerTypeError(f"{what} must be a fraction such as 0.02 (2 %), not {type(value).__name__}")
    result = float(value)
    if not low <= result <= high:  # NaN included
        raise ProfilerValueError(f"{what} must be a fraction from {low:g} to {high:g}, not {value!r}")
    return result


def count(value: object, what: str, low: int = 1) -> int:
    """A count argument: an int of at least `low`. Wrong type (a bool included): ProfilerTypeError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfilerTypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < low:
        raise ProfilerValueError(f"{what} must be at least {low}, not {value}")
    return value


def encode_name(text: object, what: str) -> bytes:
    """A name as UTF-8, as Wasmtime and the profile's JSON need it; anything else is refused here."""
    if not isinstance(text, str):
        raise ProfilerTypeError(f"{what} must be a str, not {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates: Wasmtime would abort on them
        raise ProfilerValueError(f"{what} {text!r} is not valid Unicode text: {exc.reason}") from None
