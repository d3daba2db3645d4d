"""Read a compiled module's own name (from its wasm name section) out of Wasmtime's artifact.

The C API has no getter for a module's name, but `Module.serialize()` returns Wasmtime's
compiled ELF artifact, whose `.wasmtime.info` section opens with the serialized
`wasmtime_environ::Module`. Its leading fields, per release (read from Wasmtime's tags):

- 19 -> 20: bincode (fixed-width ints, u64 lengths): `name: Option<String>` first.
- 21 -> 37: postcard (LEB128 varints): `name: Option<String>` first.
- 38 -> 42: postcard: `module_index: u32`, then `name: Option<String>`.
- 43 -> 50: postcard: `module_index: u32`, `strings: Vec<String>`, then `name: Option<Atom>`,
  where an Atom is a NonZeroU32: one more than the index into `strings`.

Anything that does not decode cleanly gives None, and the caller falls back to `moduleN`.
"""

from __future__ import annotations

import struct
import weakref

import wasmtime

from wasmtime_gp._abi import WASMTIME_MAJOR
from wasmtime_gp._symbols.artifact import MalformedArtifact, elf_section, read_uleb

_INFO_SECTION = b".wasmtime.info"
_MAX_NAME = 4096

_names: weakref.WeakKeyDictionary[wasmtime.Module, str | None] = weakref.WeakKeyDictionary()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MalformedArtifact
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        value, self.pos = read_uleb(self.data, self.pos)
        return value

    def postcard_str(self) -> str:
        length = self.varint()
        if length > _MAX_NAME:
            raise MalformedArtifact
        return self.take(length).decode("utf-8")

    def bincode_str(self) -> str:
        (length,) = struct.unpack("<Q", self.take(8))
        if length > _MAX_NAME:
            raise MalformedArtifact
        return self.take(length).decode("utf-8")

    def option_tag(self) -> bool:
        tag = self.take(1)[0]
        if tag > 1:
            raise MalformedArtifact
        return tag == 1


def _decode_name(info: bytes, major: int) -> str | None:
    reader = _Reader(info)
    if major <= 20:
        return reader.bincode_str() if reader.option_tag() else None
    if major >= 38:
        reader.varint()  # module_index
    if major < 43:
        return reader.postcard_str() if reader.option_tag() else None
    strings = [reader.postcard_str() for _ in range(reader.varint())]
    if not reader.option_tag():
        return None
    atom = reader.varint()
    if not 1 <= atom <= len(strings):
        raise MalformedArtifact
    return strings[atom - 1]


def module_name(module: wasmtime.Module) -> str | None:
    """The name in `module`'s wasm name section, or None if it has none or it cannot be read."""
    if module in _names:
        return _names[module]
    try:
        info = elf_section(bytes(module.serialize()), _INFO_SECTION)
        name = _decode_name(info, WASMTIME_MAJOR)
    except (MalformedArtifact, struct.error, UnicodeDecodeError, IndexError, wasmtime.WasmtimeError):
        name = None
    _names[module] = name
    return name
