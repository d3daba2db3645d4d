"""GuestProfiler: sample a wasmtime-py guest's call stacks into a Firefox Profiler profile."""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Union

import wasmtime

from wasmtime_gp import (
    _checks,
    _core,
    _epochs,
    _files,
    _fxprof,
    _host_frames,
    _registry,
    _symbols,
    _ticker,
    _wasmtime_py,
)
from wasmtime_gp._abi import WASMTIME_MAJOR
from wasmtime_gp._errors import (
    GuestProfilerError,
    ProfilerStateError,
    ProfilerTypeError,
    ProfilerValueError,
)
from wasmtime_gp._symbols import WasmSource
from wasmtime_gp.profile import Profile

ModuleSpec = Union[wasmtime.Module, tuple[str, wasmtime.Module]]
ModulesArg = Union[Sequence[ModuleSpec], Mapping[str, wasmtime.Module]]

MIN_INTERVAL = 1e-6  # seconds; below this the ticker alone would saturate a core
# overhead_budget: the share of the guest's time its samples may take. Below 0.1 % a budget would lengthen
# even a shallow guest's 10 us interval; above 50 % it bounds nothing worth bounding.
MIN_OVERHEAD_BUDGET, MAX_OVERHEAD_BUDGET = 0.001, 0.5
# The default where profiling runs unattended (ContinuousProfiler, live captures): 2 %, what continuous
# profilers in production aim at (Go's pprof at 100 Hz costs about that). A 10,000-deep guest, whose sample
# costs about 1 ms, is then sampled every 50 ms instead of running 10x slower at 100 us.
DEFAULT_OVERHEAD_BUDGET = 0.02
MAX_INTERVAL = 3600.0  # seconds; a longer interval would never sample a real run
# Starvation is a sustained state: a short run can lose a few ms to a page fault or a scheduler hiccup.
STARVATION_MIN_TICKS = 100
STARVATION_MIN_RUNNING = 0.25  # seconds
# Nearly every sample without a frame means the listed modules are not the running ones; a few empty ones are
# normal (a sample taken as the guest enters or leaves).
FRAMELESS_MIN_SAMPLES = 20
FRAMELESS_SHARE = 0.9


def _refuse_component(candidate: object) -> None:
    if _wasmtime_py.is_component(candidate):
        raise ProfilerTypeError(
            "wasmtime-gp cannot profile a wasmtime.component.Component: Wasmtime's C API has no guest-profiler "
            "entry point for components (Rust has GuestProfiler::new_component; the C API has no equivalent "
            "and no way to reach a component's core modules), so no binding can profile them today; profile a "
            "core wasmtime.Module"
        )


def _normalise_modules(modules: object) -> list[tuple[bytes, wasmtime.Module]]:
    """Normalise the `modules` argument to (UTF-8 name, Module) pairs."""
    _refuse_component(modules)
    if isinstance(modules, Mapping):
        items: list[object] = list(modules.items())
    elif isinstance(modules, (str, bytes)) or not isinstance(modules, Sequence):
        raise ProfilerTypeError(
            "modules must be a sequence of wasmtime.Module or (name, Module) pairs, or a mapping "
            f"name -> Module, not {type(modules).__name__}"
        )
    else:
        items = list(modules)
    if not items:
        raise ProfilerValueError(
            "modules is empty: list the modules whose functions should appear in the profile "
            "(a profile without modules would have no frames)"
        )
    named = []
    for index, item in enumerate(items):
        _refuse_component(item[1] if isinstance(item, tuple) and len(item) == 2 else item)
        if isinstance(item, wasmtime.Module):
            _wasmtime_py.module_address(item)  # a closed module raises ClosedObjectError here
            name, module = _symbols.module_name(item) or f"module{index}", item
        elif isinstance(item, tuple) and len(item) == 2:
            name, module = item
        else:
            raise ProfilerTypeError(
                f"modules[{index}] must be a wasmtime.Module or a (name, Module) pair, "
                f"not {type(item).__name__}"
            )
        if not isinstance(module, wasmtime.Module):
            raise ProfilerTypeError(f"module {name!r} must be a wasmtime.Module, not {type(module).__name__}")
        _wasmtime_py.module_address(module)
        named.append((_checks.encode_name(name, "module name"), module))
    return named


