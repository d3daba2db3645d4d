# cython: language_level=3
"""Test-only hooks into the native core, kept out of the production extensions (as memray's _test_utils)."""

from wasmtime_gp._core cimport Sampler
from wasmtime_gp._native.posix cimport pthread_mutex_lock, pthread_mutex_unlock
from wasmtime_gp._ticker cimport ticker_clock_count as clock_count, ticker_thread_running


def callback_count(Sampler sampler) -> int:
    """Every call of the sampler's epoch callback so far, sampling or not (GIL held, takes its lock)."""
    pthread_mutex_lock(&sampler.state.lock)
    count = sampler.state.callbacks
    pthread_mutex_unlock(&sampler.state.lock)
    return count


def ticker_thread_is_running() -> bool:
    """Whether the ticker thread exists right now: none while nothing is profiled."""
    return ticker_thread_running()


def ticker_clock_count() -> int:
    """How many engines the ticker is ticking right now."""
    return clock_count()
