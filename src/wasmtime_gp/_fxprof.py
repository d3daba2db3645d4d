"""Editing the Firefox processed-profile JSON that Wasmtime writes: rows, strings and stacks of its one thread.

Used to write in what Wasmtime cannot know: host calls (`_host_frames.py`) and source lines
(`_symbols/lines.py`). Both format versions Wasmtime writes are handled (see `profile.py`).
"""

from __future__ import annotations

from typing import Any


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
        thread = self.thread
        self.strings: list[str] = (
            thread["stringArray"] if "stringArray" in thread else raw["shared"]["stringArray"]
        )
        stack_table = thread["stackTable"]
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
