"""pytest plugin of wasmtime-gp: profile WebAssembly guests in a test suite.

    pytest --wasm-profile[=DIR]          # or, in the ini file: wasm_profile = DIR
    pytest --wasm-profile-baseline[=DIR] [--wasm-profile-baseline-update]

Gives the `wasm_profiler` fixture, the `wasm_profile(interval=...)` marker, the
`wasm_budget(function, max_percent, by="total")` marker and the `wasm_baseline(max_growth=...)` marker
(the regression gate's thresholds for one test). This module is separate from `wasmtime_gp`
so that pytest can load it without loading the native extension: that happens only when a test
asks for the fixture.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

import pytest

if TYPE_CHECKING:
    from wasmtime_gp import GuestProfiler, Profile
    from wasmtime_gp.diff import BaselineGrowth

DEFAULT_DIRECTORY = ".wasm-profiles"
DEFAULT_BASELINE_DIRECTORY = ".wasm-baseline"
# The regression gate's defaults: a function fails its test when its samples grew by more than MAX_GROWTH
# percent against the rest of the test's, significantly (wasmtime_gp.diff), and it holds MIN_PERCENT of them.
MAX_GROWTH = 10.0
MIN_PERCENT = 1.0
# Runs of a test stored as its baseline: a function must grow beyond all of them and their spread, so the
# baseline spans how much a test's profile varies between runs (figures: docs/performance.md, "Comparing
# profiles").
BASELINE_RUNS = 5
DEFAULT_INTERVAL = 0.001
PROPERTY = "wasm_profile"  # the user property (JSON) that carries a test's profiles to the summary
BASELINE_PROPERTY = "wasm_baseline"  # the user property that carries what the gate did to the summary
SUMMARY_TESTS = 5  # heaviest tests in the terminal summary
SUMMARY_FUNCTIONS = 3

_profilers = pytest.StashKey[list["GuestProfiler"]]()
_data = pytest.StashKey[list[bytes]]()  # each of the test's profiles, as Firefox Profiler JSON
_directory = pytest.StashKey["Path | None"]()
_baseline = pytest.StashKey["_Baseline | None"]()
_STATUSES = ("passed", "regressed", "stored", "not gated")  # what the gate did with a test, in the summary


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wasmtime-gp", "WebAssembly guest profiling (wasmtime-gp)")
    group.addoption(
        "--wasm-profile",
        nargs="?",
        const=DEFAULT_DIRECTORY,
        default=None,
        metavar="DIR",
        help=f"write the profile of each test that uses wasm_profiler into DIR (default {DEFAULT_DIRECTORY}; "
        "give it as --wasm-profile=DIR) and print a summary",
    )
    group.addoption(
        "--wasm-profile-baseline",
        nargs="?",
        const=DEFAULT_BASELINE_DIRECTORY,
        default=None,
        metavar="DIR",
        help="gate each profiled test on its baseline runs in DIR: fail it where a function grew beyond them "
        f"(default {DEFAULT_BASELINE_DIRECTORY}; give it as --wasm-profile-baseline=DIR; a test's first "
        "--wasm-profile-baseline-runs runs are stored as its baseline)",
    )
    group.addoption(
        "--wasm-profile-baseline-update",
        action="store_true",
        help="start every profiled test's baseline anew with this run's profile (gated again once it holds "
        "--wasm-profile-baseline-runs runs)",
    )
    group.addoption(
        "--wasm-profile-baseline-runs",
        type=int,
        default=BASELINE_RUNS,
        metavar="N",
        help=f"runs a test's baseline holds: the first N store, later ones compare (default {BASELINE_RUNS})",
    )
    parser.addini(
        "wasm_profile", "like --wasm-profile=DIR: where profiled tests write their profiles", default=""
    )
    parser.addini(
        "wasm_profile_baseline",
        "like --wasm-profile-baseline=DIR: where the baseline profiles are",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "wasm_profile(interval=0.001): sampling interval (seconds) for this test's wasm_profiler"
    )
    config.addinivalue_line(
        "markers",
        "wasm_budget(function, max_percent, by='total'): fail if the guest function takes more than "
        "max_percent of this test's samples (by='self': innermost only)",
    )
    config.addinivalue_line(
        "markers",
        f"wasm_baseline(max_growth={MAX_GROWTH:g}, min_percent={MIN_PERCENT:g}, by='total', alpha=None): "
        "with --wasm-profile-baseline, fail if a function holding min_percent of the samples grew by over "
        "max_growth percent against the rest, beyond sampling noise at alpha (None: wasmtime_gp.diff's); "
        "max_growth=None: never",
    )
    directory = _directory_option(config, "--wasm-profile", "wasm_profile")
    baseline_directory = _directory_option(config, "--wasm-profile-baseline", "wasm_profile_baseline")
    update = bool(config.getoption("--wasm-profile-baseline-update"))
    if update and baseline_directory is None:
        raise pytest.UsageError("--wasm-profile-baseline-update needs --wasm-profile-baseline")
    runs = config.getoption("--wasm-profile-baseline-runs")
    if runs < 1:
        raise pytest.UsageError(f"--wasm-profile-baseline-runs must be 1 or more, not {runs}")
    baseline = _Baseline(baseline_directory, update, runs) if baseline_directory is not None else None
    config.stash[_directory] = directory
    config.stash[_baseline] = baseline
    if directory is not None or baseline is not None:
        config.pluginmanager.register(_Summary(directory, baseline), "wasmtime-gp-summary")


def _directory_option(config: pytest.Config, option: str, ini: str) -> Path | None:
    """The directory an option names, else its ini setting's (relative to the root), else None."""
    value = config.getoption(option)
    if value is not None:
        return Path(value)
    setting = config.getini(ini)
    return config.rootpath / setting if setting else None


