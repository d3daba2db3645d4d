"""Line programs of `.debug_line`, decoded by hand, one sequence at a time.

pyelftools decodes a whole program into an object per opcode (seconds for SQLite); here a regular
expression steps over the opcodes at C speed to find the sequences (one per function in wasm: where
it starts, which bytes hold it), and only the sequences a profile's addresses fall in are decoded,
with pyelftools' arithmetic (`LineProgram._decode_line_program`). Its quirks are kept: an unknown
standard opcode is an error (the header's opcode lengths are not used), `define_file` adds no file,
and set_address reads an address of the unit's size whatever the instruction's length. A header's
directory and file tables are read as pyelftools reads them too, when a unit's files are first needed.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from wasmtime_gp._symbols.artifact import MalformedArtifact, read_uleb

# Standard opcodes (DWARF 5, 6.2.5.2) and extended ones (6.2.5.3).
COPY, ADVANCE_PC, ADVANCE_LINE, SET_FILE, SET_COLUMN, NEGATE_STMT, SET_BASIC_BLOCK = 1, 2, 3, 4, 5, 6, 7
CONST_ADD_PC, FIXED_ADVANCE_PC, SET_PROLOGUE_END, SET_EPILOGUE_BEGIN, SET_ISA = 8, 9, 10, 11, 12
END_SEQUENCE, SET_ADDRESS, DEFINE_FILE, SET_DISCRIMINATOR = 1, 2, 3, 4
_OPERANDS = {  # the bytes after each standard opcode but copy, as a regular expression
    ADVANCE_PC: rb"[\x80-\xff]*[\x00-\x7f]",
    ADVANCE_LINE: rb"[\x80-\xff]*[\x00-\x7f]",
    SET_FILE: rb"[\x80-\xff]*[\x00-\x7f]",
    SET_COLUMN: rb"[\x80-\xff]*[\x00-\x7f]",
    NEGATE_STMT: b"",
    SET_BASIC_BLOCK: b"",
    CONST_ADD_PC: b"",
    FIXED_ADVANCE_PC: rb"[\x00-\xff]{2}",
    SET_PROLOGUE_END: b"",
    SET_EPILOGUE_BEGIN: b"",
    SET_ISA: rb"[\x80-\xff]*[\x00-\x7f]",
}
PATH, DIRECTORY_INDEX = 1, 2  # the content types (DW_LNCT_*) of DWARF 5 directory and file entries read
END_OF_SEQUENCE = -1  # a row's file where the row ends a sequence: no line there


class Rows(NamedTuple):
    """Rows column by column: lists of ints, which the garbage collector does not track (tuples it would)."""

    addresses: list[int]
    files: list[int]  # END_OF_SEQUENCE where the row ends a sequence
    lines: list[int]
    columns: list[int]


class Header(NamedTuple):
    """What decoding a line program's opcodes needs from its header."""

    offset: int  # of the program's header in .debug_line
    version: int
    address_size: int
    minimum_instruction_length: int
    line_base: int
    line_range: int
    opcode_base: int
    program_start: int  # where the opcodes start (after the header) and end, in .debug_line
    program_end: int
    tables_start: int  # where the directory and file tables start, in .debug_line
    special_advances: tuple[list[int], list[int]]  # by opcode: what it adds to the address, to the line


class FileTable(NamedTuple):
    directories: list[bytes]
    files: list[tuple[bytes, int]]  # name, directory index as the header writes it


class Sequence(NamedTuple):
    start: int  # the address its first row is at
    begin: int  # its bytes in .debug_line
    end: int


def read_header(data: bytes, offset: int, address_size: int) -> Header:
    """The header of the program at `offset`; `address_size` is its unit's (DWARF 5 headers repeat it)."""
    try:
        (unit_length,) = struct.unpack_from("<I", data, offset)
        pos, offset_format = offset + 4, "<I"
        if unit_length == 0xFFFF_FFFF:  # 64-bit DWARF
            (unit_length,) = struct.unpack_from("<Q", data, pos)
            pos, offset_format = pos + 8, "<Q"
        end = pos + unit_length
        (version,) = struct.unpack_from("<H", data, pos)
        pos += 2
        if version >= 5:
            address_size = data[pos]
            pos += 2  # address_size, segment_selector_size
        (header_length,) = struct.unpack_from(offset_format, data, pos)
        pos += struct.calcsize(offset_format)
        program_start = pos + header_length
        minimum_instruction_length = data[pos]
        if version >= 4:
            pos += 1
            if data[pos] != 1:  # pyelftools would interleave op_index: no wasm engine is VLIW
                raise MalformedArtifact("a line program with maximum_operations_per_instruction != 1")
        line_base, line_range, opcode_base = struct.unpack_from("<xbBB", data, pos + 1)
    except (struct.error, IndexError):
        raise MalformedArtifact(f"a truncated line program header at {offset}") from None
    if line_range == 0 or opcode_base == 0 or end > len(data) or program_start > end:
        raise MalformedArtifact(f"a malformed line program header at {offset}")
    specials = [opcode - opcode_base for opcode in range(opcode_base, 256)]
    address_advance = [0] * opcode_base + [
        special // line_range * minimum_instruction_length for special in specials
    ]
    line_advance = [0] * opcode_base + [line_base + special % line_range for special in specials]
    return Header(offset, version, address_size, minimum_instruction_length, line_base, line_range, opcode_base,
                  program_start, end, pos + 4 + opcode_base, (address_advance, line_advance))  # fmt: skip


