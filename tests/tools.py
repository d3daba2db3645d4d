"""Real programs the tests need, installed by .ci/run: speedscope and the Firefox Profiler's profiler-cli
(npm), Chromium, Go, and C programs compiled to wasm32-wasi.

Locally a missing tool skips its test; with WASMTIME_GP_REQUIRE_TOOLS=1 (as .ci/run sets) it fails instead,
so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_TOOLS = Path(os.environ.get("WASMTIME_GP_TEST_TOOLS", ROOT / "build" / "test-tools")) / "node_modules"


def _missing(what: str) -> None:
    message = f"{what} is not installed (.ci/run installs it)"
    if os.environ.get("WASMTIME_GP_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def node_package(name: str) -> Path:
    path = NODE_TOOLS / name
    if not path.is_dir() or shutil.which("node") is None:
        _missing(f"the npm package {name}")
    return path


def node_command(package: str, command: str) -> Path:
    """The executable `command` that the npm package `package` installs (node_modules/.bin)."""
    node_package(package)
    path = NODE_TOOLS / ".bin" / command
    if not path.is_file():
        _missing(f"the command {command} of the npm package {package}")
    return path


def wasm_program(name: str) -> Path:
    """A real program compiled to wasm32-wasi by benchmarks/programs/build.sh (.ci/run builds them)."""
    directory = Path(os.environ.get("WASMTIME_GP_PROGRAMS", ROOT / "benchmarks" / "build" / "programs"))
    path = directory / f"{name}.wasm"
    if not path.is_file():
        _missing(f"{path} (benchmarks/programs/build.sh builds it)")
    return path


def program(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    _missing(" or ".join(names))
    raise AssertionError("unreachable")


def wasmtime_py_tests() -> Path:
    """wasmtime-py's own test suite: a directory with the wasmtime sdist's tests/ and its VERSION, fetched by
    tests/peer/fetch_tests.py (.ci/run fetches it)."""
    directory = Path(os.environ.get("WASMTIME_GP_PEER_TESTS", ROOT / "build" / "wasmtime-py-tests"))
    if not (directory / "tests").is_dir() or not (directory / "VERSION").is_file():
        _missing(f"wasmtime-py's test suite in {directory} (`python tests/peer/fetch_tests.py {directory}`)")
    return directory
