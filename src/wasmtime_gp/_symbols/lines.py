"""Write source lines, and the functions inlined there, into a guest profile: from the module's DWARF.

A frame's address in Wasmtime's profile is an offset into its module's compiled code (`.text` of
`Module.serialize()`), taken from a return address: the call (or epoch check) is just before it.
Wasmtime's address map turns it into a byte offset in the `.wasm` file (`addrmap.py`), which the
DWARF there turns into file, line, column and inlined calls (`dwarf.py`). Samples are taken where
Wasmtime checks the epoch (loop headers and function entries), so a leaf frame's line is the line
of the loop or function it was running; callers' lines are their call sites.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Mapping
from typing import Any, Union

import wasmtime

from wasmtime_gp._errors import ProfilerTypeError, ProfilerValueError
from wasmtime_gp._fxprof import ThreadTables, append_row
from wasmtime_gp._symbols import addrmap
from wasmtime_gp._symbols.artifact import MalformedArtifact, elf_section
from wasmtime_gp._symbols.dwarf import ModuleDwarf, SourceFrame, SourceLine, wasm_sections

ADDRMAP_SECTION = b".wasmtime.addrmap"
WasmSource = Union[bytes, str, "os.PathLike[str]"]  # a module's .wasm file: its bytes or its path


@functools.lru_cache(maxsize=8)
def _module_dwarf(wasm: bytes) -> ModuleDwarf:
    """Reading DWARF takes seconds for a large module: profilers of the same .wasm share one reading."""
    return ModuleDwarf(wasm)


class ModuleLines:
    """What symbolising one module needs: its address map (per compilation) and its DWARF (per .wasm)."""

    def __init__(self, artifact: bytes, dwarf: ModuleDwarf, wasmtime_major: int) -> None:
        if wasmtime_major not in addrmap.VERIFIED_MAJORS:
            raise LookupError(f"the address map of Wasmtime {wasmtime_major} has not been verified")
        self.addrmap = addrmap.parse(elf_section(artifact, ADDRMAP_SECTION), wasmtime_major)
        self.dwarf = dwarf
        positions = self.addrmap.spot_positions
        if positions and (min(positions) not in dwarf.code or max(positions) not in dwarf.code):
            raise LookupError("the .wasm file given is not the one this module was compiled from")
        self.unreadable: str | None = (
            None  # why, once a lookup found part of the address map or DWARF malformed
        )

    def frames(self, text_offset: int) -> list[SourceFrame]:
        """Raises MalformedArtifact if what the lookup needs is malformed."""
        wasm_offset = self.addrmap.wasm_offset(text_offset)
        if wasm_offset is None or wasm_offset < self.dwarf.code_start:
            return []
        return self.dwarf.frames(wasm_offset - self.dwarf.code_start)


class _LineTables(ThreadTables):
    def __init__(self, raw: dict[str, Any]) -> None:
        super().__init__(raw)
        self.file_strings: dict[str, int] = {}
        self.inline_funcs: dict[tuple[str, int, SourceLine | None], int] = {}

    def file(self, path: str) -> int:
        if path not in self.file_strings:
            self.file_strings[path] = self.string(path)
        return self.file_strings[path]

    def describe_func(self, func: int, declared: SourceLine | None, fallback: SourceLine) -> None:
        funcs = self.thread["funcTable"]
        if funcs["fileName"][func] is None:
            funcs["fileName"][func] = self.file((declared or fallback).file)
            funcs["lineNumber"][func] = declared.line if declared else None
            funcs["columnNumber"][func] = declared.column or None if declared else None

    def inline_func(self, name: str, resource: int, declared: SourceLine | None, fallback: SourceLine) -> int:
        key = (name, resource, declared)
        if key not in self.inline_funcs:
            func = append_row(
                self.thread["funcTable"],
                {"name": self.string(name), "isJS": False, "relevantForJS": False, "resource": resource},
            )
            self.describe_func(func, declared, fallback)
            self.inline_funcs[key] = func
        return self.inline_funcs[key]


def add_source_lines(raw: dict[str, Any], modules: Mapping[str, ModuleLines]) -> int:
    """Fill in lines (and inline frames) for the frames of `modules` (by library name); return frames symbolised."""
    tables = _LineTables(raw)
    frame_table, func_table = tables.thread["frameTable"], tables.thread["funcTable"]
    inline_frames: dict[
        int, list[int]
    ] = {}  # frame -> the frames inlined into it at its address, outermost first
    sources = _look_up(tables, [lib["name"] for lib in raw["libs"]], modules)
    for frame, source in sources.items():
        address, func = frame_table["address"][frame], frame_table["func"][frame]
        resource = func_table["resource"][func]
        outer = source[0]
        frame_table["line"][frame] = outer.line.line
        frame_table["column"][frame] = outer.line.column or None
        tables.describe_func(func, outer.function_line, outer.line)
        added = []
        for depth, level in enumerate(source[1:], 1):
            assert level.function is not None
            inline_func = tables.inline_func(level.function, resource, level.function_line, level.line)
            row = {
                "address": address,
                "inlineDepth": depth,
                "category": frame_table["category"][frame],
                "subcategory": 0,
                "func": inline_func,
                "nativeSymbol": frame_table["nativeSymbol"][frame],
                "innerWindowID": 0,
                "line": level.line.line,
                "column": level.line.column or None,
            }
            added.append(append_row(frame_table, row))
        if added:
            inline_frames[frame] = added
    if inline_frames:
        _expand_stacks(tables, inline_frames)
    return len(sources)


def _look_up(
    tables: ThreadTables, libs: list[str], modules: Mapping[str, ModuleLines]
) -> dict[int, list[SourceFrame]]:
    """The source frames of every frame of `modules` that has some: all looked up before any is written, so
    that a module found malformed on the way (said once) keeps all its frames function-level."""
    frame_table, func_table = tables.thread["frameTable"], tables.thread["funcTable"]
    resource_lib = tables.thread["resourceTable"]["lib"]
    found: dict[int, tuple[list[SourceFrame], ModuleLines]] = {}
    for frame in range(frame_table["length"]):
        address, func = frame_table["address"][frame], frame_table["func"][frame]
        resource = func_table["resource"][func]
        if resource is None or resource < 0 or resource_lib[resource] is None:
            continue
        name = libs[resource_lib[resource]]
        lines = modules.get(name)
        if (
            lines is None
            or lines.unreadable
            or address is None
            or address <= 0
            or frame_table["inlineDepth"][frame]
        ):
            continue
        try:
            source = lines.frames(address - 1)  # a return address: look up the instruction before it
        except MalformedArtifact as exc:
            lines.unreadable = str(exc)
            _notice(name, lines.unreadable)
            continue
        if source:
            found[frame] = source, lines
    return {frame: source for frame, (source, lines) in found.items() if not lines.unreadable}


def _expand_stacks(tables: ThreadTables, inline_frames: dict[int, list[int]]) -> None:
    """Put each frame's inline frames after it, in every stack the samples use."""
    expanded: dict[int, int | None] = {}
    for stack in range(len(tables.prefix)):  # a stack's prefix always comes first; rows added go after
        prefix, frame = tables.prefix[stack], tables.frame[stack]
        parent = expanded[prefix] if prefix is not None else None
        expanded[stack] = tables.intern((frame, *inline_frames.get(frame, ())), parent)
    samples = tables.thread["samples"]
    samples["stack"] = [expanded[stack] if stack is not None else None for stack in samples["stack"]]


