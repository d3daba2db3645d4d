"""speedscope's file format (https://www.speedscope.app/file-format-schema.json): evented profiles.

Each sample stands for one interval of guest time, one after the other. Events (open and close a frame) are
written only where a sample's stack differs from the previous one, so a deep stack that stays put costs its
depth once, not once per sample.
"""

from __future__ import annotations

import json

from wasmtime_gp._version import __version__
from wasmtime_gp.profile import Frame, Profile, Sample, StackTable


def _frame(frame: Frame) -> dict[str, object]:
    """A function: its source file and first line where DWARF gave them, else its module."""
    entry: dict[str, object] = {"name": frame.function, "file": frame.file or frame.module}
    if frame.function_line is not None:
        entry["line"] = frame.function_line
    return entry


class _Events:
    """The open and close events, as JSON text, of a walk from stack to stack."""

    def __init__(self) -> None:
        self.frames: dict[Frame, int] = {}
        self._by_object: dict[int, int] = {}  # Frame objects are shared by the stacks of a table
        self.events: list[str] = []
        self.table = StackTable()
        self.stack = -1  # open now, in self.table

    def _event(self, kind: str, table: StackTable, stack: int, at: float) -> None:
        frame = table.frame[stack]
        index = self._by_object.get(id(frame))
        if index is None:
            index = self._by_object[id(frame)] = self.frames.setdefault(frame, len(self.frames))
        self.events.append(f'{{"type":"{kind}","frame":{index},"at":{at!r}}}')

    def move(self, table: StackTable, stack: int, at: float) -> None:
        """Close the frames of the open stack that `stack` lacks, innermost first, then open its new ones."""
        old, new, opened = self.stack, stack, []
        if table is self.table:  # walk both up to their common prefix
            depth, prefix = table.depth, table.prefix
            while old >= 0 and (new < 0 or depth[old] > depth[new]):
                self._event("C", table, old, at)
                old = prefix[old]
            while new >= 0 and (old < 0 or depth[new] > depth[old]):
                opened.append(new)
                new = prefix[new]
            while old != new:
                self._event("C", table, old, at)
                opened.append(new)
                old, new = prefix[old], prefix[new]
        else:  # another thread's table: nothing in common by index
            while old >= 0:
                self._event("C", self.table, old, at)
                old = self.table.prefix[old]
            while new >= 0:
                opened.append(new)
                new = table.prefix[new]
        for index in reversed(opened):
            self._event("O", table, index, at)
        self.table, self.stack = table, stack


def to_speedscope(profile: Profile) -> str:
    """One evented profile per thread (a merged profile has several), sharing one frame list."""
    walk = _Events()
    threads: dict[str, list[Sample]] = {}
    for sample in profile.samples:
        if sample.stack_index >= 0:
            threads.setdefault(sample.thread, []).append(sample)
    profiles = []
    for thread, samples in threads.items():
        for count, sample in enumerate(samples):
            walk.move(sample.table, sample.stack_index, count * profile.interval)
        end = len(samples) * profile.interval
        walk.move(walk.table, -1, end)
        name = f"{profile.name}: {thread}" if thread else profile.name
        header = {"type": "evented", "name": name, "unit": "seconds", "startValue": 0, "endValue": end}
        # The events are JSON text already: spliced in, rather than a dict per event.
        profiles.append(
            json.dumps(header, ensure_ascii=False)[:-1] + f', "events": [{",".join(walk.events)}]}}'
        )
        walk.events.clear()
    document = {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "name": profile.name,
        "exporter": f"wasmtime-gp {__version__}",
        "activeProfileIndex": 0,
        "shared": {"frames": [_frame(frame) for frame in walk.frames]},
    }
    return json.dumps(document, ensure_ascii=False)[:-1] + f', "profiles": [{", ".join(profiles)}]}}'