class GuestProfiler:
    """Samples the wasm call stacks of one `wasmtime.Store` at a fixed interval.

    A native ticker thread advances the engine's epoch every `interval` seconds and a C
    epoch-deadline callback records a sample on the guest's own thread: no Python code
    and no GIL between a tick and its sample. The engine must have epoch interruption on.

    With `timeout` (seconds of wall-clock time while running), the same callback ends the guest
    with a trap once the time is up, at the first tick after it; the samples are kept.

    With `overhead_budget` (a share of the guest's time, 0.02 for 2 %), the interval lengthens while a
    sample costs more than that share of it (a deep stack), and shortens again when it can; the profile
    records the mean interval it allowed. Without (the default), the rate is exactly the one asked.
    """

    def __init__(
        self,
        store: wasmtime.Store,
        modules: ModulesArg,
        *,
        interval: float = 0.001,
        name: str | None = None,
        timeout: float | None = None,
        debug_info: Mapping[str | wasmtime.Module, WasmSource] | None = None,
        overhead_budget: float | None = None,
    ) -> None:
        if not isinstance(store, wasmtime.Store):
            raise ProfilerTypeError(f"store must be a wasmtime.Store, not {type(store).__name__}")
        self._interval = _checks.seconds(interval, "interval", MIN_INTERVAL, MAX_INTERVAL)
        timeout_ns = 0 if timeout is None else round(_checks.seconds(timeout, "timeout") * 1e9)
        self._overhead_budget = (
            None
            if overhead_budget is None
            else _checks.share(overhead_budget, "overhead_budget", MIN_OVERHEAD_BUDGET, MAX_OVERHEAD_BUDGET)
        )
        named = _normalise_modules(modules)
        process_name = named[0][0] if name is None else _checks.encode_name(name, "name")
        store_address = _wasmtime_py.store_address(store)
        engine = _wasmtime_py.store_engine(store)
        engine_address = _wasmtime_py.engine_address(engine)
        _checks.require_supported_module_count(len(named))
        _checks.require_epoch_interruption(engine, named[0][1])
        _checks.require_modules_of_engine(engine, named, process_name)

        # The store is not kept alive by its profiler (a registry of live stores holds profilers of stores
        # that may go); once it goes, the profiler keeps its samples and can only be finished.
        self._engine = engine
        self._modules = named  # Wasmtime holds its own references too; these are for rotation
        if debug_info is not None and not isinstance(debug_info, Mapping):
            raise ProfilerTypeError(
                f"debug_info must be a mapping module name -> .wasm, not {type(debug_info).__name__}"
            )
        self._debug_info = _symbols.DebugInfo(
            {module_name.decode(): module for module_name, module in named}, debug_info or {}, WASMTIME_MAJOR
        )
        self._process_name = process_name
        self._warned_starved = False
        self._warned_frameless = False
        self._result: bytes | None = None
        self._context = _wasmtime_py.context_address(store)
        # Re-entrant: a signal handler may call any method while this thread is inside another. The state
        # lives in the native half, whose start/stop/finish each run no Python code (see _core.pyx), so a
        # handler can only run between them and always finds a consistent state.
        self._lock = threading.RLock()
        spin_ticker, ticker_interval_ns = self._ticker_plan()  # its warning points at the caller

        def make_sampler() -> None:
            # Our callback replaces any guard of ours on the store, and keeps the embedder's deadline it kept.
            embedder_epoch, deadline_keeper = _epochs.for_profiler(store)
            self._native = _core.Sampler(
                engine_address,
                _wasmtime_py.engine_serial(engine),
                store_address,
                process_name,
                round(self._interval * 1e9),
                [(module_name, _wasmtime_py.module_address(m)) for module_name, m in named],
                spin_ticker,
                ticker_interval_ns,
                timeout_ns,
                embedder_epoch,
                deadline_keeper,
                self._context,
                round((self._overhead_budget or 0) * 1e6),
            )
            _epochs.adopt(store, self._native.deadline_keeper())

        # Only time inside a wasm call can be the guest's time outside wasm: see where calls begin.
        _wasmtime_py.observe_wasm_calls(_core.wasm_call_enter, _core.wasm_call_leave)
        _registry.claim_store(store_address, self, make_sampler)
        if not _core.can_clone_engine():
            # Wasmtime < 24: the ticker borrows wasmtime-py's engine pointer, so it must stop first.
            _wasmtime_py.before_engine_close(engine, self._stop)

    def _ticker_plan(self) -> tuple[bool, int]:
        """(spin, ticker interval in ns): spin only with a spare CPU; on one CPU, no faster than the floor."""
        interval_ns = round(self._interval * 1e9)
        if len(os.sched_getaffinity(0)) > 1:
            return interval_ns < _ticker.SPIN_BELOW_NS, interval_ns
        if interval_ns < _ticker.SINGLE_CPU_MIN_TICK_NS:
            warnings.warn(
                f"wasmtime-gp: this process may use one CPU only, so the ticker preempts the guest on every "
                f"tick; it will tick every {_ticker.SINGLE_CPU_MIN_TICK_NS / 1e3:g} us rather than every "
                f"{self._interval * 1e6:g} us (faster would starve the guest and give fewer samples)",
                RuntimeWarning,
                stacklevel=3,
            )
        return False, max(interval_ns, _ticker.SINGLE_CPU_MIN_TICK_NS)

    # -- state ---------------------------------------------------------------------------

    @property
    def process_name(self) -> str:
        """The profile's process name: `name=`, or the first module's name."""
        return self._process_name.decode()

    @property
    def interval(self) -> float:
        """The sampling interval, in seconds."""
        return self._interval

    @property
    def sample_count(self) -> int:
        """Samples taken so far."""
        return int(self._native.sample_count)

    @property
    def sampling_time(self) -> float:
        """Seconds the guest's thread spent inside Wasmtime's sample call: the profiler's own cost there
        (estimated: the first sample and every 16th one are timed, each standing for 16)."""
        return int(self._native.sampling_ns) / 1e9

    @property
    def timed_out(self) -> bool:
        """Whether the guest was stopped by `timeout=` (it got a trap; the profile is kept)."""
        return bool(self._native.timed_out)

    @property
    def running(self) -> bool:
        return bool(self._native.running)

    @property
    def attached(self) -> bool:
        """Whether the profiler still has its store: False once it is finished, or the store was closed
        or collected (or another epoch-deadline callback was set on it). While it has, no other profiler
        may be made on the store."""
        return not self._native.finished and bool(self._native.store_attached)

    @property
    def finished(self) -> bool:
        return bool(self._native.finished)

    def _require_engine(self) -> None:
        """Wasmtime < 24: our native side borrows wasmtime-py's engine pointer, so it must be open."""
        if not _core.can_clone_engine():
            _wasmtime_py.engine_address(self._engine)  # a closed engine raises ClosedObjectError

    def _require_unfinished(self, action: str) -> None:
        if self._native.finished:
            raise ProfilerStateError(f"cannot {action}: the profiler is finished")

    # -- control -------------------------------------------------------------------------

    def _stop(self, warn: bool = False) -> None:
        """The one way to stop sampling, from stop(), finish(), the exit handler, or (Wasmtime < 24) the
        engine's close(). What is left of a timeout is kept natively. With `warn`, say if the ticker starved."""
        with self._lock:
            _registry.clear_running(self._context, self._native)
            if self._native.stop() and warn:
                self._warn_if_starved()

    def _require_store(self) -> None:
        if not self._native.store_attached:
            raise ProfilerStateError(
                "the profiler lost its store: the store was closed, or another epoch-deadline "
                "callback was set on it"
            )

    def start(self) -> None:
        """Start (or resume) sampling; from any thread, even while the guest runs on another: sampling begins
        at the engine's next tick. (Make the profiler where the store is idle: that sets its callback.)"""
        with self._lock:
            self._require_unfinished("start()")
            if self._native.running:
                raise ProfilerStateError("the profiler is already running")
            self._require_engine()
            self._require_store()
            if self.timed_out:
                raise ProfilerStateError("the timeout was reached: finish() this profiler")
            _registry.set_running(self._context, self._native)
            if not self._native.start():  # finished meanwhile, by a signal handler
                self._stop()
                raise ProfilerStateError("cannot start(): the profiler was finished meanwhile")

    def interrupt(self) -> None:
        """Make the guest trap at its next epoch check; safe from any thread. Samples taken are kept.

        The trap surfaces in the thread running the guest as a `wasmtime.Trap` (or `WasmtimeError`)
        whose message contains "interrupted by wasmtime-gp". A guest blocked in a host call traps once
        it is back in wasm.
        """
        with self._lock:
            self._require_unfinished("interrupt()")
            self._require_store()
            self._require_engine()
            self._native.interrupt()

    def stop(self) -> None:
        """Stop sampling; idempotent, safe from any thread (and from a signal handler), a no-op once finished."""
        self._stop(warn=True)

    def _warn_if_starved(self) -> None:
        """Warn once if the ticker managed under half the ticks asked for: it could not get a CPU in time."""
        native = self._native
        expected = native.running_ns // native.ticker_interval_ns
        if (
            self._warned_starved
            or expected < STARVATION_MIN_TICKS
            or native.running_ns < STARVATION_MIN_RUNNING * 1e9
            or 2 * native.ticks_seen >= expected
        ):
            return
        self._warned_starved = True
        warnings.warn(
            f"wasmtime-gp: the ticker managed {native.ticks_seen} of {expected} ticks, so the profile holds "
            "fewer samples than asked for: the ticker thread could not get a CPU in time (the machine is "
            "loaded, or the process may use fewer CPUs than it keeps busy). Use a longer interval, or free a CPU.",
            RuntimeWarning,
            stacklevel=3,
        )

    def _warn_if_frameless(self, raw: dict[str, Any]) -> None:
        """Warn once if nearly every sample has no frame: the listed modules are not the ones running."""
        stacks = [stack for thread in raw.get("threads", []) for stack in thread["samples"]["stack"]]
        empty = stacks.count(None)
        if (
            self._warned_frameless
            or len(stacks) < FRAMELESS_MIN_SAMPLES
            or empty < FRAMELESS_SHARE * len(stacks)
        ):
            return
        self._warned_frameless = True
        warnings.warn(
            f"wasmtime-gp: {empty} of {len(stacks)} samples have no frame: the modules given to the profiler "
            "are not the ones the store runs. Pass the very Module objects that were instantiated (the same "
            "source compiled again is another module; a component's core modules cannot be listed).",
            RuntimeWarning,
            stacklevel=5,
        )

    def finish(self) -> bytes:
        """Stop, and return the profile as Firefox Profiler JSON. Ends the profiler."""
        with self._lock:
            if self._result is not None:
                raise ProfilerStateError("cannot finish(): the profiler is finished")
            return self._completed_profile()

    def _completed_profile(self) -> bytes:
        """Finish if needed (lock held) and return the whole profile; the same bytes to every caller.

        A signal handler calling finish() or profile() while this thread is inside finish() completes the
        profile itself, from what the native half kept.
        """
        if self._result is None:
            self._stop(warn=True)
            # GuestProfilerError if Wasmtime could not write it.
            data, calls, outside, first, end, strides = self._native.finish()
            result, _ = self._completed(bytes(data), calls, outside, first, end, strides)
            if self._result is None:
                self._result = result
        return self._result

    def _completed(
        self,
        data: bytes,
        calls: list[_core.HostCall],
        outside: list[_core.OutsideStretch],
        first: int,
        end: int,
        strides: int,
    ) -> tuple[bytes, int]:
        """Write in what Wasmtime could not: the host calls and the stretches outside wasm anchored in this
        profile (which holds Wasmtime's samples `first` to `end`, standing for `strides` intervals), source
        lines, and what an overhead budget made of the interval. Return the profile and its sample count.

        The count invariant: Wasmtime's `end - first` samples, plus what the host calls and stretches anchored
        here add (the sampler's `host_extra` for them), equal the rows `_host_frames.splice` writes; summed
        over every profile finished or rotated, that is `sample_count`.
        """
        raw = json.loads(data)
        self._warn_if_frameless(raw)
        if calls or outside or self._debug_info:
            count = _host_frames.splice(raw, calls, outside, first) if calls or outside else end - first
            if self._debug_info:
                _symbols.add_source_lines(raw, self._debug_info.modules())
            data = json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode()
        else:
            count = end - first
        if self._overhead_budget is not None:
            effective_ms = self._interval * 1e3 * (strides / (end - first) if end > first else 1)
            sampling = {"overheadBudget": self._overhead_budget, "effectiveInterval": effective_ms}
            data = _fxprof.with_meta(data, _fxprof.SAMPLING_KEY, sampling)
        return data, count

    def rotate(self) -> tuple[bytes, int]:
        """Finish the profile so far and go on sampling into a new one, losing no sample; return the
        finished profile's Firefox Profiler JSON and its sample count. Any thread, running or stopped.

        It takes no lock of this object's (the sampler swaps profiles atomically): a ContinuousProfiler's
        rotation thread never waits for a method that a signal handler interrupted on another thread.
        """
        self._require_unfinished("rotate()")
        modules = [(name, _wasmtime_py.module_address(module)) for name, module in self._modules]
        data, calls, outside, first, end, strides = self._native.rotate(self._process_name, modules)
        return self._completed(bytes(data), calls, outside, first, end, strides)

    def profile(self) -> Profile:
        """The profile as a `Profile`: finishes the profiler first if it is not finished yet."""
        return Profile.from_bytes(self.profile_json())

    def profile_json(self) -> bytes:
        """The profile as Firefox Profiler JSON, finishing the profiler first if it is not finished yet: the
        same bytes every time, after finish() too (which gives them once)."""
        with self._lock:
            try:
                return self._completed_profile()
            except GuestProfilerError as exc:
                raise ProfilerStateError(f"the profiler finished without a profile ({exc})") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Finish, then write the profile to `path` atomically; return the path."""
        self._require_unfinished("save()")
        _files.check_writable(path)  # before finish() consumes the profile
        return _files.atomic_write(path, self.finish())

    def __enter__(self) -> GuestProfiler:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # The registry holds the sampler while running: let it go, so that dropping a running profiler still
        # stops it (the sampler stops itself when freed).
        native = getattr(self, "_native", None)
        if native is not None:
            _registry.clear_running(self._context, native)

    def _after_fork_in_child(self) -> None:
        """In a forked child (no ticker thread, only this thread): stopped, keeping the samples; it can be
        finished, or started again to sample the child's own run. Its lock may have been held: made anew."""
        self._lock = threading.RLock()
        self._native.after_fork_in_child()

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running" if self.running else "stopped"
        return f"<GuestProfiler {state} interval={self._interval:g}s samples={self.sample_count}>"
