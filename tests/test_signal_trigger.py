"""The signal trigger: `kill -USR2 PID` writes a capture of every tracked store into a directory.

Every test runs the service in its own process and signals it with os.kill, as an operator would. Every wait is
bounded and every process killed if it overstays; nothing depends on how fast the machine is: where a loaded
machine could give a capture no sample at all, the test signals again.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import run_isolated

WAIT = 60.0  # seconds: a bound on every wait, far above what an idle machine needs
TESTS = str(Path(__file__).resolve().parent)

PRELUDE = """
import os, signal, sys, threading, time
import wasmtime
from conftest import instantiate, make_engine
from guests import CHAIN
from wasmtime_gp import live
from wasmtime_gp.signal_trigger import install_signal_trigger

def serve(guest, name):
    # A store tracked where it is made, then a thread calling its guest: short calls, one after another.
    live.track(guest.store, [guest.module], name=name)
    def loop():
        while True:
            guest.call("run", 2_000_000)
    threading.Thread(target=loop, daemon=True).start()
"""


class Service:
    """A Python process running `code`; its stdout and stderr lines are read as they come."""

    def __init__(self, code: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"import sys; sys.path.insert(0, {TESTS!r})\n" + textwrap.dedent(code)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._stderr_seen = 0
        self._stderr_changed = threading.Condition()
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout.put), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self._add_stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, put: Callable[[str], None]) -> None:
        for line in stream:
            put(line.rstrip("\n"))

    def _add_stderr(self, line: str) -> None:
        with self._stderr_changed:
            self.stderr_lines.append(line)
            self._stderr_changed.notify_all()

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    @property
    def pid(self) -> int:
        return self.process.pid

    def line(self) -> str:
        """The next line of stdout."""
        try:
            return self.stdout.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no output within {WAIT} s; stderr:\n{self.stderr[-4000:]}") from None

    def stderr_line(self, contains: str) -> str:
        """The next stderr line (after those already returned) that contains `contains`."""
        deadline = time.monotonic() + WAIT
        with self._stderr_changed:
            while True:
                for index in range(self._stderr_seen, len(self.stderr_lines)):
                    if contains in self.stderr_lines[index]:
                        self._stderr_seen = index + 1
                        return self.stderr_lines[index]
                left = deadline - time.monotonic()
                assert left > 0, f"no stderr line with {contains!r} within {WAIT} s:\n{self.stderr[-4000:]}"
                self._stderr_changed.wait(left)

    def send(self, signum: int = signal.SIGUSR2) -> None:
        os.kill(self.pid, signum)

    def end(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum`; the exit status (waited for, bounded)."""
        self.send(signum)
        returncode = self.process.wait(timeout=WAIT)
        for reader in self._readers:
            reader.join(WAIT)
        return returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT)


@contextmanager
def service(code: str) -> Iterator[Service]:
    running = Service(PRELUDE + textwrap.dedent(code))
    try:
        yield running
    finally:
        running.kill()


def outputs(directory: Path) -> set[Path]:
    """What the trigger wrote (its temporary files start with a dot, and are renamed when complete)."""
    return {path for path in directory.iterdir() if not path.name.startswith(".")}


def wait_for_new_file(directory: Path, before: set[Path], process: Service) -> Path:
    deadline = time.monotonic() + WAIT
    while True:
        new = outputs(directory) - before
        if new:
            assert len(new) == 1, new
            return new.pop()
        assert process.process.poll() is None, (
            f"the service ended ({process.process.returncode}):\n{process.stderr}"
        )
        assert time.monotonic() < deadline, f"no file within {WAIT} s; stderr:\n{process.stderr[-4000:]}"
        time.sleep(0.02)


