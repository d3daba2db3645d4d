"""wasmtime-gp: GIL-free, high-frequency guest profiling for wasmtime-py."""

from wasmtime_gp._errors import (
    ClosedObjectError,
    EngineConfigError,
    GuestProfilerError,
    ModuleEngineError,
    ProfilerStateError,
    ProfilerTypeError,
    ProfilerValueError,
    WasmtimeABIError,
)
from wasmtime_gp.profiler import GuestProfiler

__all__ = [
    "ClosedObjectError",
    "EngineConfigError",
    "GuestProfiler",
    "GuestProfilerError",
    "ModuleEngineError",
    "ProfilerStateError",
    "ProfilerTypeError",
    "ProfilerValueError",
    "WasmtimeABIError",
]
