"""A signal trigger for services without HTTP: `kill -USR2 PID` writes a capture of every tracked store.

    from wasmtime_gp import live
    from wasmtime_gp.signal_trigger import install_signal_trigger

    live.track(store, [module])                                    # where each store is made
    trigger = install_signal_trigger("/var/lib/app/profiles", seconds=10)   # once, on the main thread
    ...
    $ kill -USR2 <pid>    # 10 s later: /var/lib/app/profiles/wasm-<pid>-<UTC time>.json

How it wakes. The signal handler does no work: it writes one constant byte to a non-blocking pipe (no
lock, no allocation), and a daemon thread started at install, blocked reading that pipe, runs
`live.capture()` and writes the file. Python runs a signal's handler on the main thread, between bytecodes: a
main thread inside one long guest call runs it only when the call returns. So, unless told not to, the
trigger also makes the pipe the process's signal wakeup fd (`signal.set_wakeup_fd`): CPython's C-level
handler writes the signal's number there the moment the signal arrives, whatever the main thread is doing,
and the thread wakes at once. The byte the handler writes later for the same signal is recognised as such,
not taken for a second signal. There is one wakeup fd per process: if another library holds it at install
(asyncio's `add_signal_handler`, Trio, Twisted), the trigger leaves it alone and wakes when the main thread
runs the handler; if one takes it later, the handler's byte keeps the trigger working that way.

One trigger per process. A forked child gets its own: a new pipe and thread, files named with its own pid.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import weakref
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Literal, Union

from wasmtime_gp import _checks, _files, live
from wasmtime_gp._errors import ProfilerStateError, ProfilerTypeError, ProfilerValueError

Format = Literal["firefox", "pprof"]
_SUFFIXES = {"firefox": ".json", "pprof": ".pb.gz"}
_Handler = Union[Callable[[int, Union[FrameType, None]], Any], int, signal.Handlers, None]

# Bytes in the pipe: the signal's number, written by CPython's C-level handler (the wakeup fd); _HANDLED,
# written by our Python handler; _STOP, written by close(). A wakeup fd also carries the numbers of the
# process's other Python-handled signals: the thread skips them.
_HANDLED = b"\x00"
_STOP = b"\xff"
CLOSE_TIMEOUT = 10.0

_current: SignalTrigger | None = None  # the installed trigger, until close()
_pipes: weakref.WeakSet[SignalTrigger] = weakref.WeakSet()  # triggers whose pipe may still be open


class SignalTrigger:
    """An installed signal trigger (see `install_signal_trigger`); `close()` uninstalls it.

    `directory`, `seconds`, `signum` (`signal_name`) and `format` as installed; `captures`: the profiles it
    wrote, `notes`: the notes it wrote instead; `owns_wakeup_fd`, `closed`.
    """

    def __init__(
        self, directory: Path, seconds: float, signum: int, format: Format, previous: _Handler
    ) -> None:
        self.directory = directory
        self.seconds = seconds
        self.signum = signum
        self.format: Format = format
        self.signal_name = _signal_name(signum)
        self.captures = 0  # profiles written
        self.notes = 0  # notes written instead of a profile
        self._previous = previous
        self._handler = self._on_signal  # one bound method: getsignal() must find this very object
        self._pid = os.getpid()
        self._read_fd = -1
        self._wake_fd = -1
        self._owns_wakeup_fd = False
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def owns_wakeup_fd(self) -> bool:
        """Whether the process's signal wakeup fd is this trigger's: then it wakes when the signal arrives,
        not when the main thread next runs Python code."""
        return self._owns_wakeup_fd and not self._closed

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # The Python-level handler, on the main thread: one byte into a non-blocking pipe, nothing else. The
        # pid check: in a forked child, until the fork hook gives it its own pipe, the fd is the parent's.
        fd = self._wake_fd
        if fd >= 0 and os.getpid() == self._pid:
            try:
                os.write(fd, _HANDLED)
            except OSError:  # full: the thread has plenty to wake for already
                pass

    def _arm(self) -> None:
        """A new pipe and a new thread reading it (at install, and in a forked child)."""
        read_fd, wake_fd = os.pipe()
        _pipes.add(self)
        self._read_fd = read_fd
        os.set_blocking(wake_fd, False)  # the handlers must never block; set_wakeup_fd requires it too
        self._thread = threading.Thread(
            target=self._serve, args=(read_fd,), name="wasmtime-gp-signal-trigger", daemon=True
        )
        try:
            self._thread.start()
        except BaseException:
            self._read_fd = -1
            os.close(read_fd)
            os.close(wake_fd)
            raise
        self._wake_fd = wake_fd

    def _claim_wakeup_fd(self) -> None:
        previous = signal.set_wakeup_fd(self._wake_fd, warn_on_full_buffer=False)
        if previous == -1:
            self._owns_wakeup_fd = True
        else:  # another library's: it stays theirs
            signal.set_wakeup_fd(previous)
            self._owns_wakeup_fd = False

    def _release_wakeup_fd(self, ours: int) -> None:
        if not self._owns_wakeup_fd:
            return
        current = signal.set_wakeup_fd(-1)
        if current not in (ours, -1):  # taken over since: theirs now, and it stays
            try:
                signal.set_wakeup_fd(current)
            except ValueError:  # closed or made blocking meanwhile: nothing to give back
                pass

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Restore the handler the signal had before (unless something replaced ours since: then that stays),
        give back the wakeup fd, stop the thread, waiting at most `timeout` seconds: a capture under way is
        finished and written first. Return whether the thread ended. Idempotent; from the main thread."""
        global _current
        timeout = float(timeout)
        if not self._closed:
            if threading.current_thread() is not threading.main_thread():
                raise ProfilerStateError(
                    "close() the signal trigger from the main thread: only there can Python restore a handler"
                )
            self._closed = True
            if _current is self:
                _current = None
            if signal.getsignal(self.signum) is self._handler:
                signal.signal(self.signum, self._previous)
            wake_fd, self._wake_fd = self._wake_fd, -1
            if wake_fd >= 0:
                self._release_wakeup_fd(wake_fd)
                try:
                    os.write(wake_fd, _STOP)  # wakes the thread even if another copy of the pipe stays open
                except OSError:
                    pass
                os.close(wake_fd)  # and then it reads the end of the pipe
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, timeout))
            return not thread.is_alive()
        return thread is None

    def __enter__(self) -> SignalTrigger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "installed"
        what = f"{self.signal_name}: {self.seconds:g} s, {self.format}"
        return f"<SignalTrigger {state} {what}, into {self.directory}>"

    # ---- the thread

    def _serve(self, read_fd: int) -> None:
        # Counts the signals whose wakeup byte came but whose handler's byte has not: when it comes, it is
        # that signal again (the handler runs once for several signals that arrive before it: a surplus
        # can stay, and would hide one signal if another library took the wakeup fd later).
        unmatched = 0

        def requests(data: bytes) -> int:
            nonlocal unmatched
            count = 0
            for byte in data:
                if byte == self.signum:
                    unmatched += 1
                    count += 1
                elif byte == _HANDLED[0]:
                    if unmatched:
                        unmatched -= 1
                    else:
                        count += 1
            return count

        try:
            while True:
                try:
                    data = os.read(read_fd, 512)
                except OSError:
                    return
                if not data or self._closed_in_this_process():
                    return
                if not requests(data):
                    continue
                self._capture()
                # What came meanwhile (one capture at a time): counted, so that a handler's late byte is
                # still matched, and dropped.
                data, ended = _drain(read_fd)
                if self._closed_in_this_process():
                    return
                ignored = requests(data)
                if ignored:
                    self._say(
                        f"{self.signal_name} came {'again ' if ignored == 1 else f'{ignored} more times '}"
                        "during the capture: ignored (one capture at a time; send it again for another)"
                    )
                if ended:
                    return
        finally:
            if self._read_fd == read_fd:
                self._read_fd = -1  # before closing: a fork meanwhile must not close a reused number
            try:
                os.close(read_fd)
            except OSError:
                pass

    def _closed_in_this_process(self) -> bool:
        return self._closed or os.getpid() != self._pid

    def _capture(self) -> None:
        tracked = live.tracked_count()
        self._say(f"capturing every tracked store ({tracked}) for {self.seconds:g} s into {self.directory}")
        started = time.time()
        try:
            capture = live.capture(self.seconds)
        except ProfilerStateError as exc:
            self._note(started, f"no profile: {exc}; send the signal again when it has ended")
            return
        except Exception as exc:  # noqa: BLE001 - the thread must survive and tell what went wrong
            self._note(started, f"no profile: the capture failed: {type(exc).__name__}: {exc}")
            return
        if not capture.stores:
            tracked = live.tracked_count()
            why = (
                f"none of the {tracked} tracked stores ran wasm during the {self.seconds:g} s capture"
                if tracked
                else "no store is tracked: track each with wasmtime_gp.live.track(store, modules) where it "
                "is made"
            )
            self._note(capture.started, f"no profile: {why}")
            return
        target = self._path(capture.started, _SUFFIXES[self.format])
        try:
            data = capture.firefox() if self.format == "firefox" else capture.pprof()
            _files.atomic_write(target, data)
        except Exception as exc:  # noqa: BLE001 - a full disk or a removed directory: say so, go on serving
            self._note(capture.started, f"no profile: could not write {target}: {type(exc).__name__}: {exc}")
            return
        self.captures += 1
        self._say(
            f"wrote {target}: {capture.sample_count} samples from {len(capture.stores)} of "
            f"{live.tracked_count()} tracked stores"
        )

    def _path(self, started: float, suffix: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started))
        return self.directory / f"wasm-{os.getpid()}-{stamp}.{int(started % 1 * 1e6):06d}Z{suffix}"

    def _note(self, started: float, message: str) -> None:
        """Why there is no profile, in a .txt where the profile would be and as one line on stderr."""
        target = self._path(started, ".txt")
        text = (
            f"{message}\n\npid {os.getpid()}, {self.signal_name}, capture of {self.seconds:g} s from "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(started))}\n"
        )
        try:
            _files.atomic_write(target, text.encode())
        except Exception as exc:  # noqa: BLE001 - stderr still tells
            self._say(f"{message} (and could not write {target}: {type(exc).__name__}: {exc})")
            return
        self.notes += 1
        self._say(f"{message} (noted in {target})")

    def _say(self, message: str) -> None:
        stream = sys.stderr
        if stream is None:
            return
        try:
            print(f"wasmtime-gp: {self.signal_name} (pid {os.getpid()}): {message}", file=stream, flush=True)
        except (OSError, ValueError):  # a closed or broken stderr
            pass

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new pipe, wakeup fd and thread (the parent's thread did not come along)."""
        parent_wake_fd = self._wake_fd
        self._wake_fd = -1
        self._pid = os.getpid()
        self._thread = None
        self._arm()
        if self._owns_wakeup_fd:
            current = signal.set_wakeup_fd(self._wake_fd, warn_on_full_buffer=False)
            if current != parent_wake_fd:  # taken over in the parent before the fork: it stays theirs
                signal.set_wakeup_fd(current)
                self._owns_wakeup_fd = False


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # a real-time signal
        return f"signal {signum}"


def _drain(fd: int) -> tuple[bytes, bool]:
    """Everything in the pipe now, without waiting; and whether its write end is closed."""
    chunks: list[bytes] = []
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                return b"".join(chunks), False
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
    finally:
        os.set_blocking(fd, True)


def install_signal_trigger(
    directory: str | os.PathLike[str],
    *,
    seconds: float = 10.0,
    signum: int = signal.SIGUSR2,
    format: Format = "firefox",
    replace: bool = False,
    claim_wakeup_fd: bool = True,
) -> SignalTrigger:
    """On `signum`, capture every tracked store (`live.capture(seconds)`) and write it into `directory`.

    Each signal acted on leaves one file, `wasm-<pid>-<UTC start>` + `.json` (Firefox, a thread per store) or
    `.pb.gz` (pprof), or, when there is no profile (no tracked store ran wasm, another capture was running,
    the write failed), a `.txt` saying why; and a line on stderr. A signal that arrives during a capture is
    ignored (a stderr line says so). From the main thread; one trigger per process. The signal must have its
    default handler, or `replace=True` replaces the one it has until `close()` (it is not called meanwhile).
    `claim_wakeup_fd`: take the process's signal wakeup fd if no one holds it (see the module's docstring).
    """
    global _current
    if isinstance(signum, bool) or not isinstance(signum, int):
        raise ProfilerTypeError(f"signum must be a signal number, not {type(signum).__name__}")
    if signum not in signal.valid_signals() or signum in (signal.SIGKILL, signal.SIGSTOP):
        raise ProfilerValueError(f"signum {signum} is not a signal that a handler can catch")
    signum = int(signum)
    if not isinstance(format, str) or format not in _SUFFIXES:
        raise ProfilerValueError(f"format must be 'firefox' or 'pprof', not {format!r}")
    seconds = _checks.seconds(seconds, "seconds", 0.0, live.MAX_CAPTURE_SECONDS)
    if not isinstance(directory, (str, os.PathLike)):
        raise ProfilerTypeError(f"directory must be a path, not {type(directory).__name__}")
    target = Path(os.path.abspath(directory))  # the working directory may change later
    if not target.is_dir():
        raise ProfilerValueError(f"{target} is not a directory")
    if not os.access(target, os.W_OK | os.X_OK):
        raise ProfilerValueError(f"{target} is not writable by this process")
    if format == "pprof":
        from wasmtime_gp.exports.pprof import _profile_class

        _profile_class()  # raises now, not at the first signal, if the pprof extra is missing
    if threading.current_thread() is not threading.main_thread():
        raise ProfilerStateError(
            "install_signal_trigger() must be called from the main thread: Python installs signal handlers "
            "there only"
        )
    name = _signal_name(signum)
    if _current is not None:
        raise ProfilerStateError(
            f"a signal trigger is already installed ({_current.signal_name}): close() it first"
        )
    previous = signal.getsignal(signum)
    if previous is None:
        raise ProfilerStateError(
            f"{name} has a handler installed outside Python: it could not be restored, so it is not replaced"
        )
    if previous is not signal.SIG_DFL and not replace:
        raise ProfilerStateError(
            f"{name} already has a handler ({previous!r}); pass replace=True to replace it until close() "
            "(it is not called meanwhile), or choose another signal"
        )
    trigger = SignalTrigger(target, seconds, signum, format, previous)
    trigger._arm()
    try:
        if claim_wakeup_fd:
            trigger._claim_wakeup_fd()
        signal.signal(signum, trigger._handler)
    except BaseException:
        trigger._closed = True  # the thread ends at the end of the pipe
        wake_fd, trigger._wake_fd = trigger._wake_fd, -1
        trigger._release_wakeup_fd(wake_fd)
        os.close(wake_fd)
        raise
    _current = trigger
    return trigger


def _after_fork_in_child() -> None:
    # The pipes of closed triggers whose thread had not ended yet: the parent's, shut here.
    for trigger in list(_pipes):
        if trigger is not _current:
            for fd in (trigger._read_fd, trigger._wake_fd):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            trigger._read_fd = trigger._wake_fd = -1
            _pipes.discard(trigger)
    if _current is not None:
        inherited = (_current._read_fd, _current._wake_fd)
        try:
            _current._after_fork_in_child()
        except Exception as exc:  # noqa: BLE001 - a fork hook must not raise: the child goes on, untriggered
            _current._wake_fd = -1
            if _current._owns_wakeup_fd:
                signal.set_wakeup_fd(-1)
                _current._owns_wakeup_fd = False
            _current._say(f"not armed in this forked child: {type(exc).__name__}: {exc}")
        for fd in inherited:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


os.register_at_fork(after_in_child=_after_fork_in_child)