def capture_with(
    running: Service, directory: Path, suffix: str, check: Callable[[bytes], bool], pid: int | None = None
) -> Path:
    """Signal until a capture passes `check` (a loaded machine may starve a short capture: then it is a note,
    or a profile without some store): the profile's path."""
    pid = running.pid if pid is None else pid
    for _ in range(5):
        before = outputs(directory)
        os.kill(pid, signal.SIGUSR2)
        path = wait_for_new_file(directory, before, running)
        assert path.name.startswith(f"wasm-{pid}-"), path
        if path.suffix == ".txt":
            assert "ran wasm" in path.read_text(), path.read_text()
            continue
        assert path.name.endswith(suffix), path
        if check(path.read_bytes()):
            return path
    raise AssertionError(f"5 captures, none as expected; stderr:\n{running.stderr[-4000:]}")


def firefox_functions(data: bytes) -> dict[str, set[str]]:
    """Per thread of a Firefox profile, the functions on its samples' stacks."""
    raw = json.loads(data)
    result = {}
    for thread in raw["threads"]:
        strings = thread.get("stringArray") or thread.get("stringTable") or raw["shared"]["stringArray"]
        names = [strings[index] for index in thread["funcTable"]["name"]]
        frame_func, prefix = thread["frameTable"]["func"], thread["stackTable"]["prefix"]
        frame = thread["stackTable"]["frame"]
        functions = set()
        for stack in thread["samples"]["stack"]:
            while stack is not None:
                functions.add(names[frame_func[frame[stack]]])
                stack = prefix[stack]
        result[thread["name"]] = functions
    return result


def pprof_functions(data: bytes) -> dict[str, set[str]]:
    """Per `store` label of a gzipped pprof profile, the functions on its samples' stacks."""
    from wasmtime_gp.exports.pprof import _profile_class

    message = _profile_class()()
    message.ParseFromString(gzip.decompress(data))
    strings = message.string_table
    function_names = {function.id: strings[function.name] for function in message.function}
    location_functions = {
        location.id: [function_names[line.function_id] for line in location.line]
        for location in message.location
    }
    result: dict[str, set[str]] = {}
    for sample in message.sample:
        labels = {strings[label.key]: strings[label.str] for label in sample.label}
        functions = result.setdefault(labels["store"], set())
        for location in sample.location_id:
            functions.update(location_functions[location])
    return result


@pytest.mark.parametrize(
    ("format", "main"),
    [("firefox", "sleeps"), ("pprof", "long-call")],
    ids=["firefox-main-thread-sleeps", "pprof-main-thread-in-one-long-guest-call"],
)
def test_sigusr2_writes_a_capture_of_every_tracked_store(tmp_path: Path, format: str, main: str) -> None:
    if main == "sleeps":
        # A worker thread runs the guest; the main thread waits, as a queue consumer's does. The wakeup fd is
        # left alone: the handler's own byte wakes the trigger.
        code = f"""
            serve(instantiate(CHAIN), "worker")
            install_signal_trigger({str(tmp_path)!r}, seconds=1, format={format!r}, claim_wakeup_fd=False)
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
            print("ready", flush=True)
            while True:
                time.sleep(0.05)
            """
        expected_stores, expected_exit = {"worker"}, 143
    else:
        # The main thread stays inside one guest call (no host call): Python cannot run a signal handler
        # there until it returns, so only the wakeup fd can wake the trigger. SIGTERM's default ends it.
        code = f"""
            guest = instantiate(CHAIN)
            live.track(guest.store, [guest.module], name="main")
            trigger = install_signal_trigger({str(tmp_path)!r}, seconds=1, format={format!r})
            assert trigger.owns_wakeup_fd
            print("ready", flush=True)
            guest.call("run", 10**15)
            """
        expected_stores, expected_exit = {"main"}, -signal.SIGTERM
    functions = firefox_functions if format == "firefox" else pprof_functions
    suffix = ".json" if format == "firefox" else ".pb.gz"

    def has_inner(data: bytes) -> bool:
        stores = functions(data)
        return set(stores) == expected_stores and all("inner" in stores[name] for name in expected_stores)

    with service(code) as running:
        assert running.line() == "ready"
        path = capture_with(running, tmp_path, suffix, has_inner)
        assert f"wrote {path}" in running.stderr_line("wrote")
        assert running.end() == expected_exit, running.stderr[-4000:]
    assert "Traceback" not in running.stderr, running.stderr
    assert all(entry == path or entry.suffix == ".txt" for entry in outputs(tmp_path)), outputs(tmp_path)


