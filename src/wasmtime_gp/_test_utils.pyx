# cython: language_level=3
"""Test-only hooks into the native core, kept out of the production extensions (as memray's _test_utils)."""

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free
from posix.dlfcn cimport dlsym

from wasmtime_gp._core cimport Sampler
from wasmtime_gp._native.atomics cimport gp_add_int
from wasmtime_gp._native.clock cimport thread_cpu_ns
from wasmtime_gp._native.posix cimport (
    pthread_mutex_destroy, pthread_mutex_init, pthread_mutex_lock, pthread_mutex_t, pthread_mutex_unlock,
)
from wasmtime_gp._native.wasmtime_capi cimport *
from wasmtime_gp._ticker cimport ticker_clock_count as clock_count, ticker_thread_running


def callback_count(Sampler sampler) -> int:
    """Every call of the sampler's epoch callback so far, sampling or not (GIL held, takes its lock)."""
    pthread_mutex_lock(&sampler.state.lock)
    count = sampler.state.callbacks
    pthread_mutex_unlock(&sampler.state.lock)
    return count


def ticker_thread_is_running() -> bool:
    """Whether the ticker thread exists right now: none while nothing is profiled."""
    return ticker_thread_running()


def ticker_clock_count() -> int:
    """How many engines the ticker is ticking right now."""
    return clock_count()


# Benchmarks only (benchmarks/sample_cost.py): our epoch callback's parts, one at a time. A bare callback
# replaces the sampler's own on its store; the sampler's ticker subscription keeps ticking the engine.
cdef enum BarePart:
    BARE_TICKING = 0    # set a far deadline once: the engine ticks, the guest is never called back
    BARE_DEADLINE = 1   # only set the next deadline: Wasmtime's own callback path
    BARE_SAMPLE = 2     # and wasmtime_guestprofiler_sample (CPU delta 0)
    BARE_CPU_CLOCK = 3  # and a read of the thread's CPU clock, for the delta
    BARE_LOCK = 4       # and a mutex held around it all

cdef struct BareState:
    wasmtime_guestprofiler_sample_fn sample
    wasmtime_guestprofiler_t *profiler
    const wasmtime_store_t *store
    pthread_mutex_t lock
    int parts
    int refs            # the BareCallback object's and the store's
    uint64_t calls
    int64_t last_cpu_ns


cdef wasmtime_error_t *bare_callback(wasmtime_context_t *context, void *data, uint64_t *epoch_deadline_delta,
                                     wasmtime_update_deadline_kind_t *update_kind) noexcept nogil:
    cdef BareState *b = <BareState *>data
    cdef int64_t now
    cdef uint64_t delta = 0
    if b.parts >= BARE_LOCK:
        pthread_mutex_lock(&b.lock)
    if b.parts >= BARE_CPU_CLOCK:
        now = thread_cpu_ns()
        delta = <uint64_t>(now - b.last_cpu_ns) if b.last_cpu_ns else 0
        b.last_cpu_ns = now
    if b.parts >= BARE_SAMPLE:
        b.sample(b.profiler, b.store, delta)
    b.calls += 1
    if b.parts >= BARE_LOCK:
        pthread_mutex_unlock(&b.lock)
    update_kind[0] = WASMTIME_UPDATE_DEADLINE_CONTINUE
    epoch_deadline_delta[0] = 1 if b.parts >= BARE_DEADLINE else 1ULL << 48
    return NULL


cdef void bare_release(void *data) noexcept nogil:
    cdef BareState *b = <BareState *>data
    if gp_add_int(&b.refs, -1) == 0:
        pthread_mutex_destroy(&b.lock)
        free(b)


cdef class BareCallback:
    """A bare epoch callback on a started sampler's store (see BarePart). The sampler must outlive the
    store's last run: the callback samples into its Wasmtime profiler."""
    cdef BareState *state

    def __cinit__(self, Sampler sampler, int parts, size_t library_handle):
        cdef void *sample = dlsym(<void *>library_handle, b"wasmtime_guestprofiler_sample")
        cdef wasmtime_store_epoch_deadline_callback_set_fn set_callback = \
            <wasmtime_store_epoch_deadline_callback_set_fn>dlsym(
                <void *>library_handle, b"wasmtime_store_epoch_deadline_callback")
        cdef wasmtime_store_t *store
        if sample == NULL or set_callback == NULL:
            raise RuntimeError("the wasmtime C API lacks the guest profiler or epoch callbacks")
        if not sampler.running or not (BARE_TICKING <= parts <= BARE_LOCK):
            raise ValueError("a started sampler and parts in 0..4")
        self.state = <BareState *>calloc(1, sizeof(BareState))
        if self.state == NULL:
            raise MemoryError()
        pthread_mutex_init(&self.state.lock, NULL)
        self.state.sample = <wasmtime_guestprofiler_sample_fn>sample
        pthread_mutex_lock(&sampler.state.lock)
        self.state.profiler = sampler.state.wasmtime_profiler
        store = sampler.state.store
        pthread_mutex_unlock(&sampler.state.lock)
        self.state.store = store
        self.state.parts = parts
        self.state.refs = 2
        # Replacing ours drops it: the sampler sees its store gone, and its ticker subscription stays.
        set_callback(store, bare_callback, self.state, bare_release)

    @property
    def calls(self) -> int:
        """Its calls so far (read on the guest's thread, or after the guest returned)."""
        return self.state.calls

    def __dealloc__(self):
        if self.state != NULL:
            bare_release(self.state)
            self.state = NULL
