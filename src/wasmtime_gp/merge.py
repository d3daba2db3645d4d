"""Merge several Wasmtime guest profiles (stores, threads, processes) into one, with one thread each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wasmtime_gp import _fxprof
from wasmtime_gp._errors import ProfileFormatError


def merge_profiles(profiles: Sequence[bytes], names: Sequence[str] | None = None) -> bytes:
    """One Firefox processed profile holding every input's thread, on a common timeline.

    The inputs must be in the same format version (profiles from one Wasmtime release line). Thread names
    default to each profile's process name, numbered when they repeat.
    """
    if not profiles:
        raise ProfileFormatError("nothing to merge")
    if names is not None and len(names) != len(profiles):
        raise ProfileFormatError(f"{len(names)} names for {len(profiles)} profiles")
    documents = []
    for index, data in enumerate(profiles):
        try:
            document = json.loads(data)
            (_,) = document["threads"]
            float(document["meta"]["startTime"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ProfileFormatError(
                f"input {index} is not a single-thread Wasmtime profile ({exc})"
            ) from None
        documents.append(document)
    versions = {_fxprof.format_version(d) for d in documents}
    if len(versions) > 1:
        raise ProfileFormatError(f"cannot merge profile format versions {sorted(versions, key=str)}")

    start = min(d["meta"]["startTime"] for d in documents)
    # The documents were parsed here and nothing else holds them: they are edited in place, not copied.
    merged: dict[str, Any] = {**documents[0], "meta": dict(documents[0]["meta"])}
    merged["meta"]["startTime"] = start
    merged["meta"]["interval"] = min(d["meta"]["interval"] for d in documents)
    merged["libs"], merged["threads"] = [], []
    # Every profile's categories and marker schemas, by name: one that has host calls or time outside wasm
    # numbered its own categories after Wasmtime's.
    categories: list[dict[str, Any]] = []
    category_index: dict[str, int] = {}
    schemas: dict[str, dict[str, Any]] = {}
    merged["meta"]["categories"], merged["meta"]["markerSchema"] = categories, []
    seen: dict[str, int] = {}
    for index, document in enumerate(documents):
        thread = document["threads"][0]
        mapping = []
        for category in document["meta"].get("categories", []):
            if category["name"] not in category_index:
                category_index[category["name"]] = len(categories)
                categories.append(category)
            mapping.append(category_index[category["name"]])
        _fxprof.renumber_categories(thread, mapping)
        for schema in document["meta"].get("markerSchema", []):
            schemas.setdefault(schema["name"], schema)
        offset = document["meta"]["startTime"] - start  # ms from the merged start to this profile's start
        lib_base = len(merged["libs"])
        merged["libs"] += document["libs"]
        resources = thread["resourceTable"]
        resources["lib"] = [None if lib is None else lib + lib_base for lib in resources["lib"]]
        _fxprof.shift_times(thread, offset)
        name = names[index] if names is not None else str(thread.get("processName") or f"profile{index}")
        seen[name] = seen.get(name, 0) + 1
        thread["name"] = name if seen[name] == 1 else f"{name} #{seen[name]}"
        thread["pid"], thread["tid"] = str(index), str(index)
        thread["isMainThread"] = index == 0
        merged["threads"].append(thread)
    merged["meta"]["markerSchema"] = list(schemas.values())
    return json.dumps(merged, ensure_ascii=False).encode()
