"""Continuous profiling: rotation without losing or doubling samples, labels, sinks, flat memory."""

from __future__ import annotations

import gzip
import threading
import time

import pytest
from conftest import rss_bytes

from wasmtime_gp import ContinuousProfiler, Profile, ProfilerValueError
from wasmtime_gp.exports import to_pprof


def test_rotation_by_period_loses_and_doubles_no_sample(chain, spins_for):
    delivered = []
    continuous = ContinuousProfiler(
        chain.store, [chain.module], sink=delivered.append, interval=0.0005, period=0.1,
        labels={"tenant": "acme", "request": "42"},
    )  # fmt: skip
    with continuous:
        chain.call("run", spins_for(1.0))
    total = continuous.profiler.sample_count
    assert len(delivered) >= 5
    assert [r.sequence for r in delivered] == list(range(len(delivered)))
    # Every sample in exactly one profile: the per-slice counts add up, and match what each file holds.
    assert sum(r.sample_count for r in delivered) == total
    for rotated in delivered:
        profile = rotated.profile()
        assert profile.sample_count == rotated.sample_count
        assert profile.labels == {"tenant": "acme", "request": "42"}
        assert rotated.started < rotated.ended
    assert all(earlier.ended <= later.started for earlier, later in zip(delivered, delivered[1:]))


def test_rotation_by_sample_count(chain, spins_for):
    delivered = []
    with ContinuousProfiler(chain.store, [chain.module], sink=delivered.append, interval=0.0005,
                            period=None, max_samples=200) as continuous:  # fmt: skip
        chain.call("run", spins_for(0.8))
    full = [r.sample_count for r in delivered[:-1]]
    assert full and all(200 <= count <= 200 * 1.25 + 20 for count in full), full
    assert sum(r.sample_count for r in delivered) == continuous.profiler.sample_count


def test_directory_sink_keeps_the_newest(chain, spins_for, tmp_path):
    with ContinuousProfiler(chain.store, [("svc", chain.module)], sink=tmp_path, keep=3, interval=0.0005,
                            period=0.05, labels={"zone": "eu"}) as continuous:  # fmt: skip
        chain.call("run", spins_for(0.6))
    files = sorted(tmp_path.iterdir())
    assert continuous.rotations > 3 and len(files) == 3
    assert all(f.name.startswith("svc-") and f.suffix == ".json" for f in files)
    assert [int(f.stem.rsplit("-", 1)[1]) for f in files] == list(
        range(continuous.rotations - 3, continuous.rotations)
    )
    assert Profile.load(files[-1]).labels == {"zone": "eu"}


def test_labels_reach_pprof(chain, spins_for):
    delivered = []
    with ContinuousProfiler(chain.store, [chain.module], sink=delivered.append, period=10,
                            labels={"tenant": "acme"}):  # fmt: skip
        chain.call("run", spins_for(0.1))
    raw = gzip.decompress(to_pprof(delivered[-1].profile()))
    assert b"tenant" in raw and b"acme" in raw


def test_a_failing_sink_does_not_stop_profiling(chain, spins_for):
    calls = []

    def sink(rotated):
        calls.append(rotated)
        raise OSError("disk full")

    continuous = ContinuousProfiler(chain.store, [chain.module], sink=sink, period=0.05)
    with pytest.warns(RuntimeWarning, match="sink failed"), continuous:
        chain.call("run", spins_for(0.3))
    assert len(calls) > 2 and len(continuous.sink_errors) == len(calls)


def test_bad_arguments(chain, tmp_path):
    with pytest.raises(ProfilerValueError, match="nothing would rotate"):
        ContinuousProfiler(chain.store, [chain.module], sink=print, period=None)
    with pytest.raises(ProfilerValueError, match="not a directory"):
        ContinuousProfiler(chain.store, [chain.module], sink=tmp_path / "missing")
    with pytest.raises(ProfilerValueError, match="keep applies to a directory"):
        ContinuousProfiler(chain.store, [chain.module], sink=print, keep=2)


@pytest.mark.slow
@pytest.mark.rss
def test_memory_stays_flat_over_many_rotations(chain, spins_for):
    counts = []
    continuous = ContinuousProfiler(chain.store, [chain.module], sink=lambda r: counts.append(r.sample_count),
                                    interval=0.0002, period=0.02)  # fmt: skip
    with continuous:
        chain.call("run", spins_for(1.0))  # warm-up
        before = rss_bytes()
        rotations_before = continuous.rotations
        chain.call("run", spins_for(6.0))
        after = rss_bytes()
        rotations = continuous.rotations - rotations_before
    print(f"RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB over {rotations} rotations, "
          f"{sum(counts)} samples")  # fmt: skip
    assert rotations > 100
    assert after - before < 4 * 2**20


def test_every_profiler_keyword_goes_through(chain):
    # debug_info and timeout reach the GuestProfiler underneath (they were dropped once).
    with pytest.raises(ProfilerValueError, match="debug_info names module 'elsewhere'"):
        ContinuousProfiler(chain.store, [chain.module], sink=print, debug_info={"elsewhere": b"\0asm"})
    continuous = ContinuousProfiler(chain.store, [chain.module], sink=print, timeout=1e-3, interval=0.0005)
    with pytest.raises(Exception, match="timed out"), continuous:
        chain.call("run", 10**12)
    assert continuous.profiler.timed_out


def test_rotate_waits_for_a_blocked_sink_only_so_long(chain, monkeypatch):
    # A sink that blocks (an HTTP push that never returns) must not hang a rotate() called meanwhile.
    from wasmtime_gp import ProfilerStateError, continuous

    monkeypatch.setattr(continuous, "DELIVERY_TIMEOUT", 0.3)
    inside, release = threading.Event(), threading.Event()

    def stuck(rotated):
        inside.set()
        release.wait(30)

    profiler = ContinuousProfiler(chain.store, [chain.module], sink=stuck, period=0.01)
    profiler.start()
    try:
        assert inside.wait(30)
        started = time.monotonic()
        with pytest.raises(ProfilerStateError, match="sink has held the previous slice"):
            profiler.rotate()
        assert time.monotonic() - started < 10  # bounded by the 0.3 s asked, far from a hang
    finally:
        release.set()
        assert profiler.close()
