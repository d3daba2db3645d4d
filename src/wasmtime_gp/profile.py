"""Profile: read the Firefox processed-profile JSON that Wasmtime's guest profiler writes.

Every version a Wasmtime release writes is read (see `_fxprof` for which writes which); anything that is not
such a profile raises ProfileFormatError.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any, Literal

from wasmtime_gp import _fxprof
from wasmtime_gp import diff as _diff
from wasmtime_gp._errors import ProfileFormatError

# The module (the Firefox profile's resource) of the frames host_calls adds, named `[host] <module>.<name>`:
# "host" reads well where the Firefox Profiler writes `resource!function`; files written before say "[host]".
HOST_MODULE = "host"
HOST_PREFIX = "[host] "
_HOST_MODULES = (HOST_MODULE, "[host]")
# The guest's time outside wasm in host functions nobody wrapped (WASI's, any native one): `[outside wasm]` on
# top of the stack wasm had when it came back, and under it whether the thread ran on a CPU meanwhile.
OUTSIDE_WASM, ON_CPU, OFF_CPU = "[outside wasm]", "[on CPU]", "[off CPU]"

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
        """A host function the guest called (wrapped with host_calls), not a wasm function."""
        return self.module in _HOST_MODULES and self.function.startswith(HOST_PREFIX)

    @property
    def is_outside(self) -> bool:
        """One of the frames that stand for the guest's time outside wasm, in host functions nobody wrapped:
        `[outside wasm]`, and under it `[on CPU]` or `[off CPU]`."""
        return self.module == HOST_MODULE and self.function in (OUTSIDE_WASM, ON_CPU, OFF_CPU)

    @property
    def is_wasm(self) -> bool:
        """A wasm function: neither a host call's frame nor one of outside wasm's."""
        return not (self.is_host or self.is_outside)

    def __str__(self) -> str:
        return f"{self.function} [{self.module}]" if self.is_wasm else self.function


class StackTable:
    """Stacks as the Firefox stackTable holds them: stack `i` is stack `prefix[i]` (-1: none) with `frame[i]` on top.

    Stacks share their prefixes, so a profile's stacks take memory linear in its table however deep they are.
    A stack's prefix always comes before it.
    """

    __slots__ = ("depth", "frame", "prefix")

    def __init__(self) -> None:
        self.prefix: list[int] = []
        self.frame: list[Frame] = []
        self.depth: list[int] = []  # frames in the stack: 1 for an outermost frame

    def __len__(self) -> int:
        return len(self.prefix)

    def push(self, prefix: int, frame: Frame) -> int:
        """Add the stack `prefix` + `frame`; return its index."""
        self.prefix.append(prefix)
        self.frame.append(frame)
        self.depth.append(self.depth[prefix] + 1 if prefix >= 0 else 1)
        return len(self.prefix) - 1

    def frames(self, stack: int) -> tuple[Frame, ...]:
        """The stack's frames, outermost first (-1: the empty stack)."""
        out = []
        while stack >= 0:
            out.append(self.frame[stack])
            stack = self.prefix[stack]
        out.reverse()
        return tuple(out)

    @classmethod
    def of(cls, frames: Iterable[Frame]) -> tuple[StackTable, int]:
        """A table holding one stack, and that stack's index."""
        table, stack = cls(), -1
        for frame in frames:
            stack = table.push(stack, frame)
        return table, stack


