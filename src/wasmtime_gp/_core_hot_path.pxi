# Part of _core.pyx: the hot path. Wasmtime calls on_epoch_deadline on the guest's thread at each tick;
# it reads only the SamplerState behind its `void *data` (_core.pxd), no Python object, and takes no GIL.
# The states' lifetimes (references of Samplers, DeadlineKeepers and stores) are managed here too.

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from posix.types cimport clockid_t

from wasmtime_gp._native.atomics cimport (
    gp_add_int, gp_load_i64, gp_load_u64, gp_load_u64_ordered, gp_store_i64, gp_store_u64_release,
)
from wasmtime_gp._native.calls cimport gp_wasm_depth, gp_wasm_innermost_entry_ns
from wasmtime_gp._native.clock cimport monotonic_ns, thread_cpu_ns, thread_switches
from wasmtime_gp._native.posix cimport (
    pthread_equal, pthread_getcpuclockid, pthread_mutex_destroy, pthread_mutex_init, pthread_mutex_lock,
    pthread_mutex_trylock, pthread_mutex_unlock, pthread_self, pthread_t,
)
from wasmtime_gp._ticker cimport TICK_RING, read_stamp

# Far enough that a detached store never hits it again: 2**48 ticks is 89 years at 100 kHz.
cdef uint64_t FAR_DEADLINE_TICKS = 1ULL << 48
# An overhead budget lengthens the interval at most this many times (100 us becomes at most 1 s).
cdef uint64_t MAX_STRIDE = 10000
# A sample whose epoch check comes later than this after its tick may come back from outside wasm (see
# outside_wasm; benchmarks/outside_wasm.py measured it, docs/performance.md "Time outside wasm").
cdef int64_t OUTSIDE_MIN_NS = 10000
cdef int64_t outside_min_ns = OUTSIDE_MIN_NS
# What a preemption costs the preempted thread's CPU clock when it gets its CPU back (measured by
# benchmarks/outside_wasm.py: a pure-wasm guest's CPU time after a tick, when it was preempted meanwhile).
cdef int64_t SWITCH_IN_NS = 25000
# sampling_ns is estimated from every this many-th sample, timed, standing for as many: two clock reads of
# about 22 ns on every sample were a third of what it costs above sample() itself (benchmarks/sample_cost.py).
cdef uint64_t SAMPLE_TIMING_EVERY = 16


cdef inline bint on_last_thread(SamplerState *s) noexcept nogil:
    """Whether the last sample's readings were taken on this thread (only those compare with its own)."""
    return s.have_last and pthread_equal(s.last_thread, pthread_self())


