"""DWARF of a `.wasm` file (its `.debug_*` custom sections): code offset -> source file, line, column, inlining.

DWARF addresses in wasm are offsets from the start of the Code section's payload. Only what looked-up
offsets need is decoded, when first needed, and kept for later lookups (a ContinuousProfiler's next
rotations): at first, the units' headers and abbreviations (`debug_info.py`) and where each sequence
of the line programs starts (`line_program.py`); then per offset, the sequence it falls in, its
unit's functions and file names (its line program header's tables), and the calls inlined
into its function.

An offset is looked up in the sequence that starts last at or before it, and in the functions of
that sequence's unit: as reading every row and function into one table would find, since sequences
(one per function's code in wasm) and functions do not overlap; dead functions' are moved out of
the way, to the linker's tombstone address.
"""

from __future__ import annotations

import bisect
import contextlib
import inspect
import io
import itertools
import operator
import posixpath
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, TypeVar

from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo

from wasmtime_gp._symbols import debug_info, line_program
from wasmtime_gp._symbols.artifact import MalformedArtifact, read_uleb
from wasmtime_gp._symbols.debug_info import Die, Unit

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


def dwarf_sections(wasm: bytes) -> tuple[range, dict[str, bytes]]:
    """What wasm_sections() returns, for a module with DWARF; LookupError for one without."""
    code, custom = wasm_sections(wasm)
    if ".debug_info" not in custom or ".debug_line" not in custom:
        raise LookupError("the module has no DWARF (compile with -g, and do not strip it)")
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


_WALKED = frozenset(("DW_TAG_subprogram", "DW_TAG_inlined_subroutine", "DW_TAG_lexical_block"))
# What finding the functions and inlined calls that cover an offset reads.
_RANGES = frozenset(("DW_AT_low_pc", "DW_AT_high_pc", "DW_AT_ranges"))
_READ = frozenset((  # the attributes read here
    "DW_AT_low_pc", "DW_AT_high_pc", "DW_AT_ranges", "DW_AT_abstract_origin", "DW_AT_specification", "DW_AT_name",
    "DW_AT_decl_file", "DW_AT_decl_line", "DW_AT_decl_column", "DW_AT_call_file", "DW_AT_call_line",
    "DW_AT_call_column",
))  # fmt: skip
_T = TypeVar("_T")


class _Inline(NamedTuple):
    """An inlined call's range, described (_Call) only when a looked-up offset falls in it."""

    low: int
    high: int
    depth: int
    offset: int  # of its DIE


class _Call(NamedTuple):
    function: str
    call: SourceLine  # where it was inlined: the line of its caller
    declared: SourceLine | None


class _Function(NamedTuple):
    low: int
    high: int
    offset: int  # of its DIE
    outermost: int  # the DIE under the unit's that holds it: what is read for the calls inlined into it


class _Functions(NamedTuple):
    """A unit's functions, by address, and the DIEs walked to find them (where their inlined calls are)."""

    lows: list[int]
    functions: list[_Function]
    tree: debug_info.Tree


class _Rows(NamedTuple):
    """The rows of the sequences that start at one address, by address (a stable sort), and the unit of each."""

    rows: line_program.Rows
    units: list[int]