def _file_stem(nodeid: str) -> str:
    """A file name for a test id: readable, and unique even where parametrised ids differ only in odd characters."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_")[:120]
    return f"{readable}-{hashlib.sha1(nodeid.encode()).hexdigest()[:8]}"


@pytest.fixture
def wasm_profiler(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """`with wasm_profiler(store, modules, **GuestProfiler keywords) as p:` profiles the guest calls inside the
    block (the interval defaults to the wasm_profile marker's, the name to the test's id).

    After the test, with --wasm-profile, each profile is written to DIR, and with --wasm-profile-baseline the
    test is gated on them: finished by then if the test did not finish them itself. `p.profile()` gives it, to
    assert on, inside the test.
    """
    from wasmtime_gp import GuestProfiler

    item = request.node
    marker = item.get_closest_marker("wasm_profile")
    default_interval = marker.kwargs.get("interval", DEFAULT_INTERVAL) if marker else DEFAULT_INTERVAL
    profilers = item.stash.setdefault(_profilers, [])

    @contextmanager
    def profile(store: Any, modules: Any, **options: Any) -> Iterator[GuestProfiler]:
        # Every GuestProfiler keyword (debug_info, timeout, ...) goes through; two have this test's defaults.
        if options.get("interval") is None:
            options["interval"] = default_interval
        if options.get("name") is None:
            options["name"] = item.nodeid
        profiler = GuestProfiler(store, modules, **options)
        profilers.append(profiler)
        with profiler:
            yield profiler

    return profile


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        result = yield
    except BaseException:
        _record(item)  # a failing test's profile is listed too; its budget is moot
        raise
    merged = _record(item)
    for marker in item.iter_markers("wasm_budget"):
        _check_budget(marker, merged)
    baseline = item.config.stash[_baseline]
    if baseline is not None and merged is not None:
        baseline.check(item, merged)
    return result


def _record(item: pytest.Item) -> Profile | None:
    """Finish the test's profiles (a profile the test finished itself gives the same bytes), write them with
    --wasm-profile, and pass what the summary needs on in a user property (xdist carries those). Return them
    as one profile (None: the test took none)."""
    from wasmtime_gp import Profile
    from wasmtime_gp._files import atomic_write

    data = item.stash[_data] = [profiler.profile_json() for profiler in item.stash.get(_profilers, [])]
    directory = item.config.stash[_directory]
    paths = []
    if directory is not None and data:
        directory.mkdir(parents=True, exist_ok=True)
        for index, profile in enumerate(data, 1):
            suffix = f"-{index}" if len(data) > 1 else ""
            paths.append(atomic_write(directory / f"{_file_stem(item.nodeid)}{suffix}.json", profile))
    profiles = [Profile.from_bytes(profile) for profile in data]
    if not profiles:
        return None
    merged = _merged(profiles)
    info = {
        "nodeid": item.nodeid,
        "paths": [str(path) for path in paths],
        "samples": merged.sample_count,
        "top": [[row.frame.function, round(row.self_percent, 1)] for row in merged.top(SUMMARY_FUNCTIONS)],
    }
    item.user_properties.append((PROPERTY, json.dumps(info)))
    return merged


def _merged(profiles: list[Profile]) -> Profile:
    from wasmtime_gp import Profile

    first = profiles[0]
    samples = [sample for profile in profiles for sample in profile.samples]
    return Profile(first.name, first.interval, first.start_time, sum(p.duration for p in profiles), samples)


def _check_budget(marker: pytest.Mark, profile: Profile | None) -> None:
    try:
        function, max_percent = _budget_arguments(*marker.args, **marker.kwargs)
    except TypeError as exc:
        raise pytest.UsageError(f"wasm_budget: {exc}") from None
    by = marker.kwargs.get("by", "total")
    if by not in ("self", "total"):
        raise pytest.UsageError(f'wasm_budget: by must be "self" or "total", not {by!r}')
    if profile is None:
        pytest.fail(
            "wasm_budget: the test took no profile (profile the guest with the wasm_profiler fixture)"
        )
    rows = profile.top(len(profile.samples) or 1, by=by)
    percent = sum(getattr(row, f"{by}_percent") for row in rows if row.frame.function == function)
    if percent > max_percent:
        top = "\n".join(
            f"  {row.self_percent:5.1f} % self  {row.total_percent:5.1f} % total  {row.frame}"
            for row in rows[:5]
        )
        pytest.fail(
            f"wasm_budget: {function} took {percent:.1f} % of {profile.sample_count:,} samples ({by}), "
            f"over its budget of {max_percent:g} %\ntop functions:\n{top}",
            pytrace=False,
        )


def _budget_arguments(function: str, max_percent: float, by: str = "total") -> tuple[str, float]:
    if not isinstance(function, str):
        raise TypeError(f"function must be a str, not {type(function).__name__}")
    if not _is_number(max_percent) or not 0 <= max_percent <= 100:
        raise TypeError(f"max_percent must be a number from 0 to 100, not {max_percent!r}")
    return function, float(max_percent)


class _Baseline:
    """The regression gate: each profiled test against `runs` profiles of it stored in `directory` before, in
    a directory per test (`1.json`, `2.json`, ...; `new.json`: the last run that regressed)."""

    def __init__(self, directory: Path, update: bool, runs: int) -> None:
        self.directory = directory
        self.update = update
        self.runs = runs

    def check(self, item: pytest.Item, merged: Profile) -> None:
        """Add the test's profile to its baseline while that holds fewer than `runs` (or start it anew when
        updating); else compare `merged` (its profiles, read already) with them, failing the test on a
        regression."""
        from wasmtime_gp import Profile
        from wasmtime_gp._errors import ProfileFormatError
        from wasmtime_gp._files import atomic_write
        from wasmtime_gp.diff import regressions
        from wasmtime_gp.merge import merge_profiles
        from wasmtime_gp.report import diff_table

        max_growth, min_percent, by, alpha = _baseline_settings(item.get_closest_marker("wasm_baseline"))
        data = item.stash[_data]
        profile = data[0] if len(data) == 1 else merge_profiles(data)
        directory = self.directory / _file_stem(item.nodeid)
        new_path = directory / "new.json"
        stored = _stored_runs(directory)
        if self.update:
            for path in stored:
                path.unlink()
            stored = []
        if len(stored) < self.runs:
            directory.mkdir(parents=True, exist_ok=True)
            number = int(stored[-1].stem) + 1 if stored else 1  # after the last, whichever were deleted
            atomic_write(directory / f"{number}.json", profile)
            new_path.unlink(missing_ok=True)
            return _report(item, "stored")
        stored = stored[-self.runs :]
        if max_growth is None:
            return _report(item, "not gated")
        try:
            # Time outside wasm in unwrapped host functions is mostly waiting (I/O, a CPU), or the host's own
            # work: it changes with the machine's load. The gate compares where the guest's time in wasm went.
            bases = [Profile.load(path).without_outside() for path in stored]
        except (OSError, ProfileFormatError) as exc:
            pytest.fail(f"wasm_baseline: cannot read the baseline: {exc}", pytrace=False)
        new = merged.without_outside()
        options: dict[str, Any] = {"by": by} if alpha is None else {"by": by, "alpha": alpha}
        grown = regressions(bases, new, max_growth / 100, min_percent, **options)
        if not grown:
            new_path.unlink(missing_ok=True)
            return _report(item, "passed")
        atomic_write(new_path, profile)
        _report(item, "regressed")
        rows = "\n".join(_regression_line(growth, by) for growth in grown)
        pytest.fail(
            f"wasm_baseline: {len(grown)} function(s) grew against the rest of the test by more than "
            f"{max_growth:g} % beyond how much its {len(bases)} baseline runs differ (the nearest run "
            f"shown), and beyond sampling noise:\n{rows}\n\n"
            f"against baseline run {stored[0].stem}:\n{diff_table(new.diff(bases[0], **options), 8)}\n"
            f"this run: {new_path}\n"
            f"see it: wasmtime-gp diff {stored[0]} {new_path} --by {by} --html diff.html (which keeps the "
            "time outside wasm the gate leaves out)\n"
            "if the change is meant, start the baseline anew from this code with "
            f"--wasm-profile-baseline-update (the test is gated again once its baseline holds {self.runs} runs)",
            pytrace=False,
        )


def _regression_line(growth: BaselineGrowth, by: str) -> str:
    row = growth.change
    spread = f"the baseline runs {100 * growth.base_spread:.0f} % apart"
    grew = (
        "in no baseline run"
        if row.growth == math.inf
        else f"+{100 * row.growth:.0f} % against the rest, {spread}"
    )
    return (
        f"  {row.frame}: {grew} ({row.base_percent:.1f} % -> {row.new_percent:.1f} % of the {by} samples, "
        f"{row.base_samples:,} -> {row.new_samples:,}; p = {row.p_value:.1g})"
    )


def _stored_runs(directory: Path) -> list[Path]:
    """The baseline runs in a test's directory, in the order they were stored."""
    found = [path for path in directory.glob("*.json") if path.stem.isdigit()]
    return sorted(found, key=lambda path: int(path.stem))


