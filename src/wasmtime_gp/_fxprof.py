"""The Firefox Profiler's processed-profile JSON: the one module that knows its versions.

Wasmtime's guest profiler writes it with the `fxprof-processed-profile` crate, one thread per profile:

- Wasmtime 19 to 38 (crate 0.6) write `preprocessedProfileVersion` 46: absolute sample times in
  `samples.time`, strings in the thread's `stringArray`, a marker schema's fields under `data`, and
  `category`/`subcategory` columns in the stackTable.
- Wasmtime 39 and later (crate 0.8) write 55: sample times as `samples.timeDeltas` (the format allows it from
  50), a marker schema's fields under `fields` (renamed at 55), and no stackTable categories (dropped at 53).
- From 56 the Firefox Profiler keeps one string table for all threads in `shared.stringArray`. No Wasmtime
  writes it yet; the reader accepts it, as the Firefox Profiler saves it.

What wasmtime-gp adds to either: its labels under `meta.wasmtimeGpLabels` (`LABELS_KEY`), and, written in by
`_host_frames.py` and `_symbols/lines.py`, host-call frames and markers and source lines. Tables are edited in
place; `append_row` fills only the columns a table has, so rows need not know the version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import Any

FIELDS_RENAMED_IN = 55  # a marker schema's `data` became `fields`
LABELS_KEY = "wasmtimeGpLabels"  # where labels go in the profile's meta object
# With an overhead budget: {"overheadBudget": share, "effectiveInterval": ms}, what the budget made of the interval.
SAMPLING_KEY = "wasmtimeGpSampling"
# A thread's own times, in ms like the samples'; markers carry theirs in `startTime`/`endTime`.
THREAD_TIME_FIELDS = ("processStartupTime", "processShutdownTime", "registerTime", "unregisterTime")


def format_version(raw: dict[str, Any]) -> Any:
    """The profile's `preprocessedProfileVersion` as written (None if it has none)."""
    return raw["meta"].get("preprocessedProfileVersion")


def string_array(raw: dict[str, Any], thread: dict[str, Any]) -> list[str]:
    """The strings the thread's tables index: its own (up to version 55) or the profile's shared ones."""
    strings: list[str] = thread["stringArray"] if "stringArray" in thread else raw["shared"]["stringArray"]
    return strings


def sample_times(thread: dict[str, Any]) -> list[float]:
    """The thread's sample times in ms since the profile's start, from `time` or `timeDeltas`."""
    samples = thread["samples"]
    return list(samples["time"]) if "time" in samples else list(accumulate(samples["timeDeltas"]))


def set_sample_times(thread: dict[str, Any], times: Iterable[float]) -> None:
    """Write the thread's sample times, as absolute times or deltas like the profile already has them."""
    samples = thread["samples"]
    if "time" in samples:
        samples["time"] = list(times)
        return
    previous, deltas = 0.0, []
    for time in times:
        deltas.append(time - previous)
        previous = time
    samples["timeDeltas"] = deltas


def shift_times(thread: dict[str, Any], offset: float) -> None:
    """Move everything the thread says happened `offset` ms later: samples, markers and its own times."""
    samples = thread["samples"]
    if "time" in samples:
        samples["time"] = [t + offset for t in samples["time"]]
    elif samples.get("timeDeltas"):
        samples["timeDeltas"][0] += offset  # the later deltas are relative to it
    for field in THREAD_TIME_FIELDS:
        if isinstance(thread.get(field), (int, float)):
            thread[field] += offset
    markers = thread.get("markers", {})
    for key in ("startTime", "endTime"):
        if key in markers:
            markers[key] = [t + offset if isinstance(t, (int, float)) else t for t in markers[key]]


def declare_marker_schema(raw: dict[str, Any], schema: dict[str, Any], fields: list[dict[str, Any]]) -> None:
    """Add `schema` with its `fields` (under the key this version reads) to the profile, unless it has one so named."""
    meta = raw["meta"]
    schemas = meta.setdefault("markerSchema", [])
    if any(known.get("name") == schema["name"] for known in schemas):
        return
    fields_key = "fields" if (format_version(raw) or 0) >= FIELDS_RENAMED_IN else "data"
    schemas.append({**schema, fields_key: fields})


def renumber_categories(thread: dict[str, Any], mapping: list[int]) -> None:
    """Point the thread's frames, stacks (up to version 52) and markers at the categories `mapping` gives
    for the ones their profile numbered (a merge gathers every profile's categories in one list)."""
    for table in (thread["frameTable"], thread["stackTable"], thread.get("markers", {})):
        column = table.get("category")
        if isinstance(column, list):
            table["category"] = [
                mapping[c] if isinstance(c, int) and 0 <= c < len(mapping) else c for c in column
            ]


def with_labels(data: bytes, labels: Mapping[str, str]) -> bytes:
    """The Firefox profile JSON with `labels` added to its meta object."""
    return with_meta(data, LABELS_KEY, dict(labels)) if labels else data


def with_meta(data: bytes, key: str, value: Any) -> bytes:
    """The Firefox profile JSON with `key: value` added to its meta object."""
    entry = json.dumps({key: value}, ensure_ascii=False)[1:-1].encode()
    prefix = b'{"meta":{'
    if data.startswith(prefix):  # how Wasmtime writes it: splice instead of re-encoding a large document
        return prefix + entry + b"," + data[len(prefix) :]
    document = json.loads(data)
    document["meta"][key] = value
    return json.dumps(document, ensure_ascii=False).encode()


def append_row(table: dict[str, Any], row: dict[str, Any]) -> int:
    """Add a row to a column-oriented table; columns the row does not name get null."""
    index: int = table["length"]
    for key, column in table.items():
        if isinstance(column, list):
            column.append(row.get(key))
    table["length"] = index + 1
    return index


class ThreadTables:
    """The tables of a profile's (first) thread, with string and stack interning."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.thread: dict[str, Any] = raw["threads"][0]
        self.strings = string_array(raw, self.thread)
        stack_table = self.thread["stackTable"]
        self.prefix: list[int | None] = stack_table["prefix"]
        self.frame: list[int] = stack_table["frame"]
        self.stack_index = {(p, f): i for i, (p, f) in enumerate(zip(self.prefix, self.frame))}

    def string(self, text: str) -> int:
        self.strings.append(text)
        return len(self.strings) - 1

    def frames_of(self, stack: int | None) -> list[int]:
        """The frames of a stack, outermost first."""
        out = []
        while stack is not None:
            out.append(self.frame[stack])
            stack = self.prefix[stack]
        return out[::-1]

    def intern(self, frames: list[int] | tuple[int, ...], prefix: int | None = None) -> int | None:
        """The stack of these frames (outermost first) on top of `prefix`, adding the stack rows it lacks."""
        stack = prefix
        for frame in frames:
            key = (stack, frame)
            if key not in self.stack_index:
                category = self.thread["frameTable"]["category"][frame]
                self.stack_index[key] = append_row(
                    self.thread["stackTable"],
                    {"prefix": stack, "frame": frame, "category": category, "subcategory": 0},
                )
            stack = self.stack_index[key]
        return stack