class ModuleDwarf:
    """The line table and inlined calls of one module, decoded as lookups need them."""

    def __init__(self, wasm: bytes) -> None:
        self.code, custom = dwarf_sections(wasm)
        self.code_start = self.code.start
        self._custom = custom
        self._line_section = custom[".debug_line"]
        self._lock = threading.Lock()  # profilers of one .wasm share this; decoding is done once
        self._files: dict[int, list[str]] = {}  # by unit
        self._functions: dict[int, _Functions] = {}  # by unit
        self._rows: dict[int, _Rows] = {}  # by the index of the first sequence starting there
        self._inlines: dict[int, tuple[list[int], list[_Inline]]] = {}  # by outermost DIE: lows, inlines
        self._calls: dict[int, _Call | None] = {}  # by DIE
        self._dies: dict[int, Die] = {}
        self._pyelftools = _dwarf_info(custom)
        self._described: dict[tuple[int, int], tuple[str | None, SourceLine | None]] = {}
        sequences: list[tuple[int, int, int, line_program.Header, line_program.Sequence]] = []
        with _unreadable_as_malformed():
            sections = debug_info.Sections(
                *(custom.get("." + name, b"") for name in debug_info.Sections._fields)
            )
            self._units = debug_info.units(sections)
            self._unit_offsets = [unit.offset for unit in self._units]
            self._headers: dict[int, line_program.Header] = {}
            for index, unit in enumerate(self._units):
                stmt_list = unit.top.attributes.get("DW_AT_stmt_list")
                if stmt_list is None:
                    continue
                header = line_program.read_header(self._line_section, stmt_list.value, unit.address_size)
                self._headers[index] = header
                for order, sequence in enumerate(line_program.skim(self._line_section, header)):
                    sequences.append((sequence.start, index, order, header, sequence))
        sequences.sort(
            key=lambda entry: entry[:3]
        )  # rows at one address in the order a full reading adds them
        self._sequence_starts = [entry[0] for entry in sequences]
        self._sequences = [(entry[1], entry[3], entry[4]) for entry in sequences]

    @property
    def units_decoded(self) -> tuple[int, int]:
        """(units whose functions were read, units)."""
        return len(self._functions), len(self._units)

    @property
    def sequences_decoded(self) -> tuple[int, int]:
        """(sequences decoded, sequences)."""
        return sum(len(self._group(first)) for first in self._rows), len(self._sequences)

    def frames(self, code_offset: int) -> list[SourceFrame]:
        """The source frames at `code_offset`, outermost first; empty where DWARF says nothing.

        Raises MalformedArtifact if what it needs to decode is unreadable.
        """
        with self._lock, _unreadable_as_malformed():
            found = self._line(code_offset)
            if found is None:
                return []
            line, unit = found
            function = self._function(unit, code_offset)
            if function is None:
                return [SourceFrame(None, line, None)]
            function_line = self._describe(unit, function.offset)[1]
            chain = self._inline_chain(unit, function, code_offset)
        if not chain:
            return [SourceFrame(None, line, function_line)]
        # Each level runs at the line where it called the next; the innermost at the line table's line.
        frames = [SourceFrame(None, chain[0].call, function_line)]
        for inline, caller_of_next in zip(chain, chain[1:]):
            frames.append(SourceFrame(inline.function, caller_of_next.call, inline.declared))
        frames.append(SourceFrame(chain[-1].function, line, chain[-1].declared))
        return frames

    # Lines: the sequences that start last at or before an offset.

    def _line(self, code_offset: int) -> tuple[SourceLine, int] | None:
        last = bisect.bisect_right(self._sequence_starts, code_offset) - 1
        if last < 0:
            return None
        first = bisect.bisect_left(self._sequence_starts, self._sequence_starts[last])
        rows, units = _cached(self._rows, first, lambda: self._decode_rows(first))
        # The last row at or before it that names a file of its unit and a line: the rows a full reading keeps.
        for index in range(bisect.bisect_right(rows.addresses, code_offset) - 1, -1, -1):
            file = rows.files[index]
            if file == line_program.END_OF_SEQUENCE:
                return None  # the sequence has ended there
            unit = units[index]
            files = self._unit_files(unit)
            file -= self._first_file(unit)
            if 0 <= file < len(files) and rows.lines[index] > 0:
                return SourceLine(files[file], rows.lines[index], rows.columns[index]), unit
        return None  # rows start after it: the previous sequence has ended there

    def _group(self, first: int) -> range:
        end = bisect.bisect_right(self._sequence_starts, self._sequence_starts[first])
        return range(first, end)

    def _decode_rows(self, first: int) -> _Rows:
        decoded = line_program.Rows([], [], [], [])
        units: list[int] = []
        for index in self._group(first):
            unit, header, sequence = self._sequences[index]
            rows = line_program.decode(self._line_section, header, sequence.begin, sequence.end)
            for column, values in zip(decoded, rows):
                column.extend(values)
            units.extend([unit] * len(rows.addresses))
        addresses = decoded.addresses
        if any(map(operator.gt, addresses, itertools.islice(addresses, 1, None))):
            order = sorted(range(len(addresses)), key=addresses.__getitem__)
            decoded = line_program.Rows(*([column[i] for i in order] for column in decoded))
            units = [units[i] for i in order]
        return _Rows(decoded, units)

    def _first_file(self, unit: int) -> int:
        """The number of a unit's first file in its line program: 1 before DWARF 5."""
        return 0 if self._headers[unit].version >= 5 else 1

    def _unit_files(self, unit: int) -> list[str]:
        return _cached(self._files, unit, lambda: self._read_files(unit))

    def _read_files(self, index: int) -> list[str]:
        if index not in self._headers:
            return []
        header, unit = self._headers[index], self._units[index]
        table = line_program.read_file_table(self._line_section, header, unit.read_value)
        directories = [_text(d) for d in table.directories]
        top = unit.top.attributes
        comp_dir = _text(top["DW_AT_comp_dir"].value) if "DW_AT_comp_dir" in top else ""
        files = []
        for name, dir_index in table.files:
            directory_index = dir_index if header.version >= 5 else dir_index - 1
            directory = directories[directory_index] if 0 <= directory_index < len(directories) else ""
            if header.version < 5 and dir_index == 0:
                directory = comp_dir
            files.append(posixpath.normpath(posixpath.join(comp_dir, directory, _text(name))))
        return files

    # Functions: a unit's, read once for all (only their ranges), and described when looked up.

    def _function(self, unit: int, code_offset: int) -> _Function | None:
        functions = _cached(self._functions, unit, lambda: self._read_functions(unit))
        index = bisect.bisect_right(functions.lows, code_offset) - 1
        if index >= 0 and code_offset < functions.functions[index].high:
            return functions.functions[index]
        return None

    def _read_functions(self, index: int) -> _Functions:
        """Every function of the unit with its ranges, in the order of its DIEs, skipping everything else."""
        unit = self._units[index]
        found: list[_Function] = []
        tree = unit.walk(unit.die_offset, _WALKED)
        outermost: list[int] = []  # per DIE walked: the DIE under the unit's that holds it
        for offset, tag, parent in zip(*tree):
            outermost.append(outermost[parent] if parent >= 0 else offset)
            if tag == "DW_TAG_subprogram":
                die = unit.read(offset, _RANGES)
                found.extend(
                    _Function(low, high, offset, outermost[-1]) for low, high in self._ranges(unit, die)
                )
        found.sort(key=lambda function: function.low)
        return _Functions([function.low for function in found], found, tree)

    # Inlined calls: the ranges under an outermost DIE, for the functions looked up; described when covering one.

    def _inline_chain(self, unit: int, function: _Function, code_offset: int) -> list[_Call]:
        lows, inlines = _cached(self._inlines, function.outermost, lambda: self._read_inlines(unit, function))
        # Inlined calls lie within their function: only those starting between it and the offset can cover it.
        first = bisect.bisect_left(lows, function.low)
        end = bisect.bisect_right(lows, code_offset)
        covering = [inline for inline in inlines[first:end] if code_offset < inline.high]
        chain: list[_Call] = []
        for inline in sorted(covering, key=lambda inline: inline.depth):
            if inline.depth == len(chain):
                call = self._call(unit, inline.offset)
                if call is not None:
                    chain.append(call)
        return chain

    def _read_inlines(self, index: int, function: _Function) -> tuple[list[int], list[_Inline]]:
        """The calls inlined under the outermost DIE of `function`, at their depths, in the order of their DIEs."""
        unit = self._units[index]
        offsets, tags, parents = self._functions[index].tree  # walked when the function was found
        top = bisect.bisect_left(offsets, function.outermost)
        found: list[_Inline] = []
        depths = {top: 0}  # per DIE walked: the depth of the calls inlined right under it
        if tags[top] == "DW_TAG_inlined_subroutine":
            die = unit.read(function.outermost, _RANGES)
            found.extend(_Inline(low, high, 0, function.outermost) for low, high in self._ranges(unit, die))
            depths[top] = 1
        below = top + 1
        while below < len(offsets) and parents[below] >= top:  # the DIEs under it follow it
            depth = depths[parents[below]]
            if tags[below] == "DW_TAG_inlined_subroutine":
                die = unit.read(offsets[below], _RANGES)
                found.extend(
                    _Inline(low, high, depth, offsets[below]) for low, high in self._ranges(unit, die)
                )
                depth += 1
            elif tags[below] == "DW_TAG_subprogram":
                depth = 0
            depths[below] = depth
            below += 1
        found.sort(key=lambda inline: (inline.low, inline.depth))
        return [inline.low for inline in found], found

    def _call(self, unit: int, offset: int) -> _Call | None:
        """The inlined call a DIE stands for; None where it names no function or no call site."""

        def read() -> _Call | None:
            die = self._die(offset)
            call = self._place(unit, die, "DW_AT_call_file", "DW_AT_call_line", "DW_AT_call_column")
            name, declared = self._describe(unit, offset)
            return _Call(name, call, declared) if call is not None and name is not None else None

        return _cached(self._calls, offset, read)

    # DIEs and what they say.

    def _die(self, offset: int) -> Die:
        def read() -> Die:
            unit = self._units[bisect.bisect_right(self._unit_offsets, offset) - 1]
            return unit.read(offset, _READ)

        return _cached(self._dies, offset, read)

    def _origins(self, die: Die) -> Iterator[Die]:
        """A DIE, then those it refers to for the rest of its description (abstract_origin, specification)."""
        for _ in range(4):  # such chains are short
            yield die
            for link in ("DW_AT_abstract_origin", "DW_AT_specification"):
                if link in die.attributes:
                    attribute = die.attributes[link]
                    if attribute.form not in debug_info.REFERENCE_FORMS:
                        raise MalformedArtifact(f"{link} in form {attribute.form} is not followed")
                    die = self._die(attribute.value)
                    break
            else:
                return

    def _describe(self, unit: int, offset: int) -> tuple[str | None, SourceLine | None]:
        """The name of the function a DIE stands for, and where it is declared (in the unit's files)."""

        def read() -> tuple[str | None, SourceLine | None]:
            name = declared = None
            for origin in self._origins(self._die(offset)):
                if name is None and "DW_AT_name" in origin.attributes:
                    name = _text(origin.attributes["DW_AT_name"].value)
                if declared is None:
                    declared = self._place(
                        unit, origin, "DW_AT_decl_file", "DW_AT_decl_line", "DW_AT_decl_column"
                    )
            return name, declared

        return _cached(self._described, (unit, offset), read)

    def _place(
        self, unit: int, die: Die, file_attribute: str, line_attribute: str, column_attribute: str
    ) -> SourceLine | None:
        attributes = die.attributes
        if file_attribute not in attributes or line_attribute not in attributes:
            return None
        files = self._unit_files(unit)
        index = attributes[file_attribute].value - (0 if self._units[unit].version >= 5 else 1)
        if not 0 <= index < len(files):
            return None
        column = attributes[column_attribute].value if column_attribute in attributes else 0
        return SourceLine(files[index], attributes[line_attribute].value, column)

    def _ranges(self, unit: Unit, die: Die) -> list[tuple[int, int]]:
        attributes = die.attributes
        if "DW_AT_low_pc" in attributes and "DW_AT_high_pc" in attributes:
            low = attributes["DW_AT_low_pc"].value
            high = attributes["DW_AT_high_pc"]
            # DWARF 4+: a high_pc of class constant is a length.
            end = low + high.value if high.form in debug_info.LENGTH_FORMS else high.value
            return [(low, end)] if low > 0 or end > 0 else []
        if "DW_AT_ranges" not in attributes:
            return []
        base = unit.top.attributes.get("DW_AT_low_pc")
        base_address = base.value if base is not None else 0
        out = []
        for kind, begin, finish, absolute in self._range_list(unit, attributes["DW_AT_ranges"].value):
            if kind == "base":
                base_address = begin
                continue
            if not absolute:
                begin, finish = begin + base_address, finish + base_address
            if finish > begin:
                out.append((begin, finish))
        return out

    def _range_list(self, unit: Unit, offset: int) -> list[tuple[str, int, int, bool]]:
        """The entries of a range list as pyelftools gives them: ("base", address, 0, _) or ("range", begin, end, absolute)."""
        ranges, rnglists = ".debug_ranges" in self._custom, ".debug_rnglists" in self._custom
        if ranges and not (rnglists and unit.version >= 5):
            return [
                (kind, a, b, False)
                for kind, a, b in debug_info.read_ranges_v4(
                    self._custom[".debug_ranges"], offset, unit.address_size
                )
            ]
        if not rnglists:
            return []
        lists: Any = self._pyelftools.range_lists()  # .debug_rnglists is there
        out = []
        for entry in lists.get_range_list_at_offset(offset, cu=self._pyelftools.get_CU_at(unit.offset)):
            if hasattr(entry, "begin_offset"):
                out.append(
                    ("range", entry.begin_offset, entry.end_offset, getattr(entry, "is_absolute", False))
                )
            elif hasattr(entry, "base_address"):
                out.append(("base", entry.base_address, 0, False))
        return out


def _cached(cache: dict[Any, _T], key: Any, read: Callable[[], _T]) -> _T:
    if key not in cache:
        cache[key] = read()
    return cache[key]


@contextlib.contextmanager
def _unreadable_as_malformed() -> Iterator[None]:
    try:
        yield
    except Exception as exc:  # noqa: BLE001 (pyelftools and truncated bytes raise all kinds, asserts included)
        raise MalformedArtifact(f"unreadable DWARF: {exc}") from None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
