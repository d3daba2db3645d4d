"""Merging profiles from several stores and threads into one Firefox profile."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import instantiate, make_engine
from guests import CHAIN
from test_cli import wasmtime_gp
from test_outside_wasm import WaitingGuest, spins_taking

from wasmtime_gp import GuestProfiler, Profile, ProfileFormatError
from wasmtime_gp.merge import merge_profiles
from wasmtime_gp.profile import OFF_CPU, OUTSIDE_WASM


def _profiles_from_threads(count, spins):
    engine = make_engine()
    guests = [instantiate(CHAIN, engine) for _ in range(count)]
    profilers = [
        GuestProfiler(g.store, [(f"store{i}", g.module)], interval=0.0005) for i, g in enumerate(guests)
    ]
    for profiler in profilers:
        profiler.start()
    threads = [threading.Thread(target=g.call, args=("run", spins)) for g in guests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [profiler.finish() for profiler in profilers]


def test_merge_keeps_every_sample_on_a_common_timeline(spins_for):
    inputs = _profiles_from_threads(3, spins_for(0.2))
    merged = merge_profiles(inputs, names=["checkout", "search", "checkout"])
    document = json.loads(merged)
    assert [t["name"] for t in document["threads"]] == ["checkout", "search", "checkout #2"]
    assert len({t["tid"] for t in document["threads"]}) == 3
    profile = Profile.from_bytes(merged)
    singles = [Profile.from_bytes(data) for data in inputs]
    assert profile.sample_count == sum(p.sample_count for p in singles)
    assert {s.thread for s in profile.samples} == {"checkout", "search", "checkout #2"}
    assert {f.module for s in profile.samples for f in s.stack if f.is_wasm} == {"store0", "store1", "store2"}
    # Each sample keeps its wall-clock time: absolute times match the inputs.
    for single, name in zip(singles, ["checkout", "search", "checkout #2"]):
        merged_times = [profile.start_time + s.time for s in profile.samples if s.thread == name]
        assert merged_times == pytest.approx([single.start_time + s.time for s in single.samples], abs=1e-6)


def test_merge_keeps_each_profiles_categories_and_marker_schemas(spins_for):
    # A profile with time outside wasm numbers a category and a marker schema of its own after Wasmtime's; a
    # merge with a plain one first must still name them for its frames and markers.
    plain = _profiles_from_threads(1, spins_for(0.02))
    waiting, _ = WaitingGuest(0.003, sleeps=True).run(calls=10, spins=spins_taking(0.001))
    merged = json.loads(merge_profiles([*plain, waiting.finish()]))
    categories = [category["name"] for category in merged["meta"]["categories"]]
    assert len(categories) == len(set(categories))
    thread = merged["threads"][1]
    strings = thread["stringArray"] if "stringArray" in thread else merged["shared"]["stringArray"]
    funcs = thread["funcTable"]["name"]
    frames = thread["frameTable"]
    named = {
        strings[funcs[func]]: categories[category]
        for func, category in zip(frames["func"], frames["category"])
    }
    assert named[OUTSIDE_WASM] == named[OFF_CPU] == "Outside wasm"
    assert {categories[c] for c in thread["markers"]["category"]} == {"Outside wasm"}
    assert "OutsideWasm" in {schema["name"] for schema in merged["meta"]["markerSchema"]}


def test_merge_command(tmp_path, spins_for):
    paths = []
    for index, data in enumerate(_profiles_from_threads(2, spins_for(0.05))):
        paths.append(tmp_path / f"p{index}.json")
        paths[-1].write_bytes(data)
    out = tmp_path / "merged.json"
    result = wasmtime_gp("merge", *map(str, paths), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert len(json.loads(out.read_bytes())["threads"]) == 2
    assert "inner" in wasmtime_gp("report", str(out)).stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = wasmtime_gp("merge", str(paths[0]), str(bad), "-o", str(out))
    assert result.returncode == 2 and "not a Wasmtime guest profile" in result.stderr


def test_merge_refuses_mixed_formats_and_nonsense():
    from pathlib import Path

    data = Path(__file__).parent / "data"
    with pytest.raises(ProfileFormatError, match="format versions"):
        merge_profiles([(data / "chain-wasmtime19.0.0.json").read_bytes(),
                        (data / "chain-wasmtime50.0.1.json").read_bytes()])  # fmt: skip
    with pytest.raises(ProfileFormatError, match="nothing to merge"):
        merge_profiles([])
    with pytest.raises(ProfileFormatError, match="not a single-thread"):
        merge_profiles([b"[]"])
