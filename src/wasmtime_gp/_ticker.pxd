# The process-wide ticker: one thread advancing the epoch of every engine that has a running profiler.
from libc.stdint cimport int64_t, uint64_t

from wasmtime_gp._native.wasmtime_capi cimport (
    wasm_engine_t, wasmtime_engine_increment_epoch_fn, wasmtime_engine_clone_fn, wasm_engine_delete_fn,
)

# The ticker's timing floors, decided here and read by profiler.py as _ticker.SPIN_BELOW_NS and friends.
cpdef enum:
    # Below this interval a sleeping thread wakes too late (about 20 us on a VM): wake early and spin.
    SPIN_BELOW_NS = 50000
    # On one CPU every tick preempts the guest (a context switch, about 20 us): no faster tick than this.
    SINGLE_CPU_MIN_TICK_NS = SPIN_BELOW_NS

cdef struct EngineClock:
    EngineClock *next
    uint64_t key                   # a serial number per wasmtime.Engine object: one clock per engine
    wasm_engine_t *engine          # our own reference (Wasmtime >= 24) or wasmtime-py's (before)
    bint owns_engine
    int64_t interval_ns            # the finest interval of its subscriptions; read atomically by samplers
    int64_t next_tick_ns
    uint64_t ticks                 # read atomically by samplers
    Subscription *subscriptions

cdef struct Subscription:
    Subscription *next
    EngineClock *clock
    int64_t interval_ns
    bint spin                      # may wake early and spin (short interval, a spare CPU)
    uint64_t generation            # the process it was made in: a forked child orphans its parent's

cdef void ticker_bind(wasmtime_engine_increment_epoch_fn increment, wasmtime_engine_clone_fn clone,
                      wasm_engine_delete_fn delete) noexcept nogil
cdef Subscription *ticker_subscribe(
    uint64_t key, wasm_engine_t *engine, int64_t interval_ns, bint spin) noexcept nogil
cdef void ticker_unsubscribe(Subscription *subscription) noexcept nogil
# For _test_utils: whether the thread exists, and how many engines it ticks.
cdef bint ticker_thread_running() noexcept nogil
cdef int ticker_clock_count() noexcept nogil
