"""The exceptions wasmtime-gp raises on purpose; all derive from GuestProfilerError."""


class GuestProfilerError(Exception):
    """Base class of every error wasmtime-gp raises on purpose."""


class ProfilerTypeError(GuestProfilerError, TypeError):
    """An argument of the wrong type."""


class ProfilerValueError(GuestProfilerError, ValueError):
    """An argument of the right type with a value that cannot be profiled."""


class ClosedObjectError(ProfilerValueError):
    """A wasmtime Engine, Store or Module that was already closed."""


class EngineConfigError(ProfilerValueError):
    """The engine cannot be profiled as configured (for example, no epoch interruption)."""


class ModuleEngineError(ProfilerValueError):
    """A module that Wasmtime refuses for this store's engine (compiled by another engine)."""


class ProfilerStateError(GuestProfilerError, RuntimeError):
    """A call that the profiler's state does not allow (start twice, use after finish, ...)."""


class ProfileFormatError(GuestProfilerError, ValueError):
    """Data that is not a Wasmtime guest profile (not JSON, or not the Firefox processed format)."""


class WasmtimeABIError(GuestProfilerError, ImportError):
    """The installed wasmtime-py does not provide the C API this package binds."""


class CommandError(GuestProfilerError):
    """A command-line problem to report as one line on stderr; `exit_code` is the exit status (2: bad input)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
