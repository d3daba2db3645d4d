"""Continuous profiling with bounded memory: rotate the profile every `period` seconds or `max_samples` samples.

Each rotation swaps in a fresh Wasmtime profiler under the sampler's lock (no sample lost or counted twice),
finishes the old one, attaches the labels, and hands it to a sink: a callable, or a directory keeping the newest
`keep` files. Rotation and writing happen on a background thread, never on the guest's thread.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Union

import wasmtime

from wasmtime_gp import _checks, _files, _fxprof, _registry
from wasmtime_gp._errors import ProfilerStateError, ProfilerTypeError, ProfilerValueError
from wasmtime_gp._symbols import WasmSource
from wasmtime_gp.profile import Profile
from wasmtime_gp.profiler import DEFAULT_OVERHEAD_BUDGET, GuestProfiler, ModulesArg

_POLL = 0.05  # at most this many seconds between sample-count checks when max_samples is set
# How long stop() and close() wait for the sink to take the last slice: a sink that blocks must not hang them.
# (At exit, _registry.EXIT_TIMEOUT bounds the wait for all of them together.)
DELIVERY_TIMEOUT = 10.0


@dataclass(frozen=True)
class RotatedProfile:
    """One finished slice of a continuous profile."""

    data: bytes  # Firefox Profiler JSON, labels included
    sequence: int  # 0, 1, 2, ... per ContinuousProfiler
    started: float  # Unix time the slice began
    ended: float  # Unix time it was finished
    sample_count: int
    labels: dict[str, str] = field(default_factory=dict)

    def profile(self) -> Profile:
        return Profile.from_bytes(self.data)


Sink = Union[Callable[[RotatedProfile], object], str, "os.PathLike[str]"]


class DirectorySink:
    """Writes each profile atomically as NAME-YYYYmmddTHHMMSS.ffffffZ-SEQ.json; keeps the newest `keep`."""

    def __init__(self, directory: str | os.PathLike[str], name: str, keep: int | None = None) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ProfilerValueError(f"{self.directory} is not a directory")
        self.name = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "profile"
        self.keep = keep

    def __call__(self, rotated: RotatedProfile) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(rotated.ended))
        micros = int((rotated.ended % 1) * 1e6)
        target = self.directory / f"{self.name}-{stamp}.{micros:06d}Z-{rotated.sequence:06d}.json"
        _files.atomic_write(target, rotated.data)
        if self.keep is not None:
            ours = sorted(self.directory.glob(f"{self.name}-*Z-*.json"))
            for old in ours[: max(0, len(ours) - self.keep)]:
                old.unlink(missing_ok=True)


class ContinuousProfiler:
    """A GuestProfiler that rotates its profile and hands each finished one to `sink`."""

    def __init__(
        self,
        store: wasmtime.Store,
        modules: ModulesArg,
        *,
        sink: Sink,
        interval: float = 0.001,
        period: float | None = 60.0,
        max_samples: int | None = None,
        keep: int | None = None,
        labels: Mapping[str, str] | None = None,
        name: str | None = None,
        timeout: float | None = None,
        debug_info: Mapping[str | wasmtime.Module, WasmSource] | None = None,
        overhead_budget: float | None = DEFAULT_OVERHEAD_BUDGET,
    ) -> None:
        period = None if period is None else _checks.seconds(period, "period")
        max_samples = None if max_samples is None else _checks.count(max_samples, "max_samples")
        keep = None if keep is None else _checks.count(keep, "keep")
        if period is None and max_samples is None:
            raise ProfilerValueError("give a period, max_samples, or both: otherwise nothing would rotate")
        self.labels = {str(k): str(v) for k, v in (labels or {}).items()}
        for key, value in self.labels.items():  # they go into every profile's JSON and pprof strings
            _checks.encode_name(key, "label name")
            _checks.encode_name(value, f"label {key!r}")
        self._profiler = GuestProfiler(
            store,
            modules,
            interval=interval,
            name=name,
            timeout=timeout,
            debug_info=debug_info,
            overhead_budget=overhead_budget,
        )
        if callable(sink):
            if keep is not None:
                raise ProfilerValueError("keep applies to a directory sink, not to a callable")
            self._sink: Callable[[RotatedProfile], object] = sink
        elif isinstance(sink, (str, os.PathLike)):
            self._sink = DirectorySink(sink, self._profiler.process_name, keep)
        else:
            raise ProfilerTypeError(f"sink must be a callable or a directory path, not {type(sink).__name__}")
        self.period = period
        self.max_samples = max_samples
        self.sink_errors: list[BaseException] = []
        self._sequence = 0
        self._samples_delivered = 0  # in slices rotated out
        self._samples_sunk = 0  # in slices the sink returned from
        self._slice_started = time.time()
        self._make_locks()
        self._rotation: _Rotation | None = None
        self._closing = False
        self._inherited = False  # made in the parent of this forked process
        _registry.track_continuous(self)

    def _make_locks(self) -> None:
        # Re-entrant, so that a signal handler on a thread inside one of these methods can call them too.
        self._control = threading.RLock()  # start, stop, close
        self._rotation_lock = threading.RLock()  # one rotation at a time

    @property
    def profiler(self) -> GuestProfiler:
        return self._profiler

    @property
    def rotations(self) -> int:
        """Profiles handed to the sink so far."""
        return self._sequence

    def start(self) -> None:
        """Start sampling, and the thread that rotates and delivers."""
        with self._control:
            if self._inherited:
                raise ProfilerStateError(
                    "this ContinuousProfiler was made before fork(): its samples are the parent's to deliver; "
                    "make a new one in this process"
                )
            if self._closing:
                raise ProfilerStateError("cannot start(): the ContinuousProfiler is closed")
            before = self._rotation
            self._profiler.start()
            rotation = _Rotation(self._rotate_until)
            if self._rotation is not before or self._closing or not self._profiler.running:
                rotation.request_stop()  # a signal handler started, stopped or closed it meanwhile: that stands
                return
            self._rotation = rotation

    def stop(self, timeout: float = DELIVERY_TIMEOUT) -> bool:
        """Stop sampling now, and deliver what was sampled since the last rotation.

        The rotation thread delivers it; this waits for it at most `timeout` seconds. Returns whether
        everything was delivered in time (if not, one warning says so, and the thread may still finish).
        """
        with self._control:
            self._profiler.stop()
            rotation = self._rotation
            if rotation is None:
                return True
            rotation.request_stop()
            if self._rotation_lock._is_owned():  # type: ignore[attr-defined]
                # A signal handler, on a thread inside rotate(): waiting would deadlock, since the rotation
                # thread needs that lock. It delivers once this thread goes on.
                return False
            if not rotation.wait(timeout):
                warnings.warn(
                    f"wasmtime-gp: the profile sink did not return within {timeout:.3g} s: "
                    f"{self._profiler.sample_count - self._samples_sunk} samples may not be delivered",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return False
            if self._rotation is rotation:
                self._rotation = None
            return True

    def close(self, timeout: float = DELIVERY_TIMEOUT) -> bool:
        """Stop (delivering the last slice, waiting at most `timeout` s), then end the profiler.

        Returns whether the last slice was delivered in time. If not, what the rotation thread had not rotated
        yet is dropped with the profiler (the warning counted it); a slice already handed to the sink is
        still delivered if the sink returns.
        """
        with self._control:
            self._closing = True
            _registry.untrack_continuous(self)
            delivered = self.stop(timeout)
            self._finish_profiler()
            return delivered

    def _finish_profiler(self) -> None:
        try:
            if not self._profiler.finished:
                self._profiler.finish()
        except ProfilerStateError:
            pass  # finished meanwhile, by a signal handler calling close() too

    def rotate(self) -> None:
        """Finish the current slice now and hand it to the sink (also called by the rotation thread).

        Waits at most DELIVERY_TIMEOUT s for a rotation in progress (its sink may block), then raises
        ProfilerStateError.
        """
        if not self._rotation_lock.acquire(timeout=DELIVERY_TIMEOUT):
            raise ProfilerStateError(
                f"cannot rotate(): the sink has held the previous slice for {DELIVERY_TIMEOUT:g} s"
            )
        try:
            self._rotate_locked()
        finally:
            self._rotation_lock.release()

    def _rotate_locked(self) -> None:
        if self._inherited:
            return  # the parent delivers these samples
        data, sample_count = self._profiler.rotate()
        ended = time.time()
        rotated = RotatedProfile(
            data=_fxprof.with_labels(data, self.labels),
            sequence=self._sequence,
            started=self._slice_started,
            ended=ended,
            sample_count=sample_count,
            labels=dict(self.labels),
        )
        self._sequence += 1
        self._samples_delivered += sample_count
        self._slice_started = ended
        try:
            self._sink(rotated)
            self._samples_sunk += sample_count
        except Exception as exc:  # noqa: BLE001 (a failing sink must not stop profiling)
            self.sink_errors.append(exc)
            warnings.warn(f"wasmtime-gp: the profile sink failed: {exc!r}", RuntimeWarning, stacklevel=2)

    def _rotate_until(self, stop: queue.SimpleQueue[None]) -> None:
        """The rotation thread: rotate when due, and once stopped, deliver the last slice."""
        last = time.monotonic()
        if self.max_samples is not None:  # check often enough to overshoot by a quarter at most
            wait: float | None = max(0.001, min(_POLL, self.max_samples * self._profiler.interval / 4))
        else:
            wait = self.period
        while not _stopped(stop, wait):
            due = self.period is not None and time.monotonic() - last >= self.period
            full = (
                self.max_samples is not None
                and self._profiler.sample_count - self._samples_delivered >= self.max_samples
            )
            if due or full:
                self._rotate_unless_finished()
                last = time.monotonic()
            if self.period is not None and self.max_samples is None:
                wait = max(0.0, self.period - (time.monotonic() - last))
        self._rotate_unless_finished()

    def _rotate_unless_finished(self) -> None:
        try:
            self.rotate()
        except ProfilerStateError:
            pass  # closed meanwhile (a timed-out close, or a signal handler): nothing left to deliver

    def _close_at_exit(self, timeout: float) -> None:
        """The interpreter is exiting: deliver the last slice if running (this process's own only)."""
        if not self._inherited:
            self.close(timeout=timeout)

    def _after_fork_in_child(self) -> None:
        """The rotation thread did not survive the fork, and its locks may have been held there."""
        self._make_locks()
        self._rotation = None
        self._inherited = True

    def __enter__(self) -> ContinuousProfiler:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Rotation:
    """The rotation thread, told to stop and waited for with SimpleQueues, whose put() and get() a signal
    handler may call on a thread already inside one of them (threading.Event.set() and Thread.join()
    would deadlock there)."""

    def __init__(self, target: Callable[[queue.SimpleQueue[None]], None]) -> None:
        self._stop_requests: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.finished = False
        self._target = target
        threading.Thread(target=self._run, name="wasmtime-gp rotation", daemon=True).start()

    def _run(self) -> None:
        try:
            self._target(self._stop_requests)
        finally:
            self.finished = True  # before put(): a waiter between its get() and put() sees this
            self._done.put(None)

    def request_stop(self) -> None:
        self._stop_requests.put(None)

    def wait(self, timeout: float) -> bool:
        """Wait for the thread to end, at most `timeout` seconds; whether it did."""
        if self.finished:
            return True
        try:
            self._done.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return False
        self._done.put(None)  # for any other waiter
        return True


def _stopped(stop: queue.SimpleQueue[None], timeout: float | None) -> bool:
    """Wait up to `timeout` seconds (None: for ever) for a stop request."""
    try:
        stop.get(timeout=timeout)
    except queue.Empty:
        return False
    return True
