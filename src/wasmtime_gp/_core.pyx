# cython: language_level=3, boundscheck=False, wraparound=False
"""Native core of wasmtime-gp: the C API table, the probe, and the sampler behind each profiler.

Nothing here is public. `profiler.py` owns validation and the user-facing state
machine; this module owns the native memory behind it, and never takes the GIL on
the path from a tick to a sample. The ticker thread lives in `_ticker.pyx`.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset
from libc.signal cimport signal, SIGABRT, SIGKILL
from posix.resource cimport rlimit, setrlimit, RLIMIT_CORE
from posix.signal cimport kill
from posix.time cimport timespec, clock_gettime, CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID
from posix.unistd cimport fork, pipe, dup2, close, read, _exit
from posix.types cimport pid_t
from posix.wait cimport waitpid, WIFEXITED, WEXITSTATUS
from posix.dlfcn cimport dlsym

from wasmtime_gp._wasmtime_capi cimport *
from wasmtime_gp._posix cimport *
from wasmtime_gp._ticker cimport (
    Subscription, gp_load_i64, gp_load_u64, ticker_bind, ticker_subscribe, ticker_unsubscribe,
)
from libc.errno cimport errno, EINTR

# Far enough that a detached store never hits it again: 2**48 ticks is 89 years at 100 kHz.
cdef uint64_t FAR_DEADLINE_TICKS = 1ULL << 48
# How long the probe child may take before we give up on it.
cdef int PROBE_TIMEOUT_MS = 10000
cdef int PROBE_ABORT_STATUS = 70
# Host calls nested deeper than this (host -> wasm -> host ...) are still sampled, without their pending time.
cdef enum:
    HOST_DEPTH_MAX = 32


# ---------------------------------------------------------------- C API table

cdef struct CApi:
    wasmtime_guestprofiler_new_v19_fn guestprofiler_new_v19
    wasmtime_guestprofiler_new_v40_fn guestprofiler_new_v40
    wasmtime_guestprofiler_sample_fn guestprofiler_sample
    wasmtime_guestprofiler_finish_fn guestprofiler_finish
    wasmtime_guestprofiler_delete_fn guestprofiler_delete
    wasmtime_store_epoch_deadline_callback_set_fn store_epoch_deadline_callback
    wasmtime_context_set_epoch_deadline_fn context_set_epoch_deadline
    wasmtime_engine_increment_epoch_fn engine_increment_epoch
    wasmtime_engine_clone_fn engine_clone
    wasm_engine_delete_fn engine_delete
    wasm_byte_vec_delete_fn byte_vec_delete
    wasmtime_error_message_fn error_message
    wasmtime_error_delete_fn error_delete
    wasmtime_error_new_fn error_new

cdef CApi api
cdef bint api_bound = False
cdef bint new_takes_engine = False

# The symbols every supported release exports, in CApi order (the new variant is chosen by ABI).
_REQUIRED_SYMBOLS = (
    "wasmtime_guestprofiler_new",
    "wasmtime_guestprofiler_sample",
    "wasmtime_guestprofiler_finish",
    "wasmtime_guestprofiler_delete",
    "wasmtime_store_epoch_deadline_callback",
    "wasmtime_context_set_epoch_deadline",
    "wasmtime_engine_increment_epoch",
    "wasm_engine_delete",
    "wasm_byte_vec_delete",
    "wasmtime_error_message",
    "wasmtime_error_delete",
    "wasmtime_error_new",
)


cdef void *_resolve(void *handle, str name, list missing):
    cdef bytes cname = name.encode("ascii")
    cdef void *p = dlsym(handle, cname)
    if p == NULL:
        missing.append(name)
    return p


def bind(size_t library_handle, bint engine_first) -> list:
    """Resolve the C API from wasmtime-py's own library handle; return the names not found.

    Called once, at import, with the GIL held.
    """
    global api_bound, new_takes_engine
    cdef void *h = <void *>library_handle
    cdef list missing = []
    cdef void *new_fn = _resolve(h, "wasmtime_guestprofiler_new", missing)
    api.guestprofiler_sample = <wasmtime_guestprofiler_sample_fn>_resolve(h, "wasmtime_guestprofiler_sample", missing)
    api.guestprofiler_finish = <wasmtime_guestprofiler_finish_fn>_resolve(h, "wasmtime_guestprofiler_finish", missing)
    api.guestprofiler_delete = <wasmtime_guestprofiler_delete_fn>_resolve(h, "wasmtime_guestprofiler_delete", missing)
    api.store_epoch_deadline_callback = <wasmtime_store_epoch_deadline_callback_set_fn>_resolve(
        h, "wasmtime_store_epoch_deadline_callback", missing)
    api.context_set_epoch_deadline = <wasmtime_context_set_epoch_deadline_fn>_resolve(
        h, "wasmtime_context_set_epoch_deadline", missing)
    api.engine_increment_epoch = <wasmtime_engine_increment_epoch_fn>_resolve(
        h, "wasmtime_engine_increment_epoch", missing)
    api.engine_delete = <wasm_engine_delete_fn>_resolve(h, "wasm_engine_delete", missing)
    api.byte_vec_delete = <wasm_byte_vec_delete_fn>_resolve(h, "wasm_byte_vec_delete", missing)
    api.error_message = <wasmtime_error_message_fn>_resolve(h, "wasmtime_error_message", missing)
    api.error_delete = <wasmtime_error_delete_fn>_resolve(h, "wasmtime_error_delete", missing)
    api.error_new = <wasmtime_error_new_fn>_resolve(h, "wasmtime_error_new", missing)
    # Optional (Wasmtime >= 24): without it the ticker borrows wasmtime-py's engine pointer.
    api.engine_clone = <wasmtime_engine_clone_fn>dlsym(h, b"wasmtime_engine_clone")
    new_takes_engine = engine_first
    if engine_first:
        api.guestprofiler_new_v40 = <wasmtime_guestprofiler_new_v40_fn>new_fn
    else:
        api.guestprofiler_new_v19 = <wasmtime_guestprofiler_new_v19_fn>new_fn
    api_bound = not missing
    if api_bound:
        ticker_bind(api.engine_increment_epoch, api.engine_clone, api.engine_delete)
    return missing


def exports(size_t library_handle, str name) -> bool:
    """Whether the library exports `name` (for cross-checking the ABI against the version)."""
    return dlsym(<void *>library_handle, name.encode("ascii")) != NULL


def can_clone_engine() -> bool:
    return api.engine_clone != NULL


cdef str take_error_message(wasmtime_error_t *error):
    """The one door for a wasmtime_error_t: read its message and free it (GIL held)."""
    cdef wasm_name_t message
    memset(&message, 0, sizeof(message))
    api.error_message(error, &message)
    text = PyBytes_FromStringAndSize(<char *>message.data, message.size).decode("utf-8", "replace")
    api.byte_vec_delete(&message)
    api.error_delete(error)
    return text


cdef bytes finish_profiler(wasmtime_guestprofiler_t *profiler):
    """Finish (and so free) a wasmtime profiler taken out of its sampler; return its JSON (GIL held)."""
    cdef wasmtime_error_t *error
    cdef wasm_byte_vec_t out
    memset(&out, 0, sizeof(out))
    with nogil:
        error = api.guestprofiler_finish(profiler, &out)
    if error != NULL:
        raise RuntimeError(take_error_message(error))
    try:
        return PyBytes_FromStringAndSize(<char *>out.data, out.size)
    finally:
        api.byte_vec_delete(&out)


# ---------------------------------------------------------------- arguments of wasmtime_guestprofiler_new

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
        if new_takes_engine:
            return api.guestprofiler_new_v40(
                self.engine, &self.process_name, self.interval_ns, self.modules, self.count)
        return api.guestprofiler_new_v19(&self.process_name, self.interval_ns, self.modules, self.count)


cdef void _exit_on_abort(int signum) noexcept nogil:
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


# ---------------------------------------------------------------- the sampler (hot path)

cdef struct Sampler:
    pthread_mutex_t lock
    int refs                               # the NativeProfiler, and the store while our callback is set
    wasmtime_guestprofiler_t *profiler     # NULL once finished or dropped
    wasmtime_store_t *store                # NULL once the store has dropped our callback
    bint sampling                          # between start() and stop()
    bint interrupt                         # trap the guest at its next epoch check
    int64_t timeout_at_ns                  # CLOCK_MONOTONIC; 0: no timeout
    bint timed_out
    Subscription *subscription             # the shared ticker's clock for this engine, while sampling
    uint64_t callbacks                     # every call of on_epoch_deadline, sampling or not
    uint64_t samples                       # Wasmtime's samples (its table's length, across rotations)
    int64_t host_extra                     # samples host calls add to or remove from Wasmtime's table
    uint64_t interval_ns
    uint64_t sampling_ns                   # time spent inside wasmtime_guestprofiler_sample
    pthread_t last_thread
    int64_t last_cpu_ns
    bint have_last
    uint64_t last_sample_ticks             # the engine clock's ticks at the last sample: host calls count from it
    int host_depth                         # wrapped host calls in progress (nested through wasm)
    uint64_t host_pending[HOST_DEPTH_MAX]  # intervals each of them ran before calling back into wasm


cdef inline int64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int64_t thread_cpu_ns() noexcept nogil:
    cdef timespec ts
    if clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0:
        return -1
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline void take_sample(Sampler *s) noexcept nogil:
    """Record the store's current wasm stack with the CPU this thread used since its last sample (lock held)."""
    cdef pthread_t me = pthread_self()
    cdef int64_t now = thread_cpu_ns()
    cdef int64_t entered
    cdef uint64_t delta = 0
    # A CPU delta is only meaningful against a reading taken on this same thread.
    if s.have_last and pthread_equal(s.last_thread, me) and now >= s.last_cpu_ns:
        delta = <uint64_t>(now - s.last_cpu_ns)
    s.last_thread = me
    s.last_cpu_ns = now
    s.have_last = now >= 0
    entered = monotonic_ns()
    api.guestprofiler_sample(s.profiler, s.store, delta)
    s.sampling_ns += <uint64_t>(monotonic_ns() - entered)
    s.samples += 1


