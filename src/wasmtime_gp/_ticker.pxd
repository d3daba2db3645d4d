# The process-wide ticker: one thread advancing the epoch of every engine that has a running profiler.
from libc.stdint cimport int64_t, uint64_t

from wasmtime_gp._wasmtime_capi cimport (
    wasm_engine_t, wasmtime_engine_increment_epoch_fn, wasmtime_engine_clone_fn, wasm_engine_delete_fn,
)

cdef extern from "_atomics.h" nogil:
    int64_t gp_load_i64(const int64_t *p)
    void gp_store_i64(int64_t *p, int64_t v)
    uint64_t gp_load_u64(const uint64_t *p)
    void gp_add_u64(uint64_t *p, uint64_t v)

cdef struct EngineClock:
    EngineClock *next
    uint64_t key                   # a serial number per wasmtime.Engine object: one clock per engine
    wasm_engine_t *engine          # our own reference (Wasmtime >= 24) or wasmtime-py's (before)
    bint owns_engine
    int64_t interval_ns            # the finest interval of its subscriptions; read atomically by samplers
    int64_t next_tick_ns
    uint64_t ticks                 # read atomically by profilers
    Subscription *subscriptions

cdef struct Subscription:
    Subscription *next
    EngineClock *clock
    int64_t interval_ns
    bint spin                      # may wake early and spin (short interval, a spare CPU)
    uint64_t generation            # the process it was made in: a forked child orphans its parent's

cdef void ticker_bind(wasmtime_engine_increment_epoch_fn increment, wasmtime_engine_clone_fn clone,
                      wasm_engine_delete_fn delete) noexcept nogil
cdef Subscription *ticker_subscribe(uint64_t key, wasm_engine_t *engine, int64_t interval_ns, bint spin) noexcept nogil
cdef void ticker_unsubscribe(Subscription *subscription) noexcept nogil
