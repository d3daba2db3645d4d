# cython: language_level=3
"""The process-wide ticker: one native thread that advances the epoch of every engine with a running profiler.

Each engine has a clock ticking at the finest interval any running profiler asked for on it; the thread sleeps
to the nearest tick of any clock, and exists only while some profiler runs. Subscribing and unsubscribing are
rare and serialised by `lifecycle`; the tick loop and the clock list share `lock`. No Python, no GIL.
"""

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free
from posix.signal cimport sigset_t, sigfillset, SIG_SETMASK
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.types cimport clockid_t
from libc.errno cimport ETIMEDOUT

from wasmtime_gp._native.atomics cimport (
    gp_add_u64_ordered, gp_load_i64, gp_load_u64_acquire, gp_store_i64, gp_store_i64_ordered,
    gp_store_u64_ordered,
)
from wasmtime_gp._native.clock cimport monotonic_ns
from wasmtime_gp._native.posix cimport *

cdef wasmtime_engine_increment_epoch_fn increment_epoch = NULL
cdef wasmtime_engine_clone_fn clone_engine = NULL
cdef wasm_engine_delete_fn delete_engine = NULL

cdef pthread_mutex_t lifecycle
cdef pthread_mutex_t lock
cdef pthread_cond_t wake
cdef EngineClock *clocks = NULL
cdef pthread_t thread
cdef bint thread_running = False
cdef bint stop_requested = False
# Bumped in a forked child, where the ticker thread does not exist: the parent's clocks and
# subscriptions are orphaned there (left allocated, never ticked), and a new thread serves new ones.
cdef uint64_t generation = 0


cdef void ticker_bind(wasmtime_engine_increment_epoch_fn increment, wasmtime_engine_clone_fn clone,
                      wasm_engine_delete_fn delete) noexcept nogil:
    """Called once by _core at import, with the GIL held (the C API table's ticker half)."""
    global increment_epoch, clone_engine, delete_engine
    increment_epoch = increment
    clone_engine = clone
    delete_engine = delete


cdef void refresh_interval(EngineClock *clock) noexcept nogil:
    """The clock ticks at the finest interval among its subscriptions (any thread, `lock` held, no GIL)."""
    cdef Subscription *s = clock.subscriptions
    cdef int64_t finest = 0
    while s != NULL:
        if finest == 0 or s.interval_ns < finest:
            finest = s.interval_ns
        s = s.next
    gp_store_i64(&clock.interval_ns, finest)


cdef bint clock_spins(EngineClock *clock) noexcept nogil:
    """Whether the ticker should spin to this clock's next tick (ticker thread, `lock` held)."""
    cdef Subscription *s = clock.subscriptions
    while s != NULL:
        if s.spin and clock.interval_ns < SPIN_BELOW_NS:
            return True
        s = s.next
    return False


cdef inline void write_stamp(int64_t *values, uint64_t *ticks, int slot, uint64_t tick,
                             int64_t value) noexcept nogil:
    """The writer's half of read_stamp: no tick's number over the slot while its value changes, so a reader
    never takes the value of the tick written next for the one before."""
    gp_store_u64_ordered(&ticks[slot], NO_TICK)
    gp_store_i64_ordered(&values[slot], value)
    gp_store_u64_ordered(&ticks[slot], tick)


cdef void stamp_guest_cpu(EngineClock *clock, uint64_t tick) noexcept nogil:
    """Stamp the CPU time of each guest thread whose sample is due or late at `tick`, just before it lands
    (ticker thread, `lock` held): a sample checked at once after its tick takes this as its CPU time, and so
    reads no clock of its own. Reading another thread's CPU clock is a system call: once per sample while the
    guest keeps up, at each tick for TICK_RING ticks while it is away from wasm."""
    cdef int slot = tick % TICK_RING
    cdef Subscription *s = clock.subscriptions
    cdef int64_t guest_clock
    cdef timespec ts
    while s != NULL:
        # The tick first: the sampler publishes its thread's clock before the tick it is due at.
        if tick - gp_load_u64_acquire(&s.guest_cpu_from_tick) < TICK_RING:
            guest_clock = gp_load_i64(&s.guest_cpu_clock)
            s.guest_cpu_read_at_ns = monotonic_ns()
            if guest_clock != 0 and clock_gettime(<clockid_t>guest_clock, &ts) == 0:
                write_stamp(s.guest_cpu_ns, s.guest_cpu_of, slot, tick,
                            <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec)
        s = s.next


