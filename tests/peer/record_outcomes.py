"""pytest plugin for the runs of wasmtime-py's test suite (tests/test_wasmtime_py_suite.py): record each test's
outcome as it happens, and bound each test's time.

Loaded with `-p record_outcomes` (this directory on PYTHONPATH). Environment:

- WASMTIME_GP_PEER_RECORD: a file that gets one JSON line per event, written and flushed at once, so that a run
  cut short still tells what passed and which test was running: {"start": nodeid}, one {"nodeid", "when",
  "outcome", "duration", "longrepr"} per phase (setup, call, teardown), then {"finish": nodeid} once every
  plugin is done with the test; or {"collect": nodeid, "longrepr"} for a module that failed to collect.
- WASMTIME_GP_PEER_TEST_BOUND: seconds one test (start to finish: its phases and what other plugins do around
  them, such as profile_every_store finishing its profilers) may take. Past it, faulthandler writes every
  thread's Python stack to the record file's sibling `<record>.stacks` and ends the process (exit code 1):
  a hung test cannot hang the run, and the outer test can say which one hung and where. Standard library
  only; no pytest-timeout.
"""

from __future__ import annotations

import faulthandler
import json
import os
from collections.abc import Generator
from typing import IO, Any

import pytest

_record: IO[str] | None = None
_stacks: IO[str] | None = None
_bound = 0.0
LONGREPR_CHARS = 2000


def _write(event: dict[str, Any]) -> None:
    if _record is not None:
        _record.write(json.dumps(event) + "\n")
        _record.flush()


def pytest_configure(config: pytest.Config) -> None:
    global _record, _stacks, _bound
    path = os.environ.get("WASMTIME_GP_PEER_RECORD")
    if not path:
        raise pytest.UsageError("record_outcomes: set WASMTIME_GP_PEER_RECORD to the file to record into")
    _record = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the whole session)
    _bound = float(os.environ.get("WASMTIME_GP_PEER_TEST_BOUND", "0"))
    if _bound > 0:
        # Its own file: pytest redirects fd 2 while a test runs, and faulthandler's exit skips that capture.
        _stacks = open(path + ".stacks", "w", encoding="utf-8")  # noqa: SIM115 (as _record)


@pytest.hookimpl(wrapper=True, tryfirst=True)  # the outermost wrapper: the bound covers the others
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    _write({"start": item.nodeid})
    if _stacks is not None:
        faulthandler.dump_traceback_later(_bound, exit=True, file=_stacks)
    try:
        return (yield)
    finally:
        if _stacks is not None:
            faulthandler.cancel_dump_traceback_later()
        _write({"finish": item.nodeid})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    longrepr = report.longreprtext if report.failed else ""
    _write(
        {
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "duration": round(report.duration, 4),
            "longrepr": longrepr[-LONGREPR_CHARS:],
        }
    )


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _write({"collect": report.nodeid, "longrepr": report.longreprtext[-LONGREPR_CHARS:]})
