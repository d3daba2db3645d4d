"""Profile: read the Firefox processed-profile JSON that Wasmtime's guest profiler writes.

Wasmtime 19 to 38 write the format of fxprof-processed-profile 0.6 (preprocessedProfileVersion 46, sample times
in `samples.time`); 39 and later write 0.8's (version 55, `samples.timeDeltas`). Both are read here; anything
that is not such a profile raises ProfileFormatError.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import Any, Literal

from wasmtime_gp._errors import ProfileFormatError

HOST_MODULE = "[host]"  # the module of the frames host_calls adds: `[host] <module>.<name>`

HostFilter = Literal["include", "exclude", "only"]


@dataclass(frozen=True)
class Frame:
    """One function in a stack: a wasm function, or a host function the guest called (see host_calls).

    Frames compare by function and module: summaries are per function. Where the profiler had the
    module's DWARF (`debug_info=`), `file`, `line` and `column` say where in the source this frame was
    (a call site, or for the innermost frame the loop or function entry where the sample was taken),
    `function_line` where the function begins, and `inlined` marks a function inlined into its caller.
    """

    function: str
    module: str
    file: str | None = field(default=None, compare=False)
    line: int | None = field(default=None, compare=False)
    column: int | None = field(default=None, compare=False)
    function_line: int | None = field(default=None, compare=False)
    inlined: bool = field(default=False, compare=False)

    @property
    def is_host(self) -> bool:
        return self.module == HOST_MODULE

    def __str__(self) -> str:
        return self.function if self.is_host else f"{self.function} [{self.module}]"


@dataclass(frozen=True)
class Sample:
    """One sample: the stack from the outermost frame to the innermost, when, and the CPU it accounts for."""

    stack: tuple[Frame, ...]
    time: float  # seconds since the profile started
    cpu_delta: float  # seconds of the guest thread's CPU time since the previous sample (0 if not recorded)
    thread: str = ""  # in a merged profile, the thread (profile) it came from


@dataclass(frozen=True)
class FunctionStats:
    """A row of `Profile.top()`."""

    frame: Frame
    self_samples: int
    total_samples: int
    self_percent: float
    total_percent: float


@dataclass(frozen=True)
class LineStats:
    """A row of `Profile.top_lines()`: one source line, and the function it belongs to."""

    file: str
    line: int
    function: str
    module: str
    self_samples: int  # samples taken at this line (the innermost frame)
    total_samples: int  # samples with this line anywhere on the stack (as a call site too)
    self_percent: float
    total_percent: float


@dataclass
class CallNode:
    """A node of `Profile.call_tree()`; the root has no frame and holds every sample."""

    frame: Frame | None
    total: int = 0  # samples with this node on the stack
    self: int = 0  # samples with this node innermost
    children: dict[Frame, CallNode] = field(default_factory=dict)

    def sorted_children(self) -> list[CallNode]:
        return sorted(self.children.values(), key=lambda node: (-node.total, str(node.frame)))


class Profile:
    """A guest profile: its samples, with summaries and exports."""

    def __init__(
        self,
        name: str,
        interval: float,
        start_time: float,
        duration: float,
        samples: list[Sample],
        labels: dict[str, str] | None = None,
    ):
        self.name = name
        self.interval = interval  # seconds, as requested
        self.start_time = start_time  # seconds since the Unix epoch
        self.duration = duration  # seconds from the profiler's creation to its finish
        self.samples = samples
        self.labels = labels or {}  # attached by ContinuousProfiler (meta.wasmtimeGpLabels)

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Profile:
        """Read a profile file written by wasmtime-gp or by `wasmtime run --profile=guest`."""
        with open(path, "rb") as file:
            data = file.read()
        return cls.from_bytes(data, source=os.fspath(path))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "the data") -> Profile:
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ProfileFormatError(f"{source} is not JSON: {exc}") from None
        try:
            return _parse(raw)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise ProfileFormatError(
                f"{source} is not a Wasmtime guest profile (Firefox processed format): "
                f"{type(exc).__name__}: {exc}"
            ) from None

    # -- summaries -------------------------------------------------------------------------

    @property
    def sample_count(self) -> int:
        return len(self.samples)

    @property
    def cpu_time(self) -> float:
        return sum(sample.cpu_delta for sample in self.samples)

    def top(self, n: int = 10, by: Literal["self", "total"] = "self") -> list[FunctionStats]:
        """The `n` functions with the most samples, innermost (`self`) or anywhere on the stack (`total`)."""
        if by not in ("self", "total"):
            raise ValueError(f'by must be "self" or "total", not {by!r}')
        self_counts: Counter[Frame] = Counter()
        total_counts: Counter[Frame] = Counter()
        depth: dict[Frame, int] = {}  # the shallowest place a function was seen: ties go to callers
        for sample in self.samples:
            if sample.stack:
                self_counts[sample.stack[-1]] += 1
            total_counts.update(set(sample.stack))  # recursion counts once per sample
            for level, frame in enumerate(sample.stack):
                depth[frame] = min(level, depth.get(frame, level))
        count = max(len(self.samples), 1)
        if by == "self":
            order = sorted(total_counts, key=lambda f: (-self_counts[f], -total_counts[f], depth[f], str(f)))
        else:
            order = sorted(total_counts, key=lambda f: (-total_counts[f], depth[f], str(f)))
        return [
            FunctionStats(
                f,
                self_counts[f],
                total_counts[f],
                100 * self_counts[f] / count,
                100 * total_counts[f] / count,
            )
            for f in order[:n]
        ]

    @property
    def has_lines(self) -> bool:
        """Whether any frame carries a source line (the profiler had the module's DWARF)."""
        return any(frame.line is not None for sample in self.samples for frame in sample.stack)

    def top_lines(self, n: int = 10, by: Literal["self", "total"] = "self") -> list[LineStats]:
        """The `n` source lines with the most samples: where samples were taken (`self`) or anywhere on the stack."""
        if by not in ("self", "total"):
            raise ValueError(f'by must be "self" or "total", not {by!r}')
        self_counts: Counter[tuple[str, int]] = Counter()
        total_counts: Counter[tuple[str, int]] = Counter()
        owner: dict[tuple[str, int], Frame] = {}
        for sample in self.samples:
            located = [(f.file, f.line, f) for f in sample.stack if f.file is not None and f.line is not None]
            if not located:
                continue
            if sample.stack[-1] is located[-1][2]:
                self_counts[located[-1][0], located[-1][1]] += 1
            for file, line, frame in located:
                owner.setdefault((file, line), frame)
            total_counts.update({(file, line) for file, line, _ in located})
        count = max(len(self.samples), 1)
        counts = self_counts if by == "self" else total_counts
        order = sorted(total_counts, key=lambda key: (-counts[key], -total_counts[key], key))
        return [
            LineStats(
                file,
                line,
                owner[file, line].function,
                owner[file, line].module,
                self_counts[file, line],
                total_counts[file, line],
                100 * self_counts[file, line] / count,
                100 * total_counts[file, line] / count,
            )
            for file, line in order[:n]
        ]

    def call_tree(self) -> CallNode:
        root = CallNode(None)
        for sample in self.samples:
            node = root
            node.total += 1
            for frame in sample.stack:
                node = node.children.setdefault(frame, CallNode(frame))
                node.total += 1
            node.self += 1
        return root

    @property
    def host_sample_count(self) -> int:
        """Samples taken inside host functions (the innermost frame is a host frame)."""
        return sum(1 for sample in self.samples if sample.stack and sample.stack[-1].is_host)

    def filter_host(self, host: HostFilter) -> Profile:
        """A copy with host calls kept ("include"), left out ("exclude") or alone ("only").

        "exclude" drops the samples taken inside host functions and the host frames of wasm they
        called back into: what is left is the guest's own time. "only" keeps the samples inside
        host functions.
        """
        if host == "include":
            return self
        if host == "exclude":
            samples = [
                replace(sample, stack=tuple(frame for frame in sample.stack if not frame.is_host))
                for sample in self.samples
                if not (sample.stack and sample.stack[-1].is_host)
            ]
        elif host == "only":
            samples = [sample for sample in self.samples if sample.stack and sample.stack[-1].is_host]
        else:
            raise ValueError(f'host must be "include", "exclude" or "only", not {host!r}')
        return Profile(self.name, self.interval, self.start_time, self.duration, samples, dict(self.labels))

    def stack_counts(self) -> Counter[tuple[Frame, ...]]:
        """How many samples each distinct stack has."""
        return Counter(sample.stack for sample in self.samples)

    def __repr__(self) -> str:
        return f"<Profile {self.name!r}: {len(self.samples)} samples over {self.duration:.3f} s>"


def _parse(raw: dict[str, Any]) -> Profile:
    meta = raw["meta"]
    threads = raw["threads"]
    if not isinstance(threads, list) or not threads:
        raise ValueError(f"expected threads, found {threads!r}")
    libs = [lib["name"] for lib in raw["libs"]]
    unit = meta.get("sampleUnits", {}).get("threadCPUDelta", "µs")
    cpu_scale = {"µs": 1e-6, "ns": 1e-9, "variable CPU cycles": 0.0}.get(unit, 1e-6)
    samples: list[Sample] = []
    end = 0.0
    for thread in threads:  # Wasmtime writes one; `merge` writes one per profile merged
        thread_samples, thread_end = _parse_thread(thread, raw, libs, cpu_scale, len(threads) > 1)
        samples += thread_samples
        end = max(end, thread_end)
    samples.sort(key=lambda sample: sample.time)
    first = threads[0]
    return Profile(
        name=str(meta.get("product") or first.get("processName") or ""),
        interval=float(meta["interval"]) / 1000,
        start_time=float(meta["startTime"]) / 1000,
        duration=end / 1000,
        samples=samples,
        labels={str(k): str(v) for k, v in meta.get("wasmtimeGpLabels", {}).items()},
    )


def _parse_thread(
    thread: dict[str, Any], raw: dict[str, Any], libs: list[str], cpu_scale: float, named: bool
) -> tuple[list[Sample], float]:
    strings = thread["stringArray"] if "stringArray" in thread else raw["shared"]["stringArray"]
    resources = thread["resourceTable"]
    funcs = thread["funcTable"]
    resource_module = [
        libs[lib] if lib is not None else strings[name]
        for lib, name in zip(resources["lib"], resources["name"])
    ]
    func_files = funcs.get("fileName") or [None] * len(funcs["name"])
    func_lines = funcs.get("lineNumber") or [None] * len(funcs["name"])
    table = thread["frameTable"]
    count = len(table["func"])
    frames = [
        Frame(
            str(strings[funcs["name"][func]]),
            resource_module[resource]
            if (resource := funcs["resource"][func]) is not None and resource >= 0
            else "",
            str(strings[func_files[func]]) if func_files[func] is not None else None,
            line,
            column,
            func_lines[func],
            bool(depth),
        )
        for func, line, column, depth in zip(
            table["func"],
            table.get("line") or [None] * count,
            table.get("column") or [None] * count,
            table.get("inlineDepth") or [0] * count,
        )
    ]
    prefixes, stack_frames = thread["stackTable"]["prefix"], thread["stackTable"]["frame"]

    stacks: list[tuple[Frame, ...]] = []
    for prefix, frame in zip(prefixes, stack_frames):
        # A stack's prefix always comes before it in the table.
        parent = stacks[prefix] if prefix is not None else ()
        stacks.append((*parent, frames[frame]))

    table = thread["samples"]
    times = table["time"] if "time" in table else list(accumulate(table["timeDeltas"]))
    cpu_deltas = table.get("threadCPUDelta") or [0] * len(times)
    thread_name = str(thread.get("name", "")) if named else ""
    samples = [
        Sample(stacks[stack] if stack is not None else (), time / 1000, (delta or 0) * cpu_scale, thread_name)
        for stack, time, delta in zip(table["stack"], times, cpu_deltas)
    ]
    if len(samples) != table.get("length", len(samples)):
        raise ValueError("the samples table is truncated")
    end = thread.get("processShutdownTime") or (times[-1] if times else 0.0)
    return samples, float(end)