class Sample:
    """One sample: the stack from the outermost frame to the innermost, when, and the CPU it accounts for.

    `stack` is built from the profile's shared stack table at each access (a new tuple every time: keep it
    when you need it twice); `leaf` and `depth` take no time whatever the depth.
    """

    __slots__ = ("_stack", "_table", "cpu_delta", "thread", "time")
    _table: StackTable
    _stack: int  # in _table; -1 for the empty stack
    time: float  # seconds since the profile started
    cpu_delta: float  # seconds of the guest thread's CPU time since the previous sample (0 if not recorded)
    thread: str  # in a merged profile, the thread (profile) it came from

    def __init__(self, stack: Iterable[Frame], time: float, cpu_delta: float, thread: str = "") -> None:
        table, index = StackTable.of(stack)
        _set_sample(self, table, index, time, cpu_delta, thread)

    @classmethod
    def at(cls, table: StackTable, stack: int, time: float, cpu_delta: float, thread: str = "") -> Sample:
        """A sample whose stack is `stack` (-1: empty) of `table`, shared with other samples."""
        sample = cls.__new__(cls)
        _set_sample(sample, table, stack, time, cpu_delta, thread)
        return sample

    @property
    def stack(self) -> tuple[Frame, ...]:
        return self._table.frames(self._stack)

    @property
    def table(self) -> StackTable:
        return self._table

    @property
    def stack_index(self) -> int:
        """The sample's stack in `table` (-1: empty)."""
        return self._stack

    @property
    def leaf(self) -> Frame | None:
        """The innermost frame, None for an empty stack."""
        return self._table.frame[self._stack] if self._stack >= 0 else None

    @property
    def depth(self) -> int:
        return self._table.depth[self._stack] if self._stack >= 0 else 0

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type[Sample], tuple[tuple[Frame, ...], float, float, str]]:
        return Sample, (self.stack, self.time, self.cpu_delta, self.thread)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sample):
            return NotImplemented
        if (self.time, self.cpu_delta, self.thread, self.depth) != (
            other.time,
            other.cpu_delta,
            other.thread,
            other.depth,
        ):
            return False
        mine, theirs = self._stack, other._stack
        while mine >= 0 and not (self._table is other._table and mine == theirs):
            if self._table.frame[mine] != other._table.frame[theirs]:
                return False
            mine, theirs = self._table.prefix[mine], other._table.prefix[theirs]
        return True

    def __hash__(self) -> int:
        return hash((self.time, self.cpu_delta, self.thread, self.depth, self.leaf))

    def __repr__(self) -> str:
        leaf = f", innermost {self.leaf}" if self.leaf is not None else ""
        return (
            f"Sample(stack=<{self.depth} frames{leaf}>, time={self.time!r}, cpu_delta={self.cpu_delta!r}, "
            f"thread={self.thread!r})"
        )


def _set_sample(
    sample: Sample, table: StackTable, stack: int, time: float, cpu_delta: float, thread: str
) -> None:
    setattr_ = object.__setattr__
    setattr_(sample, "_table", table)
    setattr_(sample, "_stack", stack)
    setattr_(sample, "time", time)
    setattr_(sample, "cpu_delta", cpu_delta)
    setattr_(sample, "thread", thread)


class Tally:
    """The samples of one stack table: how many end at each stack (`ends`) and pass through it (`through`)."""

    def __init__(self, table: StackTable) -> None:
        self.table = table
        self.ends = [0] * len(table)
        self.through: list[int] = []

    def _finish(self) -> None:
        through = self.through = list(self.ends)
        prefix = self.table.prefix
        for stack in range(len(through) - 1, -1, -1):  # children come after their prefix
            if through[stack] and prefix[stack] >= 0:
                through[prefix[stack]] += through[stack]

    def sampled(self) -> Iterator[int]:
        """The stacks some sample passes through, prefixes first."""
        return (stack for stack, count in enumerate(self.through) if count)

    def preorder(self) -> Iterator[tuple[int, bool]]:
        """(stack, entering) for each sampled stack, depth first: entering, its subtree, then leaving."""
        first, sibling = [-1] * len(self.through), [-1] * len(self.through)
        roots = -1
        prefix = self.table.prefix
        for stack in range(len(self.through) - 1, -1, -1):  # backwards, so siblings come out in table order
            if self.through[stack]:
                parent = prefix[stack]
                if parent >= 0:
                    sibling[stack], first[parent] = first[parent], stack
                else:
                    sibling[stack], roots = roots, stack
        pending = [roots] if roots >= 0 else []
        while pending:
            stack = pending.pop()
            if stack < 0:  # ~stack is being left
                yield ~stack, False
                continue
            yield stack, True
            if sibling[stack] >= 0:
                pending.append(sibling[stack])
            pending.append(~stack)
            if first[stack] >= 0:
                pending.append(first[stack])

    def outermost(self, keys: list[int]) -> Counter[int]:
        """Samples per key (`keys[stack]`, -1 for none) counting once a key found several times on one stack."""
        totals: Counter[int] = Counter()
        on_path: Counter[int] = Counter()
        for stack, entering in self.preorder():
            key = keys[stack]
            if key < 0:
                continue
            if entering:
                if not on_path[key]:
                    totals[key] += self.through[stack]
                on_path[key] += 1
            else:
                on_path[key] -= 1
        return totals


def tallies(samples: Iterable[Sample]) -> tuple[list[Tally], int]:
    """A tally per stack table the samples use, and the number of samples with an empty stack."""
    by_table: dict[int, Tally] = {}
    empty = 0
    for sample in samples:
        if sample.stack_index < 0:
            empty += 1
            continue
        tally = by_table.get(id(sample.table))
        if tally is None:
            tally = by_table[id(sample.table)] = Tally(sample.table)
        tally.ends[sample.stack_index] += 1
    for tally in by_table.values():
        tally._finish()
    return list(by_table.values()), empty


