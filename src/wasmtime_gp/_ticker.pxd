# The process-wide ticker: one thread advancing the epoch of every engine that has a running profiler.
from libc.stdint cimport int64_t, uint64_t

from wasmtime_gp._native.atomics cimport gp_load_i64_ordered, gp_load_u64_ordered

from wasmtime_gp._native.wasmtime_capi cimport (
    wasm_engine_t, wasmtime_engine_increment_epoch_fn, wasmtime_engine_clone_fn, wasm_engine_delete_fn,
)

# The ticker's timing floors, decided here and read by profiler.py as _ticker.SPIN_BELOW_NS and friends.
cpdef enum:
    # Below this interval a sleeping thread wakes too late (about 20 us on a VM): wake early and spin.
    SPIN_BELOW_NS = 50000
    # On one CPU every tick preempts the guest (a context switch, about 20 us): no faster tick than this.
    SINGLE_CPU_MIN_TICK_NS = SPIN_BELOW_NS

    # The last this many ticks of each clock are stamped at [tick % TICK_RING], with the tick's number: a
    # guest thread's CPU time just before the tick lands, its time just after. A sample knows when the tick
    # it was due at landed, and how much CPU time the guest had used by then.
    TICK_RING = 64

cdef struct EngineClock:
    EngineClock *next
    uint64_t key                   # a serial number per wasmtime.Engine object: one clock per engine
    wasm_engine_t *engine          # our own reference (Wasmtime >= 24) or wasmtime-py's (before)
    bint owns_engine
    int64_t interval_ns            # the finest interval of its subscriptions; read atomically by samplers
    int64_t next_tick_ns
    uint64_t ticks                 # read atomically by samplers
    int64_t tick_ns[TICK_RING]     # when the tick landed
    uint64_t tick_of[TICK_RING]    # which tick that was (written after the time: see read_stamp)
    Subscription *subscriptions

cdef struct Subscription:
    Subscription *next
    EngineClock *clock
    int64_t interval_ns
    bint spin                      # may wake early and spin (short interval, a spare CPU)
    uint64_t generation            # the process it was made in: a forked child orphans its parent's
    # The guest's thread, as its sampler last saw it: from the tick its next sample is due at, and for
    # TICK_RING ticks, the ticker reads that thread's CPU clock (a system call) just before each tick. A
    # sample checked at once takes it as its CPU time (reading none on the guest's thread); a late one
    # can tell how long the guest ran on a CPU after that tick without reaching an epoch check.
    int64_t guest_cpu_clock        # a clockid_t (0: none yet); written by the sampler, read by the ticker
    uint64_t guest_cpu_from_tick   # the tick the sampler's next sample is due at (published after the clock)
    int64_t guest_cpu_ns[TICK_RING]  # the guest thread's CPU time just before the tick
    uint64_t guest_cpu_of[TICK_RING]  # which tick that was
    # How long before the tick landed that reading began (the guest may have run in wasm meanwhile: a late
    # sample takes it off the CPU time it counts after the tick). Written after the tick's time.
    int64_t guest_cpu_lead_ns[TICK_RING]
    uint64_t guest_cpu_lead_of[TICK_RING]
    int64_t guest_cpu_read_at_ns       # the ticker's own: when it began reading this tick's CPU time

# A stamp's slot while its value is being written.
cdef uint64_t NO_TICK = 0xFFFFFFFFFFFFFFFF

cdef inline int64_t read_stamp(const int64_t *values, const uint64_t *ticks, uint64_t tick) noexcept nogil:
    """A stamp of `tick` (a time or a CPU time, >= 0), or -1 if its slot holds another tick's: not stamped
    yet, or already written over (any thread; the ticker writes NO_TICK, the value, then the tick's
    number)."""
    cdef int slot = tick % TICK_RING
    cdef int64_t value
    if gp_load_u64_ordered(&ticks[slot]) != tick:
        return -1
    value = gp_load_i64_ordered(&values[slot])
    return value if gp_load_u64_ordered(&ticks[slot]) == tick else -1

cdef void ticker_bind(wasmtime_engine_increment_epoch_fn increment, wasmtime_engine_clone_fn clone,
                      wasm_engine_delete_fn delete) noexcept nogil
cdef Subscription *ticker_subscribe(
    uint64_t key, wasm_engine_t *engine, int64_t interval_ns, bint spin) noexcept nogil
cdef void ticker_unsubscribe(Subscription *subscription) noexcept nogil
# For _test_utils: whether the thread exists, and how many engines it ticks.
cdef bint ticker_thread_running() noexcept nogil
cdef int ticker_clock_count() noexcept nogil