cdef inline uint64_t own_ticks(Sampler *s, int64_t tick_ns) noexcept nogil:
    """How many of the engine's ticks make one of this profiler's intervals (the engine ticks at the finest)."""
    return max(1, (<int64_t>s.interval_ns + tick_ns // 2) // tick_ns) if tick_ns > 0 else 1


cdef wasmtime_error_t *on_epoch_deadline(
        wasmtime_context_t *context, void *data, uint64_t *epoch_deadline_delta,
        wasmtime_update_deadline_kind_t *update_kind) noexcept nogil:
    """Wasmtime calls this on the guest's thread when the store crosses its epoch deadline. No GIL."""
    cdef Sampler *s = <Sampler *>data
    cdef bint interrupt, timed_out
    cdef uint64_t ticks, step, since
    pthread_mutex_lock(&s.lock)
    s.callbacks += 1
    if s.profiler != NULL and s.sampling and s.store != NULL and s.subscription != NULL:
        take_sample(s)
        ticks = gp_load_u64(&s.subscription.clock.ticks)
        step = own_ticks(s, gp_load_i64(&s.subscription.clock.interval_ns))
        # Inside a host call, wasm checks its epoch as soon as it is called back into: the whole
        # intervals before that were the host function's.
        since = ticks - s.last_sample_ticks if ticks >= s.last_sample_ticks else 0
        if 0 < s.host_depth <= HOST_DEPTH_MAX and since >= 2 * step:
            s.host_pending[s.host_depth - 1] += since // step - 1
        s.last_sample_ticks = ticks
        epoch_deadline_delta[0] = step
    else:
        # Stopped or finished: no more callbacks until start() sets a near deadline again.
        epoch_deadline_delta[0] = FAR_DEADLINE_TICKS
    interrupt = s.interrupt
    s.interrupt = False
    timed_out = s.sampling and s.timeout_at_ns != 0 and monotonic_ns() >= s.timeout_at_ns
    if timed_out:
        s.timed_out = True
        s.timeout_at_ns = 0
    pthread_mutex_unlock(&s.lock)
    update_kind[0] = WASMTIME_UPDATE_DEADLINE_CONTINUE
    if timed_out:
        return api.error_new(b"wasm guest timed out (wasmtime-gp timeout)")
    if interrupt:
        return api.error_new(b"interrupted by wasmtime-gp")
    return NULL


cdef void sampler_release(Sampler *s) noexcept nogil:
    """Drop one reference; the last one frees the sampler. Any thread, no GIL."""
    cdef int refs
    cdef wasmtime_guestprofiler_t *orphan = NULL
    pthread_mutex_lock(&s.lock)
    s.refs -= 1
    refs = s.refs
    if refs == 0:
        orphan = s.profiler
        s.profiler = NULL
    pthread_mutex_unlock(&s.lock)
    if refs == 0:
        if orphan != NULL:
            api.guestprofiler_delete(orphan)
        pthread_mutex_destroy(&s.lock)
        free(s)


cdef void on_callback_dropped(void *data) noexcept nogil:
    """Wasmtime calls this when the store is deleted or our callback is replaced. No GIL."""
    cdef Sampler *s = <Sampler *>data
    pthread_mutex_lock(&s.lock)
    s.store = NULL
    s.sampling = False
    pthread_mutex_unlock(&s.lock)
    sampler_release(s)


# ---------------------------------------------------------------- the Python-facing native profiler

cdef class NativeProfiler:
    """One wasmtime guest profiler attached to one store. Methods hold the GIL."""
    cdef Sampler *sampler
    cdef Subscription *subscription   # to the shared ticker, while running
    cdef uint64_t engine_key
    cdef bint spin_ticker
    cdef readonly int64_t ticker_interval_ns
    cdef uint64_t ticks_at_start
    cdef int64_t started_ns
    cdef readonly uint64_t ticks_seen  # ticks of the engine's clock while this profiler ran
    cdef readonly int64_t running_ns   # and for how long it ran
    cdef bint owns_engine
    cdef wasm_engine_t *engine
    cdef list host_calls               # host calls that got samples, until their profile is finished
    cdef int64_t timeout_left_ns       # what is left of the timeout while stopped (0: none)
    cdef tuple completed               # finish()'s (JSON, host calls, Wasmtime's samples), kept for any caller
    cdef str finish_error              # or why Wasmtime could not write the profile

    def __cinit__(self, size_t engine_ptr, uint64_t engine_key, size_t store_ptr, bytes process_name,
                  uint64_t interval_ns, list modules, bint spin_ticker, int64_t ticker_interval_ns,
                  int64_t timeout_ns):
        if not api_bound:
            raise RuntimeError("the wasmtime C API is not bound")
        cdef _NewArgs args = _NewArgs(engine_ptr, process_name, interval_ns, modules)
        self.sampler = <Sampler *>calloc(1, sizeof(Sampler))
        if self.sampler == NULL:
            raise MemoryError()
        pthread_mutex_init(&self.sampler.lock, NULL)
        self.sampler.refs = 1
        self.sampler.interval_ns = interval_ns
        self.sampler.store = <wasmtime_store_t *>store_ptr
        with nogil:
            self.sampler.profiler = args.call_new()
        self.host_calls = []
        self.timeout_left_ns = timeout_ns
        self.engine_key = engine_key
        self.spin_ticker = spin_ticker
        self.ticker_interval_ns = ticker_interval_ns
        # Our own reference keeps the engine alive even if wasmtime-py's Engine is closed.
        if api.engine_clone != NULL:
            self.engine = api.engine_clone(<const wasm_engine_t *>engine_ptr)
            self.owns_engine = True
        else:
            self.engine = <wasm_engine_t *>engine_ptr

        # The store holds the second reference until it drops our callback.
        self.sampler.refs += 1
        api.store_epoch_deadline_callback(
            <wasmtime_store_t *>store_ptr, on_epoch_deadline, self.sampler, on_callback_dropped)

    def __dealloc__(self):
        cdef wasmtime_guestprofiler_t *unfinished = NULL
        if self.sampler != NULL:
            self.stop()
            pthread_mutex_lock(&self.sampler.lock)
            unfinished = self.sampler.profiler
            self.sampler.profiler = NULL
            pthread_mutex_unlock(&self.sampler.lock)
            if unfinished != NULL:
                api.guestprofiler_delete(unfinished)
            sampler_release(self.sampler)
            self.sampler = NULL
        if self.owns_engine and self.engine != NULL:
            api.engine_delete(self.engine)
            self.engine = NULL

    # start(), stop() and finish() run no Python code, so a Python signal handler cannot run in the middle
    # of one (it runs between bytecodes of the main thread); each is idempotent.

    def start(self, size_t context_ptr) -> bool:
        """Begin sampling; False if finished (nothing to start). A no-op while running.

        With a timeout left, the guest traps once that much wall-clock time has passed from now.
        """
        cdef Sampler *s = self.sampler
        cdef Subscription *subscription
        cdef int64_t timeout_ns = self.timeout_left_ns
        if self.completed is not None or self.finish_error is not None:
            return False
        if self.subscription != NULL:
            return True
        subscription = ticker_subscribe(self.engine_key, self.engine, self.ticker_interval_ns, self.spin_ticker)
        if subscription == NULL:
            raise OSError("could not start the ticker thread")
        self.subscription = subscription
        self.ticks_at_start = gp_load_u64(&subscription.clock.ticks)
        self.started_ns = monotonic_ns()
        pthread_mutex_lock(&s.lock)
        s.subscription = subscription
        s.sampling = s.store != NULL and s.profiler != NULL
        s.timeout_at_ns = monotonic_ns() + timeout_ns if timeout_ns > 0 else 0
        s.last_thread = pthread_self()
        s.last_cpu_ns = thread_cpu_ns()
        s.have_last = s.last_cpu_ns >= 0
        s.last_sample_ticks = self.ticks_at_start
        pthread_mutex_unlock(&s.lock)
        if self.store_attached:
            # Stopped, the store waited at a far deadline; sample from the next tick on.
            api.context_set_epoch_deadline(<wasmtime_context_t *>context_ptr, 1)
        return True

    @property
    def running(self) -> bool:
        return self.subscription != NULL

    @property
    def finished(self) -> bool:
        return self.completed is not None or self.finish_error is not None

    def interrupt(self) -> None:
        """Trap the guest at its next epoch check (after taking that sample). Safe from any thread."""
        pthread_mutex_lock(&self.sampler.lock)
        self.sampler.interrupt = True
        pthread_mutex_unlock(&self.sampler.lock)
        # One tick of our own: the deadline may be far (stopped) or the ticker slow.
        api.engine_increment_epoch(self.engine)

    def after_fork_in_child(self) -> None:
        """In a forked child: stop without the ticker thread, which the child does not have (one thread runs).

        The sampler's lock may have been held by a thread that did not survive the fork: it is made anew.
        """
        pthread_mutex_init(&self.sampler.lock, NULL)
        self.sampler.sampling = False
        self.sampler.subscription = NULL
        self.sampler.timeout_at_ns = 0
        self.sampler.host_depth = 0
        if self.subscription != NULL:
            ticker_unsubscribe(self.subscription)  # made in the parent: only freed
            self.subscription = NULL

    def stop(self) -> bool:
        """Stop sampling and leave the ticker, keeping what is left of the timeout; whether it was running."""
        cdef Subscription *subscription = self.subscription
        pthread_mutex_lock(&self.sampler.lock)
        if self.sampler.timeout_at_ns != 0:
            self.timeout_left_ns = max(1, self.sampler.timeout_at_ns - monotonic_ns())
        self.sampler.timeout_at_ns = 0
        self.sampler.sampling = False
        self.sampler.subscription = NULL
        pthread_mutex_unlock(&self.sampler.lock)
        if subscription != NULL:
            self.subscription = NULL
            self.ticks_seen += gp_load_u64(&subscription.clock.ticks) - self.ticks_at_start
            self.running_ns += monotonic_ns() - self.started_ns
            with nogil:
                ticker_unsubscribe(subscription)
            return True
        return False

    def finish(self) -> tuple:
        """Stop, finish the wasmtime profiler; return (its JSON, the host calls anchored in it, Wasmtime's
        sample count). Kept: every later call returns the same. RuntimeError if Wasmtime failed."""
        cdef wasmtime_guestprofiler_t *p
        if self.completed is None and self.finish_error is None:
            self.stop()
            pthread_mutex_lock(&self.sampler.lock)
            p = self.sampler.profiler
            self.sampler.profiler = NULL
            end = self.sampler.samples
            pthread_mutex_unlock(&self.sampler.lock)
            if p == NULL:
                self.finish_error = "the profiler was already finished"
            else:
                try:
                    self.completed = (finish_profiler(p), self.take_host_calls(end), end)
                except RuntimeError as exc:
                    self.finish_error = str(exc)
        if self.finish_error is not None:
            raise RuntimeError(self.finish_error)
        return self.completed

    def rotate(self, bytes process_name, list modules) -> tuple:
        """Swap in a new wasmtime profiler and finish the old one; return (its JSON, the host calls anchored
        in it, Wasmtime's samples so far).

        The swap happens under the sampler's lock, so every sample lands in exactly one profile.
        Any thread; the modules must be open (the caller checks).
        """
        cdef _NewArgs args = _NewArgs(<size_t>self.engine, process_name, self.sampler.interval_ns, modules)
        cdef wasmtime_guestprofiler_t *fresh
        cdef wasmtime_guestprofiler_t *old
        cdef uint64_t samples
        with nogil:
            fresh = args.call_new()
        pthread_mutex_lock(&self.sampler.lock)
        old = self.sampler.profiler
        if old != NULL:
            self.sampler.profiler = fresh
        samples = self.sampler.samples
        pthread_mutex_unlock(&self.sampler.lock)
        if old == NULL:
            api.guestprofiler_delete(fresh)
            raise RuntimeError("the profiler was already finished")
        return finish_profiler(old), self.take_host_calls(samples), samples

    # -- host calls (see host_calls.py): entered and left on the guest's thread, GIL held

    def host_call(self, function, tuple args, str name, size_t context_ptr):
        """Call a wrapped host function on the guest's thread, its time recorded as a host call."""
        entered = self.host_enter()
        if entered is None:
            return function(*args)
        try:
            return function(*args)
        finally:
            self.host_exit(entered, name, context_ptr)

    cdef host_enter(self):
        """A host function starts: return what host_exit() needs, or None when not sampling."""
        cdef Sampler *s = self.sampler
        if self.subscription == NULL:
            return None
        pthread_mutex_lock(&s.lock)
        samples = s.samples
        if s.host_depth < HOST_DEPTH_MAX:
            s.host_pending[s.host_depth] = 0
        s.host_depth += 1
        pthread_mutex_unlock(&s.lock)
        return (monotonic_ns(), samples)

    cdef host_exit(self, tuple entered, str name, size_t context_ptr):
        """A host function returns (or raises): give it the samples of the intervals it spanned.

        The ticker kept ticking while Python ran. Every whole interval since the last sample (taken
        before the call, or by wasm it called back into) becomes a sample of this call: wasm checks
        its epoch at every loop head and call, so ticks still pending when the call began came while
        wasmtime-py was entering it. One real sample, taken here while the caller's wasm frames are
        still on the stack, records the stack they share (the anchor); the rest are added when the
        profile is finished (_host_frames.py).
        """
        cdef Sampler *s = self.sampler
        cdef Subscription *subscription = self.subscription
        cdef int64_t ended = monotonic_ns()
        cdef int64_t started = entered[0]
        cdef uint64_t samples_before = entered[1]
        cdef uint64_t ticks = 0, step = 1, since, own, pending = 0, nested, anchor
        if subscription != NULL:
            ticks = gp_load_u64(&subscription.clock.ticks)
            step = own_ticks(s, gp_load_i64(&subscription.clock.interval_ns))
        pthread_mutex_lock(&s.lock)
        if s.host_depth > 0:  # 0 after a fork from inside a host call: the child starts the count afresh
            s.host_depth -= 1
            if s.host_depth < HOST_DEPTH_MAX:
                pending = s.host_pending[s.host_depth]
        if (subscription == NULL or not (s.sampling and s.profiler != NULL and s.store != NULL)
                or s.samples < samples_before):
            pthread_mutex_unlock(&s.lock)
            return
        since = ticks - s.last_sample_ticks if ticks >= s.last_sample_ticks else 0
        own = since // step
        nested = s.samples - samples_before
        if own + pending == 0 and nested == 0:
            pthread_mutex_unlock(&s.lock)
            return
        anchor = s.samples
        take_sample(s)
        # The anchor is one of the call's samples; without samples of its own it only marks the stack.
        s.host_extra += <int64_t>(own + pending) - 1
        # Keep the part of an interval not yet sampled, and have the caller's wasm sample when it is
        # up: without this, it would take a sample for ticks just given to this call.
        s.last_sample_ticks += own * step
        pthread_mutex_unlock(&s.lock)
        if own:
            api.context_set_epoch_deadline(<wasmtime_context_t *>context_ptr, step - (since - own * step))
        self.host_calls.append((anchor, own + pending, ended - started, name, samples_before))

    cdef list take_host_calls(self, uint64_t before):
        """Remove and return the host calls whose anchor sample has an index below `before`."""
        taken = [call for call in self.host_calls if call[0] < before]
        self.host_calls = [call for call in self.host_calls if call[0] >= before]
        return taken

    cdef uint64_t _read(self, uint64_t *field):
        pthread_mutex_lock(&self.sampler.lock)
        value = field[0]
        pthread_mutex_unlock(&self.sampler.lock)
        return value

    @property
    def sample_count(self) -> int:
        """Samples taken so far, host-call samples included."""
        pthread_mutex_lock(&self.sampler.lock)
        value = self.sampler.samples + self.sampler.host_extra
        pthread_mutex_unlock(&self.sampler.lock)
        return value

    @property
    def wasmtime_sample_count(self) -> int:
        """Samples in Wasmtime's tables (across rotations): the index the next one will have."""
        return self._read(&self.sampler.samples)

    @property
    def callback_count(self) -> int:
        return self._read(&self.sampler.callbacks)

    @property
    def sampling_ns(self) -> int:
        return self._read(&self.sampler.sampling_ns)

    @property
    def timed_out(self) -> bool:
        pthread_mutex_lock(&self.sampler.lock)
        value = self.sampler.timed_out
        pthread_mutex_unlock(&self.sampler.lock)
        return value

    @property
    def store_attached(self) -> bool:
        """False once the store was deleted or another epoch-deadline callback replaced ours."""
        pthread_mutex_lock(&self.sampler.lock)
        attached = self.sampler.store != NULL
        pthread_mutex_unlock(&self.sampler.lock)
        return attached