cdef inline void take_sample(SamplerState *s, int64_t checked_ns, int64_t now,
                             bint read_waits) noexcept nogil:
    """Record the store's wasm stack and this thread's CPU time since the last one; `checked_ns` and `now`:
    the time when the guest's epoch check (or host call's return) asked for it, and the thread's CPU time
    then (or, checked at once after its tick, when the ticker read it just before that tick).

    The thread's wait count (outside_wasm's) is read again after the sample when `read_waits`, or when the
    thread was off a CPU for more than outside_min_ns since the last sample: it can only have waited then.
    The guest's thread, lock held: from the epoch callback (no GIL) or host_exit (GIL held).
    """
    cdef pthread_t me = pthread_self()
    cdef int64_t entered, cpu_before = 0
    cdef uint64_t delta = 0, cost
    cdef clockid_t guest_clock
    cdef bint same_thread = on_last_thread(s)
    # A CPU delta is only meaningful against a reading taken on this same thread.
    if same_thread and now >= s.last_cpu_ns:
        delta = <uint64_t>(now - s.last_cpu_ns)
        read_waits = read_waits or (checked_ns - s.last_wall_ns) - <int64_t>delta > outside_min_ns
    else:
        read_waits = True
    if s.subscription != NULL and (not same_thread or gp_load_i64(&s.subscription.guest_cpu_clock) == 0):
        if pthread_getcpuclockid(me, &guest_clock) == 0:  # the clock the ticker stamps its ticks with
            gp_store_i64(&s.subscription.guest_cpu_clock, <int64_t>guest_clock)
    s.last_thread = me
    s.last_cpu_ns = now
    s.have_last = now >= 0
    s.last_wall_ns = checked_ns
    if s.budget_ppm:
        cpu_before = thread_cpu_ns()
    if s.samples % SAMPLE_TIMING_EVERY == 0:  # the first sample, then every SAMPLE_TIMING_EVERY-th
        entered = monotonic_ns()
        api.guestprofiler_sample(s.wasmtime_profiler, s.store, delta)
        s.sampling_ns += <uint64_t>(monotonic_ns() - entered) * SAMPLE_TIMING_EVERY
    else:
        api.guestprofiler_sample(s.wasmtime_profiler, s.store, delta)
    # After the sample: a wait inside it (for a lock of Wasmtime's another thread holds) is not the guest's.
    if read_waits and not thread_switches(&s.last_waits, &s.last_preemptions):
        s.last_waits = -1
    s.samples += 1
    s.strides += s.stride
    if s.budget_ppm and cpu_before >= 0:
        # The next samples come `stride` intervals apart, so that one costs at most the budget's share of
        # them. The cost is the thread's CPU time (two clock reads, with a budget only): a sample
        # preempted for 20 ms must not stretch the interval 1,000 times. The mean halves its distance to
        # each new cost: a deepening stack is followed within a sample or two, and a stack that turned
        # shallow brings the stride back to 1 within about twice the last spacing.
        cost = <uint64_t>max(0, thread_cpu_ns() - cpu_before)
        s.cost_ns = (s.cost_ns + cost) // 2 if s.cost_ns else cost
        s.stride = min(MAX_STRIDE, max(1, (s.cost_ns * 1000000 + s.budget_ppm * s.interval_ns - 1)
                                       // (s.budget_ppm * s.interval_ns)))


cdef inline int64_t stamped_cpu_ns(SamplerState *s, uint64_t ticks, uint64_t step,
                                   int64_t checked_ns) noexcept nogil:
    """For a sample now due: the guest thread's CPU time as the ticker read it just before the tick the
    sample was due at, if the check comes at once after that tick (no later tick, and within outside_min_ns
    of its landing, or before the ticker stamped its time), on the thread of the last sample. Then the
    sample needs no clock of its own: a system call here, about 0.6 us. Otherwise -1: the caller reads the
    clock and asks outside_wasm. The guest's thread, lock held, no GIL."""
    cdef Subscription *sub = s.subscription
    cdef uint64_t due = s.last_sample_ticks + step
    cdef int64_t due_ns, cpu_ns
    if ticks != due or not on_last_thread(s):
        return -1
    due_ns = read_stamp(sub.clock.tick_ns, sub.clock.tick_of, due)
    if due_ns >= 0 and checked_ns - due_ns > outside_min_ns:
        return -1
    cpu_ns = read_stamp(sub.guest_cpu_ns, sub.guest_cpu_of, due)
    return cpu_ns if cpu_ns >= s.last_cpu_ns else -1


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


cdef inline int64_t cpu_at_tick(Subscription *sub, uint64_t tick) noexcept nogil:
    """The guest thread's CPU time when `tick` landed, at most: the ticker's reading just before it, plus the
    time from that reading's start to the tick's landing, which the guest may have spent running (under load
    the ticker can be preempted in between: without this, that wasm would count as time outside wasm after
    the tick). -1 if either stamp is missing."""
    cdef int64_t cpu_ns = read_stamp(sub.guest_cpu_ns, sub.guest_cpu_of, tick)
    cdef int64_t lead_ns = read_stamp(sub.guest_cpu_lead_ns, sub.guest_cpu_lead_of, tick)
    return cpu_ns + lead_ns if cpu_ns >= 0 and lead_ns >= 0 else -1


cdef inline bint outside_wasm(SamplerState *s, uint64_t ticks, uint64_t step, int64_t checked_ns,
                              int64_t cpu_now, long waits_before_lock, long preemptions_before_lock,
                              OutsideStretch *stretch) noexcept nogil:
    """For a sample now due (before it is taken): whether the guest comes back from outside wasm, and if so
    `stretch` (all but its anchor): the time from the tick that made it due to this check, how much of it the
    guest's thread ran on a CPU, and the intervals it stands for, in all and on a CPU.

    In wasm, an epoch check comes at every loop header and function entry: a tick is seen within microseconds
    of the guest's CPU time. A check later than OUTSIDE_MIN_NS after the tick that made it due came after
    - the thread ran elsewhere on a CPU for longer than that (host code: the ticker read its CPU clock at the
      tick; lacking that reading, the part of the stretch it was not off a CPU since the last sample bounds
      it from below), less SWITCH_IN_NS per preemption since the last sample;
    - or the thread waited (its voluntary context switches rose since the last sample: I/O, a lock, a sleep);
    - or it was only descheduled (in wasm or not: nothing tells): counted as wasm, as before.
    A check that did not wait and comes within OUTSIDE_MIN_NS (of time, or of CPU time) after a later tick is
    wasm's: the guest was in wasm at that tick, the one Wasmtime armed the deadline for (a tick that lands
    after a sample counted the ticks and before Wasmtime read the epoch, as when the thread is preempted
    there).
    A stretch that waited stands for every interval since it was due (blocked time is the guest's, and so is
    waiting for a CPU after it), split by its CPU time into on and off a CPU. One that did not stands for its
    CPU time only: time descheduled counts nowhere, outside wasm as in wasm (a guest preempted in wasm gets
    one sample when it resumes, as ever), and a rare pure-wasm guest wrongly seen outside after a preemption
    weighs the CPU its clock was charged, not the milliseconds it waited for its CPU.
    Time before the innermost wasm call we saw begin (between calls, or in another store's) is never the
    guest's, nor is a wrapped host call's
    (_core_sampler's host_exit counts that). The guest's thread, lock held, no GIL.
    """
    cdef Subscription *sub = s.subscription
    cdef uint64_t due = s.last_sample_ticks + step
    cdef int64_t due_ns, latest_ns, cpu_at_due, cpu_at_latest, stretch_length, on_cpu, interval_ns
    cdef uint64_t missed = (ticks - s.last_sample_ticks) // step  # the tick it was due at, and each one since
    cdef long waits, preemptions
    if s.host_depth > 0 or gp_wasm_depth == 0:
        return 0
    if not on_last_thread(s):
        return 0
    cpu_at_due = cpu_at_tick(sub, due)
    cpu_at_latest = cpu_at_tick(sub, ticks)
    due_ns = read_stamp(sub.clock.tick_ns, sub.clock.tick_of, due)
    if due_ns < 0:
        if ticks - due < TICK_RING:
            return 0  # checked before the ticker could stamp the tick: at once
        due_ns = s.last_wall_ns + <int64_t>step * gp_load_i64(&sub.clock.interval_ns)  # long written over
    if due_ns <= gp_wasm_innermost_entry_ns():
        return 0  # the tick came before this call: its entry's epoch check took the sample
    stretch_length = checked_ns - due_ns
    if stretch_length <= outside_min_ns:
        return False
    if cpu_at_due >= 0:
        on_cpu = cpu_now - cpu_at_due
    elif ticks - due < TICK_RING:
        return False  # its stamps not all written (the ticker was preempted at that tick): nothing to tell by
    else:  # long written over: the last sample's readings bound it (the CPU one may be the ticker's, earlier)
        on_cpu = stretch_length - ((checked_ns - s.last_wall_ns) - (cpu_now - s.last_cpu_ns))
    if s.last_waits < 0:
        return False
    if waits_before_lock >= 0:  # the callback waited for our own lock: that wait is not the guest's
        waits, preemptions = waits_before_lock, preemptions_before_lock
    elif not thread_switches(&waits, &preemptions):
        return False
    # Being switched back in costs the thread CPU time that its own clock counts (on a VM, about 20 us):
    # what a preempted guest spent getting its CPU back is no host code.
    on_cpu = min(max(on_cpu - (preemptions - s.last_preemptions) * SWITCH_IN_NS, 0), stretch_length)
    stretch.stretch_ns, stretch.on_cpu_ns = stretch_length, on_cpu
    interval_ns = <int64_t>step * gp_load_i64(&sub.clock.interval_ns)
    # Only where the guest may have run wasm since the tick it was due at for about one interval: a host
    # function that computed for longer is no tick Wasmtime armed late.
    if waits <= s.last_waits and ticks > due and on_cpu <= interval_ns * 3 // 2 + outside_min_ns:
        latest_ns = read_stamp(sub.clock.tick_ns, sub.clock.tick_of, ticks)
        if (latest_ns < 0 or checked_ns - latest_ns <= outside_min_ns
                or (cpu_at_latest >= 0 and cpu_now - cpu_at_latest <= outside_min_ns)):
            return False  # at once after the latest tick (so soon the ticker may not have stamped it yet)
    if waits > s.last_waits:
        stretch.samples = max(1, missed)
        stretch.on_cpu_samples = <uint64_t>(<double>stretch.samples * on_cpu / stretch_length + 0.5)
        return True
    if on_cpu <= outside_min_ns:
        return False
    stretch.samples = min(max(1, missed), max(1, (on_cpu + interval_ns // 2) // interval_ns))
    stretch.on_cpu_samples = stretch.samples
    return True


cdef inline void note_outside(SamplerState *s, OutsideStretch stretch) noexcept nogil:
    """Keep a late sample's stretch outside wasm for finish() (lock held). Without memory for it, the sample
    stays an ordinary one: the count invariant holds either way."""
    cdef OutsideStretch *grown
    cdef size_t capacity
    if s.outside_len == s.outside_cap:
        capacity = max(16, 2 * s.outside_cap)
        grown = <OutsideStretch *>realloc(s.outside, capacity * sizeof(OutsideStretch))
        if grown == NULL:
            return
        s.outside, s.outside_cap = grown, capacity
    s.outside[s.outside_len] = stretch
    s.outside_len += 1
    s.host_extra += <int64_t>stretch.samples - 1


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
    cdef int64_t checked_ns = monotonic_ns()
    cdef int64_t cpu_now
    cdef OutsideStretch stretch
    cdef bint interrupt, timed_out, deadline_reached, late, outside
    cdef uint64_t ticks, step, since, delta, left
    cdef long waits_before_lock = -1, preemptions_before_lock = 0
    if pthread_mutex_trylock(&s.lock) != 0:
        # Held by another thread (a rotate(), a property read): count the guest's waits before ours.
        if not thread_switches(&waits_before_lock, &preemptions_before_lock):
            waits_before_lock = -1
        pthread_mutex_lock(&s.lock)
    s.callbacks += 1
    delta = next_check_when_idle(s)
    if s.wasmtime_profiler != NULL and s.sampling and s.store != NULL and s.subscription != NULL:
        ticks = gp_load_u64_ordered(&s.subscription.clock.ticks)  # ordered: its tick's stamps are read next
        step = own_ticks(s, gp_load_i64(&s.subscription.clock.interval_ns))
        since = ticks - s.last_sample_ticks if ticks >= s.last_sample_ticks else 0
        if since >= step:
            cpu_now = stamped_cpu_ns(s, ticks, step, checked_ns)
            late = cpu_now < 0
            outside = False
            if late:  # or its tick not stamped: read the clock, and whether the guest was outside wasm
                cpu_now = thread_cpu_ns()
                s.own_clock_samples += 1
                outside = outside_wasm(s, ticks, step, checked_ns, cpu_now, waits_before_lock,
                                       preemptions_before_lock, &stretch)
            stretch.anchor = s.samples
            take_sample(s, checked_ns, cpu_now, late or waits_before_lock >= 0)
            if outside:
                note_outside(s, stretch)
            # Inside a host call, wasm checks its epoch as soon as it is called back into: the whole
            # intervals before that were the host function's.
            elif 0 < s.host_depth <= HOST_DEPTH_MAX and since >= 2 * step:
                s.host_pending[s.host_depth - 1] += since // step - 1
            # Counted from the end of the sample, as Wasmtime arms the next deadline then: ticks that landed
            # while it was taken are no interval of the guest's (and the next is due at the tick armed for).
            s.last_sample_ticks = gp_load_u64_ordered(&s.subscription.clock.ticks)
            gp_store_u64_release(&s.subscription.guest_cpu_from_tick, s.last_sample_ticks + step)
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
        free(s.outside)
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
