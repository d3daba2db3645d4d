"""Write the host calls a profiler recorded into the Firefox JSON that Wasmtime wrote.

Wasmtime only samples wasm. While a wrapped host function runs, the ticker keeps counting our
intervals; when the function returns, `Sampler.host_exit` (_core) takes one real sample (the
*anchor*: the caller's wasm stack, still on the thread) and records how many samples the call
earned. Here each call becomes a `[host] module.name` frame on top of its anchor's stack, with
as many samples as it earned spread over its duration, an interval marker, and the frame is
inserted into the stacks of everything sampled while it ran (wasm it called back into, and host
calls nested in that). A call that earned nothing itself but had nested samples keeps its anchor
only to know its depth; that sample is removed again and its CPU time given to the next one.

Time outside wasm that no one wrapped (WASI, any native host function) is seen by the epoch callback
(_core_hot_path's `outside_wasm`): a sample taken late, when the guest came back. Its stack is the one wasm
had then; here it gets an `[outside wasm]` frame on top, and under it `[on CPU]` or `[off CPU]`: as many
samples as the callback said it stands for, as many of them on a CPU as it said, and an interval marker.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wasmtime_gp import _fxprof
from wasmtime_gp._core import HostCall
from wasmtime_gp.profile import HOST_MODULE, HOST_PREFIX, OFF_CPU, ON_CPU, OUTSIDE_WASM

HOST_CATEGORY = {"name": "Host", "color": "orange", "subcategories": ["Other"]}
OUTSIDE_CATEGORY = {"name": "Outside wasm", "color": "lightblue", "subcategories": ["Other"]}
MARKER_TYPE = "HostCall"
OUTSIDE_MARKER_TYPE = "OutsideWasm"

if TYPE_CHECKING:
    from wasmtime_gp._core import OutsideStretch


def frame_name(name: str) -> str:
    return HOST_PREFIX + name


def splice(
    raw: dict[str, Any], calls: Sequence[HostCall], outside: Sequence[OutsideStretch], base: int
) -> int:
    """Write `calls` and the stretches `outside` wasm into the profile; return its sample count. `base`: the
    index of its first sample."""
    table = _Tables(raw)
    samples = table.thread["samples"]
    times = _fxprof.sample_times(table.thread)
    stacks: list[int | None] = list(samples["stack"])
    cpu: list[float] = [delta or 0 for delta in samples.get("threadCPUDelta") or [0] * len(times)]

    frames = table.frames_of  # read before any insertion: depths refer to the stacks Wasmtime wrote
    inserts: dict[int, list[tuple[int, int]]] = {}  # sample -> (depth, host frame) to insert
    copies: list[tuple[float, int, float]] = []  # (time, sample whose final stack to copy, cpu) to add
    dropped: set[int] = set()
    for call in calls:
        anchor = call.anchor - base
        if not 0 <= anchor < len(stacks):
            continue  # its anchor went into another profile (a rotation in between)
        host_frame = table.host_frame(call.name)
        depth = len(frames(stacks[anchor]))
        for nested in range(max(call.first_nested - base, 0), anchor):
            inserts.setdefault(nested, []).append((depth, host_frame))
        if call.samples == 0:
            dropped.add(anchor)
            continue
        inserts.setdefault(anchor, []).append((depth, host_frame))
        end, wall = times[anchor], call.wall_ns / 1e6
        share = cpu[anchor] / call.samples
        cpu[anchor] = share
        copies.extend(
            (max(end - wall * k / call.samples, 0.0), anchor, share) for k in range(1, call.samples)
        )
        table.add_marker(call.name, max(end - wall, 0.0), end, call.samples)

    stretches = {anchor - base: stretch for anchor, *stretch in outside if 0 <= anchor - base < len(stacks)}
    original = {index: frames(stacks[index]) for index in {*inserts, *stretches}}
    for index, pairs in inserts.items():
        stacks[index] = table.intern(_with_inserts(original[index], pairs))
    extra = [(time, stacks[source], share) for time, source, share in copies]
    for index, (count, on, stretch_ns, on_cpu_ns) in stretches.items():
        # The last `on` of its samples ran on a CPU (a blocking read waits, then copies), the rest did not.
        outside_stack = table.intern([table.outside_frame(OUTSIDE_WASM)], stacks[index])
        leaves = [table.intern([table.outside_frame(ON_CPU if k < on else OFF_CPU)], outside_stack)
                  for k in range(count)]  # fmt: skip
        end, stretch = times[index], stretch_ns / 1e6
        share = cpu[index] / count
        cpu[index], stacks[index] = share, leaves[0]
        extra.extend((max(end - stretch * k / count, 0.0), leaves[k], share) for k in range(1, count))
        table.add_outside_marker(max(end - stretch, 0.0), end, count, on_cpu_ns, stretch_ns)
    rows = [(times[i], stacks[i], cpu[i]) for i in range(len(stacks)) if i not in dropped]
    rows += extra
    rows.sort(key=lambda row: row[0])
    row_times = [row[0] for row in rows]
    for index in dropped:  # a dropped anchor's CPU time goes to the next sample
        later = bisect.bisect_left(row_times, times[index])
        if later < len(rows):
            time, stack, delta = rows[later]
            rows[later] = (time, stack, delta + cpu[index])
    _write_samples(table.thread, rows)
    return len(rows)


def _with_inserts(frames: list[int], pairs: list[tuple[int, int]]) -> list[int]:
    out = list(frames)
    for depth, frame in sorted(pairs, reverse=True):  # deepest first keeps the shallower depths valid
        out.insert(min(depth, len(out)), frame)
    return out


def _write_samples(thread: dict[str, Any], rows: list[tuple[float, int | None, float]]) -> None:
    samples = thread["samples"]
    samples["stack"] = [row[1] for row in rows]
    _fxprof.set_sample_times(thread, [row[0] for row in rows])
    if "threadCPUDelta" in samples:
        samples["threadCPUDelta"] = [round(row[2]) for row in rows]
    if isinstance(samples.get("weight"), list):
        samples["weight"] = [1] * len(rows)
    samples["length"] = len(rows)


class _Tables(_fxprof.ThreadTables):
    """The thread's tables, with the host resource, category, frames and markers a splice adds."""

    def __init__(self, raw: dict[str, Any]) -> None:
        super().__init__(raw)
        self.host_frames: dict[str, int] = {}  # by function name, host calls' and outside wasm's
        self._category: int | None = None
        self._outside_category: int | None = None
        self._resource: int | None = None

    def category(self) -> int:
        if self._category is None:
            categories = self.raw["meta"].setdefault("categories", [])
            categories.append(dict(HOST_CATEGORY))
            self._category = len(categories) - 1
        return self._category

    def resource(self) -> int:
        if self._resource is None:
            self._resource = _fxprof.append_row(
                self.thread["resourceTable"], {"lib": None, "name": self.string(HOST_MODULE), "type": 0}
            )
        return self._resource

    def host_frame(self, name: str) -> int:
        return self._frame(frame_name(name), self.category())

    def outside_frame(self, name: str) -> int:
        return self._frame(name, self.outside_category())

    def outside_category(self) -> int:
        if self._outside_category is None:
            categories = self.raw["meta"].setdefault("categories", [])
            categories.append(dict(OUTSIDE_CATEGORY))
            self._outside_category = len(categories) - 1
        return self._outside_category

    def _frame(self, function: str, category: int) -> int:
        """The frame of a function of the host resource (made at its first use)."""
        if function not in self.host_frames:
            func = _fxprof.append_row(
                self.thread["funcTable"],
                {
                    "name": self.string(function),
                    "isJS": False,
                    "relevantForJS": False,
                    "resource": self.resource(),
                },
            )
            self.host_frames[function] = _fxprof.append_row(
                self.thread["frameTable"],
                {
                    "address": -1,
                    "inlineDepth": 0,
                    "category": category,
                    "subcategory": 0,
                    "func": func,
                    "innerWindowID": 0,
                },
            )
        return self.host_frames[function]

    def add_marker(self, name: str, start: float, end: float, samples: int) -> None:
        self._declare_marker_schema()
        _fxprof.append_row(
            self.thread["markers"],
            {
                "name": self.string(frame_name(name)),
                "startTime": start,
                "endTime": end,
                "phase": 1,  # an interval
                "category": self.category(),
                "data": {"type": MARKER_TYPE, "function": name, "samples": samples},
            },
        )
        self.thread["showMarkersInTimeline"] = True

    def add_outside_marker(
        self, start: float, end: float, samples: int, on_cpu_ns: int, stretch_ns: int
    ) -> None:
        _fxprof.declare_marker_schema(
            self.raw,
            {
                "name": OUTSIDE_MARKER_TYPE,
                "display": ["marker-chart", "marker-table", "timeline-overview"],
                "chartLabel": "outside wasm",
                "tooltipLabel": "outside wasm: {marker.data.onCpu} on CPU",
                "tableLabel": "outside wasm: {marker.data.onCpu} on CPU, {marker.data.offCpu} off CPU",
            },
            [
                {"key": "onCpu", "label": "On CPU", "format": "milliseconds"},
                {"key": "offCpu", "label": "Off CPU", "format": "milliseconds"},
                {"key": "samples", "label": "Samples", "format": "integer"},
            ],
        )
        _fxprof.append_row(
            self.thread["markers"],
            {
                "name": self.string(OUTSIDE_WASM),
                "startTime": start,
                "endTime": end,
                "phase": 1,  # an interval
                "category": self.outside_category(),
                "data": {
                    "type": OUTSIDE_MARKER_TYPE,
                    "onCpu": on_cpu_ns / 1e6,
                    "offCpu": (stretch_ns - on_cpu_ns) / 1e6,
                    "samples": samples,
                },
            },
        )
        self.thread["showMarkersInTimeline"] = True

    def _declare_marker_schema(self) -> None:
        _fxprof.declare_marker_schema(
            self.raw,
            {
                "name": MARKER_TYPE,
                "display": ["marker-chart", "marker-table", "timeline-overview"],
                "chartLabel": "{marker.data.function}",
                "tooltipLabel": "host call {marker.data.function}",
                "tableLabel": "{marker.data.function}",
            },
            [
                {"key": "function", "label": "Host function", "format": "string"},
                {"key": "samples", "label": "Samples", "format": "integer"},
            ],
        )
