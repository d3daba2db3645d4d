"""The pytest regression gate's false alarms and detections, on tests/gate_suite.py:

    python benchmarks/gate.py --runs 20 --slow-runs 10 [--hog] [--minigzip PATH]

Stores a baseline of `--baseline-runs` runs with `--wasm-profile-baseline`, runs the unchanged suite `--runs`
times against it (every failed test is a false alarm), then `--slow-runs` times with one function 20 % slower
(GATE_SLOWDOWN=0.2: a pass is a miss). `--hog` keeps a busy loop on every core throughout. Each run's profiles are kept
(`--wasm-profile`), and for every test the largest growth of a function beyond the baseline runs, significant
or not, by self and by total, is printed: how close the unchanged runs came to the threshold.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

from pytest_wasmtime_gp import BASELINE_RUNS
from wasmtime_gp import Profile
from wasmtime_gp.diff import against_bases

Growth = tuple[float, str]  # percent, and the function's name
SUITE = Path(__file__).resolve().parent.parent / "tests" / "gate_suite.py"


def run_suite(directory: Path, run: str, env: dict[str, str], extra: list[str]) -> tuple[int, str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
               "--wasm-profile-baseline=baseline", f"--wasm-profile=runs/{run}", *extra]  # fmt: skip
    done = subprocess.run(
        command, check=False, cwd=directory, env=env, capture_output=True, text=True, timeout=600
    )
    failed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("FAILED ")]
    return len(failed), " ".join(name.split("::")[-1] for name in failed)


def largest_growths(directory: Path, run: str) -> dict[str, tuple[Growth, Growth]]:
    """Per test: how far a function (holding 1 to 99 % of the samples) grew beyond the baseline runs and their
    spread, as the gate weighs it (percent), the largest such, by self and by total."""
    found = {}
    for path in sorted((directory / "runs" / run).glob("*.json")):
        stored = sorted((directory / "baseline" / path.stem).glob("[0-9]*.json"))
        bases = [Profile.load(base).without_outside() for base in stored]
        new = Profile.load(path).without_outside()
        test = path.stem.split("_test_")[-1].rsplit("-", 1)[0]
        found[test] = (_beyond(bases, new, "self"), _beyond(bases, new, "total"))
    return found


def _beyond(bases: list[Profile], new: Profile, by: Literal["self", "total"]) -> Growth:
    """The largest growth beyond the bases' spread, as the gate weighs it (`against_bases`), significant or not."""
    finite = [growth for growth in against_bases(bases, new, 1.0, by) if growth.beyond != float("inf")]
    return (100 * finite[0].beyond, finite[0].change.frame.function) if finite else (0.0, "")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="unchanged runs against the baseline")
    parser.add_argument("--slow-runs", type=int, default=10, help="runs with one function 20 %% slower")
    parser.add_argument("--slowdown", type=float, default=0.2, help="how much slower (0.2: 20 %%)")
    parser.add_argument(
        "--baseline-runs", type=int, default=BASELINE_RUNS, help="runs stored as the baseline"
    )
    parser.add_argument("--hog", action="store_true", help="a busy loop on every core throughout")
    parser.add_argument("--minigzip", help="minigzip.wasm: adds the suite's WASI test")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments (e.g. '-n 2')")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="wasmtime-gp-gate-"))
    shutil.copy(SUITE, directory / "test_gate_suite.py")
    env = dict(os.environ, GATE_SLOWDOWN="0")
    if args.minigzip:
        env["GATE_MINIGZIP"] = str(Path(args.minigzip).resolve())
    extra = [*args.pytest_args.split(), f"--wasm-profile-baseline-runs={args.baseline_runs}"]
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1 if args.hog else 0)
    ]
    try:
        for k in range(args.baseline_runs):
            run_suite(directory, f"stored{k}", env, extra)
        print(f"baseline stored in {directory / 'baseline'}; {'with' if args.hog else 'no'} hog")
        growths: dict[str, list[tuple[Growth, Growth]]] = {}
        false_alarms = 0
        for k in range(args.runs):
            failed, names = run_suite(directory, f"same{k}", env, extra)
            false_alarms += failed > 0
            for test, pair in largest_growths(directory, f"same{k}").items():
                growths.setdefault(test, []).append(pair)
            print(f"unchanged run {k + 1}: {failed} failed {names}", flush=True)
        caught = 0
        slow_growths: list[float] = []
        slow_env = dict(env, GATE_SLOWDOWN=str(args.slowdown))
        for k in range(args.slow_runs):
            failed, names = run_suite(directory, f"slow{k}", slow_env, extra)
            caught += "test_pipeline" in names.split()
            slow_growths.append(largest_growths(directory, f"slow{k}")["pipeline"][1][0])
            print(f"slower run {k + 1}: {failed} failed {names}", flush=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        shutil.rmtree(directory)
    print(f"\nunchanged: {false_alarms} of {args.runs} runs had a failed test (false alarms)")
    seen = (
        f"min {min(slow_growths):.1f}, median {statistics.median(slow_growths):.1f}" if slow_growths else "-"
    )
    print(f"{args.slowdown:.0%} slower render: caught in {caught} of {args.slow_runs} runs; "
          f"its growth beyond the baseline runs (by total, %): {seen}")  # fmt: skip
    print(
        "largest growth beyond the baseline runs of a function with 1-99 % of samples, unchanged runs, %: "
        "max / median"
    )
    for test, pairs in growths.items():
        cells = []
        for k, by in enumerate(("self", "total")):
            values = sorted((pair[k] for pair in pairs), reverse=True)
            cells.append(
                f"{by} {values[0][0]:6.1f} ({values[0][1]}) / {statistics.median(v[0] for v in values):5.1f}"
            )
        print(f"  {test:12} " + "   ".join(cells))


if __name__ == "__main__":
    main()
