"""wasmtime-py's own test suite, run with and without a GuestProfiler on every store: the profiler must not change
which of its tests pass.

The suite is the `tests/` of the wasmtime sdist of the installed version (tests/peer/fetch_tests.py; .ci/run
fetches the newest, which the README's command installs). Each run is a pytest subprocess with the plugins of
tests/peer/: record_outcomes records every outcome as it happens and ends a test that runs past TEST_BOUND
(dumping its stacks), so a hung test fails this one instead of hanging it; profile_every_store turns epoch
interruption on for every engine and, in the profiled run, attaches a profiler to every store that instantiates
a core module. The baseline run turns epoch interruption on too, without profiling: epoch interruption alone
changes what some tests see (with wasmtime-py 50, test_trap.py::TestTrap::test_frames gets another offset for
the trapping instruction), and that is not the profiler's doing.

`slow`: the sdist's tests match one wasmtime version only, the newest, which the README's command runs with; the
compatibility cells (other versions, `-m "not slow"`) leave this out.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tools import wasmtime_py_tests

pytestmark = pytest.mark.slow

PEER = Path(__file__).resolve().parent / "peer"
TEST_BOUND = 30.0  # seconds for one of wasmtime-py's tests; the slowest takes under 0.1 s here
RUN_TIMEOUT = 600.0  # seconds for a whole run (about 2 s here): only if something hangs outside any test
# wasmtime-py's guests run for microseconds: a run takes 1 to 30 samples, fewer when a loaded machine starves
# the ticker. Another profiled run (checked the same way) only while none took a sample, at most this many.
PROFILED_RUNS = 3
ENV_DROPPED = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_CURRENT_TEST")


@dataclass
class Run:
    name: str
    returncode: int | None = None  # None: RUN_TIMEOUT ended it
    passed: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # nodeid -> the failing phase and its report
    unfinished: str | None = None  # the test that was running when the run ended
    stacks: str = ""  # what the per-test bound dumped
    output: str = ""
    report: dict[str, Any] | None = None  # profile_every_store's

    def cut_short(self) -> str | None:
        """Why the run did not complete, or None."""
        if self.returncode is None:
            running = f" (running {self.unfinished})" if self.unfinished else ""
            return f"the {self.name} run did not end within {RUN_TIMEOUT:g} s{running}"
        if self.unfinished is not None:
            how = (
                f"it ran past the {TEST_BOUND:g} s bound (its stacks below)"
                if self.stacks
                else "it crashed the process (its output below)"
            )
            return f"the {self.name} run ended (exit code {self.returncode}) in {self.unfinished}: {how}"
        return None

    def describe(self) -> str:
        text = f"--- the {self.name} run's output (end):\n{self.output[-6000:]}"
        if self.stacks:
            text += f"\n--- the {self.name} run's stacks when {self.unfinished} reached the bound:\n{self.stacks[-6000:]}"
        return text


def run_suite(suite: Path, workdir: Path, name: str, *, profile: bool) -> Run:
    """Run wasmtime-py's tests in a pytest subprocess, from `workdir`, and read what they did."""
    workdir.mkdir()
    (workdir / "pytest.ini").write_text("[pytest]\n")  # not the sdist's (it wants pytest-mypy), not ours
    # test_wasi.py::TestWasi::test_config preopens ./wasmtime (in the sdist, its package directory). An empty
    # directory cannot shadow the installed package: a regular package anywhere on sys.path wins over it.
    (workdir / "wasmtime").mkdir()
    record = workdir / "outcomes.jsonl"
    report = workdir / "profile-report.json"
    env = {key: value for key, value in os.environ.items() if key not in ENV_DROPPED}
    env.update(
        PYTHONPATH=os.pathsep.join([str(PEER), *filter(None, [os.environ.get("PYTHONPATH")])]),
        PYTHONDONTWRITEBYTECODE="1",  # nothing written into the fetched suite
        WASMTIME_GP_PEER_RECORD=str(record),
        WASMTIME_GP_PEER_TEST_BOUND=str(TEST_BOUND),
        WASMTIME_GP_PEER_REPORT=str(report),
        WASMTIME_GP_PEER_PROFILE="1" if profile else "0",
    )
    command = [sys.executable, "-m", "pytest", "-c", "pytest.ini", f"--rootdir={suite}", "-o", "addopts="]
    # Without our own pytest plugin (it would not import wasmtime_gp unless asked, but the baseline stays clear).
    command += ["-p", "no:cacheprovider", "-p", "no:wasmtime_gp"]
    command += ["-p", "record_outcomes", "-p", "profile_every_store"]
    command += ["-q", "-rfE", str(suite / "tests")]
    run = Run(name)
    try:
        completed = subprocess.run(
            command,
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        run.returncode, run.output = completed.returncode, completed.stdout
    except subprocess.TimeoutExpired as expired:  # subprocess.run killed it
        output = expired.stdout or ""
        run.output = output if isinstance(output, str) else output.decode(errors="replace")
    phases: dict[str, list[tuple[str, str, str]]] = {}
    if record.exists():
        for line in record.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line, cut short with the process
            if "start" in event:
                phases[event["start"]] = []
                run.unfinished = event["start"]
            elif "finish" in event:
                run.unfinished = None
            elif "collect" in event:
                run.failed[event["collect"]] = f"collection failed:\n{event['longrepr']}"
            else:
                phases.setdefault(event["nodeid"], []).append(
                    (event["when"], event["outcome"], event["longrepr"])
                )
    for nodeid, reports in phases.items():
        if any(when == "call" for when, _, _ in reports) and all(o == "passed" for _, o, _ in reports):
            run.passed.add(nodeid)
        for when, outcome, longrepr in reports:
            if outcome == "failed":
                run.failed[nodeid] = f"failed in {when}:\n{longrepr}"
    stacks = record.with_name(record.name + ".stacks")
    run.stacks = stacks.read_text() if stacks.exists() else ""
    if report.exists():
        run.report = json.loads(report.read_text())
    return run


def differences(baseline: Run, profiled: Run) -> list[str]:
    lines, not_run = [], []
    for nodeid in sorted(baseline.passed - profiled.passed):
        if nodeid in profiled.failed:
            why = profiled.failed[nodeid]
        elif nodeid == profiled.unfinished:
            why = "it was running when the run ended"
        elif profiled.cut_short():
            not_run.append(nodeid)
            continue
        else:
            why = "it did not pass"
        lines.append(f"  passes without the profiler, not with it: {nodeid}: {why}")
    if not_run:
        lines.append(
            f"  {len(not_run)} more that pass without the profiler did not run with it (the run had ended): "
            + ", ".join(not_run[:3])
            + (", ..." if len(not_run) > 3 else "")
        )
    lines.extend(
        f"  passes with the profiler, not without it: {nodeid}"
        f"{': ' + baseline.failed[nodeid] if nodeid in baseline.failed else ''}"
        for nodeid in sorted(profiled.passed - baseline.passed)
    )
    return lines


def profiling_problems(profiled: Run) -> list[str]:
    report = profiled.report
    if report is None:
        return ["  the profiled run wrote no profiling report (it did not reach the end of its session)"]
    problems = [f"  {e['test']}: {e['action']}: {e['error']}" for e in report["errors"]]
    if report["stores_profiled"] == 0:
        problems.append("  no store was profiled (the comparison proves nothing then)")
    return problems


def test_wasmtime_py_suite_passes_the_same_with_every_store_profiled(tmp_path: Path) -> None:
    suite = wasmtime_py_tests()
    version = (suite / "VERSION").read_text().strip()
    installed = importlib.metadata.version("wasmtime")
    if version != installed:
        pytest.fail(
            f"{suite} holds wasmtime-py {version}'s tests, but wasmtime {installed} is installed: fetch the "
            f"matching ones with `python tests/peer/fetch_tests.py {suite}`"
        )

    baseline = run_suite(suite, tmp_path / "baseline", "baseline", profile=False)
    assert baseline.cut_short() is None and baseline.passed, (
        f"wasmtime-py's suite does not run here even without profiling: {baseline.cut_short() or ''}\n"
        f"{baseline.describe()}"
    )
    assert baseline.report is not None and not baseline.report["wasmtime_gp_imported"], (
        f"the baseline run imported wasmtime_gp (or wrote no report: {baseline.report})"
    )

    samples = 0
    for attempt in range(1, PROFILED_RUNS + 1):
        profiled = run_suite(suite, tmp_path / f"profiled-{attempt}", f"profiled (#{attempt})", profile=True)
        problems = []
        cut_short = profiled.cut_short()
        if cut_short:
            problems.append(f"  {cut_short}")
        problems += differences(baseline, profiled)
        problems += profiling_problems(profiled)
        report = profiled.report or {}
        summary = (
            f"wasmtime-py {version}'s suite: {len(baseline.passed)} tests pass without the profiler, "
            f"{len(profiled.passed)} with it (run #{attempt}); profiling report: "
            f"{json.dumps({k: v for k, v in report.items() if k != 'samples_by_test'})}"
        )
        assert not problems, "\n".join([summary, *problems, profiled.describe()])
        samples += report["samples"]
        if samples > 0:
            break
    assert samples > 0, (
        f"{PROFILED_RUNS} profiled runs took no sample: the profilers never saw a guest run (the ticker "
        "never ticked while one did)"
    )