def _report(item: pytest.Item, status: str) -> None:
    item.user_properties.append((BASELINE_PROPERTY, json.dumps({"nodeid": item.nodeid, "status": status})))


def _baseline_settings(
    marker: pytest.Mark | None,
) -> tuple[float | None, float, Literal["self", "total"], float | None]:
    """The wasm_baseline marker's (max_growth, min_percent, by, alpha), checked; the defaults without one."""
    options = dict(marker.kwargs) if marker else {}
    if marker and marker.args:
        raise pytest.UsageError("wasm_baseline takes keywords only: max_growth, min_percent, by, alpha")
    max_growth = options.pop("max_growth", MAX_GROWTH)
    min_percent = options.pop("min_percent", MIN_PERCENT)
    by = options.pop("by", "total")
    alpha = options.pop("alpha", None)
    if options:
        raise pytest.UsageError(f"wasm_baseline: unknown keywords {sorted(options)}")
    if max_growth is not None and (not _is_number(max_growth) or max_growth < 0):
        raise pytest.UsageError(
            f"wasm_baseline: max_growth must be a percentage of 0 or more, or None, not {max_growth!r}"
        )
    if not _is_number(min_percent) or not 0 <= min_percent <= 50:
        raise pytest.UsageError(
            f"wasm_baseline: min_percent must be a number from 0 to 50, not {min_percent!r}"
        )
    if by not in ("self", "total"):
        raise pytest.UsageError(f'wasm_baseline: by must be "self" or "total", not {by!r}')
    if alpha is not None and (not _is_number(alpha) or not 0 < alpha < 1):
        raise pytest.UsageError(f"wasm_baseline: alpha must be between 0 and 1, not {alpha!r}")
    return max_growth, min_percent, by, alpha


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Summary:
    """Collects the profiled tests (in the controller too, under pytest-xdist) and prints the summary."""

    def __init__(self, directory: Path | None, baseline: _Baseline | None) -> None:
        self.directory = directory
        self.baseline = baseline
        self.rows: list[dict[str, Any]] = []
        self.gated: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            for name, value in report.user_properties:
                if name == PROPERTY:
                    self.rows.append(json.loads(str(value)))
                elif name == BASELINE_PROPERTY:
                    self.gated.append(json.loads(str(value)))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows and not self.gated:
            return
        write = terminalreporter.write_line
        terminalreporter.section("wasm guest profiles (wasmtime-gp)")
        if self.baseline is not None:
            counts = Counter(row["status"] for row in self.gated)
            statuses = ", ".join(f"{counts[status]} {status}" for status in _STATUSES if counts[status])
            write(f"baselines in {self.baseline.directory}: {statuses or 'no test gated or stored'}")
            for row in self.gated:
                if row["status"] == "regressed":
                    write(f"  regressed: {row['nodeid']}")
        if self.directory is None or not self.rows:
            return
        written = sum(len(row["paths"]) for row in self.rows)
        write(f"{len(self.rows)} tests profiled; {written} profiles in {self.directory}")
        for row in sorted(self.rows, key=lambda row: -row["samples"])[:SUMMARY_TESTS]:
            top = ", ".join(f"{function} {percent:g} %" for function, percent in row["top"])
            write(f"  {row['nodeid']}: {row['samples']:,} samples; {top}")
            for path in row["paths"]:
                write(f"    {path}")