def test_a_signal_during_a_capture_is_ignored(tmp_path: Path) -> None:
    # The first capture is held until the second signal is in the trigger's pipe (the handler ran), so that
    # it surely comes during the capture however slow the machine; the trigger's own wakeup fd is in use.
    code = f"""
        import fcntl, struct, termios
        serve(instantiate(CHAIN), "worker")
        trigger = install_signal_trigger({str(tmp_path)!r}, seconds=1)
        assert trigger.owns_wakeup_fd
        real_capture, held, release = live.capture, threading.Event(), threading.Event()

        def held_capture(seconds):
            capture = real_capture(seconds)
            held.set()
            release.wait(60)
            return capture

        live.capture = held_capture
        print("ready", flush=True)

        def pending():
            return struct.unpack("i", fcntl.ioctl(trigger._read_fd, termios.FIONREAD, b"\\0" * 4))[0]

        while not release.is_set():
            time.sleep(0.01)
            # Before the second signal, at most the first one's handler byte waits (its wakeup byte started
            # the capture); the second brings two: its wakeup byte at once, its handler's byte later.
            if held.is_set() and pending() >= 2:
                release.set()
        while True:
            time.sleep(0.05)
        """
    with service(code) as running:
        assert running.line() == "ready"
        running.send()
        running.stderr_line("capturing every tracked store (1) for 1 s")
        running.send()
        running.stderr_line("wrote")
        assert "came again during the capture: ignored" in running.stderr_line("during the capture")
        first = outputs(tmp_path)
        assert len(first) == 1, first
        # The trigger still serves, and the first signal's byte was not taken for another one.
        capture_with(running, tmp_path, ".json", lambda data: "worker" in firefox_functions(data))
        assert running.end() == -signal.SIGTERM
    assert running.stderr.count("capturing every tracked store") == len(outputs(tmp_path)), running.stderr
    assert "Traceback" not in running.stderr, running.stderr


def test_a_forked_child_gets_its_own_trigger(tmp_path: Path) -> None:
    # A pre-fork server: the parent compiles and installs the trigger, the child makes its store (Wasmtime
    # cannot compile in a child forked after its compile threads ran) and serves. The parent waits for it.
    code = f"""
        engine = make_engine()
        module = wasmtime.Module(engine, CHAIN)
        trigger = install_signal_trigger({str(tmp_path)!r}, seconds=1)
        pid = os.fork()
        if pid == 0:
            store = wasmtime.Store(engine)
            store.set_epoch_deadline(1 << 40)
            instance = wasmtime.Instance(store, module, [])
            guest = type("Guest", (), {{}})()
            guest.store, guest.module = store, module
            guest.call = lambda name, *args: instance.exports(store)[name](store, *args)
            serve(guest, "child")
            print("child", os.getpid(), trigger.owns_wakeup_fd, flush=True)
            while True:
                time.sleep(0.05)
        print("parent", os.getpid(), flush=True)
        _, status = os.waitpid(pid, 0)
        print("child ended", os.waitstatus_to_exitcode(status), flush=True)
        """
    with service(code) as running:
        lines = sorted([running.line(), running.line()])
        assert lines[0].startswith("child ") and lines[1] == f"parent {running.pid}", lines
        _, child_text, owns = lines[0].split()
        child = int(child_text)
        assert owns == "True"  # re-armed with its own pipe as its wakeup fd
        try:
            capture_with(
                running,
                tmp_path,
                ".json",
                lambda data: "inner" in firefox_functions(data).get("child", ()),
                child,
            )
            # The parent's trigger still serves it: it tracks no store, so it leaves a note saying so.
            before = outputs(tmp_path)
            running.send()
            note = wait_for_new_file(tmp_path, before, running)
            assert note.name.startswith(f"wasm-{running.pid}-") and note.suffix == ".txt", note
            assert "no store is tracked" in note.read_text()
            os.kill(child, signal.SIGTERM)
            assert running.line() == f"child ended {-signal.SIGTERM}"
            assert running.process.wait(timeout=WAIT) == 0, running.stderr[-4000:]
        finally:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # Each process's signal woke its own trigger only: one file for the parent, the child's for the child.
    parent_files = [path for path in outputs(tmp_path) if path.name.startswith(f"wasm-{running.pid}-")]
    assert parent_files == [note], outputs(tmp_path)
    assert all(path.name.startswith(f"wasm-{child}-") for path in outputs(tmp_path) - {note})
    assert "Traceback" not in running.stderr, running.stderr


