"""DWARF of a `.wasm` file (its `.debug_*` custom sections): code offset -> source file, line, column, inlining.

DWARF addresses in wasm are offsets from the start of the Code section's payload. pyelftools reads
the sections from memory; this module only finds them in the wasm binary and indexes what it reads.
"""

from __future__ import annotations

import bisect
import inspect
import io
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo

from wasmtime_gp._symbols.artifact import MalformedArtifact, read_uleb

CODE_SECTION = 10
CUSTOM_SECTION = 0


class SourceLine(NamedTuple):
    file: str
    line: int
    column: int  # 0: unknown


@dataclass(frozen=True)
class SourceFrame:
    """One level of a symbolised native frame: a function (inlined or not) at a line."""

    function: str | None  # None for the outermost level: the wasm function Wasmtime already named
    line: SourceLine
    function_line: SourceLine | None = None  # where the function is declared


def wasm_sections(wasm: bytes) -> tuple[range, dict[str, bytes]]:
    """The Code section payload's byte range in the file, and the custom sections by name."""
    if wasm[:4] != b"\0asm":
        raise MalformedArtifact("not a wasm binary")
    pos, code, custom = 8, range(0), {}
    while pos < len(wasm):
        section_id = wasm[pos]
        size, payload = read_uleb(wasm, pos + 1)
        end = payload + size
        if end > len(wasm):
            raise MalformedArtifact("a wasm section runs past the end of the file")
        if section_id == CODE_SECTION:
            code = range(payload, end)
        elif section_id == CUSTOM_SECTION:
            name_length, name_start = read_uleb(wasm, payload)
            name = wasm[name_start : name_start + name_length].decode("utf-8", "replace")
            custom[name] = wasm[name_start + name_length : end]
        pos = end
    if not code:
        raise MalformedArtifact("the wasm binary has no code section")
    return code, custom


def _dwarf_info(sections: dict[str, bytes]) -> DWARFInfo:
    def descriptor(name: str) -> DebugSectionDescriptor | None:
        data = sections.get(name)
        if data is None:
            return None
        return DebugSectionDescriptor(io.BytesIO(data), name, 0, len(data), 0)

    # One keyword per section, named after it (debug_line_sec -> .debug_line): the list grows between releases.
    names = [p for p in inspect.signature(DWARFInfo.__init__).parameters if p.endswith("_sec")]
    return DWARFInfo(
        config=DwarfConfig(little_endian=True, machine_arch="wasm", default_address_size=4),
        **{name: descriptor("." + name[: -len("_sec")]) for name in names},
    )


class _Inline(NamedTuple):
    low: int
    high: int
    depth: int
    function: str
    call: SourceLine  # where it was inlined: the line of its caller
    declared: SourceLine | None


