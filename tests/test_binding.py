"""The C API comes from the libwasmtime that wasmtime-py loaded, for the ABI of its version."""

from __future__ import annotations

import os
import subprocess
import warnings

import pytest

from wasmtime_gp import GuestProfiler, WasmtimeABIError, _abi, _core, _ticker, _wasmtime_py


def _wasmtime_libraries_mapped() -> set[str]:
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if ".so" in line}
    # By file name: the directories (a virtual environment named after wasmtime) hold other libraries too.
    return {path for path in paths if "wasmtime" in os.path.basename(path)}


def test_one_libwasmtime_in_the_process_and_the_extension_does_not_link_one(chain):
    GuestProfiler(chain.store, [chain.module]).finish()
    ours = {_core.__file__, _ticker.__file__}
    (library,) = _wasmtime_libraries_mapped() - ours  # wasmtime-py's libwasmtime, once
    assert library.endswith("_libwasmtime.so")
    for extension in ours:
        needed = subprocess.run(["ldd", extension], capture_output=True, text=True, check=True).stdout
        assert "wasmtime" not in needed


def test_the_abi_follows_the_installed_version():
    major = int(_wasmtime_py.installed_version().split(".")[0])
    assert _abi.WASMTIME_MAJOR == major
    assert _core.can_clone_engine() == (major >= 24)


def test_a_release_without_the_profiler_api_is_refused_at_import(monkeypatch):
    monkeypatch.setattr(_wasmtime_py, "installed_version", lambda: "18.0.2")
    with pytest.raises(WasmtimeABIError, match=r"needs wasmtime >= 19\.0\.0.*18\.0\.2 is installed"):
        _abi.bind()


def test_a_library_that_does_not_match_its_version_is_refused(monkeypatch):
    real_major = _abi.WASMTIME_MAJOR
    claimed = "39.0.0" if real_major >= _abi.ENGINE_FIRST_MAJOR else "40.0.0"
    monkeypatch.setattr(_wasmtime_py, "installed_version", lambda: claimed)
    with pytest.raises(WasmtimeABIError, match=f"does not look like Wasmtime {claimed.split('.')[0]}"):
        _abi.bind()


def test_a_newer_release_than_tested_warns_and_binds_the_newest_abi(monkeypatch):
    real = _wasmtime_py.installed_version()
    if int(real.split(".")[0]) < _abi.ENGINE_FIRST_MAJOR:
        pytest.skip("binding the newest ABI against an older library would be wrong")
    monkeypatch.setattr(_wasmtime_py, "installed_version", lambda: f"{_abi.NEWEST_TESTED_MAJOR + 1}.0.0")
    with pytest.warns(RuntimeWarning, match="newer than any release wasmtime-gp was tested with"):
        _abi.bind()
    monkeypatch.setattr(_wasmtime_py, "installed_version", lambda: real)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _abi.bind() == _abi.WASMTIME_MAJOR
