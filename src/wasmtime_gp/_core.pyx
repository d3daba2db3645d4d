# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cdivision: every division here is of non-negative integers, and the hot path must not check for zero (GIL).
"""Native core of wasmtime-gp: the C API table, the probe, and the sampler behind each profiler.

Nothing here is public. `profiler.py` owns validation and the user-facing state machine; this module owns
the native memory behind it, and never takes the GIL on the path from a tick to a sample. What crosses its
boundary is declared in `_core.pxd`; the ticker thread lives in `_ticker.pyx`. One extension module, one
file per concern, joined by `include` (as uvloop's loop.pyx includes its handles): the hot path calls the
C API table directly, which a second extension module could only reach through a function pointer.
"""

include "_core_capi.pxi"      # the C API table, bound by dlsym, and the one door for its errors
include "_core_probe.pxi"     # wasmtime_guestprofiler_new's arguments, and trying it in a forked child
include "_core_hot_path.pxi"  # the epoch callback: tick -> sample, no GIL
include "_core_sampler.pxi"   # Sampler, the Python-facing class, with the host-call tick arithmetic