def read_file_table(
    data: bytes, header: Header, read_value: Callable[[bytes, int, int], tuple[Any, int]]
) -> FileTable:
    """The header's directories and files, as pyelftools reads them; `read_value(data, form, pos)` reads a DWARF 5
    entry's field, as its unit would (strings in its sections)."""
    pos = header.tables_start
    try:
        if header.version >= 5:
            directories, pos = _entries(data, pos, read_value)
            files, pos = _entries(data, pos, read_value)
            table = FileTable([entry[PATH] for entry in directories],
                              [(entry[PATH], entry[DIRECTORY_INDEX]) for entry in files])  # fmt: skip
        else:
            table = FileTable([], [])
            while data[pos]:
                end = data.index(b"\0", pos)
                table.directories.append(data[pos:end])
                pos = end + 1
            pos += 1
            while data[pos]:
                end = data.index(b"\0", pos)
                name = data[pos:end]
                directory, pos = read_uleb(data, end + 1)
                pos = read_uleb(data, read_uleb(data, pos)[1])[1]  # its modification time and length
                table.files.append((name, directory))
            pos += 1
    except (IndexError, ValueError, KeyError):
        raise MalformedArtifact(f"a truncated line program header at {header.offset}") from None
    if pos != header.program_start:
        raise MalformedArtifact("a line program header's length does not match its contents")
    return table


def _entries(
    data: bytes, pos: int, read_value: Callable[[bytes, int, int], tuple[Any, int]]
) -> tuple[list[dict[int, Any]], int]:
    """A DWARF 5 directory or file table: each entry's fields by content type (DW_LNCT_*)."""
    formats = []
    format_count, pos = data[pos], pos + 1
    for _ in range(format_count):
        content, pos = read_uleb(data, pos)
        form, pos = read_uleb(data, pos)
        formats.append((content, form))
    count, pos = read_uleb(data, pos)
    entries = []
    for _ in range(count):
        entry = {}
        for content, form in formats:
            entry[content], pos = read_value(data, form, pos)
        entries.append(entry)
    return entries, pos


def skim(data: bytes, header: Header) -> list[Sequence]:
    """The sequences of a program, in program order, each from its first set_address to its end_sequence.

    A sequence that adds a row before its first set_address, or has a second one, or no end, is
    decoded here to learn where its rows start (compilers write none of those).
    """
    standard = [re.escape(bytes([op])) + _OPERANDS[op] for op in _OPERANDS if op < header.opcode_base]
    adds_no_row = b"|".join(standard) or b"(?!)"
    adds_rows = re.escape(bytes([COPY])) + (b"|[" + re.escape(bytes([header.opcode_base])) + rb"-\xff]"
                                            if header.opcode_base <= 255 else b"")  # fmt: skip
    any_run = re.compile(b"(?:" + adds_no_row + b"|" + adds_rows + b")*")
    no_row_run = re.compile(b"(?:" + adds_no_row + b")*")
    sequences: list[Sequence] = []
    pos = begin = header.program_start
    end = header.program_end
    start: int | None = None
    regular = True
    while True:
        run_end = _run_end(any_run, data, pos, end)
        if start is None and _run_end(no_row_run, data, pos, run_end) != run_end:
            regular = False  # a row before set_address
        if run_end >= end:
            break
        if data[run_end] != 0:
            raise MalformedArtifact(f"invalid standard line program opcode {data[run_end]}")
        length, opcode_at = read_uleb(data, run_end + 1)
        opcode = data[opcode_at] if opcode_at < end else -1
        if opcode == SET_ADDRESS:
            if start is not None:
                regular = False
            else:
                start = int.from_bytes(data[opcode_at + 1 : opcode_at + 1 + header.address_size], "little")
            pos = opcode_at + 1 + header.address_size
        elif opcode == END_SEQUENCE:
            pos = opcode_at + 1
            sequences.append(_sequence(data, header, begin, pos, start if regular else None))
            begin, start, regular = pos, None, True
        else:
            pos = _after_extended(data, opcode, opcode_at, length)
    if begin < end and decode(data, header, begin, end).addresses:
        sequences.append(_sequence(data, header, begin, end, None))
    return sequences


