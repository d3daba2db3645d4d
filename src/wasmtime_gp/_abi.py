"""Choose the C API variant for the installed wasmtime-py and bind it, once, at import."""

from __future__ import annotations

import re
import warnings

from wasmtime_gp import _core, _wasmtime_py
from wasmtime_gp._errors import WasmtimeABIError

FIRST_SUPPORTED_MAJOR = 19  # the guest-profiler C API first ships in 19.0.0
ENGINE_FIRST_MAJOR = 40  # wasmtime_guestprofiler_new takes the engine first from 40.0.0
NEWEST_TESTED_MAJOR = 50
# Before 32, Wasmtime's frame lookup (a partition_point over modules sorted by address) finds no frame
# at all once a profiler lists two or more modules.
MULTI_MODULE_MAJOR = 32
# Exported from 40 on: confirms that the loaded library has the ABI its version number says.
ENGINE_FIRST_MARKER = "wasmtime_config_shared_memory_set"


def _major(version: str) -> int:
    match = re.match(r"(\d+)\.", version)
    if match is None:
        raise WasmtimeABIError(f"cannot read the wasmtime version {version!r}")
    return int(match.group(1))


def bind() -> int:
    """Bind the C API; return the wasmtime major version it was bound for."""
    version = _wasmtime_py.installed_version()
    major = _major(version)
    if major < FIRST_SUPPORTED_MAJOR:
        raise WasmtimeABIError(
            f"wasmtime-gp needs wasmtime >= {FIRST_SUPPORTED_MAJOR}.0.0 (the first release with the "
            f"guest-profiler C API); wasmtime {version} is installed"
        )
    if major > NEWEST_TESTED_MAJOR:
        warnings.warn(
            f"wasmtime {version} is newer than any release wasmtime-gp was tested with "
            f"(up to {NEWEST_TESTED_MAJOR}.x); using the {NEWEST_TESTED_MAJOR}.x C API",
            RuntimeWarning,
            stacklevel=3,
        )
    handle = _wasmtime_py.library_handle()
    engine_first = major >= ENGINE_FIRST_MAJOR
    if _core.has_symbol(handle, ENGINE_FIRST_MARKER) != engine_first:
        raise WasmtimeABIError(
            f"the libwasmtime loaded by wasmtime {version} does not look like Wasmtime {major}: "
            f"it {'lacks' if engine_first else 'exports'} {ENGINE_FIRST_MARKER}, so the signature of "
            "wasmtime_guestprofiler_new cannot be known; reinstall wasmtime"
        )
    missing = _core.bind(handle, engine_first)
    if missing:
        raise WasmtimeABIError(
            f"the libwasmtime loaded by wasmtime {version} lacks {', '.join(missing)}; "
            "was it built without the profiling feature?"
        )
    return major


WASMTIME_MAJOR = bind()