def _keys(values: list[Any]) -> tuple[list[int], list[Any]]:
    """A small int per distinct value (-1 for None), and the first value of each key."""
    index: dict[Any, int] = {}
    by_id: dict[int, int] = {}  # most stacks share their Frame objects: hash each object once
    firsts: list[Any] = []
    keys = []
    for value in values:
        key = by_id.get(id(value))
        if key is None:
            if value is None:
                key = -1
            else:
                key = index.setdefault(value, len(index))
                if key == len(firsts):
                    firsts.append(value)
            by_id[id(value)] = key
        keys.append(key)
    return keys, firsts


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
        effective_interval: float | None = None,
    ):
        self.name = name
        self.interval = interval  # seconds, as requested
        self.start_time = start_time  # seconds since the Unix epoch
        self.duration = duration  # seconds from the profiler's creation to its finish
        self.samples = samples
        self.labels = labels or {}  # attached by ContinuousProfiler (meta.wasmtimeGpLabels)
        # With an overhead budget: the mean interval between samples it allowed (None: the interval asked).
        self.effective_interval = effective_interval

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
        for tally in tallies(self.samples)[0]:
            keys, frames = _keys(tally.table.frame)
            shallowest = [len(tally.table)] * len(frames)
            for stack in tally.sampled():
                key = keys[stack]
                self_counts[frames[key]] += tally.ends[stack]
                shallowest[key] = min(shallowest[key], tally.table.depth[stack] - 1)
            for key, count in tally.outermost(keys).items():  # recursion counts once per sample
                total_counts[frames[key]] += count
                depth[frames[key]] = min(shallowest[key], depth.get(frames[key], shallowest[key]))
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

    def diff(
        self, base: Profile, by: Literal["self", "total"] = "self", alpha: float = _diff.ALPHA
    ) -> _diff.ProfileDiff:
        """How each function's share of the samples changed from `base` to this profile, the largest change
        first, each marked significant or not (a two-proportion z-test, Bonferroni over the functions; see
        wasmtime_gp.diff; `by` is checked by `top`)."""
        return _diff.compare(base, self, by, alpha)

    @property
    def has_lines(self) -> bool:
        """Whether any frame carries a source line (the profiler had the module's DWARF)."""
        return any(
            tally.table.frame[stack].line is not None
            for tally in tallies(self.samples)[0]
            for stack in tally.sampled()
        )

    def top_lines(self, n: int = 10, by: Literal["self", "total"] = "self") -> list[LineStats]:
        """The `n` source lines with the most samples: where samples were taken (`self`) or anywhere on the stack."""
        if by not in ("self", "total"):
            raise ValueError(f'by must be "self" or "total", not {by!r}')
        self_counts: Counter[tuple[str, int]] = Counter()
        total_counts: Counter[tuple[str, int]] = Counter()
        owner: dict[tuple[str, int], Frame] = {}
        for tally in tallies(self.samples)[0]:
            keys, locations = _keys([_location(frame) for frame in tally.table.frame])
            for stack in tally.sampled():
                key = keys[stack]
                if key >= 0:
                    owner.setdefault(locations[key], tally.table.frame[stack])
                    self_counts[locations[key]] += tally.ends[stack]
            for key, count in tally.outermost(keys).items():
                total_counts[locations[key]] += count
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
        found, empty = tallies(self.samples)
        root = CallNode(None, len(self.samples), empty)
        for tally in found:
            nodes: list[CallNode | None] = [None] * len(tally.table)
            for stack in tally.sampled():
                prefix, frame = tally.table.prefix[stack], tally.table.frame[stack]
                parent = nodes[prefix] if prefix >= 0 else root
                assert parent is not None
                node = parent.children.get(frame)
                if node is None:
                    node = parent.children[frame] = CallNode(frame)
                node.total += tally.through[stack]
                node.self += tally.ends[stack]
                nodes[stack] = node
        return root

    @property
    def host_sample_count(self) -> int:
        """Samples taken inside wrapped host functions (the innermost frame is a host call's)."""
        return sum(1 for sample in self.samples if sample.leaf is not None and sample.leaf.is_host)

    @property
    def outside_sample_counts(self) -> tuple[int, int]:
        """Samples of the guest's time outside wasm in host functions nobody wrapped: (on a CPU, off it)."""
        leaves = Counter(
            sample.leaf.function for sample in self.samples if sample.leaf and sample.leaf.is_outside
        )
        return leaves[ON_CPU], leaves[OFF_CPU]

    def filter_host(self, host: HostFilter) -> Profile:
        """A copy with the host's time kept ("include"), left out ("exclude") or alone ("only"): wrapped host
        calls, and the time outside wasm in functions nobody wrapped.

        "exclude" drops the samples taken in the host and the host frames of wasm it called back into: what
        is left is the guest's own time in wasm. "only" keeps the samples taken in the host.
        """
        if host == "include":
            return self
        if host == "exclude":
            samples = _without_host_frames([s for s in self.samples if s.leaf is None or s.leaf.is_wasm])
        elif host == "only":
            samples = [s for s in self.samples if s.leaf is not None and not s.leaf.is_wasm]
        else:
            raise ValueError(f'host must be "include", "exclude" or "only", not {host!r}')
        return self.with_samples(samples)

    def without_outside(self) -> Profile:
        """A copy without the samples of the guest's time outside wasm in host functions nobody wrapped
        (`[outside wasm]`: waiting for I/O or a CPU, or the host's own work): what is left is its time in wasm
        and in wrapped host calls."""
        return self.with_samples([s for s in self.samples if s.leaf is None or not s.leaf.is_outside])

    def with_samples(self, samples: list[Sample]) -> Profile:
        """A copy of this profile's description (name, interval, times, labels) holding `samples`."""
        return Profile(
            self.name,
            self.interval,
            self.start_time,
            self.duration,
            samples,
            dict(self.labels),
            self.effective_interval,
        )

    def stack_counts(self) -> Counter[tuple[Frame, ...]]:
        """How many samples each distinct stack has."""
        found, empty = tallies(self.samples)
        counts: Counter[tuple[Frame, ...]] = Counter()
        if empty:
            counts[()] = empty
        for tally in found:
            for stack in tally.sampled():
                if tally.ends[stack]:
                    counts[tally.table.frames(stack)] += tally.ends[stack]
        return counts

    def __repr__(self) -> str:
        return f"<Profile {self.name!r}: {len(self.samples)} samples over {self.duration:.3f} s>"


