"""pprof: a gzipped `perftools.profiles.Profile` protocol buffer, as `go tool pprof` reads.

The message types are declared here, field by field, from pprof's documented profile.proto, and encoded by the
protobuf library (the `pprof` extra): no generated code and no protoc needed.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from typing import Any

from wasmtime_gp._errors import GuestProfilerError
from wasmtime_gp.profile import Frame, Profile

# (message, [(field, number, type, repeated)]) from profile.proto; type is a scalar name or a message name.
_SCHEMA = [
    ("ValueType", [("type", 1, "int64", False), ("unit", 2, "int64", False)]),
    ("Label", [("key", 1, "int64", False), ("str", 2, "int64", False), ("num", 3, "int64", False),
               ("num_unit", 4, "int64", False)]),
    ("Sample", [("location_id", 1, "uint64", True), ("value", 2, "int64", True), ("label", 3, "Label", True)]),
    ("Mapping", [("id", 1, "uint64", False), ("memory_start", 2, "uint64", False),
                 ("memory_limit", 3, "uint64", False), ("file_offset", 4, "uint64", False),
                 ("filename", 5, "int64", False), ("build_id", 6, "int64", False),
                 ("has_functions", 7, "bool", False), ("has_filenames", 8, "bool", False),
                 ("has_line_numbers", 9, "bool", False), ("has_inline_frames", 10, "bool", False)]),
    ("Line", [("function_id", 1, "uint64", False), ("line", 2, "int64", False), ("column", 3, "int64", False)]),
    ("Location", [("id", 1, "uint64", False), ("mapping_id", 2, "uint64", False), ("address", 3, "uint64", False),
                  ("line", 4, "Line", True), ("is_folded", 5, "bool", False)]),
    ("Function", [("id", 1, "uint64", False), ("name", 2, "int64", False), ("system_name", 3, "int64", False),
                  ("filename", 4, "int64", False), ("start_line", 5, "int64", False)]),
    ("Profile", [("sample_type", 1, "ValueType", True), ("sample", 2, "Sample", True),
                 ("mapping", 3, "Mapping", True), ("location", 4, "Location", True),
                 ("function", 5, "Function", True), ("string_table", 6, "string", True),
                 ("drop_frames", 7, "int64", False), ("keep_frames", 8, "int64", False),
                 ("time_nanos", 9, "int64", False), ("duration_nanos", 10, "int64", False),
                 ("period_type", 11, "ValueType", False), ("period", 12, "int64", False),
                 ("comment", 13, "int64", True), ("default_sample_type", 14, "int64", False)]),
]  # fmt: skip


@lru_cache(maxsize=1)
def _profile_class() -> Any:
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:
        raise GuestProfilerError(
            "the pprof export needs the protobuf library: pip install 'wasmtime-gp[pprof]'"
        ) from None
    scalar = {
        "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
        "uint64": descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
        "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
        "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    }
    file = descriptor_pb2.FileDescriptorProto(
        name="wasmtime_gp/perftools_profile.proto", package="perftools.profiles", syntax="proto3"
    )
    for message_name, fields in _SCHEMA:
        message = file.message_type.add(name=message_name)
        for name, number, kind, repeated in fields:
            field = message.field.add(name=name, number=number)
            field.label = (
                descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                if repeated
                else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
            )
            if kind in scalar:
                field.type = scalar[kind]
            else:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = f".perftools.profiles.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("perftools.profiles.Profile"))


def to_pprof(profile: Profile, *more: Profile) -> bytes:
    """The gzipped profile: sample types samples/count and cpu/nanoseconds, period = the interval.

    With `more` profiles (of other stores, say), one pprof holding the samples of all, each with its own
    profile's labels; the period is the finest interval, the time span covers them all.
    """
    profiles = (profile, *more)
    message = _profile_class()()
    strings: dict[str, int] = {}

    def string(text: str) -> int:
        if text not in strings:
            strings[text] = len(strings)
            message.string_table.append(text)
        return strings[text]

    string("")  # pprof requires string_table[0] == ""
    for kind, unit in (("samples", "count"), ("cpu", "nanoseconds")):
        message.sample_type.add(type=string(kind), unit=string(unit))
    message.period_type.type = string("cpu")
    message.period_type.unit = string("nanoseconds")
    message.period = round(min(p.interval for p in profiles) * 1e9)
    start = min(p.start_time for p in profiles)
    message.time_nanos = round(start * 1e9)
    message.duration_nanos = round((max(p.start_time + p.duration for p in profiles) - start) * 1e9)

    mappings: dict[str, int] = {}
    functions: dict[tuple[str, str, str | None], int] = {}
    locations: dict[tuple[object, ...], int] = {}  # one location per function and source line
    by_object: dict[int, int] = {}  # the location of each Frame object: the stacks of a table share them

    def location(frame: Frame) -> int:
        if id(frame) in by_object:
            return by_object[id(frame)]
        key = (frame.function, frame.module, frame.file, frame.line, frame.column)
        if key in locations:
            by_object[id(frame)] = locations[key]
            return locations[key]
        if frame.module not in mappings:
            mappings[frame.module] = len(mappings) + 1
            message.mapping.add(
                id=mappings[frame.module],
                filename=string(frame.module),
                has_functions=True,
                has_filenames=frame.file is not None,
                has_line_numbers=frame.line is not None,
            )
        function_key = (frame.function, frame.module, frame.file)
        if function_key not in functions:
            functions[function_key] = len(functions) + 1
            message.function.add(id=functions[function_key], name=string(frame.function),
                                 system_name=string(frame.function), filename=string(frame.file or frame.module),
                                 start_line=frame.function_line or 0)  # fmt: skip
        ident = locations[key] = by_object[id(frame)] = len(locations) + 1
        entry = message.location.add(id=ident, mapping_id=mappings[frame.module])
        entry.line.add(function_id=functions[function_key], line=frame.line or 0, column=frame.column or 0)
        return ident

    # One pprof sample per distinct stack, its values summed (pprof adds the values of equal stacks anyway):
    # a deep stack is written once, not once per sample.
    for one in profiles:
        stacks: dict[tuple[int, int], list[int]] = {}  # (table, stack) -> [samples, CPU ns]
        for sample in one.samples:
            if sample.stack_index >= 0:
                values = stacks.setdefault((id(sample.table), sample.stack_index), [0, 0])
                values[0] += 1
                values[1] += round(sample.cpu_delta * 1e9)
        tables = {id(sample.table): sample.table for sample in one.samples}
        labels = [(string(key), string(value)) for key, value in sorted(one.labels.items())]
        for (table_id, stack), values in stacks.items():
            table, location_ids = tables[table_id], []
            while stack >= 0:  # leaf first
                location_ids.append(location(table.frame[stack]))
                stack = table.prefix[stack]
            entry = message.sample.add(location_id=location_ids, value=values)
            for key, value in labels:
                entry.label.add(key=key, str=value)
    return gzip.compress(message.SerializeToString(), mtime=0)
