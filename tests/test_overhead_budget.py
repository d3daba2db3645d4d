"""An overhead budget: a deep guest's interval lengthens while its samples cost more than the budget allows,
and shortens again when its stack is shallow; the profile and the report say what it allowed."""

from __future__ import annotations

import time

import pytest
import wasmtime
from conftest import make_engine
from guests import DEEP

from wasmtime_gp import GuestProfiler, Profile, ProfilerTypeError, ProfilerValueError
from wasmtime_gp.report import summary_line

DEPTH = 10_000  # Wasmtime walks it in about 1 ms: at 1 ms and 2 %, a sample every 50 ms or so


def deep_guest() -> tuple[wasmtime.Store, wasmtime.Module, wasmtime.Func]:
    engine = make_engine()
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    module = wasmtime.Module(engine, DEEP)
    run = wasmtime.Instance(store, module, []).exports(store)["run"]
    assert isinstance(run, wasmtime.Func)
    return store, module, run


def spins_per_second(store: wasmtime.Store, run: wasmtime.Func) -> float:
    started = time.thread_time()
    run(store, 1, 20_000_000)
    return 20_000_000 / max(time.thread_time() - started, 1e-3)


def test_a_deep_stack_lengthens_the_interval_and_a_shallow_one_shortens_it_again():
    store, module, run = deep_guest()
    rate = spins_per_second(store, run)
    profiler = GuestProfiler(store, [module], interval=0.001, overhead_budget=0.02)
    with profiler:
        run(store, DEPTH, int(rate * 0.5))
        deep = profiler.rotate()[0]
        cpu_before = time.thread_time()
        run(store, 1, int(rate * 0.6))
        shallow_cpu = time.thread_time() - cpu_before
    shallow = profiler.finish()
    deep_profile, shallow_profile = Profile.from_bytes(deep), Profile.from_bytes(shallow)
    assert deep_profile.effective_interval is not None and shallow_profile.effective_interval is not None
    # The deep stack's samples came far apart; the shallow one's (the stride back at 1 within a few samples)
    # at the interval asked: at least a quarter of the intervals of the CPU time it got.
    assert deep_profile.effective_interval >= 5 * shallow_profile.effective_interval
    assert shallow_profile.sample_count >= shallow_cpu / 0.001 / 4
    assert "lengthened to" in summary_line(deep_profile) and "by the overhead budget" in summary_line(
        deep_profile
    )
    assert max(sample.depth for sample in deep_profile.samples) >= DEPTH


def test_without_a_budget_the_rate_is_the_one_asked():
    store, module, run = deep_guest()
    with GuestProfiler(store, [module], interval=0.01) as profiler:
        run(store, DEPTH, int(spins_per_second(store, run) * 0.2))
    profile = profiler.profile()
    assert profile.effective_interval is None and "lengthened" not in summary_line(profile)


@pytest.mark.parametrize(
    ("budget", "error"),
    [
        (0.0, ProfilerValueError),
        (0.9, ProfilerValueError),
        (float("nan"), ProfilerValueError),
        ("2%", ProfilerTypeError),
    ],
)
def test_a_budget_is_a_share_of_the_guests_time(budget, error):
    store, module, _ = deep_guest()
    with pytest.raises(error, match="overhead_budget"):
        GuestProfiler(store, [module], overhead_budget=budget)