cdef void stamp_time(EngineClock *clock) noexcept nogil:
    """Stamp the time of the tick that just landed (ticker thread, `lock` held). After the epoch moved, not
    before: a ticker preempted in between would make wasm look late. Then, for each guest CPU time stamped
    for this tick, how long before it landed the reading began."""
    cdef uint64_t tick = clock.ticks
    cdef int slot = tick % TICK_RING
    cdef int64_t landed = monotonic_ns()
    cdef Subscription *s = clock.subscriptions
    write_stamp(clock.tick_ns, clock.tick_of, slot, tick, landed)
    while s != NULL:
        if gp_load_u64_ordered(&s.guest_cpu_of[slot]) == tick:
            write_stamp(s.guest_cpu_lead_ns, s.guest_cpu_lead_of, slot, tick,
                        max(0, landed - s.guest_cpu_read_at_ns))
        s = s.next


cdef void *ticker_main(void *arg) noexcept nogil:
    """The ticker thread's body. No GIL, ever."""
    cdef EngineClock *clock
    cdef EngineClock *nearest
    cdef int64_t now, wake_at, woke, interval, target
    cdef int64_t wake_latency = 20000  # running estimate, for spinning clocks
    cdef timespec wake_ts
    cdef bint spin
    cdef int rc
    # The default 50 us timer slack would swallow intervals below about 100 us.
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    pthread_mutex_lock(&lock)
    while not stop_requested:
        nearest = clocks
        clock = clocks
        while clock != NULL:
            if clock.next_tick_ns < nearest.next_tick_ns:
                nearest = clock
            clock = clock.next
        if nearest == NULL:
            pthread_cond_wait(&wake, &lock)
            continue
        spin = clock_spins(nearest)
        wake_at = nearest.next_tick_ns
        if spin:
            wake_at -= min(nearest.interval_ns, wake_latency * 3 // 2 + 2000)
        if wake_at > monotonic_ns():
            wake_ts.tv_sec = wake_at // 1000000000
            wake_ts.tv_nsec = wake_at % 1000000000
            rc = pthread_cond_timedwait(&wake, &lock, &wake_ts)
            woke = monotonic_ns()
            if rc != ETIMEDOUT and woke < wake_at:
                continue  # woken to re-plan (a clock came or went, or a stop) or spuriously
            if spin:
                wake_latency += (woke - wake_at - wake_latency) // 8
        if spin:
            target = nearest.next_tick_ns  # `nearest` may be freed once the lock is released
            pthread_mutex_unlock(&lock)
            while monotonic_ns() < target:
                pass
            pthread_mutex_lock(&lock)
            if stop_requested:
                break
        now = monotonic_ns()
        clock = clocks
        while clock != NULL:
            if clock.next_tick_ns <= now:
                stamp_guest_cpu(clock, clock.ticks + 1)
                # Counted before the epoch moves: a callback woken by this tick must read it, or a host
                # call starting just after would count the same tick again.
                gp_add_u64_ordered(&clock.ticks, 1)
                increment_epoch(clock.engine)
                stamp_time(clock)
                interval = clock.interval_ns
                clock.next_tick_ns += interval
                # After a stall (suspend, overload) skip the missed ticks instead of bursting them.
                if clock.next_tick_ns + interval < now:
                    clock.next_tick_ns = now + interval
            clock = clock.next
    pthread_mutex_unlock(&lock)
    return NULL


cdef int start_thread() noexcept nogil:
    """Start the ticker thread, every signal blocked (subscribing thread, `lifecycle` held, GIL or not)."""
    cdef sigset_t all_signals, previous
    cdef int rc
    # The ticker must never receive a signal meant for the interpreter's main thread.
    sigfillset(&all_signals)
    pthread_sigmask(SIG_SETMASK, &all_signals, &previous)
    rc = pthread_create(&thread, NULL, ticker_main, NULL)
    pthread_sigmask(SIG_SETMASK, &previous, NULL)
    return rc


cdef Subscription *ticker_subscribe(
        uint64_t key, wasm_engine_t *engine, int64_t interval_ns, bint spin) noexcept nogil:
    """Tick `engine` at least every `interval_ns` until the subscription is dropped; NULL on failure.

    Any thread, GIL or not.
    """
    global clocks, thread_running
    cdef EngineClock *clock
    cdef Subscription *subscription = <Subscription *>calloc(1, sizeof(Subscription))
    if subscription == NULL:
        return NULL
    subscription.interval_ns = interval_ns
    subscription.spin = spin
    pthread_mutex_lock(&lifecycle)
    subscription.generation = generation
    pthread_mutex_lock(&lock)
    clock = clocks
    while clock != NULL and clock.key != key:
        clock = clock.next
    if clock == NULL:
        clock = <EngineClock *>calloc(1, sizeof(EngineClock))
        if clock == NULL:
            pthread_mutex_unlock(&lock)
            pthread_mutex_unlock(&lifecycle)
            free(subscription)
            return NULL
        clock.key = key
        if clone_engine != NULL:
            clock.engine = clone_engine(engine)
            clock.owns_engine = True
        else:
            clock.engine = engine
        clock.next = clocks
        clocks = clock
        clock.next_tick_ns = monotonic_ns() + interval_ns
    subscription.clock = clock
    subscription.next = clock.subscriptions
    clock.subscriptions = subscription
    refresh_interval(clock)
    if clock.next_tick_ns > monotonic_ns() + clock.interval_ns:
        clock.next_tick_ns = monotonic_ns() + clock.interval_ns  # a finer interval takes effect now
    pthread_cond_signal(&wake)
    pthread_mutex_unlock(&lock)
    if not thread_running:
        if start_thread() != 0:
            pthread_mutex_unlock(&lifecycle)
            ticker_unsubscribe(subscription)
            return NULL
        thread_running = True
    pthread_mutex_unlock(&lifecycle)
    return subscription


cdef void ticker_unsubscribe(Subscription *subscription) noexcept nogil:
    """Drop a subscription; the last one of a clock removes it, the last clock joins the thread.

    Any thread but the ticker's, GIL or not (it may wait for the join).
    """
    global clocks, thread_running, stop_requested
    cdef EngineClock *clock = subscription.clock
    cdef Subscription **link
    cdef EngineClock **clock_link
    cdef EngineClock *removed = NULL
    cdef bint last_clock = False
    pthread_mutex_lock(&lifecycle)
    if subscription.generation != generation:
        # Made before a fork, in the parent: its clock is not ours to tick or free.
        pthread_mutex_unlock(&lifecycle)
        free(subscription)
        return
    pthread_mutex_lock(&lock)
    link = &clock.subscriptions
    while link[0] != subscription:
        link = &link[0].next
    link[0] = subscription.next
    if clock.subscriptions == NULL:
        clock_link = &clocks
        while clock_link[0] != clock:
            clock_link = &clock_link[0].next
        clock_link[0] = clock.next
        removed = clock
    else:
        refresh_interval(clock)
    last_clock = clocks == NULL
    if last_clock:
        stop_requested = True
    pthread_cond_signal(&wake)
    pthread_mutex_unlock(&lock)
    if last_clock:
        if thread_running:
            pthread_join(thread, NULL)
            thread_running = False
        # Only now, with the thread gone: it reads the flag under `lock`.
        stop_requested = False
    pthread_mutex_unlock(&lifecycle)
    if removed != NULL:
        if removed.owns_engine:
            delete_engine(removed.engine)
        free(removed)
    free(subscription)


cdef void init_wake() noexcept nogil:
    """Make the wake condition, timed on CLOCK_MONOTONIC (at import with the GIL, or in a forked child)."""
    cdef pthread_condattr_t attr
    pthread_condattr_init(&attr)
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
    pthread_cond_init(&wake, &attr)
    pthread_condattr_destroy(&attr)


# fork(): hold both locks across it, so the child never inherits one held by a thread it does not have.
# The three handlers run on the forking thread, with or without the GIL.
cdef void before_fork() noexcept nogil:
    pthread_mutex_lock(&lifecycle)
    pthread_mutex_lock(&lock)


cdef void after_fork_in_parent() noexcept nogil:
    pthread_mutex_unlock(&lock)
    pthread_mutex_unlock(&lifecycle)


cdef void after_fork_in_child() noexcept nogil:
    global clocks, thread_running, stop_requested, generation
    generation += 1
    clocks = NULL
    thread_running = False
    stop_requested = False
    init_wake()
    pthread_mutex_unlock(&lock)
    pthread_mutex_unlock(&lifecycle)


def _init() -> None:
    """Make the locks and register the fork handlers (at import, GIL held)."""
    pthread_mutex_init(&lifecycle, NULL)
    pthread_mutex_init(&lock, NULL)
    init_wake()
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child)


_init()


cdef bint ticker_thread_running() noexcept nogil:
    """Whether the ticker thread exists right now (any thread; a plain read, for tests)."""
    return thread_running


cdef int ticker_clock_count() noexcept nogil:
    """How many engines are being ticked right now (any thread but the ticker's, takes `lock`)."""
    cdef int n = 0
    cdef EngineClock *clock
    pthread_mutex_lock(&lock)
    clock = clocks
    while clock != NULL:
        n += 1
        clock = clock.next
    pthread_mutex_unlock(&lock)
    return n
