"""Run the test suite across wasmtime-py releases and Python versions, each in its own virtual environment.

    python .ci/compat_matrix.py            # the whole matrix (see FULL below)
    python .ci/compat_matrix.py --ci       # the part .ci/run runs
    python .ci/compat_matrix.py --cell 3.11:19.0.0 --cell 3.13:50.0.1

Pythons are found on PATH as python3.X, else under pyenv's versions directory. Prints a table and exits
non-zero if any cell failed, or if a cell ran no test.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEWEST = "50.0.1"
PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
# The ABI boundaries: 19 is the first release with the API, 39 the last before the engine argument,
# 40 the first with it; NEWEST is the newest release.
WASMTIME_RELEASES = ["19.0.0", "39.0.0", "40.0.0", NEWEST]
FULL = [(py, NEWEST) for py in PYTHONS] + [
    ("3.11", release) for release in WASMTIME_RELEASES if release != NEWEST
]
# .ci/run already runs the suite on this machine's Python 3.11 with the newest wasmtime.
CI = [(py, NEWEST) for py in PYTHONS if py != "3.11"] + [("3.11", "19.0.0"), ("3.11", "39.0.0")]


def find_python(version: str) -> str:
    found = shutil.which(f"python{version}")
    if found and subprocess.run([found, "--version"], capture_output=True, check=False).returncode == 0:
        return found
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    if not candidates:
        raise SystemExit(f"no python{version} found on PATH or under {pyenv_root}/versions")
    return candidates[-1]


_wheels: dict[str, Path] = {}


def wheel_for(python: str, python_version: str, workdir: Path) -> Path:
    """Build wasmtime-gp once per Python version; the cells of that Python install the same wheel."""
    if python_version not in _wheels:
        out = workdir / "wheels" / python_version
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(
            [python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
            check=True,
        )
        (_wheels[python_version],) = out.glob("wasmtime_gp-*.whl")
    return _wheels[python_version]


def run_cell(python_version: str, wasmtime_version: str, workdir: Path) -> tuple[str, str]:
    """Return (result, detail) for one cell: result is "pass" or "FAIL"."""
    venv = workdir / f"py{python_version}-wasmtime{wasmtime_version}"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([find_python(python_version), "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    try:
        wheel = wheel_for(python, python_version, workdir)
    except subprocess.CalledProcessError as exc:
        return "FAIL", f"building the wheel failed: {exc}"
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", f"{wheel}[test]", f"wasmtime=={wasmtime_version}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        return "FAIL", "install failed:\n" + install.stdout[-3000:] + install.stderr[-3000:]
    # Run from the tests directory so the installed package, not the source tree, is imported.
    tests = subprocess.run(
        # The slow tests that do not depend on the versions ran once already, in the README's command.
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", str(ROOT / "tests")],
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        check=False,
    )
    summary = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else "(no output)"
    if tests.returncode != 0:
        return (
            "FAIL",
            f"pytest exit {tests.returncode}: {summary}\n{tests.stdout[-4000:]}{tests.stderr[-2000:]}",
        )
    return "pass", summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ci", action="store_true", help="only the cells that .ci/run runs")
    parser.add_argument(
        "--cell", action="append", default=[], metavar="PY:WASMTIME", help="one cell; repeatable"
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "compat")
    args = parser.parse_args(argv)

    cells = [tuple(cell.split(":", 1)) for cell in args.cell] or (CI if args.ci else FULL)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for python_version, wasmtime_version in cells:
        started = time.monotonic()
        result, detail = run_cell(python_version, wasmtime_version, args.workdir)
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
        print(
            f"| {python_version} | {wasmtime_version} | {result} | {seconds:.0f} s | {detail.splitlines()[0]} |"
        )
    failed = sum(row[2] != "pass" for row in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
