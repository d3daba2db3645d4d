"""Wasmtime's compiled artifact (`Module.serialize()`): its ELF sections, and the LEB128 its sections use."""

from __future__ import annotations

import struct


class MalformedArtifact(Exception):
    """The bytes are not laid out as expected: the caller falls back to what it can do without them."""


def elf_section(artifact: bytes, wanted: bytes) -> bytes:
    """The contents of the section named `wanted` (64-bit little-endian ELF, as Wasmtime writes on our hosts)."""
    offset, size = elf_section_bounds(artifact, wanted)
    return artifact[offset : offset + size]


def elf_section_bounds(artifact: bytes | bytearray, wanted: bytes) -> tuple[int, int]:
    """(offset, size) in `artifact` of the section named `wanted`."""
    if artifact[:4] != b"\x7fELF" or artifact[4] != 2 or artifact[5] != 1:
        raise MalformedArtifact("not a 64-bit little-endian ELF file")
    try:
        (shoff,) = struct.unpack_from("<Q", artifact, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", artifact, 0x3A)

        def header(index: int) -> tuple[int, int, int]:
            base = shoff + index * shentsize
            (name_offset,) = struct.unpack_from("<I", artifact, base)
            offset, size = struct.unpack_from("<QQ", artifact, base + 0x18)
            return name_offset, offset, size

        _, names_offset, names_size = header(shstrndx)
        names = artifact[names_offset : names_offset + names_size]
        for index in range(shnum):
            name_offset, offset, size = header(index)
            end = names.find(b"\0", name_offset)
            if names[name_offset:end] == wanted:
                if offset + size > len(artifact):
                    raise MalformedArtifact(f"section {wanted!r} runs past the end of the file")
                return offset, size
    except struct.error as exc:
        raise MalformedArtifact(str(exc)) from None
    raise MalformedArtifact(f"no section {wanted!r}")


def read_uleb(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 at `pos`: (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise MalformedArtifact("truncated or overlong LEB128")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def read_sleb(data: bytes, pos: int) -> tuple[int, int]:
    """A signed LEB128 at `pos`: (value, position after it)."""
    value, end = read_uleb(data, pos)
    last = data[end - 1]
    return (value - (1 << 7 * (end - pos)) if last & 0x40 else value), end
