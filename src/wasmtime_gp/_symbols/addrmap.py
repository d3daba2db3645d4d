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

A block is decoded when a lookup first falls in it (decoding all of SQLite's 210,000 entries takes a
tenth of a second); what can be checked without decoding is each block's first position.
"""

from __future__ import annotations

import bisect
import operator
import struct
from collections.abc import Callable

from wasmtime_gp._symbols.artifact import MalformedArtifact, read_sleb, read_uleb

BLOCKS_FROM_MAJOR = 47  # the block encoding
VERIFIED_MAJORS = range(19, 51)  # read from the sources (to 48 and main of August 2026) and tested on 50
BLOCK_SIZE = 128
NO_POSITION = 0xFFFF_FFFF


class AddressMap:
    """Text offset -> wasm file offset for one compiled module, a block of entries decoded when first needed."""

    def __init__(
        self,
        block_starts: list[int],
        read_block: Callable[[int], tuple[list[int], list[int]]],
        spot_positions: list[int],
    ) -> None:
        if any(b < a for a, b in zip(block_starts, block_starts[1:])):
            raise MalformedArtifact("the address map's text offsets are not in order")
        self._starts = block_starts  # each block's first text offset
        self._read_block = read_block
        self._blocks: dict[int, tuple[list[int], list[int]]] = {}
        self.spot_positions = (
            spot_positions  # wasm offsets known without decoding the blocks: to check the file
        )

    def wasm_offset(self, text_offset: int) -> int | None:
        """Raises MalformedArtifact if the block it needs is malformed."""
        block = bisect.bisect_right(self._starts, text_offset) - 1
        if block < 0:
            return None
        if block not in self._blocks:
            text, wasm = self._read_block(block)
            following = self._starts[block + 1] if block + 1 < len(self._starts) else None
            if any(map(operator.gt, text, text[1:])) or (following is not None and text[-1] > following):
                raise MalformedArtifact("the address map's text offsets are not in order")
            self._blocks[block] = text, wasm
        text, wasm = self._blocks[block]
        position = wasm[bisect.bisect_right(text, text_offset) - 1]
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
    positions = [position for position in wasm if position != NO_POSITION]
    return AddressMap(text[:1], lambda _: (text, wasm), positions)


def _parse_blocks(section: bytes) -> AddressMap:
    try:
        entries, blocks = struct.unpack_from("<II", section, 0)
        index = [struct.unpack_from("<II", section, 8 + 8 * block) for block in range(blocks)]
    except struct.error as exc:
        raise MalformedArtifact(str(exc)) from None
    if blocks != -(-entries // BLOCK_SIZE):
        raise MalformedArtifact("the address map's block count does not match its entries")
    bodies = section[8 + 8 * blocks :]

    def read_block(block: int, until_a_position: bool = False) -> tuple[list[int], list[int]]:
        """The block's text offsets and wasm offsets (lists of ints: no tuple per entry for the garbage
        collector to scan); `until_a_position`: only up to its first wasm offset that is not NO_POSITION."""
        first_offset, pos = index[block]
        texts: list[int] = []
        positions: list[int] = []
        offset, previous = first_offset, None
        for _ in range(min(BLOCK_SIZE, entries - block * BLOCK_SIZE)):
            token = bodies[pos] if pos < len(bodies) else 0x80  # one byte, nearly always
            if token < 0x80:
                pos += 1
            else:
                token, pos = read_uleb(bodies, pos)
            offset += token >> 1
            if token & 1:
                position = NO_POSITION
            elif previous is None:
                position, pos = read_uleb(bodies, pos)
            else:
                delta = bodies[pos] if pos < len(bodies) else 0x80
                if delta < 0x80:
                    pos += 1
                    delta = delta - 0x80 if delta & 0x40 else delta
                else:
                    delta, pos = read_sleb(bodies, pos)
                position = previous + delta
            texts.append(offset)
            positions.append(position)
            if position != NO_POSITION:
                if until_a_position:
                    break
                previous = position
        return texts, positions

    starts: list[int] = []
    spots: list[int] = []
    for block in range(blocks):
        texts, positions = read_block(block, until_a_position=True)
        starts.append(texts[0])  # a block has an entry at least: its count is checked above
        spots.extend(position for position in positions[-1:] if position != NO_POSITION)  # the block's first
    return AddressMap(starts, read_block, spots)
