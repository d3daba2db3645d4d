"""Continuous profiling with bounded memory: rotate the profile every `period` seconds or `max_samples` samples.

Each rotation swaps in a fresh Wasmtime profiler under the sampler's lock (no sample lost or counted twice),
finishes the old one, attaches the labels, and hands it to a sink: a callable, or a directory keeping the newest
`keep` files. Rotation and writing happen on a background thread, never on the guest's thread.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Union

import wasmtime

from wasmtime_gp import _checks
from wasmtime_gp._errors import ProfilerTypeError, ProfilerValueError
from wasmtime_gp.profile import Profile
from wasmtime_gp.profiler import GuestProfiler, ModulesArg

LABELS_KEY = "wasmtimeGpLabels"  # where labels go in the profile's meta object
_POLL = 0.05  # at most this many seconds between sample-count checks when max_samples is set


def with_labels(data: bytes, labels: Mapping[str, str]) -> bytes:
    """The Firefox profile JSON with `labels` added to its meta object."""
    if not labels:
        return data
    entry = json.dumps({LABELS_KEY: dict(labels)}, ensure_ascii=False)[1:-1].encode()
    prefix = b'{"meta":{'
    if data.startswith(prefix):  # how Wasmtime writes it: splice instead of re-encoding a large document
        return prefix + entry + b"," + data[len(prefix) :]
    document = json.loads(data)
    document["meta"][LABELS_KEY] = dict(labels)
    return json.dumps(document, ensure_ascii=False).encode()


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
        temporary = self.directory / f".{target.name}.{secrets.token_hex(4)}.tmp"
        with open(temporary, "xb") as out:
            out.write(rotated.data)
        os.replace(temporary, target)
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
    ) -> None:
        if period is not None and (isinstance(period, bool) or not isinstance(period, (int, float))):
            raise ProfilerTypeError(
                f"period must be a number of seconds or None, not {type(period).__name__}"
            )
        if period is not None and not (math.isfinite(period) and period > 0):
            raise ProfilerValueError(f"period must be a positive number of seconds, not {period!r}")
        if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)):
            raise ProfilerTypeError("max_samples must be an int or None")
        if max_samples is not None and max_samples < 1:
            raise ProfilerValueError(f"max_samples must be at least 1, not {max_samples}")
        if period is None and max_samples is None:
            raise ProfilerValueError("give a period, max_samples, or both: otherwise nothing would rotate")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ProfilerValueError(f"keep must be a positive int or None, not {keep!r}")
        self.labels = {str(k): str(v) for k, v in (labels or {}).items()}
        for key, value in self.labels.items():  # they go into every profile's JSON and pprof strings
            _checks.utf8(key, "label name")
            _checks.utf8(value, f"label {key!r}")
        self._profiler = GuestProfiler(store, modules, interval=interval, name=name)
        if callable(sink):
            if keep is not None:
                raise ProfilerValueError("keep applies to a directory sink, not to a callable")
            self._sink: Callable[[RotatedProfile], object] = sink
        elif isinstance(sink, (str, os.PathLike)):
            self._sink = DirectorySink(sink, self._profiler._process_name.decode(), keep)
        else:
            raise ProfilerTypeError(f"sink must be a callable or a directory path, not {type(sink).__name__}")
        self.period = period
        self.max_samples = max_samples
        self.sink_errors: list[BaseException] = []
        self._sequence = 0
        self._samples_delivered = 0
        self._slice_started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rotation_lock = threading.Lock()

    @property
    def profiler(self) -> GuestProfiler:
        return self._profiler

    @property
    def rotations(self) -> int:
        """Profiles handed to the sink so far."""
        return self._sequence

    def start(self) -> None:
        self._profiler.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._rotate_forever, name="wasmtime-gp rotation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and the rotation thread; deliver what was sampled since the last rotation."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._profiler.stop()
        self.rotate()

    def close(self) -> None:
        """Stop, then end the profiler; nothing more is delivered."""
        self.stop()
        if not self._profiler.finished:
            self._profiler.finish()

    def rotate(self) -> None:
        """Finish the current slice now and hand it to the sink (also called by the rotation thread)."""
        with self._rotation_lock:
            self._rotate_locked()

    def _rotate_locked(self) -> None:
        data, sample_count = self._profiler._rotate()
        ended = time.time()
        rotated = RotatedProfile(
            data=with_labels(data, self.labels),
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
        except Exception as exc:  # noqa: BLE001 (a failing sink must not stop profiling)
            self.sink_errors.append(exc)
            warnings.warn(f"wasmtime-gp: the profile sink failed: {exc!r}", RuntimeWarning, stacklevel=2)

    def _rotate_forever(self) -> None:
        last = time.monotonic()
        if self.max_samples is not None:  # check often enough to overshoot by a quarter at most
            wait: float | None = max(0.001, min(_POLL, self.max_samples * self._profiler.interval / 4))
        else:
            wait = self.period
        while not self._stop.wait(wait):
            due = self.period is not None and time.monotonic() - last >= self.period
            full = (
                self.max_samples is not None
                and self._profiler.sample_count - self._samples_delivered >= self.max_samples
            )
            if due or full:
                self.rotate()
                last = time.monotonic()
            if self.period is not None and self.max_samples is None:
                wait = max(0.0, self.period - (time.monotonic() - last))

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