def _location(frame: Frame) -> tuple[str, int] | None:
    return (frame.file, frame.line) if frame.file is not None and frame.line is not None else None


def _without_host_frames(samples: list[Sample]) -> list[Sample]:
    """The samples with their host (and outside wasm) frames left out, in new tables that share prefixes as
    the old ones did."""
    tables: dict[int, tuple[StackTable, list[int], dict[tuple[int, int], int]]] = {}
    out = []
    for sample in samples:
        old = sample.table
        if id(old) not in tables:
            table, mapped, interned = StackTable(), [-1] * len(old), {}
            for stack, (prefix, frame) in enumerate(zip(old.prefix, old.frame)):
                parent = mapped[prefix] if prefix >= 0 else -1
                if not frame.is_wasm:
                    mapped[stack] = parent
                    continue
                key = (parent, id(frame))  # old.frame keeps every frame alive: ids stay unique
                if key not in interned:
                    interned[key] = table.push(parent, frame)
                mapped[stack] = interned[key]
            tables[id(old)] = (table, mapped, interned)
        table, mapped, _ = tables[id(old)]
        stack = mapped[sample.stack_index] if sample.stack_index >= 0 else -1
        out.append(Sample.at(table, stack, sample.time, sample.cpu_delta, sample.thread))
    return out


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
        labels={str(k): str(v) for k, v in meta.get(_fxprof.LABELS_KEY, {}).items()},
        effective_interval=_effective_interval(meta),
    )


def _effective_interval(meta: dict[str, Any]) -> float | None:
    sampling = meta.get(_fxprof.SAMPLING_KEY)
    if not isinstance(sampling, dict) or not isinstance(sampling.get("effectiveInterval"), (int, float)):
        return None
    return float(sampling["effectiveInterval"]) / 1000


def _parse_thread(
    thread: dict[str, Any], raw: dict[str, Any], libs: list[str], cpu_scale: float, named: bool
) -> tuple[list[Sample], float]:
    strings = _fxprof.string_array(raw, thread)
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

    stacks = StackTable()
    for prefix, frame in zip(prefixes, stack_frames):
        if prefix is not None and not (isinstance(prefix, int) and 0 <= prefix < len(stacks)):
            # A prefix always comes before its stack: this also rules out cycles.
            raise ValueError(f"stack {len(stacks)} has the prefix {prefix!r}")
        stacks.push(-1 if prefix is None else prefix, frames[frame])

    table = thread["samples"]
    times = _fxprof.sample_times(thread)
    cpu_deltas = table.get("threadCPUDelta") or [0] * len(times)
    thread_name = str(thread.get("name", "")) if named else ""
    for stack in table["stack"]:
        if stack is not None and not (isinstance(stack, int) and 0 <= stack < len(stacks)):
            raise IndexError(f"sample stack {stack!r} is not in the stack table")
    samples = [
        Sample.at(stacks, -1 if stack is None else stack, time / 1000, (delta or 0) * cpu_scale, thread_name)
        for stack, time, delta in zip(table["stack"], times, cpu_deltas)
    ]
    if len(samples) != table.get("length", len(samples)):
        raise ValueError("the samples table is truncated")
    end = thread.get("processShutdownTime") or (times[-1] if times else 0.0)
    return samples, float(end)
