"""Signal handlers that call the profiler while the same thread is inside one of its methods.

The natural "save the profile on shutdown" handler calls finish() or stop(); the signal may arrive while
the main thread is inside start(), stop() or finish() of the same profiler. Every method must then complete
or raise a clear GuestProfilerError: never hang. Signals come from an interval timer at random points.
"""

from __future__ import annotations

import textwrap

import pytest
from conftest import run_isolated

BODY = """
import random, signal, sys, tempfile, time, traceback
import wasmtime
from conftest import instantiate
from guests import CHAIN
from wasmtime_gp import ContinuousProfiler, GuestProfiler, GuestProfilerError

random.seed({seed})
guest = instantiate(CHAIN)
current = None
outcomes = {{"completed": 0, "refused": 0, "trapped": 0}}
unexpected = []
directory = tempfile.mkdtemp()

def call_something(profiler):
    # One public method, chosen at random, as a handler would call it.
    name = random.choice({methods!r})
    try:
        if name == "save":
            profiler.save(directory + "/handler.json")
        elif name in ("sample_count", "running", "finished"):
            getattr(profiler, name)
        else:
            getattr(profiler, name)()
        outcomes["completed"] += 1
    except GuestProfilerError:
        outcomes["refused"] += 1
    except Exception:
        unexpected.append(traceback.format_exc())

def handler(signum, frame):
    if current is not None:
        call_something(current)
    if not stopping:
        signal.setitimer(signal.ITIMER_REAL, random.uniform(*{gaps}))

stopping = False

signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 1e-4)
deadline = time.monotonic() + {seconds}
iterations = 0
while time.monotonic() < deadline:
    current = {make}
    try:
        try:
            with current:
                guest.call("run", random.randrange(1, 20_000))
        finally:
            current.{end}()  # refused if a handler finished it first: then it is finished all the same
    except GuestProfilerError:
        outcomes["refused"] += 1
    except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:  # interrupt() from the handler
        assert "interrupted by wasmtime-gp" in str(exc), exc
        outcomes["trapped"] += 1
    iterations += 1
stopping = True
signal.setitimer(signal.ITIMER_REAL, 0)
signal.signal(signal.SIGALRM, signal.SIG_IGN)
for text in unexpected[:3]:
    print(text, file=sys.stderr)
print(iterations, outcomes["completed"], len(unexpected))
"""

GUEST = "GuestProfiler(guest.store, [guest.module], interval=0.0002)"
CONTINUOUS = (
    "ContinuousProfiler(guest.store, [guest.module], sink=lambda rotated: None, interval=0.0002, period=0.01)"
)


# Seconds between signals: shorter than the methods themselves, so that they land anywhere inside them. A
# ContinuousProfiler's rotate() and close() write a profile (milliseconds): its signals come less often, or
# the handlers would leave the main loop no time to run.
GUEST_GAPS = (1e-5, 3e-4)
CONTINUOUS_GAPS = (1e-4, 5e-3)


@pytest.mark.parametrize(
    ("make", "methods", "end", "gaps"),
    [
        (GUEST, ["finish", "stop", "start", "interrupt", "profile", "save", "sample_count", "running"], "finish",
         GUEST_GAPS),
        (GUEST, ["finish", "stop"], "profile", GUEST_GAPS),
        (CONTINUOUS, ["close", "stop", "rotate", "start"], "close", CONTINUOUS_GAPS),
    ],
    ids=["guest-any-method", "guest-finish-or-stop", "continuous"],
)  # fmt: skip
@pytest.mark.parametrize("seed", [1, 2])
def test_signal_handlers_calling_the_profiler_never_hang(
    make: str, methods: list[str], end: str, gaps: tuple[float, float], seed: int
) -> None:
    code = BODY.format(seed=seed, methods=methods, seconds=4, make=make, end=end, gaps=gaps)
    # The profilers are short-lived: one per iteration, as with a `with` block per request.
    result = run_isolated(textwrap.dedent(code), timeout=60)
    assert result.returncode == 0, result.stderr[-4000:]
    iterations, completed, unexpected = map(int, result.stdout.split())
    assert unexpected == 0, result.stderr[-4000:]
    # Hundreds of profiled calls, each with signals inside (20 where rotations make each one slow, under load).
    assert iterations >= 20 and completed >= 20, result.stdout
