"""Modules that are not the ones running: components (which nothing can profile) and frameless profiles."""

from __future__ import annotations

import time
import warnings

import pytest
import wasmtime
from guests import CHAIN

from wasmtime_gp import ContinuousProfiler, GuestProfiler, ProfilerTypeError
from wasmtime_gp.profiler import FRAMELESS_MIN_SAMPLES


def test_a_component_is_refused_with_the_reason(chain) -> None:
    component_module = pytest.importorskip("wasmtime.component", reason="this wasmtime-py has no components")
    component = component_module.Component(chain.engine, "(component)")
    for modules in ([component], component, [("app", component)], {"app": component}):
        with pytest.raises(ProfilerTypeError, match="no guest-profiler entry point for components"):
            GuestProfiler(chain.store, modules)


def _profile_with_warnings(guest, modules) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        profiler = GuestProfiler(guest.store, modules, interval=0.0005)
        deadline = time.monotonic() + 30  # a loaded machine may give one call few ticks: call until 20
        with profiler:
            guest.call("run", 30_000_000)
            while profiler.sample_count < FRAMELESS_MIN_SAMPLES and time.monotonic() < deadline:
                guest.call("run", 30_000_000)
        profiler.finish()
    return profiler.sample_count, [str(w.message) for w in caught if "have no frame" in str(w.message)]


def test_the_same_source_compiled_again_warns_that_samples_have_no_frame(chain) -> None:
    again = wasmtime.Module(chain.engine, CHAIN)  # another module, though the same source
    samples, said = _profile_with_warnings(chain, [again])
    assert samples >= FRAMELESS_MIN_SAMPLES, samples
    assert len(said) == 1 and f"of {samples} samples have no frame" in said[0], said
    assert "Pass the very Module objects that were instantiated" in said[0]


def test_the_running_module_does_not_warn(chain) -> None:
    samples, said = _profile_with_warnings(chain, [chain.module])
    assert samples >= FRAMELESS_MIN_SAMPLES and said == []


def test_a_continuous_profiler_warns_once_for_all_its_slices(chain, spins_for) -> None:
    again = wasmtime.Module(chain.engine, CHAIN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slices = []
        with ContinuousProfiler(chain.store, [again], sink=slices.append, interval=0.0005, period=0.2) as c:
            deadline = time.monotonic() + 30
            while (c.rotations < 2 or c.profiler.sample_count < 5 * FRAMELESS_MIN_SAMPLES) and (
                time.monotonic() < deadline
            ):
                chain.call("run", spins_for(0.1))
    said = [w for w in caught if "have no frame" in str(w.message)]
    assert len(slices) >= 2 and len(said) == 1, (len(slices), [str(w.message) for w in caught])