def test_install_and_close_rules(tmp_path: Path) -> None:
    result = run_isolated(
        f"""
        import os, signal, threading
        from wasmtime_gp import ProfilerStateError, ProfilerTypeError, ProfilerValueError
        from wasmtime_gp.signal_trigger import install_signal_trigger

        def refused(error, match, call, *args, **kwargs):
            try:
                call(*args, **kwargs)
            except error as exc:
                assert match in str(exc), exc
            else:
                raise AssertionError(f"{{call}} {{args}} {{kwargs}} was not refused")

        def refused_on_a_thread(error, match, call, *args, **kwargs):
            failures = []

            def run():
                try:
                    refused(error, match, call, *args, **kwargs)
                except BaseException as exc:
                    failures.append(exc)

            thread = threading.Thread(target=run)
            thread.start()
            thread.join(60)
            assert not thread.is_alive() and not failures, failures

        directory = {str(tmp_path)!r}
        refused_on_a_thread(ProfilerStateError, "main thread", install_signal_trigger, directory)
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL

        refused(ProfilerValueError, "not a directory", install_signal_trigger, directory + "/missing")
        refused(ProfilerValueError, "format", install_signal_trigger, directory, format="speedscope")
        refused(ProfilerValueError, "positive", install_signal_trigger, directory, seconds=0)
        refused(ProfilerValueError, "catch", install_signal_trigger, directory, signum=signal.SIGKILL)
        refused(ProfilerTypeError, "signal number", install_signal_trigger, directory, signum="USR2")

        # The default handler: replaced, then restored; the wakeup fd: claimed, then given back.
        trigger = install_signal_trigger(directory, seconds=1)
        assert signal.getsignal(signal.SIGUSR2) not in (signal.SIG_DFL, None) and trigger.owns_wakeup_fd
        refused(ProfilerStateError, "already installed", install_signal_trigger, directory, signum=signal.SIGUSR1)
        refused_on_a_thread(ProfilerStateError, "main thread", trigger.close)
        assert not trigger.closed
        assert trigger.close() is True and trigger.close() is True and trigger.closed
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
        assert signal.set_wakeup_fd(-1) == -1
        assert not any(thread.name == "wasmtime-gp-signal-trigger" for thread in threading.enumerate())

        # Another handler: kept unless replace=True, restored by close().
        def mine(signum, frame):
            pass

        signal.signal(signal.SIGUSR2, mine)
        refused(ProfilerStateError, "replace=True", install_signal_trigger, directory)
        assert signal.getsignal(signal.SIGUSR2) is mine
        with install_signal_trigger(directory, replace=True) as trigger:
            assert signal.getsignal(signal.SIGUSR2) is not mine
        assert trigger.closed and signal.getsignal(signal.SIGUSR2) is mine
        refused(ProfilerStateError, "replace=True", install_signal_trigger, directory, signum=signal.SIGINT)

        # A wakeup fd that another library holds stays theirs, during and after.
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd)
        with install_signal_trigger(directory, signum=signal.SIGUSR1) as trigger:
            assert not trigger.owns_wakeup_fd
        assert signal.set_wakeup_fd(-1) == write_fd
        # A handler replaced since install stays; close() does not put back the one before.
        trigger = install_signal_trigger(directory, signum=signal.SIGUSR1)
        signal.signal(signal.SIGUSR1, mine)
        assert trigger.close() is True and signal.getsignal(signal.SIGUSR1) is mine
        assert os.listdir(directory) == []
        print("ok")
        """,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr
