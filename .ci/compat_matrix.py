"""Run the test suite across wasmtime-py releases and Python versions, each in its own virtual environment.

    python .ci/compat_matrix.py            # the whole matrix (see FULL below)
    python .ci/compat_matrix.py --ci       # the part .ci/run runs (through .ci/wheel, with --wheel)
    python .ci/compat_matrix.py --cell 3.11:19.0.0 --cell 3.13:newest
    python .ci/compat_matrix.py --ci --wheel dist/wasmtime_gp-....whl   # test that wheel instead of building one

Every cell installs one cp39-abi3 wheel (built once from this checkout, or the one given) with --no-index
--only-binary :all: from a folder of runtime dependencies downloaded first, so nothing compiles in a cell; the
suite then runs against the installed package, and the run fails if the tests imported wasmtime_gp from anywhere
but the cell's site-packages. "newest" is the newest wasmtime on the package index, resolved when the matrix
runs, so a new release is tested without editing this file. Pythons are found on PATH as python3.X, else under
pyenv's versions directory. Prints a table and exits non-zero if any cell failed, or if a cell ran no test.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEWEST = "newest"  # resolved when the matrix runs (newest_wasmtime)
NEWEST_TESTED = "50.0.1"  # the newest release the README's table lists as tested (_abi.NEWEST_TESTED_MAJOR)
PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
# The ABI boundaries: 19 is the first release with the API, 39 the last before the engine argument,
# 40 the first with it; NEWEST_TESTED is the newest release verified by hand.
WASMTIME_RELEASES = ["19.0.0", "39.0.0", "40.0.0", NEWEST_TESTED]
FULL = [(py, NEWEST) for py in PYTHONS] + [("3.11", release) for release in WASMTIME_RELEASES]
# .ci/run: the wheel on every Python with the newest wasmtime, the two old ABIs on 3.11, and the newest tested
# release too once it is no longer the newest (cells that resolve to the same versions run once).
CI = [(py, NEWEST) for py in PYTHONS] + [("3.11", "19.0.0"), ("3.11", "39.0.0"), ("3.11", NEWEST_TESTED)]
# Runs pytest in this process, then checks where the modules the tests used came from.
# Two xdist workers (the timing tests take their bounds from what they measure, so they hold there); the slow
# tests that do not depend on the versions ran once already, in the README's command.
PYTEST_ARGS = ["-q", "-n", "2", "-p", "no:cacheprovider", "-m", "not slow"]
RUNNER = """
import importlib, os, sys, sysconfig, pytest
status = pytest.main(sys.argv[1:])
site = os.path.realpath(sysconfig.get_paths()["platlib"])
for name in ("wasmtime_gp", "wasmtime_gp._core", "wasmtime_gp._ticker"):
    importlib.import_module(name)  # as the xdist workers, on the same path, imported it
    where = os.path.realpath(getattr(sys.modules.get(name), "__file__", None) or "(not imported)")
    if not where.startswith(site + os.sep):
        print(f"INSTALLED-CHECK: the tests used {name} from {where}, not the installed wheel in {site}")
        sys.exit(3)
print(f"INSTALLED-CHECK: the tests used {sys.modules['wasmtime_gp._core'].__file__}")
sys.exit(status)
"""


def find_python(version: str) -> str:
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "--version"], capture_output=True, check=False).returncode == 0:
        return found
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    if not candidates:
        raise SystemExit(f"no python{version} found on PATH or under {pyenv_root}/versions")
    return candidates[-1]


_wheel: list[Path] = []
_newest: list[str] = []


def _pip(python: str, *args: str) -> None:
    subprocess.run([python, "-m", "pip", *args], check=True)


def built_wheel(python: str, workdir: Path) -> Path:
    """Build wasmtime-gp's wheel from this checkout once: being cp39-abi3, it serves every cell."""
    if not _wheel:
        out = workdir / "wheel"
        shutil.rmtree(out, ignore_errors=True)
        _pip(python, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), "-C",
             f"build-dir={workdir / 'build'}", str(ROOT))  # fmt: skip
        _wheel.extend(out.glob("wasmtime_gp-*.whl"))
    return _wheel[0]


