"""Processes: fork while sampling, interpreter exit while sampling, Ctrl-C during a profiled call."""

from __future__ import annotations

import textwrap

from conftest import run_isolated

PRELUDE = """
import os, sys, threading, time
from conftest import instantiate
from guests import CHAIN
from wasmtime_gp import GuestProfiler, _test_utils
"""


def isolated(body: str, timeout: float):  # type: ignore[no-untyped-def]
    return run_isolated(PRELUDE + textwrap.dedent(body), timeout=timeout)


def test_fork_while_sampling_the_child_inherits_no_ticking_profiler_and_the_parent_goes_on():
    result = isolated(
        """
        guest = instantiate(CHAIN)
        other = instantiate(CHAIN)
        # Created before the fork: Wasmtime cannot compile in a child forked while it runs (its compiler's
        # thread pool does not survive fork), and a profiler compiles a probe once per engine.
        child_profiler = GuestProfiler(other.store, [other.module], interval=0.0005)
        profiler = GuestProfiler(guest.store, [guest.module], interval=0.0001)
        profiler.start()
        done = threading.Event()

        def spin():
            while not done.is_set():
                guest.call("run", 2_000_000)

        thread = threading.Thread(target=spin)
        thread.start()
        time.sleep(0.2)
        pid = os.fork()
        if pid == 0:
            ok = not _test_utils.ticker_thread_is_running() and _test_utils.ticker_clock_count() == 0 and not profiler.running
            inherited = profiler.sample_count
            with child_profiler:
                other.call("run", 30_000_000)
            ok = ok and child_profiler.sample_count > 0 and profiler.sample_count == inherited
            ok = ok and len(profiler.finish()) > 0 and not _test_utils.ticker_thread_is_running()
            os._exit(0 if ok else 3)
        before = profiler.sample_count
        time.sleep(0.3)
        after = profiler.sample_count
        _, status = os.waitpid(pid, 0)
        done.set()
        thread.join()
        profiler.finish()
        print(os.waitstatus_to_exitcode(status), after > before)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True"], (result.stdout, result.stderr)


def test_interpreter_exit_while_a_guest_is_sampled_on_another_thread():
    result = isolated(
        """
        guest = instantiate(CHAIN)
        profiler = GuestProfiler(guest.store, [guest.module], interval=0.0001)
        profiler.start()
        threading.Thread(target=guest.call, args=("run", 10**12), daemon=True).start()
        time.sleep(0.2)
        print("exiting with", profiler.sample_count > 0)
        sys.exit(0)
        """,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "exiting with True"


def test_ctrl_c_during_a_profiled_call_keeps_the_profile():
    result = isolated(
        """
        import signal
        guest = instantiate(CHAIN)
        profiler = GuestProfiler(guest.store, [guest.module], interval=0.0005)
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            with profiler:
                guest.call("run", 400_000_000)  # Python sees the Ctrl-C once the call returns
                time.sleep(5)
            print("not interrupted")
        except KeyboardInterrupt:
            profile = profiler.profile()
            print("interrupted", profile.sample_count > 50, profile.top(1)[0].frame.function)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "interrupted True inner"