class ModuleDwarf:
    """The line table and inlined calls of one module, indexed by code offset."""

    def __init__(self, wasm: bytes) -> None:
        self.code, custom = wasm_sections(wasm)
        self.code_start = self.code.start
        if ".debug_info" not in custom or ".debug_line" not in custom:
            raise LookupError("the module has no DWARF (compile with -g, and do not strip it)")
        try:
            info = _dwarf_info(custom)
            self._rows: list[tuple[int, SourceLine | None]] = []
            self._inlines: list[_Inline] = []
            self._functions: list[tuple[int, int, SourceLine | None]] = []
            for cu in info.iter_CUs():
                files = self._read_lines(info, cu)
                self._read_functions(cu, files)
        except Exception as exc:  # noqa: BLE001 (pyelftools raises all kinds on malformed DWARF, asserts included)
            raise MalformedArtifact(f"unreadable DWARF: {exc}") from None
        self._rows.sort(key=lambda row: row[0])
        self._row_addresses = [row[0] for row in self._rows]
        self._inlines.sort(key=lambda inline: (inline.low, inline.depth))
        self._inline_lows = [inline.low for inline in self._inlines]
        self._functions.sort(key=lambda function: function[0])
        self._function_lows = [function[0] for function in self._functions]

    def _read_lines(self, info: DWARFInfo, cu: Any) -> list[str]:
        program = info.line_program_for_CU(cu)
        if program is None:
            return []
        header = program.header
        directories = [_text(d) for d in header["include_directory"]]
        comp_dir = (
            _text(cu.get_top_DIE().attributes["DW_AT_comp_dir"].value)
            if "DW_AT_comp_dir" in (cu.get_top_DIE().attributes)
            else ""
        )
        version = header["version"]
        files = []
        for entry in header["file_entry"]:
            directory_index = entry.dir_index if version >= 5 else entry.dir_index - 1
            directory = directories[directory_index] if 0 <= directory_index < len(directories) else ""
            if version < 5 and entry.dir_index == 0:
                directory = comp_dir
            files.append(posixpath.normpath(posixpath.join(comp_dir, directory, _text(entry.name))))
        first_file = 0 if version >= 5 else 1
        for entry in program.get_entries():
            state = entry.state
            if state is None:
                continue
            if state.end_sequence:
                self._rows.append((state.address, None))
                continue
            index = state.file - first_file
            if 0 <= index < len(files) and state.line > 0:
                self._rows.append((state.address, SourceLine(files[index], state.line, state.column)))
        return files

    def _read_functions(self, cu: Any, files: list[str]) -> None:
        version = cu["version"]
        first_file = 0 if version >= 5 else 1

        def place(
            die: Any, file_attribute: str, line_attribute: str, column_attribute: str
        ) -> SourceLine | None:
            attributes = die.attributes
            if file_attribute not in attributes or line_attribute not in attributes:
                return None
            index = attributes[file_attribute].value - first_file
            if not 0 <= index < len(files):
                return None
            column = attributes[column_attribute].value if column_attribute in attributes else 0
            return SourceLine(files[index], attributes[line_attribute].value, column)

        def declared(die: Any) -> SourceLine | None:
            for origin in _origins(die):
                found = place(origin, "DW_AT_decl_file", "DW_AT_decl_line", "DW_AT_decl_column")
                if found is not None:
                    return found
            return None

        def walk(die: Any, depth: int) -> None:
            for child in die.iter_children():
                if child.tag == "DW_TAG_subprogram":
                    for low, high in _ranges(child, cu):
                        self._functions.append((low, high, declared(child)))
                    walk(child, 0)
                elif child.tag == "DW_TAG_inlined_subroutine":
                    call = place(child, "DW_AT_call_file", "DW_AT_call_line", "DW_AT_call_column")
                    name = _name(child)
                    if call is not None and name is not None:
                        for low, high in _ranges(child, cu):
                            self._inlines.append(_Inline(low, high, depth, name, call, declared(child)))
                    walk(child, depth + 1)
                elif child.tag == "DW_TAG_lexical_block":
                    walk(child, depth)

        walk(cu.get_top_DIE(), 0)

    @property
    def function_count(self) -> int:
        """Functions with code that the DWARF describes."""
        return len(self._functions)

    def line(self, code_offset: int) -> SourceLine | None:
        index = bisect.bisect_right(self._row_addresses, code_offset) - 1
        return self._rows[index][1] if index >= 0 else None

    def frames(self, code_offset: int) -> list[SourceFrame]:
        """The source frames at `code_offset`, outermost first; empty where DWARF says nothing."""
        line = self.line(code_offset)
        if line is None:
            return []
        chain = self._inline_chain(code_offset)
        function_line = self._function_line(code_offset)
        if not chain:
            return [SourceFrame(None, line, function_line)]
        # Each level runs at the line where it called the next; the innermost at the line table's line.
        frames = [SourceFrame(None, chain[0].call, function_line)]
        for inline, caller_of_next in zip(chain, chain[1:]):
            frames.append(SourceFrame(inline.function, caller_of_next.call, inline.declared))
        frames.append(SourceFrame(chain[-1].function, line, chain[-1].declared))
        return frames

    def _function(self, code_offset: int) -> tuple[int, int, SourceLine | None] | None:
        index = bisect.bisect_right(self._function_lows, code_offset) - 1
        if index >= 0 and code_offset < self._functions[index][1]:
            return self._functions[index]
        return None

    def _inline_chain(self, code_offset: int) -> list[_Inline]:
        function = self._function(code_offset)
        if function is None:
            return []
        # Inlined calls lie within their function: only those starting between it and the offset can cover it.
        first = bisect.bisect_left(self._inline_lows, function[0])
        end = bisect.bisect_right(self._inline_lows, code_offset)
        covering = [inline for inline in self._inlines[first:end] if code_offset < inline.high]
        chain: list[_Inline] = []
        for inline in sorted(covering, key=lambda inline: inline.depth):
            if inline.depth == len(chain):
                chain.append(inline)
        return chain

    def _function_line(self, code_offset: int) -> SourceLine | None:
        function = self._function(code_offset)
        return function[2] if function is not None else None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _origins(die: Any) -> Iterator[Any]:
    """A DIE, then those it refers to for the rest of its description (abstract_origin, specification)."""
    for _ in range(4):  # such chains are short
        yield die
        for link in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            return


def _name(die: Any) -> str | None:
    for origin in _origins(die):
        if "DW_AT_name" in origin.attributes:
            return _text(origin.attributes["DW_AT_name"].value)
    return None


def _ranges(die: Any, cu: Any) -> list[tuple[int, int]]:
    attributes = die.attributes
    if "DW_AT_low_pc" in attributes and "DW_AT_high_pc" in attributes:
        low = attributes["DW_AT_low_pc"].value
        high = attributes["DW_AT_high_pc"]
        # DWARF 4+: a high_pc of class constant is a length.
        end = low + high.value if high.form.startswith("DW_FORM_data") else high.value
        return [(low, end)] if low > 0 or end > 0 else []
    if "DW_AT_ranges" in attributes:
        dwarf = cu.dwarfinfo
        base = cu.get_top_DIE().attributes.get("DW_AT_low_pc")
        base_address = base.value if base is not None else 0
        lists = dwarf.range_lists()
        if lists is None:
            return []
        out = []
        for entry in lists.get_range_list_at_offset(attributes["DW_AT_ranges"].value, cu=cu):
            if hasattr(entry, "begin_offset"):
                begin, finish = entry.begin_offset, entry.end_offset
                if not getattr(entry, "is_absolute", False):
                    begin, finish = begin + base_address, finish + base_address
                if finish > begin:
                    out.append((begin, finish))
            elif hasattr(entry, "base_address"):
                base_address = entry.base_address
        return out
    return []
