"""Property-based tests (hypothesis): every public argument, and profile parsing, on hostile input.

A public call must either work or raise one of our errors (GuestProfilerError and its kinds), never
anything else, never crash the process. Profile parsing must return a Profile or raise
ProfileFormatError, quickly and without a memory spike, whatever the bytes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from conftest import instantiate, make_engine, rss_bytes
from guests import CHAIN

from wasmtime_gp import (
    ContinuousProfiler,
    GuestProfiler,
    GuestProfilerError,
    Profile,
    ProfileFormatError,
    host_calls,
)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow  # hypothesis runs hundreds of examples; the README's command runs them once

FIXTURES = sorted((Path(__file__).parent / "data").glob("chain-wasmtime*.json"))
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text with what Wasmtime would abort on: lone surrogates, NULs, and any other code point.
texts = st.one_of(
    st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())),
    st.builds(lambda a, b: f"{a}\udc80{b}", st.text(), st.text()),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e-7, max_value=0.01),
    st.integers(min_value=-(10**30), max_value=10**30),
)
anything = st.one_of(
    numbers, texts, st.none(), st.booleans(), st.binary(max_size=8), st.lists(st.integers(), max_size=2)
)

Tried = {"constructor": 0, "modules": 0, "labels": 0, "host names": 0, "profiles": 0}


@pytest.fixture(scope="module")
def guest():  # type: ignore[no-untyped-def]
    return instantiate(CHAIN)


def attempt(make: Any) -> Any:
    """Call `make`; our errors are fine, anything else fails the property."""
    try:
        return make()
    except GuestProfilerError:
        return None


@FUZZ
@given(
    interval=st.one_of(numbers, anything),
    name=st.one_of(texts, anything),
    timeout=st.one_of(numbers, anything),
)
def test_constructor_arguments(guest, interval, name, timeout):
    Tried["constructor"] += 1
    profiler = attempt(
        lambda: GuestProfiler(guest.store, [guest.module], interval=interval, name=name, timeout=timeout)
    )
    if profiler is not None:
        if profiler.interval >= 1e-5:  # never spin a core for a whole example
            with profiler:
                try:
                    guest.call("run", 1000)
                except (wasmtime.Trap, wasmtime.WasmtimeError):
                    assert profiler.timed_out  # a timeout shorter than the call: a loaded machine's

        assert isinstance(profiler.finish(), bytes)


@pytest.fixture(scope="module")
def module_pool(guest):  # type: ignore[no-untyped-def]
    other_engine = make_engine()
    closed = wasmtime.Module(guest.engine, CHAIN)
    closed.close()
    return [
        guest.module,
        ("named", guest.module),
        wasmtime.Module(other_engine, CHAIN),  # another engine: refused (a forked probe) or frame-less
        closed,
        "module.wasm",
        None,
        ("only a name",),
        (guest.module, "swapped"),
        b"\0asm",
    ]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_module_lists(guest, module_pool, data):
    Tried["modules"] += 1
    items = data.draw(st.lists(st.sampled_from(module_pool), max_size=4))
    names = data.draw(st.lists(texts, min_size=len(items), max_size=len(items)))
    shape = data.draw(st.sampled_from(["list", "tuple", "dict", "named pairs"]))
    if shape == "dict":
        modules: Any = dict(zip(names, items))
    elif shape == "named pairs":
        modules = [(name, item) for name, item in zip(names, items)]
    else:
        modules = items if shape == "list" else tuple(items)
    profiler = attempt(lambda: GuestProfiler(guest.store, modules))
    if profiler is not None:
        profiler.finish()


@FUZZ
@given(labels=st.dictionaries(texts, texts, max_size=4))
def test_labels(guest, labels):
    Tried["labels"] += 1
    continuous = attempt(
        lambda: ContinuousProfiler(guest.store, [guest.module], sink=lambda r: r, labels=labels)
    )
    if continuous is not None:
        with continuous:
            guest.call("run", 1000)
        assert not continuous.sink_errors


@FUZZ
@given(name=st.one_of(texts, anything))
def test_host_function_names(guest, name):
    Tried["host names"] += 1
    attempt(lambda: host_calls.func(guest.store, wasmtime.FuncType([], []), lambda: None, name=name))


def _parse(data: bytes) -> None:
    Tried["profiles"] += 1
    started, rss = time.monotonic(), rss_bytes()
    try:
        Profile.from_bytes(data)
    except ProfileFormatError:
        pass
    assert time.monotonic() - started < 5, "parsing took too long"
    assert rss_bytes() - rss < 200 * 1024 * 1024, "parsing took too much memory"


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@FUZZ
@given(value=json_values)
def test_parsing_arbitrary_json(value):
    _parse(json.dumps(value).encode())


@FUZZ
@given(data=st.binary(max_size=512))
def test_parsing_arbitrary_bytes(data):
    _parse(data)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for key, child in node.items():
            out += _paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node[:6]):
            out += _paths(child, (*path, index))
    return out


@FUZZ
@given(data=st.data())
def test_parsing_corrupted_real_profiles(data):
    fixture = data.draw(st.sampled_from(FIXTURES))
    raw = json.loads(fixture.read_bytes())
    paths = [p for p in _paths(raw) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = raw
        try:
            for key in path[:-1]:
                parent = parent[key]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue
    encoded = json.dumps(raw).encode()
    cut = data.draw(st.one_of(st.just(len(encoded)), st.integers(0, len(encoded))))
    _parse(encoded[:cut])


@pytest.mark.parametrize(
    "hostile",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the parser's recursion
        b'{"meta": {"interval": 1, "startTime": 0}, "libs": [], "threads": [{"samples": {"length": 1e300}}]}',
        json.dumps(
            {
                "meta": {"interval": 1, "startTime": 0},
                "libs": [],
                "threads": [
                    {
                        "stringArray": ["x"],
                        "resourceTable": {"lib": [], "name": []},
                        "funcTable": {"name": [0], "resource": [-1]},
                        "frameTable": {"func": [0]},
                        "stackTable": {"prefix": [0], "frame": [0]},  # a stack that is its own prefix
                        "samples": {"stack": [0], "time": [0.0]},
                    }
                ],
            }
        ).encode(),
    ],
)
def test_parsing_hostile_documents(hostile):
    _parse(hostile)


def test_report_how_many_inputs_were_tried():
    print(f"fuzzed inputs tried: {Tried}")
