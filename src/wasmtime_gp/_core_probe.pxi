# Part of _core.pyx: the arguments of wasmtime_guestprofiler_new, and trying it in a forked child first.

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport errno, EINTR
from libc.signal cimport signal, SIGABRT, SIGKILL
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free
from posix.resource cimport rlimit, setrlimit, RLIMIT_CORE
from posix.signal cimport kill
from posix.types cimport pid_t
from posix.unistd cimport fork, pipe, dup2, close, read, _exit
from posix.wait cimport waitpid, WIFEXITED, WEXITSTATUS

from wasmtime_gp._native.posix cimport poll, pollfd, POLLIN

# How long the probe child may take before we give up on it.
cdef int PROBE_TIMEOUT_MS = 10000
cdef int PROBE_ABORT_STATUS = 70


cdef class _NewArgs:
    """The C arrays for wasmtime_guestprofiler_new, kept alive with the bytes they point into."""
    cdef wasm_name_t process_name
    cdef wasm_name_t *names
    cdef wasmtime_guestprofiler_modules_t *modules
    cdef size_t count
    cdef const wasm_engine_t *engine
    cdef uint64_t interval_ns
    cdef list _keep

    def __cinit__(self, size_t engine_ptr, bytes process_name, uint64_t interval_ns, list modules):
        cdef size_t i
        cdef bytes name
        self._keep = [process_name]
        self.engine = <const wasm_engine_t *>engine_ptr
        self.interval_ns = interval_ns
        self.process_name.size = len(process_name)
        self.process_name.data = <unsigned char *><char *>process_name
        self.count = len(modules)
        self.names = <wasm_name_t *>calloc(self.count + 1, sizeof(wasm_name_t))
        self.modules = <wasmtime_guestprofiler_modules_t *>calloc(
            self.count + 1, sizeof(wasmtime_guestprofiler_modules_t))
        if self.names == NULL or self.modules == NULL:
            raise MemoryError()
        for i in range(self.count):
            name, module_ptr = modules[i]
            self._keep.append(name)
            self.names[i].size = len(name)
            self.names[i].data = <unsigned char *><char *>name
            self.modules[i].name = &self.names[i]
            self.modules[i].mod = <const wasmtime_module_t *><size_t>module_ptr

    def __dealloc__(self):
        free(self.names)
        free(self.modules)

    cdef wasmtime_guestprofiler_t *call_new(self) noexcept nogil:
        """Call wasmtime_guestprofiler_new (any thread, or the probe child; no GIL needed)."""
        if new_takes_engine:
            return api.guestprofiler_new_v40(
                self.engine, &self.process_name, self.interval_ns, self.modules, self.count)
        return api.guestprofiler_new_v19(&self.process_name, self.interval_ns, self.modules, self.count)


cdef void _exit_on_abort(int signum) noexcept nogil:
    """SIGABRT handler of the probe child (its only thread, no GIL): leave with the refusal status."""
    _exit(PROBE_ABORT_STATUS)


def probe_new(size_t engine_ptr, bytes process_name, uint64_t interval_ns, list modules):
    """Call wasmtime_guestprofiler_new in a forked child; return (accepted, what the child printed).

    Wasmtime panics (aborting the process) on inputs it rejects, such as a module of
    another engine; the child takes that abort instead of the caller. The child runs
    only C code and leaves with _exit. Called with the GIL held; waits without it.
    """
    cdef _NewArgs args = _NewArgs(engine_ptr, process_name, interval_ns, modules)
    cdef int fds[2]
    cdef pid_t pid
    cdef rlimit no_core
    if pipe(fds) != 0:
        raise OSError("pipe() failed for the wasmtime probe")
    pid = fork()
    if pid == 0:
        # Child: no core file, the panic text into our pipe, and out without running any handler.
        close(fds[0])
        no_core.rlim_cur = 0
        no_core.rlim_max = 0
        setrlimit(RLIMIT_CORE, &no_core)
        signal(SIGABRT, _exit_on_abort)
        dup2(fds[1], 2)
        api.guestprofiler_delete(args.call_new())
        _exit(0)
    close(fds[1])
    if pid < 0:
        close(fds[0])
        raise OSError("fork() failed for the wasmtime probe")
    cdef char buf[4096]
    cdef char overflow[512]
    cdef size_t got = 0
    cdef ssize_t n
    cdef int status = 0
    cdef int waited_ms = 0
    cdef pollfd pfd
    cdef bint timed_out = False
    with nogil:
        pfd.fd = fds[0]
        pfd.events = POLLIN
        while True:
            if poll(&pfd, 1, 100) == 0:
                waited_ms += 100
                if waited_ms >= PROBE_TIMEOUT_MS:
                    timed_out = True
                    kill(pid, SIGKILL)
                    break
                continue
            # Keep the first 4 KiB; drain the rest so the child never blocks on a full pipe.
            if got < sizeof(buf):
                n = read(fds[0], buf + got, sizeof(buf) - got)
            else:
                n = read(fds[0], overflow, sizeof(overflow))
            if n == 0:
                break
            if n < 0:
                if errno == EINTR:
                    continue
                break
            if got < sizeof(buf):
                got += n
        close(fds[0])
        waitpid(pid, &status, 0)
    text = PyBytes_FromStringAndSize(buf, got).decode("utf-8", "replace")
    if timed_out:
        return None, text
    return WIFEXITED(status) and WEXITSTATUS(status) == 0, text
