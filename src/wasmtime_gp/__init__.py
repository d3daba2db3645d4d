"""wasmtime-gp: GIL-free, high-frequency guest profiling for wasmtime-py."""

from wasmtime_gp import host_calls  # a documented module: `wasmtime_gp.host_calls` after `import wasmtime_gp`
from wasmtime_gp._errors import (
    ClosedObjectError,
    EngineConfigError,
    GuestProfilerError,
    ModuleEngineError,
    ProfileFormatError,
    ProfilerStateError,
    ProfilerTypeError,
    ProfilerValueError,
    WasmtimeABIError,
)
from wasmtime_gp.continuous import ContinuousProfiler, RotatedProfile
from wasmtime_gp.diff import FunctionChange, ProfileDiff
from wasmtime_gp.profile import CallNode, Frame, FunctionStats, LineStats, Profile, Sample
from wasmtime_gp.profiler import GuestProfiler

__all__ = [
    "CallNode",
    "ClosedObjectError",
    "ContinuousProfiler",
    "EngineConfigError",
    "Frame",
    "FunctionChange",
    "FunctionStats",
    "GuestProfiler",
    "GuestProfilerError",
    "LineStats",
    "ModuleEngineError",
    "Profile",
    "ProfileDiff",
    "ProfileFormatError",
    "ProfilerStateError",
    "ProfilerTypeError",
    "ProfilerValueError",
    "RotatedProfile",
    "Sample",
    "WasmtimeABIError",
    "host_calls",
]