class DebugInfo:
    """The `.wasm` files a profiler was given for source lines, by module name; read at its first finish.

    Anything that keeps a module's frames function-level (no DWARF, an unverified Wasmtime, an
    unreadable file) is said once, in a RuntimeWarning, and never turns into a wrong line.
    """

    def __init__(
        self,
        modules: Mapping[str, wasmtime.Module],
        wasm_files: Mapping[str | wasmtime.Module, WasmSource],
        wasmtime_major: int,
    ) -> None:
        self._modules = modules
        self._major = wasmtime_major
        self._wasm: dict[str, bytes] = {}
        self._lines: dict[str, ModuleLines] | None = None
        names = {id(module): name for name, module in modules.items()}
        for key, source in wasm_files.items():
            if not isinstance(key, (str, wasmtime.Module)):
                raise ProfilerTypeError(
                    f"debug_info keys must be module names or Modules, not {type(key).__name__}"
                )
            name = names.get(id(key), "") if isinstance(key, wasmtime.Module) else key
            if name not in modules:
                raise ProfilerValueError(
                    f"debug_info names module {key!r}, which is not profiled (profiled: {sorted(modules)})"
                )
            wasm = _read_wasm(name, source)
            problem = _why_no_lines(wasm, wasmtime_major)
            if problem:
                _notice(name, problem)
            else:
                self._wasm[name] = wasm

    def __bool__(self) -> bool:
        return bool(self._wasm)

    def modules(self) -> dict[str, ModuleLines]:
        if self._lines is None:
            self._lines = {}
            for name, wasm in self._wasm.items():
                try:
                    artifact = bytes(self._modules[name].serialize())
                    self._lines[name] = ModuleLines(artifact, _module_dwarf(wasm), self._major)
                except (MalformedArtifact, LookupError, wasmtime.WasmtimeError) as exc:  # noqa: PERF203 (per module)
                    _notice(name, str(exc))
            self._wasm.clear()
        return self._lines


def _read_wasm(name: str, source: object) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as file:
                return file.read()
        except OSError as exc:
            raise ProfilerValueError(f"cannot read the .wasm file of module {name!r}: {exc}") from None
    raise ProfilerTypeError(
        f"debug_info[{name!r}] must be the module's .wasm bytes or path, not {type(source).__name__}"
    )


def _why_no_lines(wasm: bytes, wasmtime_major: int) -> str | None:
    if wasmtime_major not in addrmap.VERIFIED_MAJORS:
        return f"the address map of Wasmtime {wasmtime_major} has not been verified"
    try:
        _, custom = wasm_sections(wasm)
    except MalformedArtifact as exc:
        return f"it is not a wasm binary ({exc})"
    if ".debug_info" not in custom or ".debug_line" not in custom:
        return "it has no DWARF (compile with -g, and do not strip it)"
    return None


def _notice(name: str, reason: str) -> None:
    warnings.warn(
        f"wasmtime-gp: no source lines for module {name!r}: {reason}; its frames stay function-level",
        RuntimeWarning,
        stacklevel=4,
    )
