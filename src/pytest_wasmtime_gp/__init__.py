"""pytest plugin of wasmtime-gp: profile WebAssembly guests in a test suite.

    pytest --wasm-profile[=DIR]          # or, in the ini file: wasm_profile = DIR

Gives the `wasm_profiler` fixture, the `wasm_profile(interval=...)` marker and the
`wasm_budget(function, max_percent, by="total")` marker. This module is separate from `wasmtime_gp`
so that pytest can load it without loading the native extension: that happens only when a test
asks for the fixture.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    from wasmtime_gp import GuestProfiler, Profile

DEFAULT_DIRECTORY = ".wasm-profiles"
DEFAULT_INTERVAL = 0.001
PROPERTY = "wasm_profile"  # the user property (JSON) that carries a test's profiles to the summary
SUMMARY_TESTS = 5  # heaviest tests in the terminal summary
SUMMARY_FUNCTIONS = 3

_profilers = pytest.StashKey[list["GuestProfiler"]]()
_paths = pytest.StashKey[list[Path]]()
_directory = pytest.StashKey["Path | None"]()


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
    parser.addini(
        "wasm_profile", "like --wasm-profile=DIR: where profiled tests write their profiles", default=""
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
    option = config.getoption("--wasm-profile")
    ini = config.getini("wasm_profile")
    if option is not None:
        directory: Path | None = Path(option)
    elif ini:
        directory = config.rootpath / ini
    else:
        directory = None
    config.stash[_directory] = directory
    if directory is not None:
        config.pluginmanager.register(_Summary(directory), "wasmtime-gp-summary")


def _file_stem(nodeid: str) -> str:
    """A file name for a test id: readable, and unique even where parametrised ids differ only in odd characters."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_")[:120]
    return f"{readable}-{hashlib.sha1(nodeid.encode()).hexdigest()[:8]}"


@pytest.fixture
def wasm_profiler(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """`with wasm_profiler(store, modules, **GuestProfiler keywords) as p:` profiles the guest calls inside the
    block (the interval defaults to the wasm_profile marker's, the name to the test's id).

    With --wasm-profile the profile is written to DIR when the block ends; either way `p.profile()`
    gives it afterwards, to assert on.
    """
    from wasmtime_gp import GuestProfiler

    item = request.node
    marker = item.get_closest_marker("wasm_profile")
    default_interval = marker.kwargs.get("interval", DEFAULT_INTERVAL) if marker else DEFAULT_INTERVAL
    directory = request.config.stash[_directory]
    profilers = item.stash.setdefault(_profilers, [])
    paths = item.stash.setdefault(_paths, [])

    @contextmanager
    def profile(store: Any, modules: Any, **options: Any) -> Iterator[GuestProfiler]:
        # Every GuestProfiler keyword (debug_info, timeout, ...) goes through; two have this test's defaults.
        if options.get("interval") is None:
            options["interval"] = default_interval
        if options.get("name") is None:
            options["name"] = item.nodeid
        profiler = GuestProfiler(store, modules, **options)
        profilers.append(profiler)
        try:
            with profiler:
                yield profiler
        finally:
            if directory is not None and not profiler.finished:
                directory.mkdir(parents=True, exist_ok=True)
                suffix = f"-{len(profilers)}" if len(profilers) > 1 else ""
                paths.append(profiler.save(directory / f"{_file_stem(item.nodeid)}{suffix}.json"))

    return profile


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        result = yield
    except BaseException:
        _record(item)  # a failing test's profile is listed too; its budget is moot
        raise
    profiles = _record(item)
    for marker in item.iter_markers("wasm_budget"):
        _check_budget(marker, profiles)
    return result


def _record(item: pytest.Item) -> list[Profile]:
    """Finish the test's profiles; pass what the summary needs on in a user property (xdist carries those)."""
    profiles = [profiler.profile() for profiler in item.stash.get(_profilers, [])]
    if not profiles:
        return profiles
    samples = sum(profile.sample_count for profile in profiles)
    merged = _merged(profiles)
    info = {
        "nodeid": item.nodeid,
        "paths": [str(path) for path in item.stash.get(_paths, [])],
        "samples": samples,
        "top": [[row.frame.function, round(row.self_percent, 1)] for row in merged.top(SUMMARY_FUNCTIONS)],
    }
    item.user_properties.append((PROPERTY, json.dumps(info)))
    return profiles


def _merged(profiles: list[Profile]) -> Profile:
    from wasmtime_gp import Profile

    first = profiles[0]
    samples = [sample for profile in profiles for sample in profile.samples]
    return Profile(first.name, first.interval, first.start_time, sum(p.duration for p in profiles), samples)


def _check_budget(marker: pytest.Mark, profiles: list[Profile]) -> None:
    try:
        function, max_percent = _budget_arguments(*marker.args, **marker.kwargs)
    except TypeError as exc:
        raise pytest.UsageError(f"wasm_budget: {exc}") from None
    by = marker.kwargs.get("by", "total")
    if by not in ("self", "total"):
        raise pytest.UsageError(f'wasm_budget: by must be "self" or "total", not {by!r}')
    if not profiles:
        pytest.fail(
            "wasm_budget: the test took no profile (profile the guest with the wasm_profiler fixture)"
        )
    profile = _merged(profiles)
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
    if (
        isinstance(max_percent, bool)
        or not isinstance(max_percent, (int, float))
        or not 0 <= max_percent <= 100
    ):
        raise TypeError(f"max_percent must be a number from 0 to 100, not {max_percent!r}")
    return function, float(max_percent)


class _Summary:
    """Collects the profiled tests (in the controller too, under pytest-xdist) and prints the summary."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rows: list[dict[str, Any]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.rows += [
                json.loads(str(value)) for name, value in report.user_properties if name == PROPERTY
            ]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        write = terminalreporter.write_line
        terminalreporter.section("wasm guest profiles (wasmtime-gp)")
        written = sum(len(row["paths"]) for row in self.rows)
        write(f"{len(self.rows)} tests profiled; {written} profiles in {self.directory}")
        for row in sorted(self.rows, key=lambda row: -row["samples"])[:SUMMARY_TESTS]:
            top = ", ".join(f"{function} {percent:g} %" for function, percent in row["top"])
            write(f"  {row['nodeid']}: {row['samples']:,} samples; {top}")
            for path in row["paths"]:
                write(f"    {path}")
