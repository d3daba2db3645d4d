"""The units and DIEs of `.debug_info`, read by hand: pyelftools takes seconds to read SQLite's.

Each unit's abbreviations say what its DIEs hold; a DIE is read only when needed, the rest skipped by
the sizes of their forms (DWARF 2 to 5). Values read as pyelftools' `DIE.attributes` give them:
strings as bytes (strp, line_strp, strx through .debug_str_offsets), addresses through .debug_addr
for addrx, rnglistx and loclistx as offsets through their sections' offset tables, flags as bools.
A reference is kept as the offset in .debug_info it points to.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from elftools.dwarf.enums import ENUM_DW_AT, ENUM_DW_FORM, ENUM_DW_TAG

from wasmtime_gp._symbols.artifact import MalformedArtifact, read_sleb, read_uleb

_TAG_NAMES = {code: name for name, code in ENUM_DW_TAG.items() if isinstance(code, int)}
_ATTRIBUTE_NAMES = {code: name for name, code in ENUM_DW_AT.items() if isinstance(code, int)}
_F = {name[len("DW_FORM_") :]: code for name, code in ENUM_DW_FORM.items() if isinstance(code, int)}
FORM_NAMES = {code: "DW_FORM_" + name for name, code in _F.items()}

_FIXED_SIZES = {  # forms whose size does not depend on the unit
    **dict.fromkeys((_F["data1"], _F["ref1"], _F["flag"], _F["strx1"], _F["addrx1"]), 1),
    **dict.fromkeys((_F["data2"], _F["ref2"], _F["strx2"], _F["addrx2"]), 2),
    **dict.fromkeys((_F["strx3"], _F["addrx3"]), 3),
    **dict.fromkeys((_F["data4"], _F["ref4"], _F["strx4"], _F["addrx4"], _F["ref_sup4"]), 4),
    **dict.fromkeys((_F["data8"], _F["ref8"], _F["ref_sig8"], _F["ref_sup8"]), 8),
    _F["data16"]: 16,
    **dict.fromkeys((_F["flag_present"], _F["implicit_const"]), 0),
}
_OFFSET_SIZED = {
    _F["strp"],
    _F["line_strp"],
    _F["sec_offset"],
    _F["strp_sup"],
    _F["GNU_ref_alt"],
    _F["GNU_strp_alt"],
}
_LEB_FORMS = {_F["udata"], _F["sdata"], _F["ref_udata"], _F["strx"], _F["addrx"], _F["rnglistx"], _F["loclistx"],
              _F["GNU_addr_index"], _F["GNU_str_index"]}  # fmt: skip
_UNSIGNED = {_F["data1"]: 1, _F["data2"]: 2, _F["data4"]: 4, _F["data8"]: 8, _F["ref_sig8"]: 8,
             _F["ref_sup4"]: 4, _F["ref_sup8"]: 8}  # fmt: skip
_PLAIN = {  # forms whose value is their bytes as they are, as struct reads them
    **dict.fromkeys((*_UNSIGNED, _F["addr"], _F["sec_offset"], _F["ref_addr"], _F["strp_sup"], _F["GNU_ref_alt"],
                     _F["GNU_strp_alt"]), ""),
    _F["data16"]: "16s",
}  # fmt: skip
_STRUCT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_CU_REFERENCES = {_F["ref1"]: 1, _F["ref2"]: 2, _F["ref4"]: 4, _F["ref8"]: 8}
_STRX = {_F["strx"]: 0, _F["strx1"]: 1, _F["strx2"]: 2, _F["strx3"]: 3, _F["strx4"]: 4}
_ADDRX = {_F["addrx"]: 0, _F["addrx1"]: 1, _F["addrx2"]: 2, _F["addrx3"]: 3, _F["addrx4"]: 4}
LENGTH_FORMS = frozenset(_F[name] for name in ("data1", "data2", "data4", "data8", "data16"))
REFERENCE_FORMS = frozenset((*_CU_REFERENCES, _F["ref_udata"], _F["ref_addr"]))


class Attribute(NamedTuple):
    form: int
    value: Any


class Die(NamedTuple):
    offset: int
    tag: str | int  # pyelftools' name, or the number of a tag it does not know
    has_children: bool
    attributes: dict[str | int, Attribute]
    end: int  # where the next DIE (its first child, if it has any) starts


class _Layout(NamedTuple):
    """Where the attributes wanted of one abbreviation's DIEs are: the head (the attributes before the first
    of variable size) at fixed offsets, the rest walked."""

    # Unpacks the wanted head attributes whose value is their bytes as they are ("x" over the others).
    plain: struct.Struct
    plain_names: tuple[str | int, ...]
    plain_forms: tuple[int, ...]
    read_in_head: tuple[tuple[str | int, int, int, int], ...]  # other wanted: name, form, implicit, offset
    head_size: int
    tail: tuple[tuple[str | int, int, int, int | None, bool], ...]  # name, form, implicit, fixed size, wanted


class _Abbreviation(NamedTuple):
    tag: str | int
    has_children: bool
    attributes: tuple[tuple[str | int, int, int, int | None], ...]  # name, form, implicit value, fixed size
    fixed_size: int | None  # of its attributes, when no form's size depends on the bytes
    layouts: dict[frozenset[str] | None, _Layout]  # by the attributes wanted (None: all), made on first read


class Tree(NamedTuple):
    """DIEs walked, in their order (a DIE's descendants follow it), column by column."""

    offsets: list[int]
    tags: list[str | int]
    parents: list[int]  # the index of each one's parent, -1 for those right under where the walk started


class Sections(NamedTuple):
    """The .debug_* sections the readers use, by name without the dot (b"" where absent)."""

    debug_info: bytes
    debug_abbrev: bytes
    debug_str: bytes
    debug_line_str: bytes
    debug_str_offsets: bytes
    debug_addr: bytes
    debug_rnglists: bytes
    debug_loclists: bytes


class Unit:
    """One unit of .debug_info: its header, its abbreviations, and its DIEs on demand."""

    def __init__(self, sections: Sections, offset: int) -> None:
        data = sections.debug_info
        self.sections = sections
        self.offset = offset
        (length,) = struct.unpack_from("<I", data, offset)
        pos, self.offset_size = offset + 4, 4
        if length == 0xFFFF_FFFF:
            (length,) = struct.unpack_from("<Q", data, pos)
            pos, self.offset_size = pos + 8, 8
        self.end = pos + length
        (self.version,) = struct.unpack_from("<H", data, pos)
        offset_format = "<I" if self.offset_size == 4 else "<Q"
        if self.version >= 5:
            unit_type, self.address_size = data[pos + 2], data[pos + 3]
            (abbrev_offset,) = struct.unpack_from(offset_format, data, pos + 4)
            pos += 4 + self.offset_size
            pos += {4: 8, 6: 8 + self.offset_size, 2: 8 + self.offset_size, 5: 8}.get(unit_type, 0)  # DW_UT_*
        else:
            (abbrev_offset,) = struct.unpack_from(offset_format, data, pos + 2)
            pos += 2 + self.offset_size
            self.address_size = data[pos]
            pos += 1
        if self.end > len(data) or self.version not in range(2, 6):
            raise MalformedArtifact(f"a malformed unit header at {offset}")
        self.die_offset = pos
        self._sizes = {
            **_FIXED_SIZES,
            _F["addr"]: self.address_size,
            _F["ref_addr"]: self.offset_size if self.version >= 3 else self.address_size,
            **dict.fromkeys(_OFFSET_SIZED, self.offset_size),
        }
        self._abbreviations = self._read_abbreviations(sections.debug_abbrev, abbrev_offset)
        self._bases: dict[str, int] = {}
        raw_top = self.read(self.die_offset, resolve=False)
        self._bases = {
            name: raw_top.attributes[name].value
            for name in (
                "DW_AT_str_offsets_base",
                "DW_AT_addr_base",
                "DW_AT_rnglists_base",
                "DW_AT_loclists_base",
            )
            if name in raw_top.attributes
        }
        self.top = self.read(self.die_offset)

    def _read_abbreviations(self, data: bytes, pos: int) -> dict[int, _Abbreviation]:
        table: dict[int, _Abbreviation] = {}
        while True:
            code, pos = read_uleb(data, pos)
            if code == 0:
                return table
            tag, pos = read_uleb(data, pos)
            has_children = data[pos] != 0
            pos += 1
            attributes = []
            size: int | None = 0
            while True:
                name, pos = read_uleb(data, pos)
                form, pos = read_uleb(data, pos)
                if name == 0 and form == 0:
                    break
                implicit = 0
                if form == _F["implicit_const"]:
                    implicit, pos = read_sleb(data, pos)
                form_size = self._sizes.get(form)
                attributes.append((_ATTRIBUTE_NAMES.get(name, name), form, implicit, form_size))
                size = size + form_size if size is not None and form_size is not None else None
            table[code] = _Abbreviation(_TAG_NAMES.get(tag, tag), has_children, tuple(attributes), size, {})

    def abbreviation(self, data: bytes, pos: int) -> tuple[_Abbreviation | None, int]:
        """The abbreviation of the DIE at `pos` (None for a null entry), and where its attributes start."""
        code = data[pos]
        if code < 0x80:
            pos += 1
        else:
            code, pos = read_uleb(data, pos)
        if code == 0:
            return None, pos
        try:
            return self._abbreviations[code], pos
        except KeyError:
            raise MalformedArtifact(f"no abbreviation {code} for the DIE at {pos}") from None

    def skip(self, abbreviation: _Abbreviation, pos: int) -> int:
        """Where the attributes that start at `pos` end."""
        if abbreviation.fixed_size is not None:
            return pos + abbreviation.fixed_size
        data = self.sections.debug_info
        for _, form, _, size in abbreviation.attributes:
            pos = pos + size if size is not None else self._skip_value(data, form, pos)
        return pos

    def _skip_value(self, data: bytes, form: int, pos: int) -> int:
        size = self._sizes.get(form)
        if size is not None:
            return pos + size
        if form in _LEB_FORMS:
            return read_uleb(data, pos)[1]
        if form == _F["string"]:
            return data.index(b"\0", pos) + 1
        if form in (_F["block"], _F["exprloc"]):
            length, pos = read_uleb(data, pos)
            return pos + length
        if form == _F["block1"]:
            return pos + 1 + data[pos]
        if form in (_F["block2"], _F["block4"]):
            width = 2 if form == _F["block2"] else 4
            return pos + width + int.from_bytes(data[pos : pos + width], "little")
        if form == _F["indirect"]:
            form, pos = read_uleb(data, pos)
            return self._skip_value(data, form, pos)
        raise MalformedArtifact(f"unknown attribute form {form}")

    def read(self, offset: int, wanted: frozenset[str] | None = None, resolve: bool = True) -> Die:
        """The DIE at `offset` with the values of its attributes (those `wanted`, or all), `resolve`d through
        the unit's index tables."""
        data = self.sections.debug_info
        if not self.die_offset <= offset < self.end:
            raise MalformedArtifact(f"no DIE of the unit at {self.offset} at {offset}")
        abbreviation, pos = self.abbreviation(data, offset)
        if abbreviation is None:
            return Die(offset, 0, False, {}, pos)
        layout = abbreviation.layouts.get(wanted)
        if layout is None:
            layout = abbreviation.layouts[wanted] = _layout(abbreviation, wanted)
        values = layout.plain.unpack_from(data, pos)
        attributes = dict(zip(layout.plain_names, map(Attribute, layout.plain_forms, values)))
        for name, form, implicit, at in layout.read_in_head:
            attributes[name] = Attribute(form, self._value(data, form, implicit, pos + at, resolve)[0])
        pos += layout.head_size
        for name, form, implicit, size, is_wanted in layout.tail:
            if is_wanted:
                value, pos = self._value(data, form, implicit, pos, resolve)
                attributes[name] = Attribute(form, value)
            else:
                pos = pos + size if size is not None else self._skip_value(data, form, pos)
        return Die(offset, abbreviation.tag, abbreviation.has_children, attributes, pos)

    def walk(self, offset: int, tags: frozenset[str]) -> Tree:
        """The DIEs under the one at `offset` whose tag is in `tags`, as are those of their ancestors up to it,
        in the order of the DIEs; the rest skipped."""
        data = self.sections.debug_info
        abbreviations = self._abbreviations
        tree = Tree([], [], [])
        top, pos = self.abbreviation(data, offset)
        if top is None or not top.has_children:
            return tree
        pos = self.skip(top, pos)
        add_offset, add_tag, add_parent = tree.offsets.append, tree.tags.append, tree.parents.append
        parents: list[int | None] = [-1]  # per open list of children: its parent in `tree`, None: not walked
        end = self.end
        while parents and pos < end:
            die = pos
            code = data[pos]
            if code < 0x80:  # one byte, nearly always
                pos += 1
            else:
                code, pos = read_uleb(data, pos)
            if code == 0:
                parents.pop()
                continue
            abbreviation = abbreviations.get(code)
            if abbreviation is None:
                raise MalformedArtifact(f"no abbreviation {code} for the DIE at {die}")
            size = abbreviation.fixed_size
            pos = pos + size if size is not None else self.skip(abbreviation, pos)
            parent = parents[-1]
            if parent is not None and abbreviation.tag in tags:
                if abbreviation.has_children:
                    parents.append(len(tree.offsets))
                add_offset(die)
                add_tag(abbreviation.tag)
                add_parent(parent)
            elif abbreviation.has_children:
                parents.append(None)
        return tree

    def read_value(self, data: bytes, form: int, pos: int) -> tuple[Any, int]:
        """A value of form `form` at `pos` in `data` (also a line program header's) as an attribute's: (value, end)."""
        return self._value(data, form, 0, pos, True)

    def _value(self, data: bytes, form: int, implicit: int, pos: int, resolve: bool) -> tuple[Any, int]:
        width = _UNSIGNED.get(form)
        if width is not None:
            return int.from_bytes(data[pos : pos + width], "little"), pos + width
        if form == _F["addr"]:
            return int.from_bytes(data[pos : pos + self.address_size], "little"), pos + self.address_size
        if form in _CU_REFERENCES:
            width = _CU_REFERENCES[form]
            return self.offset + int.from_bytes(data[pos : pos + width], "little"), pos + width
        if form == _F["ref_udata"]:
            value, pos = read_uleb(data, pos)
            return self.offset + value, pos
        if form in (_F["udata"], _F["GNU_addr_index"], _F["GNU_str_index"]):
            return read_uleb(data, pos)
        if form == _F["sdata"]:
            return read_sleb(data, pos)
        if form in (_F["strp"], _F["line_strp"], _F["sec_offset"], _F["ref_addr"], _F["strp_sup"],
                    _F["GNU_ref_alt"], _F["GNU_strp_alt"]):  # fmt: skip
            width = self._sizes[form]
            offset = int.from_bytes(data[pos : pos + width], "little")
            if form == _F["strp"]:
                return _string(self.sections.debug_str, offset), pos + width
            if form == _F["line_strp"]:
                return _string(self.sections.debug_line_str, offset), pos + width
            return offset, pos + width
        if form == _F["string"]:
            end = data.index(b"\0", pos)
            return data[pos:end], end + 1
        if form == _F["flag"]:
            return data[pos] != 0, pos + 1
        if form == _F["flag_present"]:
            return True, pos
        if form == _F["implicit_const"]:
            return implicit, pos
        if form in _STRX or form in _ADDRX or form in (_F["rnglistx"], _F["loclistx"]):
            width = _STRX.get(form, _ADDRX.get(form, 0))
            if width:
                index, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
            else:
                index, pos = read_uleb(data, pos)
            return (self._resolve(form, index) if resolve else index), pos
        if form == _F["indirect"]:
            form, pos = read_uleb(data, pos)
            return self._value(data, form, implicit, pos, resolve)
        end = self._skip_value(data, form, pos)  # blocks and exprloc: their bytes
        return data[pos:end], end

    def _resolve(self, form: int, index: int) -> Any:
        """An index into .debug_addr, .debug_str_offsets, or a list section's offset table, as pyelftools resolves it."""
        sections = self.sections
        base_name = ("DW_AT_str_offsets_base" if form in _STRX else "DW_AT_addr_base" if form in _ADDRX
                     else "DW_AT_rnglists_base" if form == _F["rnglistx"] else "DW_AT_loclists_base")  # fmt: skip
        if base_name not in self._bases:
            raise MalformedArtifact(f"the unit at {self.offset} needs {base_name}")
        base = self._bases[base_name]
        if form in _ADDRX:
            return _unsigned(sections.debug_addr, base + index * self.address_size, self.address_size)
        table = sections.debug_str_offsets if form in _STRX else (
            sections.debug_rnglists if form == _F["rnglistx"] else sections.debug_loclists)  # fmt: skip
        offset = _unsigned(table, base + index * self.offset_size, self.offset_size)
        return _string(sections.debug_str, offset) if form in _STRX else base + offset


def _layout(abbreviation: _Abbreviation, wanted: frozenset[str] | None) -> _Layout:
    plain_format, plain_names, plain_forms, read_in_head = ["<"], [], [], []
    head_size = 0
    attributes = abbreviation.attributes
    head = next((index for index, (*_, size) in enumerate(attributes) if size is None), len(attributes))
    for name, form, implicit, size in attributes[:head]:
        assert size is not None  # the head's are fixed
        code = (_PLAIN[form] or _STRUCT_CODES.get(size)) if form in _PLAIN else None
        if wanted is not None and name not in wanted:
            plain_format.append(f"{size}x")
        elif code:
            plain_format.append(code)
            plain_names.append(name)
            plain_forms.append(form)
        else:
            plain_format.append(f"{size}x")
            read_in_head.append((name, form, implicit, head_size))
        head_size += size
    return _Layout(
        struct.Struct("".join(plain_format)), tuple(plain_names), tuple(plain_forms), tuple(read_in_head),
        head_size, tuple((*attribute, wanted is None or attribute[0] in wanted) for attribute in attributes[head:]),
    )  # fmt: skip


def _unsigned(data: bytes, pos: int, width: int) -> int:
    if pos + width > len(data):
        raise MalformedArtifact("an index past the end of its section")
    return int.from_bytes(data[pos : pos + width], "little")


def _string(data: bytes, offset: int) -> bytes:
    end = data.find(b"\0", offset)
    if offset >= len(data) or end < 0:
        raise MalformedArtifact("a string offset past the end of its section")
    return data[offset:end]


def units(sections: Sections) -> list[Unit]:
    """Every unit of .debug_info, in order."""
    found, offset = [], 0
    while offset < len(sections.debug_info):
        unit = Unit(sections, offset)
        found.append(unit)
        offset = unit.end
    return found


def read_ranges_v4(data: bytes, offset: int, address_size: int) -> list[tuple[str, int, int]]:
    """A .debug_ranges list as pyelftools reads it: ("range", begin, end) or ("base", address, 0)."""
    entries: list[tuple[str, int, int]] = []
    largest = (1 << (8 * address_size)) - 1
    while True:
        if offset + 2 * address_size > len(data):
            raise MalformedArtifact("a range list past the end of .debug_ranges")
        begin = int.from_bytes(data[offset : offset + address_size], "little")
        end = int.from_bytes(data[offset + address_size : offset + 2 * address_size], "little")
        offset += 2 * address_size
        if begin == 0 and end == 0:
            return entries
        entries.append(("base", end, 0) if begin == largest else ("range", begin, end))
