# Part of _core.pyx: the hot path. Wasmtime calls on_epoch_deadline on the guest's thread at each tick;
# it reads only the SamplerState behind its `void *data` (_core.pxd), no Python object, and takes no GIL.
# The states' lifetimes (references of Samplers, DeadlineKeepers and stores) are managed here too.

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free

from wasmtime_gp._native.atomics cimport gp_add_int, gp_load_i64, gp_load_u64, gp_load_u64_ordered
from wasmtime_gp._native.clock cimport monotonic_ns, thread_cpu_ns
from wasmtime_gp._native.posix cimport (
    pthread_equal, pthread_mutex_destroy, pthread_mutex_init, pthread_mutex_lock, pthread_mutex_unlock,
    pthread_self, pthread_t,
)

# Far enough that a detached store never hits it again: 2**48 ticks is 89 years at 100 kHz.
cdef uint64_t FAR_DEADLINE_TICKS = 1ULL << 48
# An overhead budget lengthens the interval at most this many times (100 us becomes at most 1 s).
cdef uint64_t MAX_STRIDE = 10000


cdef inline void take_sample(SamplerState *s) noexcept nogil:
    """Record the store's wasm stack and this thread's CPU time since the last one.

    The guest's thread, lock held: from the epoch callback (no GIL) or host_exit (GIL held).
    """
    cdef pthread_t me = pthread_self()
    cdef int64_t now = thread_cpu_ns()
    cdef int64_t entered
    cdef uint64_t delta = 0, cost
    # A CPU delta is only meaningful against a reading taken on this same thread.
    if s.have_last and pthread_equal(s.last_thread, me) and now >= s.last_cpu_ns:
        delta = <uint64_t>(now - s.last_cpu_ns)
    s.last_thread = me
    s.last_cpu_ns = now
    s.have_last = now >= 0
    entered = monotonic_ns()
    api.guestprofiler_sample(s.wasmtime_profiler, s.store, delta)
    s.sampling_ns += <uint64_t>(monotonic_ns() - entered)
    s.samples += 1
    s.strides += s.stride
    if s.budget_ppm and now >= 0:
        # The next samples come `stride` intervals apart, so that one costs at most the budget's share of
        # them. The cost is the thread's CPU time (one more clock read, with a budget only): a sample
        # preempted for 20 ms must not stretch the interval 1,000 times. The mean halves its distance to
        # each new cost: a deepening stack is followed within a sample or two, and a stack that turned
        # shallow brings the stride back to 1 within about twice the last spacing.
        cost = <uint64_t>max(0, thread_cpu_ns() - now)
        s.cost_ns = (s.cost_ns + cost) // 2 if s.cost_ns else cost
        s.stride = min(MAX_STRIDE, max(1, (s.cost_ns * 1000000 + s.budget_ppm * s.interval_ns - 1)
                                       // (s.budget_ppm * s.interval_ns)))


cdef inline uint64_t own_ticks(SamplerState *s, int64_t tick_ns) noexcept nogil:
    """How many of the engine's ticks until this sampler's next sample: its interval (rounded to the
    nearest, >= 1) times its stride (1 unless an overhead budget lengthened it).

    The engine's clock ticks at the finest interval of its samplers. The guest's thread (which alone writes
    the stride), no GIL.
    """
    return s.stride * (max(1, (<int64_t>s.interval_ns + tick_ns // 2) // tick_ns) if tick_ns > 0 else 1)


cdef inline uint64_t embedder_ticks_left(SamplerState *s) noexcept nogil:
    """The embedder's ticks left before its deadline on this store (0: reached), at most FAR_DEADLINE_TICKS.

    Lock held. Their ticks are counted before each lands, so a callback it woke sees it.
    """
    cdef uint64_t now
    if not s.has_deadline:
        return FAR_DEADLINE_TICKS
    now = gp_load_u64_ordered(&s.embedder.ticks)
    return min(s.deadline - now, FAR_DEADLINE_TICKS) if now < s.deadline else 0


cdef inline uint64_t next_check_when_idle(SamplerState *s) noexcept nogil:
    """When a store not being sampled checks in again, in engine ticks (lock held): at the next one while
    its profiler could start (start() comes from any thread, and only this callback can bring the guest's
    deadline near), else only for the embedder's deadline. Nothing while nothing moves the engine's epoch."""
    return 1 if s.wasmtime_profiler != NULL and s.store != NULL else FAR_DEADLINE_TICKS


cdef inline wasmtime_error_t *deadline_trap() noexcept nogil:
    """What Wasmtime itself raises when a store reaches its epoch deadline: a Trap, code INTERRUPT (>= 34;
    before, only an error with its message can be made)."""
    if api.trap_new_code != NULL:
        return <wasmtime_error_t *>api.trap_new_code(WASMTIME_TRAP_CODE_INTERRUPT)
    return api.error_new(b"wasm trap: interrupt")


cdef wasmtime_error_t *on_epoch_deadline(
        wasmtime_context_t *context, void *data, uint64_t *epoch_deadline_delta,
        wasmtime_update_deadline_kind_t *update_kind) noexcept nogil:
    """Wasmtime calls this on the guest's thread when the store crosses its epoch deadline. No GIL.

    The engine's epoch counts our ticks and the embedder's: sample when our own interval is up, trap when the
    embedder's deadline is reached, and otherwise come back at whichever is nearer.
    """
    cdef SamplerState *s = <SamplerState *>data
    cdef bint interrupt, timed_out, deadline_reached
    cdef uint64_t ticks, step, since, delta, left
    pthread_mutex_lock(&s.lock)
    s.callbacks += 1
    delta = next_check_when_idle(s)
    if s.wasmtime_profiler != NULL and s.sampling and s.store != NULL and s.subscription != NULL:
        ticks = gp_load_u64(&s.subscription.clock.ticks)
        step = own_ticks(s, gp_load_i64(&s.subscription.clock.interval_ns))
        since = ticks - s.last_sample_ticks if ticks >= s.last_sample_ticks else 0
        if since >= step:
            take_sample(s)
            # Inside a host call, wasm checks its epoch as soon as it is called back into: the whole
            # intervals before that were the host function's.
            if 0 < s.host_depth <= HOST_DEPTH_MAX and since >= 2 * step:
                s.host_pending[s.host_depth - 1] += since // step - 1
            s.last_sample_ticks = ticks
            delta = step
        else:
            delta = step - since  # woken by the embedder's tick (or interrupt()): not our interval yet
    left = embedder_ticks_left(s)
    deadline_reached = left == 0
    delta = min(delta, left)
    interrupt = s.interrupt
    s.interrupt = False
    timed_out = s.sampling and s.timeout_at_ns != 0 and monotonic_ns() >= s.timeout_at_ns
    if timed_out:
        s.timed_out = True
        s.timeout_at_ns = 0
    pthread_mutex_unlock(&s.lock)
    update_kind[0] = WASMTIME_UPDATE_DEADLINE_CONTINUE
    epoch_deadline_delta[0] = delta
    if timed_out:
        return api.error_new(b"wasm guest timed out (wasmtime-gp timeout)")
    if interrupt:
        return api.error_new(b"interrupted by wasmtime-gp")
    if deadline_reached:
        # The deadline stays passed, as in Wasmtime: every later epoch check traps too, until one is set.
        return deadline_trap()
    return NULL


cdef void embedder_epoch_release(EmbedderEpochState *e) noexcept nogil:
    """Drop one reference; the last one frees it. Any thread, GIL or not."""
    if gp_add_int(&e.refs, -1) == 0:
        free(e)


cdef SamplerState *state_new(EmbedderEpochState *embedder) noexcept nogil:
    """A new SamplerState holding one reference (its owner's) and one to `embedder`; NULL without memory."""
    cdef SamplerState *s = <SamplerState *>calloc(1, sizeof(SamplerState))
    if s == NULL:
        return NULL
    pthread_mutex_init(&s.lock, NULL)
    s.refs = 1
    s.embedder = embedder
    gp_add_int(&embedder.refs, 1)
    return s


cdef void state_attach(SamplerState *s, wasmtime_store_t *store, SamplerState *previous) noexcept nogil:
    """Make `s` the store's callback state, taking over the embedder's deadline from `previous` (the state our
    callback on the store had, or NULL). The store holds a reference until it drops the callback."""
    if previous != NULL:
        pthread_mutex_lock(&previous.lock)
        s.has_deadline = previous.has_deadline
        s.deadline = previous.deadline
        pthread_mutex_unlock(&previous.lock)
    s.store = store
    pthread_mutex_lock(&s.lock)
    s.refs += 1
    pthread_mutex_unlock(&s.lock)
    api.store_epoch_deadline_callback(store, on_epoch_deadline, s, on_callback_dropped)


cdef void sampler_release(SamplerState *s) noexcept nogil:
    """Drop one reference; the last one frees the state. Any thread, GIL or not."""
    cdef int refs
    cdef wasmtime_guestprofiler_t *orphan = NULL
    pthread_mutex_lock(&s.lock)
    s.refs -= 1
    refs = s.refs
    if refs == 0:
        orphan = s.wasmtime_profiler
        s.wasmtime_profiler = NULL
    pthread_mutex_unlock(&s.lock)
    if refs == 0:
        if orphan != NULL:
            api.guestprofiler_delete(orphan)
        embedder_epoch_release(s.embedder)
        pthread_mutex_destroy(&s.lock)
        free(s)


cdef void on_callback_dropped(void *data) noexcept nogil:
    """Wasmtime calls this when the store is deleted or our callback is replaced. No GIL."""
    cdef SamplerState *s = <SamplerState *>data
    pthread_mutex_lock(&s.lock)
    s.store = NULL
    s.sampling = False
    pthread_mutex_unlock(&s.lock)
    sampler_release(s)