def newest_wasmtime(python: str, workdir: Path) -> str:
    """The newest wasmtime release on the package index, asked once per matrix run."""
    if not _newest:
        out = workdir / "newest"
        shutil.rmtree(out, ignore_errors=True)
        _pip(python, "download", "--quiet", "--no-deps", "--only-binary", ":all:", "--dest", str(out),
             "wasmtime")  # fmt: skip
        (found,) = out.glob("wasmtime-*.whl")
        match = re.match(r"wasmtime-([^-]+)-", found.name)
        assert match, found.name
        _newest.append(match.group(1))
    return _newest[0]


def run_cell(
    python_version: str, wasmtime_version: str, workdir: Path, wheel: Path | None
) -> tuple[str, str]:
    """Return (result, detail) for one cell: result is "pass" or "FAIL"."""
    venv = workdir / f"py{python_version}-wasmtime{wasmtime_version}"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([find_python(python_version), "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    try:
        wheel = wheel or built_wheel(python, workdir)
    except subprocess.CalledProcessError as exc:
        return "FAIL", f"building the wheel failed: {exc}"
    # The runtime and test dependencies, as binaries only; then the install cannot reach the index or compile.
    deps = workdir / "deps" / python_version
    wanted = [f"{wheel}[test]", f"wasmtime=={wasmtime_version}"]
    for step in (
        ["download", "--quiet", "--only-binary", ":all:", "--dest", str(deps)],
        ["install", "--quiet", "--no-index", "--only-binary", ":all:", "--find-links", str(deps)],
    ):
        install = subprocess.run(
            [python, "-m", "pip", *step, *wanted], capture_output=True, text=True, check=False
        )
        if install.returncode != 0:
            return "FAIL", f"pip {step[0]} failed:\n" + install.stdout[-3000:] + install.stderr[-3000:]
    # From the tests directory: the checkout's src/ is not importable (RUNNER checks what the tests used).
    tests = subprocess.run(
        [python, "-c", RUNNER, *PYTEST_ARGS, str(ROOT / "tests")],
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        check=False,
    )
    lines = tests.stdout.strip().splitlines()
    checked = [line for line in lines if line.startswith("INSTALLED-CHECK:")]
    summary = next(
        (line for line in reversed(lines) if not line.startswith("INSTALLED-CHECK:")), "(no output)"
    )
    if tests.returncode != 0:
        return (
            "FAIL",
            f"pytest exit {tests.returncode}: {summary}\n{tests.stdout[-4000:]}{tests.stderr[-2000:]}",
        )
    return "pass", f"{summary}\n{checked[0] if checked else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ci", action="store_true", help="only the cells that .ci/run runs")
    parser.add_argument(
        "--cell", action="append", default=[], metavar="PY:WASMTIME", help="one cell; repeatable"
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "compat")
    parser.add_argument("--wheel", type=Path, help="install this wheel in every cell instead of building one")
    args = parser.parse_args(argv)

    asked = [tuple(cell.split(":", 1)) for cell in args.cell] or (CI if args.ci else FULL)
    args.workdir.mkdir(parents=True, exist_ok=True)
    wheel = args.wheel.resolve() if args.wheel else None
    if any(wasmtime_version == NEWEST for _, wasmtime_version in asked):
        print(
            f"newest wasmtime on the package index: {newest_wasmtime(sys.executable, args.workdir)}",
            flush=True,
        )
    cells: list[tuple[str, str]] = []
    for python_version, wasmtime_version in asked:
        if wasmtime_version == NEWEST:
            wasmtime_version = newest_wasmtime(sys.executable, args.workdir)
        if (python_version, wasmtime_version) not in cells:
            cells.append((python_version, wasmtime_version))
    rows = []
    for python_version, wasmtime_version in cells:
        started = time.monotonic()
        result, detail = run_cell(python_version, wasmtime_version, args.workdir, wheel)
        rows.append((python_version, wasmtime_version, result, time.monotonic() - started, detail))
        print(
            f"Python {python_version} + wasmtime {wasmtime_version}: {result} ({detail.splitlines()[0]})",
            flush=True,
        )
        if result != "pass":
            print(detail, flush=True)

    print("\n| Python | wasmtime | result | time | tests |")
    print("|---|---|---|---|---|")
    for python_version, wasmtime_version, result, seconds, detail in rows:
        label = (
            f"{wasmtime_version} (newest)" if _newest and wasmtime_version == _newest[0] else wasmtime_version
        )
        print(f"| {python_version} | {label} | {result} | {seconds:.0f} s | {detail.splitlines()[0]} |")
    failed = sum(row[2] != "pass" for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