def _run_end(run: re.Pattern[bytes], data: bytes, pos: int, end: int) -> int:
    match = run.match(data, pos, end)
    assert match is not None  # the empty run matches
    return match.end()


def _sequence(data: bytes, header: Header, begin: int, end: int, start: int | None) -> Sequence:
    if start is None:
        start = min(decode(data, header, begin, end).addresses)
    return Sequence(start, begin, end)


def _after_extended(data: bytes, opcode: int, opcode_at: int, length: int) -> int:
    """Where decoding goes on after an extended opcode other than set_address and end_sequence."""
    pos = opcode_at + 1
    if opcode == SET_DISCRIMINATOR:
        return read_uleb(data, pos)[1]
    if opcode == DEFINE_FILE:
        name_end = data.index(b"\0", pos)
        pos = name_end + 1
        if name_end > opcode_at + 1:  # a file with a name: its directory, time and size follow
            for _ in range(3):
                pos = read_uleb(data, pos)[1]
        return pos
    return opcode_at + length  # unknown: skip it whole


def decode(data: bytes, header: Header, begin: int, end: int) -> Rows:
    """The rows the opcodes in `data[begin:end]` add, from a fresh state (a sequence's or a program's start)."""
    address_advance, line_advance = header.special_advances
    opcode_base, step, const_add = header.opcode_base, header.minimum_instruction_length, address_advance[255]
    rows = Rows([], [], [], [])
    add_address, add_file, add_line, add_column = (values.append for values in rows)
    address, file, line, column = 0, 1, 1, 0
    pos = begin
    try:
        while pos < end:
            opcode = data[pos]
            pos += 1
            if opcode >= opcode_base:
                address += address_advance[opcode]
                line += line_advance[opcode]
                add_address(address)
                add_file(file)
                add_line(line)
                add_column(column)
            elif opcode == SET_COLUMN:  # the most frequent, then negate_stmt and advance_line, in clang's
                column = data[pos]  # one byte, nearly always
                if column < 0x80:
                    pos += 1
                else:
                    column, pos = read_uleb(data, pos)
            elif opcode == NEGATE_STMT:
                pass
            elif opcode == ADVANCE_LINE:
                # A signed LEB128, read here: jumps of thousands of lines (into inlined code) take three bytes.
                delta = shift = 0
                byte = 0x80
                while byte >= 0x80:
                    byte = data[pos]
                    pos += 1
                    delta |= (byte & 0x7F) << shift
                    shift += 7
                line += delta - (1 << shift) if byte & 0x40 else delta
            elif opcode in (SET_BASIC_BLOCK, SET_PROLOGUE_END, SET_EPILOGUE_BEGIN):
                pass
            elif opcode == COPY:
                add_address(address)
                add_file(file)
                add_line(line)
                add_column(column)
            elif opcode == CONST_ADD_PC:
                address += const_add
            elif opcode == ADVANCE_PC:
                delta, pos = read_uleb(data, pos)
                address += delta * step
            elif opcode == SET_FILE:
                file, pos = read_uleb(data, pos)
            elif opcode == FIXED_ADVANCE_PC:
                address += data[pos] | data[pos + 1] << 8
                pos += 2
            elif opcode == SET_ISA:
                pos = read_uleb(data, pos)[1]
            elif opcode == 0:
                length, opcode_at = read_uleb(data, pos)
                extended = data[opcode_at]
                if extended == END_SEQUENCE:
                    add_address(address)
                    add_file(END_OF_SEQUENCE)
                    add_line(0)
                    add_column(0)
                    address, file, line, column = 0, 1, 1, 0
                    pos = opcode_at + 1
                elif extended == SET_ADDRESS:
                    pos = opcode_at + 1 + header.address_size
                    if pos > len(data):
                        raise IndexError
                    address = int.from_bytes(data[opcode_at + 1 : pos], "little")
                else:
                    pos = _after_extended(data, extended, opcode_at, length)
            else:
                raise MalformedArtifact(f"invalid standard line program opcode {opcode}")
    except (IndexError, ValueError):
        raise MalformedArtifact(f"a truncated line program at {header.offset}") from None
    return rows
