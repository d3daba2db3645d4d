"""Profile: reading what every Wasmtime release writes, summaries, and bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from wasmtime_gp import Frame, GuestProfiler, Profile, ProfileFormatError, Sample

DATA = Path(__file__).parent / "data"
# One real profile per format: fxprof-processed-profile 0.6 (Wasmtime 19-38) and 0.8 (39 and later).
FIXTURES = sorted(DATA.glob("chain-wasmtime*.json"))
INNER, MIDDLE, OUTER = (Frame(name, "chain") for name in ("inner", "middle", "outer"))


def test_fixtures_cover_both_formats():
    versions = {json.loads(path.read_bytes())["meta"]["preprocessedProfileVersion"] for path in FIXTURES}
    assert versions == {46, 55}


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_every_format_reads_the_same(path):
    profile = Profile.load(path)
    assert profile.name == "chain"
    assert profile.interval == pytest.approx(0.001)
    assert profile.sample_count > 30
    assert profile.duration >= profile.samples[-1].time > profile.samples[0].time >= 0
    assert all(later.time >= earlier.time for earlier, later in zip(profile.samples, profile.samples[1:]))
    assert profile.stack_counts().most_common(1)[0][0] == (OUTER, MIDDLE, INNER)
    assert 0.5 * profile.duration < profile.cpu_time <= profile.duration * 1.05
    top = profile.top(3)
    assert top[0].frame == INNER and top[0].self_percent > 80
    assert [row.frame for row in profile.top(3, by="total")][:1] == [OUTER]


def test_call_tree_nests_and_counts(chain, spins_for):
    with GuestProfiler(chain.store, [chain.module], interval=0.0005) as profiler:
        chain.call("run", spins_for(0.1))
    tree = profiler.profile().call_tree()
    assert tree.frame is None and tree.total == profiler.sample_count
    (outer,) = tree.sorted_children()
    assert outer.frame == OUTER and outer.total == tree.total
    (middle,) = outer.sorted_children()
    inner = middle.children[INNER]
    # Only wasm, bar `[outside wasm]` stretches a loaded machine gives a pure-wasm guest, under `inner` too
    # (test_outside_wasm bounds their share; with the whole suite beside a busy loop per core, up to a
    # quarter of this short run: docs/performance.md "Time outside wasm").
    outside = sum(child.total for child in inner.children.values() if child.frame and child.frame.is_outside)
    markers = json.loads(profiler.profile_json())["threads"][0]["markers"]["data"]
    counts = (inner.self, outside, inner.total, tree.total, [m for m in markers if isinstance(m, dict)])
    assert inner.self + outside == inner.total > 0.8 * tree.total, counts
    assert sum(node.total for node in outer.children.values()) + outer.self == outer.total


def test_profile_from_a_profiler_before_and_after_finish(chain, spins_for):
    profiler = GuestProfiler(chain.store, [chain.module], interval=0.001)
    with profiler:
        chain.call("run", spins_for(0.05))
    first = profiler.profile()  # finishes
    assert profiler.finished and first.sample_count == profiler.sample_count
    assert profiler.profile().sample_count == first.sample_count


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is not JSON"),
        (b"{not json", "is not JSON"),
        (b"\xff\xfe", "is not JSON"),
        (b"[1, 2, 3]", "not a Wasmtime guest profile"),
        (b'{"meta": {}}', "not a Wasmtime guest profile"),
        (b'{"meta": {"interval": 1}, "threads": []}', "expected threads"),
        (b"[" * 100_000, "is not JSON"),
    ],
)
def test_bad_data_raises_a_clear_error(data, message):
    with pytest.raises(ProfileFormatError, match=message):
        Profile.from_bytes(data)


def test_truncated_profile_is_refused():
    data = FIXTURES[-1].read_bytes()
    raw = json.loads(data)
    raw["threads"][0]["samples"]["stack"] = raw["threads"][0]["samples"]["stack"][:-5]
    with pytest.raises(ProfileFormatError, match="truncated"):
        Profile.from_bytes(json.dumps(raw).encode())
    with pytest.raises(ProfileFormatError):
        Profile.from_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (
            "prefix",
            5,
            "has the prefix 5",
        ),  # a prefix after its stack: a cycle, or a stack that does not exist yet
        ("prefix", 1.0, "has the prefix 1.0"),
        ("stack", 1.5, "not in the stack table"),
        ("stack", -1, "not in the stack table"),
    ],
)
def test_a_stack_table_out_of_order_or_out_of_range_is_refused(column, value, message):
    raw = json.loads(FIXTURES[-1].read_bytes())
    thread = raw["threads"][0]
    table = thread["stackTable"] if column == "prefix" else thread["samples"]
    table[column][1 if column == "prefix" else 0] = value
    with pytest.raises(ProfileFormatError, match=message):
        Profile.from_bytes(json.dumps(raw).encode())


def test_samples_share_their_stack_table_and_build_stacks_on_demand():
    profile = Profile.load(FIXTURES[-1])
    hot = [sample for sample in profile.samples if sample.depth == 3]
    assert len({id(sample.table) for sample in profile.samples}) == 1
    assert hot[0].stack == (OUTER, MIDDLE, INNER) and hot[0].leaf == INNER
    assert hot[0].stack is not hot[0].stack  # built at each access: nothing kept per sample
    with pytest.raises(AttributeError):
        hot[0].time = 0.0  # type: ignore[misc]
    # Samples made by hand (as from several profiles) work like read ones: equal stacks are equal samples.
    made = Sample((OUTER, MIDDLE, INNER), hot[0].time, hot[0].cpu_delta)
    assert (
        made == hot[0] and hash(made) == hash(hot[0]) and made != Sample((OUTER,), made.time, made.cpu_delta)
    )
    assert pickle.loads(pickle.dumps(made)) == made
    assert "3 frames, innermost inner [chain]" in repr(made)
    empty = Sample((), 0.0, 0.0)
    assert empty.stack == () and empty.leaf is None and empty.depth == 0
    mixed = Profile("mixed", 0.001, 0.0, 1.0, [made, empty, *profile.samples])
    assert mixed.top(1)[0].self_samples == len(hot) + 1
    assert mixed.call_tree().total == len(profile.samples) + 2 and mixed.call_tree().self == 1
    assert mixed.stack_counts()[(OUTER, MIDDLE, INNER)] == len(hot) + 1 and mixed.stack_counts()[()] == 1


def test_recursion_counts_once_per_sample_and_ties_go_to_callers():
    a, b, c = (Frame(name, "m") for name in "abc")
    samples = [Sample((a, b, a, b, c), 0.0, 0.0), Sample((a, b, a), 0.1, 0.0), Sample((c,), 0.2, 0.0)]
    profile = Profile("recursive", 0.1, 0.0, 0.3, samples)
    rows = {row.frame.function: (row.self_samples, row.total_samples) for row in profile.top(3, by="total")}
    assert rows == {"a": (1, 2), "b": (0, 2), "c": (2, 2)}
    assert [row.frame.function for row in profile.top(3, by="total")] == [
        "a",
        "c",
        "b",
    ]  # a and c: shallowest
    guest = profile.filter_host("exclude")
    assert [s.stack for s in guest.samples] == [s.stack for s in samples]
