"""The short version of tests/stress.py: 8 guest threads at 10 kHz with random lifecycle actions."""

from __future__ import annotations

import pytest
import stress


# 8 guest threads on a small machine: the ticker cannot always get a CPU, and says so.
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:wasmtime-gp. the ticker managed")
def test_eight_threads_with_random_stops_starts_rotations_finishes_and_drops():
    stats = stress.run(seconds=5, threads=8, seed=1)
    print(stats)
    assert stats["chaos actions"] > 100 and stats["profilers"] > 8 and stats["samples"] > 0
