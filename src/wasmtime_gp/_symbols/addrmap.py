"""Wasmtime's address map: native code offsets of a compiled module -> byte offsets in its `.wasm` file.

The `.wasmtime.addrmap` section of `Module.serialize()`'s ELF artifact, in two encodings
(read from `crates/environ/src/address_map.rs` at each release tag):

- 19 -> 46: `count: u32`, then `count` text offsets (u32, ascending), then `count` wasm offsets (u32).
- 47 -> 50: `entries: u32`, `blocks: u32`, then per block `(first text offset: u32, body position: u32)`,
  then the bodies: 128 entries each, every entry a ULEB token `delta << 1 | none`, the text offset
  being the previous one plus `delta`; unless `none`, a wasm offset follows, the block's first as a
  ULEB, the rest as SLEB deltas from the previous one.

Both little-endian. An entry covers the code from its text offset up to the next entry's; a wasm
offset of u32::MAX means "no position". Text offsets are relative to the artifact's `.text`, as are
the frame addresses in Wasmtime's guest profiles.
"""

from __future__ import annotations

import bisect
import struct

from wasmtime_gp._symbols.artifact import MalformedArtifact, read_sleb, read_uleb

BLOCKS_FROM_MAJOR = 47  # the block encoding
VERIFIED_MAJORS = range(19, 51)  # read from the sources (to 48 and main of August 2026) and tested on 50
BLOCK_SIZE = 128
NO_POSITION = 0xFFFF_FFFF


class AddressMap:
    """Text offset -> wasm file offset for one compiled module."""

    def __init__(self, text_offsets: list[int], wasm_offsets: list[int]) -> None:
        if any(b < a for a, b in zip(text_offsets, text_offsets[1:])):
            raise MalformedArtifact("the address map's text offsets are not in order")
        self.text_offsets = text_offsets
        self.wasm_offsets = wasm_offsets

    def wasm_offset(self, text_offset: int) -> int | None:
        index = bisect.bisect_right(self.text_offsets, text_offset) - 1
        if index < 0:
            return None
        position = self.wasm_offsets[index]
        return None if position == NO_POSITION else position


def parse(section: bytes, major: int) -> AddressMap:
    if major >= BLOCKS_FROM_MAJOR:
        return _parse_blocks(section)
    return _parse_arrays(section)


def _parse_arrays(section: bytes) -> AddressMap:
    try:
        (count,) = struct.unpack_from("<I", section, 0)
        if 4 + 8 * count != len(section):
            raise MalformedArtifact("the address map's length does not match its count")
        text = list(struct.unpack_from(f"<{count}I", section, 4))
        wasm = list(struct.unpack_from(f"<{count}I", section, 4 + 4 * count))
    except struct.error as exc:
        raise MalformedArtifact(str(exc)) from None
    return AddressMap(text, wasm)


def _parse_blocks(section: bytes) -> AddressMap:
    try:
        entries, blocks = struct.unpack_from("<II", section, 0)
        index = [struct.unpack_from("<II", section, 8 + 8 * block) for block in range(blocks)]
    except struct.error as exc:
        raise MalformedArtifact(str(exc)) from None
    if blocks != -(-entries // BLOCK_SIZE):
        raise MalformedArtifact("the address map's block count does not match its entries")
    bodies = section[8 + 8 * blocks :]
    text: list[int] = []
    wasm: list[int] = []
    for block, (first_offset, body) in enumerate(index):
        pos, offset, previous = body, first_offset, None
        for _ in range(min(BLOCK_SIZE, entries - block * BLOCK_SIZE)):
            token, pos = read_uleb(bodies, pos)
            offset += token >> 1
            if token & 1:
                position = NO_POSITION
            elif previous is None:
                position, pos = read_uleb(bodies, pos)
            else:
                delta, pos = read_sleb(bodies, pos)
                position = previous + delta
            if position != NO_POSITION:
                previous = position
            text.append(offset)
            wasm.append(position)
    return AddressMap(text, wasm)
